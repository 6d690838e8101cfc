"""The policy registry: one place that lists the pack's policies, rejecting duplicate ids and ``all``.

``all`` is reserved by CrossGuard (``{"all": "mandatory"}`` in a pack config sets every policy's
level; pulumi_policy ``policy.py``), and two policies with one id would make config and reports
ambiguous, so both are refused when the pack is assembled, not when it runs. Old ids
(:data:`teeform_policies.aliases.ALIASES`) are registered as aliases: :meth:`PolicyRegistry.resolve`
accepts them, and an alias may not shadow a policy id.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from pulumi_policy import ResourceValidationPolicy, StackValidationPolicy

Policy = ResourceValidationPolicy | StackValidationPolicy

#: Stable kebab-case ids (``<service>-<rule>``).
POLICY_ID = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")


class PolicyRegistry:
    """An ordered set of policies keyed by id."""

    def __init__(self, policies: Iterable[Policy] = (), aliases: Mapping[str, str] | None = None) -> None:
        self._policies: dict[str, Policy] = {}
        self._aliases: dict[str, str] = {}
        for p in policies:
            self.add(p)
        for old, new in (aliases or {}).items():
            self.alias(old, new)

    def alias(self, old: str, new: str) -> None:
        """Register ``old`` as a deprecated id of policy ``new``.

        Raises:
            ValueError: ``new`` is not registered, or ``old`` is a policy id or already an alias.
        """
        if new not in self._policies:
            raise ValueError(f"alias {old!r} names unknown policy {new!r}")
        if old in self._policies or old in self._aliases or old == "all":
            raise ValueError(f"alias {old!r} would shadow a policy id or alias")
        self._aliases[old] = new

    @property
    def aliases(self) -> dict[str, str]:
        """Deprecated id -> current id."""
        return dict(self._aliases)

    def resolve(self, name: str) -> Policy:
        """The policy of id ``name`` or of deprecated id ``name``.

        Raises:
            KeyError: neither.
        """
        return self._policies[self._aliases.get(name, name)]

    def add(self, policy: Policy) -> None:
        """Add ``policy``.

        Raises:
            ValueError: the id is ``all``, not kebab-case, or already registered.
        """
        name = policy.name
        if name == "all":
            raise ValueError("policy id 'all' is reserved by CrossGuard")
        if not POLICY_ID.match(name):
            raise ValueError(f"policy id {name!r} is not kebab-case")
        if name in self._policies:
            raise ValueError(f"duplicate policy id {name!r}")
        self._policies[name] = policy

    def policies(self) -> list[Policy]:
        """The policies in registration order."""
        return list(self._policies.values())

    def __contains__(self, name: object) -> bool:
        return name in self._policies

    def __getitem__(self, name: str) -> Policy:
        return self._policies[name]
