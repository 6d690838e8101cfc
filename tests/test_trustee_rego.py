"""Trustee artefacts from manifests (issue 11 item 1): RVPS sample messages and the two Rego policies.

Oracles:

* the evidence claims are Trustee's own verifier output for a real TDX quote + CCEL
  (``tests/fixtures/trustee/parse_tdx_claims_expected.json``, see its README), with the quote values
  replaced by a manifest's and the DCAP / UKI-event claims added in the shapes of Trustee's sources;
* the policies are evaluated by regorus (``gordon-to-regorus``), the engine Trustee runs, with a
  ``query_reference_value`` extension fed from the decoded RVPS message (decoded with ``base64`` +
  ``json`` here, not through teeform), as ``attestation-service/src/ear_token/broker.rs`` does;
* the engine set-up is checked against Trustee's shipped ``ear_default_policy_cpu.rego`` and
  ``kbs/sample_policies/affirming.rego``;
* the EAR status of a trust vector follows the AR4SI trustworthiness tiers (draft-ietf-rats-ar4si
  §2.3.3: -1..1 none, 2..31 / -2..-32 affirming, 32..95 warning, 96..127 contraindicated; the
  appraisal's status is the worst claim tier, rust-ear ``Appraisal::update_status_from_trust_vector``).
"""

from __future__ import annotations

import base64
import copy
import json
from pathlib import Path
from typing import Any

import pytest

from teeform.errors import TeeformError
from teeform.trustee.engine import evaluate_attestation_policy, evaluate_resource_policy
from teeform.trustee.reference_values import TrusteeOptions, Verifier, reference_values, sample_message
from teeform.trustee.rego import attestation_policy, resource_policy

FIX = Path(__file__).parent / "fixtures" / "trustee"
MRTD = "705ee9381b8633a9fbe532b52345e8433343d2868959f57889d84ca377c395b689cac1599ccea1b7d420483a9ce5f031"

A = {"uki_authenticode_sha384": "a1" * 48, "rtmr1": "b1" * 48, "rtmr2": "c1" * 48, "pcr11_sha256": "d1" * 32,
     "roothash": "e1" * 32}
B = {"uki_authenticode_sha384": "a2" * 48, "rtmr1": "b2" * 48, "rtmr2": "c2" * 48, "pcr11_sha256": "d2" * 32,
     "roothash": "e2" * 32}


def decode_rvps(message: dict[str, str]) -> dict[str, Any]:
    """What Trustee's sample extractor stores: top-level key -> value of the base64 JSON payload."""
    assert message["version"] == "0.1.0" and message["type"] == "sample"
    return json.loads(base64.b64decode(message["payload"], validate=True))


def tdx_claims(m: dict[str, str], *, debug: bool = False, tcb: str = "UpToDate", mr_td: str = MRTD,
               uki: str | None = None) -> dict[str, Any]:
    """Trustee tdx-verifier claims (real fixture) carrying manifest ``m``'s values."""
    claims = json.loads((FIX / "parse_tdx_claims_expected.json").read_text())
    claims["quote"]["body"].update(rtmr_1=m["rtmr1"], rtmr_2=m["rtmr2"], mr_td=mr_td)
    claims["td_attributes"]["debug"] = debug
    # DCAP supplemental claims (deps/verifier/src/intel_dcap/claims.rs test parse_supplemental_data).
    claims.update(tcb_status=tcb, collateral_expiration_status="0", tcb_date="2024-03-13T00:00:00Z", advisory_ids=[])
    # The UKI load: device path from deps/eventlog/src/ccel/boot_services_app.rs's vector, RTMR1 = index 2.
    claims["uefi_event_logs"].append({
        "details": {"device_paths": ["ACPI(PNP0A03,0)", "Pci(0,1)", "Pci(0,0)",
                                     "HD(15,GPT,00F1275E-5375-43D5-9EB5-DE2ADD4C9932,0x2800,0x35000)",
                                     "File(\\EFI\\BOOT\\BOOTX64.EFI)"]},
        "digest_matches_event": False,
        "digests": [{"alg": "SHA-384", "digest": uki or m["uki_authenticode_sha384"]}],
        "event": "", "index": 2, "type_name": "EV_EFI_BOOT_SERVICES_APPLICATION",
    })
    return claims


