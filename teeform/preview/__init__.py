"""Offline preview: run the real Pulumi program under the SDK's mock engine, then the policy pack.

``teeform preview --stack dev`` does what ``pulumi preview --policy-pack policies`` does, without
the Pulumi CLI, a backend or cloud credentials:

1. Stack config is read like the CLI reads it (``Pulumi.yaml`` defaults, then
   ``stacks/Pulumi.<stack>.yaml``; :func:`teeform.stack.read_stack`).
2. :mod:`teeform.preview.runner` (the only module touching ``pulumi.runtime``) runs
   ``<project>/__main__.py`` under mocks; :class:`~teeform.preview.mocks.PreviewMocks` answers with
   the cloud plug-in registered for each token prefix (:mod:`teeform.preview.clouds`; ``aws:`` ->
   :mod:`teeform.preview.clouds.aws`).
3. :mod:`teeform.preview.crossguard` (the only module touching ``pulumi_policy``) runs every policy
   of ``policies/teeform_policies`` over the registered resources as the analyzer would. The pack
   config is ``--policy-config``, else ``policies/config/<stack>.json``, else
   ``policies/config/<environment>.json``.
4. :mod:`teeform.preview.render` prints the plan, the outputs and the violations (text or JSON).

The names below are this package's public interface (the CLI, tests and scripts import them from
``teeform.preview``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from teeform.errors import TeeformError
from teeform.fsutil import hash_cache
from teeform.preview.clouds.aws import MOCK_ACCOUNT_ID, MOCK_AMI_ID, MOCK_CALLER_ARN
from teeform.preview.crossguard import (
    evaluate_policies,
    load_policies,
    policy_settings,
    read_pack_config,
    registered_resources,
)
from teeform.preview.manifests import allowed_manifests
from teeform.preview.mocks import PreviewMocks
from teeform.preview.model import STACK_TYPE, PreviewResult, RegisteredResource, Violation
from teeform.preview.render import render_text, summarize, to_json
from teeform.preview.runner import config_strings, find_teeform_error, gc_checkpoint, make_mocks, quiet_gc, run_program
from teeform.rollover import resolve_today
from teeform.stack import PROJECT, read_stack

_find_teeform_error = find_teeform_error  # the pre-split private name, still used by tests


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


def project_name(project_dir: Path) -> str:
    """``name`` of ``<project_dir>/Pulumi.yaml`` (default ``teeform``), read with :mod:`teeform.safeload`.

    The file is bounded by :data:`teeform.stack.STACK_FILE_LIMIT`, must be a regular file of strict
    UTF-8 YAML (<= 100,000 nodes after aliases, <= 64 levels, no duplicate keys) whose top level is
    a mapping, and ``name`` must be a string (pulumi.md §1.1: the project name).

    Raises:
        TeeformError: naming ``Pulumi.yaml`` and, for a wrong type, the field (``(top level)``, ``name``).
    """
    from teeform.safeload import decode_utf8, loads_yaml, read_limited
    from teeform.stack import STACK_FILE_LIMIT

    path = project_dir / "Pulumi.yaml"
    prefix = f"{path}: "
    try:
        doc = loads_yaml(decode_utf8(read_limited(path, STACK_FILE_LIMIT, what="project file"), source=str(path)),
                         source=str(path))
    except TeeformError as exc:
        raise TeeformError(exc.message.removeprefix(prefix), path=path, field=exc.field, hint=exc.hint) from None
    if doc is None:
        return PROJECT
    if not isinstance(doc, dict):
        raise TeeformError(f"must be a YAML mapping, got {type(doc).__name__}", path=path, field="(top level)")
    name = doc.get("name", PROJECT)
    if not isinstance(name, str) or not name:
        raise TeeformError(f"must be a non-empty string, got {type(name).__name__}", path=path, field="name")
    return name


def _raw_targets(values: Mapping[str, Any], project: str) -> list[Mapping[str, Any]]:
    """The mappings of the stack's ``<project>:targets`` list as written, in stack order, for the
    preview's own bookkeeping (output order, hash prefetch); anything malformed is left out here
    and reported by the program, which validates the stack (:mod:`teeform.stack`)."""
    targets = values.get(f"{project}:targets")
    return [t for t in targets if isinstance(t, Mapping)] if isinstance(targets, list) else []


def _target_names(values: Mapping[str, Any], project: str) -> list[str]:
    """The string ``name`` of each target (:func:`_raw_targets`), in stack order."""
    return [t["name"] for t in _raw_targets(values, project) if isinstance(t.get("name"), str)]


def prefetch_deployed_eifs(project_dir: Path, values: Mapping[str, Any], project: str) -> int:
    """Start hashing (SHA-256, :func:`teeform.fsutil.prefetch_hash`) the EIF of each target's deployed
    manifest (the first of its ``manifests``), which the program checks against the manifest
    (``components/aws/artifact_store.check_eif_file``), so the hash pass runs on the second core while
    the program starts instead of on the main thread. Only a hint: a manifest that does not load, or
    is not an EIF manifest, is skipped here and reported by the program. Returns the number started.
    """
    from teeform.fsutil import prefetch_hash
    from teeform.manifest import ArtifactKind, load_manifest

    seen: set[Path] = set()
    for t in _raw_targets(values, project):
        paths = t.get("manifests")
        if not isinstance(paths, list) or not paths or not isinstance(paths[0], str):
            continue
        path = Path(paths[0]) if Path(paths[0]).is_absolute() else project_dir / paths[0]
        if path in seen:
            continue
        seen.add(path)
        try:
            m = load_manifest(path)
        except Exception:  # noqa: BLE001 - the program reports it, naming the file and field
            continue
        if m.kind is ArtifactKind.EIF:
            prefetch_hash(path.parent / m.artifact.file_name, ("sha256",))
    return len(seen)


def run_preview(
    project_dir: Path,
    stack: str,
    *,
    stack_file: Path | None = None,
    policy_config: Path | None = None,
    today: str | None = None,
) -> PreviewResult:
    """Run the program for ``stack`` under mocks and evaluate the policy pack (module docstring).

    ``policy_config`` defaults to :func:`default_policy_config`. Within the program run every file
    is hashed at most once (:func:`teeform.preview.runner.run_program`), however many targets share it.
    ``today`` (YYYY-MM-DD) is the clock of the rollover windows (:func:`teeform.rollover.resolve_today`:
    default ``SOURCE_DATE_EPOCH``, else the UTC date).

    Raises:
        TeeformError: bad stack or policy config, or an error raised by the program.
    """
    project_dir = project_dir.resolve()
    read = read_stack(project_dir, stack, stack_file)  # Pulumi.yaml is read once, here
    values, source, project = read.values, read.source, read.project
    with hash_cache():  # every file hashed at most once per run; the deployed EIFs from now on, on a thread
        prefetch_deployed_eifs(project_dir, values, project)
        return _preview(project_dir, stack, stack_file, policy_config, today, values, source, project)


def _preview(project_dir: Path, stack: str, stack_file: Path | None, policy_config: Path | None, today: str | None,
             values: dict[str, Any], source: str, project: str) -> PreviewResult:
    """The rest of :func:`run_preview`, after the stack was read."""
    if policy_config is None:
        policy_config = default_policy_config(project_dir, stack, values.get(f"{project}:environment"))
    policies = load_policies(project_dir)
    pack_config = read_pack_config(policy_config, project_dir=project_dir)
    with quiet_gc():  # the mock engine's objects live to the end: not rescanned by later collections
        mocks, outputs = run_program(project_dir, stack, values, stack_file=str(stack_file) if stack_file else None,
                                     project=project)
        resources = registered_resources(mocks, stack, project)
        gc_checkpoint()
        clock = resolve_today(today)
        saved = os.environ.get("TEEFORM_TODAY")
        os.environ["TEEFORM_TODAY"] = clock.today.isoformat()  # the clock of rollover-window-expired (policies/)
        try:
            violations = evaluate_policies(resources, policies, pack_config)
        finally:
            if saved is None:
                os.environ.pop("TEEFORM_TODAY", None)
            else:
                os.environ["TEEFORM_TODAY"] = saved
        return PreviewResult(
            stack=stack, stack_file=source, resources=tuple(resources), outputs=outputs, violations=tuple(violations),
            policies=tuple(p.name for p in policies), policy_config=str(policy_config) if policy_config else None,
            project_dir=str(project_dir), manifests=tuple(allowed_manifests(project_dir, resources, clock.today, _target_names(values, project))),
            clock=clock.to_json(),
        )



__all__ = [
    "MOCK_ACCOUNT_ID", "MOCK_AMI_ID", "MOCK_CALLER_ARN", "STACK_TYPE", "PreviewMocks", "PreviewResult",
    "RegisteredResource", "Violation", "config_strings", "default_policy_config", "evaluate_policies",
    "find_teeform_error", "load_policies", "make_mocks", "policy_settings", "project_name", "read_pack_config",
    "registered_resources", "render_text", "run_preview", "run_program", "summarize", "to_json",
]
