"""The ``key-release`` rule family: which measurement combinations a key service would release to.

The neutral view is a :class:`ReleaseRule`: one place in a key's policy (for AWS KMS, one key-policy
statement) with, per measurement name, the values it accepts. A rule admits every combination of
one value per name (the cross product), because IAM ANDs the condition keys of a statement and ORs
the values of one key (IAM JSON policy element reference, "Condition"); teeform's own keys carry
one value per key and one statement per allowed manifest, so their combinations are exactly the
manifests' measurement sets.

Extractors: AWS ``aws.kms.Key`` / ``aws.kms.KeyPolicy`` (the ``policy`` document's
``kms:RecipientAttestation:*`` conditions, AWS KMS developer guide "conditions-nitro-enclave").
The key services of the other clouds (Azure Key Vault keys with a release policy, GCP Cloud KMS
keys, Alibaba KMS keys) are in scope but have no extractor yet, so ``policy-coverage`` reports
them as "not checked".

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
from teeform_policies.iam import attestation_entries, measurement_name, parse_policy, statements

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
    """

    where: str
    values: Mapping[str, tuple[str, ...]]
    keys: Mapping[str, str] = field(default_factory=dict)
    target: str | None = None


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


KEY_RELEASE = Family[ReleaseRule](
    id="key-release",
    policies=("measurements-match-manifest",),
    # Key services of the four clouds; type names with Key/Grant/Policy/IAM (not aliases or secrets).
    scope=re.compile(r"^(aws:kms/[^:]*:|azure-native:keyvault:|azure:keyvault/[^:]*:|gcp:kms/[^:]*:|alicloud:kms/[^:]*:)"
                     r"\w*(Key|Grant|Policy|IAM)\w*$"),
    extractors={tokens.AWS_KMS_KEY: _aws_kms, tokens.AWS_KMS_KEY_POLICY: _aws_kms},
)

__all__ = ["KEY_RELEASE", "ReleaseRule", "TARGET_TAG"]
