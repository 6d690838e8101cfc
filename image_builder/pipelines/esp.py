"""Reproducible EFI System Partition (FAT32) images holding the UKI at ``EFI/BOOT/BOOTX64.EFI``.

Public API::

    UKI_PATH = "EFI/BOOT/BOOTX64.EFI"
    make_esp(uki_path, out_path, *, size_mib=None, source_date_epoch=None, volume_id=None,
             label="ESP", extra_files=None) -> Path
    default_size_mib(payload_bytes: int) -> int
    derive_volume_id(uki_sha256: str) -> str     # 8 hex digits, pure

``EFI/BOOT/BOOTX64.EFI`` is the removable-media default boot path for x86-64 (UEFI 2.10 §3.5.1.1,
"BOOTx64.EFI"); OVMF boots it without any boot entry (measured-boot.md "Run"), and GCP's custom-image
requirements name it (uki-verity.md §8).

Reproducibility (checked on Debian 12: dosfstools 4.2-1, mtools 4.0.33-1+really4.0.32-1):

* ``mkfs.vfat --invariant -i <volume id> -n <label> -F 32 -C``: without ``--invariant`` the volume
  label's directory entry carries the current time (mkfs.fat 4.2 ignores SOURCE_DATE_EPOCH);
  ``--invariant`` replaces every time-based or random value with a constant, while ``-i`` still
  sets the volume serial. Two runs a second apart are byte-identical.
* ``mmd``/``mcopy`` stamp the directory entries they create with "now"; mtools 4.0.32 takes "now"
  from ``SOURCE_DATE_EPOCH`` when set, so teeform runs them with ``SOURCE_DATE_EPOCH=<epoch>`` (the
  source file's own mtime is *not* used, no ``-m``), ``MTOOLSRC=/dev/null`` (no user config) and
  ``TZ=UTC``: mtools turns that time into FAT's local date/time fields with ``localtime(3)``, so the
  builder's time zone would otherwise change the bytes (tests/test_reproducible.py builds under
  UTC-03:30 and UTC+05:45).
* The volume serial defaults to the first 4 bytes of SHA-256(domain || SHA-256(UKI)), so different
  UKIs get different serials and the same UKI always the same one.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path, PurePosixPath

from teeform.errors import TeeformError
from teeform.fsutil import atomic_output_path, hash_file
from teeform.fsutil import source_date_epoch as env_source_date_epoch
from teeform.run import run

__all__ = ["UKI_PATH", "MIN_SIZE_MIB", "make_esp", "default_size_mib", "derive_volume_id"]

#: Where the UKI goes: the UEFI removable-media boot path for x86-64.
UKI_PATH = "EFI/BOOT/BOOTX64.EFI"
#: Smallest ESP teeform makes: FAT32 needs >= 65525 clusters (about 33 MiB with 512-byte clusters);
#: 64 MiB leaves room and matches the layout verified under OVMF (measured-boot.md "Disk").
MIN_SIZE_MIB = 64
_VOLID_DOMAIN = b"teeform/esp/volume-id/v1\0"


def derive_volume_id(uki_sha256: str) -> str:
    """Return the FAT volume serial (8 hex digits, ``mkfs.vfat -i``) for a UKI with this SHA-256 (hex). Pure."""
    return hashlib.sha256(_VOLID_DOMAIN + bytes.fromhex(uki_sha256)).hexdigest()[:8]


def default_size_mib(payload_bytes: int) -> int:
    """ESP size in MiB for ``payload_bytes`` of files: payload + 3 % (two FATs, directories) + 2 MiB, at least 64."""
    need = payload_bytes + payload_bytes * 3 // 100 + (2 << 20)
    return max(MIN_SIZE_MIB, -(-need // (1 << 20)))


def _fat_dirs(dest: str) -> list[str]:
    parts = PurePosixPath(dest).parts[:-1]
    return ["::/" + "/".join(parts[: i + 1]) for i in range(len(parts))]


def make_esp(
    uki_path: os.PathLike[str] | str,
    out_path: os.PathLike[str] | str,
    *,
    size_mib: int | None = None,
    source_date_epoch: int | None = None,
    volume_id: str | None = None,
    label: str = "ESP",
    extra_files: Mapping[str, os.PathLike[str] | str] | None = None,
) -> Path:
    """Write a FAT32 ESP image with the UKI at :data:`UKI_PATH` to ``out_path`` (atomically).

    Args:
        uki_path: the (signed or unsigned) UKI.
        out_path: the image to write; its size is ``size_mib`` MiB exactly.
        size_mib: image size in MiB (default :func:`default_size_mib` of the payload; >= 33 for FAT32).
        source_date_epoch: timestamp of every directory entry (default $SOURCE_DATE_EPOCH or 0;
            FAT stores local time with 2-second resolution; mtools runs with TZ=UTC, so it is UTC).
        volume_id: FAT volume serial, 8 hex digits (default :func:`derive_volume_id`).
        label: FAT volume label, at most 11 characters.
        extra_files: more files, ``{"EFI/Linux/x.conf": Path}`` (FAT path with ``/`` -> source file).

    Returns:
        ``Path(out_path)``.

    Raises:
        TeeformError: missing UKI/extra file, bad size/label/volume id, or a tool failed
            (e.g. "Disk full" from mcopy when ``size_mib`` is too small).
        ToolMissingError: mkfs.vfat or mtools is not installed.
    """
    uki = Path(uki_path)
    if not uki.is_file():
        raise TeeformError("UKI not found", path=uki)
    files: dict[str, Path] = {UKI_PATH: uki}
    for dest, src in (extra_files or {}).items():
        norm = PurePosixPath(dest.lstrip("/")).as_posix()
        if not Path(src).is_file():
            raise TeeformError(f"ESP file for {norm} not found", path=src)
        if norm in files or ".." in PurePosixPath(norm).parts:
            raise TeeformError(f"bad or duplicate ESP path {dest!r}", field="extra_files")
        files[norm] = Path(src)
    if len(label) > 11 or not label.isascii():
        raise TeeformError(f"FAT volume label {label!r} must be at most 11 ASCII characters", field="label")
    payload = sum(p.stat().st_size for p in files.values())
    size = size_mib if size_mib is not None else default_size_mib(payload)
    if size < 33:
        raise TeeformError(f"ESP size {size} MiB is too small for FAT32 (at least 33 MiB)", field="size_mib")
    volid = volume_id or derive_volume_id(hash_file(uki, ("sha256",))["sha256"])
    if len(volid) != 8 or any(c not in "0123456789abcdefABCDEF" for c in volid):
        raise TeeformError(f"FAT volume id {volid!r} must be 8 hex digits", field="volume_id")
    epoch = env_source_date_epoch() if source_date_epoch is None else source_date_epoch
    # TZ=UTC: mtools converts "now" with localtime(3) into the FAT date/time fields, so without it the
    # directory entries (and the image bytes) would depend on the builder's time zone.
    mtools_env = {"SOURCE_DATE_EPOCH": str(epoch), "MTOOLSRC": "/dev/null", "MTOOLS_SKIP_CHECK": "1", "TZ": "UTC",
                  "LC_ALL": "C"}

    with atomic_output_path(out_path) as tmp:
        tmp.unlink()  # mkfs.vfat -C refuses to overwrite
        run(["mkfs.vfat", "--invariant", "-C", "-F", "32", "-S", "512", "-i", volid, "-n", label,
             str(tmp), str(size * 1024)])  # fmt: skip
        made: set[str] = set()
        for dest in sorted(files):
            dirs = [d for d in _fat_dirs(dest) if d not in made]
            if dirs:
                run(["mmd", "-i", str(tmp), *dirs], env=mtools_env)
                made.update(dirs)
            run(["mcopy", "-i", str(tmp), str(files[dest]), "::/" + dest], env=mtools_env)
    return Path(out_path)
