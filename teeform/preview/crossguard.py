"""The CrossGuard emulation: the only module of teeform that touches ``pulumi_policy`` internals.

Every policy of ``policies/teeform_policies`` runs over the registered resources the way the
policy-pack analyzer calls it (shared/reference/pulumi.md §3.1, §3.4; pulumi/pulumi-policy
``sdk/python/lib/pulumi_policy/policy.py`` ``_PolicyAnalyzerServicer.Analyze``/``AnalyzeStack``):

* a ``ResourceValidationArgs`` per resource, its props ``deserialize_properties(inputs)`` behind
  ``unknown_checking_proxy``, with the policy's config; one ``StackValidationArgs`` over all
  resources (``PolicyResource`` each);
* the enforcement level is the policy's default, overridden by the pack config: the policy's own
  entry, else ``"all"``; a ``remediate`` policy that still fails is reported as ``mandatory``;
  config properties get their ``config_schema`` defaults;
* ``args.not_applicable()`` means no result, an unknown value an advisory "can't run" note.

Stack policies get what the analyzer's ``AnalyzeStack`` gets at ``pulumi up`` (stack policies do
not run at ``pulumi preview``, pulumi.md §3.2): each resource's **outputs** (here the state the mock
engine answered: inputs plus ids and ARNs, all known because the mocks run with ``preview=False``),
its parent, dependencies and **property dependencies** (which the runner's monitor records from
the SDK's ``RegisterResource`` requests). So a standalone ``aws:kms/keyPolicy:KeyPolicy`` whose
``keyId`` is ``key.id`` / ``key.arn`` is attributed to its key (and that key's target) through
``property_dependencies['keyId']`` as the real analyzer would; one whose ``keyId`` is a literal
naming no key of the stack (an alias, an imported key) stays ``NOT CHECKED`` there as well.

Differences from the real engine (documented, not hidden): policies see the SDK-sent inputs, not
the provider-checked ones, and the mock state, not a provider's real outputs; URNs are synthesised
as ``urn:pulumi:<stack>::<project>::<type>::<name>``. ``tests/test_preview_analyzer.py`` runs the
real analyzer process on the same resources and compares.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from teeform.errors import TeeformError
from teeform.preview.model import STACK_TYPE, RegisteredResource, Violation, urn_of
from teeform.stack import PROJECT

#: Largest policy-pack config file read (bytes); real configs are a few hundred bytes.
MAX_PACK_CONFIG_BYTES = 1 << 20


def registered_resources(mocks: Any, stack: str, project: str = PROJECT) -> list[RegisteredResource]:
    """The registrations of ``mocks`` (``.resources``: ``MockResourceArgs``) as
    :class:`RegisteredResource`, inputs and outputs deserialized as CrossGuard does, the root stack
    left out. Where the runner's monitor recorded the registration (``mocks.registrations``), the
    outputs, parent, dependencies and property dependencies are filled in, with the mock engine's
    URNs translated to the synthesized ones (a dependency outside the registered resources, such as
    the root stack, is dropped, as the analyzer drops URNs it was not sent)."""
    from pulumi_policy.deserialize import deserialize_properties

    regs = getattr(mocks, "registrations", {}) or {}
    ours = {reg.urn: urn_of(stack, project, typ, name) for (typ, name), reg in regs.items()}

    def mapped(urns: Any) -> tuple[str, ...]:
        return tuple(ours[u] for u in urns if u in ours)

    out = []
    for r in mocks.resources:
        if r.typ == STACK_TYPE:
            continue
        reg = regs.get((r.typ, r.name))
        out.append(
            RegisteredResource(
                type=r.typ, name=r.name, urn=urn_of(stack, project, r.typ, r.name),
                custom=bool(getattr(r, "custom", True)), inputs=deserialize_properties(dict(r.inputs)),
                outputs=deserialize_properties(dict(reg.state)) if reg is not None else None,
                parent=ours.get(reg.parent) if reg is not None else None,
                dependencies=mapped(reg.dependencies) if reg is not None else (),
                property_dependencies={k: mapped(v) for k, v in reg.property_dependencies.items()} if reg is not None else {},
            )
        )
    return out


def policies_module(project_dir: Path) -> Any:
    """``<project_dir>/policies/teeform_policies``, imported with ``policies/`` on ``sys.path`` as the
    CLI's policy host would (never ``policies/__main__.py``, which starts a gRPC server). A copy
    imported from another project directory is dropped first.

    Raises:
        TeeformError: the policy pack is not there.
    """
    pdir = (project_dir / "policies").resolve()
    if not (pdir / "teeform_policies" / "__init__.py").is_file():
        raise TeeformError("policy pack not found", path=pdir / "teeform_policies", hint="use --project-dir")
    mod = sys.modules.get("teeform_policies")
    if mod is not None and Path(mod.__file__ or "").resolve().parent.parent != pdir:
        for name in [n for n in sys.modules if n == "teeform_policies" or n.startswith("teeform_policies.")]:
            del sys.modules[name]
    p = str(pdir)
    sys.path.insert(0, p)
    try:
        return importlib.import_module("teeform_policies")
    finally:
        sys.path.remove(p)


def load_policies(project_dir: Path) -> list[Any]:
    """The policy registry of ``<project_dir>/policies/teeform_policies`` (:func:`policies_module`)."""
    return list(policies_module(project_dir).all_policies())


def read_pack_config(path: Path | None, *, project_dir: Path | None = None) -> dict[str, Any]:
    """Read a policy-pack config JSON (``{"all": level, "<policy>": level | {enforcementLevel, ...}}``).

    Old policy ids are renamed to their current ids by the pack's own
    ``teeform_policies.resolve_pack_config(data, source=path)``; each rename prints one
    ``warning: <path>: policy id '<old>' is deprecated; use '<new>' ...`` line on stderr.
    ``project_dir`` (default: :func:`teeform.stack.project_dir_default`) locates the pack.

    The file is read with :mod:`teeform.safeload` (:func:`~teeform.safeload.read_limited`,
    :func:`~teeform.safeload.loads_json`): a regular file of at most :data:`MAX_PACK_CONFIG_BYTES`,
    strict UTF-8, nesting <= :data:`teeform.safeload.MAX_DEPTH`, integers <= 20 digits, no NaN, no
    lone surrogates and **no duplicate keys** (``json.loads`` silently keeps the last of two ``"all"``
    entries; RFC 8259 §4 leaves which one wins to the reader, so the level would depend on it).

    Raises:
        TeeformError: naming the file (and the field where there is one): missing, a directory or
            device, larger than :data:`MAX_PACK_CONFIG_BYTES`, not UTF-8, not JSON, a duplicate
            key, nested too deeply, not a JSON object, or one policy set under its old and new id
            differently.
    """
    if path is None:
        return {}
    data = _load_pack_json(Path(path))
    if not isinstance(data, dict):
        raise TeeformError("a policy-pack config must be a JSON object", path=path)
    if project_dir is None:
        from teeform.stack import project_dir_default

        project_dir = project_dir_default()
    mod = policies_module(project_dir)
    try:
        resolved = mod.resolve_pack_config(data, source=str(path))
    except mod.PackConfigError as exc:
        raise TeeformError(str(exc).removeprefix(f"{path}: "), path=path) from None
    for warning in resolved.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return dict(resolved.config)


def _load_pack_json(path: Path) -> Any:
    """The parsed pack config (see :func:`read_pack_config`); errors re-anchored on ``path``."""
    from teeform.safeload import loads_json, read_limited

    prefix = f"{path}: "
    try:
        return loads_json(read_limited(path, MAX_PACK_CONFIG_BYTES, what="policy config"), source=str(path))
    except TeeformError as exc:
        raise TeeformError(exc.message.removeprefix(prefix), path=path, field=exc.field,
                           hint=exc.hint) from None


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
    resources: Sequence[RegisteredResource], policies: Sequence[Any], pack_config: Mapping[str, Any],
    *, share_props: bool = True,
) -> list[Violation]:
    """Run every policy over ``resources`` as CrossGuard would (see the module docstring).

    The analyzer builds a resource's props proxy afresh for every resource policy
    (``unknown_checking_proxy(deserialized)`` inside its policy loop), and for every stack policy
    its list of ``PolicyResource``; with ``share_props`` (the default) one proxy per resource and one
    stack list are built and given to every policy, which is the same unless a policy writes into
    what it is given (none of the pack does: ``tests/test_preview_analyzer.py``
    runs a scenario both ways and records writes). Building the proxies was most of the policy
    time of a 100-target preview (87,000 proxies and 6 stack lists of 2,900 resources)."""
    from pulumi_policy import (
        ResourceValidationArgs,
        ResourceValidationPolicy,
        StackValidationArgs,
        StackValidationPolicy,
    )
    from pulumi_policy.proxy import unknown_checking_proxy

    by_urn = {r.urn: r for r in resources}
    shared: list[Any] = [None] * len(resources)  # the props proxies, built on first use
    opts = _opts()  # read-only: one for all resources when share_props
    stack_shared: list[Any] | None = None  # the stack policies' PolicyResource list, built on first use
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
            for i, r in enumerate(resources):
                if not share_props:
                    props = unknown_checking_proxy(dict(r.inputs))
                elif (props := shared[i]) is None:
                    props = shared[i] = unknown_checking_proxy(dict(r.inputs))
                args = ResourceValidationArgs(r.type, props, r.urn, r.name, opts if share_props else _opts(), None, dict(cfg))
                _validate(pol, args, lambda m, urn=None, _r=r: report(m, _r=_r))
        elif isinstance(pol, StackValidationPolicy):
            if not share_props:
                stack = stack_resources(resources)
            elif stack_shared is None:
                stack = stack_shared = stack_resources(resources)
            else:
                stack = stack_shared
            _validate(pol, StackValidationArgs(stack, dict(cfg)), lambda m, urn=None: report(m, urn))
    return out


def stack_resources(resources: Sequence[RegisteredResource]) -> list[Any]:
    """``PolicyResource`` objects as the analyzer's ``AnalyzeStack`` builds them (pulumi_policy
    ``policy.py``): props = the resource's outputs (its inputs when no outputs were recorded) behind
    ``unknown_checking_proxy``; ``parent``, ``dependencies`` and ``property_dependencies`` resolved
    to the other ``PolicyResource`` objects by URN, URNs not among ``resources`` left out."""
    from pulumi_policy import PolicyResource
    from pulumi_policy.proxy import unknown_checking_proxy

    prs = {
        r.urn: PolicyResource(r.type, unknown_checking_proxy(dict(r.outputs if r.outputs is not None else r.inputs)),
                              r.urn, r.name, _opts(), None, None, [], {})
        for r in resources
    }
    for r in resources:
        pr = prs[r.urn]
        if r.parent in prs:
            pr.parent = prs[r.parent]
        pr.dependencies.extend(prs[d] for d in r.dependencies if d in prs)
        for k, urns in r.property_dependencies.items():
            pr.property_dependencies[k] = [prs[d] for d in urns if d in prs]
    return list(prs.values())


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
