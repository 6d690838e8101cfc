"""Target plug-ins ``gcp``/``sev-snp`` and ``gcp``/``tdx``: a confidential VM booting teeform's measured image.

Settings (camelCase in YAML)::

    project: my-project                 # GCP project id (required)
    zone: europe-west4-a                # default: <region>-a
    machineType: n2d-standard-2         # default: n2d-standard-2 (SEV-SNP, AMD Milan), c3-standard-4 (TDX)
    network: {cidr: 10.44.0.0/24, ingress: [{cidr: 203.0.113.0/24, port: 443}]}   # default: no ingress

The manifest is a ``vm-image`` built with ``--format gce-tar`` (``details.formats["gce-tar"]``: the
``disk.raw`` tarball next to the manifest). Builder: ``components/gcp/confidential_vm.py`` (GCS bucket and
object, ``compute.Image`` from ``raw_disk``, the instance, no ingress by default).

Key gate: **none yet.** Google's attestation token for a plain confidential VM has no PCR or RTMR claims
(clouds.md §3.2), so a Workload Identity Federation condition on it would pin **the platform only**
(``hwmodel``, ``secboot``, ``dbgstat``, project and instance), never teeform's image; releasing a key to
the image's measurements (``rtmr1``, ``pcr11_sha256``, the UKI digest) is the Trustee path of its own
issue. The manifest's measurements are exported so that gate can use them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from teeform.targets.base import OutputSpec, TargetPlugin, TargetSettings, TeeType, read_opt_str
from teeform.targets.gcp_confidential_space import GcpNetworkConfig, parse_gcp_network, parse_gcp_project

#: (confidential instance type, guest OS feature, default machine type, min CPU platform) per TEE type
#: (pulumi-gcp 10.2 ``compute.Image`` guest_os_features and ``Instance`` docstrings; clouds.md §3.3).
TEE_SETUP: dict[TeeType, tuple[str, str, str, str | None]] = {
    TeeType.SEV_SNP: ("SEV_SNP", "SEV_SNP_CAPABLE", "n2d-standard-2", "AMD Milan"),
    TeeType.TDX: ("TDX", "TDX_CAPABLE", "c3-standard-4", None),
}
GATE = ("none yet: Google's confidential-VM token pins the platform only (no PCR/RTMR claims); key release to "
        "our image's measurements is the Trustee path")


@dataclass(frozen=True)
class ConfidentialVmSettings(TargetSettings):
    """Typed settings of a ``gcp``/``sev-snp`` or ``gcp``/``tdx`` target."""

    project: str
    project_number: str | None = None
    zone: str | None = None
    machine_type: str | None = None
    network: GcpNetworkConfig = field(default_factory=lambda: GcpNetworkConfig(cidr="10.44.0.0/24"))


class ConfidentialVmPlugin(TargetPlugin):
    """A GCP confidential VM from a ``vm-image`` manifest (module docstring)."""

    manifest_kinds = frozenset({"vm-image"})
    settings_keys = frozenset({"project", "projectNumber", "zone", "machineType", "network"})
    builder = "components.gcp.confidential_vm:build_confidential_vm_target"
    outputs = (
        OutputSpec("instance_id", "Compute Engine instance id"),
        OutputSpec("image_self_link", "the compute.Image imported from the gce-tar artifact"),
        OutputSpec("image_uri", "gs:// URI of the uploaded disk tarball"),
    )
    gate = GATE

    def parse_settings(self, raw: Mapping[str, Any], source: str, fld: str) -> ConfidentialVmSettings:
        """Parse and check the keys of one confidential-VM target."""
        project, number, zone = parse_gcp_project(raw, source, fld)
        return ConfidentialVmSettings(
            project=project, project_number=number, zone=zone,
            machine_type=read_opt_str(raw.get("machineType"), source, f"{fld}.machineType"),
            network=parse_gcp_network(raw.get("network"), source, f"{fld}.network", "10.44.0.0/24"),
        )


__all__ = ["ConfidentialVmPlugin", "ConfidentialVmSettings", "TEE_SETUP", "GATE"]
