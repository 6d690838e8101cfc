"""The ``teeform:index:MeasurementManifest`` component: a manifest the stack loaded, as a resource.

Registering each loaded manifest as a resource whose inputs (and registered outputs) are
``{target, name, kind, path, sha256, measurements, signed, signer}`` (plus ``until``, the end of a rollover
window, when the stack gives one: :mod:`teeform.rollover`) is how the stack policy
``measurements-match-manifest`` learns which measurements each target's key may pin (a key is
compared with the manifests of its own target: the key carries the tag ``teeform:target``), under the real engine (the policy sees the
component's registered outputs) and offline (``teeform preview`` sees its inputs). It has no
children and creates nothing in a cloud.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi

from components.registry import LoadedManifest
from teeform.errors import TeeformError
from teeform.manifest import ArtifactKind, Manifest, load_manifest, manifest_keys, manifest_sha256
from teeform.measurements import EIF, names
from teeform.signing import TrustedKey, verify_manifest
from teeform.stack import StackConfig, Target

#: Resource type token; the policy pack has the same constant (``teeform_policies.tokens``).
MEASUREMENT_MANIFEST_TYPE = "teeform:index:MeasurementManifest"

#: EIF measurements exported per manifest, in this order (PCR8 is null for unsigned EIFs); from the
#: measurement table (teeform/measurements.py: eif-nitro.md §2.2, §2.5).
EIF_EXPORTED = names(EIF)

#: Tag (AWS resource tag; label elsewhere) naming the target a key belongs to. The stack policy
#: ``measurements-match-manifest`` compares a tagged key with its own target's manifests only.
TARGET_TAG = "teeform:target"


@dataclass
class MeasurementManifestArgs:
    """Inputs: the ``target`` that allows it, the manifest's ``name``, ``kind`` (``eif``/``vm-image``),
    ``path`` (as configured), ``sha256`` of the file bytes (lowercase hex) and its ``measurements``
    (name -> lowercase hex); ``signer`` is ``sha256:<key fingerprint>`` of the trusted key that
    verified its signature, ``""`` when the stack pins no key (``signed`` = ``signer != ""``; the
    policy ``manifest-signed`` reads it)."""

    target: str
    name: str
    kind: str
    path: str
    sha256: str
    measurements: dict[str, str]
    signer: str = ""
    #: last UTC day (YYYY-MM-DD) this manifest stays allowed (a rollover window; None = no window):
    #: registered as the ``until`` property, which the policy ``rollover-window-expired`` reads
    until: str | None = None
    #: position in the target's ``manifests`` list (0 = the deployed one): registered as ``index``, so
    #: readers of the registrations need not rely on their order (the engine may reorder them)
    index: int = 0


class MeasurementManifest(pulumi.ComponentResource):
    """A measurement manifest registered in the stack (no cloud resources)."""

    def __init__(self, name: str, args: MeasurementManifestArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        props: dict[str, Any] = {
            "target": args.target,
            "name": args.name,
            "kind": args.kind,
            "path": args.path,
            "sha256": args.sha256,
            "measurements": dict(args.measurements),
            "signed": bool(args.signer),
            "signer": args.signer,
            "index": args.index,
        }
        if args.until is not None:
            props["until"] = args.until
        super().__init__(MEASUREMENT_MANIFEST_TYPE, name, props, opts)
        self.measurements = args.measurements
        self.sha256 = args.sha256
        # The engine gives stack policies a component's registered outputs, so repeat the props.
        self.register_outputs(props)


def measurement_output(manifest: Manifest) -> dict[str, str | None]:
    """The ``measurements`` stack output of one manifest.

    EIF: ``{PCR0, PCR1, PCR2, PCR8 (None when unsigned), ImageSha384}``. vm-image: every
    measurement the manifest records (roothash, uki_authenticode_*, pcr11_*, rtmr*, snp_launch_digest...).
    """
    if manifest.kind is ArtifactKind.EIF:
        return {k: manifest.measurements.get(k) for k in EIF_EXPORTED}
    return dict(sorted(manifest.measurements.items()))


def load_target_manifests(stack: StackConfig, target: Target) -> tuple[LoadedManifest, ...]:
    """Load and check ``target``'s allowed manifests (paths relative to the project directory).

    When the stack pins ``teeform:trustedManifestKeys``, every manifest must carry a signature by one
    of them (``<manifest>.intoto.jsonl`` or a cosign ``<manifest>.sig``, :func:`teeform.signing.verify_manifest`);
    the verified bytes must be the bytes loaded.

    Raises:
        TeeformError: a manifest is missing or invalid (naming the file), or its kind is not one
            the target's plug-in accepts (an EIF for nitro-enclave, a vm-image for sev-snp/tdx), or
            (trusted keys set) it is unsigned or not signed by a trusted key.
    """
    trusted = stack.trusted_keys()
    loaded: list[tuple[Path, Manifest]] = []
    for i, rel in enumerate(target.manifests):
        p = Path(rel)
        path = (p if p.is_absolute() else stack.project_dir / p).resolve()
        m = load_manifest(path)
        kinds = target.plugin.manifest_kinds
        if m.kind.value not in kinds:
            raise TeeformError(
                f"manifest {path} is of kind {m.kind.value!r}, but the {target.plugin.pair} target needs "
                f"{' or '.join(repr(k) for k in sorted(kinds))}",
                path=stack.source,
                field=f"teeform:targets[{target.name}].manifests[{i}]",
            )
        loaded.append((path, m))
    keys = manifest_keys([m for _, m in loaded])
    out = []
    for i, ((path, m), key) in enumerate(zip(loaded, keys, strict=True)):
        digest = manifest_sha256(path)
        signer = _verified_signer(stack, target, i, path, digest, trusted) if trusted else ""
        out.append(LoadedManifest(path, m, digest, key, signer))
    return tuple(out)


def _verified_signer(stack: StackConfig, target: Target, i: int, path: Path, digest: str,
                     trusted: list[TrustedKey]) -> str:
    """Verify manifest ``i`` of ``target`` against the stack's trusted keys; its signer, or raise."""
    fld = f"teeform:targets[{target.name}].manifests[{i}]"
    try:
        v = verify_manifest(path, trusted)
    except TeeformError as exc:
        raise TeeformError(f"refused: not signed by a key of teeform:trustedManifestKeys: {exc.render()}",
                           path=stack.source, field=fld, hint=exc.hint) from None
    if v.manifest_sha256 != digest:
        raise TeeformError(f"refused: {path} changed while it was verified", path=stack.source, field=fld)
    return v.signer


def register_manifests(target: Target, manifests: tuple[LoadedManifest, ...]) -> list[MeasurementManifest]:
    """Register one :class:`MeasurementManifest` per allowed manifest, named ``<target>-manifest-<key>``."""
    return [
        MeasurementManifest(
            f"{target.name}-manifest-{lm.key}",
            MeasurementManifestArgs(
                target=target.name,
                name=lm.manifest.name,
                kind=lm.manifest.kind.value,
                path=target.manifests[i],
                sha256=lm.sha256,
                measurements=dict(lm.manifest.measurements),
                signer=lm.signer,
                until=target.until_of(i),
                index=i,
            ),
        )
        for i, lm in enumerate(manifests)
    ]
