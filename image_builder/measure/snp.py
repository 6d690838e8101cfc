"""AMD SEV-SNP launch digest (MEASUREMENT) via the ``sev-snp-measure`` library (virtee, 0.0.13).

Public API::

    SnpInputs(ovmf, vcpus, vcpu_type="EPYC-v4", kernel=None, initrd=None, cmdline=None,
              guest_features=0x1, vmm_type="QEMU")
    SnpPrediction(launch_digest, assumptions, ovmf_sha256)        # .to_json()
    ovmf_sev_sections(ovmf) -> tuple[str, ...]                    # SEV metadata section types
    predict_snp_launch_digest(inputs) -> SnpPrediction

Facts (shared/reference/uki-verity.md §7): the launch digest is a SHA-384 extend chain over the
OVMF pages, the OVMF SEV metadata sections (footer GUID ``dc886566-984a-4798-a75e-5585a7bf67cc``),
an optional SEV hash table page (SNP_KERNEL_HASHES section, QEMU ``kernel-hashes=on``) and one VMSA
per vCPU. It covers the firmware and - only for direct boot with kernel hashes - the kernel,
initrd and command line. A UKI booted from disk is NOT covered by it (bind that with a vTPM).

We call ``sevsnpmeasure.guest.calc_launch_digest`` (never with ``dump_vmsa``, which writes files)
and turn its ValueError/RuntimeError into TeeformError. Defaults match the ``sev-snp-measure``
CLI: guest features 0x1, VMM type QEMU. Debian bookworm's OVMF builds have no SNP_KERNEL_HASHES
section and ``OVMF_CODE_4M.fd`` has no SEV metadata at all (checked here; ``ovmf-amdsev`` is
not in bookworm or bookworm-backports), so direct-boot prediction needs an AmdSev OVMF build.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from teeform.errors import TeeformError
from teeform.fsutil import hash_file

VMM_TYPES = ("QEMU", "ec2", "gce")


@dataclass(frozen=True)
class SnpInputs:
    """Everything the SEV-SNP launch digest depends on.

    Attributes:
        ovmf: firmware file mapped so that it ends at 4 GiB (e.g. ``OVMF.amdsev.fd``).
        vcpus: number of guest vCPUs (one VMSA page each).
        vcpu_type: QEMU CPU model name in ``sevsnpmeasure.vcpu_types.CPU_SIGS`` (e.g. ``EPYC-v4``,
            ``EPYC-Milan``, ``EPYC-Genoa``); sets the VMSA's CPUID signature.
        kernel, initrd, cmdline: direct boot with ``kernel-hashes=on`` (kernel None = no hash table).
        guest_features: SEV_FEATURES word of the VMSA (CLI default 0x1 = SNPActive).
        vmm_type: ``QEMU`` | ``ec2`` | ``gce``.
    """

    ovmf: Path
    vcpus: int
    vcpu_type: str = "EPYC-v4"
    kernel: Path | None = None
    initrd: Path | None = None
    cmdline: str | None = None
    guest_features: int = 0x1
    vmm_type: str = "QEMU"


@dataclass(frozen=True)
class SnpPrediction:
    """The launch digest (96 lowercase hex digits) and what it assumes."""

    launch_digest: str
    assumptions: tuple[str, ...]
    ovmf_sha256: str

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict (for manifest ``details``)."""
        return {"value": self.launch_digest, "ovmf_sha256": self.ovmf_sha256, "assumptions": list(self.assumptions)}


def ovmf_sev_sections(ovmf: os.PathLike[str] | str) -> tuple[str, ...]:
    """Return the SEV metadata section types of ``ovmf`` in table order (e.g. ``SNP_SEC_MEM``).

    Raises:
        TeeformError: unreadable file or malformed footer/metadata.
    """
    from sevsnpmeasure.ovmf import OVMF

    try:
        o = OVMF(os.fspath(ovmf))
        return tuple(d.section_type().name for d in o.metadata_items())
    except OSError as exc:
        raise TeeformError(f"cannot read OVMF: {exc.strerror}", path=ovmf) from exc
    except (ValueError, RuntimeError) as exc:
        raise TeeformError(f"malformed OVMF SEV metadata: {exc}", path=ovmf) from exc


