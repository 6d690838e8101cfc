"""``enclave.sealedSecrets`` / ``enclave.cloudwatchLogGroup`` of aws/nitro-enclave targets, and the
host role without a key-scoped ``kms:GenerateRandom`` (issue 8 item 1 leftovers).

Oracles: the stack config written here, hashlib over the sealed file's bytes, the AWS documentation
facts quoted in the assertions (GenerateRandom takes ``Resource: "*"``: KMS developer guide
"Specifying KMS keys in IAM policy statements"; CloudWatch Logs ``logGroupName`` pattern; S3 object
key "safe characters"), never values computed by the code under test.
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pytest
import yaml
from pulumi_support import REPO, by_type, nitro_target, one, run, write_fake_eif_manifest

from teeform.errors import TeeformError
from teeform.preview import MOCK_ACCOUNT_ID
from teeform.seal import SealedSecrets, aad_fields, encryption_context

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

LT = "aws:ec2/launchTemplate:LaunchTemplate"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
OBJECT = "aws:s3/bucketObjectv2:BucketObjectv2"
FIELD = "teeform:targets[0].enclave"


def user_data(resources) -> str:
    return base64.b64decode(one(resources, LT).inputs["userData"]).decode()


def role_policies(resources) -> list[dict]:
    return [json.loads(r.inputs["policy"]) for r in by_type(resources, ROLE_POLICY)]


def statements(resources) -> list[dict]:
    return [s for p in role_policies(resources) for s in p["Statement"]]


def sealed_file(path: Path, *, stack: str = "dev", target: str = "agent", manifest_sha256: str) -> Path:
    """A sealed file in the `teeform seal` format (fields of docs/verify-and-seal.md; arbitrary bytes)."""
    key = f"arn:aws:kms:eu-west-1:{MOCK_ACCOUNT_ID}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    s = SealedSecrets(key, encryption_context(stack, target, manifest_sha256), b"\x01" * 32, b"\x02" * 12,
                      b"\x03" * 40, aad_fields(stack, key, manifest_sha256))
    path.write_text(s.to_json())
    return path


# ------------------------------------------------------------------------------ GenerateRandom


def test_generate_random_only_with_resource_star(tmp_path):
    img = write_fake_eif_manifest(tmp_path)
    resources, _, _ = run([nitro_target([img.manifest_path])])
    grants = [s for s in statements(resources) if "kms:GenerateRandom" in (s["Action"] if isinstance(s["Action"], list) else [s["Action"]])]
    assert grants, "GenerateRandom must still be granted (IAM, Resource '*')"
    assert all(s["Resource"] == "*" and s.get("Condition") for s in grants), grants
    use_key = next(s for s in statements(resources) if s.get("Sid") == "UseAttestedKey")
    assert use_key["Action"] == ["kms:Decrypt", "kms:GenerateDataKey"]


# ------------------------------------------------------------------------------ settings parsing


@pytest.mark.parametrize("value, field, message", [
    (7, f"{FIELD}.sealedSecrets", "must be the path of a `teeform seal` output or {s3Key: <object key>}, got int"),
    ([], f"{FIELD}.sealedSecrets", "got list"),
    ({"path": "a", "s3Key": "b"}, f"{FIELD}.sealedSecrets", "give exactly one of 'path'"),
    ({}, f"{FIELD}.sealedSecrets", "give exactly one of 'path'"),
    ({"s3key": "b"}, f"{FIELD}.sealedSecrets", "unknown key(s) ['s3key']"),
    ({"s3Key": "../x"}, f"{FIELD}.sealedSecrets.s3Key", "not a safe S3 object key"),
    ({"s3Key": "/abs"}, f"{FIELD}.sealedSecrets.s3Key", "not a safe S3 object key"),
    ({"s3Key": "a b"}, f"{FIELD}.sealedSecrets.s3Key", "not a safe S3 object key"),
    ({"s3Key": "x" * 1025}, f"{FIELD}.sealedSecrets.s3Key", "not a safe S3 object key"),
    ({"s3Key": 3}, f"{FIELD}.sealedSecrets.s3Key", ""),
], ids=["int", "list", "both", "neither", "typo", "dotdot", "leading-slash", "space", "too-long", "not-string"])
def test_sealed_secrets_setting_is_strict(tmp_path, value, field, message):
    img = write_fake_eif_manifest(tmp_path)
    with pytest.raises(TeeformError) as exc:
        run([nitro_target([img.manifest_path], enclave={"cpuCount": 2, "memoryMib": 1024, "sealedSecrets": value})])
    assert exc.value.field == field, exc.value.render()
    assert message in exc.value.message


@pytest.mark.parametrize("value", ["has space", "x" * 513, "", 5, ["/a"]])
def test_cloudwatch_log_group_setting_is_strict(tmp_path, value):
    img = write_fake_eif_manifest(tmp_path)
    with pytest.raises(TeeformError) as exc:
        run([nitro_target([img.manifest_path], enclave={"cpuCount": 2, "memoryMib": 1024, "cloudwatchLogGroup": value})])
    assert exc.value.field == f"{FIELD}.cloudwatchLogGroup", exc.value.render()


# ------------------------------------------------------------------------------ wiring


def test_s3_key_and_log_group_reach_the_user_data_and_the_role(tmp_path):
    img = write_fake_eif_manifest(tmp_path)
    enclave = {"cpuCount": 2, "memoryMib": 1024, "sealedSecrets": {"s3Key": "sealed/agent.json"},
               "cloudwatchLogGroup": "/teeform/dev/agent"}
    resources, _, _ = run([nitro_target([img.manifest_path], enclave=enclave)])
    ud = user_data(resources)
    read = next(s for s in statements(resources) if s.get("Sid") == "ReadEif")
    bucket = read["Resource"][0].split(":::", 1)[1].split("/", 1)[0]
    assert f"s3://{bucket}/sealed/agent.json /opt/teeform/sealed.json.tmp" in ud
    assert f"arn:aws:s3:::{bucket}/sealed/agent.json" in read["Resource"]
    assert '"log_group_name": "/teeform/dev/agent"' in ud and "amazon-cloudwatch-agent-ctl" in ud
    logs = next(s for s in statements(resources) if s.get("Sid") == "ShipEnclaveLogs")
    assert logs["Resource"] == f"arn:aws:logs:eu-west-1:{MOCK_ACCOUNT_ID}:log-group:/teeform/dev/agent:*"
    assert not [o for o in by_type(resources, OBJECT) if o.inputs["key"].startswith("sealed/")]  # uploaded by the operator


def test_without_the_settings_nothing_is_fetched_or_shipped(tmp_path):
    img = write_fake_eif_manifest(tmp_path)
    resources, _, _ = run([nitro_target([img.manifest_path])])
    ud = user_data(resources)
    assert "sealed.json.tmp" not in ud and "amazon-cloudwatch-agent" not in ud
    assert "ShipEnclaveLogs" not in [s.get("Sid") for s in statements(resources)]


def test_a_sealed_file_path_is_checked_uploaded_and_fetched(tmp_path):
    img = write_fake_eif_manifest(tmp_path)
    digest = hashlib.sha256(img.manifest_path.read_bytes()).hexdigest()
    f = sealed_file(tmp_path / "agent.sealed.json", manifest_sha256=digest)
    resources, _, _ = run([nitro_target([img.manifest_path], enclave={"cpuCount": 2, "memoryMib": 1024, "sealedSecrets": str(f)})])
    key = f"sealed/sha256/{hashlib.sha256(f.read_bytes()).hexdigest()}.json"
    (obj,) = [o for o in by_type(resources, OBJECT) if o.inputs["key"] == key]
    assert obj.inputs["source"].path == str(f)
    assert obj.inputs["sourceHash"] == hashlib.sha256(f.read_bytes()).hexdigest()
    read = next(s for s in statements(resources) if s.get("Sid") == "ReadEif")
    bucket = read["Resource"][0].split(":::", 1)[1].split("/", 1)[0]
    assert f"arn:aws:s3:::{bucket}/{key}" in read["Resource"]
    assert f"s3://{bucket}/{key} /opt/teeform/sealed.json.tmp" in user_data(resources)


@pytest.mark.parametrize("kind, message", [
    ("other-target", "is sealed for teeform:target 'other', not 'agent'"),
    ("other-stack", "is sealed for teeform:stack 'prod', not 'dev'"),
    ("other-manifest", "which is not one of the target's manifests"),
    ("not-sealed", "not a teeform sealed-secrets file"),
    ("missing", "sealed secrets file not found"),
    ("directory", "sealed secrets file is a directory"),
])
def test_a_wrong_sealed_file_is_one_error_naming_the_field(tmp_path, kind, message):
    img = write_fake_eif_manifest(tmp_path)
    digest = hashlib.sha256(img.manifest_path.read_bytes()).hexdigest()
    f = tmp_path / "agent.sealed.json"
    if kind == "other-target":
        sealed_file(f, target="other", manifest_sha256=digest)
    elif kind == "other-stack":
        sealed_file(f, stack="prod", manifest_sha256=digest)
    elif kind == "other-manifest":
        sealed_file(f, manifest_sha256="ab" * 32)
    elif kind == "not-sealed":
        f.write_text('{"format": "something-else"}')
    elif kind == "directory":
        f.mkdir()
    with pytest.raises(TeeformError) as exc:
        run([nitro_target([img.manifest_path], enclave={"cpuCount": 2, "memoryMib": 1024, "sealedSecrets": str(f)})])
    assert exc.value.field == "teeform:targets[agent].enclave.sealedSecrets", exc.value.render()
    assert message in exc.value.message and str(f) in exc.value.message


def test_dev_stack_example_sets_both_settings():
    doc = yaml.safe_load((REPO / "stacks" / "Pulumi.dev.yaml").read_text())
    enclave = doc["config"]["teeform:targets"][0]["enclave"]
    assert enclave["sealedSecrets"] == {"s3Key": "sealed/agent.sealed.json"}
    assert enclave["cloudwatchLogGroup"] == "/teeform/dev/agent"
