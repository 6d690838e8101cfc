"""Policies of issue 11: trustee-reference-values-match-manifest, trustee-policy-refuses-debug,
alicloud-no-public-ingress, alicloud-tdx-instance-type -- passing on what the real program registers,
failing on tampered inputs; the pack's copies of teeform tables equal the originals; the new tokens
are what pulumi-alicloud and teeform's dynamic resource classes register."""

from __future__ import annotations

import base64
import copy
import json
import sys
from pathlib import Path
from typing import Any

import pulumi
import pulumi_alicloud as alicloud
import pytest
from pulumi.runtime import settings
from pulumi_support import REPO, by_type, one, policy_violations, resource, run, write_fake_vm_manifest

from teeform.preview import make_mocks

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

sys.path.insert(0, str(REPO / "policies"))
from teeform_policies import alicloud as ali_pol  # noqa: E402
from teeform_policies import tokens  # noqa: E402
from teeform_policies import trustee as tr_pol  # noqa: E402

sys.path.remove(str(REPO / "policies"))


def target(manifest: Path, **over: Any) -> dict[str, Any]:
    t = {"name": "td", "cloud": "alicloud", "region": "cn-beijing", "tee": "tdx", "manifests": [str(manifest)],
         "instanceType": "ecs.g8i.xlarge", "zone": "cn-beijing-i",
         "keyBroker": {"deploy": {"adminCidr": "203.0.113.0/24"}}}
    t.update(over)
    return t


@pytest.fixture(scope="module")
def program(tmp_path_factory) -> list[Any]:
    m = write_fake_vm_manifest(tmp_path_factory.mktemp("b"))
    res, _, _ = run([target(m), target(m, name="gpu", instanceType="ecs.gn8v-tee.4xlarge", zone="cn-beijing-l")])
    return res


def names(vs) -> list[str]:
    return [v.message for v in vs]


@pytest.mark.parametrize("pid", ["trustee-reference-values-match-manifest", "trustee-policy-refuses-debug",
                                 "alicloud-no-public-ingress", "alicloud-tdx-instance-type"])
def test_program_passes(program, pid) -> None:
    assert names(policy_violations(pid, program)) == []


def replace_reg(program, **changes) -> list[Any]:
    """The program's resources with target td's KbsRegistration inputs changed."""
    out = []
    done = False
    for r in program:
        if r.type == tokens.TRUSTEE_KBS_REGISTRATION and r.inputs["target"] == "td" and not done:
            r = resource(r.type, {**copy.deepcopy(r.inputs), **changes}, r.name)
            done = True
        out.append(r)
    return out


def payload(program) -> tuple[dict[str, Any], Any]:
    (reg,) = [r for r in by_type(program, tokens.TRUSTEE_KBS_REGISTRATION) if r.inputs["target"] == "td"]
    return json.loads(base64.b64decode(reg.inputs["rvps_message"]["payload"])), reg


def message(prov: dict[str, Any]) -> dict[str, str]:
    return {"version": "0.1.0", "type": "sample", "payload": base64.b64encode(json.dumps(prov).encode()).decode()}


def test_pasted_value_fails(program) -> None:
    prov, _ = payload(program)
    uki = next(k for k in prov if k.endswith(".uki"))
    bad = replace_reg(program, rvps_message=message({**prov, uki: ["ab" * 48]}))
    msgs = names(policy_violations("trustee-reference-values-match-manifest", bad))
    assert any("uki_authenticode_sha384 " + "ab" * 48 + " is not a measurement of any manifest of target 'td'" in m
               for m in msgs), msgs


