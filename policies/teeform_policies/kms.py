"""AWS KMS policies (ids ``aws-kms-*``): plaintext only to attested enclaves, no debug measurements,
key rotation on.

Facts (eif-nitro.md §5.1, §4.6; KMS developer guide "conditions-nitro-enclave"): the condition
keys ``kms:RecipientAttestation:ImageSha384`` / ``PCR<n>`` are 96 hex digits compared with
``StringEqualsIgnoreCase``; they gate Decrypt, DeriveSharedSecret, GenerateDataKey,
GenerateDataKeyPair and GenerateRandom. A debug-mode enclave reports all-zero PCRs, so an all-zero
value in a key policy would release keys to any debug enclave.
"""

from __future__ import annotations

from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    Severity,
)

from teeform_policies import tokens
from teeform_policies.aws_vm import nitrotpm_pcr
from teeform_policies.common import DOCS, ReportViolation, cfg, get, is_production, label, truthy, user_data_text
from teeform_policies.iam import (
    ATTESTATION_OPERATOR,
    HEX96,
    ZERO96,
    attestation_entries,
    granted_actions,
    measurement_name,
    parse_policy,
    statements,
    wildcard_principal,
)

#: Actions that hand out plaintext key material or can be used to (kms:ReEncryptFrom decrypts under
#: this key; kms:CreateGrant can delegate Decrypt without conditions). Attestation conditions never
#: match these last two (they carry no Recipient), so "conditioned" means "never allowed" for them.
PROTECTED_ACTIONS = [
    "kms:Decrypt",
    "kms:GenerateDataKey",
    "kms:GenerateDataKeyWithoutPlaintext",
    "kms:GenerateDataKeyPair",
    "kms:GenerateDataKeyPairWithoutPlaintext",
    "kms:GenerateRandom",
    "kms:DeriveSharedSecret",
    "kms:ReEncryptFrom",
    "kms:CreateGrant",
]

#: At least one of these must be pinned: they identify the image (PCR0 = ImageSha384) or its signer (PCR8).
PINNING_KEYS = [
    "kms:RecipientAttestation:PCR0",
    "kms:RecipientAttestation:ImageSha384",
    "kms:RecipientAttestation:PCR8",
]

#: EIF measurement names (the pack cannot import teeform; tests/test_measurements_table.py checks this
#: copy against teeform.measurements, the one measurement table).
DEBUG_MEASUREMENTS = ("PCR0", "PCR1", "PCR2", "PCR8", "ImageSha384")


def _key_policy(args: ResourceValidationArgs, report: ReportViolation) -> Any:
    """The parsed key policy of a Key/KeyPolicy, or None (reporting unreadable documents)."""
    if args.resource_type not in tokens.KMS_KEY_POLICY_TYPES:
        return None
    text = args.props.get("policy")
    if text is None:
        if args.resource_type == tokens.AWS_KMS_KEY:
            report(
                f"{label(args.resource_type, args.name)} has no 'policy': AWS then applies its default key policy, "
                "which grants kms:* to the account root (any IAM principal with an IAM grant can decrypt without "
                "attestation). Set 'policy' to a key policy whose plaintext operations require "
                "kms:RecipientAttestation conditions (components/aws/attested_key.py builds one)."
            )
        return None
    doc, err = parse_policy(text)
    if doc is None:
        report(f"{label(args.resource_type, args.name)}: field 'policy' {err}; give a valid JSON key policy document.")
    return doc


def validate_decrypt_requires_attestation(args: ResourceValidationArgs, report: ReportViolation) -> None:
    """See :data:`DECRYPT_REQUIRES_ATTESTATION`."""
    doc = _key_policy(args, report)
    if doc is None:
        return
    protected = [str(a) for a in cfg(args, "protectedActions", PROTECTED_ACTIONS)]
    pinning = {k.lower() for k in cfg(args, "pinningKeys", PINNING_KEYS)}
    where = label(args.resource_type, args.name)
    for sid, stmt in statements(doc):
        granted = granted_actions(stmt, protected)
        if not granted:
            continue
        acts = ", ".join(granted)
        if wildcard_principal(stmt):
            report(
                f"{where}: field 'policy', statement {sid!r} allows {acts} to a wildcard principal. "
                "Name the enclave host's role ARN as the principal instead of '*'."
            )
        pinned = [(k, v) for op, k, v in attestation_entries(stmt) if op == ATTESTATION_OPERATOR]
        # A NitroTPM VM's statement pins its image by NitroTPMPCR4 (aws_vm.py checks PCR12/PCR7 with it).
        if not any(k.lower() in pinning or nitrotpm_pcr(k) == "4" for k, _ in pinned):
            report(
                f"{where}: field 'policy', statement {sid!r} allows {acts} without a {ATTESTATION_OPERATOR} "
                f"condition on {' / '.join(cfg(args, 'pinningKeys', PINNING_KEYS))}. (A NitroTPM VM pins "
                "kms:RecipientAttestation:NitroTPMPCR4 with NitroTPMPCR12 instead.) Add the enclave's measurements "
                "from its manifest as kms:RecipientAttestation conditions, or remove these actions from the statement."
            )
            continue
        for key, values in pinned:
            bad = [v for v in values if not (isinstance(v, str) and HEX96.match(v))]
            if not values or bad:
                report(
                    f"{where}: field 'policy', statement {sid!r}: condition {key} has {bad or 'no'} value(s) that are "
                    "not 96 hex digits (a SHA-384 PCR). Use the lowercase hex from the manifest, without '0x'."
                )