def tier(v: int) -> int:
    """AR4SI tier: 0 none, 1 affirming, 2 warning, 3 contraindicated."""
    a = abs(v)
    return 0 if a <= 1 else 1 if a <= 31 else 2 if a <= 95 else 3


def ear_token(verifier: str, claims: dict[str, Any], trust: dict[str, int]) -> dict[str, Any]:
    """EAR token claims as the KBS resource policy sees them (one cpu0 submodule)."""
    worst = max(tier(v) for v in trust.values())
    status = ["none", "affirming", "warning", "contraindicated"][worst]
    return {"eat_profile": "tag:github.com,2023:veraison/ear", "iat": 0, "ear.verifier-id": {},
            "submods": {"cpu0": {"ear.status": status, "ear.trustworthiness-vector": trust,
                                 "ear.appraisal-policy-id": "default",
                                 "ear.veraison.annotated-evidence": {verifier: claims}}}}


def appraise(rv, verifier: str, claims: dict[str, Any]) -> tuple[dict[str, int], bool]:
    """AS policy over the claims, then the KBS resource policy over the resulting token."""
    result = evaluate_attestation_policy(attestation_policy(rv), {verifier: claims}, decode_rvps(rv.message()))
    trust = result["trust_claims"]
    allowed = evaluate_resource_policy(resource_policy(rv), ear_token(verifier, claims, trust),
                                       f"resource/teeform/{rv.target}/key")
    return trust, allowed


@pytest.fixture
def tdx_rv():
    return reference_values("agent", [("agent@1", A), ("agent@2", B)], TrusteeOptions(Verifier.TDX, mr_td=(MRTD,)))


# ----------------------------------------------------------------------------- RVPS messages


def test_sample_message_shape_and_values(tdx_rv) -> None:
    msg = tdx_rv.message()
    assert set(msg) == {"version", "type", "payload"}
    prov = decode_rvps(msg)
    # One id per (set, claim), each a one-value list; MRTD (the platform) shared.
    s1, s2 = tdx_rv.sets
    assert prov[s1.ids["uki"]] == [A["uki_authenticode_sha384"]]
    assert prov[s1.ids["rtmr_1"]] == [A["rtmr1"]] and prov[s1.ids["rtmr_2"]] == [A["rtmr2"]]
    assert prov[s2.ids["uki"]] == [B["uki_authenticode_sha384"]]
    assert prov["teeform.agent.mr_td"] == [MRTD]
    assert len(prov) == 7 and all(k.startswith("teeform.agent.m") or k == "teeform.agent.mr_td" for k in prov)
    assert decode_rvps(tdx_rv.tombstone()) == {k: [] for k in prov}


def test_sample_message_is_standard_base64_with_padding() -> None:
    msg = sample_message({"x": ["ab"]})
    assert msg["payload"] == base64.b64encode(b'{"x":["ab"]}').decode()


def test_stub_without_rtmr2_pins_what_the_manifest_records() -> None:
    old = {k: v for k, v in A.items() if k != "rtmr2"}
    rv = reference_values("agent", [("old", old)], TrusteeOptions(Verifier.TDX))
    assert set(rv.sets[0].values) == {"uki", "rtmr_1"} and rv.mr_td_id is None


def test_vtpm_verifiers_pin_pcr11_sha256() -> None:
    rv = reference_values("az", [("a", A)], TrusteeOptions(Verifier.AZ_SNP_VTPM))
    assert decode_rvps(rv.message()) == {rv.sets[0].ids["pcr11"]: [A["pcr11_sha256"]]}


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"pins": ("uki", "mr_seam")}, "keyBroker.pins"),
    ({"pins": ("rtmr_1",)}, "keyBroker.pins"),
    ({"mr_td": ("ab",)}, "keyBroker.mrTd[0]"),
    ({"tcb_statuses": ("Fine",)}, "keyBroker.tcbStatuses[0]"),
    ({"tcb_statuses": ()}, "keyBroker.tcbStatuses"),
])
def test_bad_options_name_the_field(kwargs, field) -> None:
    with pytest.raises(TeeformError) as exc:
        TrusteeOptions(Verifier.TDX, **kwargs)
    assert exc.value.field == field


