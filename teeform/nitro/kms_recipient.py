"""Decrypt AWS KMS ``CiphertextForRecipient`` (the reply to a request carrying ``Recipient``).

When a KMS ``Decrypt`` / ``GenerateDataKey`` / ``GenerateRandom`` request carries
``Recipient={"KeyEncryptionAlgorithm": "RSAES_OAEP_SHA_256", "AttestationDocument": <COSE_Sign1>}``,
KMS leaves ``Plaintext`` empty and returns ``CiphertextForRecipient`` instead
(``shared/reference/eif-nitro.md`` §5.2):

* a CMS ``ContentInfo`` (RFC 5652 §3) of type ``id-envelopedData`` (1.2.840.113549.1.7.3), **BER**
  encoded (indefinite lengths, constructed OCTET STRINGs);
* ``EnvelopedData`` (RFC 5652 §6.1) with exactly **one** ``KeyTransRecipientInfo`` (§6.2.1) whose key
  encryption algorithm is ``id-RSAES-OAEP`` (RFC 8017 / RFC 4055) with SHA-256 and MGF1-SHA-256, under
  the RSA public key the enclave put in the attestation document's ``public_key`` field;
* content encrypted with **AES-256-CBC** (2.16.840.1.101.3.4.1.42, the IV is the algorithm parameter),
  PKCS #7 padded (RFC 5652 §6.3).

The SDK for C (``aws-nitro-enclaves-sdk-c`` ``source/cms.c``) assumes exactly this shape, and so does
this module: anything else is refused with a clear error. Observed on a real KMS reply (the test vector
in ``tests/test_seal_recipient.py``): ``EnvelopedData`` version 2, ``rid`` =
``subjectKeyIdentifier`` = SHA-256 of the recipient's DER SubjectPublicKeyInfo; when the ``rid`` has
that form it is compared with the given key first, so a wrong key gives a precise message.

Parsing uses ``asn1crypto`` (BER-capable); the cryptography comes from ``cryptography``.

Hostile replies: the reply must be at most :data:`MAX_CIPHERTEXT_FOR_RECIPIENT_BYTES` (KMS ``Decrypt``
returns at most 4096 bytes of plaintext, so a genuine reply with an RSA-4096 recipient is under 5 KiB),
is loaded with ``strict=True`` (trailing bytes after the ``ContentInfo`` are refused, RFC 5652 §3), and
every error ``asn1crypto`` raises while its lazy parser reaches a malformed part (``ValueError``,
``TypeError``, ``AttributeError`` for an unknown CHOICE alternative, ``KeyError``, ``IndexError``,
``OverflowError``, ``RecursionError`` for nesting) becomes one ``TeeformError`` naming the field
``CiphertextForRecipient``. The recipient key file is read with :func:`teeform.safeload.read_limited`
(at most :data:`MAX_RECIPIENT_KEY_BYTES`).
(``cryptography``'s own ``pkcs7_decrypt_der`` cannot be used: it needs the recipient's certificate to
match an issuer-and-serial identifier, and KMS identifies the recipient by key identifier only.)
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

from asn1crypto import algos, cms, core
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, padding, serialization
from cryptography.hazmat.primitives.asymmetric import padding as asym_padding
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from teeform.errors import TeeformError
from teeform.safeload import read_limited

#: The only key encryption algorithm KMS accepts for ``Recipient`` (eif-nitro.md §5.2).
KEY_ENCRYPTION_ALGORITHM = "RSAES_OAEP_SHA_256"
#: Largest ``CiphertextForRecipient`` accepted (module docstring: genuine replies are under 5 KiB).
MAX_CIPHERTEXT_FOR_RECIPIENT_BYTES = 64 << 10
#: Largest recipient key file read (an unencrypted RSA-16384 PKCS #8 PEM is about 12 KiB).
MAX_RECIPIENT_KEY_BYTES = 64 << 10
#: What asn1crypto's lazy parser raises on malformed BER (module docstring).
_ASN1_ERRORS = (ValueError, TypeError, KeyError, AttributeError, IndexError, OverflowError, RecursionError)


@dataclass(frozen=True)
class EnvelopedParts:
    """The fields of a KMS ``CiphertextForRecipient`` needed to decrypt it.

    ``recipient_key_id`` is the ``subjectKeyIdentifier`` rid (None when the rid is issuerAndSerial);
    ``encrypted_key`` the RSA-OAEP-wrapped AES key; ``iv`` the 16-byte CBC IV; ``ciphertext`` the
    AES-256-CBC encrypted content (constructed OCTET STRING chunks already joined).
    """

    recipient_key_id: bytes | None
    encrypted_key: bytes
    iv: bytes
    ciphertext: bytes


def recipient_key_id(public_key: rsa.RSAPublicKey) -> bytes:
    """SHA-256 of the key's DER SubjectPublicKeyInfo: the ``rid`` KMS puts in its reply (observed, see module doc)."""
    spki = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(spki).digest()


