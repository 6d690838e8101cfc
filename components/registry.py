"""Which builder wires the components of a (cloud, TEE type) target, and how stack outputs are shaped.

A stack (see :mod:`teeform.stack`) lists targets; each names a cloud and a TEE type, whose plug-in
(:mod:`teeform.targets`) names its builder as a ``"module:function"`` string. The Pulumi program
calls :func:`builder_for` and the builder with a :class:`TargetContext`. Builders are imported
lazily (like :data:`teeform.cli.COMMANDS`), so a stack that deploys only to AWS never imports the
Azure SDK. A new pair is a plug-in module plus its builder module (``components/azure/...``),
never a fork of the program.

The ``vm-image`` pairs (SEV-SNP, TDX) without components are explicit measurements-only plug-ins
whose builder is :func:`measurements_only`: the program accepts them and exports their
measurements, and creates no cloud resources (and no key).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi

from teeform.errors import TeeformError
from teeform.keyrelease import KeyReleasePolicy
from teeform.manifest import Manifest
from teeform.manifest import manifest_keys as manifest_keys  # re-exported: the program's output keys
from teeform.stack import StackConfig, Target
from teeform.targets import PLUGINS, plugin_for


@dataclass(frozen=True)
class LoadedManifest:
    """A manifest allowed by a target, as loaded from disk.

    Attributes:
        path: absolute path of the manifest file.
        manifest: the parsed, validated manifest.
        sha256: SHA-256 (lowercase hex) of the manifest file's exact bytes.
        key: the name the manifest is exported under (``manifest.name``, or ``name@version`` when
            two allowed manifests share a name, e.g. during a rollout).
        signer: ``sha256:<fingerprint>`` of the trusted key that verified the manifest's signature
            (``teeform:trustedManifestKeys``, :mod:`teeform.signing`), or ``""`` when the stack pins no key.
    """

    path: Path
    manifest: Manifest
    sha256: str
    key: str
    signer: str = ""

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

    def key_release(self) -> KeyReleasePolicy | None:
        """The target's cloud-neutral key-release policy (one measurement set per allowed manifest),
        from its plug-in; None when the pair has no key gate.

        Raises:
            TeeformError: a manifest lacks a pinned measurement (naming the target's field).
        """
        t = self.target
        try:
            return t.plugin.key_release(t.name, t.settings, [(lm.key, lm.manifest) for lm in self.manifests])
        except TeeformError as exc:
            fld = f"teeform:targets[{t.name}]" + (f".{exc.field}" if exc.field else "")
            raise TeeformError(exc.message, hint=exc.hint, path=exc.path or self.stack.source, field=fld) from exc


#: A builder creates the target's components and returns its stack outputs in export order
#: (without ``measurements`` and ``manifest_sha256``, which the program adds for every target).
TargetBuilder = Callable[[TargetContext], dict[str, Any]]


def measurements_only(ctx: TargetContext) -> dict[str, Any]:
    """Builder of the measurements-only plug-ins: create nothing, export nothing extra, release no key."""
    pulumi.log.info(
        f"target {ctx.target.name!r}: no {ctx.target.cloud.value}/{ctx.target.tee.value} components yet; "
        f"exporting its measurements only. Key gate: {ctx.target.plugin.gate}"
    )
    return {}


def builder_for(target: Target) -> TargetBuilder:
    """Return the builder named by ``target``'s plug-in (imported now, not before).

    Raises:
        TeeformError: the (cloud, TEE type) pair has no plug-in.
    """
    if (target.cloud, target.tee) not in PLUGINS:
        known = ", ".join(f"{c.value}/{t.value}" for c, t in PLUGINS)
        raise TeeformError(
            f"no target plug-in for {target.cloud.value}/{target.tee.value}; available: {known}",
            field=f"teeform:targets[{target.name}]",
        )
    module, attr = plugin_for(target.cloud, target.tee).builder.split(":")
    fn: TargetBuilder = getattr(importlib.import_module(module), attr)
    return fn


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
