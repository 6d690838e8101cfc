"""Typed stack configuration: which targets an environment deploys and which manifests each allows.

A stack (``stacks/Pulumi.<env>.yaml``) is an environment. Its ``teeform:targets`` list says what it
deploys; each target names its cloud, region, TEE type and the measurement manifests it allows (the
first is the one deployed; the rest stay valid during a rollout window). Example:

.. code-block:: yaml

    config:
      aws:region: eu-west-1
      teeform:environment: prod
      teeform:allowDebug: false
      teeform:targets:
        - name: agent
          cloud: aws
          region: eu-west-1
          tee: nitro-enclave
          manifests: [build/demo/openclaw-agent.manifest.json]
          instanceType: m6i.xlarge
          ami: ami-0123456789abcdef0       # optional; default: latest Amazon Linux 2023 (SSM parameter)
          enclave: {cpuCount: 2, memoryMib: 1024}
          attestation: {pcrs: [PCR0, PCR1, PCR2], imageSha384: true}
          network: {cidr: 10.42.0.0/16, ingress: [{cidr: 203.0.113.0/24, port: 443}]}
          key: {admins: ["arn:aws:iam::111122223333:role/platform-admin"], deletionWindowDays: 30, protect: true}

The same dicts arrive through ``pulumi.Config("teeform").require_object("targets")`` in the Pulumi
program and through :func:`load_stack` in CLI commands, and both go through
:meth:`StackConfig.from_values`, so validation and error messages are identical.
Keys are camelCase in YAML (Pulumi's convention) and snake_case in the dataclasses.
"""

from __future__ import annotations

import enum
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from teeform.errors import TeeformError

PROJECT = "teeform"


class Cloud(enum.StrEnum):
    """Clouds teeform targets. Each gets one component module, not a fork."""

    AWS = "aws"
    AZURE = "azure"
    GCP = "gcp"
    ALICLOUD = "alicloud"


class TeeType(enum.StrEnum):
    """TEE technologies, with the manifest kind each consumes."""

    NITRO_ENCLAVE = "nitro-enclave"
    SEV_SNP = "sev-snp"
    TDX = "tdx"

    @property
    def manifest_kind(self) -> str:
        return "eif" if self is TeeType.NITRO_ENCLAVE else "vm-image"


#: Which TEE types each cloud can host (checked at config load).
SUPPORTED: dict[Cloud, frozenset[TeeType]] = {
    Cloud.AWS: frozenset({TeeType.NITRO_ENCLAVE, TeeType.SEV_SNP}),
    Cloud.AZURE: frozenset({TeeType.SEV_SNP, TeeType.TDX}),
    Cloud.GCP: frozenset({TeeType.SEV_SNP, TeeType.TDX}),
    Cloud.ALICLOUD: frozenset({TeeType.TDX}),
}

PCR_NAMES = ("PCR0", "PCR1", "PCR2", "PCR8")


@dataclass(frozen=True)
class IngressRule:
    """Allow TCP ``port`` from ``cidr`` (IPv4 or IPv6 CIDR)."""

    cidr: str
    port: int
    description: str = ""


@dataclass(frozen=True)
class NetworkConfig:
    """Use existing ``vpc_id``/``subnet_id``, or create a VPC of ``cidr``. No ingress unless listed."""

    vpc_id: str | None = None
    subnet_id: str | None = None
    cidr: str = "10.42.0.0/16"
    ingress: tuple[IngressRule, ...] = ()


@dataclass(frozen=True)
class EnclaveConfig:
    """Enclave size: vCPUs and memory in MiB, and whether debug mode is requested."""

    cpu_count: int = 2
    memory_mib: int = 1024
    debug: bool = False


@dataclass(frozen=True)
class AttestationConfig:
    """Which EIF measurements the key policy pins (PCR0 always; PCR1/2/8 and ImageSha384 optional)."""

    pcrs: tuple[str, ...] = ("PCR0", "PCR1", "PCR2")
    image_sha384: bool = True


@dataclass(frozen=True)
class KeyConfig:
    """KMS key settings: administrator principals, deletion window (7-30 days), protect flag."""

    admins: tuple[str, ...] = ()
    deletion_window_days: int = 30
    protect: bool = False


@dataclass(frozen=True)
class Target:
    """One deployment target of a stack."""

    name: str
    cloud: Cloud
    region: str
    tee: TeeType
    manifests: tuple[str, ...]
    instance_type: str = "m6i.xlarge"
    #: Parent-instance AMI id; None = the latest Amazon Linux 2023 AMI from the public SSM parameter.
    ami: str | None = None
    enclave: EnclaveConfig = field(default_factory=EnclaveConfig)
    attestation: AttestationConfig = field(default_factory=AttestationConfig)
    network: NetworkConfig = field(default_factory=NetworkConfig)
    key: KeyConfig = field(default_factory=KeyConfig)


