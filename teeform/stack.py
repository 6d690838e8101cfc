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

Common target fields (``name``, ``cloud``, ``region``, ``tee``, ``manifests``) are parsed here; every
other key belongs to the (cloud, TEE type) plug-in (:mod:`teeform.targets`), which declares and
parses its own typed settings (``instanceType``... above are the ``aws``/``nitro-enclave`` ones).
A key the target's plug-in does not declare is an error naming it
(``teeform:targets[1].enclave: not a setting of azure/sev-snp targets``).

Hostile input: the files are read through :mod:`teeform.safeload` (size-bounded, regular files
only, strict UTF-8, YAML alias bombs refused); every value must have the type its field expects
(nothing is coerced: ``admins: "arn:..."`` is refused, not split into characters); unknown
``teeform:*`` keys are refused. Every error is one line naming the file and the field.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from teeform.errors import TeeformError
from teeform.measurements import NITRO_PINNABLE_PCRS
from teeform.safeload import SMALL_JSON_LIMIT, decode_utf8, loads_json, loads_yaml, read_limited
from teeform.targets import SUPPORTED, plugin_for
from teeform.targets.base import (
    Cloud,
    TargetPlugin,
    TargetSettings,
    TeeType,
    fail,
    read_bool,
    read_list,
    read_map,
    read_str,
    reanchor,
)

if TYPE_CHECKING:
    from teeform.signing import TrustedKey
    from teeform.targets.aws_nitro_enclave import NitroSettings

PROJECT = "teeform"

#: EIF PCR names a Nitro target may pin (kept for callers of the old name; see teeform.measurements).
PCR_NAMES = NITRO_PINNABLE_PCRS

#: ``teeform:*`` stack-config keys (anything else in the namespace is a typo and is refused).
STACK_KEYS = frozenset({"environment", "allowDebug", "targets", "trustedManifestKeys", "terraformState"})

#: Keys every target has; the rest belong to the target's plug-in.
COMMON_KEYS = frozenset({"name", "cloud", "region", "tee", "manifests"})

#: Target names end up in resource names and output keys.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,39}$")
#: Region names of the four clouds (eu-west-1, westeurope, europe-west1, cn-beijing).
_REGION = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
_ENV = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")

#: Largest stack or project file read (a stack file is a few KiB).
STACK_FILE_LIMIT = SMALL_JSON_LIMIT

__all__ = [
    "PROJECT", "PCR_NAMES", "SUPPORTED", "Cloud", "TeeType", "Target", "StackConfig", "TargetSettings", "load_stack",
    "read_stack_values", "read_stack", "StackValues", "project_dir_default",
]


@dataclass(frozen=True)
class Target:
    """One deployment target of a stack: the common fields and the plug-in's typed ``settings``."""

    name: str
    cloud: Cloud
    region: str
    tee: TeeType
    manifests: tuple[str, ...]
    settings: TargetSettings = TargetSettings()
    #: rollover window per allowed manifest, parallel to ``manifests``: the last day (ISO
    #: ``YYYY-MM-DD``, UTC) it stays allowed, or None (no window); ``{path, until}`` entries
    #: (docs/gitops.md "Rollover window", :mod:`teeform.rollover`)
    manifest_until: tuple[str | None, ...] = ()

    def until_of(self, index: int) -> str | None:
        """The ``until`` date of allowed manifest ``index`` (None: no window)."""
        return self.manifest_until[index] if index < len(self.manifest_until) else None

    @property
    def plugin(self) -> TargetPlugin:
        """The (cloud, TEE type) plug-in of this target."""
        return plugin_for(self.cloud, self.tee)

    @property
    def nitro(self) -> NitroSettings:
        """The settings of an ``aws``/``nitro-enclave`` target.

        Raises:
            TeeformError: this target is of another pair.
        """
        from teeform.targets.aws_nitro_enclave import NitroSettings

        if not isinstance(self.settings, NitroSettings):
            raise TeeformError(f"target {self.name!r} is {self.cloud.value}/{self.tee.value}, not aws/nitro-enclave")
        return self.settings


