"""CEL writers: the Workload Identity Federation ``attribute_condition`` teeform writes for Confidential Space.

Pure functions (no Pulumi): the builder calls them inside an ``apply`` once the service account's
e-mail is known, and ``tests/test_gcp_cel.py`` parses and evaluates every expression they return with
cel-python against sample token claims.

Grammar: Common Expression Language (github.com/google/cel-spec ``doc/langdef.md``: string literals,
``&&``, ``in`` over lists). Claim names: Confidential Space token claims
(https://cloud.google.com/confidential-computing/confidential-space/docs/reference/token-claims;
``shared/reference/clouds.md`` §3.1): ``swname``, ``dbgstat``, ``google_service_accounts``,
``submods.confidential_space.support_attributes``, ``submods.container.image_digest``. In a provider
condition the token is the variable ``assertion`` (Google's attestation-policy example,
https://cloud.google.com/confidential-computing/confidential-vm/docs/reference/cs-attestation-policies).

The condition is a conjunction, one clause per line of :func:`condition_clauses`; **every** clause must
hold, and the digest clause admits exactly the allowed manifests' digests (one per manifest: a
rollover lists the old and the new build, never anything else).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

#: The software name of Confidential Space images (token claim ``swname``).
SWNAME = "CONFIDENTIAL_SPACE"
#: ``dbgstat`` of a production image ("disabled-since-boot"); debug images report "enabled".
DBGSTAT_PRODUCTION = "disabled-since-boot"
#: ``submods.confidential_space.support_attributes`` values Google documents.
SUPPORT_ATTRIBUTES = ("LATEST", "STABLE", "USABLE", "EXPERIMENTAL")
#: OIDC issuer of the Google Cloud Attestation tokens (provider ``oidc.issuer_uri``).
ISSUER_URI = "https://confidentialcomputing.googleapis.com/"
#: Default audience of those tokens (provider ``oidc.allowed_audiences``).
AUDIENCE = "https://sts.googleapis.com"
#: The provider's ``attribute_mapping``: ``google.subject`` is required by STS (the instance selfLink
#: here); ``attribute.image_digest`` lets IAM name the principal set of one image digest.
ATTRIBUTE_MAPPING = {
    "google.subject": "assertion.sub",
    "attribute.image_digest": "assertion.submods.container.image_digest",
    "attribute.swname": "assertion.swname",
}

_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
#: Service-account e-mail (IAM: ``<account_id>@<project>.iam.gserviceaccount.com``; other Google
#: service agents use other domains, so only the character set is fixed here).
_EMAIL = re.compile(r"^[a-z0-9][a-z0-9._+-]*@[a-z0-9][a-z0-9.-]*\.[a-z]{2,}$")


def cel_string(value: str) -> str:
    """``value`` as a single-quoted CEL string literal (``\\`` and ``'`` escaped; cel-spec langdef.md
    "String and Bytes Values").

    Raises:
        ValueError: ``value`` holds a control character (never needed in a claim teeform pins).
    """
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise ValueError(f"control character in CEL string {value!r}")
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def condition_clauses(*, service_account: str, image_digests: Sequence[str],
                      support_attributes: Sequence[str] = ("STABLE",), production_image: bool = True) -> list[str]:
    """The clauses of the condition, in order (joined with ``&&`` by :func:`attribute_condition`).

    Args:
        service_account: the workload's service-account e-mail (must appear in
            ``assertion.google_service_accounts``).
        image_digests: ``sha256:<64 hex>`` per allowed manifest (deduplicated, order kept).
        support_attributes: each must be in ``support_attributes`` (``STABLE``: an image Google still
            supports with security fixes).
        production_image: require ``dbgstat == 'disabled-since-boot'`` (False only for a debug image
            in a non-production stack; the builder decides).

    Raises:
        ValueError: a malformed digest or e-mail, no digest, or an unknown support attribute.
    """
    digests = list(dict.fromkeys(image_digests))
    if not digests:
        raise ValueError("at least one image digest is required")
    for d in digests:
        if not _DIGEST.match(d):
            raise ValueError(f"image digest must be sha256:<64 lowercase hex>, got {d!r}")
    if not _EMAIL.match(service_account):
        raise ValueError(f"not a service-account e-mail: {service_account!r}")
    for a in support_attributes:
        if a not in SUPPORT_ATTRIBUTES:
            raise ValueError(f"unknown support attribute {a!r}; one of {list(SUPPORT_ATTRIBUTES)}")
    clauses = [f"assertion.swname == {cel_string(SWNAME)}"]
    clauses += [f"{cel_string(a)} in assertion.submods.confidential_space.support_attributes"
                for a in dict.fromkeys(support_attributes)]
    if production_image:
        clauses.append(f"assertion.dbgstat == {cel_string(DBGSTAT_PRODUCTION)}")
    clauses.append(f"{cel_string(service_account)} in assertion.google_service_accounts")
    clauses.append("assertion.submods.container.image_digest in [" + ", ".join(cel_string(d) for d in digests) + "]")
    return clauses


def attribute_condition(**kwargs: object) -> str:
    """The provider's ``attribute_condition``: :func:`condition_clauses` joined with `` && ``."""
    return " && ".join(condition_clauses(**kwargs))  # type: ignore[arg-type]


def principal_set(project_number: str, pool_id: str, image_digest: str) -> str:
    """The IAM principal set of every federated identity whose mapped ``attribute.image_digest`` is
    ``image_digest``: ``principalSet://iam.googleapis.com/projects/<number>/locations/global/
    workloadIdentityPools/<pool>/attribute.image_digest/<digest>`` (IAM "Principal identifiers",
    https://cloud.google.com/iam/docs/principal-identifiers; clouds.md §3.1).

    Raises:
        ValueError: a non-numeric project number or a malformed digest.
    """
    if not project_number.isdigit():
        raise ValueError(f"project number must be digits, got {project_number!r}")
    if not _DIGEST.match(image_digest):
        raise ValueError(f"image digest must be sha256:<64 lowercase hex>, got {image_digest!r}")
    return (f"principalSet://iam.googleapis.com/projects/{project_number}/locations/global/"
            f"workloadIdentityPools/{pool_id}/attribute.image_digest/{image_digest}")


__all__ = ["SWNAME", "DBGSTAT_PRODUCTION", "SUPPORT_ATTRIBUTES", "ISSUER_URI", "AUDIENCE", "ATTRIBUTE_MAPPING",
           "cel_string", "condition_clauses", "attribute_condition", "principal_set"]
