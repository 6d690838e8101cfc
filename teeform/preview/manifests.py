"""The allowed manifests of a previewed stack, with their rollover windows (``--json`` ``manifests``).

Read from the ``teeform:index:MeasurementManifest`` resources the program registered
(``components/measurement_manifest.py``: ``target``, ``path`` as configured, ``sha256``, ``until``,
``index``), in stack order: targets in the order their first manifest was registered, each target's
manifests by ``index``, their position in its ``manifests`` list (the mock engine's registration
order is not guaranteed to be program order); the first of each target (index 0) is the deployed one. Each
manifest file is loaded again (validated, :func:`teeform.manifest.load_manifest`) so that
``teeform preview diff`` can explain measurement changes by their inputs
(:mod:`teeform.measurements_diff`). Windows: :func:`teeform.rollover.window`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from teeform.manifest import load_manifest
from teeform.preview.model import RegisteredResource
from teeform.rollover import window

#: the component's type token (components/measurement_manifest.py MEASUREMENT_MANIFEST_TYPE)
MEASUREMENT_MANIFEST_TYPE = "teeform:index:MeasurementManifest"


def allowed_manifests(project_dir: Path, resources: Sequence[RegisteredResource], today: dt.date,
                      target_order: Sequence[str] = ()) -> list[dict[str, Any]]:
    """``[{target, key, path, sha256, deployed, until, daysLeft, expired, manifest}]`` (docs/preview-json.md).

    Rows come in stack order: targets as listed in ``target_order`` (the stack's ``targets`` names;
    a target not listed follows, in the order its first manifest was registered), each target's
    manifests by their index in its ``manifests`` list. Registration order alone is not stable: the
    mock engine may record the registrations of a 100-target program in a different order each run.

    ``key`` is the export key (resource name ``<target>-manifest-<key>``); ``path`` is as configured
    (relative to ``project_dir`` or absolute); ``manifest`` is the manifest document
    (:meth:`teeform.manifest.Manifest.to_dict`).

    Raises:
        TeeformError: a manifest file became unreadable or invalid since the program loaded it.
    """
    rows: list[tuple[str, int, RegisteredResource]] = []
    targets: dict[str, int] = {}
    for name in target_order:
        targets.setdefault(name, len(targets))
    for r in resources:
        if r.type != MEASUREMENT_MANIFEST_TYPE:
            continue
        target = str(r.inputs.get("target", ""))
        targets.setdefault(target, len(targets))
        index = r.inputs.get("index", 0)  # a number on the wire (protobuf Struct: float64)
        rows.append((target, int(index) if isinstance(index, (int, float)) and not isinstance(index, bool) else 0, r))
    rows.sort(key=lambda row: (targets[row[0]], row[1]))  # stable: equal indexes keep registration order
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for target, _, r in rows:
        path = str(r.inputs.get("path", ""))
        p = Path(path)
        m = load_manifest(p if p.is_absolute() else project_dir / p)
        prefix = f"{target}-manifest-"
        key = r.name[len(prefix):] if r.name.startswith(prefix) else m.name
        until = r.inputs.get("until")
        out.append({
            "target": target, "key": key, "path": path, "sha256": str(r.inputs.get("sha256", "")),
            "deployed": target not in seen,
            **window(str(until) if until is not None else None, today),
            "manifest": m.to_dict(),
        })
        seen.add(target)
    return out
