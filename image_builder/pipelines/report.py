"""``teeform measure`` reports for UKIs and other PE files, and the names those reports print.

Public API::

    uki_measure_report(path) -> teeform.report.MeasurementReport   # kind "uki" (or "pe")
    section_rows(layout, stub_version) -> list[dict]                # per-section table rows
    DISPLAY_NAMES                                                   # manifest name -> printed name
    display_measurements(measurements) -> dict[str, str]

The report combines the UKI reader (:func:`image_builder.formats.uki.read_uki_layout`) with the
predictions of :mod:`image_builder.measure.vm`; it lives in the pipelines layer because it joins
both layers below (formats and measure) and reads the file (layers contract in pyproject.toml).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from image_builder.formats.uki import UkiLayout, read_uki_layout
from image_builder.measure.authenticode import authenticode_digest
from image_builder.measure.pcr11 import PCR12_NOTE, measured_sections
from image_builder.measure.vm import predict_from_layout
from teeform.report import MeasurementReport

#: Manifest measurement name (teeform/manifest.py, kind vm-image) -> the name ``teeform measure`` prints.
DISPLAY_NAMES = {
    "roothash": "roothash",
    "uki_authenticode_sha256": "AuthenticodeSha256",
    "uki_authenticode_sha384": "AuthenticodeSha384",
    "pcr11_sha256": "PCR11_sha256",
    "pcr11_sha384": "PCR11_sha384",
    "pcr12_sha256": "PCR12_sha256",
    "pcr12_sha384": "PCR12_sha384",
    "rtmr1": "RTMR1",
    "rtmr2": "RTMR2",
    "pcr4_sha256": "PCR4_sha256",
    "pcr4_sha384": "PCR4_sha384",
}


def display_measurements(measurements: Mapping[str, str]) -> dict[str, str]:
    """Rename manifest measurement names to the ones ``teeform measure`` prints, in :data:`DISPLAY_NAMES`
    order, keeping only those present (e.g. RTMR1 is absent when a boot loader precedes the UKI)."""
    return {shown: measurements[name] for name, shown in DISPLAY_NAMES.items() if name in measurements}


def section_rows(layout: UkiLayout, stub_version: int) -> list[dict[str, Any]]:
    """The per-section table of ``teeform measure``: name, RVA, VirtualSize, SHA-256 of the measured
    bytes, and ``pcr11`` = the section's position in the stub's PCR 11 measurement order (``-`` when
    that stub version does not measure it, or it is empty; uki-verity.md §1.1-§1.2)."""
    order = [n for n in measured_sections(stub_version) if (sec := layout.section(n)) is not None and sec.size]
    return [{"name": s.name, "rva": f"{s.virtual_address:#x}", "virtual_size": s.virtual_size,
             "pcr11": str(order.index(s.name) + 1) if s.name in order and layout.section(s.name) is s else "-",
             "sha256": s.digests["sha256"]} for s in layout.sections]


def plain_pe_report(path: os.PathLike[str] | str, layout: UkiLayout) -> MeasurementReport:
    """Report for a PE file without ``.linux`` (a boot loader, a bare stub, a kernel): kind ``"pe"``,
    only the Authenticode digests - a PCR 11 value would be meaningless (no kernel is started)."""
    auth = authenticode_digest(path, ("sha256", "sha384"))
    rows = [{"name": s.name, "rva": f"{s.virtual_address:#x}", "virtual_size": s.virtual_size,
             "sha256": s.digests["sha256"]} for s in layout.sections]
    facts = {"Size": layout.size, "TimeDateStamp": layout.time_date_stamp,
             "SectionAlignment": f"{layout.section_alignment:#x}", "FileAlignment": f"{layout.file_alignment:#x}"}
    notes = ["Not a UKI (no .linux section): only the Authenticode digest is meaningful - what the firmware "
             "measures into PCR 4 / TDX RTMR1 when it loads this file (uki-verity.md §1.5). PCR 11 is not predicted."]
    return MeasurementReport(os.fspath(path), "pe", {"AuthenticodeSha256": auth["sha256"],
                                                     "AuthenticodeSha384": auth["sha384"]}, facts, rows, notes)


def uki_measure_report(path: os.PathLike[str] | str) -> MeasurementReport:
    """``teeform measure UKI``: Authenticode SHA-256/384, PCR 11 (sha256, sha384) for the detected
    stub version, the expected PCR 12 (nothing measured: zeros), RTMR1 (RTMR2 for stubs >= 256), a
    per-section table and the PCR 12 note. Works on any UKI (ukify, mkosi, objcopy recipes): only
    the PE section table and the stub's ``.sbat``/``.sdmagic`` are read.

    Measurement names correspond to the manifest's: ``AuthenticodeSha256/384`` =
    ``uki_authenticode_sha256/384``, ``PCR11_*`` = ``pcr11_*``, ``PCR12_*`` = ``pcr12_*``,
    ``RTMR1/2`` = ``rtmr1/2`` (RTMR1 here without a GPT event: a bare UKI has no disk),
    ``PCR4_*`` = ``pcr4_*`` (firmware PCR 4, Secure Boot off, :mod:`image_builder.measure.pcr4`).

    Returns:
        :class:`teeform.report.MeasurementReport` with kind ``"uki"``; kind ``"pe"`` (Authenticode
        only) for a PE file without a ``.linux`` section.

    Raises:
        TeeformError: not a PE file or no detectable stub version.
    """
    layout = read_uki_layout(path)
    if layout.section(".linux") is None:
        return plain_pe_report(path, layout)
    pred = predict_from_layout(path, layout, stub_version=None, ovmf=None, vcpus=None, vcpu_type=None,
                               gpt_event_data=None, secure_boot=False)
    m = pred["measurements"]
    det = pred["details"]
    measurements = display_measurements(m)
    facts = {
        "StubVersion": f"systemd-stub {det['stub_version']} ({det['stub_version_source']})",
        "PCR11Sections": " ".join(n for n in measured_sections(det["stub_version"])
                                  if (sec := layout.section(n)) is not None and sec.size),
        "Size": layout.size,
        "TimeDateStamp": layout.time_date_stamp,
        "SectionAlignment": f"{layout.section_alignment:#x}",
        "FileAlignment": f"{layout.file_alignment:#x}",
    }
    rows = section_rows(layout, det["stub_version"])
    notes = ["RTMR1 assumes: " + "; ".join(det["rtmr1"]["assumptions"])]
    if layout.section(".cmdline") is not None:
        notes.insert(0, PCR12_NOTE)
    else:
        notes.insert(0, "This UKI has no .cmdline: systemd-stub accepts any command line from the boot entry "
                        "(measured into PCR 12), even with Secure Boot on.")
    if "rtmr2" not in m:
        notes.append(det["rtmr2"])
    p4 = det.get("pcr4")
    notes.append(p4 if isinstance(p4, str) else  # NitroTPM PCR 4 (image_builder/measure/pcr4.py, docs/nitrotpm.md)
                 "PCR4 (NitroTPM / OVMF firmware, the same events) assumes: " + "; ".join(p4["sha384"]["assumptions"]))
    return MeasurementReport(os.fspath(path), "uki", measurements, facts, rows, notes)
