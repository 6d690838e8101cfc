"""Base of the ``vm-image`` plug-ins that have no cloud components yet ("measurements only").

Such a target is accepted, its manifests are loaded, registered as ``MeasurementManifest`` and their
measurements exported; no cloud resource is created and **no key is released to anything** (there is
no key gate yet). Each supported pair has its own module and states what its future gate can pin
(``shared/reference/clouds.md`` §5), so nobody mistakes the exported values for an enforced gate.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from teeform.targets.base import TargetPlugin, TargetSettings


@dataclass(frozen=True)
class VmImageSettings(TargetSettings):
    """A measurements-only target has no settings beyond the common fields."""


class MeasurementsOnlyPlugin(TargetPlugin):
    """A (cloud, SEV-SNP/TDX) pair without components: accepts ``vm-image`` manifests, builds nothing."""

    manifest_kinds = frozenset({"vm-image"})
    settings_keys = frozenset()
    builder = "components.registry:measurements_only"
    outputs = ()

    def parse_settings(self, raw: Mapping[str, Any], source: str, fld: str) -> VmImageSettings:
        """No settings: any extra key was already refused by the common parser."""
        return VmImageSettings()
