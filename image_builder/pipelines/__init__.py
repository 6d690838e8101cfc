"""Build pipelines (I/O and external tools only): EIF, UKI + dm-verity VM image, initrd, root
filesystem, ESP, ``teeform measure`` reports (disk, UKI/PE), QEMU boots. Guest-side shell scripts
live in ``guest/``."""
