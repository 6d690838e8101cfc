"""Old policy ids and how pack configs that still use them are resolved.

AWS-only policies carry an ``aws-`` prefix since the pack covers four clouds
(``kms-decrypt-requires-attestation`` is now ``aws-kms-decrypt-requires-attestation``). A pack
config (``policies/config/<stack>.json``, ``teeform preview --policy-config``) that still uses an
old id keeps working through :func:`resolve_pack_config`, which renames the entry and returns a
deprecation warning naming the new id.

The Pulumi CLI itself does not know these aliases: its ``ReconcilePolicyPackConfig``
(pulumi/pulumi ``pkg/resource/analyzer/config.go``) skips config entries whose name is not a policy
of the pack, silently. The configs shipped in ``policies/config/`` therefore use the new ids
(``tests/test_policies_registry.py`` checks it), and configs given to ``pulumi preview
--policy-pack-config`` must be migrated: the warning says to what.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: old id -> current id.
ALIASES: dict[str, str] = {
    "kms-decrypt-requires-attestation": "aws-kms-decrypt-requires-attestation",
    "kms-no-debug-measurements": "aws-kms-no-debug-measurements",
    "kms-key-rotation-enabled": "aws-kms-key-rotation-enabled",
    "ec2-imdsv2-required": "aws-ec2-imdsv2-required",
    "ec2-enclave-enabled": "aws-ec2-enclave-enabled",
    "ebs-encrypted": "aws-ebs-encrypted",
}


class PackConfigError(ValueError):
    """A pack config sets one policy under both its old and its new id, differently."""


@dataclass(frozen=True)
class ResolvedPackConfig:
    """A pack config with old ids renamed, and one deprecation warning per renamed entry."""

    config: dict[str, Any]
    warnings: tuple[str, ...]


def resolve_pack_config(config: Mapping[str, Any], *, source: str = "policy pack config") -> ResolvedPackConfig:
    """Rename old policy ids in ``config`` (``{"all": level, "<id>": level | {...}}``) to current ids.

    Raises:
        PackConfigError: an old id and its new id are both present with different settings.
    """
    out: dict[str, Any] = {}
    warnings: list[str] = []
    for key, value in config.items():
        new = ALIASES.get(key)
        if new is None:
            if key in out and out[key] != value:
                raise PackConfigError(f"{source}: policy {key!r} is set twice (also under an old id), differently")
            out[key] = value
            continue
        warnings.append(f"{source}: policy id {key!r} is deprecated; use {new!r} (teeform resolves it, the Pulumi CLI "
                        "ignores unknown ids silently)")
        if new in out and out[new] != value:
            raise PackConfigError(f"{source}: policy {new!r} is set under {key!r} and {new!r}, differently")
        out[new] = value
    return ResolvedPackConfig(out, tuple(warnings))


__all__ = ["ALIASES", "PackConfigError", "ResolvedPackConfig", "resolve_pack_config"]
