"""A small reader of the TCG2 "crypto agile" firmware event log, for the boot tests (test side only).

Format: TCG PC Client Platform Firmware Profile Specification (PFP) §10.2 "Event Log Format": the
first record is a legacy ``TCG_PCClientPCREvent`` (PCRIndex u32, EventType u32, SHA-1 digest[20],
EventSize u32, Event) whose event is ``TCG_EfiSpecIDEvent`` (signature ``"Spec ID Event03\\0"``,
platformClass u32, version u8 x 3, uintnSize u8, numberOfAlgorithms u32, then ``{algorithmId u16,
digestSize u16}`` per bank, vendorInfoSize u8, vendorInfo); every later record is a
``TCG_PCR_EVENT2`` (PCRIndex u32, EventType u32, count u32, ``{algorithmId u16, digest}`` x count,
EventSize u32, Event). All integers little-endian. Algorithm ids: TCG Algorithm Registry (sha1 0x0004,
sha256 0x000B, sha384 0x000C, sha512 0x000D). Event types: PFP §10.4.1 (EV_SEPARATOR 0x4,
EV_NO_ACTION 0x3, EV_EFI_BOOT_SERVICES_APPLICATION 0x80000003, EV_EFI_ACTION 0x80000007).

Written from the specification independently of the code under test, so the boot test can compare
each PCR 4 event the firmware logged with the predicted one.
"""

from __future__ import annotations

import base64
import struct
from dataclasses import dataclass

ALG_NAMES = {0x0004: "sha1", 0x000B: "sha256", 0x000C: "sha384", 0x000D: "sha512"}
EVENT_TYPES = {0x3: "EV_NO_ACTION", 0x4: "EV_SEPARATOR", 0x80000003: "EV_EFI_BOOT_SERVICES_APPLICATION",
               0x80000007: "EV_EFI_ACTION"}


@dataclass(frozen=True)
class LogEvent:
    """One TCG_PCR_EVENT2: ``digests`` maps bank name -> lowercase hex."""

    pcr: int
    event_type: str
    digests: dict[str, str]
    data: bytes


def parse(log: bytes) -> list[LogEvent]:
    """All TCG_PCR_EVENT2 records of ``log`` (the Spec ID header record is consumed, not returned)."""
    pcr, etype = struct.unpack_from("<II", log, 0)
    (size,) = struct.unpack_from("<I", log, 28)
    spec = log[32:32 + size]
    assert etype == 3 and spec[:16] == b"Spec ID Event03\0", "not a crypto-agile TCG2 log"
    (n,) = struct.unpack_from("<I", spec, 24)
    sizes = {}
    for i in range(n):
        alg, dsz = struct.unpack_from("<HH", spec, 28 + 4 * i)
        sizes[alg] = dsz
    off = 32 + size
    out = []
    while off + 12 <= len(log):
        pcr, etype, count = struct.unpack_from("<III", log, off)
        off += 12
        digests = {}
        for _ in range(count):
            (alg,) = struct.unpack_from("<H", log, off)
            off += 2
            digests[ALG_NAMES.get(alg, f"alg{alg:#x}")] = log[off:off + sizes[alg]].hex()
            off += sizes[alg]
        (esz,) = struct.unpack_from("<I", log, off)
        off += 4
        out.append(LogEvent(pcr, EVENT_TYPES.get(etype, f"{etype:#x}"), digests, log[off:off + esz]))
        off += esz
    return out


def from_serial(serial: str) -> bytes | None:
    """The event log the boot probe printed as base64 between its EVENTLOG markers, or None."""
    lines = [ln.strip() for ln in serial.splitlines()]
    try:
        start = lines.index("TEEFORM-PROBE-EVENTLOG-BEGIN")
        end = lines.index("TEEFORM-PROBE-EVENTLOG-END", start)
    except ValueError:
        return None
    return base64.b64decode("".join(lines[start + 1:end]))
