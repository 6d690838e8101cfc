"""Offline preview: run the real Pulumi program under the SDK's mock engine, then the policy pack.

``teeform preview --stack dev`` does what ``pulumi preview --policy-pack policies`` does, without
the Pulumi CLI, a backend or cloud credentials:

1. Stack config is read like the CLI reads it (``Pulumi.yaml`` defaults, then
   ``stacks/Pulumi.<stack>.yaml``; :func:`teeform.stack.read_stack_values`) and handed to the SDK
   with ``pulumi.runtime.set_all_config`` (shared/reference/pulumi.md §2.6).
2. ``<project>/__main__.py`` runs under ``pulumi.runtime.set_mocks`` with ``preview=False`` and a
   fresh root stack (§2.3). :class:`PreviewMocks` answers every registration with realistic ids and
   ARNs (``arn:aws:kms:<region>:111122223333:key/<uuid>``) and every invoke the program makes
   (caller identity, the Amazon Linux AMI parameter).
3. Every policy of ``policies/teeform_policies`` runs over the registered resources the way
   CrossGuard calls it (§3.1, §3.4; pulumi_policy ``_PolicyAnalyzerServicer.Analyze``/``AnalyzeStack``):
   a ``ResourceValidationArgs`` per resource with ``deserialize_properties(inputs)`` and the
   policy's config, and one ``StackValidationArgs`` over all resources. The enforcement level is
   the policy's default, overridden by the pack config for the stack (``--policy-config``, else
   ``policies/config/<stack>.json``, else ``policies/config/<environment>.json``): the policy's own
   entry, else ``"all"``. Config properties get their
   ``config_schema`` defaults.

Differences from the real engine (documented, not hidden): policies see the SDK-sent inputs, not
the provider-checked ones; stack policies see inputs where the engine gives outputs (the
MeasurementManifest component registers its props as outputs, so both agree for it); URNs are
synthesised as ``urn:pulumi:<stack>::<project>::<type>::<name>``.

Errors raised inside the program (a :class:`~teeform.errors.TeeformError`, e.g. a missing manifest
or an instance type that is too small) are unwrapped from Pulumi's wrappers and re-raised as is, so
the CLI prints one line.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import json
import os
import runpy
import sys
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from teeform.errors import TeeformError
from teeform.fsutil import display_path
from teeform.stack import PROJECT, read_stack_values

#: The example account id of the AWS documentation, used by the mocks.
MOCK_ACCOUNT_ID = "111122223333"
MOCK_CALLER_ARN = f"arn:aws:iam::{MOCK_ACCOUNT_ID}:user/teeform-deployer"
MOCK_AMI_ID = "ami-0a1b2c3d4e5f60718"
STACK_TYPE = "pulumi:pulumi:Stack"


# ----------------------------------------------------------------------------- data


@dataclass(frozen=True)
class RegisteredResource:
    """One resource the program registered: type token, name, synthesized URN, whether it is a
    custom (cloud) resource, and its inputs (wire/camelCase names, secrets unwrapped)."""

    type: str
    name: str
    urn: str
    custom: bool
    inputs: Mapping[str, Any]


@dataclass(frozen=True)
class Violation:
    """A policy violation: policy id, enforcement level, message, and the resource it is about
    (empty for stack-level violations without a resource)."""

    policy: str
    enforcement: str
    message: str
    resource_type: str = ""
    resource_name: str = ""
    urn: str = ""
    severity: str = ""


@dataclass(frozen=True)
class PreviewResult:
    """What ``teeform preview`` found: resources in registration order, stack outputs in export
    order, violations, and the policy ids that ran."""

    stack: str
    stack_file: str
    resources: tuple[RegisteredResource, ...]
    outputs: Mapping[str, Any]
    violations: tuple[Violation, ...]
    policies: tuple[str, ...] = ()
    policy_config: str | None = None

    @property
    def mandatory(self) -> list[Violation]:
        """Violations that block a deployment (``mandatory``, or ``remediate`` that still fails)."""
        return [v for v in self.violations if v.enforcement == "mandatory"]


# ----------------------------------------------------------------------------- mocks


def _hex(seed: str, n: int) -> str:
    return hashlib.sha256(seed.encode()).hexdigest()[:n]


class PreviewMocks:
    """``pulumi.runtime.Mocks`` returning realistic ids/ARNs (deterministic: derived from names).

    Records every registration in :attr:`resources` (``MockResourceArgs``) and every invoke in
    :attr:`calls`. Provider resources remember their region so child ARNs carry it.
    """

    def __init__(self, default_region: str = "us-east-1") -> None:
        self.resources: list[Any] = []
        self.calls: list[Any] = []
        self.default_region = default_region
        self._regions: dict[str, str] = {}

    # The SDK calls these two (duck-typed; subclassing pulumi.runtime.Mocks happens in _mocks_class).
    def new_resource(self, args: Any) -> tuple[str | None, dict[str, Any]]:
        self.resources.append(args)
        typ, name, inputs = args.typ, args.name, dict(args.inputs)
        region = self._region_of(args.provider)
        acct = MOCK_ACCOUNT_ID
        state = dict(inputs)
        rid = f"{name}-id"
        if typ.startswith("pulumi:providers:"):
            rid = f"{name}-provider-id"
            self._regions[rid] = str(inputs.get("region") or self.default_region)
        elif typ == "aws:kms/key:Key":
            rid = str(uuid.UUID(_hex("kms" + name, 32)))
            state.update(arn=f"arn:aws:kms:{region}:{acct}:key/{rid}", keyId=rid)
        elif typ == "aws:kms/alias:Alias":
            rid = str(inputs.get("name") or f"alias/{name}")
            state.update(arn=f"arn:aws:kms:{region}:{acct}:{rid}")
        elif typ == "aws:iam/role:Role":
            rid = str(inputs.get("name") or name)
            state.update(arn=f"arn:aws:iam::{acct}:role/{rid}", uniqueId="AROA" + _hex(name, 16).upper())
        elif typ == "aws:iam/instanceProfile:InstanceProfile":
            rid = str(inputs.get("name") or name)
            state.update(arn=f"arn:aws:iam::{acct}:instance-profile/{rid}")
        elif typ == "aws:iam/rolePolicy:RolePolicy":
            rid = f"{inputs.get('role')}:{name}"
        elif typ == "aws:s3/bucket:Bucket":
            rid = str(inputs.get("bucket") or name)
            state.update(bucket=rid, arn=f"arn:aws:s3:::{rid}", region=region)
        elif typ == "aws:s3/bucketObjectv2:BucketObjectv2":
            rid = str(inputs.get("key"))
            state.update(arn=f"arn:aws:s3:::{inputs.get('bucket')}/{rid}", versionId=_hex(name, 32))
        elif typ == "aws:ec2/launchTemplate:LaunchTemplate":
            rid = "lt-" + _hex(name, 17)
            state.update(arn=f"arn:aws:ec2:{region}:{acct}:launch-template/{rid}", latestVersion=1, defaultVersion=1)
        elif typ == "aws:ec2/instance:Instance":
            rid = "i-" + _hex(name, 17)
            state.update(
                arn=f"arn:aws:ec2:{region}:{acct}:instance/{rid}", privateIp="10.42.0.10",
                instanceState="running", availabilityZone=f"{region}a",
            )
        elif typ.startswith("aws:ec2/") or typ.startswith("aws:vpc/"):
            prefix = {
                "aws:ec2/vpc:Vpc": "vpc", "aws:ec2/subnet:Subnet": "subnet", "aws:ec2/securityGroup:SecurityGroup": "sg",
                "aws:ec2/internetGateway:InternetGateway": "igw", "aws:ec2/routeTable:RouteTable": "rtb",
                "aws:ec2/routeTableAssociation:RouteTableAssociation": "rtbassoc",
                "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule": "sgr",
                "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule": "sgr",
            }.get(typ, "res")
            rid = f"{prefix}-{_hex(name, 17)}"
            kind = typ.split(":")[-1][0].lower() + typ.split(":")[-1][1:]
            state.update(arn=f"arn:aws:ec2:{region}:{acct}:{kind}/{rid}")
        elif typ.startswith("aws:"):
            state.setdefault("arn", f"arn:aws:{typ.split(':')[1].split('/')[0]}:{region}:{acct}:{name}")
        return rid, state

    def call(self, args: Any) -> dict[str, Any]:
        self.calls.append(args)
        token = args.token
        if token == "aws:index/getCallerIdentity:getCallerIdentity":
            return {"accountId": MOCK_ACCOUNT_ID, "arn": MOCK_CALLER_ARN, "userId": "AIDA" + _hex("caller", 16).upper(), "id": MOCK_ACCOUNT_ID}
        if token == "aws:ssm/getParameter:getParameter":
            return {"name": args.args.get("name"), "value": MOCK_AMI_ID, "type": "String", "id": args.args.get("name")}
        if token == "aws:index/getPartition:getPartition":
            return {"partition": "aws", "dnsSuffix": "amazonaws.com", "id": "aws"}
        if token == "aws:index/getRegion:getRegion":
            return {"name": self.default_region, "region": self.default_region, "id": self.default_region}
        return {}

    def _region_of(self, provider_ref: str | None) -> str:
        if provider_ref and "::" in provider_ref:
            return self._regions.get(provider_ref.rsplit("::", 1)[1], self.default_region)
        return self.default_region


def _mocks_class() -> type:
    import pulumi

    class _Mocks(PreviewMocks, pulumi.runtime.Mocks):
        pass

    return _Mocks


def make_mocks(default_region: str = "us-east-1") -> PreviewMocks:
    """A :class:`PreviewMocks` that is also a ``pulumi.runtime.Mocks`` (what ``set_mocks`` wants)."""
    mocks: PreviewMocks = _mocks_class()(default_region)
    return mocks


# ----------------------------------------------------------------------------- program


def _find_teeform_error(exc: BaseException) -> TeeformError | None:
    """The TeeformError inside ``exc`` (itself, its cause/context chain, or a wrapper's args)."""
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        e = todo.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, TeeformError):
            return e
        todo.extend(x for x in (e.__cause__, e.__context__) if x is not None)
        todo.extend(a for a in getattr(e, "args", ()) if isinstance(a, BaseException))
        todo.extend(getattr(e, "exceptions", ()) or ())
    return None


