"""Intel TDX runtime measurement registers (RTMR1, RTMR2) that depend only on the image (TPM PCR 4,
whose events RTMR1 shares, is :mod:`image_builder.measure.pcr4`).

Public API::

    RtmrEvent(register, pcr, event_type, description, digest)
    RtmrPrediction(register, value, events, assumptions)          # .to_json()
    rtmr_extend(value: bytes, digest: bytes) -> bytes             # SHA-384(value || digest)
    predict_rtmr1(uki_authenticode_sha384, *, linux_authenticode_sha384=None,
                  gpt_event_data=None, secure_boot=False) -> RtmrPrediction
    predict_rtmr2(sections, stub_version) -> RtmrPrediction | None     # None for stubs < 256
    rtmr2_not_measured_note(stub_version) -> str
    gpt_event_data(disk, *, sector_size=512) -> bytes              # UEFI_GPT_DATA of a disk image (I/O)

Sources:

* RTMRs are SHA-384, start at zero, RTMR := SHA-384(RTMR || digest48) (uki-verity.md §6).
* PCR -> CC MR index -> register mapping (UEFI 2.10 §38.4.1; EDK2 ``MdePkg/Library/TdxLib``):
  PCR 2-6 -> MR 2 -> RTMR1; PCR 8-15 -> MR 3 -> RTMR2.
* RTMR1 event order (tianocore/edk2 ``OvmfPkg/Tcg/TdTcg2Dxe/TdTcg2Dxe.c`` at commit 10701fe97ade,
  ``OnReadyToBoot`` (first boot attempt) and ``OnExitBootServices``; ``SecurityPkg/Library/
  DxeTpm2MeasureBootLib/DxeTpm2MeasureBootLib.c`` ``Tcg2MeasureGptTable``/``Tcg2MeasurePeImage``,
  which use the CC protocol when present):
    1. EV_EFI_ACTION "Calling EFI Application from Boot Option" (PCR 4 -> RTMR1)
    2. EV_SEPARATOR, 4 zero bytes, extended to RTMR1 only (``MeasureSeparatorEvent(CC_MR_INDEX_2_RTMR1)``)
    3. EV_EFI_GPT_EVENT (PCR 5): UEFI_GPT_DATA of the boot disk, once, before the first image from it
    4. EV_EFI_BOOT_SERVICES_APPLICATION: Authenticode SHA-384 of the UKI (PCR 4)
    5. Secure Boot off only: Authenticode SHA-384 of the kernel in ``.linux`` - systemd-stub
       ``LoadImage()``s it; with Secure Boot on the stub's security override skips the firmware
       measurement (uki-verity.md §1.5; the TPM analogue, PCR 4, was confirmed in measured-boot.md)
    6. EV_EFI_ACTION "Exit Boot Services Invocation" (PCR 5)
    7. EV_EFI_ACTION "Exit Boot Services Returned with Success" (PCR 5)
  EV_EFI_ACTION digests are over the ASCII string without NUL (``TdMeasureAction``: AsciiStrLen).
* RTMR2: systemd-stub measures through EFI_CC_MEASUREMENT_PROTOCOL only from systemd 256 on
  (uki-verity.md §0.3, §1.2); 252 and 254 stubs put nothing into RTMR2.

VERIFICATION STATUS: no TDX hardware or TDX firmware log was available. The event constants and
the extend arithmetic are checked against uki-verity.md §6 and hashlib; the event *sequence* is
derived from the EDK2 source above and is UNVERIFIED against a real TD's CCEL. Every prediction
carries that in ``assumptions``.
"""

from __future__ import annotations

import hashlib
import os
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from teeform.errors import TeeformError

EFI_CALLING_EFI_APPLICATION = b"Calling EFI Application from Boot Option"
EFI_EXIT_BOOT_SERVICES_INVOCATION = b"Exit Boot Services Invocation"
EFI_EXIT_BOOT_SERVICES_SUCCEEDED = b"Exit Boot Services Returned with Success"
SEPARATOR_EVENT_DATA = b"\0\0\0\0"
GPT_HEADER_SIZE = 92  # sizeof(EFI_PARTITION_TABLE_HEADER), UEFI 2.10 §5.3.2 Table 5.5

UNVERIFIED = ("UNVERIFIED: event sequence derived from EDK2 source (TdTcg2Dxe.c, DxeTpm2MeasureBootLib.c); "
              "not yet checked against a real TD event log (CCEL)")


@dataclass(frozen=True)
class RtmrEvent:
    """One extend: ``digest`` (lowercase hex) into ``register`` (``RTMR1`` or ``PCR4``...), logged
    by the firmware for TPM PCR ``pcr`` with ``event_type``."""

    register: str
    pcr: int
    event_type: str
    description: str
    digest: str


