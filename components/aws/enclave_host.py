"""``EnclaveHost``: the EC2 parent instance that runs one Nitro Enclave from a measured EIF.

Children: an IAM role (EC2 may assume it), a least-privilege inline policy (``s3:GetObject`` on the
EIF object only; ``kms:Decrypt``/``GenerateDataKey``/``GenerateRandom`` on the attested key only --
the key policy adds the attestation conditions), an instance profile, a launch template (enclave
option on, IMDSv2 required with hop limit 1, encrypted root EBS volume, cloud-init user data) and
one instance from that template.

The user data (:func:`render_user_data`, a pure function) installs the Nitro Enclaves CLI, reserves
the enclave's vCPUs and memory in ``allocator.yaml``, downloads the EIF from S3, checks its SHA-384
against the manifest **before** ``nitro-cli run-enclave``, and runs a ``vsock-proxy`` on port 8000
whose allowlist holds only ``kms.<region>.amazonaws.com:443``. Source of every step:
``shared/reference/eif-nitro.md`` §6.2-§6.5.

Instance types are checked when the program is constructed (:func:`check_enclave_fit`) against a
small table (:data:`INSTANCE_TYPES`) and the rules of eif-nitro.md §6.1 and §3.4, so a too-small or
excluded type fails ``teeform preview`` / ``pulumi preview`` with a clear error instead of failing
at boot.

The role gets an explicit name so its ARN (and therefore the key policy and the user data) is
known at ``pulumi preview`` time; CrossGuard cannot check values that are unknown during a preview
(``shared/reference/pulumi.md`` §3.2).
"""

from __future__ import annotations

import base64
import json
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

import pulumi
import pulumi_aws as aws

from teeform.errors import TeeformError

# ----------------------------------------------------------------------------- instance types


@dataclass(frozen=True)
class InstanceTypeInfo:
    """One EC2 instance type: vCPUs, memory (MiB) and architecture (``x86_64`` or ``arm64``)."""

    name: str
    vcpus: int
    memory_mib: int
    arch: str

    @property
    def family(self) -> str:
        """``m6i`` for ``m6i.xlarge``."""
        return self.name.split(".", 1)[0]

    @property
    def smt(self) -> bool:
        """Intel/AMD types run two hardware threads per core; Graviton has no SMT."""
        return self.arch == "x86_64"

    @property
    def enclave_capable(self) -> bool:
        """False for the families the Nitro Enclaves user guide excludes (eif-nitro.md §6.1)."""
        excluded = EXCLUDED_FAMILIES_ARM if self.arch == "arm64" else EXCLUDED_FAMILIES_X86
        return self.family not in excluded

    @property
    def min_vcpus(self) -> int:
        """Smallest size that can host an enclave: 4 vCPUs on Intel/AMD, 2 on Graviton (§6.1)."""
        return 4 if self.smt else 2

    @property
    def parent_min_vcpus(self) -> int:
        """vCPUs the parent must keep: 2 with SMT (a whole core), 1 without (§6.1)."""
        return 2 if self.smt else 1


#: Families excluded from Nitro Enclaves (eif-nitro.md §6.1, UG "Requirements", 2024 text).
EXCLUDED_FAMILIES_X86 = frozenset(
    {"c7a", "c7i", "g4ad", "m7a", "m7i", "m7i-flex", "r7a", "r7i", "r7iz", "t3", "t3a", "trn1", "trn1n", "vt1"}
)
EXCLUDED_FAMILIES_ARM = frozenset(
    {"a1", "c7gd", "c7gn", "g5g", "hpc7g", "im4gn", "is4gen", "m7g", "m7gd", "r7g", "r7gd", "t4g"}
)


def _types(arch: str, rows: str) -> dict[str, InstanceTypeInfo]:
    out = {}
    for row in rows.split():
        name, vcpus, gib = row.split(":")
        out[name] = InstanceTypeInfo(name, int(vcpus), int(gib) * 1024, arch)
    return out


