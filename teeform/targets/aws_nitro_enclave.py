"""Target plug-in ``aws``/``nitro-enclave``: an EC2 parent instance running a Nitro Enclave from an EIF.

Settings (camelCase in YAML)::

    instanceType: m6i.xlarge
    ami: ami-0123456789abcdef0          # optional; default: latest Amazon Linux 2023 (SSM parameter)
    enclave: {cpuCount: 2, memoryMib: 1024, debug: false}
    # enclave.sealedSecrets: the `teeform seal` output the enclave runtime decrypts, either a local
    #   file (uploaded next to the EIF as sealed/sha256/<hex>.json) or {s3Key: <key>} of an object the
    #   operator puts into the target's artifact bucket; enclave.cloudwatchLogGroup (optional): ship
    #   the enclave's log stream to that CloudWatch Logs group.
    # enclave: {cpuCount: 2, memoryMib: 1024, sealedSecrets: build/agent.sealed.json, cloudwatchLogGroup: /teeform/agent}
    attestation: {pcrs: [PCR0, PCR1, PCR2], imageSha384: true}
    network: {cidr: 10.42.0.0/16, ingress: [{cidr: 203.0.113.0/24, port: 443}]}   # or vpcId + subnetId
    # network: {private: true}          # instead: no internet route, KMS interface + S3 gateway endpoints
    key:
      admins: ["arn:aws:iam::111122223333:role/platform-admin"]   # default: the account root
      deployerArn: arn:aws:iam::111122223333:role/aws-reserved/sso.amazonaws.com/eu-west-1/AWSReservedSSO_Deploy_0123
      policyUpdates: locked             # default: open; locked: only breakGlassRole may call kms:PutKeyPolicy
      breakGlassRole: arn:aws:iam::111122223333:role/teeform-break-glass   # required with locked, refused with open
      deletionWindowDays: 30
      protect: true

Key gate: an AWS KMS key whose policy releases plaintext (Decrypt, GenerateDataKey) only to a
Nitro Enclave whose attestation document carries **our image's PCRs**: for each allowed
manifest one statement with ``StringEqualsIgnoreCase`` on ``kms:RecipientAttestation:PCR0`` (and
PCR1/PCR2/PCR8, ``ImageSha384`` as ``attestation`` says). Source: AWS KMS developer guide
"conditions-nitro-enclave" (eif-nitro.md §5.1); builder: ``components/aws/nitro.py``.
``kms:GenerateRandom`` is granted in the host role's IAM policy with the same conditions (it is not
a key resource action; docs/aws-deploy.md).

Key settings checked here, before any cloud call:

* ``key.deployerArn`` -- the principal that runs ``pulumi up`` as an IAM ARN *with its path*
  (``arn:aws:iam::<acct>:role/aws-reserved/sso.amazonaws.com/<region>/AWSReservedSSO_...``); by
  default the builder asks ``aws.iam.get_session_context`` for the caller's issuer role ARN.
* ``key.admins`` -- in ``open`` mode KMS's lockout safety check (CreateKey/PutKeyPolicy API
  reference, ``BypassPolicyLockoutSafetyCheck``: the policy "must allow the principal that is
  making the request to make a subsequent PutKeyPolicy request") requires the deployer or the
  account root among the admins; teeform **refuses** a list without either, naming ``key.admins``
  (it never adds the deployer silently). When both lists are known here the check runs here; otherwise the
  builder runs :func:`check_lockout` once the deployer ARN is known.
* ``key.policyUpdates: locked`` needs ``key.breakGlassRole``; see ``components/aws/attested_key.py``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from teeform.errors import TeeformError
from teeform.keyrelease import KeyReleasePolicy, measurement_sets
from teeform.measurements import NITRO_PINNABLE_PCRS
from teeform.targets.base import (
    Cloud,
    IngressRule,
    OutputSpec,
    TargetPlugin,
    TargetSettings,
    TeeType,
    fail,
    read_bool,
    read_cidr,
    read_ingress,
    read_int,
    read_map,
    read_opt_str,
    read_str,
    read_str_list,
    reanchor,
)

if TYPE_CHECKING:
    from teeform.manifest import Manifest

_IAM_ARN_PREFIX = "arn:"
#: An IAM role/user ARN with optional path (IAM identifiers reference: ``arn:<partition>:iam::<12
#: digits>:role/<path/>name``), or an account root.
_IAM_PRINCIPAL = re.compile(r"^arn:(aws|aws-cn|aws-us-gov):iam::(\d{12}):(root|(role|user)/([\w+=,.@-]+/)*[\w+=,.@-]+)$")
_IAM_ROLE = re.compile(r"^arn:(aws|aws-cn|aws-us-gov):iam::\d{12}:role/([\w+=,.@-]+/)*[\w+=,.@-]+$")

#: ``key.policyUpdates`` values.
POLICY_UPDATES = ("open", "locked")


def account_root(principal_arn: str) -> str | None:
    """``arn:<p>:iam::<acct>:root`` of an IAM principal ARN, or None when ``principal_arn`` is not one."""
    m = _IAM_PRINCIPAL.match(principal_arn)
    return f"arn:{m.group(1)}:iam::{m.group(2)}:root" if m else None


def check_lockout(admins: Sequence[str], deployer_arn: str) -> None:
    """Refuse an ``open``-mode admin list that would trip KMS's key policy lockout safety check.

    CreateKey without ``BypassPolicyLockoutSafetyCheck`` fails unless the new policy lets the
    calling principal make a subsequent ``PutKeyPolicy`` (KMS API reference, CreateKey/PutKeyPolicy
    ``Policy``). Admins get ``kms:Put*``; so the deployer must be an admin itself, or the account
    root must be (the root principal delegates to IAM, where the deployer's own IAM policy then
    needs ``kms:PutKeyPolicy`` -- not checkable offline). Comparison is exact, case-sensitive ARN.

    Raises:
        TeeformError: (field ``key.admins``) neither the deployer nor its account root is listed.
    """
    root = account_root(deployer_arn)
    if deployer_arn in admins or (root is not None and root in admins):
        return
    raise TeeformError(
        f"the key admins {list(admins)} do not include the deployer {deployer_arn} or its account root: KMS's "
        "lockout safety check would refuse to create the key (the creator must be allowed kms:PutKeyPolicy)",
        field="key.admins",
        hint=f"add {deployer_arn!r}{f' or {root!r}' if root else ''} to key.admins, set key.deployerArn to an admin, "
             "or use key.policyUpdates: locked with key.breakGlassRole",
    )


@dataclass(frozen=True)
class NetworkConfig:
    """Use existing ``vpc_id``/``subnet_id``, or create a VPC of ``cidr``. No ingress unless listed."""

    vpc_id: str | None = None
    subnet_id: str | None = None
    cidr: str = "10.42.0.0/16"
    ingress: tuple[IngressRule, ...] = ()
    #: A private subnet (no internet gateway, no public IP) reaching KMS through an interface VPC
    #: endpoint and S3 through a gateway endpoint; the key's release statements then also require
    #: ``aws:SourceVpce`` = that KMS endpoint. Only with a teeform-created VPC.
    private: bool = False


@dataclass(frozen=True)
class SealedSecretsSource:
    """Where the enclave host fetches the ``teeform seal`` output from (exactly one is set).

    Attributes:
        path: a local sealed file (resolved against the project directory); the builder checks it
            (``teeform.seal.SealedSecrets.from_json``, bound to this stack and target) and uploads it
            into the artifact bucket.
        s3_key: an object key in the target's artifact bucket, put there out of band (e.g. to
            rotate secrets without a deployment). S3 "safe characters" only (S3 User Guide, "Object
            key naming guidelines"), at most 1,024 bytes.
    """

    path: str | None = None
    s3_key: str | None = None


@dataclass(frozen=True)
class EnclaveConfig:
    """Enclave size (vCPUs, memory in MiB), whether debug mode is requested, the sealed secrets the
    runtime decrypts (None: the operator puts the file on the host) and the optional CloudWatch Logs
    group its log stream goes to (CloudWatch Logs ``CreateLogGroup`` ``logGroupName``: 1-512 of
    ``[.-_/#A-Za-z0-9]``)."""

    cpu_count: int = 2
    memory_mib: int = 1024
    debug: bool = False
    sealed_secrets: SealedSecretsSource | None = None
    cloudwatch_log_group: str | None = None


@dataclass(frozen=True)
class AttestationConfig:
    """Which EIF measurements the key policy pins (PCR0 always; PCR1/2/8 and ImageSha384 optional)."""

    pcrs: tuple[str, ...] = ("PCR0", "PCR1", "PCR2")
    image_sha384: bool = True

    @property
    def pins(self) -> tuple[str, ...]:
        """Every pinned measurement name, in policy order."""
        return self.pcrs + (("ImageSha384",) if self.image_sha384 else ())


@dataclass(frozen=True)
class KeyConfig:
    """KMS key settings (see the module docstring).

    Attributes:
        admins: administrator principal ARNs (empty = the account root).
        deletion_window_days: 7..30 (KMS limits).
        protect: Pulumi ``protect`` on the key.
        deployer_arn: the deployer's IAM ARN with path; None = ask ``aws.iam.get_session_context``.
        policy_updates: ``open`` (admins may ``kms:PutKeyPolicy``) or ``locked`` (only
            ``break_glass_role`` may; an explicit Deny covers everyone else).
        break_glass_role: IAM role ARN allowed to change a ``locked`` key policy.
    """

    admins: tuple[str, ...] = ()
    deletion_window_days: int = 30
    protect: bool = False
    deployer_arn: str | None = None
    policy_updates: str = "open"
    break_glass_role: str | None = None

    @property
    def locked(self) -> bool:
        """Whether ``policyUpdates`` is ``locked``."""
        return self.policy_updates == "locked"


@dataclass(frozen=True)
class NitroSettings(TargetSettings):
    """Typed settings of an ``aws``/``nitro-enclave`` target."""

    instance_type: str = "m6i.xlarge"
    #: Parent-instance AMI id; None = the latest Amazon Linux 2023 AMI from the public SSM parameter.
    ami: str | None = None
    enclave: EnclaveConfig = field(default_factory=EnclaveConfig)
    attestation: AttestationConfig = field(default_factory=AttestationConfig)
    network: NetworkConfig = field(default_factory=NetworkConfig)
    key: KeyConfig = field(default_factory=KeyConfig)


def parse_network(raw: Any, source: str, fld: str) -> NetworkConfig:
    """``network`` (``fld`` = ``teeform:targets[i].network``) of an AWS target: ``vpcId`` + ``subnetId`` (both
    or neither), ``cidr`` (default ``10.42.0.0/16``), ``ingress`` rules (:func:`~teeform.targets.base.read_ingress`,
    with ``description``) and ``private`` (only with a teeform-created VPC).

    Shared by ``aws``/``nitro-enclave`` and ``aws``/``nitro-tpm`` (and ``aws``/``sev-snp``).

    Raises:
        TeeformError: naming ``source`` and the field under ``fld``.
    """
    n = read_map(raw, source, fld, {"vpcId", "subnetId", "cidr", "ingress", "private"})
    rules = read_ingress(n.get("ingress"), source, f"{fld}.ingress")
    vpc_id = read_opt_str(n.get("vpcId"), source, f"{fld}.vpcId")
    subnet_id = read_opt_str(n.get("subnetId"), source, f"{fld}.subnetId")
    if (vpc_id is None) != (subnet_id is None):
        raise fail("give both vpcId and subnetId, or neither", source, fld)
    cidr = read_cidr(n["cidr"], source, f"{fld}.cidr") if "cidr" in n else NetworkConfig.cidr
    private = read_bool(n.get("private", False), source, f"{fld}.private")
    if private and vpc_id is not None:
        raise fail("a private network is created by teeform (with its VPC endpoints); drop vpcId/subnetId or private",
                   source, f"{fld}.private")
    return NetworkConfig(vpc_id, subnet_id, cidr, rules, private)


def parse_key(raw: Any, source: str, fld: str) -> KeyConfig:
    """``key`` (``fld`` = ``teeform:targets[i].key``) of an AWS KMS-gated target (see the module docstring:
    admins, deployer ARN, lockout safety check, ``policyUpdates``/``breakGlassRole``, deletion window, protect).

    Shared by ``aws``/``nitro-enclave`` and ``aws``/``nitro-tpm`` (and ``aws``/``sev-snp``).

    Raises:
        TeeformError: naming ``source`` and the field under ``fld``.
    """
    k = read_map(raw, source, fld,
                 {"admins", "deletionWindowDays", "protect", "deployerArn", "policyUpdates", "breakGlassRole"})
    admins = read_str_list(k.get("admins"), source, f"{fld}.admins")
    for i, arn in enumerate(admins):
        if not arn.startswith(_IAM_ARN_PREFIX):
            raise fail(f"must be an IAM principal ARN (arn:aws:iam::<account>:...), got {arn!r}", source,
                       f"{fld}.admins[{i}]")
    deployer = read_opt_str(k.get("deployerArn"), source, f"{fld}.deployerArn")
    if deployer is not None and (not _IAM_PRINCIPAL.match(deployer) or deployer.endswith(":root")):
        raise fail(f"must be an IAM role or user ARN with its path (arn:aws:iam::<account>:role/<path/>name), got "
                   f"{deployer!r}", source, f"{fld}.deployerArn",
                   hint="for an IAM Identity Center session use the role ARN under role/aws-reserved/sso.amazonaws.com/, "
                        "not the sts assumed-role ARN")
    updates = read_str(k.get("policyUpdates", "open"), source, f"{fld}.policyUpdates")
    if updates not in POLICY_UPDATES:
        raise fail(f"must be one of {list(POLICY_UPDATES)}, got {updates!r}", source, f"{fld}.policyUpdates")
    glass = read_opt_str(k.get("breakGlassRole"), source, f"{fld}.breakGlassRole")
    if glass is not None and not _IAM_ROLE.match(glass):
        raise fail(f"must be an IAM role ARN (arn:aws:iam::<account>:role/<path/>name), got {glass!r}", source,
                   f"{fld}.breakGlassRole")
    if updates == "locked" and glass is None:
        raise fail("policyUpdates: locked needs key.breakGlassRole (the only principal that may change the key policy)",
                   source, f"{fld}.breakGlassRole")
    if updates == "open" and glass is not None:
        raise fail("breakGlassRole is used only with policyUpdates: locked", source, f"{fld}.breakGlassRole")
    if updates == "open" and admins and deployer is not None:
        try:
            check_lockout(admins, deployer)
        except TeeformError as exc:
            raise reanchor(exc, source, f"{fld}.admins") from None
    return KeyConfig(
        admins,
        read_int(k.get("deletionWindowDays", 30), source, f"{fld}.deletionWindowDays", 7, 30),
        read_bool(k.get("protect", False), source, f"{fld}.protect"),
        deployer, updates, glass,
    )


class NitroEnclavePlugin(TargetPlugin):
    """``aws``/``nitro-enclave``: see the module docstring."""

    cloud = Cloud.AWS
    tee = TeeType.NITRO_ENCLAVE
    manifest_kinds = frozenset({"eif"})
    settings_keys = frozenset({"instanceType", "ami", "enclave", "attestation", "network", "key"})
    builder = "components.aws.nitro:build_nitro_enclave_target"
    outputs = (
        OutputSpec("kms_key_arn", "ARN of the attested KMS key"),
        OutputSpec("instance_id", "EC2 id of the enclave's parent instance"),
        OutputSpec("eif_uri", "s3:// URI of the deployed EIF"),
        OutputSpec("enclave_cpu_count", "vCPUs given to the enclave"),
        OutputSpec("enclave_memory_mib", "memory given to the enclave (MiB)"),
    )
    gate = ("AWS KMS key policy: plaintext only to a Nitro Enclave whose attestation carries our image's PCRs "
            "(one statement per allowed manifest, all of that manifest's pinned PCRs together)")

    def parse_settings(self, raw: Mapping[str, Any], source: str, fld: str) -> NitroSettings:
        """Parse and check the Nitro keys of one target (see the module docstring)."""
        e = read_map(raw.get("enclave"), source, f"{fld}.enclave",
                     {"cpuCount", "memoryMib", "debug", "sealedSecrets", "cloudwatchLogGroup"})
        log_group = read_opt_str(e.get("cloudwatchLogGroup"), source, f"{fld}.enclave.cloudwatchLogGroup")
        if log_group is not None and not _LOG_GROUP.fullmatch(log_group):
            raise fail(f"not a CloudWatch Logs group name (1-512 of A-Z a-z 0-9 . - _ / #), got {log_group!r}", source,
                       f"{fld}.enclave.cloudwatchLogGroup")
        enclave = EnclaveConfig(
            cpu_count=read_int(e.get("cpuCount", 2), source, f"{fld}.enclave.cpuCount", 1, 128),
            memory_mib=read_int(e.get("memoryMib", 1024), source, f"{fld}.enclave.memoryMib", 64, 4 * 1024 * 1024),
            debug=read_bool(e.get("debug", False), source, f"{fld}.enclave.debug"),
            sealed_secrets=_sealed_source(e.get("sealedSecrets"), source, f"{fld}.enclave.sealedSecrets"),
            cloudwatch_log_group=log_group,
        )

        a = read_map(raw.get("attestation"), source, f"{fld}.attestation", {"pcrs", "imageSha384"})
        pf = f"{fld}.attestation.pcrs"
        pcrs = read_str_list(a["pcrs"], source, pf, non_empty=True) if "pcrs" in a else AttestationConfig.pcrs
        if "PCR0" not in pcrs or any(p not in NITRO_PINNABLE_PCRS for p in pcrs):
            raise fail(f"must list PCR0 and only names from {list(NITRO_PINNABLE_PCRS)}, got {list(pcrs)}", source, pf)
        if len(set(pcrs)) != len(pcrs):
            raise fail(f"lists a PCR twice: {list(pcrs)}", source, pf)
        attestation = AttestationConfig(pcrs, read_bool(a.get("imageSha384", True), source, f"{fld}.attestation.imageSha384"))

        network = parse_network(raw.get("network"), source, f"{fld}.network")
        key = parse_key(raw.get("key"), source, f"{fld}.key")
        instance_type = read_str(raw.get("instanceType", NitroSettings.instance_type), source, f"{fld}.instanceType")
        ami = read_opt_str(raw.get("ami"), source, f"{fld}.ami")
        return NitroSettings(instance_type, ami, enclave, attestation, network, key)

    def key_release(self, target_name: str, settings: TargetSettings,
                    manifests: Sequence[tuple[str, Manifest]]) -> KeyReleasePolicy:
        """One measurement set per allowed manifest: its pinned PCRs (and ImageSha384), all together."""
        assert isinstance(settings, NitroSettings)
        return measurement_sets(
            target_name, [(k, m.measurements) for k, m in manifests], settings.attestation.pins,
            hints={"PCR8": "sign the EIF (PCR8 is the signing certificate) or drop PCR8 from attestation.pcrs"},
        )


#: CloudWatch Logs ``CreateLogGroup`` ``logGroupName`` pattern ``[\.\-_/#A-Za-z0-9]+``, 1-512 characters.
_LOG_GROUP = re.compile(r"[A-Za-z0-9_./#-]{1,512}")
#: S3 object key of "safe characters" (S3 User Guide, "Object key naming guidelines"), no leading
#: slash, no ``..`` segment, at most 1,024 bytes.
_S3_KEY = re.compile(r"[A-Za-z0-9!_.*()-][A-Za-z0-9!_.*()/-]{0,1023}")


def _sealed_source(value: Any, source: str, fld: str) -> SealedSecretsSource | None:
    """``enclave.sealedSecrets``: a path string, or ``{path: ...}`` / ``{s3Key: ...}`` (exactly one).

    Raises:
        TeeformError: another type, both or neither key, an empty path, or an S3 key outside the
            safe characters (naming ``fld`` or ``fld.s3Key``/``fld.path``).
    """
    if value is None:
        return None
    if isinstance(value, str):
        return SealedSecretsSource(path=read_str(value, source, fld))
    if not isinstance(value, Mapping):
        raise fail(f"must be the path of a `teeform seal` output or {{s3Key: <object key>}}, got {type(value).__name__}",
                   source, fld)
    m = read_map(value, source, fld, {"path", "s3Key"})
    if len(m) != 1:
        raise fail("give exactly one of 'path' (a local sealed file) and 's3Key' (an object in the artifact bucket)",
                   source, fld)
    if "path" in m:
        return SealedSecretsSource(path=read_str(m["path"], source, f"{fld}.path"))
    key = read_str(m["s3Key"], source, f"{fld}.s3Key")
    if not _S3_KEY.fullmatch(key) or ".." in key.split("/") or len(key.encode()) > 1024:
        raise fail(f"not a safe S3 object key (A-Z a-z 0-9 ! - _ . * ( ) /, no leading '/', no '..'), got {key!r}",
                   source, f"{fld}.s3Key")
    return SealedSecretsSource(s3_key=key)


PLUGIN = NitroEnclavePlugin()