@dataclass(frozen=True)
class StackConfig:
    """A whole stack: environment name, debug allowance and targets."""

    stack: str
    environment: str
    allow_debug: bool
    targets: tuple[Target, ...]
    source: str = "<config>"
    project_dir: Path = Path(".")

    @property
    def is_production(self) -> bool:
        return self.environment in ("prod", "production")

    def manifest_paths(self) -> list[Path]:
        """Every allowed manifest of every target, resolved against the project directory."""
        out: list[Path] = []
        for t in self.targets:
            for m in t.manifests:
                p = Path(m)
                out.append(p if p.is_absolute() else self.project_dir / p)
        return out

    @classmethod
    def from_values(
        cls,
        values: Mapping[str, Any],
        *,
        stack: str,
        source: str = "<config>",
        project_dir: Path | str = ".",
    ) -> StackConfig:
        """Build from un-namespaced config values (``{"targets": [...], "environment": ..., ...}``).

        Raises:
            TeeformError: naming ``source`` and the field (e.g. ``teeform:targets[0].enclave.cpuCount``).
        """
        raw_targets = values.get("targets")
        if isinstance(raw_targets, str):
            raw_targets = json.loads(raw_targets)
        if not isinstance(raw_targets, list) or not raw_targets:
            raise TeeformError("must be a non-empty list of targets", path=source, field=f"{PROJECT}:targets")
        env = str(values.get("environment") or stack)
        allow_debug = _bool(values.get("allowDebug", False), source, f"{PROJECT}:allowDebug")
        targets = tuple(_target(t, source, f"{PROJECT}:targets[{i}]") for i, t in enumerate(raw_targets))
        names = [t.name for t in targets]
        if len(set(names)) != len(names):
            raise TeeformError(f"target names must be unique, got {names}", path=source, field=f"{PROJECT}:targets")
        return cls(stack, env, allow_debug, targets, source, Path(project_dir))


def _bool(v: Any, source: str, fld: str) -> bool:
    if isinstance(v, bool):
        return v
    if isinstance(v, str) and v.lower() in ("true", "false"):
        return v.lower() == "true"
    raise TeeformError(f"must be true or false, got {v!r}", path=source, field=fld)


def _int(v: Any, source: str, fld: str, lo: int, hi: int) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, str)) or not str(v).isdigit():
        raise TeeformError(f"must be an integer, got {v!r}", path=source, field=fld)
    n = int(v)
    if not lo <= n <= hi:
        raise TeeformError(f"must be between {lo} and {hi}, got {n}", path=source, field=fld)
    return n


def _obj(v: Any, source: str, fld: str, allowed: set[str]) -> Mapping[str, Any]:
    if v is None:
        return {}
    if not isinstance(v, Mapping):
        raise TeeformError("must be a mapping", path=source, field=fld)
    unknown = set(v) - allowed
    if unknown:
        raise TeeformError(
            f"unknown key(s) {sorted(unknown)}; allowed: {sorted(allowed)}", path=source, field=fld
        )
    return v


def _target(raw: Any, source: str, fld: str) -> Target:
    t = _obj(
        raw, source, fld,
        {"name", "cloud", "region", "tee", "manifests", "instanceType", "ami", "enclave", "attestation", "network", "key"},
    )
    for req in ("name", "cloud", "region", "tee", "manifests"):
        if req not in t:
            raise TeeformError(f"missing required key {req!r}", path=source, field=fld)
    try:
        cloud = Cloud(t["cloud"])
    except ValueError:
        raise TeeformError(f"unknown cloud {t['cloud']!r}; one of {[c.value for c in Cloud]}", path=source, field=f"{fld}.cloud") from None
    try:
        tee = TeeType(t["tee"])
    except ValueError:
        raise TeeformError(f"unknown TEE type {t['tee']!r}; one of {[x.value for x in TeeType]}", path=source, field=f"{fld}.tee") from None
    if tee not in SUPPORTED[cloud]:
        raise TeeformError(f"{cloud.value} does not offer {tee.value}", path=source, field=f"{fld}.tee")
    manifests = t["manifests"]
    if isinstance(manifests, str):
        manifests = [manifests]
    if not isinstance(manifests, list) or not manifests or not all(isinstance(m, str) and m for m in manifests):
        raise TeeformError("must be a non-empty list of manifest paths", path=source, field=f"{fld}.manifests")

    e = _obj(t.get("enclave"), source, f"{fld}.enclave", {"cpuCount", "memoryMib", "debug"})
    enclave = EnclaveConfig(
        cpu_count=_int(e.get("cpuCount", 2), source, f"{fld}.enclave.cpuCount", 1, 128),
        memory_mib=_int(e.get("memoryMib", 1024), source, f"{fld}.enclave.memoryMib", 64, 4 * 1024 * 1024),
        debug=_bool(e.get("debug", False), source, f"{fld}.enclave.debug"),
    )
    a = _obj(t.get("attestation"), source, f"{fld}.attestation", {"pcrs", "imageSha384"})
    pcrs = tuple(a.get("pcrs", ("PCR0", "PCR1", "PCR2")))
    bad = [p for p in pcrs if p not in PCR_NAMES]
    if bad or "PCR0" not in pcrs:
        raise TeeformError(
            f"must list PCR0 and only names from {list(PCR_NAMES)}, got {list(pcrs)}", path=source, field=f"{fld}.attestation.pcrs"
        )
    attestation = AttestationConfig(pcrs, _bool(a.get("imageSha384", True), source, f"{fld}.attestation.imageSha384"))
    n = _obj(t.get("network"), source, f"{fld}.network", {"vpcId", "subnetId", "cidr", "ingress"})
    rules = []
    for i, r in enumerate(n.get("ingress") or []):
        rf = f"{fld}.network.ingress[{i}]"
        r = _obj(r, source, rf, {"cidr", "port", "description"})
        if "cidr" not in r or "port" not in r:
            raise TeeformError("needs both 'cidr' and 'port'", path=source, field=rf)
        rules.append(IngressRule(str(r["cidr"]), _int(r["port"], source, f"{rf}.port", 1, 65535), str(r.get("description", ""))))
    if bool(n.get("vpcId")) != bool(n.get("subnetId")):
        raise TeeformError("give both vpcId and subnetId, or neither", path=source, field=f"{fld}.network")
    network = NetworkConfig(n.get("vpcId"), n.get("subnetId"), str(n.get("cidr", "10.42.0.0/16")), tuple(rules))
    k = _obj(t.get("key"), source, f"{fld}.key", {"admins", "deletionWindowDays", "protect"})
    key = KeyConfig(
        tuple(k.get("admins", ())),
        _int(k.get("deletionWindowDays", 30), source, f"{fld}.key.deletionWindowDays", 7, 30),
        _bool(k.get("protect", False), source, f"{fld}.key.protect"),
    )
    return Target(
        name=str(t["name"]), cloud=cloud, region=str(t["region"]), tee=tee, manifests=tuple(manifests),
        instance_type=str(t.get("instanceType", "m6i.xlarge")), ami=(str(t["ami"]) if t.get("ami") else None), enclave=enclave, attestation=attestation,
        network=network, key=key,
    )


