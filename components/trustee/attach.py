"""``keyBroker:`` of the Azure and GCP confidential-VM targets: resolve the KBS endpoint, attach the broker.

One call from each builder (``components/azure/cvm.py``, ``components/gcp/confidential_vm.py``), before
any resource of the target is registered, so a configuration error leaves nothing half-created::

    broker = attach_target_key_broker(ctx)   # {} without keyBroker
    ...
    return {..., **broker}                   # kbs_url, reference_value_ids, key_resource, key_broker_gate

The endpoint (:class:`teeform.targets.vm_key_broker.VmKeyBroker`):

* ``kbs: https://host:port``: the URL, the admin key from the secret config ``teeform:<adminKeySecret>``
  (default ``kbsAdminKey``), the CA certificate from ``teeform:<caCertConfig>`` when given;
* ``kbs: <name>``: the config object ``teeform:<name>`` = ``{url, adminKeySecret?, caCertConfig?}``
  (a "trustee endpoint config", e.g. shared by the stacks of one environment).

**Offline preview.** ``teeform preview`` runs the program under the SDK's mock engine and leaves
``secure:`` config values out (``teeform/preview/runner.py`` ``config_strings``: "the program must not
need them offline"). Under the mock engine no provider runs, so a missing admin key is replaced by a
placeholder secret and a warning; under the real engine (``pulumi preview`` / ``up``) it is an error
naming ``keyBroker.adminKeySecret``. Everything else (reference values, policies, the one-target-per-KBS
check) is computed and checked the same way in both.

What each gate pins: :data:`teeform.targets.vm_key_broker.BROKER_PINS` (the ``key_broker_gate`` output);
the platform-only native gate stays as it was (``key_gate`` of Azure targets).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pulumi

from components.registry import TargetContext
from components.trustee.broker import OFFLINE_ADMIN_KEY, KbsEndpoint, attach_key_broker, existing_kbs
from teeform.errors import TeeformError
from teeform.targets.vm_key_broker import BROKER_PINS, VmKeyBroker, check_config_name, check_kbs_url


def _endpoint_config(name: str, source: str) -> tuple[str, str, str | None]:
    """``(url, adminKeySecret, caCertConfig)`` from the config object ``teeform:<name>``.

    Raises:
        TeeformError: missing, not a mapping, unknown keys, no or a bad ``url`` (naming ``teeform:<name>.<field>``).
    """
    fld = f"teeform:{name}"
    try:
        raw = pulumi.Config("teeform").get_object(name)
    except Exception:  # pulumi raises ConfigTypeError for non-JSON text
        raw = "<not JSON>"
    if raw is None:
        raise TeeformError(f"config {fld} (the trustee endpoint config named by keyBroker.kbs) is missing",
                           path=source, field=fld,
                           hint=f"pulumi config set --path 'teeform:{name}.url' https://kbs.example.com:8080")
    if not isinstance(raw, Mapping):
        raise TeeformError("must be a mapping {url, adminKeySecret, caCertConfig}", path=source, field=fld)
    unknown = sorted(set(raw) - {"url", "adminKeySecret", "caCertConfig"})
    if unknown:
        raise TeeformError(f"unknown key(s) {unknown}; allowed: ['adminKeySecret', 'caCertConfig', 'url']",
                           path=source, field=f"{fld}.{unknown[0]}")
    for k in ("url", "adminKeySecret", "caCertConfig"):
        if k in raw and not (isinstance(raw[k], str) and raw[k]):
            raise TeeformError("must be a non-empty string", path=source, field=f"{fld}.{k}")
    if "url" not in raw:
        raise TeeformError("is required: the KBS admin API base URL", path=source, field=f"{fld}.url")
    url = check_kbs_url(raw["url"], source, f"{fld}.url")
    admin = check_config_name(raw.get("adminKeySecret", "kbsAdminKey"), source, f"{fld}.adminKeySecret")
    ca = check_config_name(raw["caCertConfig"], source, f"{fld}.caCertConfig") if "caCertConfig" in raw else None
    return url, admin, ca


def resolve_endpoint(kb: VmKeyBroker, target: str, source: str) -> KbsEndpoint:
    """The :class:`KbsEndpoint` of a target's ``keyBroker`` (module docstring).

    Raises:
        TeeformError: a bad endpoint config, the admin key secret missing under the real engine, or the
            CA certificate config missing; each naming the stack file and field.
    """
    fld = f"teeform:targets[{target}].keyBroker"
    if kb.endpoint_config is not None:
        url, admin, ca_name = _endpoint_config(kb.endpoint_config, source)
        where = f"teeform:{kb.endpoint_config}"
    else:
        assert kb.url is not None
        url, admin, ca_name, where = kb.url, kb.admin_key_secret, kb.ca_cert_config, fld
    return existing_kbs(url, admin_key_secret=admin, ca_cert_config=ca_name, where=where, source=source, target=target,
                        offline_placeholder=True)


def attach_target_key_broker(ctx: TargetContext) -> dict[str, Any]:
    """Attach the Trustee key broker of ``ctx.target`` (settings with a ``key_broker``); ``{}`` without one.

    Returns:
        ``kbs_url``, ``reference_value_ids`` (sorted), ``key_resource`` (``resource/teeform/<target>/key``)
        and ``key_broker_gate`` (what the released secret pins, :data:`BROKER_PINS`).

    Raises:
        TeeformError: see :func:`resolve_endpoint` and :func:`components.trustee.broker.attach_key_broker`
            (a manifest lacking a pinned value, a KBS already serving another target), with the stack file.
    """
    t = ctx.target
    kb = getattr(t.settings, "key_broker", None)
    if kb is None:
        return {}
    assert isinstance(kb, VmKeyBroker)
    endpoint = resolve_endpoint(kb, t.name, ctx.stack.source)
    try:
        out = attach_key_broker(t.name, ctx.manifests, t.tee, kb.options.verifier, endpoint=endpoint, options=kb.options)
    except TeeformError as exc:
        if exc.path:
            raise
        fld = exc.field or ""
        if fld.endswith(".keyBroker.url"):  # attach_key_broker names alicloud's key; these targets write it as kbs
            fld = fld.removesuffix(".url") + ".kbs"
        raise TeeformError(exc.message, hint=exc.hint, path=ctx.stack.source, field=fld or None) from exc
    gate = BROKER_PINS[kb.options.verifier].replace("<target>", t.name)
    pulumi.log.info(f"target {t.name!r}: key broker {kb.kbs}: {gate}")
    return {**out, "key_broker_gate": gate}


__all__ = ["attach_target_key_broker", "resolve_endpoint", "OFFLINE_ADMIN_KEY"]
