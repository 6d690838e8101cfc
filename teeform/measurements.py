"""The one table of measurements teeform knows: name, hex length, display name, TEE, source.

Every other module (stack config, manifests, components, key-release model, reports) takes
measurement names and lengths from :data:`MEASUREMENTS` instead of keeping its own list. The policy
pack cannot import ``teeform`` (its virtualenv holds only ``pulumi_policy``); it keeps a copy of the
names it needs, and ``tests/test_measurements_table.py`` checks that copy against this table.

Sources:

* EIF (Nitro Enclaves): PCR0 (whole image), PCR1 (kernel + boot ramdisk), PCR2 (user ramdisks), PCR8
  (signing certificate, signed EIFs only), ImageSha384 (= PCR0, the KMS condition-key name); all
  SHA-384. ``shared/reference/eif-nitro.md`` §2.2, §2.5; AWS KMS developer guide
  "conditions-nitro-enclave" (condition keys ``kms:RecipientAttestation:PCR<n>`` / ``ImageSha384``).
* vm-image (SEV-SNP/TDX confidential VMs): dm-verity root hash, UKI Authenticode digests, systemd-stub
  PCR 11/12, TDX RTMR1/2, SEV-SNP launch digest. ``shared/reference/uki-verity.md`` §1, §4-§7;
  ``shared/reference/clouds.md`` §0 and §5 (which key gates can pin which value).
* vm-image, NitroTPM (AWS EC2 instances, also with SEV-SNP): firmware PCR 4 (``pcr4_sha256`` /
  ``pcr4_sha384``), ``image_builder/measure/pcr4.py``; clouds.md §1.1-§1.2; docs/nitrotpm.md. Optional
  in the table because vm-image manifests written before it lack it; ``teeform build vm-image``
  always writes it (except for a UKI whose ``.linux`` is not a PE image, which cannot boot).
"""

from __future__ import annotations

from dataclasses import dataclass

#: Manifest kinds (``teeform.manifest.ArtifactKind`` values), as plain strings so this module has no imports.
EIF = "eif"
VM_IMAGE = "vm-image"


@dataclass(frozen=True)
class Measurement:
    """One measurement a manifest can record.

    Attributes:
        name: the manifest key (``PCR0``, ``pcr11_sha256``...).
        hex_len: length in lowercase hex digits (64 = SHA-256, 96 = SHA-384).
        display: how reports and docs show it.
        kind: the manifest kind that carries it (:data:`EIF` or :data:`VM_IMAGE`).
        tees: the TEE types (``teeform.stack.TeeType`` values) whose attestation can report it.
        required: whether every manifest of ``kind`` must carry it.
        source: where its definition comes from.
        shown: the name ``teeform measure`` prints for it (:class:`teeform.report.MeasurementReport`
            keys; ``image_builder.formats.uki.DISPLAY_NAMES`` must agree), or None when ``measure``
            does not print it (the SEV-SNP launch digest needs OVMF and the vCPU set-up).
    """

    name: str
    hex_len: int
    display: str
    kind: str
    tees: tuple[str, ...]
    required: bool
    source: str
    shown: str | None = None

    @property
    def digest_bytes(self) -> int:
        """Length of the raw value in bytes (``hex_len // 2``)."""
        return self.hex_len // 2


_NITRO = ("nitro-enclave",)
_CVM = ("sev-snp", "tdx")
#: NitroTPM PCR 4 (image_builder/measure/pcr4.py): AWS NitroTPM instances, also with SEV-SNP enabled (clouds.md §1.5).
_NITRO_TPM = ("nitro-tpm", "sev-snp")
_PCR4_SRC = ("clouds.md §1.2 (NitroTPM PCR 4, aws/NitroTPM-Tools nitro-tpm-pcr-compute); TCG PC Client PFP §3.3.4.5; "
             "docs/nitrotpm.md")
_EIF_SRC = "eif-nitro.md §2.2 (aws-nitro-enclaves-image-format EifBuilder::measure)"

