"""A uniform result for ``teeform measure``: the values, per-section facts and caveats of one artifact.

Each artifact module (``image_builder.formats.eif``, ``image_builder.formats.uki``, ``image_builder.pipelines.disk``) returns a
:class:`MeasurementReport`; :mod:`teeform.commands.measure` prints it as text or JSON.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from teeform import measurements as mtable


@dataclass
class MeasurementReport:
    """What ``teeform measure`` prints for one artifact.

    Attributes:
        path: the artifact measured.
        kind: ``"eif"``, ``"uki"`` or ``"disk"``.
        measurements: ordered ``{name: lowercase hex}`` (for an EIF: PCR0, PCR1, PCR2, [PCR8], ImageSha384).
            Every name is the ``shown`` name of an entry of the one measurement table
            (:data:`teeform.measurements.BY_SHOWN`) and every value has that entry's hex length.
        facts: other checked properties, e.g. ``{"EifVersion": 4, "CheckCRC": True}``.
        sections: per-section table rows (each a dict with at least ``name`` and ``size``).
        notes: caveats the user must know (for example that PCR 11 does not pin a PCR 12 command line).
    """

    path: str
    kind: str
    measurements: dict[str, str]
    facts: dict[str, Any] = field(default_factory=dict)
    sections: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        """Check the measurement names and lengths against the table.

        Raises:
            ValueError: a name not in :data:`teeform.measurements.BY_SHOWN` or a value of another
                length (a bug in the producing module, not a user error).
        """
        for name, value in self.measurements.items():
            m = mtable.BY_SHOWN.get(name)
            if m is None:
                raise ValueError(f"measurement {name!r} is not in teeform.measurements.MEASUREMENTS")
            if len(value) != m.hex_len:
                raise ValueError(f"measurement {name!r} has {len(value)} hex digits, the table says {m.hex_len}")

    def table_entry(self, name: str) -> mtable.Measurement:
        """The :class:`teeform.measurements.Measurement` of printed name ``name`` (KeyError if unknown)."""
        return mtable.BY_SHOWN[name]

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict with keys ``path, kind, measurements, facts, sections, notes``."""
        return {
            "path": self.path,
            "kind": self.kind,
            "measurements": dict(self.measurements),
            "facts": dict(self.facts),
            "sections": list(self.sections),
            "notes": list(self.notes),
        }

    def render(self) -> str:
        """Human-readable text: measurements first, then facts, the section table and notes."""
        lines = [f"{self.path} ({self.kind})", ""]
        width = max((len(k) for k in self.measurements), default=0)
        for k, v in self.measurements.items():
            lines.append(f"  {k.ljust(width)}  {v}")
        if self.facts:
            lines.append("")
            fw = max(len(k) for k in self.facts)
            for k, v in self.facts.items():
                lines.append(f"  {k.ljust(fw)}  {v}")
        # Consecutive rows with the same columns form one table (a disk report lists its partitions,
        # then the sections of the UKI on its ESP).
        groups: list[list[dict[str, Any]]] = []
        for row in self.sections:
            if groups and list(groups[-1][0]) == list(row):
                groups[-1].append(row)
            else:
                groups.append([row])
        for rows in groups:
            cols = list(dict.fromkeys(c for row in rows for c in row))
            widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in cols}
            lines += ["", "  " + "  ".join(c.ljust(widths[c]) for c in cols)]
            for row in rows:
                lines.append("  " + "  ".join(str(row.get(c, "")).ljust(widths[c]) for c in cols))
        for n in self.notes:
            lines += ["", f"note: {n}"]
        return "\n".join(lines) + "\n"
