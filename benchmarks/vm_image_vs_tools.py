#!/usr/bin/env python3
"""Benchmark: ``teeform build vm-image`` against a hand-run tool script doing the same work.

Generates a root tree of ``--files`` small files (default 50,000; 200-4,000 bytes each, 100 per
directory) plus busybox as ``/sbin/init`` and the mount points ``dev proc sys run tmp``. Then,
alternating ``--repeat`` times, best wall time of each counts (a shared machine adds noise):

* **teeform**: ``teeform build vm-image --rootfs TREE --kernel K --stub S --out DIR`` in a child
  process;
* **tools**: one bash script with the same steps, each done by the usual tool:
  ``mkfs.erofs -T<epoch> -U<uuid> --all-root`` on the tree, ``truncate`` to 4 KiB,
  ``veritysetup format`` (superblock on), the initrd as ``cpio -o -H newc --reproducible | gzip -9n``
  of the same initrd tree teeform makes (unpacked from teeform's initrd before timing), ``ukify build``
  (systemd 254, from the set-up's lock record), ``mkfs.vfat`` + ``mmd`` + ``mcopy`` for the ESP,
  ``sfdisk`` for the GPT and ``dd conv=notrunc`` of the three partitions into the disk.

Prints both times, the ratio teeform / tools (target <= 1.5, issue 7 item 8) and the peak RSS of
each (``ru_maxrss`` from ``wait4``: the largest process of the child's tree, KiB; target < 256 MiB).

Usage: ``.venv/bin/python benchmarks/vm_image_vs_tools.py [--files 50000] [--repeat 3] [--workdir DIR]``
Exit status 0; 1 when a step fails (and, with ``--strict``, when the ratio is over 1.5).
"""

from __future__ import annotations

import argparse
import gzip
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from teeform.inputs_lock import load_lock  # noqa: E402

SDE = "1700000000"
UUID = "0b5e55ed-0000-4000-8000-00000000be17"
SALT = "5eed" * 16

TOOLS_SCRIPT = rf"""
set -euo pipefail
W=$1 TREE=$2 KERNEL=$3 STUB=$4 UKIFY=$5 INITRD_TREE=$6 RELEASE=$7
cd "$W"
env -u SOURCE_DATE_EPOCH mkfs.erofs -T{SDE} -U{UUID} --all-root --quiet root.img "$TREE"
truncate -s %4096 root.img
RH=$(veritysetup format root.img root.verity --salt={SALT} --uuid={UUID} | sed -n 's/^Root hash:[[:space:]]*//p')
(cd "$INITRD_TREE" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc --reproducible --quiet) | gzip -9n > initrd.img
printf 'ID=teeform\nIMAGE_ID=bench\n' > os-release
/usr/bin/python3 "$UKIFY" build --linux="$KERNEL" --initrd=initrd.img --stub="$STUB" --os-release=@os-release \
    --uname="$RELEASE" --cmdline="roothash=$RH rootfstype=erofs console=ttyS0 panic=-1" --output=uki.efi >/dev/null
rm -f esp.img && mkfs.vfat --invariant -C -F 32 -S 512 -i 12345678 -n ESP esp.img 65536 >/dev/null
export MTOOLSRC=/dev/null MTOOLS_SKIP_CHECK=1 TZ=UTC
mmd -i esp.img ::/EFI ::/EFI/BOOT && mcopy -i esp.img uki.efi ::/EFI/BOOT/BOOTX64.EFI
MIB=$((1024 * 1024))
ESP=$(stat -c %s esp.img) ROOT=$(stat -c %s root.img) VER=$(stat -c %s root.verity)
mib() {{ echo $(( ($1 + MIB - 1) / MIB )); }}
TOTAL=$(( 1 + $(mib $ESP) + $(mib $ROOT) + $(mib $VER) + 1 ))
rm -f disk.raw && truncate -s ${{TOTAL}}M disk.raw
sfdisk -q disk.raw >/dev/null <<EOF
label: gpt
start=1MiB, size=$(mib $ESP)MiB, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B
size=$(mib $ROOT)MiB, type=4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709
size=$(mib $VER)MiB, type=2C7357ED-EBD2-46D9-AEC1-23D437EC2BF5
EOF
dd if=esp.img of=disk.raw bs=1M seek=1 conv=notrunc,sparse status=none
dd if=root.img of=disk.raw bs=1M seek=$((1 + $(mib $ESP))) conv=notrunc,sparse status=none
dd if=root.verity of=disk.raw bs=1M seek=$((1 + $(mib $ESP) + $(mib $ROOT))) conv=notrunc,sparse status=none
"""


def make_tree(root: Path, files: int, busybox: Path) -> int:
    """Write ``files`` small files (100 per directory, 200-4000 bytes); return the content bytes."""
    rnd = random.Random(7)
    total = 0
    for i in range(files):
        d = root / "usr" / "share" / f"d{i // 100:04d}"
        if i % 100 == 0:
            d.mkdir(parents=True)
        n = rnd.randint(200, 4000)
        (d / f"f{i % 100:02d}.txt").write_bytes(rnd.randbytes(n))
        total += n
    (root / "sbin").mkdir()
    (root / "bin").mkdir()
    shutil.copyfile(busybox, root / "bin" / "busybox")
    os.chmod(root / "bin" / "busybox", 0o755)
    os.symlink("../bin/busybox", root / "sbin" / "init")
    for m in ("dev", "proc", "sys", "run", "tmp"):
        (root / m).mkdir()
    return total


