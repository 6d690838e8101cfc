"""``EnclaveHost``: the EC2 parent instance that runs one Nitro Enclave from a measured EIF.

Children: an IAM role (EC2 may assume it), a least-privilege inline policy (``s3:GetObject`` on the
EIF object only; ``kms:Decrypt``/``GenerateDataKey`` on the attested key only -- the key policy adds
the attestation conditions; ``kms:GenerateRandom`` is granted by ``AttestedKey``'s IAM policy), an instance profile, a launch template (enclave
option on, IMDSv2 required with hop limit 1, encrypted root EBS volume, cloud-init user data) and
one instance from that template.

The user data (:func:`render_user_data`, a pure function) installs the Nitro Enclaves CLI, reserves
the enclave's vCPUs and memory in ``allocator.yaml``, downloads the EIF from S3, checks its SHA-256
against the manifest's ``artifact.sha256`` (``sha256sum --check``) **before** ``nitro-cli run-enclave``,
and runs a ``vsock-proxy`` on port 8000 whose allowlist holds only ``kms.<region>.amazonaws.com:443``. Source of every step:
``shared/reference/eif-nitro.md`` §6.2-§6.5. It also installs the parent side of the enclave runtime
(:mod:`teeform.enclave_runtime.parent`: IMDSv2 credentials and the sealed secrets on vsock port 9100,
the enclave's log stream from port 9101 to the journal, optionally on to CloudWatch Logs) and runs the
enclave under a unit that notices when it stops and restarts it with a bounded backoff
(:func:`systemd_units`; ``docs/enclave-runtime.md``).

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
#: Where the credentials server reads the sealed secrets (``teeform seal`` output) it hands to the enclave.
SEALED_LOCAL_PATH = "/opt/teeform/sealed.json"
#: Where the parent side of the enclave runtime is unpacked (``teeform.enclave_runtime.bundle``).
PARENT_LIB = "/usr/local/lib/teeform-parent"
#: The enclave's log stream, also written here for the CloudWatch agent.
ENCLAVE_LOG_FILE = "/var/log/teeform/enclave.log"
#: ``--enclave-name`` given to nitro-cli, so the monitor and ``terminate-enclave`` find it.
ENCLAVE_NAME = "teeform"
#: vsock port of the KMS proxy; the AWS SDKs' enclave tooling defaults to 8000 (eif-nitro.md §6.4).
VSOCK_PROXY_PORT = 8000
#: EC2 user data limit in bytes, before base64 (EC2 User Guide, "Run commands when you launch an EC2
#: instance with user data input").
USER_DATA_LIMIT = 16384
#: Restart policy of the enclave unit: wait RestartSec between tries; more than StartLimitBurst
#: starts within StartLimitIntervalSec put the unit in the failed state (systemd.unit(5),
#: systemd.service(5)) instead of looping forever.
ENCLAVE_RESTART_SEC = 15
ENCLAVE_START_LIMIT_INTERVAL_SEC = 900
ENCLAVE_START_LIMIT_BURST = 5
_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d+$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_LOG_GROUP = re.compile(r"^[A-Za-z0-9_./#-]{1,512}$")  # CloudWatch Logs CreateLogGroup logGroupName pattern
_S3_KEY = re.compile(r"^[A-Za-z0-9!_.*()/-]{1,1024}$")  # S3 "safe characters" for object keys, minus the quote


@dataclass(frozen=True)
class UserDataSpec:
    """What the bootstrap script needs.

    Attributes:
        region: AWS region (the KMS endpoint is ``kms.<region>.amazonaws.com``).
        bucket: S3 bucket of the EIF; eif_key: its object key.
        eif_sha256: expected SHA-256 of the EIF file (manifest ``artifact.sha256``, 64 lowercase hex).
        cpu_count: enclave vCPUs; memory_mib: enclave memory (MiB); enclave_cid: vsock CID (>= 4).
        debug: run with ``--debug-mode`` (all-zero PCRs; the key will not release to it); also
            forwards ``nitro-cli console`` to the journal (the console exists only in debug mode).
        sealed_key: S3 object key (in ``bucket``) of the ``teeform seal`` output, fetched to
            :data:`SEALED_LOCAL_PATH` before each enclave start; None: the operator puts it there.
        cloudwatch_log_group: ship :data:`ENCLAVE_LOG_FILE` to this CloudWatch Logs group with the
            CloudWatch agent; None: journal and file only.
    """

    region: str
    bucket: str
    eif_key: str
    eif_sha256: str
    cpu_count: int
    memory_mib: int
    enclave_cid: int = 16
    debug: bool = False
    sealed_key: str | None = None
    cloudwatch_log_group: str | None = None


def _check_spec(spec: UserDataSpec) -> None:
    if not _REGION.match(spec.region):
        raise TeeformError(f"not an AWS region name: {spec.region!r}", field="region")
    if not _HEX64.match(spec.eif_sha256):
        raise TeeformError(f"EIF sha256 must be 64 lowercase hex digits, got {spec.eif_sha256!r}")
    if spec.enclave_cid < 4:
        raise TeeformError(f"enclave CID must be >= 4, got {spec.enclave_cid}")
    if spec.cloudwatch_log_group is not None and not _LOG_GROUP.match(spec.cloudwatch_log_group):
        raise TeeformError(f"not a CloudWatch Logs group name: {spec.cloudwatch_log_group!r}", field="cloudwatchLogGroup")
    if spec.sealed_key is not None and not _S3_KEY.match(spec.sealed_key):
        raise TeeformError(f"not a safe S3 object key: {spec.sealed_key!r}", field="sealedKey")


_HARDENING = (
    "NoNewPrivileges=yes\nProtectSystem=strict\nProtectHome=yes\nPrivateTmp=yes\n"
    "RestrictAddressFamilies=AF_VSOCK AF_UNIX AF_INET AF_INET6\n"
)


def systemd_units(spec: UserDataSpec) -> dict[str, str]:
    """The systemd units the user data installs, by file name (pure; systemd.unit(5), systemd.service(5)).

    * ``teeform-vsock-proxy.service``: ``vsock-proxy`` to KMS (eif-nitro.md §6.4), restarted 2 s after
      any exit;
    * ``teeform-credentials.service``: the parent side of the enclave runtime serving IMDSv2
      credentials and the sealed file on vsock port 9100 to the enclave's CID only
      (:mod:`teeform.enclave_runtime.parent`);
    * ``teeform-enclave-logs.service``: the enclave's log stream (vsock port 9101) to the journal and
      :data:`ENCLAVE_LOG_FILE`;
    * ``teeform-enclave.service``: fetch + check + run the enclave, then watch it; when it stops the
      unit fails and is restarted after :data:`ENCLAVE_RESTART_SEC` s, at most
      :data:`ENCLAVE_START_LIMIT_BURST` starts per :data:`ENCLAVE_START_LIMIT_INTERVAL_SEC` s;
    * ``teeform-enclave-console.service`` (debug only): ``nitro-cli console`` to the journal.

    Raises:
        TeeformError: as :func:`render_user_data`.
    """
    from teeform.enclave_runtime import CREDENTIALS_PORT, LOG_PORT

    _check_spec(spec)
    kms_host = f"kms.{spec.region}.amazonaws.com"
    python = f"Environment=PYTHONPATH={PARENT_LIB}\nExecStart=/usr/bin/python3 -m teeform.enclave_runtime.parent"
    units = {
        "teeform-vsock-proxy.service": (
            "[Unit]\n"
            f"Description=teeform vsock-proxy: enclave port {VSOCK_PROXY_PORT} -> {kms_host}:443\n"
            "After=network-online.target\nWants=network-online.target\n\n"
            "[Service]\n"
            f"ExecStart=/usr/bin/vsock-proxy {VSOCK_PROXY_PORT} {kms_host} 443 --config /etc/nitro_enclaves/vsock-proxy.yaml\n"
            "Restart=always\nRestartSec=2\n\n"
            "[Install]\nWantedBy=multi-user.target\n"
        ),
        "teeform-credentials.service": (
            "[Unit]\n"
            f"Description=teeform: role credentials (IMDSv2) and sealed secrets for enclave CID {spec.enclave_cid} "
            f"on vsock port {CREDENTIALS_PORT}\n"
            "After=network-online.target\nWants=network-online.target\n\n"
            "[Service]\n"
            f"{python} credentials --listen vsock:any:{CREDENTIALS_PORT} --sealed {SEALED_LOCAL_PATH} "
            f"--allow-cid {spec.enclave_cid}\n"
            f"Restart=always\nRestartSec=2\n{_HARDENING}\n"
            "[Install]\nWantedBy=multi-user.target\n"
        ),
        "teeform-enclave-logs.service": (
            "[Unit]\n"
            f"Description=teeform: enclave log stream (vsock port {LOG_PORT}) to the journal and {ENCLAVE_LOG_FILE}\n\n"
            "[Service]\n"
            f"{python} logs --listen vsock:any:{LOG_PORT} --file {ENCLAVE_LOG_FILE}\n"
            "SyslogIdentifier=teeform-enclave\nLogsDirectory=teeform\n"
            f"Restart=always\nRestartSec=2\n{_HARDENING}\n"
            "[Install]\nWantedBy=multi-user.target\n"
        ),
        "teeform-enclave.service": (
            "[Unit]\n"
            "Description=teeform: verify, run and watch the measured enclave\n"
            "After=nitro-enclaves-allocator.service teeform-vsock-proxy.service teeform-credentials.service "
            "teeform-enclave-logs.service network-online.target\n"
            "Requires=nitro-enclaves-allocator.service\n"
            "Wants=teeform-vsock-proxy.service teeform-credentials.service teeform-enclave-logs.service "
            "network-online.target\n"
            f"StartLimitIntervalSec={ENCLAVE_START_LIMIT_INTERVAL_SEC}\nStartLimitBurst={ENCLAVE_START_LIMIT_BURST}\n\n"
            "[Service]\nType=simple\n"
            "ExecStart=/usr/local/sbin/teeform-start-enclave\n"
            f"ExecStopPost=-/usr/bin/nitro-cli terminate-enclave --enclave-name {ENCLAVE_NAME}\n"
            f"Restart=on-failure\nRestartSec={ENCLAVE_RESTART_SEC}\nTimeoutStartSec=600\n\n"
            "[Install]\nWantedBy=multi-user.target\n"
        ),
    }
    if spec.debug:
        units["teeform-enclave-console.service"] = (
            "[Unit]\nDescription=teeform: debug-mode enclave console to the journal\n"
            "After=teeform-enclave.service\nPartOf=teeform-enclave.service\n\n"
            "[Service]\nExecStartPre=/bin/sleep 5\n"
            f"ExecStart=/usr/bin/nitro-cli console --enclave-name {ENCLAVE_NAME}\n"
            "SyslogIdentifier=teeform-enclave-console\nRestart=always\nRestartSec=5\n\n"
            "[Install]\nWantedBy=teeform-enclave.service\n"
        )
    return units


def cloudwatch_agent_config(log_group: str) -> dict[str, object]:
    """CloudWatch agent configuration shipping :data:`ENCLAVE_LOG_FILE` to ``log_group`` (the agent's
    configuration file schema, ``logs.logs_collected.files.collect_list``; ``{instance_id}`` is the
    agent's own placeholder)."""
    return {"logs": {"logs_collected": {"files": {"collect_list": [
        {"file_path": ENCLAVE_LOG_FILE, "log_group_name": log_group, "log_stream_name": "{instance_id}/enclave"},
    ]}}}}


def _heredoc(path: str, text: str) -> str:
    if "\nEOF\n" in "\n" + text:
        raise TeeformError(f"{path}: content holds a line 'EOF' (cannot be embedded)")
    return f"cat > {path} <<'EOF'\n{text}EOF\n"


def render_user_data(spec: UserDataSpec) -> str:
    """The cloud-init user data (a bash script) of the enclave host. Pure: same spec, same text.

    Raises:
        TeeformError: the region, EIF SHA-256, log group or sealed key is malformed, the CID is below 4,
            or the script exceeds :data:`USER_DATA_LIMIT`.
    """
    from teeform.enclave_runtime.bundle import parent_bundle

    units = systemd_units(spec)
    kms_host = f"kms.{spec.region}.amazonaws.com"
    uri = shlex.quote(f"s3://{spec.bucket}/{spec.eif_key}")
    run = (
        f"nitro-cli run-enclave --eif-path {EIF_LOCAL_PATH} --cpu-count {spec.cpu_count} "
        f"--memory {spec.memory_mib} --enclave-cid {spec.enclave_cid} --enclave-name {ENCLAVE_NAME}"
    )
    if spec.debug:
        run += " --debug-mode"
    sealed = ""
    if spec.sealed_key is not None:
        sealed_uri = shlex.quote(f"s3://{spec.bucket}/{spec.sealed_key}")
        sealed = (f"aws s3 cp --region {spec.region} --only-show-errors {sealed_uri} {SEALED_LOCAL_PATH}.tmp\n"
                  f"chmod 0600 {SEALED_LOCAL_PATH}.tmp && mv -f {SEALED_LOCAL_PATH}.tmp {SEALED_LOCAL_PATH}\n")
    start_script = (
        "#!/bin/bash\nset -euo pipefail\n"
        f"aws s3 cp --region {spec.region} --only-show-errors {uri} {EIF_LOCAL_PATH}\n"
        f"if ! echo '{spec.eif_sha256}  {EIF_LOCAL_PATH}' | sha256sum --check --strict --quiet -; then\n"
        f"  echo \"teeform: {EIF_LOCAL_PATH} does not match the manifest's sha256; refusing to run it\" >&2\n"
        "  exit 1\nfi\n"
        f"{sealed}"
        f"nitro-cli terminate-enclave --enclave-name {ENCLAVE_NAME} >/dev/null 2>&1 || true\n"
        f"{run}\n"
        "while sleep 10; do\n"
        f"  state=$(nitro-cli describe-enclaves | jq -r '.[] | select(.EnclaveName == \"{ENCLAVE_NAME}\") | .State')\n"
        "  if [ \"$state\" != \"RUNNING\" ]; then\n"
        "    echo \"teeform: the enclave is ${state:-gone}; exiting so systemd restarts it\" >&2\n"
        "    exit 1\n  fi\ndone\n"
    )
    bundle = base64.encodebytes(parent_bundle()).decode("ascii")
    unit_files = "".join(_heredoc(f"/etc/systemd/system/{name}", text) for name, text in units.items())
    enable = " ".join(n for n in units if n != "teeform-enclave-console.service")
    parts = [
        "#!/bin/bash\n"
        "# teeform enclave host bootstrap, generated by components/aws/enclave_host.py (do not edit).\n"
        "# Steps follow shared/reference/eif-nitro.md section 6 (packages, allocator, vsock-proxy, run-enclave)\n"
        "# and docs/enclave-runtime.md (credentials, logs, restarts).\n"
        "set -euo pipefail\numask 022\n\n"
        "# 1. Nitro Enclaves CLI: nitro-cli, vsock-proxy, the allocator service (Amazon Linux 2023); jq for the monitor.\n"
        "dnf install -y aws-nitro-enclaves-cli jq\n\n"
        "# 2. Reserve the enclave's vCPUs and memory, then start the allocator.\n"
        "install -d -m 0755 /etc/nitro_enclaves\n",
        _heredoc("/etc/nitro_enclaves/allocator.yaml", f"---\nmemory_mib: {spec.memory_mib}\ncpu_count: {spec.cpu_count}\n"),
        "systemctl enable --now nitro-enclaves-allocator.service\n\n"
        f"# 3. vsock-proxy: the enclave may reach AWS KMS in {spec.region} and nothing else.\n",
        _heredoc("/etc/nitro_enclaves/vsock-proxy.yaml", f"allowlist:\n- {{address: {kms_host}, port: 443}}\n"),
        "\n# 4. The parent side of the enclave runtime (teeform.enclave_runtime.parent, standard library only).\n"
        f"install -d -m 0755 {PARENT_LIB}\n"
        f"base64 -d > /tmp/teeform-parent.tar.gz <<'EOF'\n{bundle}EOF\n"
        f"tar -xzf /tmp/teeform-parent.tar.gz -C {PARENT_LIB} --no-same-owner\n"
        "rm -f /tmp/teeform-parent.tar.gz\n\n"
        "# 5. Fetch the EIF, check it against the manifest's SHA-256, and only then run it; then watch it:\n"
        "#    the script exits 1 when the enclave stops, so systemd restarts it (Restart=on-failure).\n"
        "install -d -m 0700 /opt/teeform\n",
        _heredoc("/usr/local/sbin/teeform-start-enclave", start_script),
        "chmod 0755 /usr/local/sbin/teeform-start-enclave\n\n"
        "# 6. systemd units: vsock-proxy, credentials, logs, the enclave" + (" and its console (debug)" if spec.debug else "") + ".\n",
        unit_files,
        "systemctl daemon-reload\n"
        f"systemctl enable --now {enable}\n",
    ]
    if spec.debug:
        parts.append("systemctl enable --now teeform-enclave-console.service\n")
    if spec.cloudwatch_log_group is not None:
        cw = json.dumps(cloudwatch_agent_config(spec.cloudwatch_log_group), indent=1, sort_keys=True) + "\n"
        conf = "/opt/aws/amazon-cloudwatch-agent/etc/teeform.json"
        parts += [
            f"\n# 7. Ship {ENCLAVE_LOG_FILE} to CloudWatch Logs ({spec.cloudwatch_log_group}).\n"
            "dnf install -y amazon-cloudwatch-agent\ninstall -d -m 0755 /opt/aws/amazon-cloudwatch-agent/etc\n",
            _heredoc(conf, cw),
            f"/opt/aws/amazon-cloudwatch-agent/bin/amazon-cloudwatch-agent-ctl -a fetch-config -m ec2 -s -c file:{conf}\n",
        ]
    text = "".join(parts)
    size = len(text.encode("utf-8"))
    if size > USER_DATA_LIMIT:
        raise TeeformError(f"the user data is {size} bytes, over EC2's {USER_DATA_LIMIT}-byte limit")
    return text


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
        spec = args.user_data
        policy = pulumi.Output.all(args.partition, args.eif_bucket, args.key_arn, args.account_id).apply(
            lambda v: json.dumps(host_role_policy(partition=v[0], bucket=v[1], eif_key=spec.eif_key, key_arn=v[2],
                                                  sealed_key=spec.sealed_key, log_group=spec.cloudwatch_log_group,
                                                  region=spec.region, account_id=v[3]), indent=2)
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


def host_role_policy(*, partition: str, bucket: str, eif_key: str, key_arn: str, sealed_key: str | None = None,
                     log_group: str | None = None, region: str | None = None,
                     account_id: str | None = None) -> dict[str, object]:
    """The host role's inline policy: read the one EIF object (and the sealed-secrets object when
    ``sealed_key`` is set), use the one key (attestation is enforced by the key policy), and, with
    ``log_group``, write the enclave log stream to that CloudWatch Logs group (``logs:CreateLogStream``,
    ``logs:PutLogEvents``, ``logs:DescribeLogStreams`` on ``arn:<p>:logs:<region>:<account>:log-group:<g>:*``,
    the actions the CloudWatch agent uses). ``kms:GenerateRandom`` is not here: it has no resource type
    in IAM, so a grant on a key ARN would not authorise it (AWS KMS developer guide, "Specifying KMS
    keys in IAM policy statements"); the attested key component grants it in its own IAM policy with
    ``Resource: "*"`` and the attestation conditions (``attested_key.generate_random_policy``). The enclave's KMS calls are signed with this role's credentials, which the
    credentials service hands to the enclave (docs/enclave-runtime.md)."""
    objects = [f"arn:{partition}:s3:::{bucket}/{eif_key}"]
    if sealed_key is not None:
        objects.append(f"arn:{partition}:s3:::{bucket}/{sealed_key}")
    statements: list[dict[str, object]] = [
        {"Sid": "ReadEif", "Effect": "Allow", "Action": "s3:GetObject", "Resource": objects[0] if len(objects) == 1 else objects},
        {
            "Sid": "UseAttestedKey",
            "Effect": "Allow",
            "Action": ["kms:Decrypt", "kms:GenerateDataKey"],
            "Resource": key_arn,
        },
    ]
    if log_group is not None:
        statements.append({
            "Sid": "ShipEnclaveLogs", "Effect": "Allow",
            "Action": ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
            "Resource": f"arn:{partition}:logs:{region}:{account_id}:log-group:{log_group}:*",
        })
    return {"Version": "2012-10-17", "Statement": statements}