def validate_no_debug_measurements(args: ResourceValidationArgs, report: ReportViolation) -> None:
    """See :data:`NO_DEBUG_MEASUREMENTS`."""
    where = label(args.resource_type, args.name)
    if args.resource_type in tokens.KMS_KEY_POLICY_TYPES:
        doc, _ = parse_policy(args.props.get("policy"))
        for sid, stmt in statements(doc or {}):
            for _op, key, values in attestation_entries(stmt):
                if measurement_name(key) in DEBUG_MEASUREMENTS and any(str(v).lower() == ZERO96 for v in values):
                    report(
                        f"{where}: field 'policy', statement {sid!r}: condition {key} allows the all-zero value that "
                        "debug-mode enclaves report. Remove it; pin the measurements of a production build instead."
                    )
        return
    if args.resource_type not in (tokens.AWS_EC2_LAUNCH_TEMPLATE, tokens.AWS_EC2_INSTANCE) or not is_production(args):
        return
    for fld in ("userData", "userDataBase64"):
        text = user_data_text(args.props.get(fld))
        for flag in ("--debug-mode", "--attach-console"):
            if flag in text:
                report(
                    f"{where}: field '{fld}' runs the enclave with {flag} (debug mode) in a production stack. "
                    "Remove enclave.debug from the target (teeform:targets[].enclave.debug)."
                )


def validate_key_rotation(args: ResourceValidationArgs, report: ReportViolation) -> None:
    """See :data:`KEY_ROTATION_ENABLED`."""
    if args.resource_type != tokens.AWS_KMS_KEY:
        return
    spec = args.props.get("customerMasterKeySpec") or args.props.get("keySpec") or "SYMMETRIC_DEFAULT"
    if spec != "SYMMETRIC_DEFAULT" or (args.props.get("keyUsage") or "ENCRYPT_DECRYPT") != "ENCRYPT_DECRYPT":
        args.not_applicable("automatic rotation exists only for symmetric encryption keys")
    if not truthy(get(args.props, "enableKeyRotation")):
        report(
            f"{label(args.resource_type, args.name)}: field 'enableKeyRotation' is not true. "
            "Set enable_key_rotation=True (AttestedKey does)."
        )


DECRYPT_REQUIRES_ATTESTATION = ResourceValidationPolicy(
    name="aws-kms-decrypt-requires-attestation",
    description=(
        "Checks that every KMS key-policy statement allowing Decrypt, GenerateDataKey*, GenerateDataKeyPair*, "
        "GenerateRandom, DeriveSharedSecret, ReEncryptFrom or CreateGrant (also via kms:* or * wildcards, or "
        "NotAction) names a specific principal and carries kms:RecipientAttestation conditions under "
        "StringEqualsIgnoreCase with 96-hex-digit values, pinning PCR0, ImageSha384 or PCR8."
    ),
    validate=validate_decrypt_requires_attestation,
    enforcement_level=EnforcementLevel.MANDATORY,
    severity=Severity.CRITICAL,
    config_schema=PolicyConfigSchema(
        properties={
            "protectedActions": {"type": "array", "items": {"type": "string"}, "default": PROTECTED_ACTIONS},
            "pinningKeys": {"type": "array", "items": {"type": "string"}, "default": PINNING_KEYS},
        }
    ),
    remediation_steps=(
        "Grant plaintext operations only in a statement whose Principal is the enclave host role and whose "
        "Condition is {\"StringEqualsIgnoreCase\": {\"kms:RecipientAttestation:PCR0\": [<PCR0 from the manifest>]}}; "
        "give administrators key-management actions only."
    ),
    url=f"{DOCS}/kms/latest/developerguide/conditions-nitro-enclave.html",
)

NO_DEBUG_MEASUREMENTS = ResourceValidationPolicy(
    name="aws-kms-no-debug-measurements",
    description=(
        "Checks that no KMS key policy allows the all-zero PCR0/PCR1/PCR2/PCR8/ImageSha384 of debug-mode enclaves, "
        "and that in production (policy config 'environment', else stack config teeform:environment) no enclave "
        "host's user data runs nitro-cli with --debug-mode or --attach-console."
    ),
    validate=validate_no_debug_measurements,
    enforcement_level=EnforcementLevel.MANDATORY,
    severity=Severity.CRITICAL,
    config_schema=PolicyConfigSchema(
        properties={
            "environment": {"type": "string", "default": ""},
            "productionEnvironments": {"type": "array", "items": {"type": "string"}, "default": ["prod", "production"]},
        }
    ),
    remediation_steps="Pin the measurements of a production (non-debug) EIF build; remove enclave.debug in production stacks.",
    url=f"{DOCS}/enclaves/latest/user/getting-started.html",
)

KEY_ROTATION_ENABLED = ResourceValidationPolicy(
    name="aws-kms-key-rotation-enabled",
    description="Checks that symmetric KMS keys have automatic key rotation enabled (enableKeyRotation).",
    validate=validate_key_rotation,
    enforcement_level=EnforcementLevel.ADVISORY,
    severity=Severity.MEDIUM,
    remediation_steps="Set enable_key_rotation=True on the aws.kms.Key.",
    url=f"{DOCS}/kms/latest/developerguide/rotate-keys.html",
)

POLICIES = (DECRYPT_REQUIRES_ATTESTATION, NO_DEBUG_MEASUREMENTS, KEY_ROTATION_ENABLED)

__all__ = ["POLICIES", "PROTECTED_ACTIONS", "PINNING_KEYS"]
