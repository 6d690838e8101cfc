"""AWS policies for NitroTPM-attested VMs (``aws``/``nitro-tpm`` and ``aws``/``sev-snp`` targets).

* ``aws-ami-uefi-tpm`` (mandatory): every ``aws.ec2.Ami`` registers ``bootMode = "uefi"`` and
  ``tpmSupport = "v2.0"``. Without UEFI there is no measured boot, without NitroTPM no attestation
  document, so a KMS key gated on NitroTPM PCRs could never be used (or a legacy-BIOS image would boot
  unmeasured). Source: EC2 user guide "NitroTPM prerequisites" (UEFI boot mode, ``TpmSupport v2.0``)
  and ``RegisterImage`` (``BootMode``, ``TpmSupport``); ``shared/reference/clouds.md`` §1.3, §1.4.
* ``aws-kms-nitrotpm-requires-pcr12-or-pcr7`` (mandatory): a key-policy statement that pins
  ``kms:RecipientAttestation:NitroTPMPCR4`` must also pin ``NitroTPMPCR12`` or ``NitroTPMPCR7`` under
  an exact-match operator (``StringEquals``/``StringEqualsIgnoreCase``, single-valued keys, no
  ``ForAnyValue``/``IfExists``), in the **same** statement (IAM ANDs the keys of a statement, ORs
  statements). With Secure Boot off systemd-boot may append an external kernel command line that
  PCR4 does not cover and PCR12 does; AWS's advisory says KMS policies "must bind
  kms:RecipientAttestation:NitroTPMPCR12 ... or alternatively enable secure boot and bind PCR7"
  (aws/nitrotpm-attestation-samples ``nix/README.md``, GHSA-xrv8-2pf5-f3q7; clouds.md §1.1).
* ``aws-ec2-sev-snp-enabled`` (mandatory): an instance or launch template tagged as an SEV-SNP
  target (``teeform:tee = sev-snp``, configurable) sets ``cpuOptions.amdSevSnp = "enabled"`` and
  uses an instance type of the families AWS offers SEV-SNP on (M6a, C6a, R6a; pulumi-aws
  ``InstanceCpuOptionsArgs.amd_sev_snp`` docstring; clouds.md §1.5). Without it the VM boots as an
  ordinary instance while the stack says SEV-SNP.

:data:`NITROTPM_MEASUREMENTS` maps the NitroTPM condition keys to the manifest measurements holding
their predictions, for the ``key-release`` family (``release.py``): the pack cannot import teeform,
so this is a copy that ``tests/test_policies_aws_vm.py`` checks against ``teeform.measurements`` and
``teeform.targets.aws_nitro_tpm``.
"""

from __future__ import annotations

from collections.abc import Mapping

from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    Severity,
)

from teeform_policies import tokens
from teeform_policies.common import DOCS, ReportViolation, cfg, get, label
from teeform_policies.iam import as_list, condition_entries, parse_policy, statements

#: Prefix of the NitroTPM condition keys, lowercase (KMS developer guide "conditions-nitro-tpm").
NITROTPM_PREFIX = "kms:recipientattestation:nitrotpmpcr"
#: ``NitroTPMPCR<n>`` -> the manifest measurement with its SHA-384 prediction (NitroTPM documents carry
#: SHA-384 PCRs, clouds.md §1.2). PCR7 is absent: teeform does not predict it.
NITROTPM_MEASUREMENTS: dict[str, str] = {
    "NitroTPMPCR4": "pcr4_sha384",
    "NitroTPMPCR11": "pcr11_sha384",
    "NitroTPMPCR12": "pcr12_sha384",
}
#: Keys that, with PCR4, close the command-line gap (advisory GHSA-xrv8-2pf5-f3q7).
COMPANION_PCRS = ("12", "7")
#: Operators that compare a single-valued key exactly (IAM JSON policy reference, "String condition operators").
EXACT_OPERATORS = frozenset({"stringequals", "stringequalsignorecase"})

