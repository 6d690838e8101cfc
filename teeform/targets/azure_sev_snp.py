"""Target plug-in ``azure``/``sev-snp``: an AMD SEV-SNP confidential VM (DCasv5/ECasv5) from teeform's image.

Settings and what the key gate pins: :mod:`teeform.targets.azure_cvm` (shared with ``azure``/``tdx``);
builder: ``components/azure/cvm.py``. The key's release policy requires
``x-ms-isolation-tee.x-ms-attestation-type`` = ``sevsnpvm`` (clouds.md §2.2, §2.4). Azure's hardware
report covers Microsoft's paravisor, not teeform's UKI, so ``snp_launch_digest`` does not apply here;
the UKI is measured into the vTPM's PCR 4/11 (clouds.md §2.1).
"""

from __future__ import annotations

from teeform.targets.azure_cvm import AzureCvmPlugin
from teeform.targets.base import Cloud, TeeType


class Plugin(AzureCvmPlugin):
    """``azure``/``sev-snp``."""

    cloud = Cloud.AZURE
    tee = TeeType.SEV_SNP


PLUGIN = Plugin()
