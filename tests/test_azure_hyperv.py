"""Hyper-V drivers in the vm-image initrd (issue 10, item 1: the image must find its disk on Azure).

Oracles: kmod's ``modinfo -F depends`` / ``-F softdep`` on the Debian kernel's own ``.ko`` files
(the lock's kernel, ``.cache/inputs.lock.json``) for the dependency closure, and GNU ``cpio`` for the
archive's listing and for reading ``etc/teeform/modules`` back out of it.

What is not tested here: that the modules load. Under QEMU there is no VMBus, so ``hv_vmbus``
refuses to initialise (its init returns -ENODEV without Hyper-V) and the init script only logs a
warning (``guest/initrd-init.sh``); the boot on Hyper-V / an Azure CVM is untested (docs/azure.md).
"""

from __future__ import annotations

import gzip
import os
import re
import subprocess
from pathlib import Path

import pytest
from conftest import locked, require_tool

from image_builder.pipelines import initrd as ir


@pytest.fixture(scope="module")
def kernel_modules() -> tuple[str, Path]:
    kernel = locked("kernel.vmlinuz")
    release = ir.kernel_release(kernel)
    return release, ir.find_modules_dir(kernel, release)


def _norm(n: str) -> str:
    return n.replace("-", "_")


def _modinfo(tool: str, path: Path, field: str) -> list[str]:
    out = subprocess.run([tool, "-F", field, str(path)], capture_output=True, text=True, check=True).stdout
    return [line for line in out.splitlines() if line.strip()]


def test_hyperv_closure_matches_modinfo(kernel_modules: tuple[str, Path]) -> None:
    release, mdir = kernel_modules
    modinfo = require_tool("modinfo")
    files = {_norm(re.sub(r"\.ko(\.xz|\.gz|\.zst)?$", "", f)): Path(root) / f
             for root, _, names in os.walk(mdir / "kernel") for f in names if ".ko" in f}
    builtin = {_norm(Path(x).name.split(".ko")[0]) for x in (mdir / "modules.builtin").read_text().split()} \
        if (mdir / "modules.builtin").is_file() else set()
    want: set[str] = set()
    todo = [_norm(m) for m in ir.HYPERV_MODULES]
    while todo:
        n = todo.pop()
        if n in want or n in builtin:
            continue
        want.add(n)
        deps = [d for line in _modinfo(modinfo, files[n], "depends") for d in line.split(",") if d]
        for sd in _modinfo(modinfo, files[n], "softdep"):
            m = re.search(r"pre:\s*(.*?)(?:\s+post:|$)", sd)
            deps += [ir.SOFTDEP_ALIASES.get(d, d) if _norm(d) not in files else d for d in (m.group(1).split() if m else [])]
        todo += [_norm(d) for d in deps if _norm(d) in files]
    got = ir.resolve_modules(mdir, ir.HYPERV_MODULES, release)
    assert {m.name for m in got} == want
    assert {"hv_vmbus", "hv_storvsc", "hv_netvsc", "hv_utils", "scsi_transport_fc"} <= want
    pos = {m.name: i for i, m in enumerate(got)}
    for m in got:  # dependencies first: a valid insmod order
        for dep in (d for line in _modinfo(modinfo, m.source, "depends") for d in line.split(",") if d):
            assert pos[_norm(dep)] < pos[m.name], (dep, m.name)


def test_hyperv_modules_are_in_the_initrd_cpio(tmp_path: Path, kernel_modules: tuple[str, Path]) -> None:
    release, mdir = kernel_modules
    require_tool("busybox")
    require_tool("veritysetup")
    require_tool("cpio")
    cfg = ir.InitrdConfig(modules_dir=mdir, kernel_release=release, mtime=1700000000,
                          modules=ir.DEFAULT_MODULES + ir.PLATFORM_MODULES["hyperv"])
    res = ir.make_initrd(cfg, tmp_path / "hv.cpio.gz")
    raw = gzip.decompress((tmp_path / "hv.cpio.gz").read_bytes())
    listing = subprocess.run(["cpio", "-t", "--quiet"], input=raw, capture_output=True, check=True).stdout.decode().split()
    for ko in ("kernel/drivers/hv/hv_vmbus.ko", "kernel/drivers/scsi/hv_storvsc.ko", "kernel/drivers/net/hyperv/hv_netvsc.ko",
               "kernel/drivers/hv/hv_utils.ko", "kernel/drivers/scsi/scsi_transport_fc.ko"):
        assert f"lib/modules/{ko}" in listing, ko
        assert ko in res.modules
    order = subprocess.run(["cpio", "-i", "--to-stdout", "--quiet", "etc/teeform/modules"], input=raw,
                           capture_output=True, check=True).stdout.decode().split()
    assert order == list(res.modules)
    assert order.index("kernel/drivers/hv/hv_vmbus.ko") < order.index("kernel/drivers/scsi/hv_storvsc.ko")
    assert order.index("kernel/drivers/scsi/scsi_transport_fc.ko") < order.index("kernel/drivers/scsi/hv_storvsc.ko")
    assert order[-1] == "kernel/fs/erofs/erofs.ko"
    # The default initrd stays as it was: no Hyper-V driver unless asked for.
    plain = ir.make_initrd(ir.InitrdConfig(modules_dir=mdir, kernel_release=release, mtime=1700000000), tmp_path / "p.cpio.gz")
    assert not [m for m in plain.modules if "/hv/" in m or "hyperv" in m or "hv_" in m]


def test_unknown_platform_module_set_is_refused(tmp_path: Path) -> None:
    from image_builder.pipelines.build_vm import BuildConfig, check_config
    from teeform.errors import TeeformError

    cfg = BuildConfig(rootfs=tmp_path, kernel=locked("kernel.vmlinuz"), stub=locked("bookworm.stub"), out=tmp_path / "o",
                      name="x", platform_modules=("vmware",))
    with pytest.raises(TeeformError) as e:
        check_config(cfg)
    assert e.value.field == "--platform-modules" and "hyperv" in e.value.message
