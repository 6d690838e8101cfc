"""Seal secrets to an Azure target's Key Vault key; unseal them on the confidential VM after secure key release.

Same sealed-file format as :mod:`teeform.seal` (``teeform-sealed-secrets`` version 1, AES-256-GCM of
the canonical-JSON secrets under a 32-byte data key, ``aad`` = ``{key_id, manifest_sha256, stack,
version}``), with the data key wrapped by **Key Vault** instead of KMS:

1. data key: 32 bytes from the OS CSPRNG (``os.urandom``);
2. ``CryptographyClient(<key id>, credential).wrap_key(KeyWrapAlgorithm.rsa_oaep_256, data_key)``
   (azure-keyvault-keys 4.11.3; RSA-OAEP-256 = RSAES-OAEP with SHA-256 and MGF1-SHA-256, RFC 8017
   §7.1, the JWA name of RFC 7518 §4.3 as Key Vault uses it). The SDK wraps locally with the key's
   public half when it may read the key (``keys/get``), else calls ``POST {kid}/wrapkey``; the result
   is the same: only the holder of the private key can unwrap it;
3. ``key_id`` records the **versioned** key id the SDK reports (``https://<vault>.vault.azure.net/keys/<name>/<version>``);
   ``encryption_context`` holds the same stack/target/manifest record as on AWS. Key Vault has no
   encryption context, so what binds the file is the AES-GCM AAD (stack, manifest SHA-256, key id)
   and the key itself: each Azure target has its own key, released only to its own VM's identity.

The VM side (docs/azure.md "On the VM"): guest attestation gives a MAA token; ``KeyClient.release_key
(name, target=<token>)`` (``POST /keys/{name}/{version}/release``) returns the key wrapped to the
vTPM's ephemeral key; once unwrapped in the vTPM, :func:`unseal_with_private_key` opens the file
locally. :func:`unseal_secrets_azure` is the operator path (``unwrapKey`` on Key Vault; needs
``Microsoft.KeyVault/vaults/keys/unwrap/action``).

Tested against a loopback HTTPS fake of Key Vault (tests/azure_kv_fake.py, tests/test_azure_seal.py).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from typing import Any

from teeform.errors import TeeformError
from teeform.seal import (
    NONCE_BYTES,
    SealedSecrets,
    aad_fields,
    canonical_json,
    encryption_context,
    open_payload,
    stack_output_key,
)

#: A Key Vault / Managed HSM key id: ``https://<host>/keys/<name>[/<version>]`` (Key Vault "About keys").
KEY_ID = re.compile(r"^https://[A-Za-z0-9.:-]+/keys/[A-Za-z0-9-]{1,127}(/[0-9a-fA-F]{32})?/?$")

#: Keyword arguments for every ``CryptographyClient`` this module makes (tests point them at the
#: loopback fake: ``connection_verify``, ``verify_challenge_resource``). Empty in normal use.
CLIENT_OPTIONS: dict[str, Any] = {}


def default_credential() -> Any:
    """``azure.identity.DefaultAzureCredential()`` (environment, managed identity, Azure CLI, ...)."""
    from azure.identity import DefaultAzureCredential

    return DefaultAzureCredential()


def is_key_vault_key_id(key_id: str) -> bool:
    """Whether ``key_id`` has the Key Vault key URL form (used to tell Azure sealed files from KMS ones)."""
    return bool(KEY_ID.match(key_id))


def _crypto_client(key_id: str, credential: Any) -> Any:
    from azure.keyvault.keys.crypto import CryptographyClient

    return CryptographyClient(key_id, credential, **CLIENT_OPTIONS)


def _azure_error(what: str, exc: Exception) -> TeeformError:
    from azure.core.exceptions import ClientAuthenticationError, HttpResponseError

    if isinstance(exc, ClientAuthenticationError):
        return TeeformError(f"Key Vault {what}: authentication failed ({exc.message})",
                            hint="sign in (az login) or set AZURE_CLIENT_ID/AZURE_TENANT_ID/AZURE_CLIENT_SECRET")
    if isinstance(exc, HttpResponseError):
        hint = ("the caller needs a role with the keys/wrap (seal) or keys/unwrap action on the key, e.g. "
                "Key Vault Crypto User" if exc.status_code == 403 else None)
        return TeeformError(f"Key Vault {what} failed: HTTP {exc.status_code} {exc.reason or ''}".rstrip(), hint=hint)
    return TeeformError(f"Key Vault {what} failed: {exc}")


def seal_secrets_azure(secrets: Mapping[str, str], *, key_id: str, stack: str, target: str, manifest_sha256: str,
                       credential: Any = None, note: Callable[[str], None] | None = None) -> SealedSecrets:
    """Envelope-encrypt ``secrets`` under a fresh data key wrapped with the Key Vault key ``key_id``.

    Args:
        key_id: the key's id (stack output ``key_id``; versionless or versioned URL).
        credential: an azure-core ``TokenCredential`` (default :func:`default_credential`).
        note: receives one line saying how the data key was wrapped.

    Raises:
        TeeformError: ``key_id`` is not a Key Vault key URL (field ``--key-id``), or Key Vault refused.
    """
    from azure.core.exceptions import AzureError
    from azure.keyvault.keys.crypto import KeyWrapAlgorithm
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    if not is_key_vault_key_id(key_id):
        raise TeeformError(f"{key_id!r} is not a Key Vault key id (https://<vault>.vault.azure.net/keys/<name>)",
                           field="--key-id", hint="use the stack output key_id")
    data_key = os.urandom(32)
    try:
        result = _crypto_client(key_id, credential or default_credential()).wrap_key(KeyWrapAlgorithm.rsa_oaep_256, data_key)
    except AzureError as exc:
        raise _azure_error("wrapKey", exc) from None
    kid = str(result.key_id or key_id)
    if note is not None:
        note(f"local 32-byte key (os.urandom) wrapped with Key Vault RSA-OAEP-256 under {kid}")
    ctx = encryption_context(stack, target, manifest_sha256)
    aad = aad_fields(stack, kid, manifest_sha256)
    nonce = os.urandom(NONCE_BYTES)
    ct = AESGCM(data_key).encrypt(nonce, canonical_json(dict(secrets)), canonical_json(aad))
    return SealedSecrets(kid, ctx, bytes(result.encrypted_key), nonce, ct, aad)


def unseal_with_private_key(sealed: SealedSecrets, private_key: Any) -> dict[str, str]:
    """Open ``sealed`` with the released RSA private key (``cryptography`` object): OAEP-SHA-256 unwrap, then AES-GCM.

    Raises:
        TeeformError: the key does not unwrap the data key, or the file does not authenticate.
    """
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    oaep = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
    try:
        data_key = private_key.decrypt(sealed.encrypted_data_key, oaep)
    except ValueError:
        raise TeeformError("this private key does not unwrap the sealed data key", field="encrypted_data_key") from None
    return open_payload(sealed, data_key)


def unseal_secrets_azure(sealed: SealedSecrets, *, credential: Any = None) -> dict[str, str]:
    """Operator path: ``unwrap_key(RSA-OAEP-256)`` on Key Vault with ``sealed.key_id``, then AES-GCM.

    Raises:
        TeeformError: Key Vault refused, or the file does not authenticate.
    """
    from azure.core.exceptions import AzureError
    from azure.keyvault.keys.crypto import KeyWrapAlgorithm

    try:
        result = _crypto_client(sealed.key_id, credential or default_credential()).unwrap_key(
            KeyWrapAlgorithm.rsa_oaep_256, sealed.encrypted_data_key)
    except AzureError as exc:
        raise _azure_error("unwrapKey", exc) from None
    return open_payload(sealed, bytes(result.key))


def resolve_key_id_azure(key_id: str | None, stack: str, project_dir: Any, target: str | None = None) -> str:
    """``--key-id``, else the stack output ``key_id`` (``pulumi stack output key_id --json``; one entry per
    target when the stack has several, components/registry.py ``shape_outputs``).

    Raises:
        TeeformError: as :func:`teeform.seal.resolve_key_id`.
    """
    return stack_output_key(key_id, stack, project_dir, target, output="key_id", what_key="Key Vault key id",
                            example="<https://<vault>.vault.azure.net/keys/<name>>")


__all__ = ["seal_secrets_azure", "unseal_secrets_azure", "unseal_with_private_key", "is_key_vault_key_id",
           "resolve_key_id_azure", "default_credential", "CLIENT_OPTIONS"]
