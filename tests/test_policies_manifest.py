"""`measurements-match-manifest` (stack policy) and the registry rules."""

from __future__ import annotations

import json
import sys
from types import SimpleNamespace

import pytest
from pulumi_policy import EnforcementLevel, ResourceValidationPolicy
from pulumi_support import REPO, fake_hex, policy_violations, resource

KEY = "aws:kms/key:Key"
MM = "teeform:index:MeasurementManifest"


def manifest(name, target="agent", **meas):
    props = {"target": target, "name": name, "kind": "eif", "path": f"{name}.json", "sha256": fake_hex(name, 64), "measurements": meas}
    if target is None:
        del props["target"]
    return resource(MM, props, f"{target}-manifest-{name}")


def key(*stmts, target="agent", name="agent-key-kms", **conds):
    """A KMS key whose policy has one Enclave statement per condition block (``conds`` = one block)."""
    blocks = list(stmts) or [conds]
    statements = [{"Sid": f"Enclave{i + 1}" if len(blocks) > 1 else "Enclave", "Effect": "Allow",
                   "Principal": {"AWS": "arn:aws:iam::1:role/r"}, "Action": "kms:Decrypt", "Resource": "*",
                   "Condition": {"StringEqualsIgnoreCase": c}} for i, c in enumerate(blocks)]
    props = {"policy": json.dumps({"Version": "2012-10-17", "Statement": statements})}
    if target is not None:
        props["tags"] = {"teeform:target": target}
    return resource(KEY, props, name)


A, B = fake_hex("a"), fake_hex("b")
A1, B1 = fake_hex("a1"), fake_hex("b1")
P0, P1, IS = "kms:RecipientAttestation:PCR0", "kms:RecipientAttestation:PCR1", "kms:recipientattestation:imagesha384"


def messages(resources, config=None):
    return [(v.enforcement, v.resource_name, v.message) for v in policy_violations("measurements-match-manifest", resources, config)]


def test_values_from_loaded_manifests_pass():
    res = [manifest("v1", PCR0=A, ImageSha384=A), manifest("v2", PCR0=B, ImageSha384=B),
           key({P0: A, IS: A}, {P0: B.upper(), IS: B})]
    assert messages(res) == []
    # a list of PCR0s alone admits only whole manifests (one value per pinned name): still fine
    assert messages([*res[:2], key(**{P0: [A, B]})]) == []


def test_pasted_hash_is_a_violation():
    res = [manifest("v1", PCR0=A), key(**{P0: [A, B]})]
    assert messages(res) == [(
        "mandatory", "agent-key-kms",
        f"aws:kms/key:Key 'agent-key-kms': field 'policy', statement 'Enclave': condition {P0} "
        f"value {B[:16]}... does not come from a loaded manifest: it is not the PCR0 of any MeasurementManifest of "
        "target 'agent' (1 known). Put the build's manifest in teeform:targets[].manifests and let the program fill the "
        "key policy; never paste hashes.",
    )]


def test_cross_product_of_two_builds_is_a_violation():
    """One statement listing both builds' PCR0 and PCR1 admits (A.PCR0, B.PCR1): refused; one
    statement per manifest passes."""
    mfs = [manifest("v1", PCR0=A, PCR1=A1), manifest("v2", PCR0=B, PCR1=B1)]
    (m,) = messages([*mfs, key(**{P0: [A, B], P1: [A1, B1]})])
    assert f"admits the combination (PCR0={A[:16]}..., PCR1={B1[:16]}...)" in m[2]
    assert "mixes measurements of different builds" in m[2]
    assert messages([*mfs, key({P0: A, P1: A1}, {P0: B, P1: B1})]) == []
    (m,) = messages([*mfs, key({P0: A, P1: B1})])  # one statement, single values, but from two builds
    assert "admits the combination" in m[2]


def test_key_is_checked_against_its_own_targets_manifests():
    res = [manifest("a", target="agent", PCR0=A), manifest("b", target="other", PCR0=B)]
    (m,) = messages([*res, key(**{P0: B})])  # agent's key pinning other's PCR0
    assert "it is not the PCR0 of any MeasurementManifest of target 'agent' (1 known)" in m[2]
    assert messages([*res, key(target="other", name="other-key-kms", **{P0: B})]) == []
    # an untagged key is compared with every manifest of the stack
    assert messages([*res, key(target=None, **{P0: B})]) == []
    (m,) = messages([*res, key(target="ghost", **{P0: A})])
    assert "tag 'teeform:target' is 'ghost', but no MeasurementManifest of that target" in m[2]


