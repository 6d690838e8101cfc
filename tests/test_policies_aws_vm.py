"""Policies for NitroTPM VMs (``aws-ami-uefi-tpm``, ``aws-kms-nitrotpm-requires-pcr12-or-pcr7``,
``aws-ec2-sev-snp-enabled``) and the NitroTPM condition keys in the shared KMS rules: a compliant resource,
then one change per test with the exact message.

Oracle: the policy grammar of IAM/KMS (condition keys ANDed within a statement, statements ORed; only
``StringEquals``/``StringEqualsIgnoreCase`` compare a single-valued key exactly) and AWS's NitroTPM rule
that PCR4 must come with PCR12, or PCR7 with Secure Boot (``shared/reference/clouds.md`` §1.1). The hex
values are labelled made-up test data.
"""

from __future__ import annotations

import copy
import json
import sys
from typing import Any

import pytest
from pulumi_support import REPO, fake_hex, policy_violations, resource

sys.path.insert(0, str(REPO / "policies"))
from teeform_policies import aws_vm  # noqa: E402

sys.path.remove(str(REPO / "policies"))

AMI = "aws:ec2/ami:Ami"
KEY = "aws:kms/key:Key"
INSTANCE = "aws:ec2/instance:Instance"
LT = "aws:ec2/launchTemplate:LaunchTemplate"
P4, P7, P12 = (f"kms:RecipientAttestation:NitroTPMPCR{n}" for n in (4, 7, 12))
PCR4 = fake_hex("pcr4")
ROLE = "arn:aws:iam::111122223333:role/vm"

HAPPY_AMI = {"name": "vm", "bootMode": "uefi", "tpmSupport": "v2.0", "imdsSupport": "v2.0", "enaSupport": True,
             "virtualizationType": "hvm", "rootDeviceName": "/dev/xvda",
             "ebsBlockDevices": [{"deviceName": "/dev/xvda", "snapshotId": "snap-1"}]}


def stmt(condition: dict[str, Any], sid: str = "NitroTpmRelease1") -> dict[str, Any]:
    return {"Sid": sid, "Effect": "Allow", "Principal": {"AWS": ROLE}, "Action": ["kms:Decrypt"], "Resource": "*",
            "Condition": condition}


def key(*statements: dict[str, Any], name: str = "vm-key-kms") -> Any:
    return resource(KEY, {"policy": json.dumps({"Version": "2012-10-17", "Statement": list(statements)}),
                          "enableKeyRotation": True, "tags": {"teeform:target": "vm"}}, name)


def messages(policy: str, *res: Any) -> list[str]:
    return [v.message for v in policy_violations(policy, list(res))]


# ----------------------------------------------------------------------------- aws-ami-uefi-tpm


def test_uefi_tpm_ami_passes_and_legacy_or_tpm_less_fails() -> None:
    assert messages("aws-ami-uefi-tpm", resource(AMI, HAPPY_AMI, "vm-image-ami")) == []
    legacy = {**HAPPY_AMI, "bootMode": "legacy-bios"}
    assert messages("aws-ami-uefi-tpm", resource(AMI, legacy, "a")) == [
        "aws:ec2/ami:Ami 'a': field 'bootMode' is 'legacy-bios', not 'uefi': the image would not boot with UEFI "
        "measured boot, so no NitroTPM PCR (and no key gated on one) covers it. Set boot_mode=\"uefi\"."
    ]
    no_tpm = copy.deepcopy(HAPPY_AMI)
    del no_tpm["tpmSupport"]
    assert messages("aws-ami-uefi-tpm", resource(AMI, no_tpm, "a")) == [
        "aws:ec2/ami:Ami 'a': field 'tpmSupport' is None, not 'v2.0': instances from this AMI get no NitroTPM, so they "
        "cannot produce the attestation document a NitroTPM-gated key needs. Set tpm_support=\"v2.0\"."
    ]
    # uefi-preferred is not uefi: on a type that can boot legacy BIOS the image would boot unmeasured
    assert len(messages("aws-ami-uefi-tpm", resource(AMI, {**HAPPY_AMI, "bootMode": "uefi-preferred"}, "a"))) == 1
    # other resource types are not judged
    assert messages("aws-ami-uefi-tpm", resource(INSTANCE, {"ami": "ami-1"}, "i")) == []


