"""Sealing for Azure targets (issue 10, item 4): ``teeform seal --stack`` wraps the data key with the
target's Key Vault key, tested at the HTTP boundary against a loopback HTTPS fake of Key Vault.

Oracles: the fake's own RSA private key with ``cryptography``'s RSAES-OAEP (SHA-256, MGF1-SHA-256) --
the RSA-OAEP-256 of RFC 7518 §4.3 -- opens the wrapped data key, and ``cryptography``'s AESGCM opens
the ciphertext with the file's AAD; neither goes through teeform's unseal code. The SDK client is
the real ``azure.keyvault.keys.crypto.CryptographyClient`` (only the AAD credential is faked).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from azure_kv_fake import OAEP256, FakeCredential, fake_key_vault
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from test_azure_components import AUTHORITY, write_vhd_manifest

from teeform import seal_azure
from teeform.cli import main
from teeform.errors import TeeformError
from teeform.seal import SealedSecrets, canonical_json

SECRETS = {"OPENAI_API_KEY": "sk-test-123", "DB_URL": "postgres://u:p@h/db", "GREETING": "hello\nwörld"}


@pytest.fixture
def kv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    with fake_key_vault(tmp_path) as vault:
        monkeypatch.setattr(seal_azure, "CLIENT_OPTIONS", {"connection_verify": vault.ca_file,
                                                           "verify_challenge_resource": False})
        monkeypatch.setattr(seal_azure, "default_credential", FakeCredential)
        yield vault


def _open_independently(kv, sealed: SealedSecrets, name: str) -> dict[str, str]:
    data_key = kv.key(name).decrypt(sealed.encrypted_data_key, OAEP256)
    plain = AESGCM(data_key).decrypt(sealed.nonce, sealed.ciphertext, canonical_json(dict(sealed.aad)))
    return json.loads(plain)


def test_seal_wraps_with_the_key_vault_key(kv) -> None:
    sealed = seal_azure.seal_secrets_azure(SECRETS, key_id=f"{kv.url}/keys/snp-release", stack="azure", target="snp",
                                           manifest_sha256="ab" * 32)
    assert sealed.key_id.startswith(f"{kv.url}/keys/snp-release/") and len(sealed.key_id.rsplit("/", 1)[1]) == 32
    assert _open_independently(kv, sealed, "snp-release") == SECRETS
    assert dict(sealed.aad) == {"key_id": sealed.key_id, "manifest_sha256": "ab" * 32, "stack": "azure", "version": 1}
    assert sealed.encryption_context == {"teeform:stack": "azure", "teeform:target": "snp", "teeform:manifest-sha256": "ab" * 32}
    assert kv.requests and all(p.startswith("/keys/snp-release") for _, p, _ in kv.requests)
    # the file round-trips through the common sealed-file parser
    again = SealedSecrets.from_json(sealed.to_json())
    assert again == sealed


def test_vm_side_unseal_with_the_released_private_key(kv) -> None:
    sealed = seal_azure.seal_secrets_azure(SECRETS, key_id=f"{kv.url}/keys/k", stack="s", target="t", manifest_sha256="cd" * 32)
    assert seal_azure.unseal_with_private_key(sealed, kv.key("k")) == SECRETS
    with pytest.raises(TeeformError, match="does not unwrap"):
        seal_azure.unseal_with_private_key(sealed, rsa.generate_private_key(public_exponent=65537, key_size=2048))


def test_operator_unseal_through_key_vault_unwrap(kv) -> None:
    sealed = seal_azure.seal_secrets_azure(SECRETS, key_id=f"{kv.url}/keys/k", stack="s", target="t", manifest_sha256="cd" * 32)
    assert seal_azure.unseal_secrets_azure(sealed) == SECRETS
    assert any(m == "POST" and p.endswith("/unwrapkey") and b["alg"] == "RSA-OAEP-256" for m, p, b in kv.requests)
    tampered = SealedSecrets(sealed.key_id, sealed.encryption_context, sealed.encrypted_data_key, sealed.nonce,
                             sealed.ciphertext, {**sealed.aad, "stack": "prod"})
    with pytest.raises(TeeformError, match="does not authenticate"):
        seal_azure.unseal_secrets_azure(tampered)


def test_not_a_key_vault_key_id_is_refused() -> None:
    with pytest.raises(TeeformError) as e:
        seal_azure.seal_secrets_azure(SECRETS, key_id="arn:aws:kms:eu-west-1:111122223333:key/x", stack="s", target="t",
                                      manifest_sha256="00" * 32, credential=FakeCredential())
    assert e.value.field == "--key-id"


def test_cli_seal_and_unseal_for_an_azure_target(kv, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "proj"
    (root / "stacks").mkdir(parents=True)
    (root / "Pulumi.yaml").write_text("name: teeform\nruntime: python\nstackConfigDir: stacks\n")
    manifest = write_vhd_manifest(root / "build")
    (root / "stacks" / "Pulumi.az.yaml").write_text(
        "config:\n  teeform:targets:\n"
        f"    - {{name: snp, cloud: azure, region: westeurope, tee: sev-snp, manifests: [{manifest}],"
        f" attestation: {{authority: '{AUTHORITY}'}}}}\n")
    (root / "secrets.env").write_text("OPENAI_API_KEY=sk-test-123\nDB_URL='postgres://u:p@h/db'\n")
    out = root / "sealed.json"
    assert main(["seal", "--stack", "az", "--in", str(root / "secrets.env"), "--out", str(out),
                 "--key-id", f"{kv.url}/keys/snp-release", "--project-dir", str(root)]) == 0
    assert out.stat().st_mode & 0o777 == 0o600
    sealed = SealedSecrets.from_json(out.read_text())
    assert _open_independently(kv, sealed, "snp-release") == {"OPENAI_API_KEY": "sk-test-123", "DB_URL": "postgres://u:p@h/db"}
    assert "Key Vault RSA-OAEP-256" in capsys.readouterr().err
    assert main(["unseal", "--in", str(out)]) == 0
    assert json.loads(capsys.readouterr().out) == {"DB_URL": "postgres://u:p@h/db", "OPENAI_API_KEY": "sk-test-123"}
