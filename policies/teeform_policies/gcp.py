"""GCP policies (ids ``gcp-*``): Confidential Space key gates, confidential VMs, ingress, key rotation.

Facts (shared/reference/clouds.md §3, pulumi.md §4.3): a Confidential Space key is released through a
Workload Identity Pool provider for the issuer ``https://confidentialcomputing.googleapis.com/`` whose
``attributeCondition`` (CEL over ``assertion.*``) is the only place token claims are checked; the
container is identified by ``assertion.submods.container.image_digest`` (``sha256:<hex>``); production
images report ``dbgstat == 'disabled-since-boot'``; the debug image family is
``confidential-space-debug``. Confidential VMs carry ``confidentialInstanceConfig``
(``SEV``/``SEV_SNP``/``TDX``) and must use ``onHostMaintenance: TERMINATE`` (except SEV on AMD
Milan/Genoa, which live-migrates); ``SEV_SNP`` needs ``minCpuPlatform: AMD Milan`` (pulumi-gcp 10.2
``compute.Instance`` docstring). Props are the wire (camelCase) inputs.

=========================================  =========  ==================================================
id                                         default    checks
=========================================  =========  ==================================================
gcp-wip-condition-pins-digest (stack)      mandatory  each Confidential Space provider's condition is a
                                                      plain conjunction pinning swname, a service
                                                      account and image digests that are the
                                                      ``image_digest`` of its target's manifests
gcp-confidential-space-no-debug-image      mandatory  in production: no confidential-space-debug boot
                                                      image, no provider condition without the
                                                      dbgstat clause
gcp-confidential-instance-enabled          mandatory  instances/templates are confidential VMs, shielded
                                                      vTPM on, TERMINATE on maintenance, SNP on Milan
gcp-no-public-ingress                      advisory   GCP firewalls (ingress family) open to 0.0.0.0/0 or
                                                      ::/0; instances with an external IP
gcp-kms-key-rotation                       advisory   ENCRYPT_DECRYPT keys rotate at least every
                                                      ``maxRotationDays`` (365)
=========================================  =========  ==================================================
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    Severity,
    StackValidationArgs,
    StackValidationPolicy,
)

from teeform_policies import tokens
from teeform_policies.common import ReportViolation, cfg, get, is_production, label
from teeform_policies.iam import as_list
from teeform_policies.ingress import forbidden_sources
from teeform_policies.manifest import recorded_manifests

GCP_DOCS = "https://cloud.google.com"
ISSUER = "https://confidentialcomputing.googleapis.com"
DEBUG_FAMILY = "confidential-space-debug"
DIGEST_CLAIM = "assertion.submods.container.image_digest"
#: ``teeform:target=<name>`` in a provider's description (providers have no labels).
_TARGET_DESC = re.compile(r"teeform:target=([A-Za-z0-9_-]+)")
_STRING = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"")
_SHA256 = re.compile(r"^sha256:[0-9a-f]{64}$")
CONFIDENTIAL_TYPES = ("SEV", "SEV_SNP", "TDX")
LIVE_MIGRATABLE_SEV = ("AMD Milan", "AMD Genoa")
INSTANCE_TYPES = (tokens.GCP_COMPUTE_INSTANCE, tokens.GCP_COMPUTE_INSTANCE_TEMPLATE)


# ----------------------------------------------------------------------------- CEL condition reading


def _unquote(lit: str) -> str:
    return re.sub(r"\\(.)", r"\1", lit[1:-1])


def conjuncts(expr: str) -> list[str] | None:
    """The top-level ``&&`` clauses of ``expr``, or None when it uses an operator that could make a clause
    vacuous (``||``, ``!``, ``?:``) or its brackets/quotes do not balance. String literals are masked first
    (cel-spec langdef.md "String and Bytes Values"), so ``'a||b'`` inside a literal is not an operator."""
    masked = _STRING.sub(lambda m: "S" * len(m.group(0)), expr)
    if "'" in masked or '"' in masked or "||" in masked or "?" in masked or re.search(r"!(?!=)", masked):
        return None
    out, depth, start = [], 0, 0
    i = 0
    while i < len(masked):
        c = masked[i]
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
            if depth < 0:
                return None
        elif masked.startswith("&&", i) and depth == 0:
            out.append(expr[start:i].strip())
            start = i + 2
            i += 1
        i += 1
    if depth != 0:
        return None
    out.append(expr[start:].strip())
    return [c for c in out if c]


def _strip_parens(clause: str) -> str:
    while clause.startswith("(") and clause.endswith(")") and conjuncts(clause[1:-1]) == [clause[1:-1].strip()]:
        clause = clause[1:-1].strip()
    return clause


def pinned_digests(clause: str) -> list[str] | None:
    """The digests of a clause ``assertion.submods.container.image_digest in ['sha256:..', ...]`` or
    ``== 'sha256:..'`` (either side), else None."""
    c = _strip_parens(clause)
    lit = r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\""
    m = re.fullmatch(rf"{re.escape(DIGEST_CLAIM)}\s*in\s*\[\s*((?:{lit})(?:\s*,\s*(?:{lit}))*)\s*,?\s*\]", c)
    if m:
        return [_unquote(x) for x in re.findall(lit, m.group(1))]
    m = re.fullmatch(rf"{re.escape(DIGEST_CLAIM)}\s*==\s*({lit})|({lit})\s*==\s*{re.escape(DIGEST_CLAIM)}", c)
    if m:
        return [_unquote(m.group(1) or m.group(2))]
    return None


def _has_clause(clauses: list[str], pattern: str) -> bool:
    return any(re.fullmatch(pattern, _strip_parens(c)) for c in clauses)


SWNAME_CLAUSE = r"assertion\.swname\s*==\s*'CONFIDENTIAL_SPACE'|'CONFIDENTIAL_SPACE'\s*==\s*assertion\.swname"
DBGSTAT_CLAUSE = r"assertion\.dbgstat\s*==\s*'disabled-since-boot'|'disabled-since-boot'\s*==\s*assertion\.dbgstat"
SA_CLAUSE = r"'[^'\s]+@[^'\s]+'\s+in\s+assertion\.google_service_accounts"


def is_confidential_space_provider(props: Mapping[str, Any]) -> bool:
    """A WIP provider whose OIDC issuer is Google Cloud Attestation (trailing ``/`` either way)."""
    issuer = get(props, "oidc", "issuerUri")
    return isinstance(issuer, str) and issuer.rstrip("/") == ISSUER


# ----------------------------------------------------------------------------- gcp-wip-condition-pins-digest


def validate_wip_condition(args: StackValidationArgs, report: ReportViolation) -> None:
    """See :data:`WIP_CONDITION_PINS_DIGEST`."""
    manifests = recorded_manifests(args)
    fix = ("Let teeform write the condition (teeform:targets[] tee: confidential-space, manifests from `teeform build "
           "oci`); never paste digests.")
    for r in args.resources:
        if r.resource_type != tokens.GCP_IAM_WIP_PROVIDER or not is_confidential_space_provider(r.props):
            continue
        where = label(r.resource_type, r.name)
        cond = r.props.get("attributeCondition")
        if not isinstance(cond, str) or not cond.strip():
            report(f"{where}: no attributeCondition: every Confidential Space token of any workload (any image, "
                   f"debug or not) would get a federated identity. {fix}", r.urn)
            continue
        clauses = conjuncts(cond)
        if clauses is None:
            report(f"{where}: attributeCondition is not a plain conjunction ('||', '!' or '?:' could make a clause "
                   f"vacuous, or its brackets do not balance): {cond!r}. {fix}", r.urn)
            continue
        pins = [p for p in (pinned_digests(c) for c in clauses) if p is not None]
        if not pins:
            report(f"{where}: attributeCondition does not pin {DIGEST_CLAIM} to sha256 digests (a clause "
                   f"`{DIGEST_CLAIM} in ['sha256:...']`): any container image would be admitted. {fix}", r.urn)
            continue
        for missing, pattern in (("assertion.swname == 'CONFIDENTIAL_SPACE'", SWNAME_CLAUSE),
                                 ("'<service account>' in assertion.google_service_accounts", SA_CLAUSE)):
            if not _has_clause(clauses, pattern):
                report(f"{where}: attributeCondition lacks the clause {missing}. {fix}", r.urn)
        m = _TARGET_DESC.search(str(r.props.get("description") or ""))
        target = m.group(1) if m else None
        known = {f"sha256:{meas['image_digest']}" for _, meas in manifests.get(target, []) if "image_digest" in meas}
        scope = f"target {target!r}" if target else "the stack"
        for d in {x for p in pins for x in p}:
            if not _SHA256.match(d):
                report(f"{where}: pinned image digest {d!r} is not sha256:<64 lowercase hex>. {fix}", r.urn)
            elif d not in known:
                report(f"{where}: pinned image digest {d} is not the image_digest of any MeasurementManifest of "
                       f"{scope} ({len(known)} known). {fix}", r.urn)


WIP_CONDITION_PINS_DIGEST = StackValidationPolicy(
    name="gcp-wip-condition-pins-digest",
    description=(
        "Checks that every Workload Identity Pool provider for Google Cloud Attestation tokens has an "
        "attributeCondition that is a plain CEL conjunction requiring swname CONFIDENTIAL_SPACE, a workload service "
        "account, and assertion.submods.container.image_digest among sha256 digests that are image_digest "
        "measurements of the provider's target's MeasurementManifests (description teeform:target=<name>)."
    ),
    validate=validate_wip_condition,
    enforcement_level=EnforcementLevel.MANDATORY,
    severity=Severity.CRITICAL,
    remediation_steps="Build the image's manifest with `teeform build oci` and list it in teeform:targets[].manifests.",
    url=f"{GCP_DOCS}/confidential-computing/confidential-vm/docs/reference/cs-attestation-policies",
)


# ----------------------------------------------------------------------------- gcp-confidential-space-no-debug-image


def boot_images(resource_type: str, props: Mapping[str, Any]) -> list[tuple[str, str]]:
    """``(field, image)`` of an instance's boot disk or a template's disks."""
    if resource_type == tokens.GCP_COMPUTE_INSTANCE:
        img = get(props, "bootDisk", "initializeParams", "image")
        return [("bootDisk.initializeParams.image", img)] if isinstance(img, str) else []
    return [(f"disks[{i}].sourceImage", d["sourceImage"]) for i, d in enumerate(as_list(props.get("disks")))
            if isinstance(d, Mapping) and isinstance(d.get("sourceImage"), str)]


def validate_no_debug_image(args: ResourceValidationArgs, report: ReportViolation) -> None:
    """See :data:`NO_DEBUG_IMAGE`."""
    if not is_production(args):
        return
    where = label(args.resource_type, args.name)
    if args.resource_type in INSTANCE_TYPES:
        for fld, img in boot_images(args.resource_type, args.props):
            if DEBUG_FAMILY in img:
                report(f"{where}: field '{fld}' is {img}, the Confidential Space debug image (SSH, dbgstat 'enabled', "
                       "the VM keeps running after the workload), in a production stack. Use the "
                       "confidential-space family.")
    elif args.resource_type == tokens.GCP_IAM_WIP_PROVIDER and is_confidential_space_provider(args.props):
        cond = args.props.get("attributeCondition")
        clauses = conjuncts(cond) if isinstance(cond, str) else None
        if not clauses or not _has_clause(clauses, DBGSTAT_CLAUSE):
            report(f"{where}: attributeCondition lacks the top-level clause assertion.dbgstat == 'disabled-since-boot' "
                   "in a production stack, so tokens of debug images would be admitted.")


NO_DEBUG_IMAGE = ResourceValidationPolicy(
    name="gcp-confidential-space-no-debug-image",
    description=(
        "In production (policy config 'environment', else stack config teeform:environment): no instance or "
        "template boots the confidential-space-debug image, and every Confidential Space provider condition "
        "requires assertion.dbgstat == 'disabled-since-boot'."
    ),
    validate=validate_no_debug_image,
    enforcement_level=EnforcementLevel.MANDATORY,
    severity=Severity.CRITICAL,
    config_schema=PolicyConfigSchema(properties={
        "environment": {"type": "string", "default": ""},
        "productionEnvironments": {"type": "array", "items": {"type": "string"}, "default": ["prod", "production"]},
    }),
    remediation_steps="Use imageFamily: confidential-space in production targets.",
    url=f"{GCP_DOCS}/confidential-computing/confidential-space/docs/reference/token-claims",
)


# ----------------------------------------------------------------------------- gcp-confidential-instance-enabled


def validate_confidential_instance(args: ResourceValidationArgs, report: ReportViolation) -> None:
    """See :data:`CONFIDENTIAL_INSTANCE_ENABLED`."""
    if args.resource_type not in INSTANCE_TYPES:
        return
    p, where = args.props, label(args.resource_type, args.name)
    raw_cic = p.get("confidentialInstanceConfig")
    cic: Mapping[str, Any] = raw_cic if isinstance(raw_cic, Mapping) else {}
    ctype = cic.get("confidentialInstanceType")
    if ctype not in CONFIDENTIAL_TYPES and cic.get("enableConfidentialCompute") is not True:
        report(f"{where}: field 'confidentialInstanceConfig.confidentialInstanceType' is {ctype!r}: not a confidential "
               f"VM (one of {list(CONFIDENTIAL_TYPES)}).")
        return
    ctype = ctype or "SEV"
    maint = get(p, "scheduling", "onHostMaintenance")
    cpu = p.get("minCpuPlatform")
    if maint != "TERMINATE" and not (ctype == "SEV" and cpu in LIVE_MIGRATABLE_SEV):
        report(f"{where}: field 'scheduling.onHostMaintenance' is {maint!r}: a {ctype} confidential VM must use "
               "TERMINATE (only SEV on AMD Milan/Genoa live-migrates).")
    if ctype == "SEV_SNP" and cpu != "AMD Milan":
        report(f"{where}: field 'minCpuPlatform' is {cpu!r}: SEV_SNP needs 'AMD Milan'.")
    if get(p, "shieldedInstanceConfig", "enableVtpm") is False:
        report(f"{where}: field 'shieldedInstanceConfig.enableVtpm' is false: the vTPM carries the measured boot "
               "that attestation reports.")


CONFIDENTIAL_INSTANCE_ENABLED = ResourceValidationPolicy(
    name="gcp-confidential-instance-enabled",
    description=(
        "Checks that GCP instances and instance templates are confidential VMs (confidentialInstanceConfig SEV, "
        "SEV_SNP or TDX), stop on host maintenance (TERMINATE; SEV on AMD Milan/Genoa may migrate), run SEV_SNP on "
        "AMD Milan, and keep the shielded vTPM."
    ),
    validate=validate_confidential_instance,
    enforcement_level=EnforcementLevel.MANDATORY,
    severity=Severity.HIGH,
    remediation_steps="Set confidential_instance_config, scheduling.on_host_maintenance='TERMINATE' and min_cpu_platform.",
    url=f"{GCP_DOCS}/confidential-computing/confidential-vm/docs/supported-configurations",
)


# ----------------------------------------------------------------------------- gcp-no-public-ingress


def validate_gcp_no_public_ingress(args: ResourceValidationArgs, report: ReportViolation) -> None:
    """See :data:`GCP_NO_PUBLIC_INGRESS`."""
    where = label(args.resource_type, args.name)
    if args.resource_type == tokens.GCP_COMPUTE_FIREWALL:
        for src in forbidden_sources(args.resource_type, args.props, cfg(args, "forbiddenCidrs", ["0.0.0.0/0", "::/0"])):
            report(f"{where}: field '{src.field}' {src.written} opens {src.ports} to the whole internet. Allow only "
                   "the client CIDRs (teeform:targets[].network.ingress), or none.")
    elif args.resource_type in INSTANCE_TYPES and not cfg(args, "allowExternalIp", False):
        for i, nic in enumerate(as_list(args.props.get("networkInterfaces"))):
            if isinstance(nic, Mapping) and as_list(nic.get("accessConfigs")):
                report(f"{where}: field 'networkInterfaces[{i}].accessConfigs' gives the TEE VM an external IP; "
                       "teeform's VMs reach Google APIs through Private Google Access and need none.")


GCP_NO_PUBLIC_INGRESS = ResourceValidationPolicy(
    name="gcp-no-public-ingress",
    description=(
        "GCP side of the ingress family: no compute.Firewall ingress from 0.0.0.0/0 or ::/0 (no source = "
        "0.0.0.0/0), and no external IP (accessConfigs) on instances or templates. Advisory; mandatory in "
        "production through policies/config/prod.json."
    ),
    validate=validate_gcp_no_public_ingress,
    enforcement_level=EnforcementLevel.ADVISORY,
    severity=Severity.HIGH,
    config_schema=PolicyConfigSchema(properties={
        "forbiddenCidrs": {"type": "array", "items": {"type": "string"}, "default": ["0.0.0.0/0", "::/0"]},
        "allowExternalIp": {"type": "boolean", "default": False},
    }),
    remediation_steps="Restrict sourceRanges to client CIDRs; drop access_configs from the VM's network interface.",
    url=f"{GCP_DOCS}/firewall/docs/firewalls",
)


# ----------------------------------------------------------------------------- gcp-kms-key-rotation


def _seconds(duration: Any) -> float | None:
    m = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?)s", str(duration or ""))
    return float(m.group(1)) if m else None


def validate_gcp_key_rotation(args: ResourceValidationArgs, report: ReportViolation) -> None:
    """See :data:`GCP_KMS_KEY_ROTATION`."""
    if args.resource_type != tokens.GCP_KMS_CRYPTO_KEY:
        return
    if str(args.props.get("purpose") or "ENCRYPT_DECRYPT") != "ENCRYPT_DECRYPT":
        return  # Cloud KMS rotates only symmetric keys automatically
    where = label(args.resource_type, args.name)
    max_days = float(cfg(args, "maxRotationDays", 365))
    secs = _seconds(args.props.get("rotationPeriod"))
    if secs is None:
        report(f"{where}: no rotationPeriod: the key never rotates. Set key.rotationPeriodDays.")
    elif secs > max_days * 86400:
        report(f"{where}: rotationPeriod {args.props.get('rotationPeriod')} is longer than {max_days:g} days.")


GCP_KMS_KEY_ROTATION = ResourceValidationPolicy(
    name="gcp-kms-key-rotation",
    description="Checks that symmetric Cloud KMS CryptoKeys have a rotationPeriod of at most maxRotationDays (365).",
    validate=validate_gcp_key_rotation,
    enforcement_level=EnforcementLevel.ADVISORY,
    severity=Severity.MEDIUM,
    config_schema=PolicyConfigSchema(properties={"maxRotationDays": {"type": "number", "default": 365}}),
    remediation_steps="Set rotation_period on the gcp.kms.CryptoKey (teeform: key.rotationPeriodDays).",
    url=f"{GCP_DOCS}/kms/docs/key-rotation",
)

POLICIES = (WIP_CONDITION_PINS_DIGEST, NO_DEBUG_IMAGE, CONFIDENTIAL_INSTANCE_ENABLED, GCP_NO_PUBLIC_INGRESS,
            GCP_KMS_KEY_ROTATION)

__all__ = ["POLICIES", "conjuncts", "pinned_digests", "is_confidential_space_provider", "boot_images"]
