"""Target plug-in ``aws``/``sev-snp``: measurements only (no components, no key gate yet).

Future gate (clouds.md §1, §5): AWS has no native SEV-SNP key gate; KMS can pin NitroTPM PCR4/PCR12
(``kms:RecipientAttestation:NitroTPMPCR<n>``), or an own/Trustee verifier checks the SNP report.
"""

from __future__ import annotations

from teeform.targets.base import Cloud, TeeType
from teeform.targets.measurements_only import MeasurementsOnlyPlugin


class Plugin(MeasurementsOnlyPlugin):
    """``aws``/``sev-snp``."""

    cloud = Cloud.AWS
    tee = TeeType.SEV_SNP
    gate = "none yet: no key is released; future gate: KMS on NitroTPM PCR4/PCR12"


PLUGIN = Plugin()
