"""Reference values for Trustee's RVPS, from teeform manifests: one measurement set per allowed manifest.

**What each Trustee verifier checks, and which teeform value it is** (claim shapes read from
confidential-containers/trustee@78962cd4; ``shared/reference/clouds.md`` §2.6, §3.2, §4.3-§4.4):

=============  ==============================================  =========================  =============
verifier       claim (policy ``input`` path)                   teeform value              pins
=============  ==============================================  =========================  =============
``tdx``        ``input.tdx.uefi_event_logs[]`` entry with       ``uki_authenticode_sha384``  our image
               ``type_name`` EV_EFI_BOOT_SERVICES_APPLICATION,
               ``index`` 2 (CC MR 2 = RTMR1), a
               ``details.device_paths[]`` item
               ``File(\\EFI\\BOOT\\BOOTX64.EFI)`` and
               ``digests[{alg: "SHA-384", digest}]``
``tdx``        ``input.tdx.quote.body.rtmr_1``                 ``rtmr1``                  our image (if
                                                                                          the cloud's
                                                                                          firmware emits
                                                                                          teeform's
                                                                                          event sequence)
``tdx``        ``input.tdx.quote.body.rtmr_2``                 ``rtmr2`` (systemd-stub     our image
                                                               >= 256 only)
``tdx``        ``input.tdx.quote.body.mr_td``                  none: the config supplies  the platform
                                                               it (the cloud's TDVF)      (firmware)
``az-*-vtpm``  ``input["az-tdx-vtpm"].tpm.pcr11`` /            ``pcr11_sha256``           our image
               ``input["az-snp-vtpm"].tpm.pcr11``
=============  ==============================================  =========================  =============

Claim sources: ``deps/verifier/src/tdx/claims.rs`` (``quote.body.*`` as lowercase hex,
``td_attributes.debug``), ``deps/verifier/src/intel_dcap/claims.rs`` (``tcb_status``,
``collateral_expiration_status``), ``deps/eventlog/src/ccel/boot_services_app.rs`` (device path
strings such as ``File(\\EFI\\BOOT\\BOOTX64.EFI)``), ``deps/verifier/test_data/parse_tdx_claims_expected.json``
(the ``uefi_event_logs[]`` entry shape), ``deps/verifier/src/az_snp_vtpm/mod.rs`` (``tpm.pcr{:02}``
as SHA-256 hex; ``policy_debug_allowed`` as the *string* ``"true"``/``"false"``),
``deps/verifier/src/az_tdx_vtpm/mod.rs``; the evidence is placed under the verifier's name by
``attestation-service/src/ear_token/broker.rs::transform_claims``.

**RVPS message** (``rvps/src/lib.rs`` ``Message``, ``rvps/src/extractors/sample/mod.rs``): ``{"version":
"0.1.0", "type": "sample", "payload": <standard base64 of {"<id>": <JSON value>, ...}>}``. The sample
extractor stores each top-level key as one reference value whose value is the JSON given (teeform
always gives a list of lowercase hex strings); ``query_reference_value("<id>")`` in the policy returns
it, or ``null`` when unknown (``broker.rs``). Sample values are not signature-checked and expire 12
months after registration (clouds.md §4.3): ``pulumi up`` re-registers them.

**Tuple semantics**: each allowed manifest becomes its own reference-value ids
(``teeform.<target>.<set id>.<claim>``, the set id being a digest of the set's values), and the
generated policy (:mod:`teeform.trustee.rego`) requires all ids of one set together, so values of two
builds never combine (teeform.keyrelease). Deleting means registering the same ids with ``[]``
(the KBS admin API has no delete for reference values, ``kbs/src/api_server.rs``).
"""

from __future__ import annotations

import base64
import enum
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from teeform.errors import TeeformError
from teeform.keyrelease import KeyReleasePolicy, MeasurementSet
from teeform.measurements import BY_NAME

#: RVPS message version (``rvps/src/lib.rs`` ``MESSAGE_VERSION``).
MESSAGE_VERSION = "0.1.0"
#: RVPS extractor type for plain JSON provenance (``rvps/src/extractors/sample``).
MESSAGE_TYPE = "sample"

_HEX = re.compile(r"^[0-9a-f]+$")
#: Target names as they may appear in reference-value ids and Rego rule names.
_TARGET = re.compile(r"^[a-z][a-z0-9-]{0,62}$")


class Verifier(enum.StrEnum):
    """Trustee verifiers teeform feeds (their names are the KBS ``/auth`` ``tee`` enum, kbs/docs/kbs.yaml,
    and the top-level key of the policy input)."""

    TDX = "tdx"
    AZ_TDX_VTPM = "az-tdx-vtpm"
    AZ_SNP_VTPM = "az-snp-vtpm"


