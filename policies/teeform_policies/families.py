"""Rule families: one policy id, one extractor per cloud, and "not checked" for the rest.

A cloud-neutral rule (``no-public-ingress``, ``measurements-match-manifest``) is written once over
a small neutral view of the resources it is about (an ingress opening; a key-release rule). Each
cloud contributes an *extractor* per resource type token that turns that resource's props into the
view. A resource whose type is in a family's *scope* (its :attr:`Family.scope` pattern: every key
service type of the four clouds, every firewall/security-group type) but that no extractor claims
is never passed silently: the advisory policy ``policy-coverage`` reports it with the
:data:`NOT_CHECKED` marker, so ``teeform preview`` (and the real CLI) show it as an advisory result.

Props are the wire (camelCase) inputs CrossGuard hands to policies (pulumi.md §3.1).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

#: Prefix of every "not checked" result message (a stable marker preview and CI can grep for).
NOT_CHECKED = "NOT CHECKED"

V = TypeVar("V")

#: An extractor: (resource type, props) -> the family's views of that resource ([] = nothing relevant).
Extractor = Callable[[str, Mapping[str, Any]], list[V]]


def cloud_of(resource_type: str) -> str:
    """``aws``, ``azure``, ``gcp``, ``alicloud`` (or the provider package) of a type token."""
    pkg = resource_type.split(":", 1)[0]
    return {"azure-native": "azure", "azuread": "azure"}.get(pkg, pkg)


@dataclass(frozen=True)
class Family(Generic[V]):
    """A rule family.

    Attributes:
        id: the family name (``ingress``, ``key-release``).
        policies: ids of the policies that use the family (for "not checked" messages).
        scope: type tokens the family is about; matching ones without an extractor are "not checked".
        extractors: type token -> extractor.
    """

    id: str
    policies: tuple[str, ...]
    scope: re.Pattern[str]
    extractors: Mapping[str, Extractor[V]] = field(default_factory=dict)

    def claims(self, resource_type: str) -> bool:
        """Whether an extractor reads ``resource_type``."""
        return resource_type in self.extractors

    def unchecked(self, resource_type: str) -> bool:
        """In scope but claimed by no extractor."""
        return not self.claims(resource_type) and bool(self.scope.search(resource_type))

    def extract(self, resource_type: str, props: Mapping[str, Any]) -> list[V]:
        """The views of one resource ([] when no extractor claims it)."""
        fn = self.extractors.get(resource_type)
        return list(fn(resource_type, props)) if fn else []

    def not_checked_message(self, resource_type: str, name: str) -> str:
        """The advisory message for an unclaimed in-scope resource."""
        return (
            f"{NOT_CHECKED}: {resource_type} {name!r} is in the scope of the {self.id} rules "
            f"({', '.join(self.policies)}) but no {cloud_of(resource_type)} extractor reads this resource type yet, "
            "so those rules did not check it. Review it by hand, or add an extractor in policies/teeform_policies/."
        )


__all__ = ["NOT_CHECKED", "Family", "Extractor", "cloud_of"]
