"""The ``key-release`` rule family: which measurement combinations a key service would release to.

The neutral view is a :class:`ReleaseRule`: one place in a key's policy (for AWS KMS, one key-policy
statement) with, per measurement name, the values it accepts. A rule admits every combination of
one value per name (the cross product), because IAM ANDs the condition keys of a statement and ORs
the values of one key (IAM JSON policy element reference, "Condition"); teeform's own keys carry
one value per key and one statement per allowed manifest, so their combinations are exactly the
manifests' measurement sets.

Extractors: AWS ``aws.kms.Key`` / ``aws.kms.KeyPolicy`` (the ``policy`` document's
``kms:RecipientAttestation:*`` conditions, AWS KMS developer guide "conditions-nitro-enclave").
Alibaba KMS keys and the classic ``azure:keyvault/*`` types are in scope but have no extractor yet, so
``policy-coverage`` reports them as "not checked".

Azure Key Vault (issue 10, :func:`_azure_key`): an ``azure-native:keyvault:Key``'s
``properties.releasePolicy.data`` (base64url JSON, Key Vault "policy-grammar") is decoded and each
authority group becomes one rule. Its claims are checked: the TEE-type and compliance claims of the
MAA token (clouds.md §2.2, §2.4) pin **the platform** and no manifest measurement, so the rule has no
values (:attr:`ReleaseRule.platform` holds them); a claim teeform cannot map, an operator other than
``equals`` (the only one Key Vault implements) or an undecodable policy makes the rule
:attr:`ReleaseRule.unchecked`, and ``measurements-match-manifest`` reports it ``NOT CHECKED``.

Trustee (issue 11, :func:`_trustee`): a ``KbsRegistration``'s RVPS sample message is decoded; each
set ``teeform.<target>.<set>.<claim>`` becomes one rule pinning the claims' teeform measurements
(``pcr11`` -> ``pcr11_sha256``, ``uki`` -> ``uki_authenticode_sha384``, ``rtmr_1`` -> ``rtmr1``, ...;
copy checked in tests/test_trustee_policies.py), for the registration's own ``target``; ``mr_td`` (the
cloud's firmware, from config) is a platform value. Ids it cannot read make the rule unchecked.

GCP Cloud KMS (issue 9): each ``kms.CryptoKeyIAMMember`` decrypt grant to the principal set of one
container image digest (``.../attribute.image_digest/sha256:<hex>``) is a rule pinning ``image_digest``;
key rings and keys are claimed and release nothing themselves. Grants carry no labels, so they are
checked against every manifest of the stack.

The target a key belongs to is read from its ``teeform:target`` tag (``components/aws/nitro.py``
sets it on every key it creates).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from teeform_policies import tokens
from teeform_policies.aws_vm import measurement_for
from teeform_policies.families import Family
from teeform_policies.iam import as_list, attestation_entries, measurement_name, parse_policy, statements

#: Tag naming the target whose manifests a key pins (components/measurement_manifest.py TARGET_TAG).
TARGET_TAG = "teeform:target"


@dataclass(frozen=True)
class ReleaseRule:
    """One release rule of a key.

    Attributes:
        where: ``"field 'policy', statement 'EnclaveRelease1'"`` (for messages).
        values: measurement name -> accepted values (lowercase), in document order.
        keys: measurement name -> the condition key as written (for messages).
        target: the target named by the key's ``teeform:target`` tag, or None.
        platform: claims that pin the platform, not a manifest measurement (claim -> accepted values);
            informational, nothing to compare with manifests.
        unchecked: why the rule could not be read (then ``measurements-match-manifest`` reports it
            ``NOT CHECKED`` instead of passing it), or None.
    """

    where: str
    values: Mapping[str, tuple[str, ...]]
    keys: Mapping[str, str] = field(default_factory=dict)
    target: str | None = None
    platform: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    unchecked: str | None = None


def _aws_kms(resource_type: str, props: Mapping[str, Any]) -> list[ReleaseRule]:
    doc, _ = parse_policy(props.get("policy"))
    tags = props.get("tags") if resource_type == tokens.AWS_KMS_KEY else None
    target = tags.get(TARGET_TAG) if isinstance(tags, Mapping) and isinstance(tags.get(TARGET_TAG), str) else None
    rules = []
    for sid, stmt in statements(doc or {}):
        values: dict[str, list[str]] = {}
        keys: dict[str, str] = {}
        for _op, key, vals in attestation_entries(stmt):
            # NitroTPM keys pin the manifest's SHA-384 PCR predictions (aws_vm.NITROTPM_MEASUREMENTS).
            name = measurement_for(key) or measurement_name(key)
            keys.setdefault(name, key)
            bucket = values.setdefault(name, [])
            bucket += [str(v).lower() for v in vals if str(v).lower() not in bucket]
        if values:
            rules.append(ReleaseRule(f"field 'policy', statement {sid!r}", {k: tuple(v) for k, v in values.items()}, keys, target))
    return rules


#: A Cloud KMS grant to the federated principal set of one container image digest (components/gcp/cel.py
#: principal_set; IAM "Principal identifiers").
_GCP_DIGEST_SET = re.compile(r"^principalSet://iam\.googleapis\.com/projects/[0-9]+/locations/global/"
                             r"workloadIdentityPools/[^/]+/attribute\.image_digest/sha256:([0-9a-fA-F]{64})$")
_GCP_DECRYPT_ROLES = ("roles/cloudkms.cryptoKeyDecrypter", "roles/cloudkms.cryptoKeyEncrypterDecrypter")


def _gcp_kms(resource_type: str, props: Mapping[str, Any]) -> list[ReleaseRule]:
    """GCP Cloud KMS: a ``CryptoKeyIAMMember`` decrypt grant to ``.../attribute.image_digest/sha256:<hex>`` is
    one rule pinning ``image_digest`` (the Confidential Space gate, clouds.md §3.1); a decrypt grant to any
    other member (a service account, ``allUsers``, a whole pool) is an unchecked rule; key rings and keys
    release nothing by themselves (claimed, no rules). Grants carry no labels: checked against the stack."""
    if resource_type != tokens.GCP_KMS_CRYPTO_KEY_IAM_MEMBER or props.get("role") not in _GCP_DECRYPT_ROLES:
        return []
    member = str(props.get("member") or "")
    m = _GCP_DIGEST_SET.match(member)
    if not m:  # a decrypt grant that needs no attestation of an image digest: never passed silently
        return [ReleaseRule("field 'member'", {}, unchecked=f"decrypt grant to {member!r}, which is not the principal "
                            "set of one image digest (.../attribute.image_digest/sha256:<hex>): it needs no attestation")]
    return [ReleaseRule("field 'member'", {"image_digest": (m.group(1).lower(),)}, {"image_digest": "attribute.image_digest"})]


#: MAA token claims an SKR policy may test that pin the platform (clouds.md §2.2 "x-ms-isolation-tee object",
#: §2.4 "Claim paths": nested in guest-attestation tokens, top-level in SevSnpVm-type tokens).
AZURE_PLATFORM_CLAIMS = ("x-ms-isolation-tee.x-ms-attestation-type", "x-ms-attestation-type",
                         "x-ms-isolation-tee.x-ms-compliance-status", "x-ms-compliance-status")


def _azure_key(resource_type: str, props: Mapping[str, Any]) -> list[ReleaseRule]:
    """Azure Key Vault key: one rule per authority group of its release policy (module docstring).

    No ``releasePolicy`` (the key is not released by attestation) or a policy without authority groups
    gives no rule; ``azure-key-release-requires-attestation`` judges those.
    """
    from teeform_policies.azure import decode_release_policy

    p = props.get("properties")
    p = p if isinstance(p, Mapping) else {}
    rp = p.get("releasePolicy")
    data = rp.get("data") if isinstance(rp, Mapping) else None
    if data is None:
        return []
    tags = props.get("tags")
    target = tags.get(TARGET_TAG) if isinstance(tags, Mapping) and isinstance(tags.get(TARGET_TAG), str) else None
    doc = decode_release_policy(data)
    if doc is None:
        return [ReleaseRule("field 'properties.releasePolicy.data'", {}, target=target,
                            unchecked="the release policy is not base64url-encoded JSON")]
    groups = [g for g in as_list(doc.get("anyOf")) + as_list(doc.get("allOf")) if isinstance(g, Mapping)]
    rules = []
    for n, g in enumerate(groups):
        where = f"field 'properties.releasePolicy.data', authority group {n} ({g.get('authority')!r})"
        platform: dict[str, list[str]] = {}
        problems = []
        for c in as_list(g.get("allOf")) + as_list(g.get("anyOf")):
            if not isinstance(c, Mapping):
                problems.append(f"condition {c!r} is not an object")
                continue
            claim, ops = c.get("claim"), sorted(k for k in c if k != "claim")
            if ops != ["equals"]:
                problems.append(f"claim {claim!r} uses {ops}, not 'equals' (the only operator Key Vault implements)")
            elif claim not in AZURE_PLATFORM_CLAIMS:
                problems.append(f"claim {claim!r} is not one teeform maps to a platform claim or a manifest measurement")
            else:
                platform.setdefault(str(claim), []).append(str(c["equals"]))
        rules.append(ReleaseRule(where, {}, target=target, platform={k: tuple(v) for k, v in platform.items()},
                                 unchecked="; ".join(problems) or None))
    return rules


def _trustee(resource_type: str, props: Mapping[str, Any]) -> list[ReleaseRule]:
    """Trustee ``KbsRegistration``: one rule per reference-value set, for the registration's target."""
    from teeform_policies.trustee import read_registration

    reg = read_registration(props)
    if reg is None:
        target = props.get("target")
        return [ReleaseRule("field 'rvps_message'", {}, target=target if isinstance(target, str) else None,
                            unchecked="no target, known verifier or decodable RVPS sample message")]
    target, verifier, entries = reg
    sets: dict[str, dict[str, tuple[str, ...]]] = {}
    keys: dict[str, dict[str, str]] = {}
    platform: dict[str, tuple[str, ...]] = {}
    bad = []
    for e in entries:
        vals = e.strings()
        if e.kind == "platform" and vals is not None:
            platform["mr_td"] = vals
        elif e.kind != "set" or vals is None:
            bad.append(e.rv_id)
        else:
            assert e.set_id is not None and e.measurement is not None  # kind "set"
            sets.setdefault(e.set_id, {})[e.measurement] = vals
            keys.setdefault(e.set_id, {})[e.measurement] = e.rv_id
    rules = [ReleaseRule(f"reference-value set {sid}", vals, keys[sid], target, platform)
             for sid, vals in sorted(sets.items())]
    if bad:
        rules.append(ReleaseRule("field 'rvps_message'", {}, target=target,
                                 unchecked=f"reference values {sorted(bad)} are not teeform {verifier} set values"))
    return rules


KEY_RELEASE = Family[ReleaseRule](
    id="key-release",
    policies=("measurements-match-manifest",),
    # Key services of the four clouds; type names with Key/Grant/Policy/IAM (not aliases or secrets).
    scope=re.compile(r"^(aws:kms/[^:]*:|azure-native:keyvault:|azure:keyvault/[^:]*:|gcp:kms/[^:]*:|alicloud:kms/[^:]*:)"
                     r"\w*(Key|Grant|Policy|IAM)\w*$"),
    extractors={tokens.AWS_KMS_KEY: _aws_kms, tokens.AWS_KMS_KEY_POLICY: _aws_kms,
                tokens.GCP_KMS_CRYPTO_KEY: _gcp_kms, tokens.GCP_KMS_KEY_RING: _gcp_kms,
                tokens.GCP_KMS_CRYPTO_KEY_IAM_MEMBER: _gcp_kms,
                tokens.AZURE_KEYVAULT_KEY: _azure_key, tokens.TRUSTEE_KBS_REGISTRATION: _trustee},
)

__all__ = ["KEY_RELEASE", "ReleaseRule", "TARGET_TAG", "AZURE_PLATFORM_CLAIMS"]
