"""`teeform seal` / `teeform unseal` against a real KMS API surface: moto in server mode on 127.0.0.1."""

from __future__ import annotations

import base64
import json
import os
import socket
import stat
from pathlib import Path

import boto3
import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from teeform.cli import main
from teeform.errors import TeeformError
from teeform.manifest import Artifact, ArtifactKind, Builder, InputDigest, Manifest, manifest_sha256, write_manifest
from teeform.seal import SealedSecrets, format_env, load_secrets, parse_env

REGION = "eu-west-1"


@pytest.fixture(scope="module")
def moto_url():
    """A moto server (all services, incl. KMS) on a free loopback port, for this module."""
    from moto.server import ThreadedMotoServer

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    saved = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE")}
    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing")
    os.environ.pop("AWS_SESSION_TOKEN", None)
    os.environ.pop("AWS_PROFILE", None)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture(scope="module")
def kms(moto_url):
    return boto3.client("kms", region_name=REGION, endpoint_url=moto_url)


@pytest.fixture(scope="module")
def key_arn(kms):
    return kms.create_key(Description="teeform test")["KeyMetadata"]["Arn"]


@pytest.fixture(scope="module")
def other_key_arn(kms):
    return kms.create_key(Description="another key")["KeyMetadata"]["Arn"]


def _manifest(path: Path, pcr0: str) -> Path:
    m = Manifest(ArtifactKind.EIF, "agent", "1.0.0", Artifact("agent.eif", 1, "0" * 64, "0" * 96),
                 {"PCR0": pcr0, "PCR1": "22" * 48, "PCR2": "33" * 48, "ImageSha384": pcr0},
                 (InputDigest("image", "agent:1", "1" * 64),), Builder("teeform", "0.1.0"), 0)
    write_manifest(m, path)
    return path


@pytest.fixture
def project(tmp_path):
    """A project dir with stacks dev and prod, each one nitro target with its own manifest."""
    (tmp_path / "Pulumi.yaml").write_text("name: teeform\nruntime: python\nstackConfigDir: stacks\n")
    (tmp_path / "stacks").mkdir()
    (tmp_path / "build").mkdir()
    for stack, pcr0 in (("dev", "11" * 48), ("prod", "aa" * 48)):
        _manifest(tmp_path / "build" / f"{stack}.manifest.json", pcr0)
        (tmp_path / "stacks" / f"Pulumi.{stack}.yaml").write_text(
            f"config:\n  teeform:targets:\n    - name: agent\n      cloud: aws\n      region: {REGION}\n"
            f"      tee: nitro-enclave\n      manifests: [build/{stack}.manifest.json]\n")
    (tmp_path / "secrets.env").write_text(
        "# agent secrets\nOPENAI_API_KEY=sk-test-123\nexport DB_URL='postgres://u:p@h/db'\n"
        'GREETING="hello\\nworld" # comment\n')
    return tmp_path


def seal(project: Path, moto_url: str, key: str, *extra: str, stack: str = "dev", out: str = "sealed.json") -> int:
    return main(["seal", "--stack", stack, "--in", str(project / "secrets.env"), "--out", str(project / out),
                 "--key-id", key, "--endpoint-url", moto_url, "--project-dir", str(project), *extra])


def unseal(path: Path, moto_url: str, *extra: str) -> int:
    return main(["unseal", "--in", str(path), "--endpoint-url", moto_url, *extra])


def edit(path: Path, fn) -> None:
    d = json.loads(path.read_text())
    fn(d)
    path.write_text(json.dumps(d))


EXPECTED = {"OPENAI_API_KEY": "sk-test-123", "DB_URL": "postgres://u:p@h/db", "GREETING": "hello\nworld"}


