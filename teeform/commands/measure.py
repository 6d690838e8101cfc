"""``teeform measure <artifact>``: predict the measurements of an EIF, a UKI or a disk image.

The artifact type is recognised by content, not by file name:

* ``.eif`` magic at offset 0 (``shared/reference/eif-nitro.md`` §1.2) -> :func:`image_builder.formats.eif.measure_report`
* ``MZ`` at offset 0 (a PE/COFF image, i.e. a UKI) -> :func:`image_builder.pipelines.report.uki_measure_report`
* anything else (raw GPT disk, fixed VHD, qcow2) -> :func:`image_builder.pipelines.disk.measure_report`

A file whose name ends in ``.eif`` always goes to the EIF reader, so a corrupt EIF is reported as one
(``bad magic ...``) instead of as an unrecognised disk image.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import click

from teeform.errors import TeeformError
from teeform.report import MeasurementReport

HANDLERS = {
    b".eif": "image_builder.formats.eif:measure_report",
    b"MZ": "image_builder.pipelines.report:uki_measure_report",
}
DISK_HANDLER = "image_builder.pipelines.disk:measure_report"


def measure_path(path: Path) -> MeasurementReport:
    """Sniff ``path`` and return its :class:`MeasurementReport`.

    ``path`` must be a regular file (a directory, FIFO or device such as ``/dev/zero`` is refused
    before it is read). Each reader bounds what it reads; see ``teeform measure --help``.

    Raises:
        TeeformError: the file is missing, empty, not a regular file, or not a recognised artifact.
    """
    from teeform.safeload import open_regular

    try:
        path.stat()
    except OSError as exc:
        raise TeeformError(f"cannot read: {exc.strerror}", path=path) from None
    with open_regular(path, what="artifact") as fh:
        head = fh.read(4)
    if not head:
        raise TeeformError("file is empty", path=path)
    target = HANDLERS.get(head[:4]) or HANDLERS.get(head[:2]) or DISK_HANDLER
    if path.suffix.lower() == ".eif":
        target = HANDLERS[b".eif"]
    module, attr = target.split(":")
    fn = getattr(importlib.import_module(module), attr)
    report: MeasurementReport = fn(path)
    return report


@click.command("measure")
@click.argument("artifact", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def cmd(artifact: Path, as_json: bool) -> None:
    """Print the measurements of ARTIFACT (an EIF, a UKI, or a raw/VHD/qcow2 disk image).

    \b
    EIF:  PCR0, PCR1, PCR2 (PCR8 when signed) and ImageSha384, after checking the
          magic, version, section bounds and CRC32 (works on EIFs built by nitro-cli).
    UKI:  Authenticode SHA-256/384, TPM PCR 11 for the stub's systemd version (252/254/257
          section sets), expected PCR 12, RTMR1, per-section table - also for UKIs built by
          ukify or mkosi. Note: PCR 11 alone does not pin the kernel command line (PCR 12).
    Disk: raw, VHD, qcow2 or GCE tarball: the dm-verity roothash of the root partition
          (recomputed, checked against roothash= in .cmdline) plus the UKI on the ESP.

    \b
    Limits (a corrupt or hostile file gives one error line and exit status 2):
      ARTIFACT must be a regular file. EIF: cmdline <= 1 MiB, metadata <= 16 MiB
      of JSON (nesting <= 64), signature <= 1 MiB, sections inside the file.
      PE/UKI: <= 96 sections, headers <= 1 MiB, section data inside the file,
      zero fill (VirtualSize past the file data) <= 64 MiB in total.
      GPT: <= 16 MiB of entries, tables inside the disk. dm-verity: sha1/sha256/
      sha512-family hashes, power-of-two block sizes 512..512 KiB.
    """
    report = measure_path(artifact)
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2, sort_keys=False))
    else:
        click.echo(report.render(), nl=False)
