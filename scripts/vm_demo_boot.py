"""Boot a built VM image under QEMU + OVMF + swtpm and compare the guest's PCR 11 with the manifest.

Usage: python scripts/vm_demo_boot.py <disk.raw> <manifest.json> <workdir>
Exit status 0 when the vTPM's PCR 11 (sha256) equals the manifest's predicted pcr11_sha256 and ``/`` is
the dm-verity device; 1 otherwise (the serial log is saved in <workdir>/serial.log).
"""

from __future__ import annotations

import sys
from pathlib import Path

from image_builder.pipelines.qemu_boot import boot_disk
from teeform.errors import TeeformError
from teeform.inputs_lock import load_lock
from teeform.manifest import load_manifest


def main(disk: str, manifest: str, workdir: str) -> int:
    m = load_manifest(manifest)
    predicted = m.measurements["pcr11_sha256"]
    print(f"booting {disk} (QEMU TCG + OVMF + swtpm; about 15-20 s) ...", flush=True)
    lock = load_lock()  # the OVMF build the set-up recorded (README's vm-demo block lists it)
    boot = boot_disk(Path(disk), Path(workdir), ovmf_code=lock.file("ovmf.code-4m"), ovmf_vars=lock.file("ovmf.vars-4m"))
    observed = boot.probe.get("PCR11_SHA256", "<not printed>").lower()
    root = boot.probe.get("ROOT_MOUNT", "<not printed>")
    dm = boot.probe.get("DM_UUID", "")
    print(f"  boot took {boot.seconds:.1f} s; serial log: {boot.log_path}")
    print(f"  predicted PCR11 (manifest): {predicted}")
    print(f"  measured  PCR11 (vTPM)    : {observed}")
    print(f"  root mount                : {root}  (dm uuid {dm or '-'})")
    ok = observed == predicted and root.startswith("/dev/mapper/root") and dm.startswith("CRYPT-VERITY-")
    print("  MATCH: the measured boot confirms the prediction; / is the dm-verity device" if ok
          else "  MISMATCH" + boot.tail())
    return 0 if ok else 1


if __name__ == "__main__":
    try:
        sys.exit(main(*sys.argv[1:4]))
    except TeeformError as exc:
        print(f"error: {exc}" + (f" ({exc.hint})" if exc.hint else ""), file=sys.stderr)
        sys.exit(1)