def _fail(msg: str, hint: str | None = None) -> TeeformError:
    return TeeformError(msg, field="CiphertextForRecipient", hint=hint)


def _check_oaep_sha256(alg: cms.KeyEncryptionAlgorithm) -> None:
    name = alg["algorithm"].native
    if name != "rsaes_oaep":
        raise _fail(f"key encryption algorithm is {name!r}, expected rsaes_oaep (RSAES-OAEP-SHA-256)")
    params = alg["parameters"]
    # RFC 4055 §4.1: absent fields mean SHA-1 / MGF1-SHA-1, which KMS never uses
    hash_alg = params["hash_algorithm"]["algorithm"].native if params.native else "sha1"
    mgf = params["mask_gen_algorithm"] if params.native else None
    mgf_hash = mgf["parameters"]["algorithm"].native if mgf is not None and mgf["algorithm"].native == "mgf1" else None
    if hash_alg != "sha256" or mgf_hash != "sha256":
        raise _fail(f"RSAES-OAEP uses hash {hash_alg!r} and MGF1 hash {mgf_hash!r}, expected sha256 for both")


def parse_ciphertext_for_recipient(ber: bytes) -> EnvelopedParts:
    """Decode the CMS EnvelopedData KMS returns (module docstring) and check its shape.

    Raises:
        TeeformError: not bytes, empty or over :data:`MAX_CIPHERTEXT_FOR_RECIPIENT_BYTES`, not
            BER/CMS (or trailing bytes), not EnvelopedData, not exactly one KeyTransRecipientInfo, not
            RSAES-OAEP-SHA-256, or not AES-256-CBC with a 16-byte IV.
    """
    if not isinstance(ber, bytes) or not ber:
        raise _fail("KMS returned an empty or non-binary CiphertextForRecipient")
    if len(ber) > MAX_CIPHERTEXT_FOR_RECIPIENT_BYTES:
        raise _fail(f"{len(ber)} bytes, more than {MAX_CIPHERTEXT_FOR_RECIPIENT_BYTES} (KMS replies are under 5 KiB)")
    try:
        info = cms.ContentInfo.load(ber, strict=True)
        ctype = info["content_type"].native
        if ctype != "enveloped_data":
            raise _fail(f"content type is {ctype!r}, expected enveloped_data")
        env = info["content"]
        recipients = env["recipient_infos"]
        if len(recipients) != 1:
            raise _fail(f"expected exactly one recipient, found {len(recipients)}")
        ri = recipients[0]
        if ri.name != "ktri":
            raise _fail(f"recipient is a {ri.name!r}, expected a KeyTransRecipientInfo (ktri)")
        ktri = ri.chosen
        _check_oaep_sha256(ktri["key_encryption_algorithm"])
        rid = ktri["rid"]
        key_id = rid.chosen.native if rid.name == "subject_key_identifier" else None
        eci = env["encrypted_content_info"]
        calg = eci["content_encryption_algorithm"]
        if calg["algorithm"].native != "aes256_cbc":
            raise _fail(f"content encryption is {calg['algorithm'].native!r}, expected aes256_cbc")
        iv = calg["parameters"].native
        if not isinstance(iv, bytes) or len(iv) != 16:
            raise _fail("AES-256-CBC IV must be 16 bytes")
        content = eci["encrypted_content"].native
        if not isinstance(content, bytes) or not content or len(content) % 16:
            raise _fail("encrypted content is missing or not a whole number of AES blocks")
        encrypted_key = ktri["encrypted_key"].native
        if not isinstance(encrypted_key, bytes) or not encrypted_key:
            raise _fail("the KeyTransRecipientInfo has no encrypted key")
        if key_id is not None and not isinstance(key_id, bytes):
            raise _fail("the recipient's subjectKeyIdentifier is not an OCTET STRING")
        return EnvelopedParts(key_id, encrypted_key, iv, content)
    except TeeformError:
        raise
    except _ASN1_ERRORS as exc:
        detail = " ".join(str(exc).split())  # asn1crypto messages span lines
        raise _fail(f"not a CMS EnvelopedData (BER): {type(exc).__name__ + ': ' if not isinstance(exc, ValueError) else ''}"
                    f"{detail[:300]}") from None