def test_measurement_names_must_match_and_manifests_must_exist():
    # A's PCR1 is not a PCR0: compared name for name
    res = [manifest("v1", PCR0=B, PCR1=A), key(**{P0: A})]
    assert len(messages(res)) == 1
    (m,) = messages([key(target=None, **{P0: A})])
    assert "no MeasurementManifest of the stack records PCR0" in m[2]


def test_ignored_condition_keys():
    res = [manifest("v1", PCR0=A), key(**{P0: A, "kms:RecipientAttestation:PCR3": B})]
    assert len(messages(res)) == 1
    assert messages(res, {"ignoredConditionKeys": ["kms:RecipientAttestation:PCR3"]}) == []


def test_registry_rejects_duplicates_and_all():
    sys.path.insert(0, str(REPO / "policies"))
    try:
        from teeform_policies import all_policies
        from teeform_policies.registry import PolicyRegistry
    finally:
        sys.path.remove(str(REPO / "policies"))
    names = [p.name for p in all_policies()]
    assert [n for n in names if n.startswith("gcp-")] == [  # GCP (issue 9), tests/test_gcp_policies.py
        "gcp-wip-condition-pins-digest", "gcp-confidential-space-no-debug-image", "gcp-confidential-instance-enabled",
        "gcp-no-public-ingress", "gcp-kms-key-rotation"]
    assert [n for n in names if not n.startswith("gcp-")] == [
        "measurements-match-manifest", "no-public-ingress", "policy-coverage", "aws-kms-decrypt-requires-attestation",
        "aws-kms-no-debug-measurements", "aws-kms-key-rotation-enabled", "aws-ec2-imdsv2-required",
        "aws-ec2-enclave-enabled", "aws-ebs-encrypted", "aws-kms-key-policy-rewriters", "aws-s3-bucket-tls-only",
        "aws-ec2-default-sg-closed", "manifest-signed", "aws-ami-uefi-tpm", "aws-kms-nitrotpm-requires-pcr12-or-pcr7",
        "aws-ec2-sev-snp-enabled",
        # issue 11
        "trustee-reference-values-match-manifest", "trustee-policy-refuses-debug", "alicloud-no-public-ingress",
        "alicloud-tdx-instance-type",
        # issue 12
        "rollover-window-expired",
        # issue 10
        "azure-key-release-requires-attestation", "azure-cvm-confidential", "azure-no-public-ingress",
        "azure-vault-purge-protection",
    ]
    for p in all_policies():
        assert p.description and p.severity is not None and p.remediation_steps and p.url, p.name
    noop = lambda args, report: None  # noqa: E731
    with pytest.raises(ValueError, match="reserved"):  # pulumi_policy refuses it too; the registry does not rely on that
        PolicyRegistry([SimpleNamespace(name="all")])
    with pytest.raises(ValueError, match="duplicate policy id 'x'"):
        PolicyRegistry([ResourceValidationPolicy("x", "d", noop), ResourceValidationPolicy("x", "d", noop)])
    with pytest.raises(ValueError, match="not kebab-case"):
        PolicyRegistry([ResourceValidationPolicy("No_Snake", "d", noop, enforcement_level=EnforcementLevel.ADVISORY)])


def test_pack_main_only_constructs_the_pack():
    text = (REPO / "policies" / "__main__.py").read_text()
    assert "PolicyPack(" in text and "def " not in text  # rules live in teeform_policies, never here
    assert "pulumi-policy==1.21.0" in (REPO / "policies" / "requirements.txt").read_text()


