"""Target plug-in ``gcp``/``sev-snp``: an SEV-SNP confidential VM (N2D, AMD Milan) booting teeform's image.

See :mod:`teeform.targets.gcp_confidential_vm` for the settings and the gate: Google's token pins the
platform only; image pinning (``pcr11_sha256``, UKI digest) needs Trustee (clouds.md §3.2, §5).
"""

from __future__ import annotations

from teeform.targets.base import Cloud, TeeType
from teeform.targets.gcp_confidential_vm import ConfidentialVmPlugin


class Plugin(ConfidentialVmPlugin):
    """``gcp``/``sev-snp``."""

    cloud = Cloud.GCP
    tee = TeeType.SEV_SNP


PLUGIN = Plugin()
