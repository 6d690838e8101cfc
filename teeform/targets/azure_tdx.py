"""Target plug-in ``azure``/``tdx``: an Intel TDX confidential VM (DCesv5/ECesv5) from teeform's image.

Settings and what the key gate pins: :mod:`teeform.targets.azure_cvm` (shared with ``azure``/``sev-snp``);
builder: ``components/azure/cvm.py``. The key's release policy requires
``x-ms-isolation-tee.x-ms-attestation-type`` = ``tdxvm`` (clouds.md §2.2, §2.4). The TD's MRTD/RTMRs
cover Microsoft's paravisor, so teeform's ``rtmr1``/``rtmr2`` do not apply here; the UKI is measured
into the vTPM's PCR 4/11 (clouds.md §2.1).

Optional ``keyBroker:`` (issue 11 item 4, :mod:`teeform.targets.vm_key_broker`): a Trustee KBS secret
released to the vTPM's PCR 11 (``az-tdx-vtpm`` verifier), i.e. pinning our image, next to the Key Vault
key that pins the platform.
"""

from __future__ import annotations

from typing import ClassVar

from teeform.azure_release import GATE_PINS
from teeform.targets.azure_cvm import AzureCvmPlugin
from teeform.targets.azure_sev_snp import BROKER_OUTPUTS, AzureCvmBrokerSettings
from teeform.targets.base import Cloud, OutputSpec, TeeType
from teeform.targets.vm_key_broker import KeyBrokerPlugin, gate_with_broker
from teeform.trustee.reference_values import Verifier


class Plugin(KeyBrokerPlugin, AzureCvmPlugin):
    """``azure``/``tdx``."""

    cloud = Cloud.AZURE
    tee = TeeType.TDX
    settings_keys = AzureCvmPlugin.settings_keys | {"keyBroker"}
    broker_settings = AzureCvmBrokerSettings
    outputs: ClassVar[tuple[OutputSpec, ...]] = (*AzureCvmPlugin.outputs, *BROKER_OUTPUTS)  # type: ignore[assignment]  # the base infers a fixed-length tuple
    gate = gate_with_broker("Azure Key Vault secure key release on a MAA token: " + GATE_PINS, Verifier.AZ_TDX_VTPM)


PLUGIN = Plugin()
