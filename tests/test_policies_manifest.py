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


def manifest(name, **meas):
    return resource(MM, {"name": name, "kind": "eif", "path": f"{name}.json", "sha256": fake_hex(name, 64), "measurements": meas}, f"agent-manifest-{name}")


def key(**conds):
    stmt = {"Sid": "Enclave", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::1:role/r"}, "Action": "kms:Decrypt",
            "Resource": "*", "Condition": {"StringEqualsIgnoreCase": conds}}
    return resource(KEY, {"policy": json.dumps({"Version": "2012-10-17", "Statement": [stmt]})}, "agent-key-kms")


A, B = fake_hex("a"), fake_hex("b")


def messages(resources, config=None):
    return [(v.enforcement, v.resource_name, v.message) for v in policy_violations("measurements-match-manifest", resources, config)]


def test_values_from_loaded_manifests_pass():
    res = [manifest("v1", PCR0=A, ImageSha384=A), manifest("v2", PCR0=B, ImageSha384=B),
           key(**{"kms:RecipientAttestation:PCR0": [A, B.upper()], "kms:recipientattestation:imagesha384": A})]
    assert messages(res) == []


def test_pasted_hash_is_a_violation():
    res = [manifest("v1", PCR0=A), key(**{"kms:RecipientAttestation:PCR0": [A, B]})]
    assert messages(res) == [(
        "mandatory", "agent-key-kms",
        f"aws:kms/key:Key 'agent-key-kms': field 'policy', statement 'Enclave': condition kms:RecipientAttestation:PCR0 "
        f"value {B[:16]}... does not come from a loaded manifest: it is not the PCR0 of any MeasurementManifest in the stack "
        "(1 known). Put the build's manifest in teeform:targets[].manifests and let the program fill the key policy; never paste hashes.",
    )]


def test_measurement_names_must_match_and_manifests_must_exist():
    # A's PCR1 is not a PCR0: compared name for name
    res = [manifest("v1", PCR0=B, PCR1=A), key(**{"kms:RecipientAttestation:PCR0": A})]
    assert len(messages(res)) == 1
    (m,) = messages([key(**{"kms:RecipientAttestation:PCR0": A})])
    assert "no MeasurementManifest in the stack records PCR0" in m[2]


def test_ignored_condition_keys():
    res = [manifest("v1", PCR0=A), key(**{"kms:RecipientAttestation:PCR0": A, "kms:RecipientAttestation:PCR3": B})]
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
        "kms-decrypt-requires-attestation", "kms-no-debug-measurements", "kms-key-rotation-enabled",
        "measurements-match-manifest", "no-public-ingress", "ec2-imdsv2-required", "ec2-enclave-enabled", "ebs-encrypted",
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
