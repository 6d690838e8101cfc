"""The Trustee key broker component, and :func:`attach_key_broker` for any target builder.

A ``teeform:trustee:KeyBroker`` component holds one target's :class:`~components.trustee.provider.KbsRegistration`:
the RVPS reference values of its allowed manifests (one set per manifest), the attestation-service
policy and the KBS resource policy generated from them (:mod:`teeform.trustee.rego`), and the sealed
resource ``resource/teeform/<target>/key`` (32 random bytes created in the KBS, never in the state).

**What the gate pins** depends on the verifier (docs/trustee.md):

* ``tdx`` (Alibaba g8i / gn8v-tee, GCP c3): **our image** -- the UKI's Authenticode SHA-384 as the
  RTMR1 event of ``EFI/BOOT/BOOTX64.EFI``, ``rtmr_1`` and ``rtmr_2`` (stub >= 256) when the manifest
  records them; **the platform** -- ``mr_td`` only when the config supplies it (the cloud's TDVF),
  Intel's quote signature, ``tcb_status`` (default ``UpToDate``) and a non-debug TD.
* ``az-snp-vtpm`` / ``az-tdx-vtpm`` (Azure CVMs): **our image** -- ``pcr11`` (SHA-256, systemd-stub's
  UKI measurement); **the platform** -- the HCL report's binding to an AMD/Intel attestation and a
  non-debug guest (TCB status for TDX).

Where the KBS comes from:

* :func:`existing_kbs` -- ``keyBroker.url`` plus the admin private key (Ed25519 PEM) from the Pulumi
  secret config key named by ``keyBroker.adminKeySecret`` (default ``teeform:kbsAdminKey``), and an
  optional CA certificate from ``keyBroker.caCertConfig``;
* :func:`deployed_kbs` -- a KBS that a cloud builder deploys (e.g. ``components/alicloud/trustee_host.py``),
  with the admin key pair and TLS certificate generated inside the program
  (:class:`~components.trustee.provider.GeneratedKeyPair`) and kept as secrets.

The KBS-wide parts (the AS policy, the resource policy) make **one KBS serve one teeform target**;
a second target naming the same KBS URL in one program is refused (:func:`attach_key_broker`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi

from components.trustee.provider import KbsRegistration
from teeform.errors import TeeformError
from teeform.targets.base import TeeType
from teeform.trustee.reference_values import TrusteeOptions, TrusteeReferenceValues, Verifier, reference_values
from teeform.trustee.rego import attestation_policy, resource_policy

#: Component type token.
KEY_BROKER_TYPE = "teeform:trustee:KeyBroker"
#: The dynamic resource's type token (``pulumi.dynamic.Resource`` with module/name, pulumi.md §6.1).
KBS_REGISTRATION_TYPE = "pulumi-python:dynamic/trustee:KbsRegistration"
#: KBS resource repository of teeform's sealed resources (``resource/<repository>/<target>/<tag>``).
REPOSITORY = "teeform"
#: The sealed resource tag every target gets.
KEY_TAG = "key"

#: Which verifiers can appraise which TEE type (Trustee ``deps/verifier/src``).
VERIFIERS_FOR_TEE: Mapping[TeeType, frozenset[Verifier]] = {
    TeeType.TDX: frozenset({Verifier.TDX, Verifier.AZ_TDX_VTPM}),
    TeeType.SEV_SNP: frozenset({Verifier.AZ_SNP_VTPM}),
}

_URLS_IN_USE: dict[str, str] = {}


@dataclass(frozen=True)
class KbsEndpoint:
    """How to reach a KBS's admin API.

    Attributes:
        url: base URL (``https://host:8080``); a plain string, or an output of a deployed KBS.
        admin_key_pem: Ed25519 admin private key, PKCS#8 PEM (a secret output).
        ca_cert_pem: certificate to trust (None = system store).
        pin_only: trust exactly ``ca_cert_pem`` without a host-name match (teeform's self-signed KBS).
        role / issuer / audience: admin JWT claims (kbs/docs/admin.md).
        key: a stable name of this KBS for the one-target-per-KBS check (the URL when it is a string).
        wait_seconds: how long the registration waits for the KBS to answer (a just-deployed VM).
    """

    url: pulumi.Input[str]
    admin_key_pem: pulumi.Input[str]
    ca_cert_pem: pulumi.Input[str] | None = None
    pin_only: bool = False
    role: str = "teeform-admin"
    issuer: str | None = None
    audience: str | None = None
    key: str | None = None
    wait_seconds: int = 0


#: The placeholder admin key of an offline (mock-engine) run without the secret (never sent anywhere).
OFFLINE_ADMIN_KEY = "offline preview: the KBS admin key secret is not loaded"


def _offline() -> bool:
    """Whether the program runs under the SDK's mock engine (``teeform preview``, tests): no provider runs."""
    from pulumi.runtime.mocks import MockMonitor
    from pulumi.runtime.settings import get_monitor

    return isinstance(get_monitor(), MockMonitor)


def existing_kbs(url: str, *, admin_key_secret: str = "kbsAdminKey", ca_cert_config: str | None = None,
                 where: str = "keyBroker", source: str | None = None, target: str | None = None,
                 offline_placeholder: bool = False) -> KbsEndpoint:
    """An existing KBS: ``url`` and the admin key from the secret Pulumi config ``teeform:<admin_key_secret>``
    (every target kind that names an existing KBS comes here).

    A missing secret is an error, except with ``offline_placeholder`` under the SDK's mock engine
    (``teeform preview``, tests): then it is a warning and :data:`OFFLINE_ADMIN_KEY` stands in (nothing
    is sent to a KBS offline). The VM key-broker targets ask for that; alicloud/tdx does not (yet).

    Args:
        where: the field prefix for messages (``teeform:targets[<name>].keyBroker`` or ``teeform:<config>``).
        source: the stack file, for messages; ``target``: the target name, for the offline warning.

    Raises:
        TeeformError: the secret is not set under the real engine (``pulumi config set --secret
            teeform:kbsAdminKey < key.pem``), or the CA certificate config key names nothing.
    """
    cfg = pulumi.Config("teeform")
    secret: pulumi.Input[str] | None = cfg.get_secret(admin_key_secret)
    if secret is None:
        if not (offline_placeholder and _offline()):
            raise TeeformError(f"the KBS admin key is not set: secret config teeform:{admin_key_secret} is missing",
                               path=source, field=f"{where}.adminKeySecret",
                               hint=f"pulumi config set --secret teeform:{admin_key_secret} < kbs-admin-key.pem")
        pulumi.log.warn(f"target {target!r}: secret config teeform:{admin_key_secret} (the KBS admin key) is not "
                        "loaded offline; `pulumi up` needs it")
        secret = pulumi.Output.secret(OFFLINE_ADMIN_KEY)
    ca = cfg.get(ca_cert_config) if ca_cert_config else None
    if ca_cert_config and ca is None:
        raise TeeformError(f"config teeform:{ca_cert_config} (the KBS CA certificate) is missing", path=source,
                           field=f"{where}.caCertConfig")
    return KbsEndpoint(url, secret, ca, key=url)


def deployed_kbs(url: pulumi.Input[str], admin_key_pem: pulumi.Input[str], tls_cert_pem: pulumi.Input[str],
                 key: str) -> KbsEndpoint:
    """A KBS a builder deployed, reached by IP with its generated certificate pinned."""
    return KbsEndpoint(url, admin_key_pem, tls_cert_pem, pin_only=True, key=key, wait_seconds=900)


class KeyBroker(pulumi.ComponentResource):
    """One target's reference values, policies and sealed key in one KBS.

    Outputs: ``kbs_url``, ``reference_value_ids`` (sorted), ``key_resource`` (``resource/teeform/<target>/key``).
    """

    def __init__(self, name: str, rv: TrusteeReferenceValues, endpoint: KbsEndpoint,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(KEY_BROKER_TYPE, name, {"target": rv.target, "verifier": rv.options.verifier.value}, opts)
        self.rv = rv
        props: dict[str, Any] = {
            "kbs_url": endpoint.url, "target": rv.target, "repository": REPOSITORY,
            "verifier": rv.options.verifier.value,
            "admin_key_pem": pulumi.Output.secret(endpoint.admin_key_pem),
            "ca_cert_pem": endpoint.ca_cert_pem, "pin_only": endpoint.pin_only, "role": endpoint.role,
            "issuer": endpoint.issuer, "audience": endpoint.audience, "wait_seconds": endpoint.wait_seconds,
            "rvps_message": rv.message(), "reference_value_ids": list(rv.ids),
            "attestation_policy": attestation_policy(rv), "resource_policy": resource_policy(rv, repository=REPOSITORY),
            "resources": [KEY_TAG],
        }
        self.registration = KbsRegistration(f"{name}-kbs", props, pulumi.ResourceOptions(parent=self))
        self.kbs_url = pulumi.Output.from_input(endpoint.url)
        self.reference_value_ids = list(rv.ids)
        self.key_resource = f"resource/{REPOSITORY}/{rv.target}/{KEY_TAG}"
        self.register_outputs({"kbs_url": self.kbs_url, "reference_value_ids": self.reference_value_ids,
                               "key_resource": self.key_resource})


def _measurements(m: Any) -> tuple[str, Mapping[str, str]]:
    """``(key, measurements)`` from a LoadedManifest, a ``(key, Manifest)`` or a ``(key, mapping)``."""
    if hasattr(m, "key") and hasattr(m, "manifest"):
        return m.key, m.manifest.measurements
    key, val = m
    return key, (val.measurements if hasattr(val, "measurements") else val)


def attach_key_broker(target_name: str, manifests: Sequence[Any], tee: TeeType | str, verifier: Verifier | str, *,
                      endpoint: KbsEndpoint, options: TrusteeOptions | None = None,
                      opts: pulumi.ResourceOptions | None = None) -> dict[str, Any]:
    """Give ``target_name`` an image-pinned key in a Trustee KBS; callable from any target builder.

    Args:
        target_name: the target's name (``[a-z][a-z0-9-]*``).
        manifests: the allowed manifests, first = deployed: ``LoadedManifest`` objects (a builder's
            ``ctx.manifests``), or ``(key, Manifest)`` / ``(key, {name: hex})`` pairs.
        tee: the target's TEE type (``tdx`` or ``sev-snp``).
        verifier: the Trustee verifier its evidence goes to (``tdx``, ``az-tdx-vtpm``, ``az-snp-vtpm``).
        endpoint: the KBS (:func:`existing_kbs` or :func:`deployed_kbs`).
        options: pins, MRTDs, TCB statuses (default: all values the manifests record, ``UpToDate``).
        opts: Pulumi options of the component (e.g. ``parent``).

    Returns:
        Stack outputs: ``kbs_url``, ``reference_value_ids``, ``key_resource``.

    Raises:
        TeeformError: the verifier cannot appraise ``tee``, a manifest lacks a value to pin, or the
            KBS already serves another target of this program.
    """
    tee = TeeType(tee)
    v = Verifier(verifier)
    if v not in VERIFIERS_FOR_TEE.get(tee, frozenset()):
        ok = sorted(x.value for x in VERIFIERS_FOR_TEE.get(tee, frozenset())) or "none"
        raise TeeformError(f"Trustee verifier {v.value!r} cannot appraise {tee.value} evidence (usable: {ok})",
                           field=f"teeform:targets[{target_name}].keyBroker.verifier")
    opts_ = options or TrusteeOptions(v)
    if opts_.verifier is not v:
        raise TeeformError(f"options are for verifier {opts_.verifier.value}, not {v.value}")
    kbs = endpoint.key or (endpoint.url if isinstance(endpoint.url, str) else None)
    if kbs is not None:
        key = f"{pulumi.get_project()}/{pulumi.get_stack()}/{kbs}"
        other = _URLS_IN_USE.get(key)
        if other is not None and other != target_name:
            raise TeeformError(f"KBS {kbs} already serves target {other!r}: its attestation and resource policies are "
                               "KBS-wide, so one KBS serves one teeform target",
                               field=f"teeform:targets[{target_name}].keyBroker.url")
        _URLS_IN_USE[key] = target_name
    try:
        rv = reference_values(target_name, [_measurements(m) for m in manifests], opts_)
    except TeeformError as exc:
        raise TeeformError(exc.message, hint=exc.hint,
                           field=f"teeform:targets[{target_name}]" + (f".{exc.field}" if exc.field else "")) from exc
    broker = KeyBroker(f"{target_name}-key-broker", rv, endpoint, opts)
    return {"kbs_url": broker.kbs_url, "reference_value_ids": broker.reference_value_ids,
            "key_resource": broker.key_resource}


def _reset_for_tests() -> None:
    """Forget which KBS serves which target (each Pulumi program run starts empty)."""
    _URLS_IN_USE.clear()


__all__ = ["KEY_BROKER_TYPE", "KBS_REGISTRATION_TYPE", "REPOSITORY", "KEY_TAG", "VERIFIERS_FOR_TEE", "KbsEndpoint",
           "KeyBroker", "existing_kbs", "deployed_kbs", "attach_key_broker", "OFFLINE_ADMIN_KEY"]
