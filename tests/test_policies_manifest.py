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
    assert names == [
        "measurements-match-manifest", "no-public-ingress", "policy-coverage", "aws-kms-decrypt-requires-attestation",
        "aws-kms-no-debug-measurements", "aws-kms-key-rotation-enabled", "aws-ec2-imdsv2-required",
        "aws-ec2-enclave-enabled", "aws-ebs-encrypted", "aws-kms-key-policy-rewriters", "aws-s3-bucket-tls-only",
        "aws-ec2-default-sg-closed",
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