def predict_snp_launch_digest(inputs: SnpInputs) -> SnpPrediction:
    """Compute the SEV-SNP launch digest for ``inputs`` (mode ``snp``).

    Raises:
        TeeformError: unknown vCPU type/VMM type, vcpus < 1, an OVMF without SEV metadata, a
            kernel given for an OVMF without SNP_KERNEL_HASHES, or unreadable files.
    """
    from sevsnpmeasure import guest
    from sevsnpmeasure.sev_mode import SevMode
    from sevsnpmeasure.vcpu_types import CPU_SIGS
    from sevsnpmeasure.vmm_types import VMMType

    if inputs.vcpus < 1:
        raise TeeformError("vcpus must be at least 1", field="vcpus")
    if inputs.vcpu_type not in CPU_SIGS:
        raise TeeformError(f"unknown vCPU type {inputs.vcpu_type!r}", field="vcpu_type",
                           hint="one of " + ", ".join(sorted(CPU_SIGS)))
    if inputs.vmm_type not in VMM_TYPES:
        raise TeeformError(f"unknown VMM type {inputs.vmm_type!r}", field="vmm_type", hint=f"one of {VMM_TYPES}")
    if inputs.kernel is None and (inputs.initrd is not None or inputs.cmdline is not None):
        raise TeeformError("initrd/cmdline need a kernel (direct boot)", field="kernel")
    for p in (inputs.ovmf, inputs.kernel, inputs.initrd):
        if p is not None and not os.path.isfile(p):
            raise TeeformError("file not found", path=p)
    sections = ovmf_sev_sections(inputs.ovmf)
    if not sections:
        raise TeeformError(
            "this OVMF has no SEV metadata (footer GUID dc886566-984a-4798-a75e-5585a7bf67cc), "
            "so an SEV-SNP guest cannot launch it and no launch digest exists",
            path=inputs.ovmf, hint="use an AmdSev/SEV-capable OVMF build (e.g. OvmfPkg/AmdSev/AmdSevX64.dsc)",
        )
    if inputs.kernel is not None and "SNP_KERNEL_HASHES" not in sections:
        raise TeeformError(
            "this OVMF has no SNP_KERNEL_HASHES metadata section, so a direct-boot kernel/initrd/cmdline "
            "cannot be measured into the launch digest", path=inputs.ovmf,
            hint="use an OvmfPkg/AmdSev build (Debian sid 'ovmf-amdsev'), or boot from disk and bind the UKI via vTPM",
        )
    try:
        digest = guest.calc_launch_digest(
            SevMode.SEV_SNP, inputs.vcpus, CPU_SIGS[inputs.vcpu_type], os.fspath(inputs.ovmf),
            os.fspath(inputs.kernel) if inputs.kernel else None,
            os.fspath(inputs.initrd) if inputs.initrd else None,
            inputs.cmdline if inputs.cmdline is not None else "",
            inputs.guest_features, "", VMMType[inputs.vmm_type], dump_vmsa=False,
        )
    except (ValueError, RuntimeError, KeyError) as exc:
        raise TeeformError(f"sev-snp-measure failed: {exc}", path=inputs.ovmf) from exc
    ovmf_sha = hash_file(inputs.ovmf)["sha256"]
    assumptions = [
        f"firmware {Path(inputs.ovmf).name} sha256 {ovmf_sha} (SEV metadata: {', '.join(sections)})",
        f"{inputs.vcpus} vCPU(s) of type {inputs.vcpu_type} (signature {CPU_SIGS[inputs.vcpu_type]:#x})",
        f"guest features {inputs.guest_features:#x}, VMM type {inputs.vmm_type}",
    ]
    if inputs.kernel is None:
        assumptions.append("no direct boot: the digest covers the firmware only, not a UKI loaded from disk")
    else:
        assumptions.append("direct boot with QEMU kernel-hashes=on: kernel, initrd and cmdline hashes are covered")
    return SnpPrediction(digest.hex(), tuple(assumptions), ovmf_sha)