#: Per verifier: Trustee claim name -> teeform manifest measurement (table :data:`teeform.measurements.MEASUREMENTS`).
CLAIMS: Mapping[Verifier, Mapping[str, str]] = MappingProxyType({
    Verifier.TDX: MappingProxyType({"uki": "uki_authenticode_sha384", "rtmr_1": "rtmr1", "rtmr_2": "rtmr2"}),
    Verifier.AZ_TDX_VTPM: MappingProxyType({"pcr11": "pcr11_sha256"}),
    Verifier.AZ_SNP_VTPM: MappingProxyType({"pcr11": "pcr11_sha256"}),
})
#: Claims every set of a verifier must pin (the others are pinned when the manifest records them).
REQUIRED_CLAIMS: Mapping[Verifier, frozenset[str]] = MappingProxyType({
    Verifier.TDX: frozenset({"uki"}),
    Verifier.AZ_TDX_VTPM: frozenset({"pcr11"}),
    Verifier.AZ_SNP_VTPM: frozenset({"pcr11"}),
})
#: Verifiers whose evidence carries a TDX quote (``quote.header``, ``quote.body.mr_td``, ``tcb_status``).
TDX_QUOTE_VERIFIERS = frozenset({Verifier.TDX, Verifier.AZ_TDX_VTPM})
#: Intel TCB statuses (DCAP ``tcb_status`` claim, ``deps/verifier/src/intel_dcap/claims.rs``).
TCB_STATUSES = ("UpToDate", "SWHardeningNeeded", "ConfigurationNeeded", "ConfigurationAndSWHardeningNeeded",
                "OutOfDate", "OutOfDateConfigurationNeeded")


@dataclass(frozen=True)
class TrusteeOptions:
    """How a target's evidence is appraised (the target's ``keyBroker`` settings).

    Attributes:
        verifier: the Trustee verifier that will see the target's evidence.
        pins: Trustee claims to pin (subset of :data:`CLAIMS` ``[verifier]``); None = all that each
            manifest records. ``rtmr_1`` may need dropping where the cloud's firmware does not emit
            teeform's OVMF event sequence (clouds.md §8 q.15).
        mr_td: allowed MRTD values (96 lowercase hex each; the cloud's firmware, observed once on a
            live instance). Empty = MRTD not pinned (then the gate does not pin the firmware).
        tcb_statuses: accepted ``tcb_status`` values (TDX-quote verifiers); default ``UpToDate`` only.
    """

    verifier: Verifier
    pins: tuple[str, ...] | None = None
    mr_td: tuple[str, ...] = ()
    tcb_statuses: tuple[str, ...] = ("UpToDate",)

    def __post_init__(self) -> None:
        known = CLAIMS[self.verifier]
        for p in self.pins or ():
            if p not in known:
                raise TeeformError(f"{p!r} is not a {self.verifier.value} claim teeform pins; known: {sorted(known)}",
                                   field="keyBroker.pins")
        if self.pins is not None:
            for p in REQUIRED_CLAIMS[self.verifier]:
                if p not in self.pins:
                    raise TeeformError(f"{self.verifier.value} sets must pin {p!r}", field="keyBroker.pins")
        for i, v in enumerate(self.mr_td):
            if self.verifier not in TDX_QUOTE_VERIFIERS:
                raise TeeformError(f"mrTd applies to TDX quotes, not {self.verifier.value}", field="keyBroker.mrTd")
            if len(v) != 96 or not _HEX.match(v):
                raise TeeformError(f"must be 96 lowercase hex digits (SHA-384), got {v!r}", field=f"keyBroker.mrTd[{i}]")
        if not self.tcb_statuses:
            raise TeeformError("at least one TCB status must be accepted", field="keyBroker.tcbStatuses")
        for i, s in enumerate(self.tcb_statuses):
            if s not in TCB_STATUSES:
                raise TeeformError(f"unknown TCB status {s!r}; known: {list(TCB_STATUSES)}",
                                   field=f"keyBroker.tcbStatuses[{i}]")


@dataclass(frozen=True)
class TrusteeSet:
    """One allowed manifest as Trustee reference values: claim -> (RV id, lowercase hex value).

    Attributes:
        manifest_key: the manifest's export key.
        set_id: ``m`` + the first 12 hex digits of SHA-256 over the canonical JSON of ``values``.
        values: Trustee claim name (``uki``, ``rtmr_1``, ``pcr11``...) -> lowercase hex.
        ids: Trustee claim name -> reference-value id (``teeform.<target>.<set id>.<claim>``).
    """

    manifest_key: str
    set_id: str
    values: Mapping[str, str] = field(default_factory=dict)
    ids: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class TrusteeReferenceValues:
    """Everything a target registers in the RVPS.

    Attributes:
        target: the target name.
        options: the appraisal options.
        sets: one :class:`TrusteeSet` per distinct allowed manifest, first = deployed.
        mr_td_id: reference-value id of the allowed MRTDs, or None when not pinned.
    """

    target: str
    options: TrusteeOptions
    sets: tuple[TrusteeSet, ...]
    mr_td_id: str | None

    def provenance(self) -> dict[str, list[str]]:
        """The sample provenance: reference-value id -> list of allowed lowercase hex values."""
        out: dict[str, list[str]] = {}
        for s in self.sets:
            for claim, rv_id in s.ids.items():
                out[rv_id] = [s.values[claim]]
        if self.mr_td_id:
            out[self.mr_td_id] = list(self.options.mr_td)
        return out

    @property
    def ids(self) -> tuple[str, ...]:
        """Every reference-value id, sorted."""
        return tuple(sorted(self.provenance()))

    def message(self) -> dict[str, str]:
        """The RVPS registration message (the ``POST /kbs/v0/reference-value`` body)."""
        return sample_message(self.provenance())

    def tombstone(self) -> dict[str, str]:
        """A message that empties every id of this target (what deleting means for the RVPS)."""
        return sample_message({k: [] for k in self.provenance()})

    def key_release(self) -> KeyReleasePolicy:
        """The same sets in the cloud-neutral model (teeform measurement names), for policies and outputs."""
        sets = []
        for s in self.sets:
            names = CLAIMS[self.options.verifier]
            sets.append(MeasurementSet(s.manifest_key, {names[c]: v for c, v in s.values.items()}))
        return KeyReleasePolicy(self.target, tuple(sets))


