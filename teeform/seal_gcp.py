"""Sealing for GCP targets: secrets envelope-encrypted to the target's Cloud KMS key, and the workload side.

Same sealed file as AWS (:mod:`teeform.seal`, ``version`` 1, AES-256-GCM, the same ``aad`` and
``encryption_context``); only the data-key wrapping differs:

* **seal** (the deployer, a member of ``key.encrypters``): a 32-byte data key from ``os.urandom`` is
  wrapped with Cloud KMS ``Encrypt`` (google-cloud-kms ``KeyManagementServiceClient.encrypt``, REST
  ``POST https://cloudkms.googleapis.com/v1/{name}:encrypt``) with ``additional_authenticated_data`` =
  the canonical JSON of the encryption context (``{teeform:stack, teeform:target,
  teeform:manifest-sha256}``): Cloud KMS refuses ``Decrypt`` unless the same AAD is presented (Cloud KMS
  docs "Additional authenticated data"), which binds the wrapped key to stack, target and deployed
  manifest as AWS's EncryptionContext does. ``key_id`` is the CryptoKey name
  (``projects/<p>/locations/<l>/keyRings/<r>/cryptoKeys/<k>``, the stack output ``kms_key_id``). Cloud KMS
  has no GenerateDataKey.
* **unseal in the Confidential Space workload** (:func:`unseal_gcp_workload`):

  1. read the attestation token the launcher writes (default
     ``/run/container_launcher/attestation_verifier_claims_token``; an OIDC JWT from
     ``https://confidentialcomputing.googleapis.com``, clouds.md §3.1);
  2. exchange it at Google STS (RFC 8693 token exchange, ``POST https://sts.googleapis.com/v1/token`` with
     ``grant_type=urn:ietf:params:oauth:grant-type:token-exchange``, ``audience=//iam.googleapis.com/<provider
     name>``, ``subject_token_type=urn:ietf:params:oauth:token-type:jwt``,
     ``requested_token_type=urn:ietf:params:oauth:token-type:access_token``, ``scope=https://www.googleapis.com/auth/cloud-platform``;
     Google STS API reference ``v1/token``). STS evaluates the provider's ``attribute_condition``: a token of
     another image digest, a debug image or another service account gets no federated token at all;
  3. Cloud KMS ``Decrypt`` with that federated access token (the principal set
     ``.../attribute.image_digest/sha256:<digest>`` holds ``cryptoKeyDecrypter``), then AES-256-GCM.

Tests (``tests/test_gcp_seal.py``) run both sides against a loopback fake of STS and Cloud KMS at the HTTP
boundary only: the real google-cloud-kms REST transport and teeform's STS request go over HTTP to
127.0.0.1; the fake plays Google's role (it checks the subject token, audience, bearer token and AAD).
"""

from __future__ import annotations

import os
import re
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from teeform.errors import TeeformError
from teeform.safeload import loads_json
from teeform.seal import (
    NONCE_BYTES,
    SealedSecrets,
    aad_fields,
    canonical_json,
    encryption_context,
    open_payload,
    stack_output_key,
)

#: Where the Confidential Space launcher writes the attestation token for the workload.
DEFAULT_TOKEN_PATH = "/run/container_launcher/attestation_verifier_claims_token"
STS_URL = "https://sts.googleapis.com/v1/token"
KMS_ENDPOINT = "cloudkms.googleapis.com"
CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"
#: Cloud KMS CryptoKey resource name (Cloud KMS "Resource names").
KEY_NAME = re.compile(r"^projects/[^/]+/locations/[^/]+/keyRings/[^/]+/cryptoKeys/[^/]+$")
#: Workload Identity Pool provider resource name (the STS audience without ``//iam.googleapis.com/``).
PROVIDER_NAME = re.compile(r"^projects/[0-9]+/locations/global/workloadIdentityPools/[^/]+/providers/[^/]+$")
#: Largest attestation token / STS reply read (a JWT of a few KiB).
MAX_TOKEN_BYTES = 64 << 10


def is_gcp_key(key_id: str) -> bool:
    """Whether ``key_id`` is a Cloud KMS CryptoKey name (the sealed file's ``key_id`` for GCP targets)."""
    return bool(KEY_NAME.match(key_id))


