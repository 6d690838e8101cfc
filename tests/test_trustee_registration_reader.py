"""One reader of a Trustee ``KbsRegistration``'s RVPS payload for both of its consumers: the stack policy
``trustee-reference-values-match-manifest`` and the ``key-release`` family (``measurements-match-manifest``).

Each kind of entry (a set value, the platform's MRTD, another target's id, a claim teeform does not pin, a
set value with two values) is given once; the expected messages and rules are written here by hand from the
policies' documented behaviour, so the two consumers keep their own verdicts on the shared reading.
"""

from __future__ import annotations

import base64
import json
import sys
from typing import Any

import pytest
from pulumi_support import REPO, policy_violations, resource

sys.path.insert(0, str(REPO / "policies"))
from teeform_policies import tokens  # noqa: E402
from teeform_policies.families import NOT_CHECKED  # noqa: E402
from teeform_policies.release import KEY_RELEASE, ReleaseRule  # noqa: E402

sys.path.remove(str(REPO / "policies"))

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

REG = tokens.TRUSTEE_KBS_REGISTRATION
RVM = "trustee-reference-values-match-manifest"
UKI, RTMR1, MRTD = "ab" * 48, "cd" * 48, "ef" * 48
WHERE = f"{REG} 'reg'"


def _message(prov: dict[str, Any]) -> dict[str, str]:
    return {"version": "0.1.0", "type": "sample", "payload": base64.b64encode(json.dumps(prov).encode()).decode()}


def _registration(prov: dict[str, Any], verifier: str = "tdx") -> Any:
    return resource(REG, {
        "target": "td", "verifier": verifier, "rvps_message": _message(prov),
        "attestation_policy": "teeform_set_m000000000001(ev) if {\n  true\n}\n",
        "resource_policy": f'teeform_set_m000000000001(ev) if {{\n  ev.a == "{UKI}"\n  ev.b == "{RTMR1}"\n}}\n',
    }, "reg")


MANIFEST = resource(tokens.TEEFORM_MEASUREMENT_MANIFEST, {"target": "td", "name": "vm", "measurements": {
    "uki_authenticode_sha384": UKI, "rtmr1": RTMR1}}, "mm")

PROV = {
    "teeform.td.m000000000001.uki": [UKI.upper()],  # values are compared lowercase
    "teeform.td.m000000000001.rtmr_1": [RTMR1],
    "teeform.td.mr_td": [MRTD],
    "teeform.other.m000000000002.uki": [UKI],
    "teeform.td.m000000000003.pcr11": [UKI],
    "teeform.td.m000000000004.rtmr_2": ["x", "y"],
}


def test_reference_values_policy_reports_each_entry_it_cannot_accept() -> None:
    found = [v.message for v in policy_violations(RVM, [MANIFEST, _registration(PROV)])]
    assert found == [
        f"{WHERE}: reference value 'teeform.other.m000000000002.uki' is not one of target 'td''s",
        f"{WHERE}: reference value 'teeform.td.m000000000003.pcr11': 'pcr11' is not a tdx claim teeform pins",
        f"{WHERE}: reference value 'teeform.td.m000000000004.rtmr_2' must hold exactly one value (one manifest), "
        "got ['x', 'y']",
    ]


def test_key_release_rules_of_the_same_registration() -> None:
    rules = KEY_RELEASE.extract(REG, _registration(PROV).inputs)
    platform = {"mr_td": (MRTD,)}
    assert rules == [
        ReleaseRule("reference-value set m000000000001", {"uki_authenticode_sha384": (UKI,), "rtmr1": (RTMR1,)},
                    {"uki_authenticode_sha384": "teeform.td.m000000000001.uki",
                     "rtmr1": "teeform.td.m000000000001.rtmr_1"}, "td", platform),
        # several values of one id are a rule admitting each (measurements-match-manifest checks them)
        ReleaseRule("reference-value set m000000000004", {"rtmr2": ("x", "y")},
                    {"rtmr2": "teeform.td.m000000000004.rtmr_2"}, "td", platform),
        ReleaseRule("field 'rvps_message'", {}, target="td",
                    unchecked="reference values ['teeform.other.m000000000002.uki', 'teeform.td.m000000000003.pcr11'] "
                              "are not teeform tdx set values"),
    ]


def test_mr_td_that_is_not_a_list_of_strings() -> None:
    prov = {"teeform.td.m000000000001.uki": [UKI], "teeform.td.m000000000001.rtmr_1": [RTMR1], "teeform.td.mr_td": "x"}
    assert [v.message for v in policy_violations(RVM, [MANIFEST, _registration(prov)])] == []  # firmware: no manifest
    rules = KEY_RELEASE.extract(REG, _registration(prov).inputs)
    assert [(r.where, r.platform, r.unchecked) for r in rules] == [
        ("reference-value set m000000000001", {}, None),
        ("field 'rvps_message'", {}, "reference values ['teeform.td.mr_td'] are not teeform tdx set values")]


@pytest.mark.parametrize("verifier", ["sgx", ["tdx"]])
def test_unknown_verifier_is_not_checked(verifier: Any) -> None:
    found = [v.message for v in policy_violations(RVM, [MANIFEST, _registration(PROV, verifier)])]
    assert found == [f"{WHERE}: {NOT_CHECKED}: no target, verifier or decodable RVPS sample message"]
    assert KEY_RELEASE.extract(REG, _registration(PROV, verifier).inputs) == [ReleaseRule(
        "field 'rvps_message'", {}, target="td", unchecked="no target, known verifier or decodable RVPS sample message")]
