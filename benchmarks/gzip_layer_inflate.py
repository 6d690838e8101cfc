#!/usr/bin/env python3
"""Benchmark: flattening a gzip layer with ISA-L's inflater against the standard library's.

Generates an OCI image layout with one tar+gzip layer of about ``--size-mib`` MiB of file content
(default 256; text-like files that compress about 2:1, plus some random ones), then runs
:func:`image_builder.inputs.oci.flatten` on it ``--repeat`` times with each inflater, alternating:
``oci._GzipReader`` as shipped (``isal.igzip.IGzipFile``, python-isal) and replaced by
``gzip.GzipFile``. Flattening verifies the blob digest and the diff_id and spools the files, so
the ratio is what a user of ``teeform build eif`` / ``build oci`` gains on a compressed image, not
the inflate alone. Printed: best time of each and the ratio; both trees must be equal.

Usage: ``.venv/bin/python benchmarks/gzip_layer_inflate.py [--size-mib 256] [--repeat 3] [--workdir DIR]``
"""

from __future__ import annotations

import argparse
import gzip
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from image_builder.inputs import oci  # noqa: E402
from image_builder.inputs.demo_image import LayerEntry, image_config, layer_blob, write_oci_layout  # noqa: E402

MIB = 1 << 20


def generate(work: Path, size_mib: int) -> Path:
    """An image layout with one gzip layer of ``size_mib`` MiB of content in 4 MiB files."""
    rng = random.Random(7)
    words = [bytes(rng.choice(b"abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 9))) for _ in range(4000)]
    entries = [LayerEntry("data/", "dir")]
    for i in range(max(1, size_mib // 4)):
        if i % 4 == 3:
            body = os.urandom(4 * MIB)
        else:
            text = b" ".join(rng.choice(words) for _ in range(700_000))
            body = (text * (4 * MIB // len(text) + 1))[: 4 * MIB]
        entries.append(LayerEntry(f"data/f{i:04d}", "file", body))
    blob = layer_blob(work / "layers", entries, compression="gzip", mtime=0)
    write_oci_layout(work / "image", [blob], image_config([blob.diff_id], cmd=["/bin/true"], env=[], created=0))
    return work / "image"


def flatten_once(image_dir: Path, work: Path) -> tuple[float, dict[str, int]]:
    """Wall time of one flatten and the tree it gave (path -> size)."""
    t0 = time.perf_counter()
    image = oci.open_image(image_dir)
    with oci.flatten(image, work) as tree:
        shape = {e.path: e.size for e in tree.entries()}
    return time.perf_counter() - t0, shape


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--size-mib", type=int, default=256)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--workdir", type=Path, default=None)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="teeform-bench-gzip-", dir=args.workdir))
    try:
        image_dir = generate(work, args.size_mib)
        blob = max((image_dir / "blobs" / "sha256").iterdir(), key=lambda p: p.stat().st_size)
        print(f"gzip layer: {blob.stat().st_size / MIB:.0f} MiB compressed, ~{args.size_mib} MiB of content")
        shipped = oci._GzipReader
        best = {"isa-l": float("inf"), "stdlib": float("inf")}
        trees = {}
        for _ in range(max(1, args.repeat)):
            for name, reader in (("isa-l", shipped), ("stdlib", gzip.GzipFile)):
                oci._GzipReader = reader  # type: ignore[misc]
                seconds, trees[name] = flatten_once(image_dir, work)
                best[name] = min(best[name], seconds)
        oci._GzipReader = shipped  # type: ignore[misc]
        assert trees["isa-l"] == trees["stdlib"], "the two inflaters gave different trees"
        print(f"flatten with ISA-L ({shipped.__module__}): {best['isa-l']:.2f} s")
        print(f"flatten with gzip.GzipFile: {best['stdlib']:.2f} s")
        print(f"ratio stdlib / ISA-L: {best['stdlib'] / best['isa-l']:.2f}")
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
