"""Rollover windows: how long an old build stays allowed next to the new one, and the rollover plan.

A target's ``manifests`` list is its key-release allow-list (:mod:`teeform.keyrelease`: one
allowed manifest = one measurement set; the first is deployed). During a rollover the old build
stays in the list so that running enclaves keep their key. An entry may carry the end of that window:

.. code-block:: yaml

    manifests:
      - build/v2/openclaw-agent.manifest.json               # deployed
      - {path: build/v1/openclaw-agent.manifest.json, until: "2026-12-31"}

``until`` is the **last UTC day** the manifest stays allowed (inclusive): on ``until`` it has 0 days
left, the next day it is expired and the policy ``rollover-window-expired`` (mandatory in prod,
``policies/teeform_policies/rollover.py``) refuses a key that still releases to it. The window
reaches the policy as the ``until`` property of the ``teeform:index:MeasurementManifest`` component
(``components/measurement_manifest.py``).

The clock is injectable (:func:`resolve_today`): an explicit date (``--today``), else
``SOURCE_DATE_EPOCH`` (reproducible-builds.org specification: seconds since the Unix epoch, UTC),
else the system clock's UTC date. Everything else here is pure.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from teeform.errors import TeeformError

_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")

__all__ = ["Clock", "parse_until", "resolve_today", "window", "RolloverStep", "rollover_plan", "render_plan"]


def parse_until(value: Any, source: str, fld: str) -> str:
    """Validate an ``until`` value and return it as ISO ``YYYY-MM-DD``.

    Accepts a ``datetime.date`` (what PyYAML's SafeLoader makes of an unquoted ``2026-12-31``; not a
    ``datetime``) or a string ``YYYY-MM-DD`` naming a real calendar date (ISO 8601 calendar date,
    extended format).

    Raises:
        TeeformError: naming ``source`` and ``fld`` (e.g. ``teeform:targets[0].manifests[1].until``).
    """
    if isinstance(value, dt.datetime):
        raise TeeformError(f"must be a date YYYY-MM-DD without a time, got {value.isoformat()!r}", path=source, field=fld)
    if isinstance(value, dt.date):
        return value.isoformat()
    if not isinstance(value, str) or not _ISO_DATE.match(value):
        raise TeeformError(f"must be a date written YYYY-MM-DD, got {value!r}", path=source, field=fld)
    try:
        return dt.date.fromisoformat(value).isoformat()
    except ValueError:
        raise TeeformError(f"not a calendar date: {value!r}", path=source, field=fld) from None


@dataclass(frozen=True)
class Clock:
    """The day windows are measured against, and where it came from (``--today``,
    ``SOURCE_DATE_EPOCH=<n>`` or ``system clock (UTC)``)."""

    today: dt.date
    source: str

    def to_json(self) -> dict[str, str]:
        """``{"date": "YYYY-MM-DD", "source": ...}``."""
        return {"date": self.today.isoformat(), "source": self.source}


def resolve_today(explicit: str | dt.date | None = None, env: Mapping[str, str] | None = None) -> Clock:
    """The clock: ``explicit`` (a date or ``YYYY-MM-DD``), else ``SOURCE_DATE_EPOCH`` from ``env``
    (default ``os.environ``) read as UTC seconds, else today's UTC date.

    Raises:
        TeeformError: ``explicit`` is not a date, or ``SOURCE_DATE_EPOCH`` is not a non-negative integer
            (reproducible-builds.org: "the value MUST be an ASCII representation of an integer").
    """
    if explicit is not None:
        if isinstance(explicit, dt.date):
            return Clock(explicit, "--today")
        return Clock(dt.date.fromisoformat(parse_until(explicit, "--today", "today")), "--today")
    env = os.environ if env is None else env
    sde = env.get("SOURCE_DATE_EPOCH")
    if sde:
        from teeform.fsutil import parse_source_date_epoch

        try:
            epoch = parse_source_date_epoch(sde)
        except TeeformError as exc:
            raise TeeformError(exc.message, field="SOURCE_DATE_EPOCH") from None
        return Clock(dt.datetime.fromtimestamp(epoch, dt.UTC).date(), f"SOURCE_DATE_EPOCH={sde}")
    return Clock(dt.datetime.now(dt.UTC).date(), "system clock (UTC)")


def window(until: str | None, today: dt.date) -> dict[str, Any]:
    """``{until, daysLeft, expired}`` of one allowed manifest.

    ``daysLeft`` = ``until - today`` in whole days (0 on the last day, negative once past), None
    without a window; ``expired`` = ``today > until``.
    """
    if until is None:
        return {"until": None, "daysLeft": None, "expired": False}
    left = (dt.date.fromisoformat(until) - today).days
    return {"until": until, "daysLeft": left, "expired": left < 0}


def describe_window(w: Mapping[str, Any]) -> str:
    """One phrase: ``no window``, ``12 days left (until 2026-12-31)``, ``last day (until ...)``,
    ``EXPIRED 3 days ago (until ...)``."""
    if w.get("until") is None:
        return "no window"
    n = int(w["daysLeft"])
    if n < 0:
        return f"EXPIRED {-n} day{'s' if n != -1 else ''} ago (until {w['until']})"
    if n == 0:
        return f"last day (until {w['until']})"
    return f"{n} day{'s' if n != 1 else ''} left (until {w['until']})"


# ----------------------------------------------------------------------------------- the plan
@dataclass(frozen=True)
class RolloverStep:
    """One step of a rollover: a title, why, the stack-file ``manifests:`` it needs (YAML lines, may
    be empty) and the exact commands to run."""

    title: str
    why: str
    manifests_yaml: tuple[str, ...]
    commands: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"title": self.title, "why": self.why, "manifests": list(self.manifests_yaml), "commands": list(self.commands)}


def rollover_plan(old: str, new: str, *, stack: str, target: str, until: str, environment: str | None = None,
                  policy_config: str | None = None, locked_key: bool = False) -> list[RolloverStep]:
    """The four steps add new -> deploy -> verify -> drop old, for ``target`` of ``stack``.

    ``old``/``new`` are the manifest paths as they appear in the stack file; ``until`` (YYYY-MM-DD)
    is the last day the old build stays allowed after the deployment. ``policy_config`` defaults to
    ``policies/config/<environment or stack>.json``. With ``locked_key`` (prod's
    ``key.policyUpdates: locked``) the key policy can only change through the break-glass role, so
    steps 1, 2 and 4 say so. Pure: writes nothing.
    """
    cfg = policy_config or f"policies/config/{environment or stack}.json"
    pulumi_preview = f"pulumi preview --stack {stack} --policy-pack policies --policy-pack-config {cfg}"
    pulumi_up = f"pulumi up --stack {stack} --policy-pack policies --policy-pack-config {cfg}"
    offline = f"teeform preview --stack {stack}"
    lock_note = (" The key policy is locked (key.policyUpdates: locked): run `pulumi up` as the break-glass "
                 "role, or create a new key and re-seal (docs/aws-deploy.md).") if locked_key else ""
    return [
        RolloverStep(
            "1. add new",
            "the key may now be released to both builds; the instance still runs the old one." + lock_note,
            ("manifests:", f"  - {old}", f"  - {new}"),
            (f"teeform measurements diff {old} {new}", offline, pulumi_preview, pulumi_up),
        ),
        RolloverStep(
            "2. deploy",
            f"the new build is deployed (first entry); the old one stays allowed through {until} (UTC) so running "
            "enclaves keep their key; the policy rollover-window-expired refuses it after that day." + lock_note,
            ("manifests:", f"  - {new}", f"  - {{path: {old}, until: \"{until}\"}}"),
            (offline, pulumi_preview, pulumi_up),
        ),
        RolloverStep(
            "3. verify",
            "check a fresh attestation document from the new enclave (with your nonce) against the NEW build "
            "(every pinned measurement of it), then against the stack's allowed manifests.",
            (),
            (f"teeform verify attestation <attestation-doc.cbor> --manifest {new} --nonce <hex> --at now",
             f"teeform verify attestation <attestation-doc.cbor> --stack {stack} --nonce <hex> --at now"),
        ),
        RolloverStep(
            "4. drop old",
            f"remove the old build before {until} ends: the key no longer releases to it." + lock_note,
            ("manifests:", f"  - {new}"),
            (offline, pulumi_preview, pulumi_up),
        ),
    ]


def render_plan(steps: list[RolloverStep], header: str) -> str:
    """The plan as text: ``header``, then per step its title, why, the ``manifests:`` lines and the
    commands (``$ `` prefixed)."""
    out = [header, ""]
    for s in steps:
        out.append(f"{s.title}: {s.why}")
        if s.manifests_yaml:
            out.append("   stack file (target's entry):")
            out += [f"     {line}" for line in s.manifests_yaml]
        out += [f"   $ {c}" for c in s.commands]
        out.append("")
    return "\n".join(out)