def test_manifest_without_the_uki_digest_is_refused() -> None:
    with pytest.raises(TeeformError, match="no uki_authenticode_sha384"):
        reference_values("agent", [("x", {"rtmr1": "b1" * 48})], TrusteeOptions(Verifier.TDX))
    with pytest.raises(TeeformError, match="must match"):
        reference_values("Agent_1", [("x", A)], TrusteeOptions(Verifier.TDX))


# ----------------------------------------------------------------------------- engine set-up vs Trustee's own policies


def test_engine_runs_trustees_default_policy_like_trustee() -> None:
    """Trustee's shipped policy over its own fixture, with RVs of the fixture's values: the RTMR-only
    ("GKE grub") branch gives executables 4, hardware 2 with MRTD + UpToDate, and the fixture's quote
    is a debug TD, so configuration keeps 36."""
    claims = json.loads((FIX / "parse_tdx_claims_expected.json").read_text())
    claims.update(tcb_status="UpToDate", collateral_expiration_status="0")
    body = claims["quote"]["body"]
    rvs = {"rtmr_1": [body["rtmr_1"]], "rtmr_2": [body["rtmr_2"]], "mr_td": [body["mr_td"]], "xfam": [body["xfam"]]}
    out = evaluate_attestation_policy((FIX / "ear_default_policy_cpu.rego").read_text(), {"tdx": claims}, rvs)
    tc = out["trust_claims"]
    assert (tc["executables"], tc["hardware"], tc["configuration"]) == (4, 2, 36)
    # Unknown RVs are null: nothing matches.
    tc = evaluate_attestation_policy((FIX / "ear_default_policy_cpu.rego").read_text(), {"tdx": claims}, {})["trust_claims"]
    assert (tc["executables"], tc["hardware"]) == (33, 97)


def test_trustees_affirming_sample_policy_under_the_engine() -> None:
    policy = (FIX / "affirming.rego").read_text()
    ok = {"submods": {"cpu0": {"ear.status": "affirming"}}}
    assert evaluate_resource_policy(policy, ok, "resource/r/t/k")
    assert not evaluate_resource_policy(policy, {"submods": {"cpu0": {"ear.status": "warning"}}}, "resource/r/t/k")


# ----------------------------------------------------------------------------- the generated policies


def test_allowed_manifests_pass(tdx_rv) -> None:
    for m in (A, B):
        trust, allowed = appraise(tdx_rv, "tdx", tdx_claims(m))
        assert (trust["executables"], trust["hardware"], trust["configuration"]) == (3, 2, 2)
        assert allowed


def test_changed_uki_digest_fails(tdx_rv) -> None:
    trust, allowed = appraise(tdx_rv, "tdx", tdx_claims(A, uki="a3" * 48))
    assert trust["executables"] == 33 and not allowed


def test_uki_event_must_be_the_esp_path_in_rtmr1(tdx_rv) -> None:
    claims = tdx_claims(A)
    ev = claims["uefi_event_logs"][-1]
    ev["details"]["device_paths"][-1] = "File(\\EFI\\OTHER\\GRUBX64.EFI)"
    assert appraise(tdx_rv, "tdx", claims)[0]["executables"] == 33
    claims = tdx_claims(A)
    claims["uefi_event_logs"][-1]["index"] = 3
    assert appraise(tdx_rv, "tdx", claims)[0]["executables"] == 33
    claims = tdx_claims(A)
    claims["uefi_event_logs"][-1]["details"]["device_paths"][-1] = "File(\\efi\\boot\\bootx64.efi)"
    assert appraise(tdx_rv, "tdx", claims)[0]["executables"] == 3  # FAT paths are case-insensitive


def test_debug_td_fails(tdx_rv) -> None:
    trust, allowed = appraise(tdx_rv, "tdx", tdx_claims(A, debug=True))
    assert trust["configuration"] == 36 and not allowed


def test_values_mixed_from_two_manifests_fail(tdx_rv) -> None:
    mixed = dict(A, rtmr2=B["rtmr2"])
    trust, allowed = appraise(tdx_rv, "tdx", tdx_claims(mixed))
    assert trust["executables"] == 33 and not allowed
    mixed = dict(B, uki_authenticode_sha384=A["uki_authenticode_sha384"])
    assert appraise(tdx_rv, "tdx", tdx_claims(mixed))[0]["executables"] == 33


