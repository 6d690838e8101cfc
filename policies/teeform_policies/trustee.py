"""Trustee key-broker policies: what a ``KbsRegistration`` would write into a KBS matches the manifests.

A ``pulumi-python:dynamic/trustee:KbsRegistration`` (components/trustee/provider.py) carries, as
inputs, the RVPS ``sample`` message (``rvps_message``: ``{"version", "type", "payload": base64 JSON}``),
the attestation-service policy and the KBS resource policy (Rego text) of one target
(``target``). Both policies are pure-standard-library checks of those inputs:

* ``trustee-reference-values-match-manifest`` (stack, mandatory): every reference value
  ``teeform.<target>.<set>.<claim>`` is the same-named measurement of one manifest of **its own
  target** (the ``teeform:index:MeasurementManifest`` resources), all values of one set come from a
  **single** manifest (no mix of two builds), the resource policy's inline values of each set are
  that set's values, and the attestation policy has a rule for each set;
* ``trustee-policy-refuses-debug`` (resource, mandatory): in the attestation policy every rule that
  grants an affirming ``configuration`` (2..31, AR4SI) requires a non-debug guest
  (``td_attributes.debug == false`` for TDX quotes, ``policy_debug_allowed == "false"`` for SEV-SNP),
  no ``default configuration`` is affirming, and every ``allow`` rule of the resource policy repeats
  the check.

Claim -> manifest measurement: :data:`CLAIMS` (a copy of ``teeform.trustee.reference_values.CLAIMS``;
``tests/test_trustee_policies.py`` checks the copy). Sources: clouds.md §4.3, Trustee's claim shapes
(cited in ``teeform/trustee/reference_values.py``).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    Severity,
    StackValidationArgs,
    StackValidationPolicy,
)

from teeform_policies import tokens
from teeform_policies.common import ReportViolation, label
from teeform_policies.families import NOT_CHECKED
from teeform_policies.manifest import recorded_manifests

#: Trustee claim -> teeform measurement, per verifier (copy of teeform.trustee.reference_values.CLAIMS).
CLAIMS: dict[str, dict[str, str]] = {
    "tdx": {"uki": "uki_authenticode_sha384", "rtmr_1": "rtmr1", "rtmr_2": "rtmr2"},
    "az-tdx-vtpm": {"pcr11": "pcr11_sha256"},
    "az-snp-vtpm": {"pcr11": "pcr11_sha256"},
}
#: The debug check each verifier's rules must contain (teeform.trustee.rego).
DEBUG_CHECKS = {"tdx": "td_attributes.debug == false", "az-tdx-vtpm": "td_attributes.debug == false",
                "az-snp-vtpm": 'policy_debug_allowed == "false"'}

_RV_ID = re.compile(r"^teeform\.(?P<target>[a-z][a-z0-9-]*)\.(?P<set>m[0-9a-f]{12})\.(?P<claim>[a-z0-9_]+)$")
_HEX_LIT = re.compile(r'"([0-9a-f]{64}|[0-9a-f]{96})"')
#: any head of a rule called ``name`` (not ``default name := ...``), however it is laid out
_ANY_HEAD = r"(?m)^\s*{name}\b"
_RULE_HEAD = re.compile(r"^(?P<name>[A-Za-z_][A-Za-z0-9_]*(?:\([^)]*\))?|else)\s*(?::=|=)?\s*(?P<value>-?\d+|true)?\s*if\s*\{\s*$")


def decode_payload(props: Mapping[str, Any]) -> dict[str, Any] | None:
    """The sample provenance of a KbsRegistration's ``rvps_message``, or None when absent/undecodable."""
    msg = props.get("rvps_message")
    if not isinstance(msg, Mapping) or msg.get("type") != "sample" or not isinstance(msg.get("payload"), str):
        return None
    try:
        data = json.loads(base64.b64decode(msg["payload"], validate=True))
    except (ValueError, binascii.Error):
        return None
    return data if isinstance(data, dict) else None


@dataclass(frozen=True)
class ReferenceValue:
    """One entry ``rv_id: values`` of a registration's RVPS sample payload, classified for ``target`` and
    ``verifier`` (:func:`read_registration`).

    Attributes:
        rv_id: the reference-value id as registered.
        values: its values as registered (any JSON value).
        kind: ``platform`` (``teeform.<target>.mr_td``: the cloud's firmware, from config; no manifest value),
            ``set`` (``teeform.<target>.<set>.<claim>`` of a claim teeform pins for ``verifier``), ``foreign``
            (not an id of ``target``'s sets) or ``claim`` (a claim teeform does not pin for ``verifier``).
        set_id: the set (``m`` + 12 hex) of a ``set`` or ``claim`` entry, else None.
        claim: the Trustee claim of a ``set`` or ``claim`` entry (``uki``, ``pcr11``, ...), else None.
        measurement: the teeform measurement of a ``set`` entry (:data:`CLAIMS`), else None.
    """

    rv_id: str
    values: Any
    kind: str
    set_id: str | None = None
    claim: str | None = None
    measurement: str | None = None

    def strings(self) -> tuple[str, ...] | None:
        """The values, lowercase, when they are a list of strings (any length), else None."""
        if not isinstance(self.values, list) or not all(isinstance(v, str) for v in self.values):
            return None
        return tuple(v.lower() for v in self.values)


