"""Seal the agent's secrets to a stack's KMS key; unseal them (plain, or the enclave way with ``Recipient``).

Envelope encryption (the KMS pattern, AWS KMS Developer Guide "envelope encryption"):

1. ``GenerateDataKey(KeyId, KeySpec=AES_256, EncryptionContext=C)`` returns a 32-byte data key and
   its KMS ciphertext (``CiphertextBlob``). If the key policy denies the caller ``GenerateDataKey``
   (``AccessDeniedException``) -- as the stack's own key policy does: its ``DeployerSeal`` statement
   grants the deployer only ``kms:Encrypt`` and ``kms:DescribeKey``, and the policy pack treats
   ``GenerateDataKey`` as a plaintext operation reserved to the attested enclave
   (``components/aws/attested_key.py``, ``policies/teeform_policies/kms.py``) -- the 32-byte data key
   is drawn from the OS CSPRNG (``os.urandom``) and wrapped with ``Encrypt(KeyId, Plaintext=key,
   EncryptionContext=C)`` instead. Both give a ``CiphertextBlob`` that only ``Decrypt`` with the same
   key and context opens, so the sealed file and the enclave side are the same either way.
   ``C`` binds the data key to the deployment::

       {"teeform:stack": <stack>, "teeform:target": <target>, "teeform:manifest-sha256": <sha256 hex of the
        target's first (= deployed) manifest file, teeform.manifest.manifest_sha256>}

   KMS refuses ``Decrypt`` unless the same ``C`` is presented, and key policies can pin it
   (``kms:EncryptionContext:teeform:stack``), so a file sealed for ``dev`` cannot be opened as ``prod``.
2. The secrets (a flat ``{NAME: value}`` map, serialised as canonical JSON: sorted keys, no spaces,
   UTF-8) are encrypted locally with AES-256-GCM (NIST SP 800-38D; 12-byte random nonce, 16-byte tag
   appended to the ciphertext, ``cryptography`` AESGCM) under the data key, with
   ``AAD = canonical JSON of {"key_id", "manifest_sha256", "stack", "version"}``.
3. The plaintext data key is dropped; only the file below is written (atomically, mode 0600).

Sealed file (JSON, ``version`` 1)::

    {"format": "teeform-sealed-secrets", "version": 1, "algorithm": "AES-256-GCM",
     "key_id": "<KMS key ARN>", "encryption_context": {...}, "encrypted_data_key": "<base64 CiphertextBlob>",
     "nonce": "<base64, 12 bytes>", "ciphertext": "<base64, ciphertext || tag>",
     "aad": {"key_id": ..., "manifest_sha256": ..., "stack": ..., "version": 1}}

Hostile input (every file is read with :func:`teeform.safeload.read_limited`: a regular file within
a documented bound, so a directory, FIFO or ``/dev/zero`` is refused without reading):

* secrets files: at most :data:`MAX_SECRETS_BYTES`, strict UTF-8; JSON through
  :func:`teeform.safeload.loads_json` (nesting, 20-digit integers, no ``NaN``, no lone surrogates);
* secret names must be environment variable names (POSIX.1-2017 XBD §8.1: ``[A-Za-z_][A-Za-z0-9_]*``,
  the whole name; a trailing newline is not part of a name), values must be text without NUL (an
  environment string ends at NUL, XBD §8.1) and without lone surrogates (not encodable as UTF-8);
* ``.env`` lines are separated by ``\n`` (``\r\n`` accepted) only: ``str.splitlines`` would also
  split on U+2028, U+0085, form feed... inside a quoted value;
* sealed files: at most :data:`MAX_SEALED_BYTES`, every field type-checked (``version`` is the JSON
  integer 1, not ``true`` or ``1.0``);
* the decrypted payload is checked like a JSON secrets file before it is printed or written.

Unsealing is the reference for the enclave side: ``Decrypt(CiphertextBlob, EncryptionContext, KeyId)``
then AES-GCM. Inside an enclave the request also carries ``Recipient`` (RSAES_OAEP_SHA_256 + the
attestation document), so KMS returns ``CiphertextForRecipient`` and the key policy can require the
enclave's PCRs (``shared/reference/eif-nitro.md`` §5.1-§5.2); :mod:`teeform.nitro.kms_recipient`
decrypts that reply.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from teeform.errors import TeeformError
from teeform.safeload import SMALL_JSON_LIMIT, check_text, decode_utf8, loads_json, read_limited, require_type

SEALED_FORMAT = "teeform-sealed-secrets"
SEALED_VERSION = 1
ALGORITHM = "AES-256-GCM"
NONCE_BYTES = 12  # NIST SP 800-38D §8.2 recommended IV length

CTX_STACK = "teeform:stack"
CTX_TARGET = "teeform:target"
CTX_MANIFEST = "teeform:manifest-sha256"

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")  # used with fullmatch
#: Largest secrets input file (.env or JSON).
MAX_SECRETS_BYTES = 1 << 20
#: Largest sealed file read (:data:`teeform.safeload.SMALL_JSON_LIMIT`, 16 MiB).
MAX_SEALED_BYTES = SMALL_JSON_LIMIT


def check_secret(name: str, value: object, *, source: str, field: str) -> str:
    """Check one secret (module docstring): an environment variable name and a text value without NUL.

    Returns:
        the value.

    Raises:
        TeeformError: naming ``source`` and ``field``.
    """
    check_text(name, source=source, field=field)
    if not _ENV_NAME.fullmatch(name):
        raise TeeformError(f"{name!r} is not a valid variable name ([A-Za-z_][A-Za-z0-9_]*)", path=source, field=field)
    if not isinstance(value, str):
        raise TeeformError(f"value must be a string, got {type(value).__name__}", path=source, field=field)
    check_text(value, source=source, field=field)
    if "\0" in value:
        raise TeeformError("value holds a NUL character (an environment variable cannot)",
                           path=source, field=field)
    return value


# ------------------------------------------------------------------------------------------ secrets input
def _unquote_double(body: str, source: str, lineno: int) -> tuple[str, str]:
    """Parse a double-quoted value starting after the opening quote; return (value, rest of line)."""
    out = []
    i = 0
    escapes = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\", "$": "$"}
    while i < len(body):
        ch = body[i]
        if ch == "\\" and i + 1 < len(body):
            nxt = body[i + 1]
            out.append(escapes.get(nxt, "\\" + nxt))
            i += 2
            continue
        if ch == '"':
            return "".join(out), body[i + 1:]
        out.append(ch)
        i += 1
    raise TeeformError("unterminated double quote (multi-line values are not supported; use \\n)",
                       path=source, field=f"line {lineno}")


def parse_env(text: str, *, source: str = "<env>") -> dict[str, str]:
    """Parse ``.env`` text into ``{NAME: value}``.

    Syntax (the common dotenv subset): blank lines and ``#`` comments are skipped; an optional
    ``export`` prefix; ``NAME=value`` with NAME matching ``[A-Za-z_][A-Za-z0-9_]*``; values unquoted
    (surrounding whitespace and a trailing `` #comment`` removed), ``'single-quoted'`` (literal), or
    ``"double-quoted"`` (escapes ``\\n \\t \\r \\" \\\\ \\$``). Duplicate names are an error.

    Raises:
        TeeformError: naming the line number.
    """
    out: dict[str, str] = {}
    first_line: dict[str, int] = {}
    for lineno, raw in enumerate(text.split("\n"), start=1):
        line = raw.removesuffix("\r").strip(" \t")
        if not line or line.startswith("#"):
            continue
        if line.startswith("export ") or line.startswith("export\t"):
            line = line[7:].lstrip()
        if "=" not in line:
            raise TeeformError(f"expected NAME=VALUE, got {line[:40]!r}", path=source, field=f"line {lineno}")
        name, _, rest = line.partition("=")
        name = name.strip(" \t")
        check_text(name, source=source, field=f"line {lineno}")
        if not _ENV_NAME.fullmatch(name):
            raise TeeformError(f"{name!r} is not a valid variable name", path=source, field=f"line {lineno}")
        rest = rest.strip(" \t")
        if rest.startswith('"'):
            value, tail = _unquote_double(rest[1:], source, lineno)
        elif rest.startswith("'"):
            end = rest.find("'", 1)
            if end < 0:
                raise TeeformError("unterminated single quote", path=source, field=f"line {lineno}")
            value, tail = rest[1:end], rest[end + 1:]
        else:
            value, tail = re.split(r"[ \t]+#", rest, maxsplit=1)[0].rstrip(" \t"), ""
        tail = tail.strip(" \t")
        if tail and not tail.startswith("#"):
            raise TeeformError(f"unexpected text after the closing quote: {tail[:20]!r}", path=source,
                               field=f"line {lineno}")
        if name in out:
            raise TeeformError(f"{name} is already set on line {first_line[name]}", path=source,
                               field=f"line {lineno}")
        check_secret(name, value, source=source, field=f"line {lineno}")
        out[name], first_line[name] = value, lineno
    if not out:
        raise TeeformError("no secrets found (expected NAME=VALUE lines)", path=source)
    return out


def format_env(secrets: Mapping[str, str]) -> str:
    """Render ``secrets`` as ``.env`` text that :func:`parse_env` reads back identically."""
    lines = []
    for k in sorted(secrets):
        v = secrets[k].replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r").replace("$", "\\$")
        lines.append(f'{k}="{v}"')
    return "\n".join(lines) + "\n"


def parse_secrets_json(data: bytes | str, *, source: str = "<secrets>") -> dict[str, str]:
    """Parse a JSON object ``{NAME: "value"}`` (hostile-input rules in the module docstring).

    Raises:
        TeeformError: not acceptable JSON, not a non-empty object, or a bad name/value (naming it).
    """
    obj = loads_json(data, source=source)
    if not isinstance(obj, dict) or not obj:
        raise TeeformError("must be a non-empty JSON object of NAME: \"value\"", path=source)
    for k, v in obj.items():
        check_secret(k, v, source=source, field=k if _ENV_NAME.fullmatch(k) else repr(k))
    return dict(obj)


def load_secrets(path: str | Path) -> dict[str, str]:
    """Read secrets from ``.env`` text or a JSON object of string values (chosen by suffix ``.json``,
    else by a leading ``{``); at most :data:`MAX_SECRETS_BYTES`, strict UTF-8.

    Raises:
        TeeformError: missing, not a regular file, too large, unreadable, not UTF-8, malformed, empty,
            or a name/value that is not acceptable (module docstring).
    """
    p = Path(path)
    if not p.exists() and not p.is_symlink():
        raise TeeformError("secrets file not found", path=p)
    text = decode_utf8(read_limited(p, MAX_SECRETS_BYTES, what="secrets file"), source=str(p))
    if p.suffix.lower() == ".json" or text.lstrip().startswith("{"):
        return parse_secrets_json(text, source=str(p))
    return parse_env(text, source=str(p))


# ------------------------------------------------------------------------------------------ sealed file
def canonical_json(obj: Any) -> bytes:
    """Sorted keys, no whitespace, UTF-8 (the byte form used for the plaintext and the AAD)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def aad_fields(stack: str, key_id: str, manifest_sha256: str, version: int = SEALED_VERSION) -> dict[str, Any]:
    """The AAD dict; its :func:`canonical_json` is the AES-GCM additional authenticated data."""
    return {"key_id": key_id, "manifest_sha256": manifest_sha256, "stack": stack, "version": version}


def encryption_context(stack: str, target: str, manifest_sha256: str) -> dict[str, str]:
    """The KMS EncryptionContext binding a data key to stack, target and deployed manifest."""
    return {CTX_STACK: stack, CTX_TARGET: target, CTX_MANIFEST: manifest_sha256}


@dataclass(frozen=True)
class SealedSecrets:
    """A sealed file's content (module docstring). Binary fields are raw bytes here, base64 in JSON."""

    key_id: str
    encryption_context: Mapping[str, str]
    encrypted_data_key: bytes
    nonce: bytes
    ciphertext: bytes
    aad: Mapping[str, Any]
    version: int = SEALED_VERSION
    algorithm: str = ALGORITHM
    format: str = field(default=SEALED_FORMAT)

    def to_json(self) -> str:
        """Canonical text: 2-space indent, sorted keys, trailing newline."""
        b64 = lambda b: base64.b64encode(b).decode("ascii")  # noqa: E731
        return json.dumps({
            "format": self.format, "version": self.version, "algorithm": self.algorithm, "key_id": self.key_id,
            "encryption_context": dict(self.encryption_context), "encrypted_data_key": b64(self.encrypted_data_key),
            "nonce": b64(self.nonce), "ciphertext": b64(self.ciphertext), "aad": dict(self.aad),
        }, indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str | bytes, *, source: str = "<sealed>") -> SealedSecrets:
        """Parse and check a sealed file, including that ``aad`` agrees with ``key_id``/``encryption_context``.

        ``text`` is parsed with :func:`teeform.safeload.loads_json` (bytes are decoded as strict UTF-8).

        Raises:
            TeeformError: naming the field.
        """
        d = loads_json(text, source=source)
        if not isinstance(d, dict) or d.get("format") != SEALED_FORMAT:
            raise TeeformError(f"not a teeform sealed-secrets file (format must be {SEALED_FORMAT!r})", path=source, field="format")
        if type(d.get("version")) is not int or d.get("version") != SEALED_VERSION:
            raise TeeformError(f"unsupported version {d.get('version')!r} (this teeform reads {SEALED_VERSION})",
                               path=source, field="version")
        if d.get("algorithm") != ALGORITHM:
            raise TeeformError(f"unsupported algorithm {d.get('algorithm')!r}", path=source, field="algorithm")
        for k in ("key_id", "encryption_context", "encrypted_data_key", "nonce", "ciphertext", "aad"):
            if k not in d:
                raise TeeformError(f"missing field {k!r}", path=source, field=k)
        if not isinstance(d["key_id"], str) or not d["key_id"]:
            raise TeeformError("must be a non-empty string", path=source, field="key_id")
        ctx = d["encryption_context"]
        if not isinstance(ctx, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in ctx.items()):
            raise TeeformError("must be an object of strings", path=source, field="encryption_context")
        aad = d["aad"]
        if not isinstance(aad, dict) or set(aad) != {"key_id", "manifest_sha256", "stack", "version"}:
            raise TeeformError("must hold exactly key_id, manifest_sha256, stack, version", path=source, field="aad")
        for k in ("key_id", "manifest_sha256", "stack"):
            require_type(aad[k], str, source=source, field=f"aad.{k}")
        if type(aad["version"]) is not int:
            raise TeeformError(f"must be the JSON integer {SEALED_VERSION}, got {aad['version']!r}", path=source,
                               field="aad.version")

        def unb64(k: str) -> bytes:
            require_type(d[k], str, source=source, field=k, describe="a base64 string")
            try:
                return base64.b64decode(d[k], validate=True)
            except (binascii.Error, ValueError, TypeError):
                raise TeeformError("not valid base64", path=source, field=k) from None

        sealed = cls(d["key_id"], ctx, unb64("encrypted_data_key"), unb64("nonce"), unb64("ciphertext"), aad)
        if len(sealed.nonce) != NONCE_BYTES:
            raise TeeformError(f"nonce must be {NONCE_BYTES} bytes, got {len(sealed.nonce)}", path=source, field="nonce")
        mismatches = [f"aad.{a} != {b}" for a, got, b in (
            ("key_id", sealed.key_id, "key_id"),
            ("stack", ctx.get(CTX_STACK), f"encryption_context['{CTX_STACK}']"),
            ("manifest_sha256", ctx.get(CTX_MANIFEST), f"encryption_context['{CTX_MANIFEST}']"),
            ("version", sealed.version, "version"),
        ) if aad.get(a) != got]
        if mismatches:
            raise TeeformError("the sealed file is inconsistent (edited?): " + ", ".join(mismatches), path=source, field="aad")
        return sealed


# ------------------------------------------------------------------------------------------ KMS
def kms_client(*, region: str | None = None, endpoint_url: str | None = None) -> Any:
    """A boto3 KMS client (credentials from the usual AWS chain)."""
    import boto3

    return boto3.client("kms", region_name=region, endpoint_url=endpoint_url)


def region_from_arn(arn: str) -> str | None:
    """``eu-west-1`` from ``arn:aws:kms:eu-west-1:111122223333:key/...``; None for a bare key id/alias."""
    parts = arn.split(":")
    return parts[3] if len(parts) > 5 and parts[0] == "arn" and parts[3] else None


class KmsAccessDenied(TeeformError):
    """KMS answered ``AccessDeniedException`` (the key policy or IAM does not allow the call)."""


def _kms_call(what: str, fn: Any, **kwargs: Any) -> dict[str, Any]:
    """Call a KMS API, turning botocore errors into TeeformError with a hint
    (:class:`KmsAccessDenied` for ``AccessDeniedException``)."""
    import botocore.exceptions as bx

    try:
        resp: dict[str, Any] = fn(**kwargs)
        return resp
    except bx.ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "Error")
        msg = exc.response.get("Error", {}).get("Message", "") or ""
        hints = {
            "InvalidCiphertextException": "the encrypted data key or its encryption context (stack, target, manifest "
                                          "digest) was changed, or it was sealed under another KMS key",
            "IncorrectKeyException": "the data key was sealed under a different KMS key than key_id",
            "AccessDeniedException": "the key policy does not allow this caller (or key_id is not the sealing key)",
            "NotFoundException": "check the key ARN/alias and the region",
            "DisabledException": "enable the KMS key",
        }
        cls = KmsAccessDenied if code == "AccessDeniedException" else TeeformError
        raise cls(f"KMS {what} failed: {code}" + (f": {msg}" if msg else ""), hint=hints.get(code)) from None
    except bx.NoCredentialsError:
        raise TeeformError(f"KMS {what} failed: no AWS credentials", hint="configure AWS credentials (AWS_PROFILE, ...)") from None
    except bx.NoRegionError:
        raise TeeformError(f"KMS {what} failed: no AWS region", hint="pass --region or set AWS_REGION") from None
    except bx.BotoCoreError as exc:
        raise TeeformError(f"KMS {what} failed: {exc}") from None


def _same_key(a: str, b: str) -> bool:
    """ARNs compare exactly; a bare key id matches the ARN ending in ``key/<id>``."""
    return a == b or a.endswith("/" + b) or b.endswith("/" + a)


# ------------------------------------------------------------------------------------------ seal / unseal
def seal_secrets(secrets: Mapping[str, str], *, kms: Any, key_id: str, stack: str, target: str,
                 manifest_sha256: str, note: Callable[[str], None] | None = None) -> SealedSecrets:
    """Envelope-encrypt ``secrets`` (module docstring).

    Args:
        kms: a boto3 KMS client.
        key_id: KMS key ARN, id or alias; the ARN KMS reports is what gets recorded.
        note: receives one line saying how the data key was made (``GenerateDataKey``, or the
            ``Encrypt`` fallback when ``GenerateDataKey`` is denied).

    Raises:
        TeeformError: KMS errors (with hints); when both GenerateDataKey and Encrypt are denied, the
            message names both.
    """
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    ctx = encryption_context(stack, target, manifest_sha256)
    try:
        resp = _kms_call("GenerateDataKey", kms.generate_data_key, KeyId=key_id, KeySpec="AES_256", EncryptionContext=ctx)
        data_key, blob = resp["Plaintext"], resp["CiphertextBlob"]
        how = "KMS GenerateDataKey (AES_256)"
    except KmsAccessDenied as denied:
        data_key = os.urandom(32)
        try:
            resp = _kms_call("Encrypt", kms.encrypt, KeyId=key_id, Plaintext=data_key, EncryptionContext=ctx)
        except KmsAccessDenied as exc:
            raise TeeformError(f"{denied.message}; {exc.message}",
                               hint="the caller needs kms:Encrypt (or kms:GenerateDataKey) on the key; the stack's key "
                                    "policy grants kms:Encrypt to the deployer principal (DeployerSeal)") from None
        blob = resp["CiphertextBlob"]
        how = "local 32-byte key (os.urandom) wrapped with KMS Encrypt (GenerateDataKey is denied by the key policy)"
    if len(data_key) != 32:
        raise TeeformError(f"KMS GenerateDataKey returned a {len(data_key)}-byte key, expected 32")
    if note is not None:
        note(how)
    arn = resp.get("KeyId") or key_id
    aad = aad_fields(stack, arn, manifest_sha256)
    nonce = os.urandom(NONCE_BYTES)
    ct = AESGCM(data_key).encrypt(nonce, canonical_json(dict(secrets)), canonical_json(aad))
    return SealedSecrets(arn, ctx, blob, nonce, ct, aad)


@dataclass(frozen=True)
class Recipient:
    """The enclave side's ``Recipient``: the raw attestation document and the RSA private key whose
    public half is the document's ``public_key``."""

    attestation_document: bytes
    private_key: Any  # cryptography RSAPrivateKey


def recipient_for(document: bytes, private_key: Any, *, source: str = "<attestation document>") -> Recipient:
    """Check that ``document``'s ``public_key`` is the DER SubjectPublicKeyInfo of ``private_key``.

    Raises:
        TeeformError: the document has no public_key, or a different one.
    """
    from cryptography.hazmat.primitives import serialization

    from teeform.nitro.attestation import parse_attestation_document

    doc = parse_attestation_document(document, source=source)
    spki = private_key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    if doc.public_key is None:
        raise TeeformError("the attestation document has no public_key; KMS needs one to encrypt the reply",
                           path=source, field="public_key",
                           hint="request the document from /dev/nsm with public_key = DER SubjectPublicKeyInfo of the RSA key")
    if doc.public_key != spki:
        raise TeeformError("the attestation document's public_key is not the public half of --recipient-key",
                           path=source, field="public_key")
    return Recipient(document, private_key)


def unseal_secrets(sealed: SealedSecrets, *, kms: Any, recipient: Recipient | None = None) -> dict[str, str]:
    """Recover the secrets: KMS ``Decrypt`` of the data key, then AES-256-GCM.

    With ``recipient``, ``Decrypt`` carries ``Recipient`` and the data key is taken from
    ``CiphertextForRecipient`` (the enclave path, eif-nitro.md §5.2); a reply without it is refused
    (KMS emulators such as moto ignore ``Recipient`` and return ``Plaintext``).

    Raises:
        TeeformError: KMS refused (wrong key or context), the reply is malformed, or the ciphertext,
            nonce or AAD were modified.
    """

    kwargs: dict[str, Any] = dict(CiphertextBlob=sealed.encrypted_data_key, EncryptionContext=dict(sealed.encryption_context),
                                  KeyId=sealed.key_id)
    if recipient is not None:
        from teeform.nitro.kms_recipient import KEY_ENCRYPTION_ALGORITHM

        kwargs["Recipient"] = {"KeyEncryptionAlgorithm": KEY_ENCRYPTION_ALGORITHM,
                               "AttestationDocument": recipient.attestation_document}
    resp = _kms_call("Decrypt", kms.decrypt, **kwargs)
    if resp.get("KeyId") and not _same_key(resp["KeyId"], sealed.key_id):
        raise TeeformError(f"KMS decrypted with key {resp['KeyId']}, but the file was sealed under {sealed.key_id}")
    if recipient is not None:
        from teeform.nitro.kms_recipient import decrypt_ciphertext_for_recipient

        blob = resp.get("CiphertextForRecipient")
        if blob is not None and not isinstance(blob, bytes):
            raise TeeformError(f"KMS CiphertextForRecipient is a {type(blob).__name__}, not bytes", field="CiphertextForRecipient")
        if not blob:
            raise TeeformError("KMS returned no CiphertextForRecipient although the request carried Recipient",
                               field="CiphertextForRecipient",
                               hint="the endpoint does not implement Recipient (moto does not); use the plain path there")
        data_key = decrypt_ciphertext_for_recipient(blob, recipient.private_key)
    else:
        data_key = resp.get("Plaintext") or b""
    if not isinstance(data_key, bytes):
        raise TeeformError(f"the data key is a {type(data_key).__name__}, expected 32 bytes (AES-256)")
    if len(data_key) != 32:
        raise TeeformError(f"the data key is {len(data_key)} bytes, expected 32 (AES-256)")
    return open_payload(sealed, data_key)


def open_payload(sealed: SealedSecrets, data_key: bytes) -> dict[str, str]:
    """Decrypt ``sealed``'s AES-256-GCM payload with the unwrapped 32-byte ``data_key`` (AAD = canonical JSON
    of :func:`aad_fields`, module docstring): the last step of every cloud's unseal.

    Raises:
        TeeformError: the data key is not 32 bytes, or authentication fails (a modified field).
    """
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    if len(data_key) != 32:
        raise TeeformError(f"the data key is {len(data_key)} bytes, expected 32 (AES-256)")
    aad = aad_fields(str(sealed.aad["stack"]), sealed.key_id, str(sealed.aad["manifest_sha256"]), sealed.version)
    try:
        plain = AESGCM(data_key).decrypt(sealed.nonce, sealed.ciphertext, canonical_json(aad))
    except InvalidTag:
        raise TeeformError("the sealed file does not authenticate: AES-256-GCM authentication failed (the "
                           "ciphertext, nonce or aad fields were modified, or another key was unwrapped)",
                           field="ciphertext") from None
    return parse_secrets_json(plain, source="decrypted payload")


def stack_output_key(key_id: str | None, stack: str, project_dir: Path, target: str | None, *, output: str,
                     what_key: str, example: str) -> str:
    """``key_id`` if given, else the stack output ``output`` (``pulumi stack output <output> --json --stack
    <stack>``) for ``target``: the one place the AWS, GCP and Azure sealers look their key up.

    With one target the output is the key itself; with several it is a map keyed by target name
    (``components/registry.py`` ``shape_outputs``), and ``target`` picks the entry. ``what_key`` names
    the key in messages ("KMS key", "Cloud KMS key", ...), ``example`` is the ``--key-id`` hint.

    Raises:
        TeeformError: neither is available (with a hint), the output is empty, or it has no entry for
            ``target``.
    """
    if key_id:
        return key_id
    from teeform.run import find_tool, run

    what = f"`pulumi stack output {output} --json --stack {stack}`"
    if find_tool("pulumi", required=False) is None:
        raise TeeformError(
            f"no {what_key} given and the Pulumi CLI is not installed to look it up",
            hint=f"pass --key-id {example}, or install Pulumi so {what} works",
        )
    out = run(["pulumi", "stack", "output", output, "--json", "--stack", stack], cwd=str(project_dir)).stdout
    text = (out or b"").decode("utf-8", "replace").strip()
    try:
        value = loads_json(text, source=what) if text else None
    except TeeformError:
        value = text  # an older CLI printing the bare string (or JSON teeform refuses: then not a key either)
    if isinstance(value, dict):
        if target is None or not isinstance(value.get(target), str):
            raise TeeformError(f"{what} has no key for target {target!r}",
                               hint="targets with a key: " + (", ".join(sorted(value)) or "none") + "; choose one with --target")
        value = value[target]
    if not isinstance(value, str) or not value.strip():
        raise TeeformError(f"{what} printed no {what_key}",
                           hint="deploy the stack first (pulumi up), or pass --key-id")
    return value.strip()


def resolve_key_id(key_id: str | None, stack: str, project_dir: Path, target: str | None = None) -> str:
    """``--key-id`` if given, else the stack output ``kms_key_arn`` (the name the Pulumi program exports,
    ``components/aws/nitro.py``), through :func:`stack_output_key`.

    Raises:
        TeeformError: as :func:`stack_output_key`.
    """
    return stack_output_key(key_id, stack, project_dir, target, output="kms_key_arn", what_key="KMS key ARN",
                            example="<KMS key ARN>")
