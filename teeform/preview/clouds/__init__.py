"""Per-cloud mocks and summaries of the offline preview, registered by resource-token prefix.

A cloud plug-in is a :class:`CloudPlugin` registered with :func:`register` for the type-token
prefix of its provider package (``"aws:"`` for pulumi-aws, ``"azure-native:"``, ``"gcp:"``,
``"alicloud:"``; the token form is ``<package>:<module>:<Type>``, pulumi/pulumi
``sdk/go/common/tokens/tokens.go``). The mock engine (:mod:`teeform.preview.mocks`) and the
renderer (:mod:`teeform.preview.render`) look plug-ins up with :func:`plugin_for`; adding a cloud is
one module here plus one line in :data:`BUILTIN`, with no edit to the runner.

Every token a plug-in names is listed in its :attr:`CloudPlugin.resource_tokens` /
:attr:`CloudPlugin.invoke_tokens`, and ``tests/test_policy_tokens.py`` checks those against the
installed SDK.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Mapping
from typing import Any

#: Modules defining the built-in plug-ins (each calls :func:`register` on import).
BUILTIN: tuple[str, ...] = ("teeform.preview.clouds.aws", "teeform.preview.clouds.teeform")
BUILTIN += ("teeform.preview.clouds.terraform",)  # pulumi-terraform state reference (docs/terraform.md)
BUILTIN += ("teeform.preview.clouds.alicloud",)  # Alibaba Cloud (issue 11)
BUILTIN += ("teeform.preview.clouds.gcp",)
BUILTIN += ("teeform.preview.clouds.azure",)  # issue 10

_REGISTRY: dict[str, CloudPlugin] = {}
_loaded = False


class CloudPlugin:
    """Mocks and summaries for the resources whose type token starts with :attr:`prefix`.

    Subclasses override what they support; the defaults answer like the SDK's bare mocks (inputs
    echoed as state, ``<name>-id`` ids, empty invoke results) and summarise nothing.
    """

    #: Type-token prefix this plug-in answers for, including the colon (``"aws:"``).
    prefix: str = ""
    #: Resource type tokens the plug-in names (mocked specially or summarised).
    resource_tokens: frozenset[str] = frozenset()
    #: Function (invoke) tokens the plug-in answers.
    invoke_tokens: frozenset[str] = frozenset()

    def new_resource(self, typ: str, name: str, inputs: dict[str, Any], region: str) -> tuple[str, dict[str, Any]]:
        """(physical id, output state) for a registration of ``typ`` named ``name`` in ``region``.

        ``inputs`` are the wire (camelCase) inputs; the returned state must contain them.
        """
        return f"{name}-id", dict(inputs)

    def call(self, token: str, args: Mapping[str, Any], region: str) -> dict[str, Any]:
        """The result of invoke ``token`` with ``args`` (wire names); ``{}`` when unknown."""
        return {}

    def summarize(self, typ: str, inputs: Mapping[str, Any]) -> list[str]:
        """Key properties of a resource of ``typ`` (plain JSON ``inputs``), one ``name=value`` each."""
        return []


def register(plugin: CloudPlugin) -> CloudPlugin:
    """Register ``plugin`` for its :attr:`~CloudPlugin.prefix` (replacing an earlier one).

    Raises:
        ValueError: the prefix is empty or does not end with ``:``.
    """
    if not plugin.prefix.endswith(":") or len(plugin.prefix) < 2:
        raise ValueError(f"a cloud plug-in prefix must look like 'aws:', got {plugin.prefix!r}")
    _REGISTRY[plugin.prefix] = plugin
    return plugin


_load_lock = threading.Lock()


def _load_builtin() -> None:
    # The mock engine answers registrations from several threads: mark the plug-ins loaded only after every
    # module registered itself, or a concurrent lookup would get the default plug-in (inputs echoed, no
    # computed outputs) for a prefix whose module is still being imported.
    global _loaded
    if _loaded:
        return
    with _load_lock:
        if not _loaded:
            for mod in BUILTIN:
                importlib.import_module(mod)
            _loaded = True


def plugins() -> list[CloudPlugin]:
    """Every registered plug-in, the built-in ones included, in registration order."""
    _load_builtin()
    return list(_REGISTRY.values())


_DEFAULT = CloudPlugin()


def plugin_for(token: str) -> CloudPlugin:
    """The plug-in with the longest prefix of ``token``, else a default :class:`CloudPlugin`."""
    _load_builtin()
    best = None
    for prefix, plugin in _REGISTRY.items():
        if token.startswith(prefix) and (best is None or len(prefix) > len(best.prefix)):
            best = plugin
    return best or _DEFAULT


__all__ = ["BUILTIN", "CloudPlugin", "plugin_for", "plugins", "register"]