def read_registration(props: Mapping[str, Any]) -> tuple[str, str, list[ReferenceValue]] | None:
    """``(target, verifier, the payload's reference values in message order)`` of a KbsRegistration; None
    when ``target`` is not a string, ``verifier`` has no :data:`CLAIMS` entry or the RVPS sample message does
    not decode (:func:`decode_payload`). The one reader of the payload, for
    ``trustee-reference-values-match-manifest`` and for the ``key-release`` family (release.py ``_trustee``)."""
    target, verifier = props.get("target"), props.get("verifier")
    prov = decode_payload(props)
    if not isinstance(target, str) or not isinstance(verifier, str) or verifier not in CLAIMS or prov is None:
        return None
    out = []
    for rv_id, values in prov.items():
        rv_id = str(rv_id)
        if rv_id == f"teeform.{target}.mr_td":
            out.append(ReferenceValue(rv_id, values, "platform"))
            continue
        m = _RV_ID.match(rv_id)
        if not m or m.group("target") != target:
            out.append(ReferenceValue(rv_id, values, "foreign"))
            continue
        claim = m.group("claim")
        measurement = CLAIMS[verifier].get(claim)
        out.append(ReferenceValue(rv_id, values, "set" if measurement else "claim", m.group("set"), claim, measurement))
    return target, verifier, out


def rule_bodies(rego: str) -> list[tuple[str, str | None, str]]:
    """``(rule name, value, body)`` of every ``name [:=] value if { ... }`` block (``else`` blocks take
    the name of the rule they continue). Brace-counted, line-based: the generated policies' layout."""
    out: list[tuple[str, str | None, str]] = []
    lines = rego.splitlines()
    i, last = 0, ""
    while i < len(lines):
        m = _RULE_HEAD.match(lines[i].strip())
        if not m:
            i += 1
            continue
        name = m.group("name")
        name = last if name == "else" else name.split("(")[0]
        last = name
        depth, body = 1, []
        i += 1
        while i < len(lines) and depth:
            depth += lines[i].count("{") - lines[i].count("}")
            if depth:
                body.append(lines[i])
            i += 1
        out.append((name, m.group("value"), "\n".join(body)))
    return out


def set_blocks(rego: str) -> dict[str, str]:
    """Set id -> body of ``teeform_set_<id>(ev) if {...}``."""
    return {n[len("teeform_set_"):]: b for n, _, b in rule_bodies(rego) if n.startswith("teeform_set_")}


def validate_reference_values(args: StackValidationArgs, report: ReportViolation) -> None:
    """See :data:`REFERENCE_VALUES_MATCH_MANIFEST`."""
    manifests = recorded_manifests(args)
    for r in args.resources:
        if r.resource_type != tokens.TRUSTEE_KBS_REGISTRATION:
            continue
        where = label(r.resource_type, r.name)
        reg = read_registration(r.props)
        if reg is None:
            report(f"{where}: {NOT_CHECKED}: no target, verifier or decodable RVPS sample message", r.urn)
            continue
        target, verifier, entries = reg
        own = manifests.get(target, [])
        if not own:
            report(f"{where}: target {target!r} registers reference values but has no MeasurementManifest", r.urn)
            continue
        sets: dict[str, dict[str, str]] = {}
        for e in entries:
            if e.kind == "platform":
                continue  # the platform's firmware, from config: no manifest value
            if e.kind == "foreign":
                report(f"{where}: reference value {e.rv_id!r} is not one of target {target!r}'s", r.urn)
                continue
            if e.kind == "claim":
                report(f"{where}: reference value {e.rv_id!r}: {e.claim!r} is not a {verifier} claim teeform pins", r.urn)
                continue
            vals = e.strings()
            if vals is None or len(vals) != 1:
                report(f"{where}: reference value {e.rv_id!r} must hold exactly one value (one manifest), "
                       f"got {e.values!r}", r.urn)
                continue
            assert e.set_id is not None and e.measurement is not None  # kind "set"
            sets.setdefault(e.set_id, {})[e.measurement] = vals[0]
        for set_id, values in sorted(sets.items()):
            if not any(all(meas.get(k) == v for k, v in values.items()) for _, meas in own):
                for name, v in values.items():
                    if not any(meas.get(name) == v for _, meas in own):
                        report(f"{where}: set {set_id}: {name} {v} is not a measurement of any manifest of target "
                               f"{target!r}", r.urn)
                        break
                else:
                    report(f"{where}: set {set_id} mixes values of different manifests of target {target!r} "
                           f"({', '.join(sorted(values))}); one set must be one manifest", r.urn)
        for field in ("attestation_policy", "resource_policy"):
            text = r.props.get(field)
            if not isinstance(text, str):
                report(f"{where}: {NOT_CHECKED}: {field} is not known", r.urn)
                continue
            blocks = set_blocks(text)
            if set(blocks) != set(sets):
                report(f"{where}: {field} has rules for sets {sorted(blocks)}, the reference values are sets "
                       f"{sorted(sets)}", r.urn)
            if field == "resource_policy":
                for set_id, body in blocks.items():
                    inline = set(_HEX_LIT.findall(body))
                    if set_id in sets and inline != set(sets[set_id].values()):
                        report(f"{where}: resource_policy set {set_id} pins {sorted(inline)}, not its reference values", r.urn)


