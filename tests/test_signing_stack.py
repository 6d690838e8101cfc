"""``teeform:trustedManifestKeys``: the Pulumi program refuses unsigned or wrongly signed manifests, records
``signed``/``signer`` on each MeasurementManifest, and ``teeform preview`` / ``teeform verify manifest --stack``
use the same keys. Signatures are made by ``teeform sign`` (checked against OpenSSL and securesystemslib in
tests/test_signing.py) or by OpenSSL (cosign blob format)."""

from __future__ import annotations

import base64
import subprocess

import pytest
import yaml
from pulumi_support import REPO, config_values, nitro_target, one, write_fake_eif_manifest, write_stack_file
from test_signing import _openssl_keypair

from teeform import signing
from teeform.cli import main
from teeform.errors import TeeformError
from teeform.stack import StackConfig

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _run(targets, keys, environment="dev"):
    from teeform.preview import registered_resources, run_program

    cfg = config_values(targets, environment=environment)
    if keys is not None:
        cfg["teeform:trustedManifestKeys"] = [str(k) for k in keys]
    mocks, outputs = run_program(REPO, "dev", cfg)
    return registered_resources(mocks, "dev"), outputs


def test_signed_manifest_is_recorded_with_its_signer(tmp_path):
    img = write_fake_eif_manifest(tmp_path / "build")
    key, pub = _openssl_keypair(tmp_path)
    signing.sign_manifest(img.manifest_path, key)
    resources, _ = _run([nitro_target([img.manifest_path])], [pub])
    mm = one(resources, "teeform:index:MeasurementManifest")
    assert mm.inputs["signed"] is True
    assert mm.inputs["signer"] == "sha256:" + signing.load_public_key(pub).fingerprint


def test_cosign_blob_signature_next_to_the_manifest_is_accepted(tmp_path):
    img = write_fake_eif_manifest(tmp_path / "build")
    key, pub = _openssl_keypair(tmp_path)
    der = subprocess.run(["openssl", "dgst", "-sha256", "-sign", str(key), str(img.manifest_path)], check=True,
                         capture_output=True).stdout
    img.manifest_path.with_name(img.manifest_path.name + ".sig").write_bytes(base64.b64encode(der))
    resources, _ = _run([nitro_target([img.manifest_path])], [pub])
    assert one(resources, "teeform:index:MeasurementManifest").inputs["signed"] is True


@pytest.mark.parametrize("case", ["unsigned", "other-key", "tampered"])
def test_program_refuses_unsigned_or_wrongly_signed(tmp_path, case):
    img = write_fake_eif_manifest(tmp_path / "build")
    key, pub = _openssl_keypair(tmp_path)
    if case != "unsigned":
        signing.sign_manifest(img.manifest_path, key)
    if case == "other-key":
        _, pub = _openssl_keypair(tmp_path, "other")
    if case == "tampered":
        img.manifest_path.write_text(img.manifest_path.read_text().replace('"1.0.0"', '"1.0.1"'))
    with pytest.raises(TeeformError) as ei:
        _run([nitro_target([img.manifest_path])], [pub])
    msg = ei.value.render()
    assert msg.startswith("stacks/Pulumi.dev.yaml: teeform:targets[agent].manifests[0]: refused: not signed by a key "
                          "of teeform:trustedManifestKeys: ")
    assert {"unsigned": "no signature: envelopes file not found", "other-key": "no signature verifies with a pinned key",
            "tampered": "the manifest was changed after signing"}[case] in msg


def test_stack_config_field_errors_name_the_field(tmp_path):
    t = [nitro_target([tmp_path / "m.json"])]
    with pytest.raises(TeeformError, match=r"f.yaml: teeform:trustedManifestKeys\[1\]: must be a string"):
        StackConfig.from_values({"targets": t, "trustedManifestKeys": ["a.pub", 3]}, stack="s", source="f.yaml")
    cfg = StackConfig.from_values({"targets": t, "trustedManifestKeys": ["missing.pub"]}, stack="s", source="f.yaml",
                                  project_dir=tmp_path)
    with pytest.raises(TeeformError, match=r"^f.yaml: teeform:trustedManifestKeys\[0\]: .*missing.pub: public key not found"):
        cfg.trusted_keys()


def test_inline_pem_is_accepted(tmp_path):
    _, pub = _openssl_keypair(tmp_path)
    t = [nitro_target([tmp_path / "m.json"])]
    cfg = StackConfig.from_values({"targets": t, "trustedManifestKeys": [pub.read_text()]}, stack="s")
    assert [k.fingerprint for k in cfg.trusted_keys()] == [signing.load_public_key(pub).fingerprint]


def test_preview_and_verify_with_the_stack_keys(tmp_path, capsys):
    img = write_fake_eif_manifest(tmp_path / "build")
    key, pub = _openssl_keypair(tmp_path)
    signing.sign_manifest(img.manifest_path, key)
    (tmp_path / "stacks").mkdir()
    stack = write_stack_file(tmp_path / "stacks" / "Pulumi.dev.yaml", [nitro_target([img.manifest_path])])
    doc = yaml.safe_load(stack.read_text())
    doc["config"]["teeform:trustedManifestKeys"] = [str(pub)]
    stack.write_text(yaml.safe_dump(doc))
    (tmp_path / "Pulumi.yaml").write_text((REPO / "Pulumi.yaml").read_text())
    capsys.readouterr()
    assert main(["verify", "manifest", str(img.manifest_path), "--stack", "dev", "--project-dir", str(tmp_path)]) == 0
    assert f"({pub})" in capsys.readouterr().out
    rc = main(["preview", "--project-dir", str(REPO), "--stack", "dev", "--stack-file", str(stack)])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert f"signed by sha256:{signing.load_public_key(pub).fingerprint} (verified against teeform:trustedManifestKeys)" in out
    img.manifest_path.write_text(img.manifest_path.read_text().replace('"1.0.0"', '"1.0.1"'))
    rc = main(["preview", "--project-dir", str(REPO), "--stack", "dev", "--stack-file", str(stack)])
    err = capsys.readouterr().err
    assert rc == 2 and "refused: not signed by a key of teeform:trustedManifestKeys" in err
