"""Predict the measurements of a VM image that depend on its UKI (PCR 11/12, RTMR1/2, Authenticode).

Public API::

    predict_vm_measurements(uki_path, *, stub_version=None, ovmf=None, vcpus=None, vcpu_type=None,
                            gpt_event_data=None, secure_boot=False) -> dict
    predict_from_layout(uki_path, layout, *, stub_version, ovmf, vcpus, vcpu_type,
                        gpt_event_data, secure_boot) -> dict        # layout already read
    predict_uki(layout, *, authenticode, stub_version, stub_version_source, gpt_event_data,
                secure_boot, linux_authenticode=None) -> dict   # pure: digests in
    linux_authenticode(uki_path, algorithms=("sha256", "sha384")) -> dict[str, str] | None

This module only combines the per-register models: the maths lives in
:mod:`image_builder.measure.pcr11` (systemd-stub PCR 11/12, uki-verity.md §1),
:mod:`image_builder.measure.tdx` (RTMR1/RTMR2, measured-boot.md), :mod:`image_builder.measure.pcr4`
(TPM PCR 4 for the AWS NitroTPM firmware profile, clouds.md §1.2), :mod:`image_builder.measure.snp`
(SEV-SNP launch digest) and :mod:`image_builder.measure.authenticode` (Microsoft Authenticode PE
image hash). The bytes it feeds them come from the format readers
(:func:`image_builder.formats.uki.read_uki_layout`, :func:`image_builder.formats.pe.read_pe_headers_fh`);
:func:`predict_uki` is pure (digests in, prediction out); the other functions read the given UKI
(and OVMF) through those readers to get its inputs, and write nothing.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from image_builder.formats.pe import read_pe_headers_fh
from image_builder.formats.uki import UkiLayout, read_uki_layout
from teeform.errors import TeeformError


def linux_authenticode(uki_path: os.PathLike[str] | str, algorithms: Sequence[str] = ("sha256", "sha384")) -> dict[str, str] | None:
    """Authenticode digest of the kernel inside the UKI's ``.linux`` (None if absent or not a PE).

    With Secure Boot off, systemd-stub ``LoadImage()``s this buffer and the firmware measures its
    Authenticode into PCR 4 / RTMR1 as a second application (uki-verity.md §1.5; measured-boot.md).
    The digest covers the section's file data (SizeOfRawData bytes at PointerToRawData, capped at
    VirtualSize), which is the buffer the stub passes (:func:`image_builder.measure.pcr4.kernel_authenticode_fh`).

    Returns:
        ``{algorithm: lowercase hex}`` or None when the UKI has no ``.linux`` or it is not a valid PE.

    Raises:
        TeeformError: the UKI itself is not a PE file.
        OSError: the UKI cannot be opened.
    """
    from image_builder.measure.pcr4 import kernel_authenticode_fh

    with open(uki_path, "rb") as fh:
        sec = read_pe_headers_fh(fh, path=uki_path).section(".linux")
        if sec is None:
            return None
        try:
            return kernel_authenticode_fh(fh, sec, algorithms, path=uki_path)
        except TeeformError:
            return None


def predict_vm_measurements(
    uki_path: os.PathLike[str] | str,
    *,
    stub_version: int | None = None,
    ovmf: os.PathLike[str] | str | None = None,
    vcpus: int | None = None,
    vcpu_type: str | None = None,
    gpt_event_data: bytes | None = None,
    secure_boot: bool = False,
) -> dict[str, Any]:
    """Predict the vm-image manifest measurements that depend on the UKI (reads files, writes nothing).

    Args:
        uki_path: the UKI.
        stub_version: systemd-stub version; None = :func:`image_builder.measure.pcr11.detect_stub_version`.
        ovmf: an OVMF with SEV metadata; when given (with ``vcpus`` and ``vcpu_type``) the SEV-SNP
            launch digest of that firmware is added (it does *not* cover a UKI booted from disk).
        vcpus, vcpu_type: guest vCPU count and QEMU CPU model (e.g. ``EPYC-v4``) for SEV-SNP.
        gpt_event_data: the UEFI_GPT_DATA the firmware measures for the boot disk
            (:func:`image_builder.measure.tdx.gpt_event_data`); None = "no GPT event" (recorded as an assumption).
        secure_boot: whether UEFI Secure Boot will be on (changes RTMR1: see tdx.predict_rtmr1).

    Returns:
        ``{"measurements": {name: hex}, "details": {...}}`` with the names of
        ``teeform.manifest.REQUIRED_/OPTIONAL_MEASUREMENTS[vm-image]`` except ``roothash``:
        ``uki_authenticode_sha256``, ``uki_authenticode_sha384``, ``pcr11_sha256``, ``pcr11_sha384``,
        ``pcr12_sha256``, ``pcr12_sha384`` (expected state: nothing measured), ``rtmr1``, ``rtmr2``
        (only for stubs >= 256), ``pcr4_sha256`` / ``pcr4_sha384`` (NitroTPM PCR 4, firmware profile
        ``aws-nitro``; left out only for a UKI whose ``.linux`` is not a PE image) and
        ``snp_launch_digest`` (only with ``ovmf``). ``details`` holds
        the event logs and every assumption.

    Raises:
        TeeformError: unreadable/invalid UKI, unsupported stub version, bad SNP inputs.
    """
    return predict_from_layout(uki_path, read_uki_layout(uki_path), stub_version=stub_version, ovmf=ovmf,
                               vcpus=vcpus, vcpu_type=vcpu_type, gpt_event_data=gpt_event_data,
                               secure_boot=secure_boot)


def predict_from_layout(uki_path: os.PathLike[str] | str, layout: UkiLayout, *, stub_version: int | None,
                        ovmf: os.PathLike[str] | str | None, vcpus: int | None, vcpu_type: str | None,
                        gpt_event_data: bytes | None, secure_boot: bool) -> dict[str, Any]:
    """:func:`predict_vm_measurements` for a UKI whose ``layout`` (:func:`read_uki_layout`) is already read.

    Reads what :func:`predict_uki` needs from ``uki_path`` (Authenticode digests of the UKI and of its
    ``.linux``, the stub version unless given) and, with ``ovmf``, the firmware for the SEV-SNP launch
    digest. Arguments, result and errors as :func:`predict_vm_measurements`.
    """
    from image_builder.measure import pcr11
    from image_builder.measure.authenticode import authenticode_digest
    from image_builder.measure.pcr4 import kernel_measured_by_firmware

    detected = pcr11.detect_stub_version(uki_path) if stub_version is None else stub_version
    # The kernel's digest is an input only where the firmware measures it (PCR 4 event 4, RTMR1).
    linux_auth = (linux_authenticode(uki_path, ("sha256", "sha384"))
                  if kernel_measured_by_firmware(detected, secure_boot) else None)
    pred = predict_uki(
        layout,
        authenticode=authenticode_digest(uki_path, ("sha256", "sha384")),
        stub_version=detected,
        stub_version_source="given" if stub_version is not None else "detected from .sbat/.sdmagic",
        gpt_event_data=gpt_event_data,
        secure_boot=secure_boot,
        linux_authenticode=linux_auth,
    )
    if ovmf is not None:
        from image_builder.measure import snp

        if vcpus is None or vcpu_type is None:
            raise TeeformError("the SEV-SNP launch digest needs vcpus and vcpu_type", field="vcpus",
                               hint="e.g. vcpus=2, vcpu_type='EPYC-v4'")
        snp_pred = snp.predict_snp_launch_digest(snp.SnpInputs(ovmf=Path(ovmf), vcpus=vcpus, vcpu_type=vcpu_type))
        pred["measurements"]["snp_launch_digest"] = snp_pred.launch_digest
        pred["details"]["snp_launch_digest"] = snp_pred.to_json()
    return pred


def predict_uki(layout: UkiLayout, *, authenticode: Mapping[str, str], stub_version: int, stub_version_source: str,
                gpt_event_data: bytes | None, secure_boot: bool,
                linux_authenticode: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The UKI-dependent measurements from digests already taken (pure: no I/O).

    Args:
        layout: the UKI's sections with their digests (:func:`image_builder.formats.uki.read_uki_layout`;
            ``sha256`` and ``sha384`` needed).
        authenticode: ``{"sha256": hex, "sha384": hex}`` Authenticode digests of the whole UKI.
        stub_version: systemd-stub version (252..257).
        stub_version_source: how it was found, for ``details`` (e.g. ``"given"``).
        gpt_event_data, secure_boot: as :func:`predict_vm_measurements`.
        linux_authenticode: ``{"sha256": hex, "sha384": hex}`` Authenticode of the kernel in
            ``.linux`` (:func:`linux_authenticode`), or None (not a PE image, or not taken because
            the firmware does not measure it). Used only where the firmware measures the kernel
            (:func:`image_builder.measure.pcr4.kernel_measured_by_firmware`): its ``sha256``/``sha384``
            for PCR 4 (:mod:`image_builder.measure.pcr4`) and its ``sha384`` for RTMR1 (TDVF's PCR 4
            events). Without it there, RTMR1 has no kernel event, ``pcr4_*`` are left out and
            ``details["pcr4"]`` says why.

    Returns:
        as :func:`predict_vm_measurements`, without ``snp_launch_digest``.

    Raises:
        TeeformError: unsupported stub version, a missing digest bank, a multi-profile UKI.
    """
    from image_builder.measure import pcr11, tdx
    from image_builder.measure.pcr4 import kernel_measured_by_firmware

    sections = layout.section_digests()
    p11 = {b: pcr11.predict_pcr11(sections, stub_version, b) for b in ("sha256", "sha384")}
    p12 = {b: pcr11.predict_pcr12(None, b) for b in ("sha256", "sha384")}
    # RTMR1 holds TDVF's PCR 2-6 events, so the kernel in .linux is in it exactly when it is in PCR 4.
    measured = kernel_measured_by_firmware(stub_version, secure_boot)
    rtmr1 = tdx.predict_rtmr1(
        authenticode["sha384"],
        linux_authenticode_sha384=linux_authenticode["sha384"] if measured and linux_authenticode is not None else None,
        gpt_event_data=gpt_event_data,
        secure_boot=secure_boot,
    )
    rtmr2 = tdx.predict_rtmr2(sections, stub_version)
    p4 = _predict_pcr4(authenticode, linux_authenticode, stub_version, secure_boot)
    measurements: dict[str, str] = {
        "uki_authenticode_sha256": authenticode["sha256"],
        "uki_authenticode_sha384": authenticode["sha384"],
        "pcr11_sha256": p11["sha256"].value,
        "pcr11_sha384": p11["sha384"].value,
        "pcr12_sha256": p12["sha256"].value,
        "pcr12_sha384": p12["sha384"].value,
        "rtmr1": rtmr1.value,
    }
    details: dict[str, Any] = {
        "stub_version": stub_version,
        "stub_version_source": stub_version_source,
        "uki_sections": [
            {"name": s.name, "rva": f"{s.virtual_address:#x}", "virtual_size": s.virtual_size, "sha256": s.digests["sha256"]}
            for s in layout.sections
        ],
        "pcr11": {b: p.to_json() for b, p in p11.items()},
        "pcr12": {b: p.to_json() for b, p in p12.items()},
        "pcr12_note": pcr11.PCR12_NOTE,
        "rtmr1": rtmr1.to_json(),
    }
    if isinstance(p4, str):
        details["pcr4"] = p4
    else:
        measurements.update({f"pcr4_{b}": p.value for b, p in p4.items()})
        details["pcr4"] = {b: p.to_json() for b, p in p4.items()}
    if rtmr2 is not None:
        measurements["rtmr2"] = rtmr2.value
        details["rtmr2"] = rtmr2.to_json()
    else:
        details["rtmr2"] = tdx.rtmr2_not_measured_note(stub_version)
    return {"measurements": measurements, "details": details}


def _predict_pcr4(authenticode: Mapping[str, str], linux_auth: Mapping[str, str] | None, stub_version: int,
                  secure_boot: bool) -> dict[str, Any] | str:
    """PCR 4 for the AWS NitroTPM firmware profile in both banks (:mod:`image_builder.measure.pcr4`;
    the OVMF profile has the same events and is proven by tests/test_boot.py), or the reason it is
    not predicted (the firmware would measure a ``.linux`` that is not a PE image: such a UKI cannot boot)."""
    from image_builder.measure import pcr4

    if pcr4.kernel_measured_by_firmware(stub_version, secure_boot) and linux_auth is None:
        return ("PCR 4 not predicted: the firmware would measure the kernel in .linux (systemd-stub "
                f"{stub_version}, Secure Boot {'on' if secure_boot else 'off'}), but .linux is not a PE image")
    return {b: pcr4.predict_pcr4(authenticode[b], None if linux_auth is None else linux_auth[b], bank=b,
                                 stub_version=stub_version, secure_boot=secure_boot,
                                 firmware=pcr4.FIRMWARE_AWS_NITRO)
            for b in pcr4.BANKS}