def kms_client(*, endpoint_url: str | None = None, access_token: str | None = None) -> Any:
    """A google-cloud-kms ``KeyManagementServiceClient`` (REST transport).

    Args:
        endpoint_url: ``http(s)://host:port`` instead of ``https://cloudkms.googleapis.com`` (tests: a
            loopback fake); with it and no ``access_token`` the client sends no credentials.
        access_token: a bearer token (the STS federated token); None = Application Default Credentials.
    """
    from google.api_core.client_options import ClientOptions
    from google.cloud import kms_v1

    creds: Any = None
    if access_token is not None:
        from google.oauth2.credentials import Credentials

        creds = Credentials(token=access_token)
    elif endpoint_url is not None:
        from google.auth.credentials import AnonymousCredentials

        creds = AnonymousCredentials()
    opts = ClientOptions(api_endpoint=endpoint_url) if endpoint_url else None
    return kms_v1.KeyManagementServiceClient(credentials=creds, client_options=opts, transport="rest")


def _kms(what: str, fn: Any, request: dict[str, Any]) -> Any:
    """Call a Cloud KMS method, turning google-api-core errors into one-line TeeformErrors."""
    from google.api_core import exceptions as gx
    from google.auth import exceptions as ax

    denied = ("the caller lacks roles/cloudkms.cryptoKeyEncrypter (seal: add it to key.encrypters) or "
                            "cryptoKeyDecrypter (unseal: only the attested workload's principal set has it)")
    invalid = ("the wrapped key or its AAD (stack, target, manifest digest) was changed, or it was sealed under "
               "another key")
    # google-api-core names REST errors by HTTP status (Forbidden, BadRequest) and gRPC ones by code.
    hints = {"PermissionDenied": denied, "Forbidden": denied, "InvalidArgument": invalid, "BadRequest": invalid,
             "NotFound": "check the CryptoKey name (stack output kms_key_id)"}
    try:
        return fn(request=request)
    except gx.GoogleAPICallError as exc:
        name = type(exc).__name__
        raise TeeformError(f"Cloud KMS {what} failed: {name}: {exc.message}", hint=hints.get(name)) from None
    except ax.DefaultCredentialsError:
        raise TeeformError(f"Cloud KMS {what} failed: no Google credentials",
                           hint="run `gcloud auth application-default login`, or set GOOGLE_APPLICATION_CREDENTIALS") from None


def seal_secrets_gcp(secrets: dict[str, str], *, kms: Any, key_name: str, stack: str, target: str,
                     manifest_sha256: str) -> SealedSecrets:
    """Envelope-encrypt ``secrets`` to Cloud KMS key ``key_name`` (module docstring).

    Raises:
        TeeformError: a malformed key name, or Cloud KMS refused.
    """
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    if not is_gcp_key(key_name):
        raise TeeformError(f"not a Cloud KMS CryptoKey name: {key_name!r}", field="--key-id",
                           hint="projects/<p>/locations/<l>/keyRings/<r>/cryptoKeys/<k> (stack output kms_key_id)")
    ctx = encryption_context(stack, target, manifest_sha256)
    data_key = os.urandom(32)
    resp = _kms("Encrypt", kms.encrypt, {"name": key_name, "plaintext": data_key,
                                          "additional_authenticated_data": canonical_json(ctx)})
    blob = bytes(resp.ciphertext)
    if not blob:
        raise TeeformError("Cloud KMS Encrypt returned no ciphertext")
    aad = aad_fields(stack, key_name, manifest_sha256)
    nonce = os.urandom(NONCE_BYTES)
    ct = AESGCM(data_key).encrypt(nonce, canonical_json(dict(secrets)), canonical_json(aad))
    return SealedSecrets(key_name, ctx, blob, nonce, ct, aad)


def unseal_secrets_gcp(sealed: SealedSecrets, *, kms: Any) -> dict[str, str]:
    """Cloud KMS ``Decrypt`` of the data key (AAD = the encryption context), then AES-256-GCM.

    Raises:
        TeeformError: Cloud KMS refused, the key is not 32 bytes, or the file was modified.
    """
    resp = _kms("Decrypt", kms.decrypt, {"name": sealed.key_id, "ciphertext": sealed.encrypted_data_key,
                                          "additional_authenticated_data": canonical_json(dict(sealed.encryption_context))})
    return open_payload(sealed, bytes(resp.plaintext))


