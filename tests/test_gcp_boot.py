"""The measured image boots from an NVMe disk (GCP C3/TDX machines offer only NVMe boot disks; clouds.md §3.3).

QEMU with an emulated NVMe controller (``-device nvme``), OVMF and swtpm, as tests/test_boot.py does with
virtio-blk: the initrd (which carries the ``nvme`` module, image_builder/pipelines/initrd.py
DEFAULT_MODULES) finds the root and its verity hash partitions by PARTUUID on ``nvme0n1``, and the vTPM's
PCR 11 equals the manifest's prediction. Oracle: the vTPM (swtpm) of a real boot.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from conftest import locked, require_tool
from test_boot import build

from image_builder.pipelines import qemu_boot

pytestmark = pytest.mark.integration


def test_boot_from_nvme_mounts_the_verity_root_and_pcr11_matches(tmp_path: Path) -> None:
    for t in ("qemu-system-x86_64", "swtpm", "busybox", "veritysetup", "mkfs.erofs"):
        require_tool(t)
    result, manifest = build(tmp_path, locked("bookworm.stub"), "probenvme")
    t0 = time.monotonic()
    b = qemu_boot.boot_disk(result.disk, tmp_path / "boot", ovmf_code=locked("ovmf.code-4m"),
                            ovmf_vars=locked("ovmf.vars-4m"), disk_interface="nvme")
    print(f"nvme boot: {time.monotonic() - t0:.1f} s, -accel {b.accel}")
    assert "TEEFORM-PROBE-END" in b.log, "the probe did not finish" + b.tail()
    p = b.probe
    assert p.get("ROOT_MOUNT", "").split()[:3] == ["/dev/mapper/root", "/", "erofs"], b.tail()
    assert sorted(p.get("DM_SLAVES", "").split()) == ["nvme0n1p2", "nvme0n1p3"], b.tail()
    assert p.get("PCR11_SHA256", "").lower() == manifest.measurements["pcr11_sha256"], b.tail()
