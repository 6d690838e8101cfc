"""Target plug-in ``aws``/``sev-snp``: a teeform UKI VM on an AMD SEV-SNP EC2 instance, key gated on NitroTPM PCRs.

Settings are those of ``aws``/``nitro-tpm`` (:mod:`teeform.targets.aws_nitro_tpm`), with the SNP
limits checked before any cloud call:

* ``instanceType``: only the M6a, C6a and R6a sizes AWS documents for SEV-SNP (``m6a.large`` to
  ``m6a.8xlarge``, ``c6a.large`` to ``c6a.16xlarge``, ``r6a.large`` to ``r6a.4xlarge``; archived EC2
  user guide ``snp-requirements.md`` and the pulumi-aws ``InstanceCpuOptionsArgs.amd_sev_snp``
  docstring, "only M6a, R6a, C6a"; ``shared/reference/clouds.md`` §1.5);
* ``region``: only :data:`SNP_REGIONS` (the same page: ``us-east-2`` and ``eu-west-1``), checked by
  the builder, which runs in ``teeform preview`` (the common ``region`` field is not a plug-in setting).

The builder is the NitroTPM one with ``cpu_options.amd_sev_snp = "enabled"`` on the instance, and the
same UEFI + NitroTPM AMI.

**What the key gate trusts.** No AWS key service checks an SEV-SNP attestation report: KMS's
attestation condition keys exist only for Nitro Enclaves and NitroTPM (KMS developer guide
"conditions-attestation"; clouds.md §1.1, §1.5). So the key is gated on the **NitroTPM PCRs of the
same instance** (PCR4 + PCR12, one statement per allowed manifest). Those PCRs are kept and the
document signed by the Nitro hypervisor, outside the SNP guest's protection: the gate trusts the
Nitro system exactly as a ``nitro-tpm`` target does, and proves nothing about SEV-SNP itself (no
SNP report, launch measurement, VLEK/VCEK chain or guest policy is checked by KMS). SNP adds memory
encryption against the host at run time; a verifier that checks the report (``/dev/sev-guest``) is
not part of this gate (docs/aws-vm.md).
"""

from __future__ import annotations

from typing import ClassVar

from teeform.targets.aws_nitro_tpm import NitroTpmPlugin
from teeform.targets.base import OutputSpec, TeeType, fail

#: Instance sizes with SEV-SNP (clouds.md §1.5): family -> allowed sizes, in AWS's size order.
SNP_SIZES: dict[str, tuple[str, ...]] = {
    "m6a": ("large", "xlarge", "2xlarge", "4xlarge", "8xlarge"),
    "c6a": ("large", "xlarge", "2xlarge", "4xlarge", "8xlarge", "12xlarge", "16xlarge"),
    "r6a": ("large", "xlarge", "2xlarge", "4xlarge"),
}

#: Regions with SEV-SNP when the archived page was written (clouds.md §1.5: "Re-check this"; §8 q5).
SNP_REGIONS = ("us-east-2", "eu-west-1")


def check_snp_region(region: str) -> str | None:
    """The refusal message for ``region``, or None when SEV-SNP is offered there (:data:`SNP_REGIONS`)."""
    if region in SNP_REGIONS:
        return None
    return (f"AWS offers SEV-SNP instances only in {list(SNP_REGIONS)} (EC2 user guide, SEV-SNP requirements), "
            f"not in {region!r}")


class SevSnpPlugin(NitroTpmPlugin):
    """``aws``/``sev-snp``: see the module docstring."""

    tee = TeeType.SEV_SNP
    builder = "components.aws.nitro_tpm:build_sev_snp_target"
    outputs = (
        *NitroTpmPlugin.outputs,
        OutputSpec("amd_sev_snp", "the instance's cpu_options.amd_sev_snp (\"enabled\")"),
    )
    gate = ("AWS KMS key policy on the NitroTPM of the SEV-SNP instance: plaintext only to a VM whose NitroTPM "
            "attestation document (signed by the Nitro hypervisor, outside the SNP guest) carries our image's PCR4 and "
            "PCR12; no SEV-SNP report is checked by KMS, so this trusts the Nitro hypervisor, not AMD")
    default_instance_type: ClassVar[str] = "m6a.large"

    def check_instance_type(self, instance_type: str, source: str, fld: str) -> None:
        """Refuse a type outside :data:`SNP_SIZES`.

        Raises:
            TeeformError: naming ``fld``.
        """
        family, _, size = instance_type.partition(".")
        if size not in SNP_SIZES.get(family, ()):
            allowed = ", ".join(f"{f}.{s[0]}..{f}.{s[-1]}" for f, s in SNP_SIZES.items())
            raise fail(f"{instance_type!r} does not support AMD SEV-SNP; AWS offers it on {allowed}", source, fld)


PLUGIN = SevSnpPlugin()