#: Families with AMD SEV-SNP (clouds.md §1.5).
SNP_FAMILIES = ("m6a", "c6a", "r6a")


def nitrotpm_pcr(condition_key: str) -> str | None:
    """``"4"`` for ``kms:RecipientAttestation:NitroTPMPCR4`` (any case), None for other keys."""
    k = condition_key.lower()
    return k[len(NITROTPM_PREFIX):] if k.startswith(NITROTPM_PREFIX) else None


def measurement_for(condition_key: str) -> str | None:
    """The manifest measurement a NitroTPM condition key pins (``pcr4_sha384``), or None."""
    pcr = nitrotpm_pcr(condition_key)
    return None if pcr is None else NITROTPM_MEASUREMENTS.get(f"NitroTPMPCR{pcr}")


def validate_ami_uefi_tpm(args: ResourceValidationArgs, report: ReportViolation) -> None:
    """See :data:`AMI_UEFI_TPM`."""
    if args.resource_type != tokens.AWS_EC2_AMI:
        return
    where = label(args.resource_type, args.name)
    boot, tpm = args.props.get("bootMode"), args.props.get("tpmSupport")
    if boot != "uefi":
        report(f"{where}: field 'bootMode' is {boot!r}, not 'uefi': the image would not boot with UEFI measured boot, "
               "so no NitroTPM PCR (and no key gated on one) covers it. Set boot_mode=\"uefi\".")
    if tpm != "v2.0":
        report(f"{where}: field 'tpmSupport' is {tpm!r}, not 'v2.0': instances from this AMI get no NitroTPM, so they "
               "cannot produce the attestation document a NitroTPM-gated key needs. Set tpm_support=\"v2.0\".")


def validate_nitrotpm_requires_pcr12_or_pcr7(args: ResourceValidationArgs, report: ReportViolation) -> None:
    """See :data:`NITROTPM_REQUIRES_PCR12_OR_PCR7`."""
    if args.resource_type not in tokens.KMS_KEY_POLICY_TYPES:
        return
    doc, _ = parse_policy(args.props.get("policy"))
    where = label(args.resource_type, args.name)
    for sid, stmt in statements(doc or {}):
        entries = [(op, k) for op, k, _ in condition_entries(stmt) if nitrotpm_pcr(k) is not None]
        if not any(nitrotpm_pcr(k) == "4" for _, k in entries):
            continue
        if any(nitrotpm_pcr(k) in COMPANION_PCRS and op.lower() in EXACT_OPERATORS for op, k in entries):
            continue
        loose = sorted({f"{op} {k}" for op, k in entries if nitrotpm_pcr(k) in COMPANION_PCRS})
        why = f" (only under {', '.join(loose)}, which does not compare exactly)" if loose else ""
        report(f"{where}: field 'policy', statement {sid!r} pins kms:RecipientAttestation:NitroTPMPCR4 but not "
               f"NitroTPMPCR12 or NitroTPMPCR7{why}: with Secure Boot off a kernel command line appended by the boot "
               "loader is not in PCR4 (GHSA-xrv8-2pf5-f3q7). Add \"kms:RecipientAttestation:NitroTPMPCR12\": "
               "<pcr12_sha384 of the manifest> under StringEqualsIgnoreCase in the same statement (teeform's "
               "nitro-tpm targets do: attestation.pcrs [PCR4, PCR12]).")


def _tags(props: Mapping[str, object]) -> dict[str, object]:
    raw = props.get("tags")
    tags: dict[str, object] = dict(raw) if isinstance(raw, Mapping) else {}
    for spec in as_list(props.get("tagSpecifications")):
        if isinstance(spec, Mapping):
            tags.update(spec.get("tags") or {})
    return tags


