#!/usr/bin/env python3
"""Benchmark: teeform's dm-verity hash tree (image_builder.formats.verity) against `veritysetup format`.

Builds the tree of one data file (default 1 GiB of random bytes) with both, using the same salt,
UUID and block sizes, checks that the root hashes and the hash-device bytes are identical, and
prints both wall-clock times (best of ``--repeat`` alternating runs, page cache warm) and the ratio
teeform / veritysetup. The goal is a ratio <= 1.0.

Usage: .venv/bin/python benchmarks/verity_vs_veritysetup.py [--size-mib 1024] [--repeat 3] [--workers N]
Exit status: 0 when the outputs match (and, with --strict, the ratio is <= 1.0); 1 otherwise.
"""

from __future__ import annotations

import argparse
import filecmp
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

from image_builder.formats.verity import VerityParams, build_hash_tree
from teeform.run import find_tool, run

SALT = bytes.fromhex("5eed" * 16)
UUID = "0b5e55ed-0000-4000-8000-00000000be17"


def make_data(path: Path, size: int) -> None:
    """Write ``size`` random bytes (incompressible; content does not matter for hashing speed)."""
    with open(path, "wb") as fh:
        left = size
        while left:
            n = min(left, 8 << 20)
            fh.write(os.urandom(n))
            left -= n


def warm(path: Path) -> None:
    """Read the file once so both tools start with a warm page cache."""
    with open(path, "rb", buffering=0) as fh:
        while fh.read(16 << 20):
            pass


def time_veritysetup(data: Path, out: Path) -> tuple[float, str]:
    out.unlink(missing_ok=True)
    argv = ["veritysetup", "format", str(data), str(out), f"--salt={SALT.hex()}", f"--uuid={UUID}",
            "--hash=sha256", "--data-block-size=4096", "--hash-block-size=4096"]  # fmt: skip
    t0 = time.perf_counter()
    proc = run(argv)
    dt = time.perf_counter() - t0
    m = re.search(r"Root hash:\s*([0-9a-f]+)", proc.stdout.decode())
    if not m:
        raise SystemExit("could not parse veritysetup's root hash")
    return dt, m.group(1)


def time_teeform(data: Path, out: Path, workers: int | None) -> tuple[float, str]:
    params = VerityParams(salt=SALT, uuid=UUID)
    t0 = time.perf_counter()
    res = build_hash_tree(data, out, params, workers=workers)
    return time.perf_counter() - t0, res.roothash


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mib", type=int, default=1024, help="data size in MiB (default 1024)")
    ap.add_argument("--repeat", type=int, default=3, help="alternating runs per tool (default 3)")
    ap.add_argument("--workers", type=int, default=None, help="teeform worker processes (default: all CPUs)")
    ap.add_argument("--dir", default=None, help="scratch directory (default: a temp dir, removed afterwards)")
    ap.add_argument("--strict", action="store_true", help="exit 1 when the ratio is above 1.0")
    args = ap.parse_args(argv)
    find_tool("veritysetup", reason="run the comparison benchmark")

    with tempfile.TemporaryDirectory(prefix="teeform-bench-", dir=args.dir) as tmp:
        d = Path(tmp)
        data = d / "data.img"
        print(f"writing {args.size_mib} MiB of random data to {data} ...", file=sys.stderr)
        make_data(data, args.size_mib << 20)
        warm(data)
        t_vs: list[float] = []
        t_tf: list[float] = []
        for _ in range(args.repeat):
            dt, root_vs = time_veritysetup(data, d / "veritysetup.hash")
            t_vs.append(dt)
            dt, root_tf = time_teeform(data, d / "teeform.hash", args.workers)
            t_tf.append(dt)
        same_root = root_vs == root_tf
        same_bytes = filecmp.cmp(d / "veritysetup.hash", d / "teeform.hash", shallow=False)
        best_vs, best_tf = min(t_vs), min(t_tf)
        ratio = best_tf / best_vs
        print(f"data:          {args.size_mib} MiB, sha256, 4096/4096, salt {SALT.hex()[:16]}..., uuid {UUID}")
        print(f"cpus:          {len(os.sched_getaffinity(0))}, load average {os.getloadavg()[0]:.2f}")
        print(f"veritysetup:   best {best_vs:.3f} s  median {statistics.median(t_vs):.3f} s  runs {t_vs!r}")
        print(f"teeform:       best {best_tf:.3f} s  median {statistics.median(t_tf):.3f} s  runs {t_tf!r}")
        print(f"roothash:      {root_tf} ({'identical' if same_root else 'DIFFERENT from ' + root_vs})")
        print(f"hash device:   {'byte-identical' if same_bytes else 'DIFFERENT'}")
        print(f"ratio teeform/veritysetup: {ratio:.2f} (goal <= 1.0: {'met' if ratio <= 1.0 else 'NOT met'})")
        if not (same_root and same_bytes):
            return 1
        return 1 if args.strict and ratio > 1.0 else 0


if __name__ == "__main__":
    sys.exit(main())
