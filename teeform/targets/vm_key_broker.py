"""The optional ``keyBroker:`` setting of the Azure and GCP confidential-VM targets (issue 11 item 4).

Azure Key Vault secure key release and Google's confidential-VM token pin **the platform** only
(``shared/reference/clouds.md`` §2.4, §3.2). With ``keyBroker:`` the target also gets a secret in a
Trustee KBS (:func:`components.trustee.broker.attach_key_broker`) that is released only to evidence of
**our image** (docs/trustee.md "What each key release pins")::

    keyBroker:
      kbs: https://kbs.example.com:8080     # the KBS admin API base URL, http(s)://host[:port] ...
      # kbs: kbsAzure                       # ... or the name of a Pulumi config key teeform:<name> holding
      #                                     #     {url, adminKeySecret?, caCertConfig?} (a "trustee endpoint config")
      verifier: az-snp-vtpm                 # optional; the only one per pair, see VERIFIERS below
      adminKeySecret: kbsAdminKey           # secret config teeform:<name>: the Ed25519 admin key (PKCS#8 PEM)
      caCertConfig: kbsCaCert               # optional: config key holding the KBS CA certificate (PEM)
      pins: [pcr11]                         # optional: default = every value the manifests record
      mrTd: [<96 hex>]                      # optional, TDX quotes only: the firmware's MRTD (pins the platform)
      tcbStatuses: [UpToDate]               # optional, TDX quotes only

What each verifier pins, per pair (claims and sources: :mod:`teeform.trustee.reference_values`):

* ``azure``/``sev-snp`` -> ``az-snp-vtpm``, ``azure``/``tdx`` -> ``az-tdx-vtpm``: ``tpm.pcr11`` = the
  manifest's ``pcr11_sha256`` (systemd-stub's measurement of the UKI sections; clouds.md §2.1, §2.6),
  one set per allowed manifest. The Azure TD's/SNP guest's own MRTD/RTMRs or launch digest cover
  Microsoft's paravisor, not the UKI (clouds.md §2.1), so the ``tdx`` verifier is refused there.
* ``gcp``/``tdx`` -> ``tdx``: the UKI's Authenticode SHA-384 in the RTMR1 event log, ``rtmr_1`` and
  ``rtmr_2`` when recorded (clouds.md §3.2, §4.4; RTMR1 may differ on Google's TDVF, §8 q.11: use
  ``pins: [uki, rtmr_2]`` then).
* ``gcp``/``sev-snp``: **refused** -- teeform feeds no Trustee verifier that appraises GCP SEV-SNP
  evidence (:class:`teeform.trustee.reference_values.Verifier` has ``tdx``, ``az-tdx-vtpm``,
  ``az-snp-vtpm``; the launch digest of a GCP SEV-SNP guest is Google's firmware, clouds.md §3.2).

Parsing is strict: unknown keys, a verifier the pair cannot use, a bad URL or config-key name, pins
or MRTDs are errors naming ``teeform:targets[i].keyBroker.<field>``. Pure: no Pulumi import
(contract ``preview-runner-owns-pulumi``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, ClassVar

from teeform.errors import TeeformError
from teeform.targets.base import (
    Cloud,
    TargetSettings,
    TeeType,
    fail,
    read_map,
    read_opt_str,
    read_str,
    read_str_list,
    reanchor,
)
from teeform.trustee.reference_values import TrusteeOptions, Verifier

#: The keys of ``keyBroker:`` on a VM target.
KEYS = frozenset({"kbs", "verifier", "adminKeySecret", "caCertConfig", "pins", "mrTd", "tcbStatuses"})
#: The Trustee verifier of each (cloud, TEE type) that may carry ``keyBroker:`` (module docstring).
VERIFIERS: Mapping[tuple[Cloud, TeeType], Verifier] = {
    (Cloud.AZURE, TeeType.SEV_SNP): Verifier.AZ_SNP_VTPM,
    (Cloud.AZURE, TeeType.TDX): Verifier.AZ_TDX_VTPM,
    (Cloud.GCP, TeeType.TDX): Verifier.TDX,
}
#: A KBS admin API base URL (as :func:`teeform.targets.alicloud_tdx.parse_key_broker` accepts it).
_URL = re.compile(r"^https?://[^/?#\s]+/?$")
#: A Pulumi config key name inside the ``teeform`` namespace.
_CONFIG_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")

#: What the Azure Key Vault key pins when the target also has a broker (the ``key_gate`` output then
#: continues with :data:`BROKER_PINS`); the same fact as :data:`teeform.azure_release.GATE_PINS`.
AZURE_KEY_PINS = ("the Azure Key Vault key pins the platform (a genuine Azure confidential VM, its TEE type and "
                  "compliance status, attested by the configured authority), not the image")
#: What the Trustee-released secret pins, per verifier: said in the plug-in gate and the ``key_broker_gate`` output.
BROKER_PINS: Mapping[Verifier, str] = {
    Verifier.AZ_SNP_VTPM: ("the Trustee-released secret resource/teeform/<target>/key pins our image (vTPM PCR 11 "
                           "SHA-256 of one allowed manifest, az-snp-vtpm verifier) on the platform (HCL report bound to "
                           "an AMD-signed SNP report, no debug, no migration agent)"),
    Verifier.AZ_TDX_VTPM: ("the Trustee-released secret resource/teeform/<target>/key pins our image (vTPM PCR 11 "
                           "SHA-256 of one allowed manifest, az-tdx-vtpm verifier) on the platform (HCL report bound to "
                           "an Intel-signed TDX quote, accepted TCB status, not a debug TD, MRTD only when configured)"),
    Verifier.TDX: ("the Trustee-released secret resource/teeform/<target>/key pins our image (UKI Authenticode "
                   "SHA-384 in the RTMR1 event log, RTMR1/RTMR2 when recorded, tdx verifier) on the platform "
                   "(Intel-signed quote, accepted TCB status, not a debug TD, MRTD only when configured)"),
}


@dataclass(frozen=True)
class VmKeyBroker:
    """A parsed ``keyBroker:`` of a VM target.

    Attributes:
        options: the Trustee appraisal options (verifier, pins, MRTDs, TCB statuses).
        url: the KBS base URL when ``kbs`` is a URL, else None.
        endpoint_config: the config key ``teeform:<name>`` holding the endpoint when ``kbs`` is a name, else None.
        admin_key_secret: the secret config key (in ``teeform``) of the Ed25519 admin key.
        ca_cert_config: the config key of the KBS CA certificate, or None (system trust store).
    """

    options: TrusteeOptions
    url: str | None = None
    endpoint_config: str | None = None
    admin_key_secret: str = "kbsAdminKey"
    ca_cert_config: str | None = None

    @property
    def kbs(self) -> str:
        """``kbs`` as written: the URL or the endpoint config name."""
        return self.url or self.endpoint_config or ""


def check_kbs_url(url: str, source: str, fld: str) -> str:
    """``url`` if it is ``http(s)://host[:port]`` (the KBS admin API base; ``kbs/docs/kbs.yaml`` paths follow).

    Raises:
        TeeformError: otherwise, naming ``source`` and ``fld``.
    """
    if not _URL.match(url):
        raise fail(f"must be http(s)://host[:port], got {url!r}", source, fld)
    return url.rstrip("/")


def check_config_name(name: str, source: str, fld: str) -> str:
    """``name`` if usable as a Pulumi config key in the ``teeform`` namespace (``[A-Za-z][A-Za-z0-9_-]*``)."""
    if not _CONFIG_NAME.match(name):
        raise fail(f"must be a config key name ([A-Za-z][A-Za-z0-9_-]*, without 'teeform:'), got {name!r}",
                   source, fld)
    return name


def parse_trustee_options(kb: Mapping[str, Any], source: str, fld: str, default_verifier: Verifier) -> TrusteeOptions:
    """The :class:`TrusteeOptions` of a ``keyBroker`` mapping: ``verifier`` (default
    ``default_verifier``), ``pins``, ``mrTd`` and ``tcbStatuses`` (default ``["UpToDate"]``).

    Shared by :func:`parse_vm_key_broker` and :func:`teeform.targets.alicloud_tdx.parse_key_broker`.

    Raises:
        TeeformError: naming ``source`` and ``fld.<key>``: an unknown verifier, empty pins, a bad
            MRTD or TCB status (the options' own checks, re-raised under this field).
    """
    verifier_s = read_opt_str(kb.get("verifier"), source, f"{fld}.verifier") or default_verifier.value
    try:
        verifier = Verifier(verifier_s)
    except ValueError:
        raise fail(f"unknown Trustee verifier {verifier_s!r}; known: {[v.value for v in Verifier]}",
                   source, f"{fld}.verifier") from None
    pins = read_str_list(kb["pins"], source, f"{fld}.pins", non_empty=True) if "pins" in kb else None
    try:
        return TrusteeOptions(verifier, pins=pins,
                              mr_td=tuple(x.lower() for x in read_str_list(kb.get("mrTd"), source, f"{fld}.mrTd")),
                              tcb_statuses=read_str_list(kb.get("tcbStatuses"), source, f"{fld}.tcbStatuses")
                              or ("UpToDate",))
    except TeeformError as exc:
        if exc.path:
            raise
        sub = (exc.field or "").removeprefix("keyBroker")
        raise reanchor(exc, source, f"{fld}{sub}") from None


def parse_vm_key_broker(raw: Any, source: str, fld: str, cloud: Cloud, tee: TeeType) -> VmKeyBroker | None:
    """Parse ``keyBroker:`` of a ``cloud``/``tee`` target (None when absent).

    Args:
        raw: the ``keyBroker`` value of the target (a mapping, or None).
        source: the stack file (for messages).
        fld: ``teeform:targets[i].keyBroker``.
        cloud, tee: the target's pair (picks the verifier, :data:`VERIFIERS`).

    Raises:
        TeeformError: naming ``source`` and the field: an unknown key, ``kbs`` missing or neither a URL nor a
            config name, a verifier the pair cannot use, a pair without a Trustee verifier (gcp/sev-snp), bad
            pins, MRTDs or TCB statuses.
    """
    if raw is None:
        return None
    pair = (cloud, tee)
    if pair not in VERIFIERS:
        raise fail(f"{cloud.value}/{tee.value} targets cannot use a Trustee key broker: no Trustee verifier teeform "
                   f"feeds appraises this evidence (verifiers: {[v.value for v in Verifier]}; pairs: "
                   f"{sorted(f'{c.value}/{t.value}' for c, t in VERIFIERS)})", source, fld)
    kb = read_map(raw, source, fld, set(KEYS))
    if "kbs" not in kb:
        raise fail("needs 'kbs': the KBS URL (https://host:port) or the name of a config key teeform:<name> "
                   "holding {url, adminKeySecret, caCertConfig}", source, f"{fld}.kbs")
    kbs = read_str(kb["kbs"], source, f"{fld}.kbs")
    want = VERIFIERS[pair]
    options = parse_trustee_options(kb, source, fld, want)
    if options.verifier is not want:
        raise fail(f"{cloud.value}/{tee.value} evidence is appraised by the {want.value} verifier, not "
                   f"{options.verifier.value}", source, f"{fld}.verifier")
    admin = read_opt_str(kb.get("adminKeySecret"), source, f"{fld}.adminKeySecret")
    ca = read_opt_str(kb.get("caCertConfig"), source, f"{fld}.caCertConfig")
    for name, value in (("adminKeySecret", admin), ("caCertConfig", ca)):
        if value is not None:
            check_config_name(value, source, f"{fld}.{name}")
    if "://" in kbs:
        return VmKeyBroker(options, url=check_kbs_url(kbs, source, f"{fld}.kbs"), admin_key_secret=admin or "kbsAdminKey",
                           ca_cert_config=ca)
    if admin is not None or ca is not None:
        raise fail(f"with kbs naming the endpoint config teeform:{kbs}, put adminKeySecret/caCertConfig in that config",
                   source, f"{fld}.{'adminKeySecret' if admin is not None else 'caCertConfig'}")
    return VmKeyBroker(options, endpoint_config=check_config_name(kbs, source, f"{fld}.kbs"))


def with_key_broker(cls: type[TargetSettings], base: TargetSettings, key_broker: VmKeyBroker | None) -> Any:
    """An instance of settings class ``cls`` (a subclass of ``type(base)`` adding ``key_broker``) with
    ``base``'s fields and ``key_broker``."""
    return cls(**{f.name: getattr(base, f.name) for f in fields(base)}, key_broker=key_broker)  # type: ignore[call-arg]


def gate_with_broker(platform_gate: str, verifier: Verifier) -> str:
    """The plug-in gate sentence of a pair that may carry ``keyBroker:``: the native gate, then the broker's."""
    return f"{platform_gate}; with keyBroker: {BROKER_PINS[verifier]}"


__all__ = ["KEYS", "VERIFIERS", "BROKER_PINS", "AZURE_KEY_PINS", "VmKeyBroker", "check_kbs_url", "check_config_name",
           "parse_trustee_options",
           "parse_vm_key_broker", "with_key_broker", "gate_with_broker"]


class KeyBrokerPlugin:
    """Mix-in for a VM target plug-in whose targets may carry ``keyBroker:`` (put it before the base plug-in).

    The subclass sets :attr:`broker_settings` (its settings class plus a ``key_broker: VmKeyBroker | None``
    field); :meth:`parse_settings` parses ``keyBroker`` and the base plug-in parses the rest.
    :meth:`key_release` is the Trustee sets (one per allowed manifest, all values together) when the
    target has a broker, else the base plug-in's.
    """

    broker_settings: ClassVar[type[TargetSettings]]
    cloud: ClassVar[Cloud]
    tee: ClassVar[TeeType]

    def parse_settings(self, raw: Mapping[str, Any], source: str, fld: str) -> Any:
        """The base settings plus ``key_broker`` (:func:`parse_vm_key_broker`)."""
        kb = parse_vm_key_broker(raw.get("keyBroker"), source, f"{fld}.keyBroker", self.cloud, self.tee)
        base = super().parse_settings({k: v for k, v in raw.items() if k != "keyBroker"}, source, fld)  # type: ignore[misc]
        return with_key_broker(self.broker_settings, base, kb)

    def key_release(self, target_name: str, settings: TargetSettings, manifests: Any) -> Any:
        """With a broker: the Trustee reference-value sets in teeform measurement names
        (:meth:`teeform.trustee.reference_values.TrusteeReferenceValues.key_release`); else the base gate's."""
        kb = getattr(settings, "key_broker", None)
        if kb is None:
            return super().key_release(target_name, settings, manifests)  # type: ignore[misc]
        from teeform.trustee.reference_values import reference_values

        return reference_values(target_name, [(k, m.measurements) for k, m in manifests], kb.options).key_release()


__all__ += ["KeyBrokerPlugin"]
