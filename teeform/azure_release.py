"""Azure Key Vault / Managed HSM Secure Key Release (SKR) policies: the document teeform writes and its encoding.

What the policy is (``shared/reference/clouds.md`` §2.4, grammar from
https://learn.microsoft.com/azure/key-vault/keys/policy-grammar)::

    {"version": "1.0.0",
     "anyOf": [{"authority": "<attestation authority: the MAA token's iss>",
                "allOf": [{"claim": "x-ms-isolation-tee.x-ms-attestation-type", "equals": "sevsnpvm"},
                          {"claim": "x-ms-isolation-tee.x-ms-compliance-status", "equals": "azure-compliant-cvm"}]}]}

* ``authority`` is the issuer (``iss``) of the Microsoft Azure Attestation (MAA) token Key Vault
  accepts (an ``https://<provider>.<region>.attest.azure.net`` endpoint; "AKV only understands MAA
  today", https://learn.microsoft.com/azure/confidential-computing/concept-skr-attestation).
* The two claims are the **nested** ``x-ms-isolation-tee`` claims of a guest-attestation
  (AzureGuest) token (clouds.md §2.2 table "x-ms-isolation-tee object", from the
  ``sampleAttestationToken.json`` of Azure/confidential-computing-cvm-guest-attestation): the TEE
  type is ``sevsnpvm`` (AMD SEV-SNP) or ``tdxvm`` (Intel TDX), the compliance status
  ``azure-compliant-cvm``.
* Only ``equals`` is implemented by Key Vault (policy-grammar page), so that is all teeform writes.

**What it pins: the platform, not the image.** The claims say "a genuine Azure confidential VM of
this TEE type, in compliance"; the MAA default token carries no PCR digest (clouds.md §2.2, §2.4
"What SKR can pin"), so *any* compliant CVM of that type whose token comes from ``authority`` can
have the key released. Pinning teeform's PCR 4/11 needs a Trustee target (clouds.md §2.6 option C).

Encoding (:func:`encode_policy`): the ARM/Pulumi ``release_policy.data`` and the data-plane
``KeyReleasePolicy.encoded_policy`` wire field ``data`` are base64url **without padding** of the
policy's UTF-8 JSON bytes (azure-keyvault-keys 4.11.3 ``_generated/models/_models.py``:
``encoded_policy = rest_field(name="data", format="base64url")``; ARM spec
``Microsoft.KeyVault/stable/2023-07-01/keys.json`` ``KeyReleasePolicy.data`` ``format: base64url``).
``tests/test_azure_release.py`` checks the bytes against the SDK's own serializer.

Pure: no I/O, no Azure SDK import.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from typing import Any

from teeform.errors import TeeformError
from teeform.safeload import loads_json

#: Policy-grammar version teeform writes (the only one the grammar page defines).
POLICY_VERSION = "1.0.0"
#: Nested guest-attestation claim of the TEE type (clouds.md §2.2).
CLAIM_TEE_TYPE = "x-ms-isolation-tee.x-ms-attestation-type"
#: Nested guest-attestation claim of the platform's compliance status (clouds.md §2.2).
CLAIM_COMPLIANCE = "x-ms-isolation-tee.x-ms-compliance-status"
#: The compliance value of a confidential VM Azure considers compliant (clouds.md §2.2).
COMPLIANT_CVM = "azure-compliant-cvm"
#: teeform TEE type -> value of :data:`CLAIM_TEE_TYPE` (clouds.md §2.2).
TEE_CLAIM_VALUE: Mapping[str, str] = {"sev-snp": "sevsnpvm", "tdx": "tdxvm"}
#: ``release_policy.content_type`` (the SDK default, azure-keyvault-keys ``KeyReleasePolicy``; ARM
#: spec default ``application/json; charset=utf-8``).
CONTENT_TYPE = "application/json; charset=utf-8"

#: An MAA endpoint: ``https://<name>.<region code>.attest.azure.net`` (no path, query or port).
_AUTHORITY = re.compile(r"^https://[a-z0-9][a-z0-9-]{0,62}(\.[a-z0-9][a-z0-9-]{0,62})*\.attest\.azure\.net/?$")

#: What the platform-only gate pins, said next to every Azure key (plug-in ``gate``, outputs, preview).
GATE_PINS = ("this gate pins the platform (a genuine Azure confidential VM, its TEE type and compliance status, "
             "attested by the configured authority), not the image: any compliant CVM of that TEE type can "
             "obtain the key; to pin our image (PCR 11), attach the Trustee key broker (keyBroker:, docs/trustee.md)")


def check_authority(authority: str, *, field: str = "attestation.authority") -> str:
    """Return ``authority`` without a trailing ``/`` if it is an MAA endpoint, else raise.

    Args:
        authority: e.g. ``https://sharedeus.eus.attest.azure.net`` (a shared provider) or the
            ``attest_uri`` of an ``AttestationProvider``.
        field: the config field named in the error.

    Raises:
        TeeformError: not ``https://<host>.attest.azure.net`` (lowercase host, no path/port/query).
    """
    if not isinstance(authority, str) or not _AUTHORITY.match(authority):
        raise TeeformError(
            f"must be a Microsoft Azure Attestation endpoint https://<provider>.<region>.attest.azure.net, got {authority!r}",
            field=field,
            hint="Key Vault secure key release only trusts MAA tokens; use e.g. https://sharedeus.eus.attest.azure.net "
                 "or your attestation provider's attest_uri",
        )
    return authority.rstrip("/")


def release_policy(authority: str, tee: str) -> dict[str, Any]:
    """The SKR policy document releasing a key to a compliant CVM of ``tee`` attested by ``authority``.

    Args:
        authority: MAA endpoint (checked with :func:`check_authority`).
        tee: ``sev-snp`` or ``tdx``.

    Returns:
        ``{"version": "1.0.0", "anyOf": [{"authority": ..., "allOf": [tee-type claim, compliance claim]}]}``.

    Raises:
        TeeformError: bad authority, or a TEE type without an Azure claim value.
    """
    value = TEE_CLAIM_VALUE.get(tee)
    if value is None:
        raise TeeformError(f"Azure secure key release has no TEE-type claim for {tee!r}; "
                           f"supported: {sorted(TEE_CLAIM_VALUE)}", field="tee")
    return {
        "version": POLICY_VERSION,
        "anyOf": [{
            "authority": check_authority(authority),
            "allOf": [
                {"claim": CLAIM_TEE_TYPE, "equals": value},
                {"claim": CLAIM_COMPLIANCE, "equals": COMPLIANT_CVM},
            ],
        }],
    }


def policy_bytes(policy: Mapping[str, Any]) -> bytes:
    """The policy as compact UTF-8 JSON (``separators=(",", ":")``, key order as given, non-ASCII kept)."""
    return json.dumps(policy, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def encode_policy(data: bytes) -> str:
    """base64url (RFC 4648 §5) of ``data`` with the ``=`` padding removed: the ``release_policy.data`` string."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def decode_policy(data: str, *, field: str = "release_policy.data") -> dict[str, Any]:
    """Inverse of ``encode_policy(policy_bytes(...))``: the policy document of an encoded ``data`` string.

    Padded or unpadded base64url is accepted (standard ``+/`` base64 is refused).

    Raises:
        TeeformError: not base64url, not UTF-8 JSON, or not a JSON object.
    """
    if not isinstance(data, str) or not re.fullmatch(r"[A-Za-z0-9_-]*={0,2}", data):
        raise TeeformError("is not base64url", field=field)
    try:
        raw = base64.urlsafe_b64decode(data.rstrip("=") + "=" * (-len(data.rstrip("=")) % 4))
        # bounded (depth, numbers, duplicate keys): the policy may come from a hostile preview document
        doc = loads_json(raw.decode("utf-8"), source=field)
    except (binascii.Error, ValueError) as exc:
        raise TeeformError(f"does not decode to a JSON policy: {exc}", field=field) from None
    except TeeformError as exc:
        raise TeeformError(f"does not decode to a JSON policy: {exc.message}", field=field) from None
    if not isinstance(doc, dict):
        raise TeeformError("does not decode to a JSON object", field=field)
    return doc


def encoded_release_policy(authority: str, tee: str) -> str:
    """``encode_policy(policy_bytes(release_policy(authority, tee)))``."""
    return encode_policy(policy_bytes(release_policy(authority, tee)))


__all__ = ["POLICY_VERSION", "CLAIM_TEE_TYPE", "CLAIM_COMPLIANCE", "COMPLIANT_CVM", "TEE_CLAIM_VALUE", "CONTENT_TYPE",
           "GATE_PINS", "check_authority", "release_policy", "policy_bytes", "encode_policy", "decode_policy",
           "encoded_release_policy"]
