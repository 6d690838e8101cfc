"""The enclave path of `teeform unseal`: KMS `Recipient` and `CiphertextForRecipient` (CMS EnvelopedData).

Oracle: a real KMS ``CiphertextForRecipient`` with its RSA key and expected plaintext, published as a test
vector by edgebitio/enclaver (``crypto/cms/cms_test.go`` at commit 5c0fdb6148a9a4baa2747cf8787f7c9f9928f294,
MIT-licensed package, see its ``crypto/cms/README.md``). It is BER (indefinite lengths, constructed
OCTET STRING), EnvelopedData v2, rid = subjectKeyIdentifier, RSAES-OAEP-SHA-256, AES-256-CBC
(eif-nitro.md §5.2).
"""

from __future__ import annotations

import base64
import datetime as dt
import json

import nitro_testca as tca
import pytest
from asn1crypto import cms
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from test_seal import REGION, key_arn, kms, moto_url, project, seal  # noqa: F401  (fixtures)

from teeform.cli import main
from teeform.errors import TeeformError
from teeform.nitro import kms_recipient as K
from teeform.seal import SealedSecrets, recipient_for, unseal_secrets

ENCLAVER_KEY = b"""-----BEGIN RSA PRIVATE KEY-----
MIIEpAIBAAKCAQEAwg8xlWTIwm44aLEqiA5lweHUSm2eeKwrTg3qEUhOVyGAo3eN
XRoD9wOHzjcvS8r/qfQdSdLA9p6IbSxV9LU2fXgYnT3IDhNuQ1rVkiIYqWqPWUn2
izUMJmbdVFRsgWi7/keXkslZD0DeKQM1R2QsCRZnPGHU3Jo/+2b6dTg8IRoBH2cq
rAPuynqBXYCC9+wNdYMQLA5vdaVzhFBASIVkMDDWlMaFgdOsISMHy9Klm0cXj3RE
02VsHcOQ1NRLY4Ddgpb5r0LUB0nfB4HMeK9plYqkkVF5BJihoGtGmebGuMqSFNgU
XflrxH152bHAZqqV+aIPIy2y4IdaQgP1VJrVKwIDAQABAoIBAQCQhtJNyh6+t2np
hrD/XYGpkPATcmqIwukJm9FMh8ZYnAn7NKmiwiJb0FRPX8gosYoRYE6D0aOGyPEg
Jdnqgx+O+GeUjBO3b/85yKewyxYE7ujN/gjRCnP/EbMbADlDc+Y27cjUOILMmmoa
r1n5zoABUJ8YWGA43+Rw7vPvYy9dEn1fbmsp850u/Grqdi0MUwIpQe9VKkVsYZ0n
HKAz+uY9Mhb/CsveD75cHrpaa5Ilfjkzo47Gah/+E6LB3/5wRjlzNzLMAQT449PW
yt2E/DYtVAR8uAtbfHB3cFcgNrWVg9IwU1G74SwqqwgQfpfEqKqsqG9BBXz0vwLT
o3vczVWZAoGBANJbz5+1XRlblmDV8MnVGoaHoylIA6+xE5iTiAUtopxfh3lMgTAh
sIepf7na0nkNPXFrR48Tkm29Y4f8EU2LY0a1t9WyAyufz9UTA4ABlHCuKztSqpG7
SgGEQvr/bAE61uN7JwVXGUICAR27OVfy7+iIOCzFDaOwhyfrE2XuP82VAoGBAOwq
DYedgoxuV63BWYDtvUt4olQbBCczJKyDirTGGdiPyQbsfE5eegcfZYxRkiCJ0Z5z
9OQlafIrok93kwkWgta2dj3onbXKLUviyGMSW1kGXoaTZu47rTZ7nxhqS5QeySGl
sHs/8j3+2UPHnwvLMlrMAOhIFQYrlFeQkxvIw+e/AoGAZh2Xjon2JccmGuAAQZon
hEL326RP1cv6HUkQ8KKUm6BsHWAcHodcMJ8Bl/E31vesahCP7k6r+IXFeU/N/ny5
tqukECKYE2dC9saCHnOl4YVLC0M39gKbDF1uPnYbsgUkJ82yxY7gfgCHFi26yozu
FU17J5CI7HtXQPOGuSaM5nkCgYEAqI4PIAbMYVxz2cDRF9MWsuIDwdGSckPvXe14
tzNYyRc+nGF3CxwlLiY7fR3PFMgow1XxqFAHwN9htiQa3nahpYuO8vqubUxCbhIL
gaJdbjm8h4J3CXuwUd2DnJJpJOugFBLE1gK664KUIOs92dYKN4G4+BBSaRf7hU/b
nw34vNMCgYBfG/VbQXT1WCcJgVycnU1hX7zmyzB/hk0xkmLR0nUzTgXMKOKUUXgX
2mD7U5VGZPYj7t8P+bz6/HEZqKmOoxFkXpsMPug34ZUWfjv3uCm7CFHtxA+BDT+5
cJEGAbCDYhyjvtjBLNy7YDQ1hdmCnqMxg/5AIwUMkvTTRg+qepfboA==
-----END RSA PRIVATE KEY-----
"""
ENCLAVER_CIPHERTEXT = base64.b64decode(
    "MIAGCSqGSIb3DQEHA6CAMIACAQIxggFrMIIBZwIBAoAgljGgxlmRCtWqvB/s/Aw+ZNTDlc6Uka86SLVmlNmFGAMwPAYJKoZIhvcNAQEHMC+gDzANBglg"
    "hkgBZQMEAgEFAKEcMBoGCSqGSIb3DQEBCDANBglghkgBZQMEAgEFAASCAQAXmjTiHpg+OcYaf2ISaDNpQcEOq61Sm3re3v+5z2hZPe8eoUGhmMS6pCuC"
    "+BRW7RpkjwDaXQzzR/jExnraEET3lj9oyAMMwKIahhHHIZ33qOTq1c/9NtMVZmm/j4UfyCpP8WMAFb2hvwIJbjnAGO9Xbw+NzWaQdvEyNDGUX+bPIuSD"
    "c75jjGH5KtdFLopk5k6nsTdU26qLkVE6Mg9Y//s0OJCvmYFgfw15IXDb50xJupWxCwbqGXWmfTBEo9M9AhelVbOXkitZR7hbnT6BZnsfpS2acZRNL4Xx"
    "C+gg4Ml9fOiYsGWqSK8Lkwlp22rtL70CIHnggbb+oIE4ObR4TV8qMIAGCSqGSIb3DQEHATAdBglghkgBZQMEASoEEEMr/6uiZK+CzgfJvr61JTGggAQw"
    "fp0W0Q/QPYmg6AoC3DkE5+beNswVOX9ct5IIgIsvaAhTF9IiHdbX7yLa8YS2WQ/FAAAAAAAAAAAAAA=="
)
ENCLAVER_PLAINTEXT = bytes.fromhex("3be82c440f06cb4d44c4c2ec3bf30d472407d3a9125aa4c1842b98f6bdd26e41")