@dataclass(frozen=True)
class RtmrPrediction:
    """A predicted register value (lowercase hex), its events and its assumptions."""

    register: str
    value: str
    events: tuple[RtmrEvent, ...]
    assumptions: tuple[str, ...] = field(default_factory=tuple)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict (for manifest ``details``)."""
        return {
            "register": self.register, "value": self.value,
            "events": [{"pcr": e.pcr, "type": e.event_type, "description": e.description, "digest": e.digest}
                       for e in self.events],
            "assumptions": list(self.assumptions),
        }


def rtmr_extend(value: bytes, digest: bytes) -> bytes:
    """TDG.MR.RTMR.EXTEND: return SHA-384(value || digest); both 48 bytes (uki-verity.md §6)."""
    if len(value) != 48 or len(digest) != 48:
        raise TeeformError("RTMR values and digests are 48 bytes (SHA-384)")
    return hashlib.sha384(value + digest).digest()


def _chain(register: str, events: list[RtmrEvent], bank: str) -> str:
    """Replay ``events`` into a zeroed register of ``bank``: the same H(value || digest) extend as a TPM PCR
    (:func:`image_builder.measure.pcr11.extend`), which is also TDG.MR.RTMR.EXTEND for the sha384 bank."""
    from image_builder.measure.pcr11 import extend

    value = bytes(hashlib.new(bank).digest_size)
    for e in events:
        value = extend(value, bytes.fromhex(e.digest), bank)
    return value.hex()


def _hex48(name: str, value: str) -> str:
    v = value.lower()
    if len(v) != 96 or any(c not in "0123456789abcdef" for c in v):
        raise TeeformError(f"{name} must be 96 hex digits (SHA-384)", field=name)
    return v


def predict_rtmr1(
    uki_authenticode_sha384: str,
    *,
    linux_authenticode_sha384: str | None = None,
    gpt_event_data: bytes | None = None,
    secure_boot: bool = False,
) -> RtmrPrediction:
    """Predict RTMR1 of a TD that boots the UKI from its disk via OVMF's boot manager.

    Args:
        uki_authenticode_sha384: Authenticode SHA-384 of the UKI file (hex).
        linux_authenticode_sha384: Authenticode SHA-384 of the kernel in ``.linux`` (hex); give it
            when Secure Boot is off (the firmware then measures the kernel too); ignored (must be
            None) when ``secure_boot`` is true.
        gpt_event_data: UEFI_GPT_DATA of the boot disk (:func:`gpt_event_data`); None = no GPT event.
        secure_boot: Secure Boot state (recorded; with it on the kernel is not measured separately).

    Returns:
        the :class:`RtmrPrediction` (see the module docstring for the event list and its status).

    Raises:
        TeeformError: malformed digests, or a kernel digest together with ``secure_boot``.
    """
    uki = _hex48("uki_authenticode_sha384", uki_authenticode_sha384)
    if secure_boot and linux_authenticode_sha384 is not None:
        raise TeeformError("with Secure Boot on, the kernel inside .linux is not measured separately",
                           field="linux_authenticode_sha384")
    sha = lambda b: hashlib.sha384(b).hexdigest()  # noqa: E731
    ev = [
        RtmrEvent("RTMR1", 4, "EV_EFI_ACTION", EFI_CALLING_EFI_APPLICATION.decode(), sha(EFI_CALLING_EFI_APPLICATION)),
        RtmrEvent("RTMR1", 4, "EV_SEPARATOR", "separator (00000000)", sha(SEPARATOR_EVENT_DATA)),
    ]
    if gpt_event_data is not None:
        ev.append(RtmrEvent("RTMR1", 5, "EV_EFI_GPT_EVENT", f"UEFI_GPT_DATA ({len(gpt_event_data)} bytes)",
                            sha(gpt_event_data)))
    ev.append(RtmrEvent("RTMR1", 4, "EV_EFI_BOOT_SERVICES_APPLICATION", "UKI (Authenticode SHA-384)", uki))
    if linux_authenticode_sha384 is not None:
        ev.append(RtmrEvent("RTMR1", 4, "EV_EFI_BOOT_SERVICES_APPLICATION", ".linux kernel (Authenticode SHA-384)",
                            _hex48("linux_authenticode_sha384", linux_authenticode_sha384)))
    ev += [
        RtmrEvent("RTMR1", 5, "EV_EFI_ACTION", EFI_EXIT_BOOT_SERVICES_INVOCATION.decode(),
                  sha(EFI_EXIT_BOOT_SERVICES_INVOCATION)),
        RtmrEvent("RTMR1", 5, "EV_EFI_ACTION", EFI_EXIT_BOOT_SERVICES_SUCCEEDED.decode(),
                  sha(EFI_EXIT_BOOT_SERVICES_SUCCEEDED)),
    ]
    assumptions = (
        "TDVF (OVMF with TDX) boots the UKI from the disk's first boot option on the first attempt "
        "(no failed boot option before it, no shim/systemd-boot in between)",
        f"Secure Boot {'on: the kernel in .linux is not measured separately' if secure_boot else 'off'}"
        + ("" if secure_boot else (": the kernel in .linux is measured as a second application"
                                   if linux_authenticode_sha384 else ": no kernel digest given, kernel event omitted")),
        "GPT event included" if gpt_event_data is not None else
        "no GPT event (UKI not loaded from a GPT disk, or disk not known yet: the disk image's RTMR1 differs)",
        "no other PCR 2-6 events after ReadyToBoot (no option ROMs/drivers loaded late)",
        UNVERIFIED,
    )
    return RtmrPrediction("RTMR1", _chain("RTMR1", ev, "sha384"), tuple(ev), assumptions)


def rtmr2_not_measured_note(stub_version: int) -> str:
    """The text recorded instead of an RTMR2 value for stubs older than 256."""
    return (f"RTMR2 not predicted: systemd-stub {stub_version} measures only through TCG2 (TPM), not "
            "EFI_CC_MEASUREMENT_PROTOCOL (added in systemd 256), so on a TD without vTPM its PCR 11/12/13 events "
            "are not recorded anywhere; RTMR2 then holds only what the kernel measures (Debian 6.1: nothing) "
            "(uki-verity.md §0.3, §6)")


def predict_rtmr2(sections: Mapping[str, Any], stub_version: int) -> RtmrPrediction | None:
    """RTMR2 from systemd-stub >= 256 (its PCR 11 section events in SHA-384); None for older stubs.

    Args:
        sections: as for :func:`image_builder.measure.pcr11.predict_pcr11` (SectionDigests must hold sha384).
        stub_version: systemd-stub version.

    The model assumes nothing else extends PCR 8-15 before or between the stub's events (no PCR 12
    override/credentials, a kernel that does not use the CC protocol for PCR 9). UNVERIFIED.
    """
    if stub_version < 256:
        return None
    from image_builder.measure.pcr11 import predict_pcr11

    p = predict_pcr11(sections, stub_version, "sha384")
    ev = tuple(RtmrEvent("RTMR2", e.pcr, e.event_type, e.description, e.digest) for e in p.events)
    assumptions = (
        f"systemd-stub {stub_version} extends its PCR 11 events into RTMR2 via EFI_CC_MEASUREMENT_PROTOCOL",
        "no other PCR 8-15 events (no PCR 12 command line/credentials/addons; kernel EFI stub without CC fallback)",
        "UNVERIFIED: no >= 256 stub and no TD event log were available",
    )
    return RtmrPrediction("RTMR2", _chain("RTMR2", list(ev), "sha384"), ev, assumptions)


def gpt_event_data(disk: os.PathLike[str] | str, *, sector_size: int = 512) -> bytes:
    """Return the UEFI_GPT_DATA EDK2 measures for ``disk`` (a raw disk image).

    Layout (EDK2 ``Tcg2MeasureGptTable``; TCG PC Client PFP ``UEFI_GPT_DATA``, packed): the
    92-byte primary GPT header (LBA 1), the number of partitions as UINT64 LE, then every partition
    entry whose type GUID is not zero, in table order, SizeOfPartitionEntry bytes each.

    Raises:
        TeeformError: no ``EFI PART`` signature at LBA 1, or a truncated entry array.
    """
    try:
        with open(disk, "rb") as fh:
            fh.seek(sector_size)
            header = fh.read(sector_size)
            if header[:8] != b"EFI PART":
                raise TeeformError("no GPT header ('EFI PART') at LBA 1", path=disk)
            (entry_lba,) = struct.unpack_from("<Q", header, 72)
            count, entry_size = struct.unpack_from("<II", header, 80)
            if entry_size < 128 or count > 1 << 16:
                raise TeeformError("implausible GPT partition entry array", path=disk)
            fh.seek(entry_lba * sector_size)
            array = fh.read(count * entry_size)
    except OSError as exc:
        raise TeeformError(f"cannot read: {exc.strerror}", path=disk) from exc
    if len(array) != count * entry_size:
        raise TeeformError("GPT partition entry array is truncated", path=disk)
    entries = [array[i * entry_size:(i + 1) * entry_size] for i in range(count)]
    used = [e for e in entries if any(e[:16])]
    return header[:GPT_HEADER_SIZE] + struct.pack("<Q", len(used)) + b"".join(used)
