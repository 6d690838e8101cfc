"""systemd-stub TPM PCR 11 and PCR 12 predictions (pure functions) and stub version detection.

Public API::

    BANKS = ("sha1", "sha256", "sha384", "sha512")
    SectionDigests(size, digests)            # digests of one section's bytes, per bank
    MeasuredSection                          # protocol: .size, .digests (SectionDigests, UkiSection)
    Event(pcr, event_type, description, digest)
    Prediction(pcr, bank, value, events, assumptions)
    measured_sections(stub_version) -> tuple[str, ...]
    predict_pcr11(sections, stub_version, bank="sha256", *, phases=()) -> Prediction
    predict_pcr12(cmdline_override, bank="sha256") -> Prediction
    detect_stub_version(path) -> int         # from the stub's/UKI's .sbat (or .sdmagic)
    PCR12_NOTE                               # the caveat text for reports

Facts and their sources (shared/reference/uki-verity.md):

* §0.1, §1.2: for each known section present, in the stub's enum order (not PE order), extend
  H(name + NUL) and then H(section bytes, VirtualSize long); empty sections are skipped, ``.pcrsig``
  is never measured; extend is PCR := H(PCR || H(data)) starting from zeros. Event type EV_IPL.
  systemd 252 ``src/boot/efi/stub.c`` / ``src/fundamental/tpm-pcr.h``; 257 ``src/boot/stub.c``,
  ``src/fundamental/uki.h``.
* §0.2, §1.1: the section set per version: 252 linux osrel cmdline initrd splash dtb pcrpkey;
  254 adds uname and sbat (before pcrpkey); 256 adds ucode (after initrd); 257 adds profile,
  dtbauto, hwids (after pcrpkey). 253 has the 252 set (``.uname`` is measured from 254 on);
  255 has the 254 set.
* §1.2 "Userspace phase words": systemd-pcrphase extends H(word) (no NUL) into PCR 11.
* §1.4: PCR 12 - a command-line override (LoadOptions, honoured when Secure Boot is off or the
  UKI has no ``.cmdline``) is measured as UTF-16LE including the 2-byte NUL, one EV_IPL event.

Multi-profile UKIs (257 ``.profile``) are not modelled: a profile group raises an error.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from teeform.errors import TeeformError

BANKS = ("sha1", "sha256", "sha384", "sha512")
EV_IPL = "EV_IPL"

#: (section, first stub version that measures it) in the canonical enum order of systemd 257
#: (``src/fundamental/uki.h``), pcrsig omitted (never measured). uki-verity.md §1.1 table.
_ENUM_ORDER: tuple[tuple[str, int], ...] = (
    (".linux", 252), (".osrel", 252), (".cmdline", 252), (".initrd", 252), (".ucode", 256),
    (".splash", 252), (".dtb", 252), (".uname", 254), (".sbat", 254), (".pcrpkey", 252),
    (".profile", 257), (".dtbauto", 257), (".hwids", 257),
)
MIN_STUB_VERSION = 252
MAX_STUB_VERSION = 257

PCR12_NOTE = (
    "A policy that pins only PCR 11 does not pin the kernel command line: with Secure Boot off (or a UKI "
    "without .cmdline) systemd-stub boots with any command line passed as load options and measures it "
    "into PCR 12 instead (254+ also appends SMBIOS io.systemd.stub.kernel-cmdline-extra there). Also pin "
    "PCR 12 to its expected value (all zeros: nothing measured) or require Secure Boot with an embedded "
    ".cmdline (uki-verity.md §1.4)."
)


class MeasuredSection(Protocol):
    """Anything with a section's content ``size`` (bytes) and ``digests`` (``{bank: lowercase hex}``).

    :class:`SectionDigests` and :class:`image_builder.formats.uki.UkiSection` both qualify, so a
    :meth:`~image_builder.formats.uki.UkiLayout.section_digests` mapping can be predicted directly.
    """

    @property
    def size(self) -> int: ...

    @property
    def digests(self) -> Mapping[str, str]: ...


@dataclass(frozen=True)
class SectionDigests:
    """Digests of one section's content (the VirtualSize bytes the stub measures).

    Attributes:
        size: content length in bytes (0 means "empty": the stub skips it).
        digests: ``{bank: lowercase hex}`` for the banks you will predict (e.g. sha256, sha384).
    """

    size: int
    digests: Mapping[str, str]

    @classmethod
    def of(cls, data: bytes, banks: Sequence[str] = BANKS) -> SectionDigests:
        """Digest ``data`` in every bank of ``banks``."""
        return cls(len(data), {b: hashlib.new(b, data).hexdigest() for b in banks})


@dataclass(frozen=True)
class Event:
    """One measurement event: ``digest`` (lowercase hex) extended into ``pcr``."""

    pcr: int
    event_type: str
    description: str
    digest: str


@dataclass(frozen=True)
class Prediction:
    """A predicted register value and the event log that produces it.

    Attributes:
        pcr: the TPM PCR index (11 or 12).
        bank: hash algorithm (``sha256``...).
        value: the final PCR value, lowercase hex.
        events: the extends in order.
        assumptions: what the value relies on (stub version, which sections, ...).
    """

    pcr: int
    bank: str
    value: str
    events: tuple[Event, ...]
    assumptions: tuple[str, ...] = field(default_factory=tuple)

    def to_json(self) -> dict[str, object]:
        """JSON-ready dict (for manifest ``details``)."""
        return {
            "pcr": self.pcr, "bank": self.bank, "value": self.value,
            "events": [{"pcr": e.pcr, "type": e.event_type, "description": e.description, "digest": e.digest}
                       for e in self.events],
            "assumptions": list(self.assumptions),
        }


def _check_bank(bank: str) -> None:
    if bank not in BANKS:
        raise TeeformError(f"unknown PCR bank {bank!r}", hint=f"use one of {', '.join(BANKS)}")


def extend(value: bytes, digest: bytes, bank: str) -> bytes:
    """TPM2_PCR_Extend: return H(value || digest) in ``bank`` (TPM 2.0 Library Part 1 §17.6.3 / uki-verity.md §1.2)."""
    return hashlib.new(bank, value + digest).digest()


def measured_sections(stub_version: int) -> tuple[str, ...]:
    """The sections systemd-stub ``stub_version`` measures into PCR 11, in measurement order.

    Raises:
        TeeformError: ``stub_version`` outside 252..257 (the versions whose enum was checked).
    """
    if not MIN_STUB_VERSION <= stub_version <= MAX_STUB_VERSION:
        raise TeeformError(
            f"systemd-stub version {stub_version} is not supported for PCR 11 prediction",
            hint=f"teeform knows the measured section lists of stubs {MIN_STUB_VERSION}-{MAX_STUB_VERSION} "
                 "(uki-verity.md §1.1); pass stub_version explicitly if detection picked the wrong one",
        )
    return tuple(name for name, since in _ENUM_ORDER if since <= stub_version)


def predict_pcr11(
    sections: Mapping[str, MeasuredSection | bytes],
    stub_version: int,
    bank: str = "sha256",
    *,
    phases: Sequence[str] = (),
) -> Prediction:
    """Predict PCR 11 after systemd-stub ``stub_version`` ran (and after ``phases`` words, if any).

    Args:
        sections: section name (with the dot, e.g. ``".linux"``) -> the section's exact content
            bytes or its digests (a :class:`MeasuredSection` such as :class:`SectionDigests`, which must hold ``bank``). Sections the stub does
            not know (e.g. ``.sdmagic``, ``.text``) and ``.pcrsig`` are ignored.
        stub_version: systemd version of the stub (252..257), see :func:`detect_stub_version`.
        bank: ``sha1`` | ``sha256`` | ``sha384`` | ``sha512``.
        phases: systemd-pcrphase words extended afterwards (e.g. ``("enter-initrd",)``); empty
            (the default) = the value right after the stub, = ``systemd-measure calculate --phase=``.

    Returns:
        the :class:`Prediction` with one name event and one data event per measured section.

    Raises:
        TeeformError: unknown bank or stub version, a SectionDigests lacking ``bank``, or a
            multi-profile UKI (``.profile`` present; not modelled).
    """
    _check_bank(bank)
    order = measured_sections(stub_version)
    if ".profile" in sections and ".profile" in order:
        raise TeeformError("multi-profile UKIs (.profile section) are not supported by the PCR 11 predictor",
                           field=".profile")
    value = bytes(hashlib.new(bank).digest_size)
    events: list[Event] = []
    present: list[str] = []
    for name in order:
        content = sections.get(name)
        if content is None:
            continue
        if isinstance(content, bytes):
            size = len(content)
            data_digest = hashlib.new(bank, content).digest()
        else:
            size = content.size
            if bank not in content.digests:
                raise TeeformError(f"no {bank} digest given for section {name}", field=name)
            data_digest = bytes.fromhex(content.digests[bank])
        if size == 0:
            continue  # the stub skips empty sections (uki-verity.md §1.2)
        name_digest = hashlib.new(bank, name.encode("ascii") + b"\0").digest()
        value = extend(value, name_digest, bank)
        events.append(Event(11, EV_IPL, f"{name} (section name + NUL)", name_digest.hex()))
        value = extend(value, data_digest, bank)
        events.append(Event(11, EV_IPL, f"{name} (section data, {size} bytes)", data_digest.hex()))
        present.append(name)
    for word in phases:
        d = hashlib.new(bank, word.encode("utf-8")).digest()
        value = extend(value, d, bank)
        events.append(Event(11, "EV_IPL (systemd-pcrphase)", f"phase {word!r}", d.hex()))
    assumptions = (
        f"systemd-stub {stub_version}: measures {' '.join(order)} in this order (uki-verity.md §1.1)",
        f"sections measured: {' '.join(present) or '(none)'}",
        "phases: " + (":".join(phases) if phases else "none (value right after the stub; systemd-measure --phase=)"),
        "single-profile UKI; PCR 11 starts at zeros (nothing else extends PCR 11 before the stub)",
    )
    return Prediction(11, bank, value.hex(), tuple(events), assumptions)


def predict_pcr12(cmdline_override: str | None, bank: str = "sha256") -> Prediction:
    """Predict systemd-stub's PCR 12 for an optional command-line override (load options).

    Args:
        cmdline_override: None when the boot entry passes no load options (OVMF's auto-created
            boot option; measured-boot.md "PCR12 is zero in all runs"); else the exact text the
            boot manager passes. The stub measures the UTF-16LE string plus its 2-byte NUL
            (uki-verity.md §1.4). Strings with control characters, non-ASCII characters or trailing
            spaces are refused because the 252 and 257 stubs sanitise them at different points.
        bank: PCR bank.

    Returns:
        a :class:`Prediction` for PCR 12 (all zeros and no events when ``cmdline_override`` is None).

    Assumes no credentials (``*.cred``), no system/configuration extensions, no PE addons and (254+)
    no SMBIOS ``io.systemd.stub.kernel-cmdline-extra`` string: each of those would add PCR 12 events.

    Raises:
        TeeformError: unknown bank, or an override that the stub would rewrite before measuring.
    """
    _check_bank(bank)
    value = bytes(hashlib.new(bank).digest_size)
    base = (
        "no credentials, sysexts/confexts, PE addons or SMBIOS kernel-cmdline-extra (each would extend PCR 12)",
        "no multi-profile selection (257: a non-zero profile number is measured into PCR 12)",
    )
    if cmdline_override is None:
        return Prediction(12, bank, value.hex(), (), ("no command-line override (no load options)", *base))
    if not cmdline_override or any(not (0x20 <= ord(c) < 0x7F) for c in cmdline_override) \
            or cmdline_override.endswith(" "):
        raise TeeformError(
            "the command-line override must be non-empty printable ASCII without trailing spaces",
            hint="systemd-stub turns control/non-ASCII characters into spaces; teeform refuses to guess",
            field="cmdline_override",
        )
    data = cmdline_override.encode("utf-16-le") + b"\0\0"
    d = hashlib.new(bank, data).digest()
    value = extend(value, d, bank)
    ev = Event(12, EV_IPL, f"kernel command line override {cmdline_override!r} (UTF-16LE + NUL)", d.hex())
    return Prediction(12, bank, value.hex(), (ev,),
                      ("Secure Boot off (or no .cmdline): the override replaces the embedded .cmdline", *base))


#: A systemd major version: 1 to 4 ASCII decimal digits (systemd counts 2xx; 9999 leaves room).
#: ``str.isdigit`` is not used: it accepts "²" and other Unicode digits that ``int`` refuses, and an
#: unbounded run of digits would hit CPython's 4,300-digit ``int`` limit.
_VERSION_RE = re.compile(r"([0-9]{1,4})(?![0-9])")


def _parse_sbat_version(sbat: bytes) -> int | None:
    for line in sbat.rstrip(b"\0").decode("utf-8", "replace").splitlines():
        parts = line.split(",")
        # "systemd,1,The systemd Developers,systemd,252,https://systemd.io/" (uki-verity.md §2, TV-3)
        if len(parts) >= 5 and parts[0] == "systemd" and (m := _VERSION_RE.match(parts[4])):
            return int(m.group(1))
    return None


def _parse_sdmagic_version(magic: bytes) -> int | None:
    # "#### LoaderInfo: systemd-stub 252.39-1~deb12u2 ####"
    text = magic.rstrip(b"\0").decode("ascii", "replace")
    marker = "systemd-stub "
    if marker not in text:
        return None
    words = text.split(marker, 1)[1].split()
    m = _VERSION_RE.match(words[0]) if words else None
    return int(m.group(1)) if m else None


def detect_stub_version(path: os.PathLike[str] | str) -> int:
    """Return the systemd major version of the stub in ``path`` (a stub or a UKI built from one).

    Reads the ``systemd,1,...,systemd,<ver>,...`` line of ``.sbat`` (the stub's own line survives
    ukify's SBAT merge), falling back to ``.sdmagic`` (``#### LoaderInfo: systemd-stub <ver> ####``).

    Raises:
        TeeformError: not a PE file, or neither section names a systemd version.
    """
    from image_builder.formats.pe import read_section_bytes

    sbat = read_section_bytes(path, ".sbat", max_size=1 << 20)
    ver = _parse_sbat_version(sbat) if sbat else None
    if ver is None:
        magic = read_section_bytes(path, ".sdmagic", max_size=1 << 16)
        ver = _parse_sdmagic_version(magic) if magic else None
    if ver is None:
        raise TeeformError(
            "cannot tell the systemd-stub version (no 'systemd,1,...' .sbat line and no .sdmagic)",
            path=path, hint="pass stub_version explicitly",
        )
    return ver