def sample_message(provenance: Mapping[str, Any]) -> dict[str, str]:
    """``{"version": "0.1.0", "type": "sample", "payload": base64(JSON(provenance))}``.

    ``payload`` is standard base64 with padding (``base64::engine::general_purpose::STANDARD`` in
    ``rvps/src/extractors/sample/mod.rs``) of compact, key-sorted UTF-8 JSON.
    """
    payload = json.dumps(dict(provenance), sort_keys=True, separators=(",", ":")).encode()
    return {"version": MESSAGE_VERSION, "type": MESSAGE_TYPE, "payload": base64.b64encode(payload).decode("ascii")}


def check_target_name(target: str) -> str:
    """``target`` if usable in reference-value ids and Rego rule names (``[a-z][a-z0-9-]{0,62}``).

    Raises:
        TeeformError: otherwise.
    """
    if not _TARGET.match(target):
        raise TeeformError(f"target name {target!r} must match [a-z][a-z0-9-]* (max 63) to name Trustee reference values",
                           field="name")
    return target


def reference_values(target: str, manifests: Sequence[tuple[str, Mapping[str, str]]],
                     options: TrusteeOptions) -> TrusteeReferenceValues:
    """Build a target's reference values from its allowed manifests.

    Args:
        target: the target name (:func:`check_target_name`).
        manifests: ``(export key, measurements)`` per allowed manifest, first = deployed; the
            measurements are a manifest's ``measurements`` (name -> lowercase hex).
        options: verifier, pins, MRTDs, TCB statuses.

    Returns:
        One set per distinct manifest (two manifests with identical pinned values give one set).

    Raises:
        TeeformError: no manifests, a manifest lacking a required value (``uki_authenticode_sha384``
            for ``tdx``, ``pcr11_sha256`` for the vTPM verifiers) or a pinned one, or a value of the
            wrong length.
    """
    check_target_name(target)
    if not manifests:
        raise TeeformError(f"target {target!r}: the key broker needs at least one allowed manifest")
    claims = CLAIMS[options.verifier]
    wanted = options.pins if options.pins is not None else tuple(claims)
    sets: list[TrusteeSet] = []
    for key, meas in manifests:
        values: dict[str, str] = {}
        for claim in wanted:
            name = claims[claim]
            v = meas.get(name)
            if v is None:
                if claim in REQUIRED_CLAIMS[options.verifier] or options.pins is not None:
                    raise TeeformError(f"manifest {key!r} has no {name} measurement for the {options.verifier.value} "
                                       f"claim {claim!r}", field="manifests")
                continue
            v = str(v).lower()
            if len(v) != BY_NAME[name].hex_len or not _HEX.match(v):
                raise TeeformError(f"manifest {key!r}: {name} must be {BY_NAME[name].hex_len} hex digits", field="manifests")
            values[claim] = v
        digest = hashlib.sha256(json.dumps({"verifier": options.verifier.value, "values": values},
                                           sort_keys=True).encode()).hexdigest()
        set_id = "m" + digest[:12]
        if any(s.set_id == set_id for s in sets):
            continue
        ids = {c: f"teeform.{target}.{set_id}.{c}" for c in values}
        sets.append(TrusteeSet(key, set_id, MappingProxyType(values), MappingProxyType(ids)))
    mr_td_id = f"teeform.{target}.mr_td" if options.mr_td else None
    return TrusteeReferenceValues(target, options, tuple(sets), mr_td_id)


__all__ = ["MESSAGE_VERSION", "MESSAGE_TYPE", "Verifier", "CLAIMS", "REQUIRED_CLAIMS", "TDX_QUOTE_VERIFIERS",
           "TCB_STATUSES", "TrusteeOptions", "TrusteeSet", "TrusteeReferenceValues", "sample_message",
           "check_target_name", "reference_values"]
