"""``teeform build eif --runtime``: add the enclave runtime to the image as one more OCI layer.

What :func:`layer_runtime` produces, in a temporary OCI image layout that the normal EIF build
(:func:`image_builder.pipelines.build_eif.build_eif`) then reads like any other image:

* the original layers, byte for byte (their digests and diff_ids unchanged);
* one extra **uncompressed** layer (``application/vnd.oci.image.layer.v1.tar``, OCI image-spec
  ``layer.md``; its digest is therefore also its diff_id) holding, under :data:`RUNTIME_DIR`, the
  runtime's Python sources (:data:`teeform.enclave_runtime.bundle.ENCLAVE_FILES`, verbatim) and the
  launcher :data:`LAUNCHER`. It is written by :func:`teeform.enclave_runtime.bundle.deterministic_tar`
  (sorted, 0:0, every mtime = SOURCE_DATE_EPOCH), so the same teeform sources and epoch give the
  same layer, the same customer ramdisk and the same PCR2;
* a new image config: ``rootfs.diff_ids`` + the new layer, a ``history`` entry, and the command
  wrapped so the runtime runs first: ``Cmd = ["python3", LAUNCHER, <runtime options>, "--",
  <the agent's command>]``, ``Env`` kept (set to ``[]`` if absent) and ``Entrypoint`` removed. The
  agent's command is what nitro-cli would have run (:func:`image_builder.inputs.oci.select_command`:
  ``Cmd`` when ``Cmd`` and ``Env`` are set, else ``Entrypoint``), and Nitro's ``init`` runs ``Cmd``
  through ``execvpe`` with ``PATH=/sbin:/usr/sbin:/bin:/usr/bin`` (eif-nitro.md §3.2-§3.3).

The runtime is measured like everything else in the customer ramdisk (PCR2, and so PCR0). The
manifest records the layer's SHA-256 as input ``runtime``, the original image as ``base-image``, and
``details.runtime`` (files and their SHA-256, the wrapped command, the agent command, the delivery).

**The image must provide Python >= 3.11 as ``python3`` on that PATH with ``cryptography``, ``cbor2``,
``asn1crypto``, ``botocore`` and ``PyYAML`` installed** (the layer adds teeform's own sources only;
``cryptography`` has compiled parts that must match the image's libc and Python). Without them the
runtime stops with one line naming the missing module.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from image_builder.inputs import oci
from image_builder.inputs.demo_image import LayerBlob, write_oci_layout
from teeform.errors import TeeformError
from teeform.timefmt import rfc3339

#: Where the runtime lives inside the image.
RUNTIME_DIR = "opt/teeform/runtime"
#: The launcher script (absolute path inside the enclave).
LAUNCHER = f"/{RUNTIME_DIR}/teeform-runtime"
MT_TAR = "application/vnd.oci.image.layer.v1.tar"
_LAUNCHER_TEXT = b'''#!/usr/bin/env python3
"""teeform enclave runtime launcher (added by `teeform build eif --runtime`; docs/enclave-runtime.md)."""
import sys

sys.path.insert(0, "/opt/teeform/runtime")
from teeform.enclave_runtime.enclave import main  # noqa: E402

sys.exit(main())
'''
DELIVERIES = ("env", "files")


@dataclass(frozen=True)
class RuntimeLayer:
    """What :func:`layer_runtime` made.

    Attributes:
        image_dir: the new OCI layout.
        layer_sha256: hex SHA-256 of the runtime layer (= its diff_id; uncompressed).
        layer_size: its size in bytes.
        files: ``{path inside the image: sha256 hex}`` of every file in the layer.
        command: the wrapped ``Cmd``; agent_command: the agent's original command.
        base_image: ``(description, sha256 hex)`` of the input image (manifest digest, or the config
            digest for a legacy docker archive).
    """

    image_dir: Path
    layer_sha256: str
    layer_size: int
    files: dict[str, str]
    command: list[str]
    agent_command: list[str]
    base_image: tuple[str, str]
    delivery: str


def runtime_layer_bytes(source_date_epoch: int) -> tuple[bytes, dict[str, str]]:
    """The runtime layer (module docstring) and ``{path: sha256}`` of its files."""
    from teeform.enclave_runtime.bundle import deterministic_tar, enclave_files

    files = [*enclave_files(), ("teeform-runtime", _LAUNCHER_TEXT, 0o755)]
    data = deterministic_tar(files, mtime=source_date_epoch, prefix=f"{RUNTIME_DIR}/")
    return data, {f"/{RUNTIME_DIR}/{p}": hashlib.sha256(d).hexdigest() for p, d, _ in files}


def _sniff_media_type(head: bytes, declared: str) -> str:
    if declared != oci.MT_LEGACY_LAYER:
        return declared
    if head.startswith(oci.GZIP_MAGIC):
        return "application/vnd.oci.image.layer.v1.tar+gzip"
    if head.startswith(oci.ZSTD_MAGIC):
        return "application/vnd.oci.image.layer.v1.tar+zstd"
    return MT_TAR


def layer_runtime(image_path: Path, work: Path, *, platform: str | None, source_date_epoch: int,
                  delivery: str = "env") -> RuntimeLayer:
    """Write ``work/image`` = ``image_path`` + the runtime layer + the wrapped command (module docstring).

    Raises:
        TeeformError: the image cannot be read (as the EIF build would report it), has no command,
            or ``delivery`` is not ``env``/``files``.
    """
    if delivery not in DELIVERIES:
        raise TeeformError(f"unknown delivery {delivery!r} (env or files)", field="--runtime-delivery")
    img = oci.open_image(image_path, platform=platform)
    agent_cmd, env = oci.select_command(img.config, source=image_path)
    spool = work / "spool"
    spool.mkdir(parents=True)
    layers: list[LayerBlob] = []
    for i, (desc, diff_id) in enumerate(zip(img.layers, img.diff_ids, strict=True)):
        dst = spool / f"layer-{i}"
        h = hashlib.sha256()
        size = 0
        head = b""
        with img.store.open(desc.location) as src, open(dst, "wb") as out:
            while chunk := src.read(1 << 20):
                if not head:
                    head = chunk[:8]
                h.update(chunk)
                size += len(chunk)
                out.write(chunk)
        digest = f"sha256:{h.hexdigest()}"
        if desc.digest is not None and desc.digest != digest:
            raise TeeformError(f"layer {i + 1} changed while it was copied ({desc.digest} -> {digest})", path=image_path)
        layers.append(LayerBlob(dst, _sniff_media_type(head, desc.media_type), digest, size, diff_id))
    data, files = runtime_layer_bytes(source_date_epoch)
    layer_hex = hashlib.sha256(data).hexdigest()
    rt = spool / "runtime-layer"
    rt.write_bytes(data)
    layers.append(LayerBlob(rt, MT_TAR, f"sha256:{layer_hex}", len(data), f"sha256:{layer_hex}"))

    wrapped = ["python3", LAUNCHER, "--delivery", delivery, "--", *agent_cmd]
    config: dict[str, Any] = copy.deepcopy(dict(img.config))
    cfg = dict(config.get("config") or {})
    cfg["Cmd"], cfg["Env"] = wrapped, list(env)
    cfg.pop("Entrypoint", None)
    config["config"] = cfg
    rootfs = dict(config.get("rootfs") or {"type": "layers"})
    rootfs["diff_ids"] = [*img.diff_ids, f"sha256:{layer_hex}"]
    config["rootfs"] = rootfs
    config["history"] = [*(config.get("history") or []), {
        "created": rfc3339(source_date_epoch), "created_by": "teeform build eif --runtime",
        "comment": "teeform enclave runtime (docs/enclave-runtime.md)"}]
    plat = {"os": img.platform.os, "architecture": img.platform.architecture}
    if img.platform.variant:
        plat["variant"] = img.platform.variant
    out_dir = work / "image"
    write_oci_layout(out_dir, layers, config, ref_name=img.ref_name, platform=plat)
    shutil.rmtree(spool, ignore_errors=True)
    if img.manifest_digest:
        base = ("OCI manifest digest", img.manifest_digest.split(":", 1)[1])
    else:
        base = ("image config digest (legacy docker archive)", img.config_digest.split(":", 1)[1])
    return RuntimeLayer(out_dir, layer_hex, len(data), files, wrapped, agent_cmd, base, delivery)


def build_with_runtime(config: Any, *, delivery: str = "env", progress: Any = None) -> Any:
    """Run the EIF build (:func:`image_builder.pipelines.build_eif.build_eif`) on ``config.image`` +
    the runtime layer, then record the runtime in the manifest (module docstring).

    The manifest is rewritten atomically (:func:`teeform.manifest.write_manifest`); if that fails the
    EIF is removed too, so nothing half-written is left.

    Returns:
        the :class:`~image_builder.pipelines.build_eif.EifBuildResult` with the amended manifest.

    Raises:
        TeeformError: as the EIF build.
    """
    from image_builder.pipelines.build_eif import EifBuildResult, build_eif, stderr_progress
    from teeform.manifest import InputDigest, write_manifest

    sink = progress if progress is not None else stderr_progress
    work = Path(tempfile.mkdtemp(prefix="teeform-runtime-"))
    try:
        layer = layer_runtime(config.image, work, platform=config.platform, source_date_epoch=config.source_date_epoch,
                              delivery=delivery)
        sink(f"runtime layer sha256:{layer.layer_sha256} ({layer.layer_size} bytes, {len(layer.files)} files); "
             f"command: {' '.join(layer.command[:4])} ... -- {' '.join(layer.agent_command)}")
        result = build_eif(dataclasses.replace(config, image=layer.image_dir, platform=None), progress=sink)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    m = result.manifest
    inputs = (*m.inputs,
              InputDigest("base-image", f"{config.image.name} ({layer.base_image[0]})", layer.base_image[1]),
              InputDigest("runtime", f"teeform enclave runtime layer ({len(layer.files)} files)", layer.layer_sha256,
                          layer.layer_size))
    details = {**m.details, "runtime": {
        "layer_sha256": layer.layer_sha256, "layer_size": layer.layer_size, "directory": f"/{RUNTIME_DIR}",
        "files": layer.files, "command": layer.command, "agent_command": layer.agent_command,
        "delivery": layer.delivery,
        "requires": "python3 (>= 3.11) with cryptography, cbor2, asn1crypto, botocore, PyYAML in the image",
    }}
    amended = dataclasses.replace(m, inputs=inputs, details=details)
    try:
        write_manifest(amended, result.manifest_path)
    except BaseException:
        result.eif_path.unlink(missing_ok=True)
        result.manifest_path.unlink(missing_ok=True)
        raise
    return EifBuildResult(result.eif_path, result.manifest_path, amended, result.pcrs)
