"""Target plug-in ``alicloud``/``tdx``: measurements only (no components, no key gate yet).

Future gate (clouds.md §4, §5): a Trustee KBS resource policy on the UKI event digest
(``uki_authenticode_sha384``), ``rtmr1``/``rtmr2`` and an observed MRTD; Alibaba KMS has no TDX gate.
"""

from __future__ import annotations

from teeform.targets.base import Cloud, TeeType
from teeform.targets.measurements_only import MeasurementsOnlyPlugin


class Plugin(MeasurementsOnlyPlugin):
    """``alicloud``/``tdx``."""

    cloud = Cloud.ALICLOUD
    tee = TeeType.TDX
    gate = "none yet: no key is released; future gate: Trustee KBS (UKI digest, RTMR1/2)"


PLUGIN = Plugin()
