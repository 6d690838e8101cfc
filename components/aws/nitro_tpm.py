"""Builders of the ``aws``/``nitro-tpm`` and ``aws``/``sev-snp`` targets: a teeform VM image on EC2 whose KMS
key is gated on the NitroTPM PCRs of the instance.

For each target (plug-ins :mod:`teeform.targets.aws_nitro_tpm`, :mod:`teeform.targets.aws_sev_snp`):

1. :class:`~components.aws.vm_image_pipeline.VmImagePipeline`: the deployed manifest's raw disk in a
   TLS-only bucket, ``ebs.SnapshotImport(format="RAW")`` through the ``vmimport`` service role, and a
   UEFI + NitroTPM + IMDSv2 AMI;
2. :class:`~components.aws.enclave_network.EnclaveNetwork` (the Nitro target's network, reused as is:
   a created VPC's default security group closed, no ingress unless listed, egress HTTPS only, and with
   ``network.private`` no internet route plus S3 gateway and KMS interface endpoints);
3. :class:`TpmVm`: the instance role (KMS Decrypt/GenerateDataKey on the one key; the key policy adds
   the attestation conditions), its instance profile, and one instance from the AMI (IMDSv2 required
   with hop limit 1, encrypted gp3 root volume; for ``sev-snp`` ``cpu_options.amd_sev_snp="enabled"``);
4. :class:`~components.aws.tpm_key.TpmAttestedKey`: one release statement per allowed manifest on
   ``kms:RecipientAttestation:NitroTPMPCR4`` + ``NitroTPMPCR12`` (``aws:SourceVpce`` too when private).

Configuration errors (disk missing or not matching the manifest, a manifest without the pinned PCR
predictions, an SEV-SNP region AWS does not offer, the key lockout check) stop the program before any
resource is registered, naming the stack file and the target's field.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_aws as aws

from components.aws.enclave_network import EnclaveNetwork, EnclaveNetworkArgs
from components.aws.nitro import _in_stack, key_principals, lockout_checked_deployer, physical_name
from components.aws.tpm_key import TpmAttestedKey, TpmKeyArgs, tpm_release_statements
from components.aws.vm_image_pipeline import VmImagePipeline, VmImagePipelineArgs
from components.measurement_manifest import TARGET_TAG
from components.registry import TargetContext
from teeform.errors import TeeformError
from teeform.manifest import Manifest
from teeform.targets.aws_nitro_tpm import NITROTPM_PCR_MEASUREMENTS, VmSettings
from teeform.targets.aws_sev_snp import check_snp_region

#: Tag naming the TEE type of a VM's instance (read by ``aws-ec2-sev-snp-enabled``).
TEE_TAG = "teeform:tee"
#: Tag marking a teeform VM instance (not an enclave host: ``aws-ec2-enclave-enabled`` does not apply).
VM_ROLE_TAG = ("teeform:role", "attested-vm")
#: The measurements shown in the ``nitrotpm_measurements`` output: NitroTPM PCR -> manifest name.
SHOWN = {"PCR4": "pcr4_sha384", "PCR11": "pcr11_sha384", "PCR12": "pcr12_sha384", "roothash": "roothash"}


def nitrotpm_measurements(manifest: Manifest) -> dict[str, str]:
    """The ``nitrotpm_measurements`` output of one manifest: ``{"PCR4", "PCR11", "PCR12", "roothash"}`` ->
    lowercase hex, for the values the manifest records (the PCRs as SHA-384, the NitroTPM bank)."""
    return {k: manifest.measurements[m] for k, m in SHOWN.items() if m in manifest.measurements}


def vm_role_policy(key_arn: str) -> dict[str, Any]:
    """The instance role's inline policy: ``kms:Decrypt`` and ``kms:GenerateDataKey`` on the one key (the
    key policy requires the NitroTPM attestation; an IAM grant alone releases nothing to a role the
    key policy does not name with conditions)."""
    return {
        "Version": "2012-10-17",
        "Statement": [{"Sid": "UseAttestedKey", "Effect": "Allow", "Action": ["kms:Decrypt", "kms:GenerateDataKey"],
                       "Resource": key_arn}],
    }


@dataclass
class TpmVmArgs:
    """Inputs of :class:`TpmVm`.

    Attributes:
        instance_type: EC2 type (checked by the plug-in).
        ami_id: the UEFI + NitroTPM AMI.
        subnet_id, security_group_id: where the instance lives.
        role_name: explicit instance-role name (so its ARN is known at preview).
        account_id, partition: for the role ARN.
        key_arn: the attested key (the role's policy names it).
        sev_snp: launch with ``cpu_options.amd_sev_snp = "enabled"``.
        root_volume_gib: root volume size (the AMI's snapshot size or more); None = the snapshot's.
        tags: tags of every child.
    """

    instance_type: str
    ami_id: pulumi.Input[str]
    subnet_id: pulumi.Input[str]
    security_group_id: pulumi.Input[str]
    role_name: str
    account_id: pulumi.Input[str]
    partition: pulumi.Input[str]
    key_arn: pulumi.Input[str]
    sev_snp: bool = False
    root_volume_gib: int | None = None
    tags: Mapping[str, str] = field(default_factory=dict)


class TpmVm(pulumi.ComponentResource):
    """IAM role + policy + instance profile and one instance of a NitroTPM-attested VM.

    Outputs: ``role_arn``, ``instance_id``. ``role`` is exposed so the key can ``depends_on`` it.
    """

    role_arn: pulumi.Output[str]
    instance_id: pulumi.Output[str]

    def __init__(self, name: str, args: TpmVmArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("teeform:aws:TpmVm", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        tags = dict(args.tags)
        assume = {"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]}
        self.role = aws.iam.Role(f"{name}-role", name=args.role_name, description="teeform NitroTPM-attested VM role",
                                 assume_role_policy=json.dumps(assume), tags=tags, opts=child)
        self.role_arn = pulumi.Output.all(args.partition, args.account_id, self.role.name).apply(
            lambda v: f"arn:{v[0]}:iam::{v[1]}:role/{v[2]}")
        policy = aws.iam.RolePolicy(
            f"{name}-policy", role=self.role.name,
            policy=pulumi.Output.from_input(args.key_arn).apply(lambda k: json.dumps(vm_role_policy(k), indent=2)),
            opts=child,
        )
        profile = aws.iam.InstanceProfile(f"{name}-profile", name=args.role_name, role=self.role.name, tags=tags,
                                          opts=child)
        self.instance = aws.ec2.Instance(
            f"{name}-instance",
            ami=args.ami_id,
            instance_type=args.instance_type,
            subnet_id=args.subnet_id,
            vpc_security_group_ids=[args.security_group_id],
            iam_instance_profile=profile.name,
            metadata_options=aws.ec2.InstanceMetadataOptionsArgs(
                http_endpoint="enabled", http_tokens="required", http_put_response_hop_limit=1),
            root_block_device=aws.ec2.InstanceRootBlockDeviceArgs(
                encrypted=True, volume_type="gp3", volume_size=args.root_volume_gib, delete_on_termination=True),
            cpu_options=aws.ec2.InstanceCpuOptionsArgs(amd_sev_snp="enabled") if args.sev_snp else None,
            tags=tags,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[policy]),
        )
        self.instance_id = self.instance.id
        self.register_outputs({"role_arn": self.role_arn, "instance_id": self.instance_id})


def _build(ctx: TargetContext, *, sev_snp: bool) -> dict[str, Any]:
    t, stack = ctx.target, ctx.stack
    s = t.settings
    assert isinstance(s, VmSettings)
    fld = f"teeform:targets[{t.name}]"
    if sev_snp and (msg := check_snp_region(t.region)) is not None:
        raise TeeformError(msg, path=stack.source, field=f"{fld}.region",
                           hint="use one of those regions, or check the current EC2 SEV-SNP requirements page")
    deployed = ctx.deployed
    artifact = deployed.manifest.artifact
    disk_sha384 = artifact.sha384  # the raw disk's object key and AMI name (vm-image manifests record it)
    if disk_sha384 is None:
        raise TeeformError("the manifest's artifact has no sha384; the raw disk's S3 object key "
                           "(vm-image/sha384/<hex>.raw) and AMI name are named by it", path=deployed.path,
                           field="artifact.sha384", hint="rebuild the image with `teeform build vm-image` (it records "
                           "artifact.sha384)")
    release = ctx.key_release()
    assert release is not None  # the VM plug-ins always have a key gate
    # The raw disk itself is checked by VmImagePipeline, the first component created below.
    try:
        tpm_release_statements(release, "arn:aws:iam::000000000000:role/check")
    except TeeformError as exc:
        raise _in_stack(exc, stack.source, fld) from exc

    locked = s.key.locked
    provider = aws.Provider(f"{t.name}-aws", region=t.region)
    opts = pulumi.ResourceOptions(providers=[provider])
    invoke = pulumi.InvokeOutputOptions(provider=provider)
    identity = aws.get_caller_identity_output(opts=invoke)
    known_caller = lockout_checked_deployer(s.key, provider, stack.source, fld)  # before any resource
    account_id = identity.account_id
    partition = identity.arn.apply(lambda a: a.split(":")[1])
    tags = {"teeform:stack": stack.stack, TARGET_TAG: t.name, "teeform:environment": stack.environment}

    image = VmImagePipeline(
        f"{t.name}-image",
        VmImagePipelineArgs(
            bucket_name=account_id.apply(
                lambda a: physical_name([ctx.project, stack.stack, t.name, "disk", a, t.region], 63, lower=True)),
            role_name=physical_name([ctx.project, stack.stack, t.name, "vmimport"], 64),
            ami_name=physical_name([ctx.project, stack.stack, t.name, deployed.manifest.name,
                                    disk_sha384[:16]], 128),
            disk_path=deployed.artifact_path, disk_size=artifact.size, disk_sha384=disk_sha384,
            manifest_path=deployed.path, force_destroy=not stack.is_production, tags=tags,
        ),
        opts,
    )
    network = EnclaveNetwork(
        f"{t.name}-net",
        EnclaveNetworkArgs(vpc_id=s.network.vpc_id, subnet_id=s.network.subnet_id, cidr=s.network.cidr,
                           ingress=s.network.ingress, tags=tags, private=s.network.private, region=t.region),
        opts,
    )
    key_arn: pulumi.Output[str]
    resolve_key_arn: Callable[[pulumi.Output[str]], None]
    key_arn, resolve_key_arn = pulumi.deferred_output()
    vm = TpmVm(
        f"{t.name}-vm",
        TpmVmArgs(
            instance_type=s.instance_type, ami_id=image.ami_id, subnet_id=network.subnet_id,
            security_group_id=network.security_group_id,
            role_name=physical_name([ctx.project, stack.stack, t.name, "vm"], 64),
            account_id=account_id, partition=partition, key_arn=key_arn, sev_snp=sev_snp,
            tags={**tags, VM_ROLE_TAG[0]: VM_ROLE_TAG[1], TEE_TAG: t.tee.value},
        ),
        opts,
    )
    admins, caller = key_principals(s.key, known_caller, identity, partition, invoke)
    key = TpmAttestedKey(
        f"{t.name}-key",
        TpmKeyArgs(
            vm_role_arn=vm.role_arn, deployer_arn=caller,
            admin_arns=admins, release=release, deletion_window_days=s.key.deletion_window_days,
            protect=s.key.protect, alias_name="alias/" + physical_name([ctx.project, stack.stack, t.name], 200),
            break_glass_arn=s.key.break_glass_role if locked else None, source_vpce=network.kms_endpoint_id,
            tags=tags,
        ),
        pulumi.ResourceOptions(providers=[provider], depends_on=[vm.role]),
    )
    resolve_key_arn(key.key_arn)
    pulumi.log.info(f"target {t.name!r}: key gate: {t.plugin.gate}")
    outputs: dict[str, Any] = {
        "nitrotpm_measurements": {lm.key: nitrotpm_measurements(lm.manifest) for lm in ctx.manifests},
        "ami_id": image.ami_id,
        "instance_id": vm.instance_id,
        "kms_key_arn": key.key_arn,
        "disk_uri": image.disk_uri,
    }
    if sev_snp:
        outputs["amd_sev_snp"] = vm.instance.cpu_options.apply(lambda c: c.amd_sev_snp if c else None)
    return outputs


def build_nitro_tpm_target(ctx: TargetContext) -> dict[str, Any]:
    """Create the components of one ``aws``/``nitro-tpm`` target and return its outputs in export order:
    ``nitrotpm_measurements``, ``ami_id``, ``instance_id``, ``kms_key_arn``, ``disk_uri``.

    Raises:
        TeeformError: see the module docstring.
    """
    return _build(ctx, sev_snp=False)


def build_sev_snp_target(ctx: TargetContext) -> dict[str, Any]:
    """As :func:`build_nitro_tpm_target` for ``aws``/``sev-snp`` (``cpu_options.amd_sev_snp="enabled"``),
    plus the ``amd_sev_snp`` output. The key is gated on the same NitroTPM PCRs (module docstring of
    :mod:`teeform.targets.aws_sev_snp`: it trusts the Nitro hypervisor, no SNP report is checked).

    Raises:
        TeeformError: also when the target's region offers no SEV-SNP (field ``region``).
    """
    return _build(ctx, sev_snp=True)


__all__ = ["build_nitro_tpm_target", "build_sev_snp_target", "TpmVm", "TpmVmArgs", "nitrotpm_measurements",
           "vm_role_policy", "TEE_TAG", "NITROTPM_PCR_MEASUREMENTS"]
