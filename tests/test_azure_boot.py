"""An image built with ``--platform-modules hyperv`` still boots under QEMU + OVMF + swtpm (issue 10, item 1).

What can be proven without Hyper-V: the image with the Hyper-V drivers boots to its probe, its root is
the dm-verity mapping, its measured PCR 11 equals the manifest's prediction (the oracle is the guest's
vTPM, as in tests/test_boot.py), and the initrd tried the drivers in order. ``hv_vmbus`` refuses to
initialise without VMBus (there is none under QEMU), so it and the modules that need its symbols
(``hv_storvsc``, ``hv_netvsc``, ``hv_utils``) are expected to fail to insert, while their
non-Hyper-V dependency ``scsi_transport_fc`` loads. Whether they load and find the disk on Hyper-V / an
Azure CVM is untested here (docs/azure.md).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import locked, require_tool
from test_boot import _assert_verity_root, boot_disk, make_probe_rootfs

pytestmark = pytest.mark.integration

HV = ("kernel/drivers/hv/hv_vmbus.ko", "kernel/drivers/scsi/hv_storvsc.ko", "kernel/drivers/net/hyperv/hv_netvsc.ko",
      "kernel/drivers/hv/hv_utils.ko")


def test_hyperv_image_boots_under_qemu_and_tries_the_drivers(tmp_path: Path) -> None:
    for t in ("qemu-system-x86_64", "swtpm", "busybox", "veritysetup", "mkfs.erofs"):
        require_tool(t)
    from image_builder.pipelines.build_vm import BuildConfig, build_vm_image
    from teeform.manifest import load_manifest

    cfg = BuildConfig(rootfs=make_probe_rootfs(tmp_path / "rootfs"), kernel=locked("kernel.vmlinuz"),
                      stub=locked("bookworm.stub"), out=tmp_path / "out", name="probehv", version="1",
                      source_date_epoch=1700000000, platform_modules=("hyperv",))
    result = build_vm_image(cfg)
    manifest = load_manifest(result.manifest)
    assert set(HV) <= set(manifest.details["initrd"]["modules"])
    b = boot_disk(result.disk, tmp_path / "boot")
    assert "TEEFORM-PROBE-BEGIN" in b.log, "the image did not reach its /sbin/init" + b.tail()
    _assert_verity_root(b)
    assert b.probe.get("PCR11_SHA256", "").lower() == manifest.measurements["pcr11_sha256"], b.tail()
    failed = {ln.split("insmod ", 1)[1].split()[0] for ln in b.log.splitlines() if "warning: insmod" in ln}
    assert set(HV) <= failed, "without VMBus hv_vmbus and its users should fail to insert" + b.tail()
    assert "hv_storvsc: Unknown symbol vmbus_" in b.log, b.tail()  # storvsc needs vmbus, which did not load
    assert "kernel/drivers/scsi/scsi_transport_fc.ko" not in failed, b.tail()
    assert "kernel/drivers/block/virtio_blk.ko" not in failed, b.tail()
