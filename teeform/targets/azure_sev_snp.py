"""Target plug-in ``azure``/``sev-snp``: an AMD SEV-SNP confidential VM (DCasv5/ECasv5) from teeform's image.

Settings and what the key gate pins: :mod:`teeform.targets.azure_cvm` (shared with ``azure``/``tdx``);
builder: ``components/azure/cvm.py``. The key's release policy requires
``x-ms-isolation-tee.x-ms-attestation-type`` = ``sevsnpvm`` (clouds.md §2.2, §2.4). Azure's hardware
report covers Microsoft's paravisor, not teeform's UKI, so ``snp_launch_digest`` does not apply here;
the UKI is measured into the vTPM's PCR 4/11 (clouds.md §2.1).

Optional ``keyBroker:`` (issue 11 item 4, :mod:`teeform.targets.vm_key_broker`): a Trustee KBS secret
released to the vTPM's PCR 11 (``az-snp-vtpm`` verifier), i.e. pinning our image, next to the Key Vault
key that pins the platform.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from teeform.azure_release import GATE_PINS
from teeform.targets.azure_cvm import AzureCvmPlugin, AzureCvmSettings
from teeform.targets.base import Cloud, OutputSpec, TeeType
from teeform.targets.vm_key_broker import KeyBrokerPlugin, VmKeyBroker, gate_with_broker
from teeform.trustee.reference_values import Verifier

#: Outputs a target with ``keyBroker:`` adds (components/azure/cvm.py, components/trustee/attach.py).
BROKER_OUTPUTS = (
    OutputSpec("kbs_url", "with keyBroker: the Trustee KBS holding the image-pinned secret"),
    OutputSpec("reference_value_ids", "with keyBroker: the RVPS reference-value ids (PCR 11 of each allowed manifest)"),
    OutputSpec("key_resource", "with keyBroker: the KBS resource path of the secret (resource/teeform/<target>/key)"),
    OutputSpec("key_broker_gate", "with keyBroker: what the Trustee-released secret pins (our image: PCR 11)"),
)


@dataclass(frozen=True)
class AzureCvmBrokerSettings(AzureCvmSettings):
    """:class:`AzureCvmSettings` plus the optional Trustee key broker (None = none)."""

    key_broker: VmKeyBroker | None = None


class Plugin(KeyBrokerPlugin, AzureCvmPlugin):
    """``azure``/``sev-snp``."""

    cloud = Cloud.AZURE
    tee = TeeType.SEV_SNP
    settings_keys = AzureCvmPlugin.settings_keys | {"keyBroker"}
    broker_settings = AzureCvmBrokerSettings
    outputs: ClassVar[tuple[OutputSpec, ...]] = (*AzureCvmPlugin.outputs, *BROKER_OUTPUTS)  # type: ignore[assignment]  # the base infers a fixed-length tuple
    gate = gate_with_broker("Azure Key Vault secure key release on a MAA token: " + GATE_PINS, Verifier.AZ_SNP_VTPM)


PLUGIN = Plugin()