def read_attestation_token(path: str) -> str:
    """The attestation token (a JWT: three base64url parts) from ``path``.

    Raises:
        TeeformError: missing, too large, or not a JWT.
    """
    from teeform.safeload import decode_utf8, read_limited

    if not os.path.exists(path):
        raise TeeformError("attestation token not found", path=path,
                           hint="run inside a Confidential Space VM (the launcher writes it), or pass --attestation-token")
    text = decode_utf8(read_limited(path, MAX_TOKEN_BYTES, what="attestation token"), source=path).strip()
    if not re.fullmatch(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*", text):
        raise TeeformError("not a JWT (header.payload.signature in base64url)", path=path)
    return text


#: RFC 6750 §2.1 ``b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="``
_B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]{1,8192}=*")


def sts_exchange(subject_token: str, provider: str, *, sts_url: str = STS_URL, timeout: float = 30) -> str:
    """Exchange the attestation token for a federated access token at Google STS (module docstring, step 2).

    Raises:
        TeeformError: a malformed provider name, STS refused (its ``error_description`` is shown: a refused
            ``attribute_condition`` is reported by STS as ``invalid_grant``), or a malformed reply.
    """
    if not PROVIDER_NAME.match(provider):
        raise TeeformError(f"not a Workload Identity Pool provider name: {provider!r}", field="--wif-provider",
                           hint="projects/<number>/locations/global/workloadIdentityPools/<pool>/providers/<id> "
                                "(stack output workload_identity_provider)")
    body = urllib.parse.urlencode({
        "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
        "audience": f"//iam.googleapis.com/{provider}",
        "scope": CLOUD_PLATFORM,
        "requested_token_type": "urn:ietf:params:oauth:token-type:access_token",
        "subject_token": subject_token,
        "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
    }).encode("ascii")
    req = urllib.request.Request(sts_url, data=body, method="POST",
                                 headers={"Content-Type": "application/x-www-form-urlencoded"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:  # noqa: S310 - https (or a test's loopback)
            raw = r.read(MAX_TOKEN_BYTES + 1)
    except urllib.error.HTTPError as exc:
        try:  # a hostile reply: bounded read, safeload's depth/number/duplicate bounds, one line shown
            err = loads_json(exc.read(MAX_TOKEN_BYTES), source="STS error reply")
            detail = f"{err.get('error')}: {err.get('error_description')}"[:500].encode("ascii", "backslashreplace") \
                .decode("ascii")
        except (TeeformError, AttributeError):
            detail = str(exc)
        raise TeeformError(f"STS token exchange refused (HTTP {exc.code}): {detail}",
                           hint="the provider's attribute_condition did not admit this token (image digest, debug "
                                "image, support attributes or service account)") from None
    except (urllib.error.URLError, OSError) as exc:
        raise TeeformError(f"STS token exchange failed: {exc}") from None
    if len(raw) > MAX_TOKEN_BYTES:
        raise TeeformError(f"STS reply is over the {MAX_TOKEN_BYTES}-byte limit")
    try:
        doc = loads_json(raw, source="STS reply")
        token = doc["access_token"]
    except (TeeformError, KeyError, TypeError):
        raise TeeformError("STS reply has no access_token") from None
    # RFC 6750 §2.1 b64token: the token goes into an Authorization header, so nothing else may pass
    if not isinstance(token, str) or not _B64TOKEN.fullmatch(token):
        raise TeeformError("STS reply's access_token is not an OAuth bearer token (RFC 6750 b64token characters)")
    return token


def unseal_gcp_workload(sealed: SealedSecrets, *, provider: str, token_path: str = DEFAULT_TOKEN_PATH,
                        sts_url: str = STS_URL, kms_endpoint: str | None = None) -> dict[str, str]:
    """The workload side: attestation token -> STS federated token -> Cloud KMS Decrypt -> AES-GCM."""
    access = sts_exchange(read_attestation_token(token_path), provider, sts_url=sts_url)
    return unseal_secrets_gcp(sealed, kms=kms_client(endpoint_url=kms_endpoint, access_token=access))


def resolve_key_name(key_id: str | None, stack: str, project_dir: Any, target: str) -> str:
    """``--key-id``, else the stack output ``kms_key_id`` of ``target`` (``pulumi stack output kms_key_id --json``).

    Raises:
        TeeformError: neither is available, or the output has no entry for ``target``.
    """
    return stack_output_key(key_id, stack, project_dir, target, output="kms_key_id", what_key="Cloud KMS key",
                            example="projects/.../cryptoKeys/...")


__all__ = ["DEFAULT_TOKEN_PATH", "STS_URL", "is_gcp_key", "kms_client", "seal_secrets_gcp", "unseal_secrets_gcp",
           "read_attestation_token", "sts_exchange", "unseal_gcp_workload", "resolve_key_name"]