REFERENCE_VALUES_MATCH_MANIFEST = StackValidationPolicy(
    name="trustee-reference-values-match-manifest",
    description=(
        "Checks that every Trustee reference value a KbsRegistration registers is a measurement of one manifest of its "
        "own target, that each set is a single manifest, and that the attestation and resource policies pin exactly "
        "those sets."
    ),
    validate=validate_reference_values,
    enforcement_level=EnforcementLevel.MANDATORY,
    severity=Severity.CRITICAL,
    remediation_steps="Regenerate the registration from the manifests (teeform's key broker does); never edit reference values by hand.",
    url="https://github.com/confidential-containers/trustee/blob/main/rvps/README.md",
)


def validate_refuses_debug(args: ResourceValidationArgs, report: ReportViolation) -> None:
    """See :data:`POLICY_REFUSES_DEBUG`."""
    if args.resource_type != tokens.TRUSTEE_KBS_REGISTRATION:
        return
    where = label(args.resource_type, args.name)
    verifier = args.props.get("verifier")
    check = DEBUG_CHECKS.get(str(verifier))
    as_policy, kbs_policy = args.props.get("attestation_policy"), args.props.get("resource_policy")
    if check is None or not isinstance(as_policy, str) or not isinstance(kbs_policy, str):
        report(f"{where}: {NOT_CHECKED}: verifier or policies unknown")
        return
    if re.search(r"(?m)^\s*default\s+configuration\s*:?=\s*([2-9]|[12][0-9]|3[01])\s*$", as_policy):
        report(f"{where}: attestation_policy: the default configuration claim is affirming, so a debug guest passes")
    for name, text, parsed in (("configuration", as_policy, rule_bodies(as_policy)),
                               ("allow", kbs_policy, rule_bodies(kbs_policy))):
        heads = len(re.findall(_ANY_HEAD.format(name=name), text))
        if heads != sum(1 for n, _, _ in parsed if n == name):
            report(f"{where}: {NOT_CHECKED}: {'attestation' if name == 'configuration' else 'resource'}_policy has "
                   f"'{name}' rule(s) not in the layout teeform generates (`{name} [:= value] if {{` ... `}}`), "
                   "so they were not checked for the debug test")
    confs = [(v, b) for n, v, b in rule_bodies(as_policy) if n == "configuration"]
    for value, body in confs:
        if value is not None and value.lstrip("-").isdigit() and 2 <= abs(int(value)) <= 31 and check not in body:
            report(f"{where}: attestation_policy: a 'configuration := {value}' rule does not require `{check}`: "
                   "a debug guest could be affirmed")
    allows = [b for n, _, b in rule_bodies(kbs_policy) if n == "allow"]
    if not allows:
        report(f"{where}: resource_policy has no allow rule: {NOT_CHECKED}")
    for body in allows:
        if check not in body:
            report(f"{where}: resource_policy: an allow rule does not require `{check}`")


POLICY_REFUSES_DEBUG = ResourceValidationPolicy(
    name="trustee-policy-refuses-debug",
    description=(
        "Checks that a Trustee attestation policy affirms the configuration only of non-debug guests (TDX "
        "td_attributes.debug == false, SEV-SNP policy_debug_allowed == \"false\") and that the KBS resource policy "
        "repeats the check."
    ),
    validate=validate_refuses_debug,
    enforcement_level=EnforcementLevel.MANDATORY,
    severity=Severity.CRITICAL,
    remediation_steps="Regenerate the policies with teeform (teeform/trustee/rego.py); do not hand-edit them.",
    url="https://github.com/confidential-containers/trustee/blob/main/attestation-service/docs/policy.md",
)

POLICIES = (REFERENCE_VALUES_MATCH_MANIFEST, POLICY_REFUSES_DEBUG)