def test_round_trip(project, moto_url, key_arn, capsys):
    assert seal(project, moto_url, key_arn) == 0
    sealed_path = project / "sealed.json"
    assert stat.S_IMODE(sealed_path.stat().st_mode) == 0o600
    text = sealed_path.read_text()
    assert "sk-test-123" not in text and "postgres" not in text
    d = json.loads(text)
    digest = manifest_sha256(project / "build" / "dev.manifest.json")
    assert d["version"] == 1 and d["key_id"] == key_arn and d["algorithm"] == "AES-256-GCM"
    assert d["encryption_context"] == {"teeform:stack": "dev", "teeform:target": "agent", "teeform:manifest-sha256": digest}
    assert d["aad"] == {"key_id": key_arn, "manifest_sha256": digest, "stack": "dev", "version": 1}
    assert len(base64.b64decode(d["nonce"])) == 12
    assert "data key  KMS GenerateDataKey (AES_256)" in capsys.readouterr().err
    # Independent of teeform's unseal: KMS Decrypt (moto, through boto3) of the data key under the recorded
    # encryption context, then AES-256-GCM with the AAD built here from the documented rule (canonical
    # JSON: sorted keys, no spaces, UTF-8 - teeform/seal.py module docstring, step 2).
    kms_client = boto3.client("kms", region_name=REGION, endpoint_url=moto_url)
    data_key = kms_client.decrypt(CiphertextBlob=base64.b64decode(d["encrypted_data_key"]),
                                  EncryptionContext=d["encryption_context"], KeyId=key_arn)["Plaintext"]
    assert len(data_key) == 32
    aad = json.dumps({"key_id": key_arn, "manifest_sha256": digest, "stack": "dev", "version": 1},
                     sort_keys=True, separators=(",", ":")).encode()
    plain = AESGCM(data_key).decrypt(base64.b64decode(d["nonce"]), base64.b64decode(d["ciphertext"]), aad)
    assert json.loads(plain) == EXPECTED
    with pytest.raises(InvalidTag):  # the AAD really is bound: another stack name does not authenticate
        AESGCM(data_key).decrypt(base64.b64decode(d["nonce"]), base64.b64decode(d["ciphertext"]),
                                 aad.replace(b'"dev"', b'"prod"'))
    assert unseal(sealed_path, moto_url) == 0
    assert json.loads(capsys.readouterr().out) == EXPECTED
    assert unseal(sealed_path, moto_url, "--format", "env") == 0
    assert parse_env(capsys.readouterr().out) == EXPECTED


def test_unseal_to_0600_file(project, moto_url, key_arn, capsys):
    assert seal(project, moto_url, key_arn) == 0
    out = project / "out" / "secrets.json"
    assert unseal(project / "sealed.json", moto_url, "--out", str(out)) == 0
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert json.loads(out.read_text()) == EXPECTED
    assert "sk-test-123" not in capsys.readouterr().out


def test_wrong_key_id_fails(project, moto_url, key_arn, other_key_arn, capsys):
    assert seal(project, moto_url, key_arn) == 0
    p = project / "sealed.json"

    def swap(d):
        d["key_id"] = d["aad"]["key_id"] = other_key_arn
    edit(p, swap)
    capsys.readouterr()
    assert unseal(p, moto_url) == 2
    err = capsys.readouterr().err
    assert "KMS Decrypt failed" in err and "sk-test" not in err


def test_data_key_of_another_kms_key_fails(project, moto_url, key_arn, other_key_arn, capsys):
    assert seal(project, moto_url, key_arn, out="a.json") == 0
    assert seal(project, moto_url, other_key_arn, out="b.json") == 0
    b = json.loads((project / "b.json").read_text())
    edit(project / "a.json", lambda d: d.update(encrypted_data_key=b["encrypted_data_key"]))
    capsys.readouterr()
    assert unseal(project / "a.json", moto_url) == 2
    assert "KMS Decrypt failed" in capsys.readouterr().err


def test_wrong_encryption_context_fails(project, moto_url, key_arn, capsys):
    assert seal(project, moto_url, key_arn) == 0
    p = project / "sealed.json"

    def to_prod(d):  # consistent edit of both places: only KMS can notice
        d["encryption_context"]["teeform:stack"] = d["aad"]["stack"] = "prod"
    edit(p, to_prod)
    capsys.readouterr()
    assert unseal(p, moto_url) == 2
    err = capsys.readouterr().err
    assert "InvalidCiphertextException" in err and "encryption context" in err


def test_inconsistent_file_and_stack_guard(project, moto_url, key_arn, capsys):
    assert seal(project, moto_url, key_arn) == 0
    p = project / "sealed.json"
    assert unseal(p, moto_url, "--stack", "prod") == 2
    assert "sealed for stack 'dev', not 'prod'" in capsys.readouterr().err
    edit(p, lambda d: d["encryption_context"].update({"teeform:stack": "prod"}))
    assert unseal(p, moto_url) == 2
    assert "inconsistent" in capsys.readouterr().err


