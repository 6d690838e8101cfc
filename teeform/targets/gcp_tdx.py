"""Target plug-in ``gcp``/``tdx``: measurements only (no components, no key gate yet).

Future gate (clouds.md §3, §5): Cloud KMS through Workload Identity Federation on the Google token pins
the platform only; image pinning (``rtmr1``, ``rtmr2``, UKI digest) needs Trustee or an own broker.
"""

from __future__ import annotations

from teeform.targets.base import Cloud, TeeType
from teeform.targets.measurements_only import MeasurementsOnlyPlugin


class Plugin(MeasurementsOnlyPlugin):
    """``gcp``/``tdx``."""

    cloud = Cloud.GCP
    tee = TeeType.TDX
    gate = "none yet: no key is released; future gate: Cloud KMS via WIF (platform only; image via Trustee)"


PLUGIN = Plugin()
