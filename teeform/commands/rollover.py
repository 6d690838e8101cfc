"""``teeform rollover plan OLD NEW``: the steps to move a target from one build to the next.

Prints add new -> deploy -> verify -> drop old, with the stack-file ``manifests:`` entry and the
exact commands of each step (:func:`teeform.rollover.rollover_plan`), after checking that both
manifests load, are of one kind, can be listed together (distinct ``name@version``:
``components/registry.py`` ``manifest_keys``) and which measurements change
(:mod:`teeform.measurements_diff`). Writes nothing. Exit 0, or 2 for unusable input.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import click

from teeform.errors import TeeformError
from teeform.manifest import load_manifest
from teeform.measurements_diff import diff_manifests
from teeform.rollover import describe_window, render_plan, resolve_today, rollover_plan, window
from teeform.stack import load_stack, project_dir_default


@click.command("plan")
@click.argument("old", metavar="OLD_MANIFEST")
@click.argument("new", metavar="NEW_MANIFEST")
@click.option("--stack", "stack", default="dev", show_default=True, help="The stack to roll (stacks/Pulumi.<stack>.yaml).")
@click.option("--target", help="The target to roll (default: the stack's only target, or the one listing OLD).")
@click.option("--days", type=click.IntRange(min=0, max=3650), default=14, show_default=True,
              help="How long OLD stays allowed after the deployment (days after the clock).")
@click.option("--until", "until", help="Last day OLD stays allowed, YYYY-MM-DD (instead of --days).")
@click.option("--today", help="Clock, YYYY-MM-DD (default: SOURCE_DATE_EPOCH, else today, UTC).")
@click.option("--json", "as_json", is_flag=True, help="The plan as JSON.")
@click.option("--project-dir", type=click.Path(path_type=Path, file_okay=False),
              help="The teeform project (default: $TEEFORM_PROJECT_DIR or the nearest parent with Pulumi.yaml).")
def cmd(old: str, new: str, stack: str, target: str | None, days: int, until: str | None, today: str | None,
        as_json: bool, project_dir: Path | None) -> None:
    """Print the rollover from OLD_MANIFEST to NEW_MANIFEST: add new, deploy, verify, drop old.

    \b
    OLD and NEW are manifest paths as the stack file writes them (relative to the
    project directory). During the window the key releases to both builds; the policy
    rollover-window-expired (mandatory in prod) refuses the key once OLD's `until` passed.

    \b
    Example:
      teeform rollover plan build/v1/agent.manifest.json build/v2/agent.manifest.json --stack prod --days 7
    """
    root = project_dir or project_dir_default()
    clock = resolve_today(today)
    if until is not None:
        from teeform.rollover import parse_until

        end = parse_until(until, "--until", "until")
    else:
        end = (clock.today + dt.timedelta(days=days)).isoformat()
    resolve = lambda p: Path(p) if Path(p).is_absolute() else root / p  # noqa: E731
    om, nm = load_manifest(resolve(old)), load_manifest(resolve(new))
    diff = diff_manifests(om, nm, old_label=old, new_label=new)
    if (om.name, om.version) == (nm.name, nm.version):
        raise TeeformError(f"both manifests are {om.name}@{om.version}: a target cannot list two builds with the same "
                           "name and version", path=resolve(new), field="version",
                           hint="build the new one with another --version (teeform build eif --version ...)")
    cfg = load_stack(root, stack)
    if target is None:
        cands = [t for t in cfg.targets if old in t.manifests] or (list(cfg.targets) if len(cfg.targets) == 1 else [])
        if len(cands) != 1:
            raise TeeformError(f"cannot tell which target to roll: {[t.name for t in cfg.targets]}", path=cfg.source,
                               field="teeform:targets", hint="pass --target NAME")
        tgt = cands[0]
    else:
        found = [t for t in cfg.targets if t.name == target]
        if not found:
            raise TeeformError(f"no target {target!r} (targets: {[t.name for t in cfg.targets]})", path=cfg.source,
                               field="teeform:targets")
        tgt = found[0]
    kind_ok = om.kind.value in tgt.plugin.manifest_kinds
    if not kind_ok:
        raise TeeformError(f"the {tgt.plugin.pair} target takes {sorted(tgt.plugin.manifest_kinds)} manifests, OLD is "
                           f"{om.kind.value!r}", path=resolve(old), field="kind")
    settings_key = getattr(tgt.settings, "key", None)
    locked = bool(getattr(settings_key, "locked", False))
    steps = rollover_plan(old, new, stack=stack, target=tgt.name, until=end, environment=cfg.environment,
                          locked_key=locked)
    w = window(end, clock.today)
    changed = [m.name for m in diff.measurements]
    if as_json:
        click.echo(json.dumps({"stack": stack, "target": tgt.name, "old": old, "new": new, "until": end,
                               "clock": clock.to_json(), "window": w, "measurementsChanged": changed,
                               "steps": [s.to_json() for s in steps]}, indent=2))
        return
    header = (f"teeform rollover plan: stack {stack}, target {tgt.name}: {om.name}@{om.version} -> {nm.name}@{nm.version}\n"
              f"measurements changed: {', '.join(changed) or 'none (the key policy stays the same)'}\n"
              f"old build allowed through {end} ({describe_window(w)}; clock {clock.today.isoformat()} from {clock.source})")
    click.echo(render_plan(steps, header), nl=False)