@contextlib.contextmanager
def _env(name: str, value: str | None) -> Iterator[None]:
    old = os.environ.get(name)
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old


@contextlib.contextmanager
def _sys_path(path: Path) -> Iterator[None]:
    p = str(path)
    sys.path.insert(0, p)
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(p)


def config_strings(values: Mapping[str, Any]) -> dict[str, str]:
    """Config for ``set_all_config``: strings as is, structured values as JSON; ``secure:`` values
    (encrypted in the stack file) are left out -- the program must not need them offline."""
    out = {}
    for k, v in values.items():
        if isinstance(v, Mapping) and "secure" in v:
            continue
        out[k] = v if isinstance(v, str) else json.dumps(v)
    return out


def run_program(
    project_dir: Path, stack: str, values: Mapping[str, Any], *, stack_file: str | None = None, project: str = PROJECT
) -> tuple[PreviewMocks, dict[str, Any]]:
    """Run ``<project_dir>/__main__.py`` under mocks with config ``values`` (``{"ns:key": value}``).

    Returns:
        (the mocks, holding every registration and invoke; the stack outputs in export order).

    Raises:
        TeeformError: raised by the program (unwrapped), or wrapping any other program failure.
    """
    import pulumi
    from pulumi.runtime import settings
    from pulumi.runtime.sync_await import _sync_await

    program = project_dir / "__main__.py"
    if not program.is_file():
        raise TeeformError("no Pulumi program here", path=program, hint="use --project-dir with the teeform project")
    region = str(values.get("aws:region") or "us-east-1")
    mocks = make_mocks(region)
    settings.ROOT.set(None)  # a fresh root Stack: no exports leak from an earlier run (pulumi.md §2.2 item 6)
    pulumi.runtime.set_mocks(mocks, project=project, stack=stack, preview=False)  # type: ignore[arg-type]
    pulumi.runtime.set_all_config(config_strings(values))

    @pulumi.runtime.test
    def _run() -> None:
        runpy.run_path(str(program), run_name="__main__")

    try:
        with _sys_path(project_dir), _env("TEEFORM_STACK_FILE", stack_file):
            _run()
            root = settings.get_root_resource()
            outputs = {k: _sync_await(pulumi.Output.from_input(v).future()) for k, v in (root.outputs if root else {}).items()}  # type: ignore[attr-defined]
    except Exception as exc:
        found = _find_teeform_error(exc)
        if found is not None:
            raise found from None
        raise TeeformError(
            f"the Pulumi program failed: {type(exc).__name__}: {exc}".splitlines()[0],
            path=program, hint="rerun with --debug for the traceback",
        ) from exc
    return mocks, outputs


