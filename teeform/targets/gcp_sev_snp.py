"""Target plug-in ``gcp``/``sev-snp``: an SEV-SNP confidential VM (N2D, AMD Milan) booting teeform's image.

See :mod:`teeform.targets.gcp_confidential_vm` for the settings and the gate: Google's token pins the
platform only; image pinning (``pcr11_sha256``, UKI digest) needs Trustee (clouds.md §3.2, §5).

``keyBroker:`` is **refused** naming the field: teeform feeds no Trustee verifier for GCP SEV-SNP
evidence (``tdx``, ``az-tdx-vtpm``, ``az-snp-vtpm`` only; :mod:`teeform.targets.vm_key_broker`).
"""

from __future__ import annotations

from teeform.targets.base import Cloud, TeeType
from teeform.targets.gcp_confidential_vm import ConfidentialVmPlugin
from teeform.targets.gcp_tdx import ConfidentialVmBrokerSettings
from teeform.targets.vm_key_broker import KeyBrokerPlugin


class Plugin(KeyBrokerPlugin, ConfidentialVmPlugin):
    """``gcp``/``sev-snp`` (``keyBroker`` is accepted as a key only to be refused with its reason)."""

    cloud = Cloud.GCP
    tee = TeeType.SEV_SNP
    settings_keys = ConfidentialVmPlugin.settings_keys | {"keyBroker"}
    broker_settings = ConfidentialVmBrokerSettings


PLUGIN = Plugin()
