"""Rendering of a :class:`~teeform.preview.model.PreviewResult`: the text report and the ``--json``
document. Per-resource summaries come from the cloud plug-in of the resource's token prefix
(:mod:`teeform.preview.clouds`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from teeform.fsutil import display_path
from teeform.preview.clouds import plugin_for
from teeform.preview.model import PreviewResult, RegisteredResource, json_safe
from teeform.rollover import describe_window


def summarize(r: RegisteredResource) -> list[str]:
    """Key properties of a resource, one ``name=value`` string each (empty for most resources)."""
    return plugin_for(r.type).summarize(r.type, json_safe(r.inputs))


#: version of the ``--json`` document (``schemaVersion``); bumped on any incompatible change. The
#: format is documented in docs/preview-json.md and teeform/schema/preview.schema.json.
SCHEMA_VERSION = 1
#: ``$schema``-style identifier of the document format (``format`` field).
FORMAT = "teeform-preview"


def _sorted_keys(v: Any) -> Any:
    """``v`` with every mapping's keys sorted (lists keep their order: it is meaningful)."""
    if isinstance(v, Mapping):
        return {k: _sorted_keys(v[k]) for k in sorted(v)}
    if isinstance(v, list):
        return [_sorted_keys(x) for x in v]
    return v


def _resource_order(r: RegisteredResource) -> tuple[int, str]:
    """The root stack first, then by URN: the mock engine's registration order varies from run to run
    (outputs resolve concurrently), so the document does not use it."""
    return (0 if r.type == "pulumi:pulumi:Stack" else 1, r.urn)


def _violation_order(v: Any) -> tuple[int, str, str, str]:
    return (0 if v.enforcement == "mandatory" else 1, v.policy, v.urn, v.message)


def to_json(result: PreviewResult) -> dict[str, Any]:
    """The ``--json`` document: ``{resources, outputs, violations}`` (plus stack and policy metadata).

    ``resources``: ``[{type, name, urn, custom, summary, inputs}]``, the root stack first, then by URN;
    ``violations``: ``[{policy, enforcementLevel, severity, message, resourceType, resourceName, urn}]``.

    Stable format (docs/preview-json.md, schema ``teeform/schema/preview.schema.json``):
    ``format``/``schemaVersion`` first; resources sorted by URN (the registration order of the mock
    engine is not stable between runs) with the keys of ``inputs`` sorted at every level; violations mandatory first, then by policy, URN and
    message; ``manifests`` = the allowed manifests with their rollover windows
    (:mod:`teeform.preview.manifests`), ``clock`` = the day the windows were measured against;
    ``projectDir`` = the absolute project directory (``teeform preview diff`` normalises paths under it).
    """
    return {
        "format": FORMAT,
        "schemaVersion": SCHEMA_VERSION,
        "projectDir": result.project_dir,
        "clock": dict(result.clock) if result.clock else None,
        "stack": result.stack,
        "stackFile": result.stack_file,
        "policyConfig": result.policy_config,
        "resources": [
            {"type": r.type, "name": r.name, "urn": r.urn, "custom": r.custom, "summary": summarize(r),
             "inputs": _sorted_keys(json_safe(r.inputs))}
            for r in sorted(result.resources, key=_resource_order)
        ],
        "outputs": json_safe(dict(result.outputs)),
        "violations": [
            {
                "policy": v.policy, "enforcementLevel": v.enforcement, "severity": v.severity, "message": v.message,
                "resourceType": v.resource_type, "resourceName": v.resource_name, "urn": v.urn,
            }
            for v in sorted(result.violations, key=_violation_order)
        ],
        "policies": list(result.policies),
        "manifests": [json_safe(m) for m in result.manifests],
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
    windows = [m for m in result.manifests if m.get("until") is not None]
    if windows:
        lines += ["", "Rollover windows (days left per allowed manifest; clock "
                  f"{(result.clock or {}).get('date')} from {(result.clock or {}).get('source')}):"]
        for m in windows:
            role = "deployed" if m.get("deployed") else "old"
            lines.append(f"  {m['target']}: {m['key']} ({role}, {m['path']}): {describe_window(m)}")
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
