"""Plain data of an offline preview: registered resources, violations, the result (no SDK imports).

Every other module of :mod:`teeform.preview` may import this one; it imports nothing from Pulumi.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

#: The root stack resource's type token (pulumi/pulumi ``sdk/python/lib/pulumi/stack.py``).
STACK_TYPE = "pulumi:pulumi:Stack"


@dataclass(frozen=True)
class RegisteredResource:
    """One resource the program registered: type token, name, synthesized URN, whether it is a
    custom (cloud) resource, and its inputs (wire/camelCase names, secrets unwrapped).

    What the engine hands a *stack* policy besides (pulumi_policy ``PolicyResource``; pulumi.md
    §3.1): ``outputs`` (the state the mock engine answered: the inputs plus ids and ARNs; None when
    the registration was not recorded), the synthesized URNs of the ``parent``, of the
    ``dependencies`` and, per input property, of the resources it depends on
    (``property_dependencies``: ``{"keyId": (<key urn>,)}`` for ``KeyPolicy(key_id=key.id)``).
    """

    type: str
    name: str
    urn: str
    custom: bool
    inputs: Mapping[str, Any]
    outputs: Mapping[str, Any] | None = None
    parent: str | None = None
    dependencies: tuple[str, ...] = ()
    property_dependencies: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class Registration:
    """What the mock monitor saw of one ``RegisterResource`` call (recorded by
    :mod:`teeform.preview.runner`): the mock engine's URN of the resource and of its parent, the URNs
    of its dependencies and property dependencies (as the SDK sent them), its id and output state."""

    urn: str
    parent: str
    dependencies: tuple[str, ...]
    property_dependencies: Mapping[str, tuple[str, ...]]
    id: str | None
    state: Mapping[str, Any]


@dataclass(frozen=True)
class Violation:
    """A policy violation: policy id, enforcement level, message, and the resource it is about
    (empty for stack-level violations without a resource)."""

    policy: str
    enforcement: str
    message: str
    resource_type: str = ""
    resource_name: str = ""
    urn: str = ""
    severity: str = ""


@dataclass(frozen=True)
class PreviewResult:
    """What ``teeform preview`` found: resources in registration order, stack outputs in export
    order, violations, and the policy ids that ran."""

    stack: str
    stack_file: str
    resources: tuple[RegisteredResource, ...]
    outputs: Mapping[str, Any]
    violations: tuple[Violation, ...]
    policies: tuple[str, ...] = ()
    policy_config: str | None = None

    @property
    def mandatory(self) -> list[Violation]:
        """Violations that block a deployment (``mandatory``, or ``remediate`` that still fails)."""
        return [v for v in self.violations if v.enforcement == "mandatory"]


def urn_of(stack: str, project: str, typ: str, name: str) -> str:
    """``urn:pulumi:<stack>::<project>::<type>::<name>``: the URN of a resource without a parent
    type chain (the form the preview synthesises; pulumi/pulumi ``sdk/go/common/resource/urn.go``)."""
    return f"urn:pulumi:{stack}::{project}::{typ}::{name}"


def json_safe(v: Any) -> Any:
    """``v`` as plain JSON values: mappings/sequences copied, whole floats back to ints (CrossGuard and
    protobuf numbers are doubles), assets as ``{"asset": path}``, anything else ``str``."""
    if isinstance(v, Mapping):
        return {str(k): json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [json_safe(x) for x in v]
    if isinstance(v, float) and v.is_integer():
        return int(v)
    if v is None or isinstance(v, (str, int, float, bool)):
        return v
    path = getattr(v, "path", None)
    if path is not None:  # pulumi FileAsset / FileArchive
        return {"asset": str(path)}
    return str(v)
