"""Streaming: ``teeform build eif`` and ``teeform measure`` keep peak memory bounded (issue 2, §2).

Runs ``benchmarks/eif_memory.py``'s generator and child runner on a 320 MiB image (the benchmark's
default is 1 GiB; ~40 MiB peak RSS there). Each command runs in its own child process, whose
``ru_maxrss`` must stay under 256 MiB: well below the image size, so a step that held the image (or a
ramdisk, or the EIF) in memory would fail this test.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest
from conftest import REPO

MIB = 1 << 20
IMAGE_MIB = 320
LIMIT_KIB = 256 * 1024


def _bench():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("eif_memory_bench", REPO / "benchmarks" / "eif_memory.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.integration
def test_build_and_measure_peak_rss_is_bounded(tmp_path: Path) -> None:
    bench = _bench()
    bench.generate(tmp_path / "image", IMAGE_MIB)
    (tmp_path / "bzImage").write_bytes(os.urandom(4 * MIB))
    (tmp_path / "init").write_bytes(os.urandom(MIB))
    (tmp_path / "nsm.ko").write_bytes(os.urandom(64 * 1024))
    env = dict(os.environ, SOURCE_DATE_EPOCH="1700000000", TMPDIR=str(tmp_path))
    build = bench.run_child(["build", "eif", "--image", str(tmp_path / "image"), "--kernel", str(tmp_path / "bzImage"),
                             "--init", str(tmp_path / "init"), "--nsm", str(tmp_path / "nsm.ko"),
                             "--cmdline", "console=ttyS0", "--out", str(tmp_path / "out")], env)
    eif_path = tmp_path / "out" / "bench.eif"
    assert build["rc"] == 0 and eif_path.stat().st_size > IMAGE_MIB * MIB
    measure = bench.run_child(["measure", str(eif_path)], env)
    assert measure["rc"] == 0
    assert build["maxrss_kib"] < LIMIT_KIB, f"build peak RSS {build['maxrss_kib'] // 1024} MiB"
    assert measure["maxrss_kib"] < LIMIT_KIB, f"measure peak RSS {measure['maxrss_kib'] // 1024} MiB"
