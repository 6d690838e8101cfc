"""Stack policy (cloud-neutral) ``rollover-window-expired``: no key still releases to a manifest whose window ended.

During a rollover the old build stays in a target's ``manifests`` list with the last day it may stay
allowed (``{path: ..., until: YYYY-MM-DD}``; teeform/rollover.py, docs/gitops.md "Rollover window").
The Pulumi program registers it as the ``until`` prop of its ``teeform:index:MeasurementManifest``
(components/measurement_manifest.py). For every such manifest whose ``until`` is before today, this
policy looks at every key-release rule of the stack (the ``key-release`` family,
:mod:`teeform_policies.release`: AWS KMS keys and key policies today) of the manifest's target (the
key's ``teeform:target`` tag; a standalone KeyPolicy through the key it attaches to; an untagged key
counts for every target) and reports each rule that still admits the manifest's measurement set
(every pinned name's accepted values include the manifest's value). An ``until`` that is not a
``YYYY-MM-DD`` date is reported too.

The clock, in order: the policy config ``today`` (``YYYY-MM-DD``), the environment variable
``TEEFORM_TODAY`` (``teeform preview --today`` sets it while the policies run), ``SOURCE_DATE_EPOCH``
(seconds since the epoch, UTC; reproducible-builds.org), else the system clock's UTC date. ``until``
is inclusive: a manifest is expired from the day after ``until``.

Default level advisory; mandatory in ``policies/config/prod.json``. Stack policies run during
``pulumi up`` only, not ``pulumi preview`` (pulumi.md §3.2); ``teeform preview`` runs them offline.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Mapping
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    ReportViolation,
    Severity,
    StackValidationArgs,
    StackValidationPolicy,
)

from teeform_policies import tokens
from teeform_policies.common import label
from teeform_policies.manifest import _target_tag, attached_key, measurement_manifests
from teeform_policies.release import KEY_RELEASE

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _date(s: Any) -> dt.date | None:
    if not isinstance(s, str) or not _DATE.match(s):
        return None
    try:
        return dt.date.fromisoformat(s)
    except ValueError:
        return None


def today(config: Mapping[str, Any], env: Mapping[str, str] | None = None) -> tuple[dt.date, str]:
    """``(date, where it came from)``: config ``today``, ``$TEEFORM_TODAY``, ``$SOURCE_DATE_EPOCH``, system UTC."""
    env = os.environ if env is None else env
    d = _date(config.get("today"))
    if d is not None:
        return d, f"policy config today={d.isoformat()}"
    d = _date(env.get("TEEFORM_TODAY"))
    if d is not None:
        return d, f"TEEFORM_TODAY={d.isoformat()}"
    sde = env.get("SOURCE_DATE_EPOCH", "")
    if sde.isascii() and sde.isdigit() and len(sde) <= 12 and int(sde) <= 253_402_300_799:  # up to 9999-12-31
        return dt.datetime.fromtimestamp(int(sde), dt.UTC).date(), f"SOURCE_DATE_EPOCH={sde}"
    return dt.datetime.now(dt.UTC).date(), "system clock (UTC)"


def validate_rollover_window(args: StackValidationArgs, report: ReportViolation) -> None:
    """See :data:`ROLLOVER_WINDOW_EXPIRED`."""
    config: dict[str, Any] = dict(args.get_config() or {})
    now, clock = today(config)
    expired: list[tuple[Any, str | None, dt.date, dict[str, str]]] = []
    for r, target, meas in measurement_manifests(args):
        if r.props.get("until") is None:
            continue
        until = _date(r.props.get("until"))
        if until is None:
            report(f"{label(r.resource_type, r.name)}: until {r.props.get('until')!r} is not a date YYYY-MM-DD", r.urn)
            continue
        if now > until:
            expired.append((r, target, until, meas))
    if not expired:
        return
    keys = [r for r in args.resources if r.resource_type == tokens.AWS_KMS_KEY]
    for r in args.resources:
        if not KEY_RELEASE.claims(r.resource_type):
            continue
        where = label(r.resource_type, r.name)
        rules = KEY_RELEASE.extract(r.resource_type, r.props)
        target = None
        if r.resource_type == tokens.AWS_KMS_KEY_POLICY and rules:
            key = attached_key(r, keys)
            target = _target_tag(key) if key is not None else None
        for rule in rules:
            rule_target = rule.target if rule.target is not None else target
            for m, m_target, until, meas in expired:
                if rule_target is not None and m_target is not None and rule_target != m_target:
                    continue
                if rule.values and all(n in meas and meas[n] in vals for n, vals in rule.values.items()):
                    days = (now - until).days
                    report(f"{where}: {rule.where} still releases the key to manifest {m.props.get('name') or m.name!r} "
                           f"of target {m_target!r}, whose rollover window ended on {until.isoformat()} ({days} day"
                           f"{'s' if days != 1 else ''} ago; clock {now.isoformat()} from {clock}). Remove it from "
                           "teeform:targets[].manifests (step 4 of `teeform rollover plan`), or extend its `until`.",
                           r.urn)


ROLLOVER_WINDOW_EXPIRED = StackValidationPolicy(
    name="rollover-window-expired",
    description=(
        "Refuses a key whose release rules still admit the measurement set of a teeform:index:MeasurementManifest "
        "whose rollover window (`until`, the last allowed UTC day) has passed: an old build must leave the key's "
        "allow-list when its window ends. Clock: config `today`, $TEEFORM_TODAY, $SOURCE_DATE_EPOCH, else UTC today."
    ),
    validate=validate_rollover_window,
    enforcement_level=EnforcementLevel.ADVISORY,
    severity=Severity.HIGH,
    config_schema=PolicyConfigSchema(properties={"today": {"type": "string", "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}$"}}),
    remediation_steps=(
        "Drop the expired manifest from the target's manifests list (teeform rollover plan OLD NEW prints the steps), "
        "or move its `until` if the old build must stay allowed longer."
    ),
    url="https://www.pulumi.com/docs/iac/using-pulumi/crossguard/",
)

POLICIES = (ROLLOVER_WINDOW_EXPIRED,)
