"""Rego policies for Trustee, generated from a target's reference values.

Two policies, both ``package policy`` / ``import rego.v1`` (the dialect Trustee's regorus engine
evaluates, ``deps/policy-engine/src/policy/rego.rs``):

1. **Attestation-service policy** (:func:`attestation_policy`), stored as ``default_cpu`` (the KBS asks
   for policy ``default``, ``kbs/src/attestation/coco/builtin.rs``, and the AS appends the TEE class,
   ``attestation-service/src/ear_token/broker.rs``: ``format!("{}_{}", policy_ids[0], tee_class)``).
   It outputs ``trust_claims`` (AR4SI, same rule names and defaults as
   ``attestation-service/src/ear_token/ear_default_policy_cpu.rego``) and ``extensions``:

   * ``executables := 3`` only if **one** allowed manifest's values all match together
     (one helper rule per set; ``query_reference_value("<id>")`` reads the RVPS, the regorus extension
     registered in ``broker.rs``);
   * ``hardware := 2`` only for a genuine TDX quote (``tee_type`` 81000000, Intel ``vendor_id``), an
     accepted ``tcb_status`` (default ``UpToDate``; required), unexpired collateral and, when configured,
     an allowed ``mr_td``; for ``az-snp-vtpm`` the verifier's VCEK chain check alone;
   * ``configuration := 2`` only if the guest is not debuggable (TDX ``td_attributes.debug == false``;
     SNP ``policy_debug_allowed == "false"`` and no migration agent).

   Anything else keeps the contraindicating defaults (33 / 97 / 36), so the EAR status is not affirming.

2. **KBS resource policy** (:func:`resource_policy`), ``data.policy.allow`` over the EAR token claims
   (``kbs/src/api_server.rs``: ``input`` = token claims, ``data`` = ``{"plugin", "resource-path",
   "query"}``). It releases ``resource/teeform/<target>/<tag>`` only if every submodule is
   ``affirming`` (as ``kbs/sample_policies/affirming.rego``), ``cpu0``'s trust vector is exactly
   executables 3 / hardware 2 / configuration 2, and -- independently of the AS policy -- the
   annotated evidence under the target's verifier matches one allowed set with the values written
   inline. Replacing the AS policy therefore cannot widen what this target's key is released to.

Sources: confidential-containers/trustee@78962cd4 (files above); EAR claim names ``ear.status``,
``ear.trustworthiness-vector``, ``ear.veraison.annotated-evidence`` (draft-fv-rats-ear; Trustee's
``kbs/sample_policies/affirming.rego``); ``shared/reference/clouds.md`` §4.3-§4.4.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from teeform.trustee.reference_values import (
    TDX_QUOTE_VERIFIERS,
    TrusteeReferenceValues,
    TrusteeSet,
    Verifier,
)

#: Intel SGX/TDX quote header constants checked by Trustee's default policy (ear_default_policy_cpu.rego).
TDX_TEE_TYPE = "81000000"
INTEL_VENDOR_ID = "939a7233f79c4ca9940a0db3957f0607"
#: The TCG event type and device path of the UKI load (deps/eventlog/src/ccel/boot_services_app.rs);
#: the ESP path is teeform's (build_vm.make_esp), compared case-insensitively.
UKI_EVENT_TYPE = "EV_EFI_BOOT_SERVICES_APPLICATION"
UKI_PATH_SUFFIX = "\\efi\\boot\\bootx64.efi)"
#: CC measurement register index of RTMR1 in the CCEL (1 = RTMR0, 2 = RTMR1; clouds.md §4.3).
UKI_EVENT_MR_INDEX = 2

_DEFAULTS = """\
# Contraindicating defaults, as Trustee's ear_default_policy_cpu.rego: 33 = unrecognised executables,
# 97 = unrecognised hardware/firmware, 36 = security-relevant configuration unavailable, 0 = no claim.
default executables := 33
default hardware := 97
default configuration := 36
default file_system := 0
default instance_identity := 0
default runtime_opaque := 0
default storage_opaque := 0
default sourced_data := 0

trust_claims := {
	"executables": executables,
	"hardware": hardware,
	"configuration": configuration,
	"file-system": file_system,
	"instance-identity": instance_identity,
	"runtime-opaque": runtime_opaque,
	"storage-opaque": storage_opaque,
	"sourced-data": sourced_data,
}

