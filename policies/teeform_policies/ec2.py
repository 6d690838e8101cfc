"""AWS EC2 policies for enclave hosts (ids ``aws-ec2-*``, ``aws-ebs-*``): IMDSv2, the enclave option,
encrypted EBS.

An ``aws.ec2.Instance`` launched from a launch template inherits the template's metadata, enclave
and block-device settings; when the instance itself does not set a field, the template (checked on
its own) is authoritative, so the instance is not reported twice.
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
from teeform_policies.common import DOCS, ReportViolation, cfg, get, label, truthy, user_data_text
from teeform_policies.iam import as_list

EC2_TYPES = (tokens.AWS_EC2_LAUNCH_TEMPLATE, tokens.AWS_EC2_INSTANCE)


def _from_template(args: ResourceValidationArgs) -> bool:
    return args.resource_type == tokens.AWS_EC2_INSTANCE and bool(args.props.get("launchTemplate"))


def validate_imdsv2(args: ResourceValidationArgs, report: ReportViolation) -> None:
    """See :data:`IMDSV2_REQUIRED`."""
    if args.resource_type not in EC2_TYPES:
        return
    meta = args.props.get("metadataOptions")
    if meta is None and _from_template(args):
        return
    if get(args.props, "metadataOptions", "httpEndpoint") == "disabled":
        return
    tokens_ = get(args.props, "metadataOptions", "httpTokens")
    if tokens_ != "required":
        report(
            f"{label(args.resource_type, args.name)}: field 'metadataOptions.httpTokens' is {tokens_!r}, so IMDSv1 "
            "(no session token) stays reachable. Set metadata_options http_tokens=\"required\"."
        )


def _is_enclave_host(args: ResourceValidationArgs) -> bool:
    key, value = cfg(args, "hostTagKey", "teeform:role"), cfg(args, "hostTagValue", "enclave-host")
    tags = dict(args.props.get("tags") or {})
    for spec in as_list(args.props.get("tagSpecifications")):
        if isinstance(spec, Mapping):
            tags.update(spec.get("tags") or {})
    if tags.get(key) == value:
        return True
    return any("nitro-cli run-enclave" in user_data_text(args.props.get(f)) for f in ("userData", "userDataBase64"))


def validate_enclave_enabled(args: ResourceValidationArgs, report: ReportViolation) -> None:
    """See :data:`ENCLAVE_ENABLED`."""
    if args.resource_type not in EC2_TYPES or not _is_enclave_host(args):
        return
    if args.props.get("enclaveOptions") is None and _from_template(args):
        return
    if not truthy(get(args.props, "enclaveOptions", "enabled")):
        report(
            f"{label(args.resource_type, args.name)}: field 'enclaveOptions.enabled' is not true, but this is an "
            "enclave host (tagged or running nitro-cli run-enclave); nitro-cli cannot start an enclave. "
            "Set enclave_options enabled=True."
        )


def validate_ebs_encrypted(args: ResourceValidationArgs, report: ReportViolation) -> None:
    """See :data:`EBS_ENCRYPTED`."""
    p, where = args.props, label(args.resource_type, args.name)
    fix = "Set encrypted=\"true\" (launch template) / encrypted=True (instance, volume)."
    if args.resource_type == tokens.AWS_EC2_LAUNCH_TEMPLATE:
        bdms = [b for b in as_list(p.get("blockDeviceMappings")) if isinstance(b, Mapping) and b.get("ebs") is not None]
        if not bdms:
            report(f"{where}: field 'blockDeviceMappings' declares no EBS volume, so the root volume's encryption is the "
                   f"AMI's/account's default. Add the root device with ebs encrypted=\"true\".")
        for i, b in enumerate(bdms):
            if not truthy(get(b, "ebs", "encrypted")):
                report(f"{where}: field 'blockDeviceMappings[{i}].ebs.encrypted' is not \"true\" ({b.get('deviceName')}). {fix}")
    elif args.resource_type == tokens.AWS_EC2_INSTANCE:
        root = p.get("rootBlockDevice")
        if root is None and not _from_template(args):
            report(f"{where}: field 'rootBlockDevice' is not set, so the root volume may be unencrypted. {fix}")
        elif root is not None and not truthy(get(root, "encrypted")):
            report(f"{where}: field 'rootBlockDevice.encrypted' is not true. {fix}")
        for i, b in enumerate(as_list(p.get("ebsBlockDevices"))):
            if isinstance(b, Mapping) and not truthy(b.get("encrypted")):
                report(f"{where}: field 'ebsBlockDevices[{i}].encrypted' is not true. {fix}")
    elif args.resource_type == tokens.AWS_EBS_VOLUME:
        if not truthy(p.get("encrypted")):
            report(f"{where}: field 'encrypted' is not true. {fix}")



IMDSV2_REQUIRED = ResourceValidationPolicy(
    name="aws-ec2-imdsv2-required",
    description=(
        "Checks that launch templates and instances require IMDSv2 (metadataOptions.httpTokens = required) or "
        "disable the metadata endpoint; instances that leave it to their launch template are judged by the template."
    ),
    validate=validate_imdsv2,
    enforcement_level=EnforcementLevel.MANDATORY,
    severity=Severity.HIGH,
    remediation_steps='Set metadata_options=LaunchTemplateMetadataOptionsArgs(http_tokens="required").',
    url=f"{DOCS}/AWSEC2/latest/UserGuide/configuring-IMDS-new-instances.html",
)

ENCLAVE_ENABLED = ResourceValidationPolicy(
    name="aws-ec2-enclave-enabled",
    description=(
        "Checks that enclave-host launch templates and instances (tagged hostTagKey=hostTagValue, or whose user data "
        "runs nitro-cli run-enclave) set enclaveOptions.enabled = true."
    ),
    validate=validate_enclave_enabled,
    enforcement_level=EnforcementLevel.MANDATORY,
    severity=Severity.MEDIUM,
    config_schema=PolicyConfigSchema(
        properties={
            "hostTagKey": {"type": "string", "default": "teeform:role"},
            "hostTagValue": {"type": "string", "default": "enclave-host"},
        }
    ),
    remediation_steps="Set enclave_options=LaunchTemplateEnclaveOptionsArgs(enabled=True) on the enclave host.",
    url=f"{DOCS}/enclaves/latest/user/create-enclave.html",
)

EBS_ENCRYPTED = ResourceValidationPolicy(
    name="aws-ebs-encrypted",
    description=(
        "Checks that EBS volumes are encrypted: launch-template block devices (ebs.encrypted), instance root and "
        "EBS block devices, and aws.ebs.Volume."
    ),
    validate=validate_ebs_encrypted,
    enforcement_level=EnforcementLevel.ADVISORY,
    severity=Severity.HIGH,
    remediation_steps='Declare the root device with ebs=LaunchTemplateBlockDeviceMappingEbsArgs(encrypted="true").',
    url=f"{DOCS}/ebs/latest/userguide/ebs-encryption.html",
)

POLICIES = (IMDSV2_REQUIRED, ENCLAVE_ENABLED, EBS_ENCRYPTED)