def validate_sev_snp_enabled(args: ResourceValidationArgs, report: ReportViolation) -> None:
    """See :data:`SEV_SNP_ENABLED`."""
    if args.resource_type not in (tokens.AWS_EC2_INSTANCE, tokens.AWS_EC2_LAUNCH_TEMPLATE):
        return
    key, value = cfg(args, "teeTagKey", "teeform:tee"), cfg(args, "teeTagValue", "sev-snp")
    if _tags(args.props).get(key) != value:
        return
    where = label(args.resource_type, args.name)
    snp = get(args.props, "cpuOptions", "amdSevSnp")
    if snp != "enabled":
        report(f"{where}: field 'cpuOptions.amdSevSnp' is {snp!r}, but the resource is tagged {key}={value}: it would "
               "boot as an ordinary instance without SEV-SNP memory encryption. Set cpu_options amd_sev_snp=\"enabled\".")
    itype = args.props.get("instanceType")
    if isinstance(itype, str) and itype.split(".", 1)[0] not in SNP_FAMILIES:
        report(f"{where}: field 'instanceType' is {itype!r}; AWS offers SEV-SNP only on {', '.join(SNP_FAMILIES)} "
               "instances. Use one of those families.")


AMI_UEFI_TPM = ResourceValidationPolicy(
    name="aws-ami-uefi-tpm",
    description="Checks that every aws.ec2.Ami registers bootMode 'uefi' and tpmSupport 'v2.0' (NitroTPM).",
    validate=validate_ami_uefi_tpm,
    enforcement_level=EnforcementLevel.MANDATORY,
    severity=Severity.HIGH,
    remediation_steps='Register the AMI with boot_mode="uefi", tpm_support="v2.0" (components/aws/vm_image_pipeline.py does).',
    url=f"{DOCS}/AWSEC2/latest/UserGuide/enable-nitrotpm-prerequisites.html",
)

NITROTPM_REQUIRES_PCR12_OR_PCR7 = ResourceValidationPolicy(
    name="aws-kms-nitrotpm-requires-pcr12-or-pcr7",
    description=(
        "Checks that every KMS key-policy statement pinning kms:RecipientAttestation:NitroTPMPCR4 also pins "
        "NitroTPMPCR12 or NitroTPMPCR7 in the same statement under StringEquals/StringEqualsIgnoreCase "
        "(advisory GHSA-xrv8-2pf5-f3q7: PCR4 does not cover a boot-loader-appended command line)."
    ),
    validate=validate_nitrotpm_requires_pcr12_or_pcr7,
    enforcement_level=EnforcementLevel.MANDATORY,
    severity=Severity.CRITICAL,
    remediation_steps="Pin NitroTPMPCR12 (the manifest's pcr12_sha384, all zero without add-ons) next to NitroTPMPCR4.",
    url=f"{DOCS}/kms/latest/developerguide/conditions-nitro-tpm.html",
)

SEV_SNP_ENABLED = ResourceValidationPolicy(
    name="aws-ec2-sev-snp-enabled",
    description=(
        "Checks that instances and launch templates tagged as SEV-SNP targets (teeTagKey=teeTagValue, default "
        "teeform:tee=sev-snp) set cpuOptions.amdSevSnp 'enabled' on an M6a, C6a or R6a instance type."
    ),
    validate=validate_sev_snp_enabled,
    enforcement_level=EnforcementLevel.MANDATORY,
    severity=Severity.HIGH,
    config_schema=PolicyConfigSchema(
        properties={
            "teeTagKey": {"type": "string", "default": "teeform:tee"},
            "teeTagValue": {"type": "string", "default": "sev-snp"},
        }
    ),
    remediation_steps='Set cpu_options=InstanceCpuOptionsArgs(amd_sev_snp="enabled") on an m6a/c6a/r6a instance.',
    url=f"{DOCS}/AWSEC2/latest/UserGuide/sev-snp.html",
)

POLICIES = (AMI_UEFI_TPM, NITROTPM_REQUIRES_PCR12_OR_PCR7, SEV_SNP_ENABLED)

__all__ = ["POLICIES", "NITROTPM_MEASUREMENTS", "nitrotpm_pcr", "measurement_for"]