def decrypt_ciphertext_for_recipient(ber: bytes, private_key: rsa.RSAPrivateKey) -> bytes:
    """Return the plaintext KMS wrapped for ``private_key`` (the data key, for ``Decrypt``).

    Steps: parse (:func:`parse_ciphertext_for_recipient`); when the rid is a subjectKeyIdentifier,
    require it to equal :func:`recipient_key_id` of our key; RSA-OAEP-SHA-256 unwrap the 32-byte
    AES key; AES-256-CBC decrypt; strip PKCS #7 padding.

    Raises:
        TeeformError: wrong shape, wrong key, or corrupted content.
    """
    parts = parse_ciphertext_for_recipient(ber)
    ours = recipient_key_id(private_key.public_key())
    if parts.recipient_key_id is not None and len(parts.recipient_key_id) == 32 and parts.recipient_key_id != ours:
        raise _fail(
            f"it was encrypted for another key (recipient key id {parts.recipient_key_id.hex()}, "
            f"ours is SHA-256(SubjectPublicKeyInfo) = {ours.hex()})",
            hint="use the RSA key whose public half is in the attestation document's public_key",
        )
    try:
        content_key = private_key.decrypt(
            parts.encrypted_key,
            asym_padding.OAEP(mgf=asym_padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None),
        )
    except ValueError:
        raise _fail("RSA-OAEP-SHA-256 unwrapping of the content key failed (wrong RSA key, or the reply was modified)",
                    hint="use the RSA key whose public half is in the attestation document's public_key") from None
    if len(content_key) != 32:
        raise _fail(f"content key is {len(content_key)} bytes, expected 32 (AES-256)")
    dec = Cipher(algorithms.AES(content_key), modes.CBC(parts.iv)).decryptor()
    padded = dec.update(parts.ciphertext) + dec.finalize()
    unpad = padding.PKCS7(128).unpadder()
    try:
        return unpad.update(padded) + unpad.finalize()
    except ValueError:
        raise _fail("bad PKCS #7 padding after AES-256-CBC decryption (the reply was modified)") from None


def envelop_for_recipient(plaintext: bytes, public_key: rsa.RSAPublicKey, *, content_key: bytes | None = None,
                          iv: bytes | None = None) -> bytes:
    """Build a ``CiphertextForRecipient`` the way KMS does (module docstring), DER encoded.

    For tests and local emulation of KMS (e.g. when the KMS endpoint is moto, which ignores
    ``Recipient``). Fresh random content key and IV unless given.
    """
    content_key = content_key or os.urandom(32)
    iv = iv or os.urandom(16)
    padder = padding.PKCS7(128).padder()
    enc = Cipher(algorithms.AES(content_key), modes.CBC(iv)).encryptor()
    ciphertext = enc.update(padder.update(plaintext) + padder.finalize()) + enc.finalize()
    wrapped = public_key.encrypt(
        content_key, asym_padding.OAEP(mgf=asym_padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
    )
    sha256 = algos.DigestAlgorithm({"algorithm": "sha256"})
    oaep = cms.KeyEncryptionAlgorithm({
        "algorithm": "rsaes_oaep",
        "parameters": algos.RSAESOAEPParams({
            "hash_algorithm": sha256,
            "mask_gen_algorithm": algos.MaskGenAlgorithm({"algorithm": "mgf1", "parameters": sha256}),
        }),
    })
    ktri = cms.KeyTransRecipientInfo({
        "version": "v2",
        "rid": cms.RecipientIdentifier({"subject_key_identifier": recipient_key_id(public_key)}),
        "key_encryption_algorithm": oaep,
        "encrypted_key": wrapped,
    })
    env = cms.EnvelopedData({
        "version": "v2",
        "recipient_infos": [cms.RecipientInfo({"ktri": ktri})],
        "encrypted_content_info": cms.EncryptedContentInfo({
            "content_type": "data",
            "content_encryption_algorithm": cms.EncryptionAlgorithm({"algorithm": "aes256_cbc", "parameters": core.OctetString(iv)}),
            "encrypted_content": ciphertext,
        }),
    })
    return cms.ContentInfo({"content_type": "enveloped_data", "content": env}).dump()


def load_recipient_key(path: str | os.PathLike[str]) -> rsa.RSAPrivateKey:
    """Load the enclave's RSA private key (PEM, PKCS #1 or PKCS #8, unencrypted).

    Raises:
        TeeformError: missing, not a regular file, over :data:`MAX_RECIPIENT_KEY_BYTES`, unreadable,
            encrypted, or not an RSA key.
    """
    data = read_limited(path, MAX_RECIPIENT_KEY_BYTES, what="recipient key")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise TeeformError(f"not an unencrypted PEM private key: {exc}", path=path) from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise TeeformError("recipient key must be RSA (KMS only offers RSAES_OAEP_SHA_256, eif-nitro.md §5.2)", path=path)
    return key
