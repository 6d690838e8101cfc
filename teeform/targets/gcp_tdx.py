"""Target plug-in ``gcp``/``tdx``: a TDX confidential VM (C3) booting teeform's image from an NVMe disk.

See :mod:`teeform.targets.gcp_confidential_vm` for the settings and the gate: Google's token pins the
platform only; image pinning (``rtmr1``, ``rtmr2``, UKI digest) needs Trustee (clouds.md §3.2, §5).
"""

from __future__ import annotations

from teeform.targets.base import Cloud, TeeType
from teeform.targets.gcp_confidential_vm import ConfidentialVmPlugin


class Plugin(ConfidentialVmPlugin):
    """``gcp``/``tdx``."""

    cloud = Cloud.GCP
    tee = TeeType.TDX


PLUGIN = Plugin()