@pytest.mark.parametrize("tcb", ["OutOfDate", "SWHardeningNeeded", None])
def test_out_of_date_or_missing_tcb_fails(tdx_rv, tcb) -> None:
    claims = tdx_claims(A, tcb=tcb or "UpToDate")
    if tcb is None:
        del claims["tcb_status"]
    trust, allowed = appraise(tdx_rv, "tdx", claims)
    assert trust["hardware"] == 97 and not allowed


def test_other_firmware_fails_when_mrtd_pinned(tdx_rv) -> None:
    trust, allowed = appraise(tdx_rv, "tdx", tdx_claims(A, mr_td="0f" * 48))
    assert trust["hardware"] == 97 and not allowed


def test_accepting_more_tcb_statuses_is_explicit() -> None:
    rv = reference_values("agent", [("a", A)], TrusteeOptions(Verifier.TDX, tcb_statuses=("UpToDate", "SWHardeningNeeded")))
    assert appraise(rv, "tdx", tdx_claims(A, tcb="SWHardeningNeeded")) == (
        {"executables": 3, "hardware": 2, "configuration": 2, "file-system": 0, "instance-identity": 0,
         "runtime-opaque": 0, "storage-opaque": 0, "sourced-data": 0}, True)


def test_resource_policy_scopes_to_the_target_path_and_rechecks_values(tdx_rv) -> None:
    claims = tdx_claims(A)
    good = ear_token("tdx", claims, {"executables": 3, "hardware": 2, "configuration": 2})
    policy = resource_policy(tdx_rv)
    assert evaluate_resource_policy(policy, good, "resource/teeform/agent/key")
    assert not evaluate_resource_policy(policy, good, "resource/teeform/other/key")
    assert not evaluate_resource_policy(policy, good, "resource/other/agent/key")
    assert not evaluate_resource_policy(policy, good, "attestation-policy/x/y/z")
    # An AS policy that affirms anything (e.g. replaced by hand) does not widen the release.
    bad = ear_token("tdx", tdx_claims(A, uki="a3" * 48), {"executables": 3, "hardware": 2, "configuration": 2})
    assert not evaluate_resource_policy(policy, bad, "resource/teeform/agent/key")
    dbg = ear_token("tdx", tdx_claims(A, debug=True), {"executables": 3, "hardware": 2, "configuration": 2})
    assert not evaluate_resource_policy(policy, dbg, "resource/teeform/agent/key")
    # A second, non-affirming submodule refuses (every submodule must affirm).
    two = copy.deepcopy(good)
    two["submods"]["gpu0"] = {"ear.status": "warning"}
    assert not evaluate_resource_policy(policy, two, "resource/teeform/agent/key")


def az_claims(verifier: str, m: dict[str, str], *, debug: bool = False) -> dict[str, Any]:
    """az-*-vtpm claims: ``tpm.pcr{:02}`` SHA-256 hex (deps/verifier/src/az_snp_vtpm/mod.rs); SNP policy
    fields are strings; az-tdx-vtpm carries the TDX quote claims (generate_parsed_claim)."""
    tpm = {f"pcr{i:02}": "00" * 32 for i in range(24)}
    tpm["pcr11"] = m["pcr11_sha256"]
    if verifier == "az-snp-vtpm":
        return {"policy_debug_allowed": "true" if debug else "false", "policy_migrate_ma": "false",
                "reported_tcb_snp": "21", "measurement": "AAAA", "tpm": tpm}
    claims = tdx_claims(m, debug=debug)
    claims.pop("uefi_event_logs")
    claims["tpm"] = tpm
    return claims


@pytest.mark.parametrize("verifier", ["az-snp-vtpm", "az-tdx-vtpm"])
def test_vtpm_verifiers(verifier) -> None:
    rv = reference_values("az", [("a", A), ("b", B)], TrusteeOptions(Verifier(verifier)))
    for m in (A, B):
        trust, allowed = appraise(rv, verifier, az_claims(verifier, m))
        assert (trust["executables"], trust["hardware"], trust["configuration"]) == (3, 2, 2) and allowed
    other = dict(A, pcr11_sha256="d3" * 32)
    assert appraise(rv, verifier, az_claims(verifier, other)) [0]["executables"] == 33
    trust, allowed = appraise(rv, verifier, az_claims(verifier, A, debug=True))
    assert trust["configuration"] == 36 and not allowed
    # Evidence of another verifier is not this target's.
    assert appraise(rv, "tdx", tdx_claims(A))[0]["executables"] == 33
