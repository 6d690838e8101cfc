"""Build pipelines (I/O and external tools only): EIF, UKI + dm-verity VM image, initrd, root
filesystem, ESP, disk measurement, QEMU boots. Guest-side shell scripts live in ``guest/``."""