def read_stack_values(project_dir: Path | str, stack: str, stack_file: Path | str | None = None) -> tuple[dict[str, Any], str]:
    """Read ``Pulumi.yaml`` defaults and ``<stackConfigDir>/Pulumi.<stack>.yaml`` the way the CLI would.

    Project config defaults are applied first (the Pulumi CLI materialises them; the SDK does not,
    see ``shared/reference/pulumi.md`` §2.2 item 7), then the stack file's ``config:`` values.

    Returns:
        (``{"<ns>:<key>": value}`` with structured values kept as Python objects, the stack file path).

    Raises:
        TeeformError: a file is missing or is not valid YAML.
    """
    import yaml

    root = Path(project_dir)
    proj_file = root / "Pulumi.yaml"
    try:
        proj = yaml.safe_load(proj_file.read_text()) or {}
    except FileNotFoundError:
        raise TeeformError("Pulumi.yaml not found", path=proj_file, hint="run from the teeform project directory") from None
    except yaml.YAMLError as exc:
        raise TeeformError(f"invalid YAML: {exc}", path=proj_file) from exc
    name = proj.get("name", PROJECT)
    values: dict[str, Any] = {}
    for key, decl in (proj.get("config") or {}).items():
        full = key if ":" in key else f"{name}:{key}"
        if isinstance(decl, dict) and "default" in decl:
            values[full] = decl["default"]
        elif not isinstance(decl, dict):
            values[full] = decl
    f = Path(stack_file) if stack_file else root / proj.get("stackConfigDir", ".") / f"Pulumi.{stack}.yaml"
    try:
        doc = yaml.safe_load(f.read_text()) or {}
    except FileNotFoundError:
        raise TeeformError(f"stack config for {stack!r} not found", path=f, hint="stacks live in stacks/Pulumi.<stack>.yaml") from None
    except yaml.YAMLError as exc:
        raise TeeformError(f"invalid YAML: {exc}", path=f) from exc
    for k, v in (doc.get("config") or {}).items():
        values[k] = v
    return values, str(f)


def load_stack(project_dir: Path | str, stack: str, stack_file: Path | str | None = None) -> StackConfig:
    """Load and validate stack ``stack`` of the project at ``project_dir`` (see :func:`read_stack_values`)."""
    values, source = read_stack_values(project_dir, stack, stack_file)
    ours = {k.split(":", 1)[1]: v for k, v in values.items() if k.startswith(f"{PROJECT}:")}
    return StackConfig.from_values(ours, stack=stack, source=source, project_dir=Path(project_dir))


def project_dir_default() -> Path:
    """The project directory: ``$TEEFORM_PROJECT_DIR`` or the nearest parent holding Pulumi.yaml."""
    env = os.environ.get("TEEFORM_PROJECT_DIR")
    if env:
        return Path(env)
    here = Path.cwd()
    for p in (here, *here.parents):
        if (p / "Pulumi.yaml").exists():
            return p
    return here
