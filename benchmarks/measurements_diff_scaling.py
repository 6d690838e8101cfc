#!/usr/bin/env python3
"""How ``teeform measurements diff`` scales with the number of inputs (issue 7: 100k inputs hung).

Builds two EIF manifests of ``n`` inputs each (4 roles, names repeated so that name pairing, positional
pairing, removals and additions all happen; every digest differs) and times
:func:`teeform.measurements_diff.diff_manifests` for n = 1k, 10k, 100k (``--max``). It prints each
time and the ratio to the previous n: a linear algorithm gives ratios near 10 (a little more when
the working set leaves the CPU caches), a quadratic one near 100.

The previous, quadratic pairing (list scans and ``list.remove``/``pop(0)`` per input) is kept below
as :func:`quadratic_pair_inputs` and timed up to ``--max-quadratic`` (default 10k; 100k took hours),
both to show the ratio and to check that the two give identical results on every size measured.

Usage: ``.venv/bin/python benchmarks/measurements_diff_scaling.py [--max 100000] [--max-quadratic 10000]``.
Not a test: numbers depend on the machine. ``tests/test_hostile_cli.py`` holds the bounded test.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from measurements_diff_reference import reference_pair_inputs as quadratic_pair_inputs  # noqa: E402

from teeform.manifest import Artifact, ArtifactKind, Builder, InputDigest, Manifest  # noqa: E402
from teeform.measurements_diff import _pair_inputs, diff_manifests  # noqa: E402


def manifest(n: int, salt: int) -> Manifest:
    """An EIF manifest with ``n`` inputs; ``salt`` changes PCR0/2 and every input digest."""
    roles = ("image", "kernel", "init", "x-unlisted")
    half = max(n // 2, 1)
    inputs = tuple(InputDigest(roles[i % 4], f"file-{(i * (salt + 1)) % half}", f"{(i * 7 + salt) % 16:x}" * 64, i)
                   for i in range(n - salt))  # the second manifest has one input fewer
    pcr = f"{salt:02x}" * 48
    return Manifest(ArtifactKind.EIF, "agent", "1.0.0", Artifact("agent.eif", 1, "0" * 64, "0" * 96),
                    {"PCR0": pcr, "PCR1": "22" * 48, "PCR2": pcr, "ImageSha384": pcr}, inputs,
                    Builder("teeform", "0.1.0"), 0)


def timed(fn, *args):
    t0 = time.perf_counter()
    result = fn(*args)
    return result, time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max", type=int, default=100_000)
    ap.add_argument("--max-quadratic", type=int, default=10_000)
    args = ap.parse_args()
    sizes = [n for n in (1_000, 10_000, 100_000, 1_000_000) if n <= args.max]
    prev: dict[str, float] = {}
    print(f"{'inputs':>9} {'diff_manifests':>15} {'ratio':>6} {'pairing':>9} {'ratio':>6} {'old pairing':>12} {'ratio':>6}")
    for n in sizes:
        a, b = manifest(n, 0), manifest(n, 1)
        _d, t_diff = timed(diff_manifests, a, b)
        new_pairs, t_pair = timed(_pair_inputs, a.inputs, b.inputs)
        row = {"diff": t_diff, "pair": t_pair}
        old_text = "-"
        if n <= args.max_quadratic:
            old_pairs, row["old"] = timed(quadratic_pair_inputs, a.inputs, b.inputs)
            assert old_pairs == new_pairs, f"the two pairings differ at n={n}"
            old_text = f"{row['old']:.3f}s"

        r = {k: f"{row[k] / prev[k]:.1f}x" if k in prev and k in row and prev[k] > 0 else "-" for k in ("diff", "pair", "old")}
        print(f"{n:>9} {t_diff:>14.3f}s {r['diff']:>6} {t_pair:>8.3f}s {r['pair']:>6} {old_text:>12} {r['old']:>6}")
        prev = row
    return 0


if __name__ == "__main__":
    sys.exit(main())