@pytest.mark.parametrize("fld", ["ciphertext", "nonce", "encrypted_data_key"])
def test_tampered_fields_fail(project, moto_url, key_arn, capsys, fld):
    assert seal(project, moto_url, key_arn) == 0
    p = project / "sealed.json"

    def flip(d):
        raw = bytearray(base64.b64decode(d[fld]))
        raw[len(raw) // 2] ^= 0x01
        d[fld] = base64.b64encode(bytes(raw)).decode()
    edit(p, flip)
    capsys.readouterr()
    assert unseal(p, moto_url) == 2
    err = capsys.readouterr().err
    if fld == "encrypted_data_key":
        assert "KMS Decrypt failed" in err
    else:
        assert "AES-256-GCM authentication failed" in err


def test_tampered_manifest_digest_fails(project, moto_url, key_arn, capsys):
    assert seal(project, moto_url, key_arn) == 0
    p = project / "sealed.json"

    def other(d):
        d["encryption_context"]["teeform:manifest-sha256"] = d["aad"]["manifest_sha256"] = "0" * 64
    edit(p, other)
    assert unseal(p, moto_url) == 2
    assert "KMS Decrypt failed" in capsys.readouterr().err


def test_failed_seal_leaves_no_file(project, moto_url, capsys):
    missing = f"arn:aws:kms:{REGION}:123456789012:key/00000000-0000-0000-0000-000000000000"
    assert seal(project, moto_url, missing) == 2
    assert "KMS GenerateDataKey failed" in capsys.readouterr().err
    assert not (project / "sealed.json").exists()
    assert [p.name for p in project.iterdir() if p.name.startswith(".sealed")] == []


def test_existing_output_survives_failed_seal(project, moto_url, key_arn, capsys):
    assert seal(project, moto_url, key_arn) == 0
    before = (project / "sealed.json").read_bytes()
    (project / "secrets.env").write_text("GOOD=1\nthis line is broken\n")
    assert seal(project, moto_url, key_arn) == 2
    assert "line 2: expected NAME=VALUE" in capsys.readouterr().err
    assert (project / "sealed.json").read_bytes() == before


def test_sealed_to_the_stack_manifest(project, moto_url, key_arn):
    assert seal(project, moto_url, key_arn, stack="prod", out="prod.json") == 0
    d = json.loads((project / "prod.json").read_text())
    assert d["encryption_context"]["teeform:manifest-sha256"] == manifest_sha256(project / "build" / "prod.manifest.json")


def test_key_id_needs_pulumi_or_flag(project, moto_url, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(project))  # no pulumi on PATH
    monkeypatch.setattr("teeform.run.SYSTEM_TOOL_DIRS", ())
    status = main(["seal", "--stack", "dev", "--in", str(project / "secrets.env"), "--out", str(project / "s.json"),
                   "--endpoint-url", moto_url, "--project-dir", str(project)])
    assert status == 2
    err = capsys.readouterr().err
    assert "Pulumi CLI is not installed" in err and "--key-id" in err
    assert not (project / "s.json").exists()


def test_key_id_from_pulumi_stack_output(project, moto_url, key_arn, monkeypatch):
    bindir = project / "bin"
    bindir.mkdir()
    fake = bindir / "pulumi"
    fake.write_text(f'#!/bin/sh\n[ "$1 $2 $3 $4 $5 $6" = "stack output kms_key_arn --json --stack dev" ] || exit 3\n'
                    f'echo \'"{key_arn}"\'\n')
    fake.chmod(0o755)
    monkeypatch.setenv("TEEFORM_TOOLS_DIR", str(bindir))
    assert main(["seal", "--stack", "dev", "--in", str(project / "secrets.env"), "--out", str(project / "s.json"),
                 "--endpoint-url", moto_url, "--project-dir", str(project)]) == 0
    assert json.loads((project / "s.json").read_text())["key_id"] == key_arn


def test_key_id_from_multi_target_stack_output(project, moto_url, key_arn, other_key_arn, monkeypatch, capsys):
    """With several targets the program exports kms_key_arn as a map keyed by target name
    (components/registry.py shape_outputs); --target picks the entry."""
    _manifest(project / "build" / "worker.manifest.json", "77" * 48)
    (project / "stacks" / "Pulumi.multi.yaml").write_text(
        "config:\n  teeform:targets:\n"
        f"    - {{name: agent, cloud: aws, region: {REGION}, tee: nitro-enclave, manifests: [build/dev.manifest.json]}}\n"
        f"    - {{name: worker, cloud: aws, region: {REGION}, tee: nitro-enclave, manifests: [build/worker.manifest.json]}}\n")
    bindir = project / "bin"
    bindir.mkdir()
    fake = bindir / "pulumi"
    outputs = json.dumps({"agent": key_arn, "worker": other_key_arn})
    fake.write_text(f'#!/bin/sh\n[ "$1 $2 $3 $4 $5 $6" = "stack output kms_key_arn --json --stack multi" ] || exit 3\n'
                    f"echo '{outputs}'\n")
    fake.chmod(0o755)
    monkeypatch.setenv("TEEFORM_TOOLS_DIR", str(bindir))
    args = ["seal", "--stack", "multi", "--in", str(project / "secrets.env"), "--out", str(project / "w.json"),
            "--endpoint-url", moto_url, "--project-dir", str(project)]
    assert main(args) == 2
    assert "choose one with --target" in capsys.readouterr().err
    assert main([*args, "--target", "worker"]) == 0
    d = json.loads((project / "w.json").read_text())
    assert d["key_id"] == other_key_arn and d["encryption_context"]["teeform:target"] == "worker"
    assert d["encryption_context"]["teeform:manifest-sha256"] == manifest_sha256(project / "build" / "worker.manifest.json")


class DeployerSealKMS:
    """moto's KMS answering GenerateDataKey the way real KMS does under the stack's key policy, whose
    DeployerSeal statement grants the deployer only kms:Encrypt and kms:DescribeKey
    (components/aws/attested_key.py): AccessDeniedException. moto does not evaluate key policies."""

    def __init__(self, client, *, deny_encrypt: bool = False):
        self.kms, self.deny_encrypt, self.calls = client, deny_encrypt, []

    def _denied(self, op):
        from botocore.exceptions import ClientError

        return ClientError({"Error": {"Code": "AccessDeniedException", "Message": f"not authorized to perform {op}"}}, op)

    def generate_data_key(self, **kw):
        self.calls.append("GenerateDataKey")
        raise self._denied("kms:GenerateDataKey")

    def encrypt(self, **kw):
        self.calls.append("Encrypt")
        if self.deny_encrypt:
            raise self._denied("kms:Encrypt")
        return self.kms.encrypt(**kw)


def test_generate_data_key_denied_falls_back_to_encrypt(project, moto_url, kms, key_arn, capsys):
    from teeform.seal import seal_secrets

    emu = DeployerSealKMS(kms)
    notes: list[str] = []
    sealed = seal_secrets(EXPECTED, kms=emu, key_id=key_arn, stack="dev", target="agent",
                          manifest_sha256="ab" * 32, note=notes.append)
    assert emu.calls == ["GenerateDataKey", "Encrypt"] and "wrapped with KMS Encrypt" in notes[0]
    p = project / "enc.json"
    p.write_text(sealed.to_json())
    capsys.readouterr()
    assert unseal(p, moto_url) == 0  # plain KMS Decrypt (moto) opens the Encrypt-wrapped data key
    assert json.loads(capsys.readouterr().out) == EXPECTED
    # the encryption context still binds it
    edit(p, lambda d: (d["encryption_context"].update({"teeform:stack": "prod"}), d["aad"].update(stack="prod")))
    assert unseal(p, moto_url) == 2
    assert "InvalidCiphertextException" in capsys.readouterr().err


def test_both_denied_names_both(kms, key_arn):
    from teeform.seal import seal_secrets

    with pytest.raises(TeeformError, match="GenerateDataKey failed: AccessDeniedException.*Encrypt failed: AccessDenied"):
        seal_secrets(EXPECTED, kms=DeployerSealKMS(kms, deny_encrypt=True), key_id=key_arn, stack="dev",
                     target="agent", manifest_sha256="ab" * 32)


# ---------------------------------------------------------------------------------------- input parsing
def test_parse_env_syntax():
    text = ('# c\n\nA=1\nexport B = two words  # trailing\nC="q\\"uote\\\\ \\$HOME"\nD=\'lit #not comment\\n\'\n'
            "E=\nF=x=y\n")
    assert parse_env(text) == {"A": "1", "B": "two words", "C": 'q"uote\\ $HOME', "D": "lit #not comment\\n",
                               "E": "", "F": "x=y"}


@pytest.mark.parametrize("text, message", [
    ("A=1\nnot a pair\n", "line 2: expected NAME=VALUE"),
    ("1A=x\n", "line 1: '1A' is not a valid variable name"),
    ('A="open\n', "line 1: unterminated double quote"),
    ("A='open\n", "line 1: unterminated single quote"),
    ('A="x" y\n', "line 1: unexpected text after the closing quote"),
    ("A=1\nB=2\nA=3\n", "line 3: A is already set on line 1"),
    ("# only comments\n", "no secrets found"),
])
def test_parse_env_errors(text, message):
    with pytest.raises(TeeformError, match=message.replace("(", r"\(")):
        parse_env(text, source="s.env")


def test_format_env_round_trip():
    secrets = {"A": 'we"ird\\ $x\nline2\r', "B": ""}
    assert parse_env(format_env(secrets)) == secrets


def test_load_json_secrets(tmp_path):
    p = tmp_path / "s.json"
    p.write_text('{"TOKEN": "abc"}')
    assert load_secrets(p) == {"TOKEN": "abc"}
    p.write_text('{"TOKEN": 5}')
    with pytest.raises(TeeformError, match="value must be a string"):
        load_secrets(p)
    p.write_text("{broken")
    with pytest.raises(TeeformError, match="not valid JSON"):
        load_secrets(p)


def test_sealed_file_validation():
    with pytest.raises(TeeformError, match="not a teeform sealed-secrets file"):
        SealedSecrets.from_json("{}")
    with pytest.raises(TeeformError, match="not valid JSON"):
        SealedSecrets.from_json("{")