@pytest.fixture(scope="module")
def rsa_key():
    return rsa.generate_private_key(65537, 2048)


def test_real_kms_ciphertext_for_recipient():
    key = serialization.load_pem_private_key(ENCLAVER_KEY, None)
    assert ENCLAVER_CIPHERTEXT[:2] == b"\x30\x80"  # BER, indefinite length
    parts = K.parse_ciphertext_for_recipient(ENCLAVER_CIPHERTEXT)
    assert parts.recipient_key_id == K.recipient_key_id(key.public_key())  # rid = SHA-256(SPKI)
    assert K.decrypt_ciphertext_for_recipient(ENCLAVER_CIPHERTEXT, key) == ENCLAVER_PLAINTEXT


def test_built_enveloped_data_round_trip(rsa_key):
    data_key = bytes(range(32))
    blob = K.envelop_for_recipient(data_key, rsa_key.public_key())
    info = cms.ContentInfo.load(blob)  # independent decode of the structure we built
    ktri = info["content"]["recipient_infos"][0].chosen
    assert ktri["key_encryption_algorithm"]["algorithm"].native == "rsaes_oaep"
    assert info["content"]["encrypted_content_info"]["content_encryption_algorithm"]["algorithm"].native == "aes256_cbc"
    assert K.decrypt_ciphertext_for_recipient(blob, rsa_key) == data_key


def test_wrong_rsa_key_fails_clearly(rsa_key):
    blob = K.envelop_for_recipient(b"k" * 32, rsa_key.public_key())
    other = rsa.generate_private_key(65537, 2048)
    with pytest.raises(TeeformError, match="encrypted for another key"):
        K.decrypt_ciphertext_for_recipient(blob, other)
    # without a usable key identifier the OAEP unwrap itself must fail
    info = cms.ContentInfo.load(blob)
    info["content"]["recipient_infos"][0].chosen["rid"] = cms.RecipientIdentifier({"subject_key_identifier": b"\x01" * 20})
    with pytest.raises(TeeformError, match="RSA-OAEP-SHA-256 unwrapping of the content key failed"):
        K.decrypt_ciphertext_for_recipient(info.dump(force=True), other)


def test_tampered_content_fails(rsa_key):
    blob = K.envelop_for_recipient(b"k" * 32, rsa_key.public_key(), content_key=b"\x07" * 32, iv=b"\x09" * 16)
    info = cms.ContentInfo.load(blob)
    eci = info["content"]["encrypted_content_info"]
    ct = bytearray(eci["encrypted_content"].native)
    ct[-1] ^= 0x40
    eci["encrypted_content"] = bytes(ct)
    with pytest.raises(TeeformError, match="bad PKCS #7 padding"):
        K.decrypt_ciphertext_for_recipient(info.dump(force=True), rsa_key)


