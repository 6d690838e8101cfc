"""Verify a NitroTPM attestation document (an EC2 instance's vTPM PCRs) against vm-image manifests.

Format (clouds.md §1.2; AWS EC2 User Guide "Validate a NitroTPM Attestation Document",
https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/nitrotpm-attestation-document-validate.html): the
same COSE_Sign1 (ES384) and CBOR payload as a Nitro Enclaves document (eif-nitro.md §4.2-§4.3), signed
by the Nitro hypervisor and chained to the same AWS Nitro root, except that the PCRs are in
``nitrotpm_pcrs`` (``{index: 48-byte SHA-384 PCR}``, PCR 0-15, 16 and 23). Parsing is
:func:`teeform.nitro.attestation.parse_attestation_document` (``doc.is_nitrotpm``); the signature,
certificate chain, validity time and nonce checks are the enclave ones of :mod:`teeform.nitro.verify`.

The PCR check (one measurement set per allowed manifest, **all PCRs of one set together**, never a
mix of two manifests: :func:`teeform.nitro.verify.check_pcrs`) compares:

======= ===================== ===============================================================
PCR     manifest measurement  what it pins
======= ===================== ===============================================================
PCR4    ``pcr4_sha384``       **our image**: the UKI's Authenticode, and the kernel's where the
                              firmware measures it (image_builder/measure/pcr4.py, profile
                              ``aws-nitro``); the UKI's ``.cmdline`` carries the dm-verity root hash
PCR12   ``pcr12_sha384``      **our image's boot**: all zeros = systemd-stub measured no command
                              line override, credentials or add-ons (uki-verity.md §1.4); required
                              with Secure Boot off (clouds.md §1.1, GHSA-xrv8-2pf5-f3q7)
PCR11   ``pcr11_sha384``      (optional) **our image**: the UKI sections systemd-stub measured
======= ===================== ===============================================================

PCR 4 and 12 are always compared (:data:`DEFAULT_PCRS`); PCR 11 only when asked (``--nitrotpm-pcrs
4,11,12``). PCR 7 (Secure Boot policy) is not predicted: with Secure Boot on it depends on the
platform's PK/KEK/db/dbx, and with it off it holds only the platform's (empty) variables, nothing of
our image (docs/nitrotpm.md). The document's signature proves the values come from **the platform**
(the Nitro hypervisor's NitroTPM), not from the guest.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterable, Sequence
from pathlib import Path

from teeform.errors import TeeformError
from teeform.nitro.attestation import AttestationDocument
from teeform.nitro.verify import (
    FAIL,
    PASS,
    AllowedMeasurements,
    CheckResult,
    Root,
    VerificationReport,
    allowed_from_kind,
    verify_document,
)

#: NitroTPM PCR index -> the vm-image manifest measurement it is compared with (SHA-384 bank: the
#: document's digest is always "SHA384"; teeform.measurements has the names and lengths).
NITROTPM_MEASUREMENTS: dict[int, str] = {4: "pcr4_sha384", 11: "pcr11_sha384", 12: "pcr12_sha384"}
#: PCRs always compared: PCR 4 (the image) and PCR 12 (no command-line override), AWS's "standard
#: boot" pair (clouds.md §1.1: "Use PCR4 and PCR12 measurements for standard boot").
DEFAULT_PCRS: tuple[int, ...] = (4, 12)
#: Row name (``"PCR4"``) -> document PCR index, for every PCR this module can compare.
NITROTPM_PCR_INDEX: dict[str, int] = {f"PCR{i}": i for i in sorted(NITROTPM_MEASUREMENTS)}

#: What the gate pins, for the report's notes.
GATE_NOTE = ("NitroTPM: PCR4 (and PCR11) pin our image (UKI + kernel Authenticode; the UKI's .cmdline carries the "
             "dm-verity root hash), PCR12 all zeros pins that no command line override was measured; the "
             "signature pins the platform (the Nitro hypervisor's NitroTPM)")


def parse_pcr_list(text: str | None) -> tuple[int, ...]:
    """Parse ``--nitrotpm-pcrs`` (``"4,12"``, ``"4,11,12"``); None = :data:`DEFAULT_PCRS`.

    Returns:
        the sorted PCR indexes.

    Raises:
        TeeformError (field ``--nitrotpm-pcrs``): an index teeform does not predict, or PCR 4 or 12 left out.
    """
    if text is None:
        return DEFAULT_PCRS
    try:
        pcrs = sorted({int(t.strip().upper().removeprefix("PCR")) for t in text.split(",") if t.strip()})
    except ValueError:
        raise TeeformError(f"must be a comma-separated list of PCR numbers, got {text!r}", field="--nitrotpm-pcrs",
                           hint="e.g. --nitrotpm-pcrs 4,12 or 4,11,12") from None
    unknown = [p for p in pcrs if p not in NITROTPM_MEASUREMENTS]
    if unknown:
        raise TeeformError(f"teeform predicts no value for PCR {', '.join(map(str, unknown))}", field="--nitrotpm-pcrs",
                           hint=f"choose from {', '.join(map(str, sorted(NITROTPM_MEASUREMENTS)))}")
    missing = [p for p in DEFAULT_PCRS if p not in pcrs]
    if missing:
        raise TeeformError(f"PCR {', '.join(map(str, missing))} must be compared (PCR4 pins the image, PCR12 that no "
                           "command line override was measured; clouds.md §1.1)", field="--nitrotpm-pcrs")
    return tuple(pcrs)


def allowed_from_vm_manifests(paths: Iterable[str | Path],
                              pcrs: Sequence[int] = DEFAULT_PCRS) -> tuple[list[AllowedMeasurements], list[str]]:
    """Load the vm-image manifests among ``paths`` as allowed NitroTPM PCR sets, one per manifest.

    Each set maps ``"PCR<n>"`` to the manifest's :data:`NITROTPM_MEASUREMENTS` value for every ``n``
    in ``pcrs``; ``source`` is the manifest path (:func:`teeform.fsutil.display_path`). The loading
    is :func:`teeform.nitro.verify.allowed_from_kind`'s, shared with the EIF manifests.

    Returns:
        (allowed sets, notes about skipped manifests of another kind).

    Raises:
        TeeformError: a manifest is missing or invalid; a vm-image manifest lacks a measurement of
            ``pcrs`` (path and field ``measurements.pcr4_sha384`` named); no vm-image manifest remains.
    """
    from teeform.manifest import ArtifactKind, Manifest

    def pick(p: str | Path, m: Manifest) -> dict[str, str]:
        values: dict[str, str] = {}
        for i in pcrs:
            name = NITROTPM_MEASUREMENTS[i]
            if name not in m.measurements:
                raise TeeformError(f"the manifest has no {name}, so NitroTPM PCR{i} cannot be compared", path=p,
                                   field=f"measurements.{name}",
                                   hint="rebuild it with teeform build vm-image (which predicts PCR 4), "
                                        "or leave the PCR out of --nitrotpm-pcrs if it is optional")
            values[f"PCR{i}"] = m.measurements[name].lower()
        return values

    return allowed_from_kind(
        paths, kind=ArtifactKind.VM_IMAGE, not_kind="not a vm-image manifest", pick=pick,
        none_left="no vm-image manifest to compare the NitroTPM PCRs with",
        hint="pass --manifest <vm-image .manifest.json> or a --stack whose targets use tee: nitro-tpm",
    )


def check_document(doc: AttestationDocument) -> CheckResult:
    """The document is a NitroTPM one (PCRs in ``nitrotpm_pcrs``), not a Nitro Enclaves document."""
    if not doc.is_nitrotpm:
        return CheckResult("document", FAIL, "a Nitro Enclaves document (pcrs), not a NitroTPM one (nitrotpm_pcrs): "
                           "compare it with EIF manifests")
    return CheckResult("document", PASS, f"NitroTPM attestation document (nitrotpm_pcrs, {doc.digest}, "
                       f"{len(doc.pcrs)} PCRs)")


def verify_nitrotpm(
    doc: AttestationDocument,
    *,
    root: Root,
    allowed: Sequence[AllowedMeasurements],
    nonce: bytes | None = None,
    at: _dt.datetime | None = None,
    at_label: str | None = None,
) -> VerificationReport:
    """Run the NitroTPM checks on ``doc``: document kind, signature, chain, time, PCRs, nonce
    (:func:`teeform.nitro.verify.verify_document` with the NitroTPM document row and PCR names).

    Args:
        doc: the parsed document.
        root: trust anchor (:func:`teeform.nitro.verify.load_root`; the AWS Nitro root by default,
            which also signs NitroTPM documents, clouds.md §1.2).
        allowed: the allowed sets (:func:`allowed_from_vm_manifests`), at least one.
        nonce, at, at_label: as :func:`teeform.nitro.verify.verify_attestation`.

    Returns:
        a :class:`teeform.nitro.verify.VerificationReport` (``ok`` is the verdict).

    Raises:
        TeeformError: no allowed set given.
    """
    return verify_document(doc, root=root, allowed=allowed, nonce=nonce, at=at, at_label=at_label,
                           document=check_document(doc), index=NITROTPM_PCR_INDEX, notes=(GATE_NOTE,))


__all__ = ["NITROTPM_MEASUREMENTS", "DEFAULT_PCRS", "NITROTPM_PCR_INDEX", "parse_pcr_list",
           "allowed_from_vm_manifests", "check_document", "verify_nitrotpm"]
