"""Which builder wires the components of a (cloud, TEE type) target, and how stack outputs are shaped.

A stack (see :mod:`teeform.stack`) lists targets; each names a cloud and a TEE type. The Pulumi
program looks the pair up in :data:`TARGET_BUILDERS` and calls the builder with a
:class:`TargetContext`. A new cloud is one more module (``components/azure/...``) and one more line
here, never a fork of the program. Builders are named as ``"module:function"`` strings and imported
lazily (like :data:`teeform.cli.COMMANDS`), so a stack that deploys only to AWS never imports the
Azure SDK.

Targets whose TEE consumes a ``vm-image`` manifest (SEV-SNP, TDX) and whose cloud has no builder
yet fall back to :func:`measurements_only`: the program accepts them and exports their
measurements, and creates no cloud resources.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi

from teeform.errors import TeeformError
from teeform.manifest import Manifest
from teeform.stack import Cloud, StackConfig, Target, TeeType

#: (cloud, TEE type) -> "module:function" of a :data:`TargetBuilder`.
TARGET_BUILDERS: dict[tuple[Cloud, TeeType], str] = {
    (Cloud.AWS, TeeType.NITRO_ENCLAVE): "components.aws.nitro:build_nitro_enclave_target",
}


@dataclass(frozen=True)
class LoadedManifest:
    """A manifest allowed by a target, as loaded from disk.

    Attributes:
        path: absolute path of the manifest file.
        manifest: the parsed, validated manifest.
        sha256: SHA-256 (lowercase hex) of the manifest file's exact bytes.
        key: the name the manifest is exported under (``manifest.name``, or ``name@version`` when
            two allowed manifests share a name, e.g. during a rollout).
    """

    path: Path
    manifest: Manifest
    sha256: str
    key: str

    @property
    def artifact_path(self) -> Path:
        """Where the artifact is expected: next to the manifest, under ``artifact.file_name``."""
        return self.path.parent / self.manifest.artifact.file_name


@dataclass(frozen=True)
class TargetContext:
    """Everything a builder needs for one target.

    Attributes:
        stack: the whole validated stack config.
        target: the target being built.
        manifests: the target's allowed manifests, in config order; the first is deployed.
        project: the Pulumi project name (``Pulumi.yaml`` ``name``), used in physical resource names.
    """

    stack: StackConfig
    target: Target
    manifests: tuple[LoadedManifest, ...]
    project: str

    @property
    def deployed(self) -> LoadedManifest:
        """The manifest whose artifact is deployed (the first listed)."""
        return self.manifests[0]


#: A builder creates the target's components and returns its stack outputs in export order
#: (without ``measurements`` and ``manifest_sha256``, which the program adds for every target).
TargetBuilder = Callable[[TargetContext], dict[str, Any]]


def measurements_only(ctx: TargetContext) -> dict[str, Any]:
    """Builder for targets with no cloud components yet: create nothing, export nothing extra."""
    pulumi.log.info(
        f"target {ctx.target.name!r}: no {ctx.target.cloud.value}/{ctx.target.tee.value} components yet; "
        "exporting its measurements only"
    )
    return {}


def builder_for(target: Target) -> TargetBuilder:
    """Return the builder for ``target``'s (cloud, TEE type).

    Raises:
        TeeformError: no builder exists and the TEE type does not consume ``vm-image`` manifests.
    """
    ref = TARGET_BUILDERS.get((target.cloud, target.tee))
    if ref is None:
        if target.tee.manifest_kind == "vm-image":
            return measurements_only
        known = ", ".join(f"{c.value}/{t.value}" for c, t in TARGET_BUILDERS)
        raise TeeformError(
            f"no component builder for {target.cloud.value}/{target.tee.value}; available: {known}",
            field=f"teeform:targets[{target.name}]",
        )
    module, attr = ref.split(":")
    fn: TargetBuilder = getattr(importlib.import_module(module), attr)
    return fn


def manifest_keys(manifests: list[Manifest]) -> list[str]:
    """Export keys for a target's manifests: the name, or ``name@version`` when names repeat.

    Raises:
        TeeformError: two manifests share both name and version (the same build listed twice).
    """
    names = [m.name for m in manifests]
    keys = [m.name if names.count(m.name) == 1 else f"{m.name}@{m.version}" for m in manifests]
    dup = sorted({k for k in keys if keys.count(k) > 1})
    if dup:
        raise TeeformError(f"manifest(s) {dup} listed more than once (same name and version)")
    return keys


def shape_outputs(per_target: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Merge per-target outputs into stack outputs, in order, ``measurements`` first.

    With one target, every output is exported as is (``kms_key_arn: arn:...``). With several, each
    output is a map keyed by target name (``kms_key_arn: {agent: arn:..., other: arn:...}``), and a
    target that lacks an output (e.g. a measurements-only target) is left out of that map.

    Args:
        per_target: target name -> that target's outputs in export order.
    """
    order: list[str] = []
    for outs in per_target.values():
        for k in outs:
            if k not in order:
                order.append(k)
    if "measurements" in order:
        order.remove("measurements")
        order.insert(0, "measurements")
    if len(per_target) == 1:
        (only,) = per_target.values()
        return {k: only[k] for k in order}
    return {k: {t: outs[k] for t, outs in per_target.items() if k in outs} for k in order}
