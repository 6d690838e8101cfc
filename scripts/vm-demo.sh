#!/usr/bin/env bash
# The VM-image example (make vm-demo): build a UKI + dm-verity disk from a busybox root whose /sbin/init
# prints the vTPM's PCRs, measure it, then boot it under QEMU + OVMF + swtpm and check that the
# measured PCR 11 equals the manifest's prediction.
set -euo pipefail
cd "$(dirname "$0")/.."
export SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-1700000000}"
OUT=build/vm-demo
TEEFORM=.venv/bin/teeform
bold() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
# Inputs from the set-up's lock record (.cache/inputs.lock.json, teeform/inputs_lock.py): no guessed names.
LOCK=".venv/bin/python -m teeform.inputs_lock"
KERNEL=$($LOCK path kernel.vmlinuz) || exit 1
STUB=$($LOCK path bookworm.stub) || exit 1   # Debian bookworm's systemd 252 stub

rm -rf "$OUT"; mkdir -p "$OUT"
bold "[1/4] root file system: busybox-static + the boot probe as /sbin/init ($OUT/rootfs)"
.venv/bin/python -c "from pathlib import Path; from image_builder.pipelines.qemu_boot import make_probe_rootfs; make_probe_rootfs(Path('$OUT/rootfs'))"

bold "[2/4] teeform build vm-image (kernel: $KERNEL, $($LOCK get kernel.vmlinuz.package) $($LOCK get kernel.vmlinuz.version); stub: $STUB, $($LOCK get bookworm.stub.package) $($LOCK get bookworm.stub.version))"
$TEEFORM build vm-image --rootfs "$OUT/rootfs" --kernel "$KERNEL" --stub "$STUB" \
    --out "$OUT/image" --name agent-vm --version 1.0.0 --format raw,vhd,qcow2,gce-tar

bold "[3/4] teeform measure $OUT/image/agent-vm.raw"
$TEEFORM measure "$OUT/image/agent-vm.raw"

# TEEFORM_VM_DEMO_NO_BOOT=1 stops here (tests/test_readme.py compares the prediction with README.md).
[ "${TEEFORM_VM_DEMO_NO_BOOT:-0}" = 1 ] && exit 0
bold "[4/4] measured boot: QEMU + OVMF + swtpm"
.venv/bin/python scripts/vm_demo_boot.py "$OUT/image/agent-vm.raw" "$OUT/image/agent-vm.manifest.json" "$OUT/boot"