#: The instance types teeform knows (vCPUs and memory from the EC2 instance-type pages). Small on
#: purpose: an unknown type is an error that lists these, so a typo never reaches EC2.
INSTANCE_TYPES: dict[str, InstanceTypeInfo] = {
    **_types(
        "x86_64",
        "m5.large:2:8 m5.xlarge:4:16 m5.2xlarge:8:32 m5.4xlarge:16:64 "
        "m6i.large:2:8 m6i.xlarge:4:16 m6i.2xlarge:8:32 m6i.4xlarge:16:64 "
        "m6a.large:2:8 m6a.xlarge:4:16 m6a.2xlarge:8:32 m6a.4xlarge:16:64 "
        "c5.xlarge:4:8 c5.2xlarge:8:16 c6i.xlarge:4:8 c6i.2xlarge:8:16 c6a.xlarge:4:8 c6a.2xlarge:8:16 "
        "r5.xlarge:4:32 r6i.xlarge:4:32 r6i.2xlarge:8:64 r6a.xlarge:4:32 "
        "t3.xlarge:4:16 t3a.xlarge:4:16 m7i.xlarge:4:16 m7a.xlarge:4:16 c7i.xlarge:4:8",
    ),
    **_types(
        "arm64",
        "m6g.large:2:8 m6g.xlarge:4:16 m6g.2xlarge:8:32 c6g.large:2:4 c6g.xlarge:4:8 c6g.2xlarge:8:16 "
        "r6g.large:2:16 r6g.xlarge:4:32 c7g.large:2:4 c7g.xlarge:4:8 t4g.xlarge:4:16 m7g.xlarge:4:16",
    ),
}

#: Memory teeform leaves to the parent OS, nitro-cli, the allocator and vsock-proxy (a teeform
#: choice: Amazon Linux 2023 with these services runs well in 1 GiB).
PARENT_MIN_MEMORY_MIB = 1024

#: ``nitro-cli run-enclave`` needs enclave memory >= 4 x the EIF size, and the UG minimum is 64 MiB
#: (eif-nitro.md §3.4).
EIF_MEMORY_RATIO = 4
ENCLAVE_MIN_MEMORY_MIB = 64