def test_other_targets_manifest_and_mixed_sets_fail(tmp_path, program) -> None:
    # A second manifest of another target: its value in td's set is refused (not td's manifest).
    other = write_fake_vm_manifest(tmp_path / "o", name="other-vm")
    data = json.loads(other.read_text())
    data["measurements"]["rtmr1"] = "cd" * 48
    data["measurements"]["uki_authenticode_sha384"] = "ef" * 48  # another build: both values differ
    other.write_text(json.dumps(data))
    prov, _ = payload(program)
    rt = next(k for k in prov if k.endswith(".rtmr_1"))
    mm = resource(tokens.TEEFORM_MEASUREMENT_MANIFEST, {"target": "elsewhere", "name": "other-vm",
                                                        "measurements": data["measurements"]}, "mm-other")
    bad = replace_reg(program, rvps_message=message({**prov, rt: ["cd" * 48]}))
    assert any("rtmr1" in m and "not a measurement of any manifest of target 'td'" in m
               for m in names(policy_violations("trustee-reference-values-match-manifest", [*bad, mm])))
    # The same value as a second manifest *of td*: each value is known, but the set mixes two builds.
    mm_td = resource(tokens.TEEFORM_MEASUREMENT_MANIFEST, {"target": "td", "name": "other-vm",
                                                           "measurements": data["measurements"]}, "mm-td")
    msgs = names(policy_violations("trustee-reference-values-match-manifest", [*bad, mm_td]))
    assert any("mixes values of different manifests" in m for m in msgs), msgs


def test_resource_policy_values_must_be_the_sets(program) -> None:
    _, reg = payload(program)
    prov, _ = payload(program)
    uki = next(v[0] for k, v in prov.items() if k.endswith(".uki"))
    bad = replace_reg(program, resource_policy=reg.inputs["resource_policy"].replace(uki, "ef" * 48))
    assert any("resource_policy set" in m for m in names(policy_violations("trustee-reference-values-match-manifest", bad)))
    bad = replace_reg(program, attestation_policy="package policy\n")
    assert any("attestation_policy has rules for sets []" in m
               for m in names(policy_violations("trustee-reference-values-match-manifest", bad)))


def test_registration_without_manifest_fails(program) -> None:
    regs = [r for r in program if r.type == tokens.TRUSTEE_KBS_REGISTRATION]
    msgs = names(policy_violations("trustee-reference-values-match-manifest", regs))
    assert msgs and all("has no MeasurementManifest" in m for m in msgs)


def test_debug_policy_checks(program) -> None:
    _, reg = payload(program)
    as_p, kbs_p = reg.inputs["attestation_policy"], reg.inputs["resource_policy"]
    no_debug = as_p.replace("\tev.td_attributes.debug == false\n", "")
    assert any("does not require `td_attributes.debug == false`" in m
               for m in names(policy_violations("trustee-policy-refuses-debug", replace_reg(program, attestation_policy=no_debug))))
    dflt = as_p.replace("default configuration := 36", "default configuration := 2")
    assert any("default configuration claim is affirming" in m
               for m in names(policy_violations("trustee-policy-refuses-debug", replace_reg(program, attestation_policy=dflt))))
    kbs_bad = kbs_p.replace("\tev.td_attributes.debug == false\n", "")
    assert any("an allow rule does not require" in m
               for m in names(policy_violations("trustee-policy-refuses-debug", replace_reg(program, resource_policy=kbs_bad))))
    # Rules in another layout (one-line, brace-less) used to be skipped without a word, so an affirming
    # rule without the debug test passed; they are now NOT CHECKED.
    assert policy_violations("trustee-policy-refuses-debug", program) == []
    for field, text in (("attestation_policy", as_p + "\nconfiguration := 2 if { input.x }\n"),
                        ("resource_policy", kbs_p + "\nallow if input.x == 1\n")):
        msgs = names(policy_violations("trustee-policy-refuses-debug", replace_reg(program, **{field: text})))
        assert any("NOT CHECKED" in m and "not in the layout teeform generates" in m for m in msgs), msgs


