"""Policy ``manifest-signed``: reads the ``signed``/``signer`` props the program records (tests/test_signing_stack.py
checks the program side); mandatory in the shipped prod pack config; the repository's prod stack pins a key."""

from __future__ import annotations

import json

import pytest
import yaml
from pulumi_support import REPO, fake_hex, policy_violations, resource

MM = "teeform:index:MeasurementManifest"
SIGNER = "sha256:" + fake_hex("key", 64)


def mm(signed: bool, signer: str = SIGNER):
    props = {"target": "agent", "name": "a", "kind": "eif", "path": "build/a.manifest.json", "sha256": fake_hex("m", 64),
             "measurements": {}, "signed": signed, "signer": signer if signed else ""}
    return resource(MM, props, "agent-manifest-a")


def messages(res, config):
    return [v.message for v in policy_violations("manifest-signed", [res], config)]


def test_unsigned_manifest_is_a_violation_in_production_only():
    assert messages(mm(False), {"environment": "dev"}) == []
    (msg,) = messages(mm(False), {"environment": "prod"})
    assert msg == ("teeform:index:MeasurementManifest 'agent-manifest-a': manifest build/a.manifest.json was not verified "
                   "against a trusted signing key (signed: False) in environment 'prod'. Sign it (teeform sign MANIFEST "
                   "--key KEY.pem) and pin the public key in the stack's teeform:trustedManifestKeys (docs/signing.md).")
    assert len(messages(mm(False), {"environment": "dev", "requireSigned": True})) == 1
    assert messages(mm(True), {"environment": "prod"}) == []


def test_malformed_signer_and_trusted_signers():
    assert len(messages(mm(True, "someone"), {"environment": "prod"})) == 1
    assert messages(mm(True), {"environment": "prod", "trustedSigners": [SIGNER]}) == []
    (msg,) = messages(mm(True), {"environment": "prod", "trustedSigners": ["sha256:" + "0" * 64]})
    assert f"is signed by {SIGNER}, which is not in this policy's trustedSigners (1 pinned)" in msg


def test_other_resources_are_ignored():
    assert messages(resource("aws:kms/key:Key", {"policy": "{}"}), {"environment": "prod"}) == []


def test_prod_config_makes_it_mandatory_and_prod_stack_pins_a_key():
    cfg = json.loads((REPO / "policies" / "config" / "prod.json").read_text())
    assert cfg["manifest-signed"] == {"enforcementLevel": "mandatory", "environment": "prod"}
    doc = yaml.safe_load((REPO / "stacks" / "Pulumi.prod.yaml").read_text())
    assert doc["config"]["teeform:environment"] == "prod"
    assert doc["config"]["teeform:trustedManifestKeys"] == ["build/demo-keys/manifest-signing.pub"]
    assert 'scripts/demo-sign.sh "$OUT/openclaw-agent.manifest.json"' in (REPO / "scripts" / "demo.sh").read_text()
    assert '$TEEFORM sign "$m" --key "$KEYS/manifest-signing.key"' in (REPO / "scripts" / "demo-sign.sh").read_text()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_prod_preview_of_an_unpinned_stack_fails_manifest_signed(tmp_path, capsys):
    """A prod stack without trusted keys previews with the mandatory violation (exit 1)."""
    from pulumi_support import write_fake_eif_manifest

    from teeform.cli import main

    img = write_fake_eif_manifest(tmp_path / "build")
    doc = yaml.safe_load((REPO / "stacks" / "Pulumi.prod.yaml").read_text())
    del doc["config"]["teeform:trustedManifestKeys"]
    doc["config"]["teeform:targets"][0]["manifests"] = [str(img.manifest_path)]
    stack = tmp_path / "Pulumi.prod.yaml"
    stack.write_text(yaml.safe_dump(doc))
    rc = main(["preview", "--project-dir", str(REPO), "--stack", "prod", "--stack-file", str(stack)])
    out = capsys.readouterr().out
    assert rc == 1, out
    assert "[mandatory] manifest-signed (teeform:index:MeasurementManifest: agent-manifest-openclaw-agent)" in out