MEASUREMENTS: tuple[Measurement, ...] = (
    Measurement("PCR0", 96, "PCR0 (enclave image)", EIF, _NITRO, True, _EIF_SRC, "PCR0"),
    Measurement("PCR1", 96, "PCR1 (kernel and boot ramdisk)", EIF, _NITRO, True, _EIF_SRC, "PCR1"),
    Measurement("PCR2", 96, "PCR2 (user applications)", EIF, _NITRO, True, _EIF_SRC, "PCR2"),
    Measurement("PCR8", 96, "PCR8 (signing certificate)", EIF, _NITRO, False, _EIF_SRC, "PCR8"),
    Measurement("ImageSha384", 96, "ImageSha384 (= PCR0)", EIF, _NITRO, True,
                "eif-nitro.md §2.5; KMS condition key kms:RecipientAttestation:ImageSha384", "ImageSha384"),
    Measurement("roothash", 64, "dm-verity root hash", VM_IMAGE, _CVM, True, "uki-verity.md §5 (dm-verity)", "roothash"),
    Measurement("uki_authenticode_sha256", 64, "UKI Authenticode SHA-256", VM_IMAGE, _CVM, True,
                "uki-verity.md §4 (Authenticode PE image hash)", "AuthenticodeSha256"),
    Measurement("uki_authenticode_sha384", 96, "UKI Authenticode SHA-384", VM_IMAGE, _CVM, True,
                "uki-verity.md §4 (Authenticode PE image hash)", "AuthenticodeSha384"),
    Measurement("pcr11_sha256", 64, "PCR 11 SHA-256 (systemd-stub)", VM_IMAGE, _CVM, True, "uki-verity.md §1.2-1.3 (systemd-stub PCR 11)", "PCR11_sha256"),
    Measurement("pcr11_sha384", 96, "PCR 11 SHA-384 (systemd-stub)", VM_IMAGE, _CVM, True, "uki-verity.md §1.2-1.3 (systemd-stub PCR 11)", "PCR11_sha384"),
    Measurement("pcr12_sha256", 64, "PCR 12 SHA-256 (command-line overrides)", VM_IMAGE, _CVM, False, "uki-verity.md §1.4 (systemd-stub PCR 12)", "PCR12_sha256"),
    Measurement("pcr12_sha384", 96, "PCR 12 SHA-384 (command-line overrides)", VM_IMAGE, _CVM, False, "uki-verity.md §1.4 (systemd-stub PCR 12)", "PCR12_sha384"),
    Measurement("rtmr1", 96, "TDX RTMR1", VM_IMAGE, ("tdx",), False, "uki-verity.md §6 (Intel TDX RTMR1)", "RTMR1"),
    Measurement("rtmr2", 96, "TDX RTMR2", VM_IMAGE, ("tdx",), False, "uki-verity.md §6 (Intel TDX RTMR2, systemd-stub >= 256)", "RTMR2"),
    Measurement("pcr4_sha256", 64, "PCR 4 SHA-256 (firmware: UKI + kernel Authenticode)", VM_IMAGE, _NITRO_TPM, False,
                _PCR4_SRC, "PCR4_sha256"),
    Measurement("pcr4_sha384", 96, "PCR 4 SHA-384 (firmware: UKI + kernel Authenticode)", VM_IMAGE, _NITRO_TPM, False,
                _PCR4_SRC, "PCR4_sha384"),
    Measurement("snp_launch_digest", 96, "SEV-SNP launch digest", VM_IMAGE, ("sev-snp",), False,
                "uki-verity.md §7 (sev-snp-measure, QEMU direct boot)"),
)

BY_NAME: dict[str, Measurement] = {m.name: m for m in MEASUREMENTS}

#: EIF PCRs a Nitro key policy may pin through ``attestation.pcrs`` (ImageSha384 has its own switch).
NITRO_PINNABLE_PCRS: tuple[str, ...] = ("PCR0", "PCR1", "PCR2", "PCR8")


#: ``teeform measure`` name -> table entry (entries that ``measure`` prints).
BY_SHOWN: dict[str, Measurement] = {m.shown: m for m in MEASUREMENTS if m.shown is not None}

#: The PCRs of a Nitro attestation document that manifests predict (eif-nitro.md §2.2), as
#: ``{PCR index: table entry}``: PCR0, PCR1, PCR2, PCR8.
NITRO_PCR_INDEX: dict[int, Measurement] = {int(n[3:]): BY_NAME[n] for n in NITRO_PINNABLE_PCRS}


def names(kind: str) -> tuple[str, ...]:
    """Names of the measurements of manifest ``kind``, in table order."""
    return tuple(m.name for m in MEASUREMENTS if m.kind == kind)


def required(kind: str) -> dict[str, int]:
    """``{name: hex length}`` of the measurements every manifest of ``kind`` must carry."""
    return {m.name: m.hex_len for m in MEASUREMENTS if m.kind == kind and m.required}


def optional(kind: str) -> dict[str, int]:
    """``{name: hex length}`` of the measurements a manifest of ``kind`` may carry."""
    return {m.name: m.hex_len for m in MEASUREMENTS if m.kind == kind and not m.required}


def hex_len(name: str) -> int:
    """Hex length of measurement ``name``.

    Raises:
        KeyError: ``name`` is not in :data:`MEASUREMENTS`.
    """
    return BY_NAME[name].hex_len


def shown_names(kind: str) -> dict[str, str]:
    """``{manifest name: name teeform measure prints}`` for the measurements of ``kind`` that it prints,
    in table order."""
    return {m.name: m.shown for m in MEASUREMENTS if m.kind == kind and m.shown is not None}


def display(name: str) -> str:
    """Display name of ``name`` (the name itself when unknown)."""
    m = BY_NAME.get(name)
    return m.display if m else name


__all__ = ["EIF", "VM_IMAGE", "Measurement", "MEASUREMENTS", "BY_NAME", "BY_SHOWN", "NITRO_PINNABLE_PCRS",
           "NITRO_PCR_INDEX", "names", "required", "optional", "hex_len", "shown_names", "display"]
