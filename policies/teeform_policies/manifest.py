"""Stack policy: every pinned measurement comes from a manifest the stack loaded.

The Pulumi program registers each manifest it loads as a ``teeform:index:MeasurementManifest``
component whose props (and registered outputs) hold ``{name, kind, path, sha256, measurements}``
(components/measurement_manifest.py). This policy compares every ``kms:RecipientAttestation:*``
value in every key policy of the stack with those measurements, name for name (PCR0 with PCR0,
ImageSha384 with ImageSha384), so a hand-edited or stale hash cannot reach a key policy.

Stack policies run during ``pulumi up`` only, not ``pulumi preview`` (pulumi.md §3.2);
``teeform preview`` runs them offline.
"""

from __future__ import annotations

from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    ReportViolation,
    Severity,
    StackValidationArgs,
    StackValidationPolicy,
)

from teeform_policies import tokens
from teeform_policies.common import label
from teeform_policies.iam import attestation_entries, measurement_name, parse_policy, short, statements


def recorded_measurements(args: StackValidationArgs) -> dict[str, set[str]]:
    """Measurement name -> lowercase values over every MeasurementManifest of the stack."""
    out: dict[str, set[str]] = {}
    for r in args.resources:
        if r.resource_type != tokens.TEEFORM_MEASUREMENT_MANIFEST:
            continue
        for name, value in dict(r.props.get("measurements") or {}).items():
            if isinstance(value, str):
                out.setdefault(str(name), set()).add(value.lower())
    return out


def validate_measurements_match_manifest(args: StackValidationArgs, report: ReportViolation) -> None:
    """See :data:`MEASUREMENTS_MATCH_MANIFEST`."""
    config: dict[str, Any] = dict(args.get_config() or {})
    ignored = {str(k).lower() for k in config.get("ignoredConditionKeys", [])}
    recorded = recorded_measurements(args)
    for r in args.resources:
        if r.resource_type not in tokens.KMS_KEY_POLICY_TYPES:
            continue
        doc, _ = parse_policy(r.props.get("policy"))
        for sid, stmt in statements(doc or {}):
            for _op, key, values in attestation_entries(stmt):
                if key.lower() in ignored:
                    continue
                name = measurement_name(key)
                known = recorded.get(name, set())
                for v in values:
                    if str(v).lower() in known:
                        continue
                    origin = (
                        f"no MeasurementManifest in the stack records {name}"
                        if not known
                        else f"it is not the {name} of any MeasurementManifest in the stack ({len(known)} known)"
                    )
                    report(
                        f"{label(r.resource_type, r.name)}: field 'policy', statement {sid!r}: condition {key} "
                        f"value {short(v)} does not come from a loaded manifest: {origin}. Put the build's manifest "
                        "in teeform:targets[].manifests and let the program fill the key policy; never paste hashes.",
                        r.urn,
                    )


MEASUREMENTS_MATCH_MANIFEST = StackValidationPolicy(
    name="measurements-match-manifest",
    description=(
        "Checks that every kms:RecipientAttestation value in every KMS key policy of the stack equals the same-named "
        "measurement (PCR0, PCR1, PCR2, PCR8, ImageSha384) of a teeform:index:MeasurementManifest the stack loaded."
    ),
    validate=validate_measurements_match_manifest,
    enforcement_level=EnforcementLevel.MANDATORY,
    severity=Severity.CRITICAL,
    config_schema=PolicyConfigSchema(
        properties={
            # e.g. kms:RecipientAttestation:PCR3 (parent role) or PCR4 (instance id): runtime PCRs, not in manifests.
            "ignoredConditionKeys": {"type": "array", "items": {"type": "string"}, "default": []},
        }
    ),
    remediation_steps=(
        "List the manifest of every image the key may be released to in teeform:targets[].manifests "
        "(build it with `teeform build eif`); the program derives the key policy from it."
    ),
    url="https://www.pulumi.com/docs/iac/using-pulumi/crossguard/",
)

POLICIES = (MEASUREMENTS_MATCH_MANIFEST,)