def test_alicloud_public_ingress_is_mandatory_and_refused() -> None:
    r = resource(tokens.ALICLOUD_ECS_SECURITY_GROUP_RULE, {"type": "ingress", "ipProtocol": "tcp", "portRange": "22/22",
                                                           "cidrIp": "0.0.0.0/0", "securityGroupId": "sg"}, "open")
    (v,) = policy_violations("alicloud-no-public-ingress", [r])
    assert "opens port(s) 22/22 to the whole internet" in v.message
    assert ali_pol.NO_PUBLIC_INGRESS.enforcement_level.value == "mandatory"
    ok = resource(tokens.ALICLOUD_ECS_SECURITY_GROUP_RULE, {"type": "ingress", "cidrIp": "10.0.0.0/8"}, "ok")
    aws = resource("aws:ec2/securityGroupRule:SecurityGroupRule", {"type": "ingress", "cidrBlocks": ["0.0.0.0/0"]}, "a")
    assert policy_violations("alicloud-no-public-ingress", [ok, aws]) == []


@pytest.mark.parametrize(("typ", "props", "expect"), [
    (tokens.ALICLOUD_ECS_INSTANCE, {"instanceType": "ecs.g8i.xlarge", "availabilityZone": "cn-beijing-i",
                                    "tags": {"teeform:role": "tdx-guest"}}, "not a TDX guest"),
    (tokens.ALICLOUD_ECS_INSTANCE, {"instanceType": "ecs.gn8v-tee.4xlarge", "availabilityZone": "cn-beijing-i",
                                    "tags": {"teeform:role": "tdx-guest"}}, "does not offer gn8v-tee"),
    (tokens.ALICLOUD_ECS_INSTANCE, {"instanceType": "ecs.c7.large", "tags": {"teeform:role": "tdx-guest"}},
     "not an Alibaba TDX type"),
    (tokens.ALICLOUD_TDX_INSTANCE, {"instance_type": "ecs.g8i.large", "zone_id": "cn-beijing-i"}, "xlarge or larger"),
    (tokens.ALICLOUD_TDX_INSTANCE, {"instance_type": "ecs.g8i.xlarge", "zone_id": "cn-hangzhou-h"}, "does not offer g8i"),
])
def test_tdx_instance_type_fails(typ, props, expect) -> None:
    msgs = names(policy_violations("alicloud-tdx-instance-type", [resource(typ, props, "x")]))
    assert any(expect in m for m in msgs), msgs


def test_untagged_instance_is_not_a_tdx_guest() -> None:
    r = resource(tokens.ALICLOUD_ECS_INSTANCE, {"instanceType": "ecs.g7.large", "tags": {"teeform:role": "kbs"}}, "kbs")
    assert policy_violations("alicloud-tdx-instance-type", [r]) == []


def test_pack_copies_equal_teeform() -> None:
    from teeform.targets.alicloud_tdx import TDX_ZONES
    from teeform.trustee.reference_values import CLAIMS

    assert ali_pol.TDX_ZONES == dict(TDX_ZONES)
    assert tr_pol.CLAIMS == {v.value: dict(c) for v, c in CLAIMS.items()}


def test_new_tokens_are_what_the_sdk_and_classes_register(program) -> None:
    settings.ROOT.set(None)
    mocks = make_mocks()
    pulumi.runtime.set_mocks(mocks, project="teeform", stack="tokens", preview=False)

    @pulumi.runtime.test
    def _construct():
        alicloud.ecs.Instance("i")
        alicloud.ecs.SecurityGroup("s")

    _construct()
    assert [r.typ for r in mocks.resources if r.typ != "pulumi:pulumi:Stack"] == [
        tokens.ALICLOUD_ECS_INSTANCE, tokens.ALICLOUD_ECS_SECURITY_GROUP]
    one(program, tokens.ALICLOUD_TDX_INSTANCE)  # teeform's dynamic classes register exactly these tokens
    assert by_type(program, tokens.TRUSTEE_KBS_REGISTRATION)
