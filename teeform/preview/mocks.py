"""The mock engine's answers: :class:`PreviewMocks` dispatches every registration and invoke to the
cloud plug-in registered for the token's prefix (:mod:`teeform.preview.clouds`).

Duck-typed against ``pulumi.runtime.Mocks`` (``new_resource(MockResourceArgs)`` and
``call(MockCallArgs)``, pulumi/pulumi ``sdk/python/lib/pulumi/runtime/mocks.py``); the subclass
``set_mocks`` wants is made in :mod:`teeform.preview.runner`, the one module touching
``pulumi.runtime``.
"""

from __future__ import annotations

from typing import Any

from teeform.preview.clouds import plugin_for
from teeform.preview.model import Registration

PROVIDER_PREFIX = "pulumi:providers:"


class PreviewMocks:
    """Realistic, deterministic ids and state for every registration; answers for every invoke.

    Records every registration in :attr:`resources` (``MockResourceArgs``) and every invoke in
    :attr:`calls`. Provider resources (``pulumi:providers:<pkg>``) remember their ``region`` input so
    child resources' ARNs carry it; without one the region is :attr:`default_region`.
    """

    def __init__(self, default_region: str = "us-east-1") -> None:
        self.resources: list[Any] = []
        self.calls: list[Any] = []
        self.default_region = default_region
        self._regions: dict[str, str] = {}
        #: How often the runner let queued registrations settle during the program body.
        self.settles = 0
        #: ``(type, name)`` -> :class:`~teeform.preview.model.Registration`, filled by the runner's
        #: recording monitor (URNs, dependencies and state the engine would give stack policies).
        self.registrations: dict[tuple[str, str], Registration] = {}

    def record_registration(self, typ: str, name: str, registration: Registration) -> None:
        """Remember what the monitor saw of the registration of ``typ`` ``name``."""
        self.registrations[(typ, name)] = registration

    def new_resource(self, args: Any) -> tuple[str | None, dict[str, Any]]:
        """(id, state) for ``args`` (``MockResourceArgs``: ``typ``, ``name``, ``inputs``, ``provider``)."""
        self.resources.append(args)
        typ, name, inputs = args.typ, args.name, dict(args.inputs)
        if typ.startswith(PROVIDER_PREFIX):
            rid = f"{name}-provider-id"
            self._regions[rid] = str(inputs.get("region") or self.default_region)
            return rid, inputs
        return plugin_for(typ).new_resource(typ, name, inputs, self._region_of(args.provider))

    def call(self, args: Any) -> tuple[dict[Any, Any], list[tuple[str, str]] | None]:
        """(result, no check failures) of an invoke (``MockCallArgs``: ``token``, ``args``, ``provider``)."""
        self.calls.append(args)
        return plugin_for(args.token).call(args.token, args.args, self._region_of(getattr(args, "provider", None))), []

    def _region_of(self, provider_ref: str | None) -> str:
        if provider_ref and "::" in provider_ref:
            return self._regions.get(provider_ref.rsplit("::", 1)[1], self.default_region)
        return self.default_region