def registered_resources(mocks: PreviewMocks, stack: str, project: str = PROJECT) -> list[RegisteredResource]:
    """The mocks' registrations as :class:`RegisteredResource` (inputs deserialized as CrossGuard does)."""
    from pulumi_policy.deserialize import deserialize_properties

    out = []
    for r in mocks.resources:
        if r.typ == STACK_TYPE:
            continue
        out.append(
            RegisteredResource(
                type=r.typ, name=r.name, urn=f"urn:pulumi:{stack}::{project}::{r.typ}::{r.name}",
                custom=bool(getattr(r, "custom", True)), inputs=deserialize_properties(dict(r.inputs)),
            )
        )
    return out


# ----------------------------------------------------------------------------- policies


def load_policies(project_dir: Path) -> list[Any]:
    """The policy registry of ``<project_dir>/policies/teeform_policies`` (imported with
    ``policies/`` on ``sys.path``, as the CLI's policy host would; never ``policies/__main__.py``,
    which starts a gRPC server)."""
    pdir = (project_dir / "policies").resolve()
    if not (pdir / "teeform_policies" / "__init__.py").is_file():
        raise TeeformError("policy pack not found", path=pdir / "teeform_policies", hint="use --project-dir")
    mod = sys.modules.get("teeform_policies")
    if mod is not None and Path(mod.__file__ or "").resolve().parent.parent != pdir:
        for name in [n for n in sys.modules if n == "teeform_policies" or n.startswith("teeform_policies.")]:
            del sys.modules[name]
    with _sys_path(pdir):
        mod = importlib.import_module("teeform_policies")
    return list(mod.all_policies())


