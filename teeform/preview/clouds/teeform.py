"""teeform's own component resources (prefix ``teeform:``): summaries only (components are not
sent to a provider, so the mock engine needs nothing special for them)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from teeform.preview.clouds import CloudPlugin, register

#: The MeasurementManifest component's type token (components/measurement_manifest.py).
MEASUREMENT_MANIFEST = "teeform:index:MeasurementManifest"


class TeeformPlugin(CloudPlugin):
    """Summaries of teeform components: the measurement manifest's name, kind, path and SHA-256."""

    prefix = "teeform:"
    resource_tokens = frozenset({MEASUREMENT_MANIFEST})

    def summarize(self, typ: str, inputs: Mapping[str, Any]) -> list[str]:
        """``name=... kind=... path=... sha256=...`` for a MeasurementManifest, plus ``signed by sha256:...``
        when the program verified its signature (``teeform:trustedManifestKeys``, docs/signing.md)."""
        i = inputs
        if typ == MEASUREMENT_MANIFEST:
            lines = [f"name={i.get('name')} kind={i.get('kind')} path={i.get('path')} sha256={i.get('sha256')}"]
            if i.get("signed") is True:
                lines.append(f"signed by {i.get('signer')} (verified against teeform:trustedManifestKeys)")
            return lines
        return []


PLUGIN = register(TeeformPlugin())