# ----------------------------------------------------------------------------- aws-kms-nitrotpm-requires-pcr12-or-pcr7


@pytest.mark.parametrize("condition", [
    {"StringEqualsIgnoreCase": {P4: PCR4, P12: "0" * 96}},
    {"StringEquals": {P4: PCR4, P7: fake_hex("pcr7")}},
    {"StringEqualsIgnoreCase": {P4: PCR4}, "StringEquals": {P12: "0" * 96}},  # two operators, one statement
    {"StringEqualsIgnoreCase": {P4.lower(): PCR4, P12.upper(): "0" * 96}},     # keys are case-insensitive
])
def test_pcr4_with_pcr12_or_pcr7_in_the_same_statement_passes(condition: dict[str, Any]) -> None:
    policy = "aws-kms-nitrotpm-requires-pcr12-or-pcr7"
    assert messages(policy, key(stmt(condition))) == []
    # and for the shared rule (which wants StringEqualsIgnoreCase), NitroTPMPCR4 pins the image like PCR0 does
    if "StringEqualsIgnoreCase" in condition:
        assert messages("aws-kms-decrypt-requires-attestation", key(stmt(condition))) == []


def test_pcr4_alone_is_a_violation() -> None:
    assert messages("aws-kms-nitrotpm-requires-pcr12-or-pcr7", key(stmt({"StringEqualsIgnoreCase": {P4: PCR4}}))) == [
        "aws:kms/key:Key 'vm-key-kms': field 'policy', statement 'NitroTpmRelease1' pins "
        "kms:RecipientAttestation:NitroTPMPCR4 but not NitroTPMPCR12 or NitroTPMPCR7: with Secure Boot off a kernel "
        "command line appended by the boot loader is not in PCR4 (GHSA-xrv8-2pf5-f3q7). Add "
        "\"kms:RecipientAttestation:NitroTPMPCR12\": <pcr12_sha384 of the manifest> under StringEqualsIgnoreCase in "
        "the same statement (teeform's nitro-tpm targets do: attestation.pcrs [PCR4, PCR12])."
    ]


def test_pcr12_in_another_statement_does_not_count() -> None:
    """Statements are ORed: PCR12 in statement 2 does not constrain statement 1."""
    res = key(stmt({"StringEqualsIgnoreCase": {P4: PCR4}}, "A"),
              stmt({"StringEqualsIgnoreCase": {P4: PCR4, P12: "0" * 96}}, "B"))
    (msg,) = messages("aws-kms-nitrotpm-requires-pcr12-or-pcr7", res)
    assert "statement 'A' pins" in msg


@pytest.mark.parametrize("op", ["StringLike", "StringEqualsIfExists", "ForAnyValue:StringEquals", "StringNotEquals"])
def test_pcr12_under_a_loose_operator_does_not_count(op: str) -> None:
    (msg,) = messages("aws-kms-nitrotpm-requires-pcr12-or-pcr7",
                      key(stmt({"StringEqualsIgnoreCase": {P4: PCR4}, op: {P12: "*"}})))
    assert f"(only under {op} {P12}, which does not compare exactly)" in msg


def test_statements_without_nitrotpm_pcr4_are_not_judged() -> None:
    enclave = stmt({"StringEqualsIgnoreCase": {"kms:RecipientAttestation:PCR0": fake_hex("pcr0")}})
    admin = {"Sid": "Admin", "Effect": "Allow", "Principal": {"AWS": ROLE}, "Action": ["kms:Describe*"], "Resource": "*"}
    assert messages("aws-kms-nitrotpm-requires-pcr12-or-pcr7", key(enclave, admin)) == []
    assert messages("aws-kms-nitrotpm-requires-pcr12-or-pcr7", resource(KEY, {"policy": "not json"}, "k")) == []


