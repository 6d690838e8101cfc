"""``teeform measure <disk>``: the measurements of a teeform VM disk image (raw GPT, fixed VHD, qcow2).

API::

    measure_report(path) -> teeform.report.MeasurementReport     # kind "disk"
    check_disk(path) -> DiskCheck                               # the same facts as a frozen dataclass

What is checked and reported:

1. the container format and its raw bytes: :func:`image_builder.formats.diskformats.open_raw_view` (raw,
   fixed VHD without its footer, and temporary raw copies of qcow2 / dynamic VHD / GCE tarballs);
2. the GPT (:func:`image_builder.formats.gpt.read_disk_layout`: both headers and CRCs);
3. the ESP (type ``c12a7328-…``): the UKI is copied out with mtools (``mcopy -i <raw>@@<offset>``;
   :func:`find_uki`: ``EFI/BOOT/BOOTX64.EFI`` when it is a UKI, else the single ``EFI/Linux/*.efi``
   of a systemd-boot/mkosi layout) and measured with :func:`image_builder.measure.vm.predict_vm_measurements`
   (Authenticode, PCR 11/12 for the detected stub version) - RTMR1 with this disk's GPT event
   (:func:`image_builder.measure.tdx.gpt_event_data`), so it equals the build manifest's ``rtmr1`` (RTMR1 is
   left out when a boot loader starts the UKI);
4. the dm-verity root: the superblock of the root-verity partition (type ``2c7357ed-…``) is read, its
   ``data_blocks`` must fit in the root partition (type ``4f68bce3-…``), and the whole tree is
   recomputed and compared (:func:`image_builder.formats.verity.verify_hash_tree`);
5. the recomputed root hash must equal ``roothash=`` in the UKI's ``.cmdline``, and (unless the
   command line names the devices with ``systemd.verity_root_data=/hash=``) the root and
   root-verity PARTUUIDs must be the first/last 128 bits of it, which is how the teeform initrd
   finds them (Discoverable Partitions Specification; uki-verity.md §5).

Decision: any failure of 2-5 raises :class:`~teeform.errors.TeeformError` (``teeform measure``
prints one ``error:`` line and exits with status 2). Such a disk would not boot, or would boot a
root other than the one its PCR 11 pins, so printing its PCR values would mislead.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from teeform.errors import TeeformError
from teeform.run import run

ESP_TYPE = "c12a7328-f81f-11d2-ba4b-00a0c93ec93b"
ROOT_TYPE = "4f68bce3-e8cd-4db1-96e7-fbcaf984b709"
ROOT_VERITY_TYPE = "2c7357ed-ebd2-46d9-aec1-23d437ec2bf5"
UKI_ESP_PATH = "::/EFI/BOOT/BOOTX64.EFI"

@dataclass(frozen=True)
class DiskCheck:
    """Everything :func:`check_disk` found (all hex lowercase; offsets and sizes in bytes)."""

    path: str
    format: str
    disk: dict[str, Any]
    roothash: str
    cmdline: str
    verity: dict[str, Any]
    uki: dict[str, Any]
    uki_measurements: dict[str, str]
    uki_details: dict[str, Any] = field(default_factory=dict)


def _cmdline_value(cmdline: str, key: str) -> str | None:
    for word in cmdline.split():
        if word.startswith(key + "="):
            return word[len(key) + 1:]
    return None


def _is_uki(path: Path) -> bool:
    from image_builder.formats.pe import read_pe_headers

    try:
        return read_pe_headers(path).section(".linux") is not None
    except TeeformError:
        return False


def find_uki(raw: Path, esp_offset: int, tmp: Path, *, disk: Path, esp_number: int) -> tuple[Path, str]:
    """Copy the UKI out of the ESP at byte ``esp_offset`` of ``raw`` into ``tmp``; return (copy, ESP path).

    Where (UAPI Boot Loader Specification, type #2 entries; UAPI.5 UKI): ``EFI/BOOT/BOOTX64.EFI`` when
    it is a UKI (a PE with a ``.linux`` section: teeform's layout, the firmware starts the UKI), else
    the single ``EFI/Linux/*.efi`` (mkosi / systemd-boot layout, BOOTX64.EFI being the boot loader).

    Raises:
        TeeformError: no BOOTX64.EFI, or it is not a UKI and ``EFI/Linux`` holds no UKI or several
            (which one boots depends on the loader's configuration).
    """
    env = {"MTOOLSRC": "/dev/null"}
    img = f"{raw}@@{esp_offset}"
    first = tmp / "BOOTX64.EFI"
    try:
        run(["mcopy", "-n", "-i", img, UKI_ESP_PATH, str(first)], env=env)
    except TeeformError as exc:
        raise TeeformError(f"cannot copy EFI/BOOT/BOOTX64.EFI out of the ESP: {exc.message}", path=disk,
                           field=f"partition {esp_number}") from None
    if _is_uki(first):
        return first, UKI_ESP_PATH.removeprefix("::/")
    try:
        listing = run(["mdir", "-b", "-i", img, "::/EFI/Linux"], env=env).stdout.decode("utf-8", "replace")
    except TeeformError:
        listing = ""
    names = sorted(line.strip().removeprefix("::/").removeprefix("::") for line in listing.splitlines()
                   if line.strip().lower().endswith(".efi"))
    found: list[tuple[Path, str]] = []
    for i, name in enumerate(names):
        dest = tmp / f"uki{i}.efi"
        run(["mcopy", "-n", "-i", img, "::/" + name.lstrip("/"), str(dest)], env=env)
        if _is_uki(dest):
            found.append((dest, name.lstrip("/")))
    if len(found) == 1:
        return found[0]
    if not found:
        raise TeeformError("EFI/BOOT/BOOTX64.EFI is not a UKI (no .linux section) and EFI/Linux/ holds no UKI",
                           path=disk, field=f"partition {esp_number}")
    raise TeeformError(f"EFI/Linux/ holds several UKIs ({', '.join(n for _, n in found)}); which one boots "
                       "depends on the boot loader's configuration", path=disk, field=f"partition {esp_number}",
                       hint="measure the UKI file itself: teeform measure <uki.efi>")


def check_disk(path: os.PathLike[str] | str) -> DiskCheck:
    """Run checks 1-5 of the module docstring on ``path``.

    Raises:
        TeeformError: a missing partition or UKI, a bad GPT, a dm-verity tree that does not verify, a
            root hash that differs from ``roothash=``, or PARTUUIDs the initrd would not find.
    """
    from image_builder.formats import gpt, uki, verity
    from image_builder.formats.diskformats import open_raw_view
    from image_builder.formats.pe import read_section_bytes
    from image_builder.measure import tdx, vm
    from image_builder.pipelines import report

    p = Path(path)
    with open_raw_view(p) as view, tempfile.TemporaryDirectory(prefix="teeform-measure-") as tmp:
        raw, fmt = view.path, view.fmt
        layout = gpt.read_disk_layout(raw, size=view.size)
        parts = {q.type_guid: q for q in layout.partitions}
        for t, what in ((ESP_TYPE, "EFI system partition"), (ROOT_TYPE, "root (x86-64) partition"),
                        (ROOT_VERITY_TYPE, "root-verity (x86-64) partition")):
            if t not in parts:
                raise TeeformError(f"the disk has no {what} (type {t})", path=p, field="gpt")
        esp, root, hashp = parts[ESP_TYPE], parts[ROOT_TYPE], parts[ROOT_VERITY_TYPE]

        uki_path, esp_path = find_uki(raw, esp.offset, Path(tmp), disk=p, esp_number=esp.number)
        cmd_bytes = read_section_bytes(uki_path, ".cmdline")
        if cmd_bytes is None:
            raise TeeformError("the UKI has no .cmdline section, so nothing pins the root hash", path=p,
                               field=esp_path)
        cmdline = cmd_bytes.decode("utf-8", "replace").strip("\0").strip()
        want = _cmdline_value(cmdline, "roothash")
        if not want:
            extra = " (usrhash= /usr verity images are not supported)" if _cmdline_value(cmdline, "usrhash") else ""
            raise TeeformError(f"the UKI's .cmdline has no roothash={extra}", path=p, field=f"{esp_path}:.cmdline")

        sb = verity.read_superblock(raw, offset=hashp.offset)
        if sb.data_blocks * sb.data_block_size > root.size:
            raise TeeformError(
                f"the dm-verity superblock covers {sb.data_blocks} blocks of {sb.data_block_size} bytes, more than "
                f"the {root.size}-byte root partition", path=p, field=f"partition {hashp.number}")
        try:
            got = verity.verify_hash_tree(raw, raw, data_offset=root.offset, hash_offset=hashp.offset)
        except TeeformError as exc:
            raise TeeformError(f"dm-verity tree does not verify: {exc.message}", path=p,
                               field=f"partitions {root.number}+{hashp.number}") from None
        if got != want.lower():
            raise TeeformError(
                f"dm-verity root hash of the root partition is {got}, but the UKI's .cmdline says roothash={want}",
                path=p, field=f"partition {root.number}", hint="the root or the UKI was replaced; rebuild the image")
        if _cmdline_value(cmdline, "systemd.verity_root_data") is None:
            exp_root, exp_hash = gpt.verity_partition_uuids(got)
            if (root.partuuid, hashp.partuuid) != (exp_root, exp_hash):
                raise TeeformError(
                    f"PARTUUIDs {root.partuuid} / {hashp.partuuid} are not the ones derived from the root hash "
                    f"({exp_root} / {exp_hash}); the initrd would not find the root", path=p, field="gpt")

        pred = vm.predict_vm_measurements(uki_path, gpt_event_data=tdx.gpt_event_data(raw))
        if esp_path != UKI_ESP_PATH.removeprefix("::/"):
            # A boot loader (e.g. systemd-boot) sits at BOOTX64.EFI and loads the UKI: the firmware then
            # measures the loader too, which the RTMR1 model (UKI started by the firmware) does not cover.
            pred["measurements"].pop("rtmr1", None)
            pred["details"]["rtmr1"] = {"assumptions": [
                f"not predicted: EFI/BOOT/BOOTX64.EFI is a boot loader that loads {esp_path}, so RTMR1 / PCR 4 "
                "also hold the loader's Authenticode digest and events"]}
            for bank in ("sha256", "sha384"):  # NitroTPM PCR 4 (image_builder/measure/pcr4.py) models the UKI alone too
                pred["measurements"].pop(f"pcr4_{bank}", None)
            pred["details"]["pcr4"] = (f"PCR 4 not predicted: EFI/BOOT/BOOTX64.EFI is a boot loader that loads "
                                       f"{esp_path}, so PCR 4 also holds the loader's Authenticode digest and events")
        uki_layout = uki.read_uki_layout(uki_path)
        from teeform.fsutil import hash_file

        uki_info = {"esp_partition": esp.number, "esp_path": esp_path, "size": uki_layout.size,
                    "sha256": hash_file(uki_path)["sha256"],
                    "sections": [{"name": s.name, "virtual_size": s.virtual_size, "sha256": s.digests["sha256"]}
                                 for s in uki_layout.sections],
                    "section_rows": report.section_rows(uki_layout, pred["details"]["stub_version"])}
        return DiskCheck(
            path=str(p), format=fmt, disk=layout.to_dict(), roothash=got, cmdline=cmdline,
            verity={"hash": sb.hash_name, "data_block_size": sb.data_block_size, "hash_block_size": sb.hash_block_size,
                    "data_blocks": sb.data_blocks, "salt": sb.salt.hex(), "uuid": sb.uuid},
            uki=uki_info, uki_measurements=dict(pred["measurements"]), uki_details=dict(pred["details"]),
        )


def measure_report(path: os.PathLike[str] | str) -> Any:
    """``teeform measure DISK``: roothash (recomputed and checked) plus the measurements of the UKI on the ESP.

    Measurement names: ``roothash`` and the names ``teeform measure UKI`` uses
    (``AuthenticodeSha256/384``, ``PCR11_sha256/384``, ``PCR12_sha256/384``, ``RTMR1``, ``RTMR2``
    for stubs >= 256), with RTMR1 including this disk's GPT event. The table lists the partitions,
    then the UKI's sections.

    Returns:
        :class:`teeform.report.MeasurementReport` with kind ``"disk"``.

    Raises:
        TeeformError: see :func:`check_disk`.
    """
    from image_builder.measure.pcr11 import PCR12_NOTE
    from image_builder.pipelines.report import display_measurements
    from teeform.report import MeasurementReport

    c = check_disk(path)
    m = c.uki_measurements
    measurements = display_measurements({"roothash": c.roothash, **m})
    facts: dict[str, Any] = {
        "Format": c.format,
        "DiskSize": c.disk["size"],
        "DiskGuid": c.disk["disk_guid"],
        "StubVersion": c.uki_details.get("stub_version"),
        "Cmdline": c.cmdline,
        "RoothashMatchesCmdline": True,
        "VerityTree": f"{c.verity['data_blocks']} blocks of {c.verity['data_block_size']} B, {c.verity['hash']}, "
                      f"salt {c.verity['salt']}",
        "UkiPath": c.uki["esp_path"],
        "UkiSha256": c.uki["sha256"],
    }
    rows = [{"name": q["name"], "number": q["number"], "type": q["type"], "partuuid": q["partuuid"],
             "offset": q["offset"], "size": q["size"]} for q in c.disk["partitions"]]
    # Then the per-section table of the UKI on the ESP (same columns as `teeform measure uki.efi`).
    rows += c.uki["section_rows"]
    notes = [
        PCR12_NOTE,
        "roothash was recomputed from the root partition and equals roothash= in the UKI's .cmdline, so PCR 11 and "
        "the UKI's Authenticode hash pin the root file system.",
        ("RTMR1 assumes: " if "rtmr1" in m else "RTMR1 ") + "; ".join(c.uki_details.get("rtmr1", {}).get("assumptions", [])),
    ]
    p4 = c.uki_details.get("pcr4")  # NitroTPM PCR 4 (image_builder/measure/pcr4.py): a reason, or the predictions
    if p4 is not None:
        notes.append(p4 if isinstance(p4, str) else "PCR4 assumes: " + "; ".join(p4["sha384"]["assumptions"]))
    return MeasurementReport(c.path, "disk", measurements, facts, rows, notes)