def read_pack_config(path: Path | None) -> dict[str, Any]:
    """Read a policy-pack config JSON (``{"all": level, "<policy>": level | {enforcementLevel, ...}}``).

    Raises:
        TeeformError: unreadable or not a JSON object.
    """
    if path is None:
        return {}
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise TeeformError("policy config not found", path=path) from None
    except json.JSONDecodeError as exc:
        raise TeeformError(f"not valid JSON: {exc.msg} at line {exc.lineno}", path=path) from None
    if not isinstance(data, dict):
        raise TeeformError("a policy-pack config must be a JSON object", path=path)
    return data


def policy_settings(policy: Any, pack_config: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """(enforcement level, config) of ``policy`` under ``pack_config``, as the engine resolves them:
    the policy's own entry, else ``"all"``, else the policy default (advisory if none); config =
    schema defaults overlaid with the entry's properties."""
    entry = pack_config.get(policy.name)
    level = policy.enforcement_level.value if policy.enforcement_level is not None else "advisory"
    props: dict[str, Any] = {}
    if isinstance(entry, str):
        level = entry
    elif isinstance(entry, Mapping):
        props = {k: v for k, v in entry.items() if k != "enforcementLevel"}
        if "enforcementLevel" in entry:
            level = entry["enforcementLevel"]
        elif isinstance(pack_config.get("all"), str):
            level = pack_config["all"]
    elif isinstance(pack_config.get("all"), str):
        level = pack_config["all"]
    schema = getattr(policy, "config_schema", None)
    defaults = {k: v["default"] for k, v in ((schema.properties if schema else None) or {}).items() if "default" in v}
    if level == "remediate":  # a remediate policy that still fails is reported as mandatory (pulumi.md §3.2)
        level = "mandatory"
    return level, {**defaults, **props}


def _opts() -> Any:
    from pulumi_policy import PolicyCustomTimeouts, PolicyResourceOptions

    return PolicyResourceOptions(
        protect=False, ignore_changes=[], delete_before_replace=None, aliases=[],
        custom_timeouts=PolicyCustomTimeouts(0, 0, 0), additional_secret_outputs=[],
    )


def evaluate_policies(
    resources: Sequence[RegisteredResource], policies: Sequence[Any], pack_config: Mapping[str, Any]
) -> list[Violation]:
    """Run every policy over ``resources`` as CrossGuard would (see the module docstring)."""
    from pulumi_policy import (
        PolicyResource,
        ResourceValidationArgs,
        ResourceValidationPolicy,
        StackValidationArgs,
        StackValidationPolicy,
    )
    from pulumi_policy.proxy import unknown_checking_proxy

    by_urn = {r.urn: r for r in resources}
    out: list[Violation] = []
    for pol in policies:
        level, cfg = policy_settings(pol, pack_config)
        if level == "disabled":
            continue
        sev = pol.severity.value if getattr(pol, "severity", None) is not None else ""

        def report(message: str, urn: str | None = None, *, _r: RegisteredResource | None = None, _p: Any = pol, _l: str = level, _s: str = sev) -> None:
            res = _r or (by_urn.get(urn) if urn else None)
            out.append(
                Violation(_p.name, _l, message, res.type if res else "", res.name if res else "", res.urn if res else "", _s)
            )

        if isinstance(pol, ResourceValidationPolicy):
            for r in resources:
                args = ResourceValidationArgs(
                    r.type, unknown_checking_proxy(dict(r.inputs)), r.urn, r.name, _opts(), None, dict(cfg)
                )
                _validate(pol, args, lambda m, urn=None, _r=r: report(m, _r=_r))
        elif isinstance(pol, StackValidationPolicy):
            prs = [
                PolicyResource(r.type, unknown_checking_proxy(dict(r.inputs)), r.urn, r.name, _opts(), None, None, [], {})
                for r in resources
            ]
            _validate(pol, StackValidationArgs(prs, dict(cfg)), lambda m, urn=None: report(m, urn))
    return out


def _validate(pol: Any, args: Any, report: Any) -> None:
    """Call ``pol.validate`` like the analyzer does: await a returned awaitable, treat
    ``not_applicable`` as no result, and an unknown value as an advisory "cannot run" note."""
    import asyncio
    from inspect import isawaitable

    from pulumi_policy.policy import _NotApplicableError  # what args.not_applicable() raises
    from pulumi_policy.proxy import UnknownValueError

    try:
        result = pol.validate(args, report)
        if isawaitable(result):
            asyncio.run(_await(result))
    except _NotApplicableError:
        return
    except UnknownValueError as exc:  # cannot happen with preview=False mocks; kept for parity
        report(f"can't run policy '{pol.name}' during preview: {exc.message}")


async def _await(result: Any) -> None:
    await result


# ----------------------------------------------------------------------------- orchestration


def default_policy_config(project_dir: Path, stack: str, environment: Any) -> Path | None:
    """The pack config used when ``--policy-config`` is not given: ``policies/config/<stack>.json``,
    else ``policies/config/<environment>.json`` (stack config ``teeform:environment``), else None.

    The fallback keeps "``no-public-ingress`` is mandatory in prod" true for a production stack that
    is not named ``prod`` (e.g. stack ``prod-eu`` with ``teeform:environment: prod``).
    """
    names = [stack] + ([str(environment)] if environment else [])
    for name in dict.fromkeys(names):
        candidate = project_dir / "policies" / "config" / f"{name}.json"
        if candidate.is_file():
            return candidate
    return None


def run_preview(
    project_dir: Path,
    stack: str,
    *,
    stack_file: Path | None = None,
    policy_config: Path | None = None,
) -> PreviewResult:
    """Run the program for ``stack`` under mocks and evaluate the policy pack (module docstring).

    ``policy_config`` defaults to :func:`default_policy_config`.

    Raises:
        TeeformError: bad stack or policy config, or an error raised by the program.
    """
    import yaml

    project_dir = project_dir.resolve()
    values, source = read_stack_values(project_dir, stack, stack_file)
    try:
        project = str((yaml.safe_load((project_dir / "Pulumi.yaml").read_text()) or {}).get("name", PROJECT))
    except (OSError, yaml.YAMLError):
        project = PROJECT
    if policy_config is None:
        policy_config = default_policy_config(project_dir, stack, values.get(f"{project}:environment"))
    pack_config = read_pack_config(policy_config)
    policies = load_policies(project_dir)
    mocks, outputs = run_program(project_dir, stack, values, stack_file=str(stack_file) if stack_file else None, project=project)
    resources = registered_resources(mocks, stack, project)
    violations = evaluate_policies(resources, policies, pack_config)
    return PreviewResult(
        stack=stack, stack_file=source, resources=tuple(resources), outputs=outputs, violations=tuple(violations),
        policies=tuple(p.name for p in policies), policy_config=str(policy_config) if policy_config else None,
    )


# ----------------------------------------------------------------------------- rendering


def _b64_text(v: Any) -> str:
    import base64
    import binascii

    try:
        return base64.b64decode(str(v), validate=True).decode("utf-8", "replace")
    except (binascii.Error, ValueError):
        return str(v)


def summarize(r: RegisteredResource) -> list[str]:
    """Key properties of a resource, one ``name=value`` string each (empty for most resources)."""
    i = _json_safe(r.inputs)  # plain dicts; protobuf numbers (443.0) back to ints
    t = r.type
    if t == "aws:ec2/launchTemplate:LaunchTemplate":
        ebs = [(b.get("ebs") or {}).get("encrypted") for b in i.get("blockDeviceMappings") or []]
        ud = _b64_text(i.get("userData", ""))
        run = next((ln.strip() for ln in ud.splitlines() if "nitro-cli run-enclave" in ln), "")
        return [
            f"instanceType={i.get('instanceType')}",
            f"enclaveOptions.enabled={(i.get('enclaveOptions') or {}).get('enabled')}",
            f"metadataOptions.httpTokens={(i.get('metadataOptions') or {}).get('httpTokens')}",
            f"ebs.encrypted={ebs}",
            f"userData: {run.replace('exec ', '')}" if run else "userData: (no run-enclave)",
        ]
    if t == "aws:ec2/instance:Instance":
        lt = i.get("launchTemplate") or {}
        return [f"launchTemplate={lt.get('id')} v{lt.get('version')}", f"subnetId={i.get('subnetId')}"]
    if t in ("aws:kms/key:Key", "aws:kms/keyPolicy:KeyPolicy"):
        lines = []
        if t == "aws:kms/key:Key":
            lines.append(f"enableKeyRotation={i.get('enableKeyRotation')} deletionWindowInDays={i.get('deletionWindowInDays')}")
        try:
            doc = json.loads(i.get("policy") or "{}")
        except json.JSONDecodeError:
            return lines + ["policy: (not JSON)"]
        stmts = doc.get("Statement") or []
        for s in stmts if isinstance(stmts, list) else [stmts]:
            acts = s.get("Action")
            acts = [acts] if isinstance(acts, str) else acts or []
            principal = s.get("Principal")
            if isinstance(principal, Mapping):
                principal = principal.get("AWS", principal)
            lines.append(f"statement {s.get('Sid', '?')}: {s.get('Effect')} {principal} {len(acts)} action(s): {', '.join(acts[:4])}{' ...' if len(acts) > 4 else ''}")
            for op, block in (s.get("Condition") or {}).items():
                for k, v in block.items():
                    vals = [v] if isinstance(v, str) else list(v)
                    lines.append(f"  {op} {k} in [{', '.join(vals)}]")
        return lines
    if t == "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule" or t == "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule":
        return [f"{i.get('ipProtocol')} {i.get('fromPort')}-{i.get('toPort')} {i.get('cidrIpv4') or i.get('cidrIpv6')}"]
    if t == "aws:s3/bucketObjectv2:BucketObjectv2":
        return [f"key={i.get('key')}"]
    if t == "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock":
        return [f"{k}={i.get(k)}" for k in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")]
    if t == "aws:s3/bucket:Bucket":
        return [f"bucket={i.get('bucket')}"]
    if t == "aws:iam/role:Role":
        return [f"name={i.get('name')}"]
    if t == "teeform:index:MeasurementManifest":
        return [f"name={i.get('name')} kind={i.get('kind')} path={i.get('path')} sha256={i.get('sha256')}"]
    return []


def _json_safe(v: Any) -> Any:
    if isinstance(v, Mapping):
        return {str(k): _json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_json_safe(x) for x in v]
    if isinstance(v, float) and v.is_integer():
        return int(v)  # CrossGuard/protobuf numbers are doubles
    if v is None or isinstance(v, (str, int, float, bool)):
        return v
    path = getattr(v, "path", None)
    if path is not None:  # pulumi FileAsset / FileArchive
        return {"asset": str(path)}
    return str(v)


def to_json(result: PreviewResult) -> dict[str, Any]:
    """The ``--json`` document: ``{resources, outputs, violations}`` (plus stack and policy metadata)."""
    return {
        "stack": result.stack,
        "stackFile": result.stack_file,
        "policyConfig": result.policy_config,
        "resources": [
            {"type": r.type, "name": r.name, "urn": r.urn, "custom": r.custom, "summary": summarize(r), "inputs": _json_safe(r.inputs)}
            for r in result.resources
        ],
        "outputs": _json_safe(dict(result.outputs)),
        "violations": [
            {
                "policy": v.policy, "enforcementLevel": v.enforcement, "severity": v.severity, "message": v.message,
                "resourceType": v.resource_type, "resourceName": v.resource_name, "urn": v.urn,
            }
            for v in result.violations
        ],
        "policies": list(result.policies),
    }


def _yamlish(value: Any, indent: int) -> list[str]:
    pad = " " * indent
    if isinstance(value, Mapping):
        lines = []
        for k, v in value.items():
            if isinstance(v, Mapping):
                lines.append(f"{pad}{k}:")
                lines.extend(_yamlish(v, indent + 2))
            else:
                lines.append(f"{pad}{k}: {'null' if v is None else v}")
        return lines
    return [f"{pad}{value}"]


def render_text(result: PreviewResult) -> str:
    """Human output: resources with key properties, outputs (measurements first), violations."""
    lines = [
        f"teeform preview: stack {result.stack} ({result.stack_file}); offline: Pulumi mock engine, no cloud calls",
        "",
        f"Resources ({len(result.resources)}):",
    ]
    for r in result.resources:
        lines.append(f"  + {r.type}  {r.name}")
        lines.extend(f"      {s}" for s in summarize(r))
    lines += ["", "Outputs:"]
    for k, v in result.outputs.items():
        if isinstance(v, Mapping):
            lines.append(f"  {k}:")
            lines.extend(_yamlish(v, 4))
        else:
            lines.append(f"  {k}: {v}")
    lines.append("")
    cfg = f", config {display_path(result.policy_config)}" if result.policy_config else ""
    if not result.violations:
        lines.append(f"Policies: {len(result.policies)} ran{cfg}; no violations.")
    else:
        lines.append(f"Policy violations ({len(result.violations)}; {len(result.policies)} policies ran{cfg}):")
        for v in result.violations:
            where = f" ({v.resource_type}: {v.resource_name})" if v.resource_type else ""
            lines.append(f"  [{v.enforcement}] {v.policy}{where}")
            lines.append(f"      {v.message}")
    n = len(result.mandatory)
    lines.append(f"{n} mandatory violation(s): the real `pulumi preview --policy-pack` would fail." if n else "No mandatory violations.")
    return "\n".join(lines) + "\n"
