"""TPM PCR 4 of a UKI booted directly by UEFI firmware: OVMF + vTPM, or the AWS NitroTPM firmware.

Public API::

    FIRMWARE_OVMF, FIRMWARE_AWS_NITRO, FIRMWARE_PROFILES     # "ovmf", "aws-nitro"
    BANKS                                                    # ("sha256", "sha384")
    Pcr4Event(event_type, description, digest)
    Pcr4Prediction(bank, value, firmware, stub_version, secure_boot, kernel_measured, events, assumptions)
    kernel_measured_by_firmware(stub_version, secure_boot) -> bool
    predict_pcr4(uki_authenticode, linux_authenticode, *, bank, stub_version, secure_boot=False,
                 firmware="aws-nitro") -> Pcr4Prediction          # pure: digests in
    predict_pcr4_from_uki(uki, *, stub_version, secure_boot=False, firmware="aws-nitro",
                          banks=BANKS) -> dict[str, Pcr4Prediction]   # pure: UKI bytes in
    kernel_authenticode_fh(fh, linux, algorithms=BANKS, *, path="<UKI>") -> dict[str, str]
                                                    # event 4's digest, from an open UKI

Digests and values are lowercase hex; a PCR starts at all zeros and ``extend`` is
``PCR := H(PCR || digest)`` in the bank's hash (TPM 2.0 Library Part 1 §17.6.3 "PCR Extend";
AWS ``nitro-tpm-pcr-compute`` ``pcr.rs`` ``Pcr::extend``). PCR 4 is 32 bytes in the sha256 bank, 48
in the sha384 bank (the bank KMS's ``kms:RecipientAttestation:NitroTPMPCR4`` compares, 96 hex).

The event sequence (TCG PC Client Platform Firmware Profile, §3.3.4.5 "PCR[4] - Boot Manager Code
and Boot Attempts"), the same for both firmware profiles:

1. ``EV_EFI_ACTION`` "Calling EFI Application from Boot Option": digest of the 40 ASCII bytes, no NUL.
2. ``EV_SEPARATOR``: digest of the 4 zero bytes (the separator's event data is ``00000000`` on UEFI
   systems; PFP §3.3.2 / §10.4.1 "EV_SEPARATOR"); uki-verity.md §6 lists its SHA-384.
3. ``EV_EFI_BOOT_SERVICES_APPLICATION``: the Authenticode (PE image hash, Microsoft "Windows
   Authenticode Portable Executable Signature Format"; uki-verity.md §4) of the UKI, which the
   firmware's boot manager loads from the ESP (``EFI/BOOT/BOOTX64.EFI``).
4. ``EV_EFI_BOOT_SERVICES_APPLICATION``: the Authenticode of the kernel in ``.linux``, only when
   systemd-stub loads it through ``BS->LoadImage()`` *and* lets the firmware's security handler run
   (:func:`kernel_measured_by_firmware`):

   * stub 252..257 ``LoadImage()``s the embedded kernel (systemd PR #24777 "stub: Use
     LoadImage/StartImage", in v252). With Secure Boot on it first replaces the firmware's
     Security/Security2 FileAuthentication hooks (``install_security_override``) and the override
     returns success for the embedded buffer without calling the firmware's handler, so the
     firmware measures nothing (uki-verity.md §1.5). With Secure Boot off there is no override and
     EDK2's ``DxeTpm2MeasureBootLib`` measures the kernel as a second application.
   * stub >= 258 relocates and calls the inner kernel itself (systemd PR #37372 "stub: call inner
     kernel directly", merged 2025-05 for v258): no ``LoadImage()``, no firmware event.
   * the AWS tool encodes exactly this rule (aws/NitroTPM-Tools@c598a10
     ``nitro-tpm-pcr-compute/src/main.rs`` ``pcr4``: skip when ``stub >= 258 || stub >= 252 && SB``).

   The kernel's Authenticode covers the ``.linux`` bytes present in the file
   (``min(VirtualSize, SizeOfRawData)`` at ``PointerToRawData``): the buffer the stub passes, and
   what the AWS tool hashes (``object`` crate section data).

Firmware profiles (``firmware``): the events are identical; what differs is the evidence.

* ``"ovmf"``: EDK2 OVMF (Debian ovmf 2022.11) + swtpm under QEMU, booted with ``-nodefaults`` so the
  disk is the first and only boot option (measured-boot.md "Pitfalls": otherwise a failed DVD boot
  option adds "Returning from EFI Application from Boot Option" and a second "Calling" event).
  **Proven by a real boot**: ``tests/test_boot.py`` reads PCR 4 of both banks from the vTPM
  and compares it with this prediction (events 1-4, stubs 252 and 254, Secure Boot off).
* ``"aws-nitro"``: the AWS NitroTPM firmware, following AWS's published algorithm
  (``nitro-tpm-pcr-compute``, clouds.md §1.2) - the same 1-4. **Not proven by a boot here**: AWS's
  firmware is not available offline (clouds.md §8 item 2 is the live check).

Secure Boot on changes only event 4 here; it also changes PCR 7 (not predicted: it depends on the
platform's PK/KEK/db/dbx, clouds.md §1.2) and the UKI must then be signed - the Authenticode hash
excludes the signature (its certificate table), so event 3 is unchanged by signing.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, BinaryIO

from image_builder.measure.tdx import EFI_CALLING_EFI_APPLICATION, SEPARATOR_EVENT_DATA
from teeform.errors import TeeformError

if TYPE_CHECKING:
    from image_builder.formats.pe import PeSection

FIRMWARE_OVMF = "ovmf"
FIRMWARE_AWS_NITRO = "aws-nitro"
FIRMWARE_PROFILES: tuple[str, ...] = (FIRMWARE_OVMF, FIRMWARE_AWS_NITRO)
#: PCR banks predicted (the sha1 bank is not: NitroTPM documents and KMS use SHA-384).
BANKS: tuple[str, ...] = ("sha256", "sha384")

#: PFP §3.3.4.5: the EV_EFI_ACTION string, hashed without a terminating NUL (EDK2 ``TcgMeasureAction``
#: uses ``AsciiStrLen``; nitro-tpm-pcr-compute hashes the same byte string). The same event opens RTMR1.
EV_EFI_ACTION_CALLING = EFI_CALLING_EFI_APPLICATION
#: Event data of EV_SEPARATOR on UEFI platforms: a UINT32 zero (PFP §10.4.1; nitro-tpm-pcr-compute
#: ``[0u8; 4]``); :data:`image_builder.measure.tdx.SEPARATOR_EVENT_DATA`.
#: First systemd-stub version that calls the inner kernel itself (systemd PR #37372).
STUB_DIRECT_KERNEL_CALL = 258
#: First systemd-stub version that LoadImage()s the kernel with its Secure Boot override (systemd PR #24777).
STUB_LOADIMAGE_OVERRIDE = 252

_SOURCES = {
    FIRMWARE_OVMF: "EDK2 OVMF Tcg2Dxe OnReadyToBoot + DxeTpm2MeasureBootLib (measured-boot.md 'PCR4 prediction "
                   "matched'); proven by tests/test_boot.py (QEMU + OVMF 2022.11 + swtpm)",
    FIRMWARE_AWS_NITRO: "AWS published algorithm: aws/NitroTPM-Tools@c598a10 nitro-tpm-pcr-compute/src/main.rs pcr4 "
                        "(clouds.md §1.2); UNVERIFIED against a NitroTPM event log (clouds.md §8 item 2)",
}


@dataclass(frozen=True)
class Pcr4Event:
    """One extend into PCR 4: ``digest`` (lowercase hex, the bank's size) logged as ``event_type``."""

    event_type: str
    description: str
    digest: str


@dataclass(frozen=True)
class Pcr4Prediction:
    """A predicted PCR 4 value and the event log that produces it.

    Attributes:
        bank: ``sha256`` or ``sha384``.
        value: the PCR after the events, lowercase hex (64 or 96 digits).
        firmware: the firmware profile (:data:`FIRMWARE_PROFILES`).
        stub_version: the systemd-stub version the kernel rule was evaluated for.
        secure_boot: the UEFI Secure Boot state assumed.
        kernel_measured: whether the ``.linux`` kernel is a second application event.
        events: the extends in order.
        assumptions: what the value relies on, and its source.
    """

    bank: str
    value: str
    firmware: str
    stub_version: int
    secure_boot: bool
    kernel_measured: bool
    events: tuple[Pcr4Event, ...]
    assumptions: tuple[str, ...] = field(default_factory=tuple)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict (for manifest ``details``)."""
        return {
            "pcr": 4, "bank": self.bank, "value": self.value, "firmware": self.firmware,
            "stub_version": self.stub_version, "secure_boot": self.secure_boot,
            "kernel_measured": self.kernel_measured,
            "events": [{"pcr": 4, "type": e.event_type, "description": e.description, "digest": e.digest}
                       for e in self.events],
            "assumptions": list(self.assumptions),
        }


def kernel_measured_by_firmware(stub_version: int, secure_boot: bool) -> bool:
    """Whether the firmware measures the UKI's ``.linux`` kernel into PCR 4 (module docstring, event 4).

    False for stubs >= 258 (they call the kernel without ``LoadImage()``, systemd PR #37372) and for
    stubs >= 252 with Secure Boot on (their security override skips the firmware's measurement,
    systemd PR #24777); True otherwise. Same rule as aws/NitroTPM-Tools ``nitro-tpm-pcr-compute``.
    """
    return not (stub_version >= STUB_DIRECT_KERNEL_CALL or (stub_version >= STUB_LOADIMAGE_OVERRIDE and secure_boot))


def _hex(name: str, value: str, bank: str) -> str:
    v = value.lower()
    n = 2 * hashlib.new(bank).digest_size
    if len(v) != n or any(c not in "0123456789abcdef" for c in v):
        raise TeeformError(f"{name} must be {n} hex digits ({bank})", field=name)
    return v


def predict_pcr4(
    uki_authenticode: str,
    linux_authenticode: str | None,
    *,
    bank: str,
    stub_version: int,
    secure_boot: bool = False,
    firmware: str = FIRMWARE_AWS_NITRO,
) -> Pcr4Prediction:
    """Predict PCR 4 in ``bank`` from Authenticode digests already taken (pure).

    Args:
        uki_authenticode: Authenticode digest of the whole UKI in ``bank`` (hex).
        linux_authenticode: Authenticode digest of the kernel in ``.linux`` in ``bank`` (hex), or
            None. Needed only when :func:`kernel_measured_by_firmware` is true; ignored otherwise.
        bank: ``sha256`` or ``sha384``.
        stub_version: the UKI's systemd-stub version (decides event 4).
        secure_boot: UEFI Secure Boot on (decides event 4 for stubs >= 252).
        firmware: :data:`FIRMWARE_OVMF` or :data:`FIRMWARE_AWS_NITRO` (same events; different evidence).

    Returns:
        the :class:`Pcr4Prediction`.

    Raises:
        TeeformError: unknown bank or firmware profile, a digest of the wrong length, or no kernel
            digest where the firmware measures the kernel (field ``linux_authenticode``).
    """
    if bank not in BANKS:
        raise TeeformError(f"unknown PCR bank {bank!r}", field="bank", hint=f"use one of {', '.join(BANKS)}")
    if firmware not in FIRMWARE_PROFILES:
        raise TeeformError(f"unknown firmware profile {firmware!r}", field="firmware",
                           hint=f"use one of {', '.join(FIRMWARE_PROFILES)}")
    uki = _hex("uki_authenticode", uki_authenticode, bank)
    measured = kernel_measured_by_firmware(stub_version, secure_boot)
    h = lambda b: hashlib.new(bank, b).hexdigest()  # noqa: E731
    events = [
        Pcr4Event("EV_EFI_ACTION", EV_EFI_ACTION_CALLING.decode(), h(EV_EFI_ACTION_CALLING)),
        Pcr4Event("EV_SEPARATOR", "separator (00000000)", h(SEPARATOR_EVENT_DATA)),
        Pcr4Event("EV_EFI_BOOT_SERVICES_APPLICATION", "UKI (Authenticode)", uki),
    ]
    if measured:
        if linux_authenticode is None:
            raise TeeformError(
                f"systemd-stub {stub_version} with Secure Boot {'on' if secure_boot else 'off'} LoadImage()s the kernel, "
                "so the firmware measures it into PCR 4, but no Authenticode digest of .linux was given "
                "(is .linux a PE image?)", field="linux_authenticode")
        events.append(Pcr4Event("EV_EFI_BOOT_SERVICES_APPLICATION", ".linux kernel (Authenticode)",
                                _hex("linux_authenticode", linux_authenticode, bank)))
    value = bytes(hashlib.new(bank).digest_size)
    for e in events:
        value = hashlib.new(bank, value + bytes.fromhex(e.digest)).digest()
    why = (f"the .linux kernel is measured: systemd-stub {stub_version} LoadImage()s it and Secure Boot is off"
           if measured else
           f"the .linux kernel is not measured: systemd-stub {stub_version} "
           + ("calls it without LoadImage() (systemd PR #37372, v258)" if stub_version >= STUB_DIRECT_KERNEL_CALL
              else "installs its Secure Boot security override (systemd PR #24777)"))
    assumptions = (
        "the firmware boots the UKI as the first boot option on the first attempt (no failed boot option, "
        "no shim or systemd-boot in between)" + (" - qemu -nodefaults" if firmware == FIRMWARE_OVMF else ""),
        f"Secure Boot {'on' if secure_boot else 'off'}; {why}",
        "no other PCR 4 events (no option ROM applications, no second boot attempt)",
        _SOURCES[firmware],
    )
    return Pcr4Prediction(bank, value.hex(), firmware, stub_version, secure_boot, measured, tuple(events), assumptions)


class _Slice:
    """Read-only, seekable view of ``[start, start+length)`` of a file (for Authenticode of ``.linux``).

    Offsets are relative to ``start``; reads past ``length`` return fewer bytes (b"" at the end), as a
    file would. Implements the ``seek``/``tell``/``read`` subset of :class:`typing.BinaryIO` that
    :func:`image_builder.measure.authenticode.authenticode_digest_fh` uses.
    """

    def __init__(self, fh: BinaryIO, start: int, length: int) -> None:
        self._fh, self._start, self._len, self._pos = fh, start, length, 0

    def seek(self, off: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._pos, os.SEEK_END: self._len}[whence]
        self._pos = max(0, base + off)
        return self._pos

    def tell(self) -> int:
        return self._pos

    def read(self, n: int = -1) -> bytes:
        avail = max(0, self._len - self._pos)
        n = avail if n < 0 else min(n, avail)
        self._fh.seek(self._start + self._pos)
        out = self._fh.read(n)
        self._pos += len(out)
        return out


def kernel_authenticode_fh(fh: BinaryIO, linux: PeSection, algorithms: Sequence[str] = BANKS, *,
                           path: os.PathLike[str] | str = "<UKI>") -> dict[str, str]:
    """Authenticode digest of the kernel in the UKI's ``.linux`` section: event 4's digest.

    The digest covers the section's file data, :attr:`~image_builder.formats.pe.PeSection.data_size`
    bytes (``min(VirtualSize, SizeOfRawData)``) at ``PointerToRawData``: the buffer systemd-stub
    passes to ``LoadImage()`` (module docstring, event 4). It is read through a window of ``fh``, so
    the kernel is not copied. Reads only ``fh`` (no other I/O).

    Args:
        fh: the UKI, open for seekable binary reads (a file or :class:`io.BytesIO`).
        linux: its ``.linux`` section header
            (:func:`image_builder.formats.pe.read_pe_headers_fh` ``(fh).section(".linux")``).
        algorithms: digest algorithms (the names :mod:`image_builder.measure.authenticode` takes).
        path: name of the UKI in error messages; the kernel is named ``<path>:.linux``.

    Returns:
        ``{algorithm: lowercase hex}``.

    Raises:
        TeeformError: the section is not a PE image (or its data lies outside the section).
    """
    from image_builder.measure.authenticode import authenticode_digest_fh

    view = _Slice(fh, linux.pointer_to_raw_data, linux.data_size)
    # _Slice implements the seek/tell/read subset authenticode_digest_fh uses, not all of BinaryIO.
    return authenticode_digest_fh(view, tuple(algorithms), path=f"{os.fspath(path)}:.linux")  # type: ignore[arg-type]


def predict_pcr4_from_uki(
    uki: bytes,
    *,
    stub_version: int,
    secure_boot: bool = False,
    firmware: str = FIRMWARE_AWS_NITRO,
    banks: Sequence[str] = BANKS,
    source: os.PathLike[str] | str = "<UKI>",
) -> dict[str, Pcr4Prediction]:
    """Predict PCR 4 of the UKI ``uki`` (its bytes) in every bank of ``banks`` (pure: no I/O).

    Takes the Authenticode digest of the UKI and, where the firmware measures it, of the kernel in
    its ``.linux`` section (:func:`kernel_authenticode_fh`: ``.linux`` = its
    ``min(VirtualSize, SizeOfRawData)`` file bytes), then :func:`predict_pcr4`.

    Args:
        uki: the UKI file's bytes.
        stub_version, secure_boot, firmware: as :func:`predict_pcr4`.
        banks: subset of :data:`BANKS`.
        source: name of the UKI in error messages.

    Returns:
        ``{bank: Pcr4Prediction}``.

    Raises:
        TeeformError: not a PE image; no ``.linux`` section, or one that is not a PE image, where the
            firmware measures the kernel; anything :func:`predict_pcr4` raises.
    """
    from image_builder.formats.pe import read_pe_headers_fh
    from image_builder.measure.authenticode import authenticode_digest_fh

    fh = io.BytesIO(uki)
    uki_auth = authenticode_digest_fh(fh, tuple(banks), path=source)
    linux_auth: dict[str, str] | None = None
    if kernel_measured_by_firmware(stub_version, secure_boot):
        sec = read_pe_headers_fh(fh, path=source).section(".linux")
        if sec is None:
            raise TeeformError("the UKI has no .linux section", path=source, field=".linux")
        linux_auth = kernel_authenticode_fh(fh, sec, banks, path=source)
    return {b: predict_pcr4(uki_auth[b], None if linux_auth is None else linux_auth[b], bank=b,
                            stub_version=stub_version, secure_boot=secure_boot, firmware=firmware)
            for b in banks}


__all__ = ["FIRMWARE_OVMF", "FIRMWARE_AWS_NITRO", "FIRMWARE_PROFILES", "BANKS", "EV_EFI_ACTION_CALLING",
           "SEPARATOR_EVENT_DATA", "Pcr4Event", "Pcr4Prediction", "kernel_measured_by_firmware", "predict_pcr4",
           "predict_pcr4_from_uki", "kernel_authenticode_fh"]