def test_pack_starts_like_the_cli_runs_it():
    """Run policies/__main__.py with cwd=policies/ (as the CLI's policy host does) in a child process:
    it must build the PolicyPack and print its gRPC port (pulumi.md §3.1). The child is then stopped."""
    import subprocess

    proc = subprocess.Popen([sys.executable, "__main__.py"], cwd=REPO / "policies", stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline().strip()
        assert line.isdigit(), (line, proc.stderr.read() if proc.poll() is not None else "")
    finally:
        proc.terminate()
        proc.wait(timeout=10)


# --------------------------------------------------------------- standalone aws:kms/keyPolicy:KeyPolicy
KP = "aws:kms/keyPolicy:KeyPolicy"
KEY_UUID = "1234abcd-12ab-34cd-56ef-1234567890ab"
KEY_ARN = f"arn:aws:kms:eu-west-1:111122223333:key/{KEY_UUID}"


def key_policy(key_id, *stmts, name="agent-kp", **conds):
    """A standalone KeyPolicy (no tags: the resource has none) with the same statements as :func:`key`."""
    doc = json.loads(key(*stmts, **conds).inputs["policy"])
    return resource(KP, {"keyId": key_id, "policy": json.dumps(doc)}, name)


def bare_key(target, name, **outputs):
    """A KMS key without a policy of its own (its policy is a separate KeyPolicy), tagged for ``target``."""
    return resource(KEY, {"tags": {"teeform:target": target}, **outputs}, name)


@pytest.mark.parametrize("ref", ["urn", "keyId", "arn", "arn-tail"])
def test_key_policy_is_checked_against_the_target_of_its_key(ref):
    """A KeyPolicy of target agent's key pinning target other's PCR0 fails; pinning agent's passes."""
    mfs = [manifest("a", target="agent", PCR0=A), manifest("b", target="other", PCR0=B)]
    k = bare_key("agent", "agent-key", **({"keyId": KEY_UUID, "arn": KEY_ARN} if ref != "arn" else {"arn": KEY_ARN}))
    key_id = {"urn": k.urn, "keyId": KEY_UUID, "arn": KEY_ARN, "arn-tail": KEY_ARN}[ref]
    if ref == "arn-tail":
        k = bare_key("agent", "agent-key", keyId=KEY_UUID)  # only the id is known: the ARN's tail matches it
    (m,) = messages([*mfs, k, key_policy(key_id, **{P0: B})])
    assert m[1] == "agent-kp"
    assert m[2].startswith(f"{KP} 'agent-kp' (policy of {KEY} 'agent-key'): field 'policy', statement 'Enclave': ")
    assert "it is not the PCR0 of any MeasurementManifest of target 'agent' (1 known)" in m[2]
    assert messages([*mfs, k, key_policy(key_id, **{P0: A})]) == []


def test_key_policy_found_through_property_dependencies():
    """What the real analyzer hands a stack policy: ``property_dependencies['keyId']`` = [the key]."""
    from types import SimpleNamespace as NS

    sys.path.insert(0, str(REPO / "policies"))
    try:
        from teeform_policies.manifest import attached_key
    finally:
        sys.path.remove(str(REPO / "policies"))
    k = NS(resource_type=KEY, urn="urn:k", props={})
    other = NS(resource_type=KEY, urn="urn:o", props={"keyId": "x"})
    kp = NS(resource_type=KP, urn="urn:kp", props={"keyId": "x"}, property_dependencies={"keyId": [k]})
    assert attached_key(kp, [k, other]) is k
    kp2 = NS(resource_type=KP, urn="urn:kp2", props={"keyId": "x"}, property_dependencies={})
    assert attached_key(kp2, [k, other]) is other
    kp3 = NS(resource_type=KP, urn="urn:kp3", props={"keyId": "alias/agent"}, property_dependencies={})
    assert attached_key(kp3, [k, other]) is None


@pytest.mark.parametrize("key_id", ["alias/agent", "arn:aws:kms:eu-west-1:111122223333:key/not-in-stack", "", None])
def test_key_policy_of_an_unknown_key_is_not_checked_never_passed(key_id):
    """Even with values that match a manifest, a KeyPolicy that cannot be attributed is reported."""
    mfs = [manifest("a", target="agent", PCR0=A)]
    (m,) = messages([*mfs, bare_key("agent", "agent-key", keyId=KEY_UUID), key_policy(key_id, **{P0: A})])
    assert m[0] == "mandatory" and m[1] == "agent-kp"
    assert m[2].startswith(f"NOT CHECKED: {KP} 'agent-kp' attaches to key {key_id!r}, which is not an {KEY} of this stack")
    assert "cannot be checked against the manifests of that key's target" in m[2]


def test_key_policy_of_two_matching_keys_is_not_checked():
    """Two keys claiming the same id: ambiguous, so not attributed (reported, not guessed)."""
    mfs = [manifest("a", target="agent", PCR0=A), manifest("b", target="other", PCR0=B)]
    keys = [bare_key("agent", "agent-key", keyId=KEY_UUID), bare_key("other", "other-key", keyId=KEY_UUID)]
    (m,) = messages([*mfs, *keys, key_policy(KEY_UUID, **{P0: B})])
    assert m[2].startswith("NOT CHECKED: ")


def test_key_policy_without_release_rules_is_not_reported():
    """A KeyPolicy without kms:RecipientAttestation conditions releases nothing to enclaves: nothing to check."""
    doc = {"Version": "2012-10-17", "Statement": [{"Sid": "Admin", "Effect": "Allow",
                                                   "Principal": {"AWS": "arn:aws:iam::1:root"}, "Action": "kms:*",
                                                   "Resource": "*"}]}
    kp = resource(KP, {"keyId": "alias/x", "policy": json.dumps(doc)}, "kp")
    assert messages([manifest("a", PCR0=A), kp]) == []
