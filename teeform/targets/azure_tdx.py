"""Target plug-in ``azure``/``tdx``: an Intel TDX confidential VM (DCesv5/ECesv5) from teeform's image.

Settings and what the key gate pins: :mod:`teeform.targets.azure_cvm` (shared with ``azure``/``sev-snp``);
builder: ``components/azure/cvm.py``. The key's release policy requires
``x-ms-isolation-tee.x-ms-attestation-type`` = ``tdxvm`` (clouds.md §2.2, §2.4). The TD's MRTD/RTMRs
cover Microsoft's paravisor, so teeform's ``rtmr1``/``rtmr2`` do not apply here; the UKI is measured
into the vTPM's PCR 4/11 (clouds.md §2.1).
"""

from __future__ import annotations

from teeform.targets.azure_cvm import AzureCvmPlugin
from teeform.targets.base import Cloud, TeeType


class Plugin(AzureCvmPlugin):
    """``azure``/``tdx``."""

    cloud = Cloud.AZURE
    tee = TeeType.TDX


PLUGIN = Plugin()
