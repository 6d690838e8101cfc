"""`teeform preview`: the real program and stack files under mocks, then the whole policy pack."""

from __future__ import annotations

import json

import pytest
import yaml
from pulumi_support import REPO, nitro_target, write_fake_eif_manifest, write_stack_file

from teeform.cli import main
from teeform.errors import TeeformError
from teeform.fsutil import display_path
from teeform.preview import _find_teeform_error, policy_settings

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def repo_stack_with(tmp_path, env, manifest, **target_changes):
    """The repository's stacks/Pulumi.<env>.yaml with its manifests pointed at a test manifest."""
    doc = yaml.safe_load((REPO / "stacks" / f"Pulumi.{env}.yaml").read_text())
    for t in doc["config"]["teeform:targets"]:
        t["manifests"] = [str(manifest)]
        t.update(target_changes)
    from test_signing import sign_for_repo_stack  # prod pins the demo's signing key: use a test key

    sign_for_repo_stack(doc, manifest, tmp_path)
    path = tmp_path / f"Pulumi.{env}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def preview(capsys, *args):
    rc = main(["preview", "--project-dir", str(REPO), *args])
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_repo_stacks_preview_clean(tmp_path, capsys, env):
    img = write_fake_eif_manifest(tmp_path / "build")
    rc, out, err = preview(capsys, "--stack", env, "--stack-file", str(repo_stack_with(tmp_path, env, img.manifest_path)))
    assert rc == 0, out + err
    pcr0 = img.manifest.measurements["PCR0"]
    outputs = out.split("\nOutputs:\n", 1)[1]
    assert outputs.startswith(f"  measurements:\n    openclaw-agent:\n      PCR0: {pcr0}\n")
    assert "+ aws:ec2/launchTemplate:LaunchTemplate  agent-host-lt" in out
    assert "metadataOptions.httpTokens=required" in out and "enclaveOptions.enabled=True" in out
    assert f"StringEqualsIgnoreCase kms:RecipientAttestation:PCR0 in [{pcr0}]" in out
    assert f"config {display_path(REPO / 'policies' / 'config' / (env + '.json'))}" in out  # the file chosen
    assert "No mandatory violations." in out and "[mandatory]" not in out


def test_json_document(tmp_path, capsys):
    img = write_fake_eif_manifest(tmp_path / "build")
    rc, out, _ = preview(capsys, "--stack", "dev", "--json", "--stack-file", str(repo_stack_with(tmp_path, "dev", img.manifest_path)))
    doc = json.loads(out)
    assert rc == 0 and {"resources", "outputs", "violations"} <= set(doc)
    assert list(doc["outputs"])[0] == "measurements"
    assert doc["outputs"]["measurements"]["openclaw-agent"]["PCR0"] == img.manifest.measurements["PCR0"]
    types = {r["type"] for r in doc["resources"]}
    assert {"aws:kms/key:Key", "aws:ec2/instance:Instance", "teeform:index:MeasurementManifest"} <= types
    obj = next(r for r in doc["resources"] if r["name"] == "agent-artifacts-eif")
    assert obj["inputs"]["source"] == {"asset": str(img.eif_path)}


@pytest.mark.parametrize("env, level, rc_expected", [("prod", "mandatory", 1), ("dev", "advisory", 0)])
def test_open_ingress(tmp_path, capsys, env, level, rc_expected):
    img = write_fake_eif_manifest(tmp_path / "build")
    stack = repo_stack_with(tmp_path, env, img.manifest_path, network={"ingress": [{"cidr": "0.0.0.0/0", "port": 22}]})
    rc, out, _ = preview(capsys, "--stack", env, "--stack-file", str(stack))
    assert rc == rc_expected
    assert f"  [{level}] no-public-ingress (aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule: agent-net-ingress-0)" in out
    assert "field 'cidrIpv4' is 0.0.0.0/0, which opens port(s) 22 to the whole internet" in out