extensions := []
"""

_UKI_HELPER = f"""\
# The UKI (ESP path EFI/BOOT/BOOTX64.EFI) was loaded as a boot-services application measured into RTMR1
# with an allowed SHA-384 Authenticode digest. The verifier replays the CCEL against the RTMRs first.
teeform_uki_loaded(ev, allowed) if {{
	some event in ev.uefi_event_logs
	event.type_name == {json.dumps(UKI_EVENT_TYPE)}
	event.index == {UKI_EVENT_MR_INDEX}
	some path in event.details.device_paths
	endswith(lower(path), {json.dumps(UKI_PATH_SUFFIX)})
	some d in event.digests
	d.alg == "SHA-384"
	lower(d.digest) in allowed
}}
"""


def _lit(value: object) -> str:
    """A Rego literal (JSON syntax is valid Rego for strings, numbers, arrays and booleans)."""
    return json.dumps(value)


def _claim_check(verifier: Verifier, claim: str, allowed: str) -> str:
    if claim == "uki":
        return f"teeform_uki_loaded(ev, {allowed})"
    if claim in ("rtmr_1", "rtmr_2"):
        return f"ev.quote.body.{claim} in {allowed}"
    if claim == "pcr11":
        return f"ev.tpm.pcr11 in {allowed}"
    raise ValueError(f"no Rego check for {verifier.value} claim {claim!r}")


def _sets_rules(rv: TrusteeReferenceValues, allowed: Callable[[TrusteeSet, str], str]) -> str:
    out = []
    for s in rv.sets:
        lines = [f"# {s.manifest_key}: all of its values together (set {s.set_id})",
                 f"teeform_set_{s.set_id}(ev) if {{"]
        lines += [f"\t{_claim_check(rv.options.verifier, c, allowed(s, c))}" for c in s.values]
        lines.append("}")
        lines.append(f"teeform_one_set(ev) if teeform_set_{s.set_id}(ev)")
        out.append("\n".join(lines) + "\n")
    return "\n".join(out)


def _hardware_body(rv: TrusteeReferenceValues, mr_td: str | None) -> list[str]:
    v = rv.options.verifier
    if v in TDX_QUOTE_VERIFIERS:
        lines = [f"ev.quote.header.tee_type == {_lit(TDX_TEE_TYPE)}",
                 f"ev.quote.header.vendor_id == {_lit(INTEL_VENDOR_ID)}",
                 f"ev.tcb_status in {_lit(list(rv.options.tcb_statuses))}"]
        if v is Verifier.TDX:
            lines.append('ev.collateral_expiration_status == "0"')
        if mr_td is not None:
            lines.append(f"ev.quote.body.mr_td in {mr_td}")
        return lines
    return ["ev.tpm"]  # az-snp-vtpm: the verifier checked the VCEK chain and the HCL report binding


def _configuration_body(verifier: Verifier) -> list[str]:
    if verifier in TDX_QUOTE_VERIFIERS:
        return ["ev.td_attributes.debug == false"]
    return ['ev.policy_debug_allowed == "false"', 'ev.policy_migrate_ma == "false"']


def _ev_path(verifier: Verifier) -> str:
    return f"input[{_lit(verifier.value)}]"


def attestation_policy(rv: TrusteeReferenceValues) -> str:
    """The attestation-service Rego policy for ``rv``'s target (text, UTF-8, ends with a newline).

    Upload it as policy id ``default_cpu`` (base64url without padding; :mod:`teeform.trustee.kbs_client`).
    One KBS serves one teeform target: the AS policy is KBS-wide.
    """
    v = rv.options.verifier
    ev = _ev_path(v)
    mr_td = _lit_qrv(rv.mr_td_id) if rv.mr_td_id else None
    parts = [f"# Generated by teeform for target {rv.target!r}, verifier {v.value}. Do not edit: `pulumi up` rewrites it.",
             "package policy", "", "import rego.v1", "", _DEFAULTS]
    parts.append(f"executables := 3 if {{\n\tev := {ev}\n\tteeform_one_set(ev)\n}}\n")
    parts.append("hardware := 2 if {\n\tev := " + ev + "\n" + "".join(f"\t{x}\n" for x in _hardware_body(rv, mr_td)) + "}\n")
    parts.append("configuration := 2 if {\n\tev := " + ev + "\n" + "".join(f"\t{x}\n" for x in _configuration_body(v)) + "}\n")
    parts.append(_sets_rules(rv, lambda s, c: _lit_qrv(s.ids[c])))
    if v is Verifier.TDX:
        parts.append(_UKI_HELPER)
    return "\n".join(parts)


def _lit_qrv(rv_id: str) -> str:
    return f"query_reference_value({_lit(rv_id)})"


def resource_policy(rv: TrusteeReferenceValues, *, repository: str = "teeform") -> str:
    """The KBS resource policy releasing ``resource/<repository>/<target>/*`` only to affirming,
    matching evidence (text, UTF-8, ends with a newline). Values are inline (the KBS evaluates this
    policy without the ``query_reference_value`` extension, ``kbs/src/api_server.rs``)."""
    v = rv.options.verifier
    ev = f'input.submods.cpu0["ear.veraison.annotated-evidence"][{_lit(v.value)}]'
    mr_td = _lit(list(rv.options.mr_td)) if rv.mr_td_id else None
    parts = [f"# Generated by teeform for target {rv.target!r}, verifier {v.value}. Do not edit: `pulumi up` rewrites it.",
             "package policy", "", "import rego.v1", "", "default allow := false", ""]
    body = [
        'data.plugin == "resource"',
        'count(data["resource-path"]) == 3',
        f'data["resource-path"][0] == {_lit(repository)}',
        f'data["resource-path"][1] == {_lit(rv.target)}',
        "count(input.submods) > 0",
        "not teeform_any_not_affirming",
        'tv := input.submods.cpu0["ear.trustworthiness-vector"]',
        "tv.executables == 3",
        "tv.hardware == 2",
        "tv.configuration == 2",
        f"ev := {ev}",
        "teeform_one_set(ev)",
        *_hardware_body(rv, mr_td),
        *_configuration_body(v),
    ]
    parts.append("allow if {\n" + "".join(f"\t{x}\n" for x in body) + "}\n")
    parts.append('teeform_any_not_affirming if {\n\tsome _, submod in input.submods\n\tsubmod["ear.status"] != "affirming"\n}\n')
    parts.append(_sets_rules(rv, lambda s, c: _lit([s.values[c]])))
    if v is Verifier.TDX:
        parts.append(_UKI_HELPER)
    return "\n".join(parts)


__all__ = ["TDX_TEE_TYPE", "INTEL_VENDOR_ID", "UKI_EVENT_TYPE", "UKI_PATH_SUFFIX", "UKI_EVENT_MR_INDEX",
           "attestation_policy", "resource_policy"]
