"""Target plug-in ``gcp``/``tdx``: a TDX confidential VM (C3) booting teeform's image from an NVMe disk.

See :mod:`teeform.targets.gcp_confidential_vm` for the settings and the gate: Google's token pins the
platform only; image pinning (``rtmr1``, ``rtmr2``, UKI digest) needs Trustee (clouds.md §3.2, §5).

Optional ``keyBroker:`` (issue 11 item 4, :mod:`teeform.targets.vm_key_broker`): a Trustee KBS secret
released by the ``tdx`` verifier to our image (the UKI's Authenticode SHA-384 in the RTMR1 event log,
``rtmr_1``/``rtmr_2`` when recorded) on an Intel-attested platform.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from teeform.targets.base import Cloud, OutputSpec, TeeType
from teeform.targets.gcp_confidential_vm import GATE, ConfidentialVmPlugin, ConfidentialVmSettings
from teeform.targets.vm_key_broker import KeyBrokerPlugin, VmKeyBroker, gate_with_broker
from teeform.trustee.reference_values import Verifier

#: Outputs a target with ``keyBroker:`` adds (components/gcp/confidential_vm.py, components/trustee/attach.py).
BROKER_OUTPUTS = (
    OutputSpec("kbs_url", "with keyBroker: the Trustee KBS holding the image-pinned secret"),
    OutputSpec("reference_value_ids", "with keyBroker: the RVPS reference-value ids (UKI digest, RTMRs per manifest)"),
    OutputSpec("key_resource", "with keyBroker: the KBS resource path of the secret (resource/teeform/<target>/key)"),
    OutputSpec("key_broker_gate", "with keyBroker: what the Trustee-released secret pins (our image: UKI digest, RTMRs)"),
)


@dataclass(frozen=True)
class ConfidentialVmBrokerSettings(ConfidentialVmSettings):
    """:class:`ConfidentialVmSettings` plus the optional Trustee key broker (None = none)."""

    key_broker: VmKeyBroker | None = None


class Plugin(KeyBrokerPlugin, ConfidentialVmPlugin):
    """``gcp``/``tdx``."""

    cloud = Cloud.GCP
    tee = TeeType.TDX
    settings_keys = ConfidentialVmPlugin.settings_keys | {"keyBroker"}
    broker_settings = ConfidentialVmBrokerSettings
    outputs: ClassVar[tuple[OutputSpec, ...]] = (*ConfidentialVmPlugin.outputs, *BROKER_OUTPUTS)  # type: ignore[assignment]  # the base infers a fixed-length tuple
    gate = gate_with_broker(GATE, Verifier.TDX)


PLUGIN = Plugin()