def unpack_initrd(initrd: Path, dest: Path) -> None:
    """Unpack teeform's gzip'd newc initrd into ``dest`` with GNU cpio (the tool script re-packs it)."""
    dest.mkdir()
    data = gzip.decompress(initrd.read_bytes())
    subprocess.run(["cpio", "-idm", "--quiet", "--no-absolute-filenames"], input=data, cwd=dest, check=True)


SELF_RSS: list[int] = []


def timed(argv: list[str], env: dict[str, str], cwd: Path | None = None) -> tuple[float, int]:
    """Run ``argv``; return (wall seconds, peak RSS KiB of the largest process in the child's tree).

    A ``SELF_MAXRSS_KIB=`` line on the child's stderr (the teeform process itself) goes to :data:`SELF_RSS`.
    """
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    dt = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        sys.exit(f"{argv[0]} failed ({proc.returncode}): {err.decode(errors='replace')[-2000:]}")
    for line in err.decode(errors="replace").splitlines():
        if line.startswith("SELF_MAXRSS_KIB="):
            SELF_RSS.append(int(line.split("=", 1)[1]))
    return dt, usage.ru_maxrss


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--files", type=int, default=50_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--strict", action="store_true", help="exit 1 when the ratio is over 1.5")
    args = ap.parse_args()

    lock = load_lock(REPO)
    kernel, stub = lock.get("kernel.vmlinuz").path, lock.get("bookworm.stub").path
    ukify, busybox = lock.get("sd254.ukify").path, lock.get("busybox").path
    from image_builder.pipelines.initrd import kernel_release

    release = kernel_release(kernel)
    env = dict(os.environ, SOURCE_DATE_EPOCH=SDE, PYTHONPATH=str(REPO))
    # The child prints its own peak RSS (RUSAGE_SELF: the Python process, without mkfs.erofs & co.) to fd 2.
    teeform = [sys.executable, "-c", "import resource, sys; from teeform.cli import main; rc = main(sys.argv[1:]); "
               "print(f'SELF_MAXRSS_KIB={resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}', file=sys.stderr); "
               "sys.exit(rc)"]
    with tempfile.TemporaryDirectory(prefix="bench-vm-", dir=args.workdir) as tmp:
        w = Path(tmp)
        t0 = time.perf_counter()
        content = make_tree(w / "tree", args.files, busybox)
        print(f"tree: {args.files} files, {content / 1e6:.1f} MB of content ({time.perf_counter() - t0:.1f} s to write)")
        # One untimed build: warms the page cache and gives the initrd tree for the tool script.
        argv = [*teeform, "build", "vm-image", "--rootfs", str(w / "tree"), "--kernel", str(kernel),
                "--stub", str(stub), "--name", "bench", "--version", "1"]
        timed([*argv, "--out", str(w / "warm")], env)
        unpack_initrd_from = w / "warm-initrd"
        subprocess.run([*teeform[:-1], "import sys; from image_builder.pipelines import initrd as i; from pathlib import Path; "
                        "r = i.kernel_release(sys.argv[1]); "
                        "i.make_initrd(i.InitrdConfig(modules_dir=i.find_modules_dir(sys.argv[1], r), kernel_release=r, "
                        "mtime=int(sys.argv[3])), Path(sys.argv[2]))", str(kernel), str(unpack_initrd_from), SDE],
                       env=env, check=True)
        unpack_initrd(unpack_initrd_from, w / "initrd-tree")
        best_t, best_s = float("inf"), float("inf")
        rss_t = rss_s = 0
        for i in range(args.repeat):
            out = w / f"out{i}"
            dt, rss = timed([*argv, "--out", str(out)], env)
            best_t, rss_t = min(best_t, dt), max(rss_t, rss)
            shutil.rmtree(out)
            sw = w / f"tools{i}"
            sw.mkdir()
            dt, rss = timed(["bash", "-c", TOOLS_SCRIPT, "tools", str(sw), str(w / "tree"), str(kernel), str(stub),
                             str(ukify), str(w / "initrd-tree"), release], env)
            best_s, rss_s = min(best_s, dt), max(rss_s, rss)
            shutil.rmtree(sw)
            print(f"run {i + 1}: teeform {best_t:.2f} s (best), tools {best_s:.2f} s (best)", flush=True)
    ratio = best_t / best_s
    self_rss = max(SELF_RSS) if SELF_RSS else 0
    print(f"teeform build vm-image: {best_t:.2f} s, peak RSS: teeform process {self_rss / 1024:.0f} MiB, "
          f"largest process of its tree {rss_t / 1024:.0f} MiB")
    print(f"tool script:            {best_s:.2f} s, peak RSS: largest process {rss_s / 1024:.0f} MiB")
    print("  (the largest process of both is mkfs.erofs, which keeps its image buffers in memory)")
    print(f"ratio teeform / tools:  {ratio:.2f} (target <= 1.5)")
    return 1 if args.strict and (ratio > 1.5 or self_rss > 256 * 1024) else 0


if __name__ == "__main__":
    sys.exit(main())