@dataclass(frozen=True)
class StackConfig:
    """A whole stack: environment name, debug allowance and targets."""

    stack: str
    environment: str
    allow_debug: bool
    targets: tuple[Target, ...]
    source: str = "<config>"
    project_dir: Path = Path(".")
    #: ``teeform:trustedManifestKeys``: PEM public keys (file paths relative to the project directory,
    #: or inline PEM) whose signature a manifest of this environment must carry (docs/signing.md).
    trusted_manifest_keys: tuple[str, ...] = ()
    #: ``teeform:terraformState``: network ids taken from a Terraform state file (docs/terraform.md).
    terraform_state: TerraformStateRef | None = None

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

        ``targets`` may be a JSON string (how ``pulumi config set --path`` stores objects). Keys
        whose value is None are treated as absent.

        Raises:
            TeeformError: naming ``source`` and the field (e.g. ``teeform:targets[0].enclave.cpuCount``).
        """
        if not isinstance(values, Mapping):
            raise fail("stack config must be a mapping", source, f"{PROJECT}:*")
        unknown = sorted(str(k) for k in values if k not in STACK_KEYS)
        if unknown:
            raise fail(f"unknown key(s) {unknown}; allowed: {sorted(STACK_KEYS)}", source, f"{PROJECT}:{unknown[0]}")
        raw_targets = _json_config_value(values.get("targets"), source, f"{PROJECT}:targets")
        raw_targets = read_list(raw_targets, source, f"{PROJECT}:targets", non_empty=True)
        env_raw = values.get("environment")
        env = stack if env_raw is None or env_raw == "" else read_str(env_raw, source, f"{PROJECT}:environment")
        if not _ENV.match(env):
            raise fail(f"must be a name of letters, digits, '-', '_' or '.', got {env!r}", source, f"{PROJECT}:environment")
        debug_raw = values.get("allowDebug")
        allow_debug = False if debug_raw is None else read_bool(debug_raw, source, f"{PROJECT}:allowDebug")
        targets = tuple(_target(t, source, f"{PROJECT}:targets[{i}]") for i, t in enumerate(raw_targets))
        names = [t.name for t in targets]
        if len(set(names)) != len(names):
            raise fail(f"target names must be unique, got {names}", source, f"{PROJECT}:targets")
        trusted = _trusted_keys(values.get("trustedManifestKeys"), source)
        tf_state = _terraform_state(values.get("terraformState"), source)
        return cls(stack, env, allow_debug, targets, source, Path(project_dir), trusted_manifest_keys=trusted,
                   terraform_state=tf_state)

    def trusted_keys(self) -> list[TrustedKey]:
        """The parsed ``teeform:trustedManifestKeys`` ([] when unset): each entry a PEM public key
        file (relative to the project directory) or inline PEM (:func:`teeform.signing.parse_public_key`).

        Raises:
            TeeformError: a key file is missing or not a P-256 public key, naming the stack file and
                ``teeform:trustedManifestKeys[i]``.
        """
        from teeform.signing import load_public_key, parse_public_key

        out: list[TrustedKey] = []
        for i, entry in enumerate(self.trusted_manifest_keys):
            fld = f"{PROJECT}:trustedManifestKeys[{i}]"
            try:
                if entry.lstrip().startswith("-----BEGIN"):
                    out.append(parse_public_key(entry.encode("ascii", "replace"), f"{self.source}: {fld}"))
                    continue
                p = Path(entry)
                out.append(load_public_key(p if p.is_absolute() else self.project_dir / p))
            except TeeformError as exc:
                raise reanchor(exc, self.source, fld, hint="run `make demo` (it writes build/demo/keys/) or pin your "
                               "release key's public half") from None
        return out


@dataclass(frozen=True)
class TerraformStateRef:
    """``teeform:terraformState``: where the Pulumi program reads Terraform root-module outputs.

    Attributes:
        path: a local ``terraform.tfstate`` (relative to the project directory), read through
            pulumi-terraform's ``terraform.state.getLocalReference``.
        network: ``{"vpcId": <output name>, "subnetId": <output name>}``: every aws/nitro-enclave target
            without its own ``network.vpcId``/``subnetId`` gets these outputs' values.
        plain: output names exported as plain values; every other output is exported as a Pulumi secret
            (the provider returns Terraform ``sensitive`` outputs unmarked, gitops-signing-terraform.md §3.5).
    """

    path: str
    network: Mapping[str, str]
    plain: tuple[str, ...] = ()


def _json_config_value(raw: Any, source: str, fld: str, *, opener: str | None = None) -> Any:
    """``raw`` parsed as JSON when it is JSON text, else ``raw`` itself.

    ``pulumi config set --path`` stores structured config values as JSON strings; a stack file may
    hold the structure itself. ``opener``: only a string whose first
    non-blank character is ``opener`` (``"{"``, ``"["``) is JSON text, any other string stays a string
    (a plain path); None: every string is JSON text.

    Raises:
        TeeformError: invalid or hostile JSON (:func:`teeform.safeload.loads_json`), naming ``source``
            and ``fld``.
    """
    if not isinstance(raw, str) or (opener is not None and not raw.lstrip().startswith(opener)):
        return raw
    try:
        return loads_json(raw, source=f"{source}: {fld}")
    except TeeformError as exc:
        raise reanchor(exc, source, fld) from None


def _terraform_state(raw: Any, source: str) -> TerraformStateRef | None:
    if raw is None:
        return None
    fld = f"{PROJECT}:terraformState"
    raw = _json_config_value(raw, source, fld, opener="{")
    m = read_map(raw, source, fld, {"path", "network", "plain"})
    if "path" not in m:
        raise fail("missing required key 'path' (a terraform.tfstate file)", source, fld)
    path = read_str(m["path"], source, f"{fld}.path")
    net = read_map(m.get("network"), source, f"{fld}.network", {"vpcId", "subnetId"})
    network = {k: read_str(v, source, f"{fld}.network.{k}") for k, v in net.items()}
    if network and set(network) != {"vpcId", "subnetId"}:
        raise fail("give both vpcId and subnetId (Terraform output names), or neither", source, f"{fld}.network")
    plain = tuple(read_str(v, source, f"{fld}.plain[{i}]") for i, v in enumerate(read_list(m.get("plain"), source,
                                                                                         f"{fld}.plain")))
    return TerraformStateRef(path, network, plain)


def _trusted_keys(raw: Any, source: str) -> tuple[str, ...]:
    """``teeform:trustedManifestKeys``: a list of strings (a JSON string list is accepted, as
    ``pulumi config set --path`` stores it); absent = ()."""
    if raw is None:
        return ()
    fld = f"{PROJECT}:trustedManifestKeys"
    raw = _json_config_value(raw, source, fld, opener="[")
    if isinstance(raw, str):
        raw = [raw]
    return tuple(read_str(k, source, f"{fld}[{i}]") for i, k in enumerate(read_list(raw, source, fld)))


def _enum(enum_type: type[Cloud] | type[TeeType], v: Any, source: str, fld: str, what: str) -> Any:
    s = read_str(v, source, fld)
    try:
        return enum_type(s)
    except ValueError:
        raise fail(f"unknown {what} {s!r}; one of {[x.value for x in enum_type]}", source, fld) from None


def _target(raw: Any, source: str, fld: str) -> Target:
    if not isinstance(raw, Mapping):
        raise fail("must be a mapping (a target)", source, fld)
    t = read_map(raw, source, fld, set(raw) if all(isinstance(k, str) for k in raw) else set())
    for req in ("name", "cloud", "region", "tee", "manifests"):
        if req not in t:
            raise fail(f"missing required key {req!r}", source, fld)
    name = read_str(t["name"], source, f"{fld}.name")
    if not _NAME.match(name):
        raise fail(f"must be 1-40 letters, digits, '-' or '_' (starting with a letter or digit), got {name!r}",
                   source, f"{fld}.name")
    cloud = _enum(Cloud, t["cloud"], source, f"{fld}.cloud", "cloud")
    tee = _enum(TeeType, t["tee"], source, f"{fld}.tee", "TEE type")
    if tee not in SUPPORTED[cloud]:
        raise fail(f"{cloud.value} does not offer {tee.value}; it offers {sorted(x.value for x in SUPPORTED[cloud])}",
                   source, f"{fld}.tee")
    region = read_str(t["region"], source, f"{fld}.region")
    if not _REGION.match(region):
        raise fail(f"must be a region name such as eu-west-1 or westeurope, got {region!r}", source, f"{fld}.region")
    manifests_raw = t["manifests"]
    if isinstance(manifests_raw, str):  # one manifest may be given as a plain path
        manifests_raw = [manifests_raw]
    entries = [_manifest_entry(m, source, f"{fld}.manifests[{i}]")
               for i, m in enumerate(read_list(manifests_raw, source, f"{fld}.manifests", non_empty=True))]
    manifests = tuple(p for p, _ in entries)
    manifest_until = tuple(u for _, u in entries)
    plugin = plugin_for(cloud, tee)
    for key in t:
        if key not in COMMON_KEYS and key not in plugin.settings_keys:
            allowed = sorted(plugin.settings_keys) or "none"
            raise fail(f"not a setting of {plugin.pair} targets (its settings: {allowed})", source, f"{fld}.{key}")
    settings = plugin.parse_settings({k: v for k, v in t.items() if k in plugin.settings_keys}, source, fld)
    return Target(name=name, cloud=cloud, region=region, tee=tee, manifests=manifests, settings=settings,
                  manifest_until=manifest_until)


def _manifest_entry(raw: Any, source: str, fld: str) -> tuple[str, str | None]:
    """One ``manifests`` entry: a path, or ``{path: ..., until: YYYY-MM-DD}`` (a rollover window).

    ``until`` must be a real calendar date written ``YYYY-MM-DD`` (a YAML date or a string); it is
    the last UTC day the manifest stays allowed (:mod:`teeform.rollover`). Nothing else is accepted.
    """
    if not isinstance(raw, Mapping):
        return read_str(raw, source, fld), None
    from teeform.rollover import parse_until

    m = read_map(raw, source, fld, {"path", "until"})
    if "path" not in m:
        raise fail("missing required key 'path' (an entry is a path or {path, until})", source, fld)
    path = read_str(m["path"], source, f"{fld}.path")
    until = None if m.get("until") is None else parse_until(m["until"], source, f"{fld}.until")
    return path, until


def _read_yaml_mapping(path: Path, what: str) -> Mapping[str, Any]:
    """A YAML file whose top level is a mapping (empty file = empty mapping), read with safeload."""
    try:
        # read_limited, decode_utf8 and loads_yaml put the path into the message: re-anchor it as this file's error.
        doc = loads_yaml(decode_utf8(read_limited(path, STACK_FILE_LIMIT, what=what), source=str(path)),
                         source=str(path))
    except TeeformError as exc:
        raise reanchor(exc, path) from None
    if doc is None:
        return {}
    if not isinstance(doc, Mapping):
        raise fail(f"must be a YAML mapping, got {type(doc).__name__}", str(path), "(top level)")
    return doc


@dataclass(frozen=True)
class StackValues:
    """What :func:`read_stack` read: the merged config ``values`` (``{"<ns>:<key>": value}``), the
    stack file path ``source``, and ``project``, the ``name`` of ``Pulumi.yaml`` (default ``teeform``;
    pulumi.md §1.1), which is the namespace of un-namespaced keys."""

    values: dict[str, Any]
    source: str
    project: str


def read_stack_values(project_dir: Path | str, stack: str, stack_file: Path | str | None = None) -> tuple[dict[str, Any], str]:
    """``(values, stack file path)`` of :func:`read_stack` (same arguments, same errors)."""
    read = read_stack(project_dir, stack, stack_file)
    return read.values, read.source


def read_stack(project_dir: Path | str, stack: str, stack_file: Path | str | None = None) -> StackValues:
    """Read ``Pulumi.yaml`` defaults and ``<stackConfigDir>/Pulumi.<stack>.yaml`` the way the CLI would.

    Project config defaults are applied first (the Pulumi CLI materialises them; the SDK does not,
    see ``shared/reference/pulumi.md`` §2.2 item 7), then the stack file's ``config:`` values. A
    key without a namespace belongs to the project (``targets`` = ``teeform:targets``, as in
    ``Pulumi.yaml``; pulumi.md §1.2).

    Returns:
        :class:`StackValues`: ``{"<ns>:<key>": value}`` with structured values kept as Python objects,
        the stack file path, and the project name (a non-empty string).

    Raises:
        TeeformError: a file is missing, not a regular file, too large, not UTF-8, not valid YAML,
            has a duplicate key (also ``targets`` next to ``teeform:targets``), or is not shaped as
            Pulumi expects (naming the file and the field).
    """
    root = Path(project_dir)
    proj_file = root / "Pulumi.yaml"
    if not proj_file.exists():
        raise TeeformError("Pulumi.yaml not found", path=proj_file, hint="run from the teeform project directory")
    proj = _read_yaml_mapping(proj_file, "project file")
    name = proj.get("name", PROJECT)
    name = read_str(name, str(proj_file), "name")
    values: dict[str, Any] = {}
    proj_config = read_map(proj.get("config"), str(proj_file), "config",
                           set(proj.get("config") or {}) if isinstance(proj.get("config"), Mapping) else set())
    for key, decl in proj_config.items():
        full = key if ":" in key else f"{name}:{key}"
        if isinstance(decl, Mapping) and "default" in decl:
            values[full] = decl["default"]
        elif not isinstance(decl, Mapping):
            values[full] = decl
    config_dir = read_str(proj.get("stackConfigDir", "."), str(proj_file), "stackConfigDir")
    f = Path(stack_file) if stack_file else root / config_dir / f"Pulumi.{stack}.yaml"
    if not f.exists() and not f.is_symlink():
        raise TeeformError(f"stack config for {stack!r} not found", path=f, hint="stacks live in stacks/Pulumi.<stack>.yaml")
    doc = _read_yaml_mapping(f, "stack config")
    cfg = doc.get("config")
    if cfg is None:
        cfg = {}
    if not isinstance(cfg, Mapping):
        raise fail(f"must be a mapping of config keys, got {type(cfg).__name__}", str(f), "config")
    from_stack: dict[str, str] = {}
    for k, v in cfg.items():
        if not isinstance(k, str) or not k:
            raise fail(f"config keys must be strings, got {k!r}", str(f), "config")
        full = k if ":" in k else f"{name}:{k}"
        if full in from_stack:  # `targets` and `teeform:targets` are one key (pulumi.md §1.2)
            raise fail(f"duplicate key: {from_stack[full]!r} and {k!r} both set {full!r}", str(f), f"config.{k}")
        from_stack[full] = k
        values[full] = v
    return StackValues(values, str(f), name)


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