def check_enclave_fit(
    instance_type: str, cpu_count: int, memory_mib: int, eif_size: int, *, field_prefix: str = ""
) -> InstanceTypeInfo:
    """Check that ``instance_type`` can host an enclave of ``cpu_count`` vCPUs and ``memory_mib`` MiB
    running an EIF of ``eif_size`` bytes.

    Rules (eif-nitro.md §6.1, §3.4): the type is known and its family not excluded; >= 4 vCPUs on
    Intel/AMD, >= 2 on Graviton; with SMT the enclave gets whole cores (an even vCPU count); the
    parent keeps >= 2 vCPUs with SMT (1 without); enclave memory >= 64 MiB and >= 4 x the EIF size;
    the parent keeps :data:`PARENT_MIN_MEMORY_MIB`.

    Returns:
        the instance type's :class:`InstanceTypeInfo`.

    Raises:
        TeeformError: naming the field (``<field_prefix>.instanceType`` or ``.enclave.*``) and the fix.
    """
    info = INSTANCE_TYPES.get(instance_type)
    if info is None:
        raise TeeformError(
            f"unknown instance type {instance_type!r}; known: {', '.join(sorted(INSTANCE_TYPES))}",
            field=f"{field_prefix}.instanceType",
            hint="pick a known type, or add it to INSTANCE_TYPES in components/aws/enclave_host.py",
        )
    fld_type, fld_cpu, fld_mem = f"{field_prefix}.instanceType", f"{field_prefix}.enclave.cpuCount", f"{field_prefix}.enclave.memoryMib"
    maker = "Graviton" if info.arch == "arm64" else "Intel/AMD"
    if not info.enclave_capable:
        raise TeeformError(
            f"{instance_type}: the {info.family} family does not support Nitro Enclaves",
            field=fld_type,
            hint="use e.g. m6i.xlarge, c6i.xlarge, r6i.xlarge (Intel), m6a.xlarge (AMD) or m6g.large (Graviton)",
        )
    if info.vcpus < info.min_vcpus:
        raise TeeformError(
            f"{instance_type} has {info.vcpus} vCPUs; Nitro Enclaves on {maker} instances need at least {info.min_vcpus}",
            field=fld_type,
            hint=f"use {info.family}.xlarge or larger" if info.smt else f"use {info.family}.large or larger",
        )
    if info.smt and cpu_count % 2:
        raise TeeformError(
            f"{instance_type} has SMT, so the enclave needs whole cores (an even vCPU count), got {cpu_count}",
            field=fld_cpu,
        )
    if info.vcpus - cpu_count < info.parent_min_vcpus:
        raise TeeformError(
            f"{instance_type} has {info.vcpus} vCPUs; an enclave of {cpu_count} leaves the parent fewer than "
            f"{info.parent_min_vcpus}",
            field=fld_cpu,
            hint=f"use at most {info.vcpus - info.parent_min_vcpus} enclave vCPUs or a larger instance type",
        )
    eif_mib = -(-eif_size // (1024 * 1024))
    need = max(ENCLAVE_MIN_MEMORY_MIB, EIF_MEMORY_RATIO * eif_mib)
    if memory_mib < need:
        raise TeeformError(
            f"enclave memory {memory_mib} MiB is too small: nitro-cli needs at least {need} MiB "
            f"(4 x the {eif_mib} MiB EIF, and at least {ENCLAVE_MIN_MEMORY_MIB} MiB)",
            field=fld_mem,
        )
    if memory_mib > info.memory_mib - PARENT_MIN_MEMORY_MIB:
        raise TeeformError(
            f"{instance_type} has {info.memory_mib} MiB; an enclave of {memory_mib} MiB leaves the parent less than "
            f"{PARENT_MIN_MEMORY_MIB} MiB",
            field=fld_mem,
            hint=f"use at most {info.memory_mib - PARENT_MIN_MEMORY_MIB} MiB or a larger instance type",
        )
    return info


def al2023_ami_parameter(arch: str) -> str:
    """The public SSM parameter holding the latest Amazon Linux 2023 AMI id for ``arch``."""
    return f"/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-{arch}"


# ----------------------------------------------------------------------------- user data

#: Where the host keeps the EIF.
EIF_LOCAL_PATH = "/opt/teeform/enclave.eif"
#: vsock port of the KMS proxy; the AWS SDKs' enclave tooling defaults to 8000 (eif-nitro.md §6.4).
VSOCK_PROXY_PORT = 8000
_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d+$")
_HEX96 = re.compile(r"^[0-9a-f]{96}$")


@dataclass(frozen=True)
class UserDataSpec:
    """What the bootstrap script needs.

    Attributes:
        region: AWS region (the KMS endpoint is ``kms.<region>.amazonaws.com``).
        bucket: S3 bucket of the EIF; eif_key: its object key.
        eif_sha384: expected SHA-384 of the EIF file (manifest ``artifact.sha384``, 96 lowercase hex).
        cpu_count: enclave vCPUs; memory_mib: enclave memory (MiB); enclave_cid: vsock CID (>= 4).
        debug: run with ``--debug-mode`` (all-zero PCRs; the key will not release to it).
    """

    region: str
    bucket: str
    eif_key: str
    eif_sha384: str
    cpu_count: int
    memory_mib: int
    enclave_cid: int = 16
    debug: bool = False


def render_user_data(spec: UserDataSpec) -> str:
    """The cloud-init user data (a bash script) of the enclave host. Pure: same spec, same text.

    Raises:
        TeeformError: the region or the SHA-384 is malformed, or the CID is below 4.
    """
    if not _REGION.match(spec.region):
        raise TeeformError(f"not an AWS region name: {spec.region!r}", field="region")
    if not _HEX96.match(spec.eif_sha384):
        raise TeeformError(f"EIF sha384 must be 96 lowercase hex digits, got {spec.eif_sha384!r}")
    if spec.enclave_cid < 4:
        raise TeeformError(f"enclave CID must be >= 4, got {spec.enclave_cid}")
    kms_host = f"kms.{spec.region}.amazonaws.com"
    uri = shlex.quote(f"s3://{spec.bucket}/{spec.eif_key}")
    run = (
        f"nitro-cli run-enclave --eif-path {EIF_LOCAL_PATH} --cpu-count {spec.cpu_count} "
        f"--memory {spec.memory_mib} --enclave-cid {spec.enclave_cid}"
    )
    if spec.debug:
        run += " --debug-mode"
    return f"""#!/bin/bash
# teeform enclave host bootstrap, generated by components/aws/enclave_host.py (do not edit).
# Steps follow shared/reference/eif-nitro.md section 6 (packages, allocator, vsock-proxy, run-enclave).
set -euo pipefail
umask 022

# 1. Nitro Enclaves CLI: nitro-cli, vsock-proxy, the allocator service (Amazon Linux 2023).
dnf install -y aws-nitro-enclaves-cli

# 2. Reserve the enclave's vCPUs and memory, then start the allocator.
install -d -m 0755 /etc/nitro_enclaves
cat > /etc/nitro_enclaves/allocator.yaml <<'EOF'
---
memory_mib: {spec.memory_mib}
cpu_count: {spec.cpu_count}
EOF
systemctl enable --now nitro-enclaves-allocator.service

# 3. vsock-proxy: the enclave may reach AWS KMS in {spec.region} and nothing else.
cat > /etc/nitro_enclaves/vsock-proxy.yaml <<'EOF'
allowlist:
- {{address: {kms_host}, port: 443}}
EOF
cat > /etc/systemd/system/teeform-vsock-proxy.service <<'EOF'
[Unit]
Description=teeform vsock-proxy: enclave port {VSOCK_PROXY_PORT} -> {kms_host}:443
After=network-online.target
Wants=network-online.target

[Service]
ExecStart=/usr/bin/vsock-proxy {VSOCK_PROXY_PORT} {kms_host} 443 --config /etc/nitro_enclaves/vsock-proxy.yaml
Restart=always

[Install]
WantedBy=multi-user.target
EOF

# 4. Fetch the EIF, check it against the manifest's SHA-384, and only then run it (on every boot).
install -d -m 0700 /opt/teeform
cat > /usr/local/sbin/teeform-start-enclave <<'EOF'
#!/bin/bash
set -euo pipefail
aws s3 cp --region {spec.region} --only-show-errors {uri} {EIF_LOCAL_PATH}
if ! echo '{spec.eif_sha384}  {EIF_LOCAL_PATH}' | sha384sum --check --strict --quiet -; then
  echo "teeform: {EIF_LOCAL_PATH} does not match the manifest's sha384; refusing to run it" >&2
  exit 1
fi
exec {run}
EOF
chmod 0755 /usr/local/sbin/teeform-start-enclave
cat > /etc/systemd/system/teeform-enclave.service <<'EOF'
[Unit]
Description=teeform: verify and run the measured enclave
After=nitro-enclaves-allocator.service teeform-vsock-proxy.service network-online.target
Requires=nitro-enclaves-allocator.service
Wants=network-online.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/sbin/teeform-start-enclave

[Install]
WantedBy=multi-user.target
EOF
systemctl daemon-reload
systemctl enable --now teeform-vsock-proxy.service teeform-enclave.service
"""


# ----------------------------------------------------------------------------- component


@dataclass
class EnclaveHostArgs:
    """Inputs of :class:`EnclaveHost`.

    Attributes:
        instance_type: checked with :func:`check_enclave_fit` by the caller.
        ami_id: parent AMI (Amazon Linux 2023; the user data uses dnf).
        subnet_id, security_group_id: where the instance lives.
        role_name: explicit IAM role name (so the role ARN is known at preview).
        account_id, partition: of the caller, to form the role ARN and the S3 object ARN.
        key_arn: the attested KMS key.
        user_data: the bootstrap spec except ``bucket`` (filled from ``eif_bucket``).
        eif_bucket: S3 bucket holding the EIF (``user_data.eif_key`` is the object key).
        root_volume_gib: root EBS volume size (GiB), encrypted.
        tags: extra tags for every child.
    """

    instance_type: str
    ami_id: pulumi.Input[str]
    subnet_id: pulumi.Input[str]
    security_group_id: pulumi.Input[str]
    role_name: str
    account_id: pulumi.Input[str]
    partition: pulumi.Input[str]
    key_arn: pulumi.Input[str]
    user_data: UserDataSpec
    eif_bucket: pulumi.Input[str]
    root_volume_gib: int = 16
    tags: Mapping[str, str] = field(default_factory=dict)


#: Tag marking the enclave host's launch template and instance (read by ``aws-ec2-enclave-enabled``).
HOST_ROLE_TAG = ("teeform:role", "enclave-host")


class EnclaveHost(pulumi.ComponentResource):
    """IAM role + policy + instance profile, launch template and instance of an enclave parent.

    Outputs: ``role_arn``, ``instance_id``, ``launch_template_id``. ``role`` (the ``aws.iam.Role``)
    is exposed so a key can ``depends_on`` it (KMS rejects policies naming missing principals).
    """

    role_arn: pulumi.Output[str]
    instance_id: pulumi.Output[str]

    def __init__(self, name: str, args: EnclaveHostArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("teeform:aws:EnclaveHost", name, None, opts)
        tags = {**args.tags, HOST_ROLE_TAG[0]: HOST_ROLE_TAG[1]}
        self._create_identity(name, args, tags)
        self._create_instance(name, args, tags)
        self.register_outputs(
            {"role_arn": self.role_arn, "instance_id": self.instance_id, "launch_template_id": self.launch_template.id}
        )

    def _create_identity(self, name: str, args: EnclaveHostArgs, tags: Mapping[str, str]) -> None:
        child = pulumi.ResourceOptions(parent=self)
        assume = {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}
            ],
        }
        self.role = aws.iam.Role(
            f"{name}-role",
            name=args.role_name,
            description="teeform enclave host (parent instance) role",
            assume_role_policy=json.dumps(assume),
            tags=dict(tags),
            opts=child,
        )
        # Formed from the explicit name (not role.arn) so it is known during `pulumi preview`; it
        # still depends on the role through role.name.
        self.role_arn = pulumi.Output.all(args.partition, args.account_id, self.role.name).apply(
            lambda v: f"arn:{v[0]}:iam::{v[1]}:role/{v[2]}"
        )
        key = args.user_data.eif_key
        policy = pulumi.Output.all(args.partition, args.eif_bucket, args.key_arn).apply(
            lambda v: json.dumps(host_role_policy(partition=v[0], bucket=v[1], eif_key=key, key_arn=v[2]), indent=2)
        )
        self.role_policy = aws.iam.RolePolicy(f"{name}-policy", role=self.role.name, policy=policy, opts=child)
        self.instance_profile = aws.iam.InstanceProfile(
            f"{name}-profile", name=args.role_name, role=self.role.name, tags=dict(tags), opts=child
        )

    def _create_instance(self, name: str, args: EnclaveHostArgs, tags: Mapping[str, str]) -> None:
        child = pulumi.ResourceOptions(parent=self)
        spec = args.user_data
        user_data = pulumi.Output.from_input(args.eif_bucket).apply(
            lambda bucket: base64.b64encode(render_user_data(replace(spec, bucket=bucket)).encode()).decode()
        )
        self.launch_template = aws.ec2.LaunchTemplate(
            f"{name}-lt",
            description="teeform Nitro Enclave parent",
            image_id=args.ami_id,
            instance_type=args.instance_type,
            enclave_options=aws.ec2.LaunchTemplateEnclaveOptionsArgs(enabled=True),
            metadata_options=aws.ec2.LaunchTemplateMetadataOptionsArgs(
                http_endpoint="enabled", http_tokens="required", http_put_response_hop_limit=1
            ),
            iam_instance_profile=aws.ec2.LaunchTemplateIamInstanceProfileArgs(arn=self.instance_profile.arn),
            block_device_mappings=[
                aws.ec2.LaunchTemplateBlockDeviceMappingArgs(
                    device_name="/dev/xvda",  # the Amazon Linux 2023 root device
                    ebs=aws.ec2.LaunchTemplateBlockDeviceMappingEbsArgs(
                        encrypted="true", volume_size=args.root_volume_gib, volume_type="gp3", delete_on_termination="true"
                    ),
                )
            ],
            user_data=user_data,
            update_default_version=True,
            tag_specifications=[
                aws.ec2.LaunchTemplateTagSpecificationArgs(resource_type=rt, tags=dict(tags)) for rt in ("instance", "volume")
            ],
            tags=dict(tags),
            opts=child,
        )
        self.instance = aws.ec2.Instance(
            f"{name}-instance",
            launch_template=aws.ec2.InstanceLaunchTemplateArgs(
                id=self.launch_template.id, version=self.launch_template.latest_version.apply(str)
            ),
            subnet_id=args.subnet_id,
            vpc_security_group_ids=[args.security_group_id],
            tags=dict(tags),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.role_policy]),
        )
        self.instance_id = self.instance.id


def host_role_policy(*, partition: str, bucket: str, eif_key: str, key_arn: str) -> dict[str, object]:
    """The host role's inline policy: read the one EIF object, use the one key (attestation is
    enforced by the key policy). ``kms:GenerateRandom`` has no resource type in IAM, so a grant on a
    key ARN does not authorise it; it is listed because the key policy also names it (eif-nitro.md §5.3)."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "ReadEif", "Effect": "Allow", "Action": "s3:GetObject", "Resource": f"arn:{partition}:s3:::{bucket}/{eif_key}"},
            {
                "Sid": "UseAttestedKey",
                "Effect": "Allow",
                "Action": ["kms:Decrypt", "kms:GenerateDataKey", "kms:GenerateRandom"],
                "Resource": key_arn,
            },
        ],
    }