def test_nitrotpm_keys_are_matched_against_the_manifest_measurements() -> None:
    """measurements-match-manifest reads NitroTPMPCR4/12 as the manifest's pcr4_sha384/pcr12_sha384."""
    manifest = resource("teeform:index:MeasurementManifest",
                        {"target": "vm", "name": "agent-vm", "kind": "vm-image",
                         "measurements": {"pcr4_sha384": PCR4, "pcr12_sha384": "0" * 96}}, "vm-manifest-agent-vm")
    good = key(stmt({"StringEqualsIgnoreCase": {P4: PCR4, P12: "0" * 96}}))
    assert messages("measurements-match-manifest", manifest, good) == []
    other = fake_hex("another build")
    (msg,) = messages("measurements-match-manifest", manifest, key(stmt({"StringEqualsIgnoreCase": {P4: other, P12: "0" * 96}})))
    assert f"condition {P4} value {other[:16]}... does not come from a loaded manifest" in msg


def test_the_packs_nitrotpm_names_are_teeforms() -> None:
    """The pack cannot import teeform: its copy of the condition-key -> measurement map is checked here."""
    from teeform.measurements import BY_NAME
    from teeform.targets.aws_nitro_tpm import NITROTPM_PCR_MEASUREMENTS, condition_key

    expected = {condition_key(p).rsplit(":", 1)[1]: m for p, m in NITROTPM_PCR_MEASUREMENTS.items() if m in BY_NAME}
    assert aws_vm.NITROTPM_MEASUREMENTS == expected
    assert all(BY_NAME[m].hex_len == 96 for m in aws_vm.NITROTPM_MEASUREMENTS.values())


# ----------------------------------------------------------------------------- aws-ec2-sev-snp-enabled


def snp_instance(**changes: Any) -> Any:
    inputs = {"ami": "ami-1", "instanceType": "m6a.large", "cpuOptions": {"amdSevSnp": "enabled"},
              "metadataOptions": {"httpTokens": "required"}, "tags": {"teeform:tee": "sev-snp"}}
    inputs.update(changes)
    return resource(INSTANCE, {k: v for k, v in inputs.items() if v is not None}, "snp-vm-instance")


def test_sev_snp_instance_passes_and_missing_cpu_option_fails() -> None:
    assert messages("aws-ec2-sev-snp-enabled", snp_instance()) == []
    assert messages("aws-ec2-sev-snp-enabled", snp_instance(cpuOptions=None)) == [
        "aws:ec2/instance:Instance 'snp-vm-instance': field 'cpuOptions.amdSevSnp' is None, but the resource is tagged "
        "teeform:tee=sev-snp: it would boot as an ordinary instance without SEV-SNP memory encryption. Set cpu_options "
        "amd_sev_snp=\"enabled\"."
    ]
    assert "is 'disabled'" in messages("aws-ec2-sev-snp-enabled", snp_instance(cpuOptions={"amdSevSnp": "disabled"}))[0]


def test_sev_snp_on_an_unsupported_family_fails() -> None:
    assert messages("aws-ec2-sev-snp-enabled", snp_instance(instanceType="m6i.large")) == [
        "aws:ec2/instance:Instance 'snp-vm-instance': field 'instanceType' is 'm6i.large'; AWS offers SEV-SNP only on "
        "m6a, c6a, r6a instances. Use one of those families."
    ]


def test_sev_snp_policy_reads_launch_template_tags_and_ignores_untagged() -> None:
    lt = resource(LT, {"instanceType": "c6a.xlarge", "tagSpecifications": [{"resourceType": "instance",
                                                                               "tags": {"teeform:tee": "sev-snp"}}]}, "lt")
    (msg,) = messages("aws-ec2-sev-snp-enabled", lt)
    assert msg.startswith("aws:ec2/launchTemplate:LaunchTemplate 'lt': field 'cpuOptions.amdSevSnp' is None")
    assert messages("aws-ec2-sev-snp-enabled", snp_instance(tags={"teeform:tee": "nitro-tpm"}, cpuOptions=None)) == []
    custom = policy_violations("aws-ec2-sev-snp-enabled", [snp_instance(tags={"tee": "snp"}, cpuOptions=None)],
                               {"teeTagKey": "tee", "teeTagValue": "snp"})
    assert len(custom) == 1
