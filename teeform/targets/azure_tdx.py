"""Target plug-in ``azure``/``tdx``: measurements only (no components, no key gate yet).

Future gate (clouds.md §2, §5): Key Vault Secure Key Release on a MAA token; by default it pins the
platform only, PCR 11 (``pcr11_sha256``) only through a custom AzureGuest policy or Trustee ``az-tdx-vtpm``.
"""

from __future__ import annotations

from teeform.targets.base import Cloud, TeeType
from teeform.targets.measurements_only import MeasurementsOnlyPlugin


class Plugin(MeasurementsOnlyPlugin):
    """``azure``/``tdx``."""

    cloud = Cloud.AZURE
    tee = TeeType.TDX
    gate = "none yet: no key is released; future gate: Key Vault SKR (platform claims; PCR 11 via custom MAA policy)"


PLUGIN = Plugin()