@pytest.mark.parametrize("mutate, message", [
    (lambda i: i["content"]["recipient_infos"][0].chosen.__setitem__(
        "key_encryption_algorithm", cms.KeyEncryptionAlgorithm({"algorithm": "rsaes_oaep"})), "expected sha256"),
    (lambda i: i["content"]["recipient_infos"][0].chosen.__setitem__(
        "key_encryption_algorithm", cms.KeyEncryptionAlgorithm({"algorithm": "rsaes_pkcs1v15"})), "expected rsaes_oaep"),
    (lambda i: i["content"]["encrypted_content_info"].__setitem__(
        "content_encryption_algorithm", cms.EncryptionAlgorithm({"algorithm": "aes128_cbc", "parameters": b"\0" * 16})),
     "expected aes256_cbc"),
    (lambda i: i["content"]["recipient_infos"].append(i["content"]["recipient_infos"][0]), "exactly one recipient"),
])
def test_unexpected_shapes_refused(rsa_key, mutate, message):
    info = cms.ContentInfo.load(K.envelop_for_recipient(b"k" * 32, rsa_key.public_key()))
    mutate(info)
    with pytest.raises(TeeformError, match=message):
        K.decrypt_ciphertext_for_recipient(info.dump(force=True), rsa_key)


def test_not_cms():
    with pytest.raises(TeeformError, match="not a CMS EnvelopedData"):
        K.parse_ciphertext_for_recipient(b"\x30\x03\x02\x01\x01garbage")


# ------------------------------------------------------------------------------ end to end via moto
AT = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)


def _spki(key: rsa.RSAPrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


class RecipientEmulatingKMS:
    """moto's KMS plus what real KMS does with ``Recipient`` (moto ignores it): re-encrypt the plaintext
    for the attestation document's public_key and return it as CiphertextForRecipient."""

    def __init__(self, client):
        self.kms = client
        self.seen_recipient = None

    def decrypt(self, **kw):
        from teeform.nitro.attestation import parse_attestation_document

        rec = kw.pop("Recipient", None)
        resp = self.kms.decrypt(**kw)
        if rec is None:
            return resp
        self.seen_recipient = rec
        pub = serialization.load_der_public_key(parse_attestation_document(rec["AttestationDocument"]).public_key)
        return {"KeyId": resp["KeyId"], "CiphertextForRecipient": K.envelop_for_recipient(resp["Plaintext"], pub)}


def test_enclave_path_end_to_end(project, moto_url, kms, key_arn, rsa_key):  # noqa: F811
    assert seal(project, moto_url, key_arn) == 0
    sealed = SealedSecrets.from_json((project / "sealed.json").read_text())
    ca = tca.make_ca(AT)
    doc = tca.mint(ca, AT, public_key=_spki(rsa_key))
    emu = RecipientEmulatingKMS(kms)
    secrets = unseal_secrets(sealed, kms=emu, recipient=recipient_for(doc, rsa_key))
    assert secrets["OPENAI_API_KEY"] == "sk-test-123"
    assert emu.seen_recipient == {"KeyEncryptionAlgorithm": "RSAES_OAEP_SHA_256", "AttestationDocument": doc}


def test_enclave_path_refuses_plaintext_reply(project, moto_url, key_arn, rsa_key, capsys, tmp_path):  # noqa: F811
    assert seal(project, moto_url, key_arn) == 0
    ca = tca.make_ca(AT)
    docf = tmp_path / "doc.cbor"
    docf.write_bytes(tca.mint(ca, AT, public_key=_spki(rsa_key)))
    keyf = tmp_path / "rsa.pem"
    keyf.write_bytes(rsa_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    capsys.readouterr()
    status = main(["unseal", "--in", str(project / "sealed.json"), "--endpoint-url", moto_url,
                   "--recipient-key", str(keyf), "--attestation-doc", str(docf)])
    out = capsys.readouterr()
    assert status == 2 and "no CiphertextForRecipient" in out.err and "sk-test" not in out.out + out.err


def test_recipient_key_must_match_document(rsa_key, tmp_path):
    ca = tca.make_ca(AT)
    other = rsa.generate_private_key(65537, 2048)
    with pytest.raises(TeeformError, match="not the public half of --recipient-key"):
        recipient_for(tca.mint(ca, AT, public_key=_spki(other)), rsa_key)
    with pytest.raises(TeeformError, match="has no public_key"):
        recipient_for(tca.mint(ca, AT), rsa_key)


def test_recipient_options_go_together(tmp_path, capsys):
    (tmp_path / "s.json").write_text(json.dumps({}))
    assert main(["unseal", "--in", str(tmp_path / "s.json"), "--recipient-key", "k.pem"]) == 2
    assert "go together" in capsys.readouterr().err