def test_missing_manifest_is_one_line(tmp_path, capsys):
    stack = write_stack_file(tmp_path / "Pulumi.dev.yaml", [nitro_target([tmp_path / "nope.manifest.json"])])
    rc, out, err = preview(capsys, "--stack", "dev", "--stack-file", str(stack))
    assert rc == 2 and out == ""
    assert err.splitlines() == [
        f"error: {tmp_path / 'nope.manifest.json'}: manifest not found",
        "hint: build one with `teeform build eif ...` (or `make demo`)",
    ]


def test_policy_config_override_and_disabled(tmp_path, capsys):
    img = write_fake_eif_manifest(tmp_path / "build")
    stack = write_stack_file(tmp_path / "Pulumi.dev.yaml", [nitro_target([img.manifest_path], network={"ingress": [{"cidr": "::/0", "port": 22}]})])
    cfg = tmp_path / "pack.json"
    cfg.write_text(json.dumps({"all": "disabled"}))
    rc, out, _ = preview(capsys, "--stack", "dev", "--stack-file", str(stack), "--policy-config", str(cfg))
    assert rc == 0 and "no violations" in out
    cfg.write_text(json.dumps({"no-public-ingress": {"enforcementLevel": "mandatory"}}))
    rc, out, _ = preview(capsys, "--stack", "dev", "--stack-file", str(stack), "--policy-config", str(cfg))
    assert rc == 1 and "[mandatory] no-public-ingress" in out


def test_enforcement_resolution():
    import sys

    sys.path.insert(0, str(REPO / "policies"))
    try:
        from teeform_policies import REGISTRY
    finally:
        sys.path.remove(str(REPO / "policies"))
    ingress = REGISTRY["no-public-ingress"]
    assert policy_settings(ingress, {}) == ("advisory", {"forbiddenCidrs": ["0.0.0.0/0", "::/0"]})
    assert policy_settings(ingress, {"all": "mandatory"})[0] == "mandatory"
    assert policy_settings(ingress, {"all": "mandatory", "no-public-ingress": "advisory"})[0] == "advisory"
    assert policy_settings(ingress, {"no-public-ingress": {"forbiddenCidrs": ["1.2.3.0/24"]}}) == ("advisory", {"forbiddenCidrs": ["1.2.3.0/24"]})
    assert policy_settings(REGISTRY["aws-kms-decrypt-requires-attestation"], {"aws-kms-decrypt-requires-attestation": "remediate"})[0] == "mandatory"


def test_unwraps_teeform_errors_from_pulumi_wrappers():
    inner = TeeformError("instance type too small", field="f")
    try:
        try:
            raise inner
        except TeeformError as e:
            raise RuntimeError("Program failed with an unhandled exception") from e
    except RuntimeError as wrapped:
        assert _find_teeform_error(Exception(wrapped)) is inner
    assert _find_teeform_error(ValueError("x")) is None


def test_production_environment_selects_prod_pack_config(tmp_path, capsys):
    """A stack not named prod but with teeform:environment: prod gets policies/config/prod.json, so open
    ingress is mandatory there too; the same stack with environment dev stays advisory."""
    img = write_fake_eif_manifest(tmp_path / "build")
    ingress = {"ingress": [{"cidr": "0.0.0.0/0", "port": 443}]}
    for env, rc_expected, level in (("prod", 1, "mandatory"), ("dev", 0, "advisory")):
        stack = write_stack_file(tmp_path / f"Pulumi.eu-{env}.yaml", [nitro_target([img.manifest_path], network=ingress)],
                                 environment=env)
        rc, out, _ = preview(capsys, "--stack", f"eu-{env}", "--stack-file", str(stack))
        assert rc == rc_expected, out
        assert f"config {display_path(REPO / 'policies' / 'config' / (env + '.json'))}" in out  # the file chosen
        assert f"  [{level}] no-public-ingress (aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule: agent-net-ingress-0)" in out
