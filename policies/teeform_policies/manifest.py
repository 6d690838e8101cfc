"""Stack policy (cloud-neutral): every key releases only to measurement sets of its own target's manifests.

The Pulumi program registers each manifest it loads as a ``teeform:index:MeasurementManifest``
component whose props (and registered outputs) hold ``{target, name, kind, path, sha256,
measurements}`` (components/measurement_manifest.py). Keys are read through the ``key-release`` rule
family (:mod:`teeform_policies.release`: one extractor per key service; AWS KMS, GCP Cloud KMS grants, Azure
Key Vault release policies and Trustee registrations; a rule a reader could not read is reported
``NOT CHECKED``, never passed). For every release
rule of every key this policy checks, against the manifests **of the key's own target** (its
``teeform:target`` tag; an untagged key against every manifest of the stack):

1. each pinned value is the same-named measurement of one of those manifests (PCR0 with PCR0,
   ImageSha384 with ImageSha384), so a hand-edited, stale or other target's hash cannot reach a key
   policy; and
2. each combination the rule admits (one value per name; IAM ANDs keys and ORs values) is the
   measurement set of a **single** manifest, so values of different builds are never mixed.

A standalone ``aws:kms/keyPolicy:KeyPolicy`` cannot carry tags (its only inputs are ``keyId``,
``policy`` and ``bypassPolicyLockoutSafetyCheck``; pulumi-aws ``kms.KeyPolicy``), so it is attributed
to the key it attaches to (:func:`attached_key`): the ``aws:kms/key:Key`` of the stack that its
``keyId`` depends on (``property_dependencies``) or names (the key's URN, ``keyId``, ``arn``, or an ARN
ending in its key id), and is checked against *that key's* target. A KeyPolicy whose key is not a
key of this stack (an alias, an imported key, or an id the offline preview does not know) is reported
as ``NOT CHECKED`` by this policy, never passed.

Key services without an extractor are reported by ``policy-coverage`` as "not checked".
Stack policies run during ``pulumi up`` only, not ``pulumi preview`` (pulumi.md §3.2);
``teeform preview`` runs them offline.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping
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
from teeform_policies.families import NOT_CHECKED
from teeform_policies.iam import short
from teeform_policies.release import KEY_RELEASE, TARGET_TAG, ReleaseRule

#: Most combinations one rule may admit before it is refused outright (each is checked).
MAX_COMBINATIONS = 4096

Measurements = dict[str, str]


def measurement_manifests(args: StackValidationArgs) -> Iterator[tuple[Any, str | None, Measurements]]:
    """``(resource, its target or None, {measurement: lowercase hex})`` of every MeasurementManifest of the
    stack, in stack order (string-valued measurements only)."""
    for r in args.resources:
        if r.resource_type != tokens.TEEFORM_MEASUREMENT_MANIFEST:
            continue
        raw = r.props.get("measurements")
        meas = {str(k): v.lower() for k, v in dict(raw).items() if isinstance(v, str)} if isinstance(raw, Mapping) else {}
        target = r.props.get("target")
        yield r, target if isinstance(target, str) else None, meas


def recorded_manifests(args: StackValidationArgs) -> dict[str | None, list[tuple[str, Measurements]]]:
    """Target name -> ``(manifest name, {measurement: lowercase hex})`` of its MeasurementManifests;
    key None holds every manifest of the stack."""
    out: dict[str | None, list[tuple[str, Measurements]]] = {None: []}
    for r, target, meas in measurement_manifests(args):
        entry = (str(r.props.get("name") or r.name), meas)
        out[None].append(entry)
        if target is not None:
            out.setdefault(target, []).append(entry)
    return out


def recorded_measurements(args: StackValidationArgs) -> dict[str, set[str]]:
    """Measurement name -> lowercase values over every MeasurementManifest of the stack."""
    out: dict[str, set[str]] = {}
    for _, meas in recorded_manifests(args)[None]:
        for name, value in meas.items():
            out.setdefault(name, set()).add(value)
    return out


def _target_tag(key: Any) -> str | None:
    """The ``teeform:target`` tag of a key resource (``tags``, else the provider's ``tagsAll``), or None."""
    for field in ("tags", "tagsAll"):
        tags = key.props.get(field)
        if isinstance(tags, Mapping) and isinstance(tags.get(TARGET_TAG), str):
            return str(tags[TARGET_TAG])
    return None


def attached_key(policy: Any, keys: list[Any]) -> Any | None:
    """The ``aws:kms/key:Key`` (of ``keys``) that KeyPolicy ``policy`` attaches to, or None.

    Matched, in order, by the key resources its ``keyId`` property depends on (the analyzer's
    ``property_dependencies``), then by value: ``keyId`` equal to a key's URN, ``keyId``, ``arn`` or
    ``id`` output, or an ARN ``arn:...:key/<id>`` whose ``<id>`` is a key's ``keyId`` (AWS KMS
    developer guide "Key identifiers (KeyId)": key ID, key ARN, alias name, alias ARN). An alias or
    a key outside the stack gives None.
    """
    deps = getattr(policy, "property_dependencies", None) or {}
    by_dep = [d for d in deps.get("keyId", []) or [] if getattr(d, "resource_type", None) == tokens.AWS_KMS_KEY]
    if len(by_dep) == 1:
        return by_dep[0]
    key_id = policy.props.get("keyId")
    if not isinstance(key_id, str) or not key_id:
        return None
    tail = key_id.rsplit(":key/", 1)[1] if ":key/" in key_id else None
    found = []
    for k in keys:
        ids = {k.urn, *(v for f in ("keyId", "arn", "id") if isinstance(v := k.props.get(f), str) and v)}
        if key_id in ids or (tail is not None and tail == k.props.get("keyId")):
            found.append(k)
    return found[0] if len(found) == 1 else None


def _check_rule(rule: ReleaseRule, manifests: list[tuple[str, Measurements]], scope: str, where: str,
                ignored: set[str], report: ReportViolation, urn: str) -> None:
    names = [n for n in rule.values if rule.keys.get(n, n).lower() not in ignored]
    fix = ("Put the build's manifest in teeform:targets[].manifests and let the program fill the key policy; never "
           "paste hashes.")
    bad_value = False
    for name in names:
        known = {m[name] for _, m in manifests if name in m}
        for v in rule.values[name]:
            if v in known:
                continue
            bad_value = True
            origin = (f"no MeasurementManifest of {scope} records {name}" if not known
                      else f"it is not the {name} of any MeasurementManifest of {scope} ({len(known)} known)")
            report(f"{where}: {rule.where}: condition {rule.keys.get(name, name)} value {short(v)} does not come from a "
                   f"loaded manifest: {origin}. {fix}", urn)
    if bad_value or not names:
        return
    sizes = [len(rule.values[n]) for n in names]
    total = 1
    for n in sizes:
        total *= n
    if total > MAX_COMBINATIONS:
        report(f"{where}: {rule.where} admits {total} combinations of measurement values (over {MAX_COMBINATIONS}); "
               "write one statement per allowed manifest, each with one value per condition key.", urn)
        return
    for combo in itertools.product(*(rule.values[n] for n in names)):
        if any(all(m.get(n) == v for n, v in zip(names, combo, strict=True)) for _, m in manifests):
            continue
        shown = ", ".join(f"{n}={short(v)}" for n, v in zip(names, combo, strict=True))
        report(f"{where}: {rule.where} admits the combination ({shown}), which no single MeasurementManifest of {scope} "
               "records: it mixes measurements of different builds. Write one statement per allowed manifest, each "
               "with one value per condition key (components/aws/attested_key.py does).", urn)
        return  # one combination is enough to show the rule is wrong


def validate_measurements_match_manifest(args: StackValidationArgs, report: ReportViolation) -> None:
    """See :data:`MEASUREMENTS_MATCH_MANIFEST`."""
    config: dict[str, Any] = dict(args.get_config() or {})
    ignored = {str(k).lower() for k in config.get("ignoredConditionKeys", [])}
    by_target = recorded_manifests(args)
    keys = [r for r in args.resources if r.resource_type == tokens.AWS_KMS_KEY]
    for r in args.resources:
        if not KEY_RELEASE.claims(r.resource_type):
            continue
        where = label(r.resource_type, r.name)
        rules = KEY_RELEASE.extract(r.resource_type, r.props)
        if r.resource_type == tokens.AWS_KMS_KEY_POLICY and rules:
            key = attached_key(r, keys)
            if key is None:
                report(f"{NOT_CHECKED}: {where} attaches to key {r.props.get('keyId')!r}, which is not an "
                       f"{tokens.AWS_KMS_KEY} of this stack, so its {len(rules)} release rule(s) cannot be checked "
                       "against the manifests of that key's target (a KeyPolicy cannot carry the 'teeform:target' "
                       "tag). Set the policy on the key itself (aws.kms.Key(policy=...)), or pass that key's "
                       "key_id/arn output as keyId.", r.urn)
                continue
            target = _target_tag(key)
            where = f"{where} (policy of {label(key.resource_type, key.name)})"
            rules = [ReleaseRule(x.where, x.values, x.keys, target) for x in rules]
        for rule in rules:
            if rule.unchecked:  # a rule the key-release reader could not read (release.py): never passed
                report(f"{NOT_CHECKED}: {where}: {rule.where}: {rule.unchecked}, so its release rule was not checked "
                       "against the manifests. Review it by hand.", r.urn)
                continue
            if rule.target is None:
                manifests, scope = by_target[None], "the stack"
            elif rule.target in by_target:
                manifests, scope = by_target[rule.target], f"target {rule.target!r}"
            else:
                report(f"{where}: tag 'teeform:target' is {rule.target!r}, but no MeasurementManifest of that target is "
                       f"in the stack (targets: {sorted(t for t in by_target if t)}); the key cannot be checked against "
                       "its target's manifests.", r.urn)
                break
            _check_rule(rule, manifests, scope, where, ignored, report, r.urn)


MEASUREMENTS_MATCH_MANIFEST = StackValidationPolicy(
    name="measurements-match-manifest",
    description=(
        "Checks that every key-release rule (AWS KMS key-policy statements today) admits only measurement sets of "
        "single teeform:index:MeasurementManifests of the key's own target (tag teeform:target): every pinned value "
        "is that target's same-named measurement (PCR0, PCR1, PCR2, PCR8, ImageSha384), and no combination mixes "
        "values of different builds. A standalone aws:kms/keyPolicy:KeyPolicy is checked against the target of the "
        "key it attaches to, and reported as NOT CHECKED when that key is not in the stack."
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
