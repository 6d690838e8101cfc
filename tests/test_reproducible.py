"""Reproducible across machines (issue 7 item 2): same inputs + SOURCE_DATE_EPOCH -> same bytes.

``teeform build eif`` and ``teeform build vm-image`` (from a directory root that is staged, one that
is read in place, the same as squashfs, and from an OCI image layout) run as separate processes under builder environments that differ in everything a machine
can differ in without changing the inputs:

* umask 022 / 077 / 002 (directories the build creates must not take it);
* ``TZ`` UTC / America/St_Johns (UTC-03:30) / Asia/Kathmandu (UTC+05:45) (FAT and tar timestamps);
* locale ``LC_ALL=C`` / ``C.UTF-8`` / ``de_DE.UTF-8`` (compiled here with ``localedef`` into a
  private ``LOCPATH``; when that fails, ``C.UTF-8`` is used again and the reason printed);
* the working directory, ``TMPDIR`` and the output directory;
* the checkout: the third variant runs a copy of ``teeform/`` and ``image_builder/`` at another
  path (``PYTHONPATH``; the test checks that the copy is the code that ran), with the inputs given
  by relative paths from another working directory;
* the input trees are created twice, in opposite orders with different mtimes.

Oracle: byte equality of every output file between the variants (the first variant is the
reference), plus: no manifest mentions a path of the checkout, the working directory or the
temporary directories (a manifest must not record where it was built).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import REPO, locked, require_tool

from image_builder.inputs.demo_image import LayerEntry, image_config, layer_blob, write_oci_layout

pytestmark = pytest.mark.integration

SDE = "1700000000"
RUNNER = "import sys; from teeform.cli import main; sys.exit(main(sys.argv[1:]))"


@dataclass(frozen=True)
class Variant:
    """One builder environment."""

    name: str
    umask: int
    tz: str
    locale: str
    copy_checkout: bool


LABELS = ("vm-dir", "vm-dir-in-place", "vm-squashfs", "vm-oci", "eif")
VARIANTS = (
    Variant("reference", 0o022, "UTC", "C", False),
    Variant("umask077", 0o077, "America/St_Johns", "C.UTF-8", False),
    Variant("umask002-copy", 0o002, "Asia/Kathmandu", "de_DE.UTF-8", True),
)


def _rootfs(dest: Path, *, reverse: bool, mount_points: bool = False) -> Path:
    """A small directory root (busybox + /sbin/init), created in ``reverse`` order with other mtimes.

    With ``mount_points`` it also has ``dev proc sys run tmp``, so ``build vm-image`` reads it in place
    (no staging tree); without, the build stages it and adds them."""
    busybox = require_tool("busybox")
    steps = [
        lambda: (dest / "bin").mkdir(parents=True),
        lambda: (dest / "sbin").mkdir(parents=True),
        lambda: (dest / "etc").mkdir(parents=True),
        lambda: (dest / "usr" / "share").mkdir(parents=True),
    ]
    for s in reversed(steps) if reverse else steps:
        s()
    shutil.copyfile(busybox, dest / "bin" / "busybox")
    applets = ["sh", "cat", "echo", "poweroff", "mount", "ls"]
    for a in reversed(applets) if reverse else applets:
        os.symlink("busybox", dest / "bin" / a)
    (dest / "sbin" / "init").write_text("#!/bin/sh\necho hello\npoweroff -f\n")
    (dest / "etc" / "hostname").write_text("teeform\n")
    (dest / "usr" / "share" / "readme").write_text("x" * 5000)
    for p, mode in (("bin/busybox", 0o755), ("sbin/init", 0o755), ("etc/hostname", 0o644),
                    ("usr/share/readme", 0o640), ("bin", 0o755), ("sbin", 0o755), ("etc", 0o755),
                    ("usr", 0o755), ("usr/share", 0o755)):
        os.chmod(dest / p, mode)
    if mount_points:
        for m in ("dev", "proc", "sys", "run", "tmp"):
            (dest / m).mkdir()
            os.chmod(dest / m, 0o1777 if m == "tmp" else 0o755)
    t = 1_000_000 if reverse else 1_600_000_000
    for p in dest.rglob("*"):
        os.utime(p, (t, t), follow_symlinks=False)
    os.chmod(dest, 0o755)
    return dest


def _oci_image(dest: Path, work: Path) -> Path:
    """An OCI image layout (deterministic: image_builder.inputs.demo_image) with a dir that has no own entry."""
    busybox = Path(require_tool("busybox"))
    entries = [LayerEntry("bin/", "dir"), LayerEntry("bin/busybox", "file", busybox.read_bytes(), mode=0o755),
               LayerEntry("bin/sh", "symlink", target="busybox"),
               LayerEntry("sbin/init", "file", b"#!/bin/sh\necho oci\npoweroff -f\n", mode=0o755),
               LayerEntry("app/agent", "file", b"#!/bin/sh\necho hi\n", mode=0o750),
               LayerEntry("home/", "dir"), LayerEntry("home/agent/", "dir", uid=1000, gid=1000)]
    blob = layer_blob(work, entries, compression="gzip", mtime=0)
    config = image_config([blob.diff_id], cmd=["/app/agent", "--serve"], env=["PATH=/bin"], created=0)
    write_oci_layout(dest, [blob], config, ref_name="registry.example/team/agent:1.2")
    return dest


def _blobs(dest: Path) -> Path:
    dest.mkdir(parents=True)
    (dest / "bzImage").write_bytes(b"\x4d\x5a" + bytes(range(256)) * 8)
    (dest / "init").write_bytes(b"\x7fELF stand-in init")
    (dest / "nsm.ko").write_bytes(b"stand-in nsm.ko")
    (dest / "cmdline").write_text("reboot=k panic=30 pci=off nomodules console=ttyS0\n")
    return dest


def _german_locale(tmp: Path) -> tuple[str, dict[str, str]]:
    """Compile de_DE.UTF-8 into a private LOCPATH; fall back to C.UTF-8 (printed) when that fails."""
    locpath = tmp / "locales"
    locpath.mkdir()
    localedef = shutil.which("localedef")
    if localedef:
        proc = subprocess.run([localedef, "-i", "de_DE", "-f", "UTF-8", str(locpath / "de_DE.UTF-8")],
                              capture_output=True, text=True)
        if (locpath / "de_DE.UTF-8").is_dir():
            return "de_DE.UTF-8", {"LOCPATH": str(locpath)}
        print(f"localedef de_DE failed ({proc.returncode}: {proc.stderr.strip()[:200]}); using C.UTF-8")
    else:
        print("no localedef; using C.UTF-8 instead of a German locale")
    return "C.UTF-8", {}


def _copy_checkout(dest: Path) -> Path:
    """Copy the packages that run (teeform/, image_builder/) to ``dest`` (no __pycache__)."""
    for pkg in ("teeform", "image_builder"):
        shutil.copytree(REPO / pkg, dest / pkg, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return dest


@pytest.fixture(scope="module")
def builds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Path]]:
    """Run every variant; return ``{variant: {label: output directory}}``."""
    for t in ("busybox", "veritysetup", "mkfs.erofs", "mksquashfs", "mkfs.vfat", "mcopy", "qemu-img"):
        require_tool(t)
    kernel, stub = locked("kernel.vmlinuz"), locked("bookworm.stub")
    tmp = tmp_path_factory.mktemp("repro")
    de_locale, de_env = _german_locale(tmp)
    results: dict[str, dict[str, Path]] = {}
    for i, v in enumerate(VARIANTS):
        root = tmp / v.name
        inputs = root / "in"
        inputs.mkdir(parents=True)
        _rootfs(inputs / "rootfs", reverse=i % 2 == 1)
        _rootfs(inputs / "rootfs-full", reverse=i % 2 == 0, mount_points=True)
        _oci_image(inputs / "oci", root / "layers")
        _blobs(inputs / "blobs")
        cwd = root / "cwd" / "deeper"
        cwd.mkdir(parents=True)
        tmpdir = root / "tmpdir"
        tmpdir.mkdir()
        env = {k: os.environ[k] for k in ("PATH", "HOME", "CI", "TEEFORM_TOOLS_DIR") if k in os.environ}
        env.update(SOURCE_DATE_EPOCH=SDE, TZ=v.tz, TMPDIR=str(tmpdir), LANG=v.locale, LC_ALL=v.locale)
        if v.locale == "de_DE.UTF-8":
            env["LC_ALL"] = env["LANG"] = de_locale
            env.update(de_env)
        if v.copy_checkout:
            code = _copy_checkout(root / "checkout" / "elsewhere")
            env["PYTHONPATH"] = str(code)
            # inputs by relative paths from the working directory
            rel = Path(os.path.relpath(inputs, cwd))
        else:
            code = REPO
            env["PYTHONPATH"] = str(REPO)
            rel = inputs
        where = subprocess.run([sys.executable, "-c", "import image_builder, teeform; print(image_builder.__file__); "
                                "print(teeform.__file__)"], env=env, cwd=cwd, capture_output=True, text=True, check=True)
        assert all(line.startswith(str(code)) for line in where.stdout.split()), where.stdout
        outs = {label: root / f"out-{label}" for label in LABELS}
        commands = {
            "vm-dir": ["build", "vm-image", "--rootfs", str(rel / "rootfs"), "--kernel", str(kernel),
                       "--stub", str(stub), "--out", str(outs["vm-dir"]), "--name", "img", "--version", "1",
                       "--format", "raw,vhd,qcow2,gce-tar"],
            "vm-dir-in-place": ["build", "vm-image", "--rootfs", str(rel / "rootfs-full"), "--kernel", str(kernel),
                                "--stub", str(stub), "--out", str(outs["vm-dir-in-place"]), "--name", "full"],
            "vm-squashfs": ["build", "vm-image", "--rootfs", str(rel / "rootfs"), "--kernel", str(kernel),
                            "--stub", str(stub), "--out", str(outs["vm-squashfs"]), "--name", "sq", "--fs", "squashfs"],
            "vm-oci": ["build", "vm-image", "--rootfs", str(rel / "oci"), "--kernel", str(kernel),
                       "--stub", str(stub), "--out", str(outs["vm-oci"]), "--name", "oci", "--version", "1"],
            "eif": ["build", "eif", "--image", str(rel / "oci"), "--kernel", str(rel / "blobs" / "bzImage"),
                    "--init", str(rel / "blobs" / "init"), "--nsm", str(rel / "blobs" / "nsm.ko"),
                    "--cmdline", f"@{rel / 'blobs' / 'cmdline'}", "--out", str(outs["eif"])],
        }
        for label, argv in commands.items():
            sh = f"umask {v.umask:03o} && exec \"$0\" -c \"$1\" \"${{@:2}}\""
            proc = subprocess.run(["bash", "-c", sh, sys.executable, RUNNER, *argv], env=env, cwd=cwd,
                                  capture_output=True, text=True)
            assert proc.returncode == 0, f"{v.name} {label}: {proc.stderr[-2000:]}"
        results[v.name] = outs
        results[v.name]["_paths"] = root  # type: ignore[assignment]
    return results


def _files(d: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(d.iterdir())}


@pytest.mark.parametrize("label", LABELS)
@pytest.mark.parametrize("variant", [v.name for v in VARIANTS[1:]])
def test_outputs_are_byte_identical_across_builders(builds, label: str, variant: str) -> None:
    ref = _files(builds["reference"][label])
    got = _files(builds[variant][label])
    assert sorted(got) == sorted(ref)
    assert any(n.endswith(".manifest.json") for n in ref)
    differ = [n for n in ref if ref[n] != got[n]]
    assert not differ, f"{variant} differs from the reference in {differ}"


@pytest.mark.parametrize("label", LABELS)
def test_manifests_name_no_build_paths(builds, label: str) -> None:
    for v in VARIANTS:
        root: Path = builds[v.name]["_paths"]  # type: ignore[assignment]
        for m in builds[v.name][label].glob("*.manifest.json"):
            text = m.read_text()
            for forbidden in (str(REPO), str(root), str(root.parent)):
                assert forbidden not in text, f"{m.name} ({v.name}) records the build path {forbidden}"
