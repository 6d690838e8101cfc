"""Deterministic OCI images without Docker: the demo's busybox image, and helpers for tests/benchmarks.

* :func:`layer_blob` writes one layer (tar, tar+gzip or tar+zstd) from a list of :class:`LayerEntry`;
  every header field is fixed (mtime = SOURCE_DATE_EPOCH unless given, no user/group names, PAX
  format; gzip with mtime 0 and no file name), so the same entries give the same digest.
* :func:`write_oci_layout` writes an OCI image layout directory (image-spec v1.1 ``image-layout.md``).
* :func:`write_docker_archive` writes a ``docker save`` style tar, legacy (``manifest.json`` +
  ``<id>/layer.tar``) or OCI (Docker >= 25: ``oci-layout``, ``index.json``, ``blobs/``, plus
  ``manifest.json``).
* :func:`build_demo_image` / ``python -m image_builder.inputs.demo_image --out DIR`` builds the demo's
  stand-in agent image from Debian's ``busybox-static``: ``/bin/busybox`` plus one symlink per
  applet, a minimal ``/etc/passwd``/``/etc/group``, ``/tmp`` (1777), and
  ``Cmd ["/bin/sh", "-c", "echo openclaw agent stand-in; sleep infinity"]``.

The helpers deliberately allow hostile entries (``../x``, absolute paths, devices) so tests can
check that :mod:`image_builder.inputs.oci` refuses them.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import shutil
import sys
import tarfile
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from teeform.fsutil import CHUNK, hash_file, source_date_epoch
from teeform.timefmt import rfc3339

MT_LAYER = {
    None: "application/vnd.oci.image.layer.v1.tar",
    "gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
    "zstd": "application/vnd.oci.image.layer.v1.tar+zstd",
}
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_INDEX = "application/vnd.oci.image.index.v1+json"
DEMO_CMD = ["/bin/sh", "-c", "echo openclaw agent stand-in; sleep infinity"]
DEMO_ENV = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]


@dataclass(frozen=True)
class LayerEntry:
    """One tar member. ``kind``: file, dir, symlink, hardlink, fifo, chr, blk.

    ``data`` (bytes) or ``source`` (a file streamed into the tar) give a file's content;
    ``target`` is the link target for symlinks/hardlinks.
    """

    path: str
    kind: str = "file"
    data: bytes = b""
    source: Path | None = None
    mode: int | None = None
    uid: int = 0
    gid: int = 0
    target: str = ""
    mtime: int | None = None


@dataclass(frozen=True)
class LayerBlob:
    """A written layer: blob path, media type, blob digest and size, uncompressed diff_id."""

    path: Path
    media_type: str
    digest: str
    size: int
    diff_id: str


_TYPES = {"file": tarfile.REGTYPE, "dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE, "hardlink": tarfile.LNKTYPE,
          "fifo": tarfile.FIFOTYPE, "chr": tarfile.CHRTYPE, "blk": tarfile.BLKTYPE}


def _sha256_file(path: Path) -> tuple[str, int]:
    """``("sha256:<hex>", size)`` of ``path``, streamed (OCI digest form)."""
    return "sha256:" + hash_file(path)["sha256"], path.stat().st_size


def write_layer_tar(fh: Any, entries: Sequence[LayerEntry], *, mtime: int) -> None:
    """Write ``entries`` in the given order as an uncompressed PAX tar to the binary stream ``fh``."""
    with tarfile.open(fileobj=fh, mode="w|", format=tarfile.PAX_FORMAT) as tf:
        for e in entries:
            ti = tarfile.TarInfo(e.path)
            ti.type = _TYPES[e.kind]
            ti.mode = e.mode if e.mode is not None else (0o755 if e.kind == "dir" else 0o644)
            ti.uid, ti.gid, ti.uname, ti.gname = e.uid, e.gid, "", ""
            ti.mtime = e.mtime if e.mtime is not None else mtime
            if e.kind in ("symlink", "hardlink"):
                ti.linkname = e.target
            if e.kind in ("chr", "blk"):
                ti.devmajor, ti.devminor = 1, 3
            if e.kind == "file":
                if e.source is not None:
                    ti.size = e.source.stat().st_size
                    with open(e.source, "rb") as src:
                        tf.addfile(ti, src)
                else:
                    ti.size = len(e.data)
                    tf.addfile(ti, io.BytesIO(e.data))
            else:
                tf.addfile(ti)


def layer_blob(dest_dir: Path, entries: Sequence[LayerEntry], *, compression: str | None = None,
               mtime: int | None = None) -> LayerBlob:
    """Write one layer blob into ``dest_dir`` (named by its digest) and describe it.

    Args:
        compression: None, ``"gzip"`` or ``"zstd"`` (needs the ``zstd`` tool).
        mtime: tar mtime for entries without their own; default SOURCE_DATE_EPOCH.
    """
    from teeform.run import run

    when = source_date_epoch() if mtime is None else mtime
    dest_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=dest_dir, prefix=".layer-", suffix=".tar")
    tmp = Path(tmp_name)
    with os.fdopen(fd, "wb") as fh:
        write_layer_tar(fh, entries, mtime=when)
    diff_id, _ = _sha256_file(tmp)
    if compression == "gzip":
        gz = tmp.with_suffix(".gz")
        with open(tmp, "rb") as src, open(gz, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw,
                                                                          mtime=0, compresslevel=6) as out:
            shutil.copyfileobj(src, out, CHUNK)
        tmp.unlink()
        tmp = gz
    elif compression == "zstd":
        zst = tmp.with_suffix(".zst")
        run(["zstd", "-q", "-19", "--no-check", "-o", str(zst), str(tmp)])
        tmp.unlink()
        tmp = zst
    elif compression is not None:
        raise ValueError(f"unknown compression {compression!r}")
    digest, size = _sha256_file(tmp)
    final = dest_dir / digest.split(":", 1)[1]
    os.replace(tmp, final)
    return LayerBlob(final, MT_LAYER[compression], digest, size, diff_id)


def image_config(diff_ids: Sequence[str], *, cmd: list[str] | None = None, env: list[str] | None = None,
                 entrypoint: list[str] | None = None, architecture: str = "amd64", created: int | None = None,
                 extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """An image config (image-spec ``config.md``). ``None`` values are left out of ``config``."""
    cfg: dict[str, Any] = {}
    if env is not None:
        cfg["Env"] = env
    if entrypoint is not None:
        cfg["Entrypoint"] = entrypoint
    if cmd is not None:
        cfg["Cmd"] = cmd
    cfg["WorkingDir"] = "/"
    when = rfc3339(source_date_epoch() if created is None else created).replace("+00:00", "Z")
    out: dict[str, Any] = {
        "architecture": architecture,
        "os": "linux",
        "created": when,
        "config": cfg,
        "rootfs": {"type": "layers", "diff_ids": list(diff_ids)},
        "history": [{"created": when, "created_by": "teeform image_builder.inputs.demo_image"}],
    }
    out.update(extra or {})
    return out


def _json_bytes(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode("utf-8")


def _put_blob(blobs: Path, data: bytes) -> tuple[str, int]:
    digest = hashlib.sha256(data).hexdigest()
    (blobs / digest).write_bytes(data)
    return "sha256:" + digest, len(data)


def write_oci_layout(dest: Path, layers: Sequence[LayerBlob], config: dict[str, Any], *,
                     ref_name: str | None = None, platform: dict[str, str] | None = None) -> dict[str, str]:
    """Write an OCI image layout to ``dest`` (created) whose blobs are ``layers`` (moved in) + config + manifest.

    Returns:
        ``{"manifest": digest, "config": digest}``.
    """
    blobs = dest / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    for layer in layers:
        target = blobs / layer.digest.split(":", 1)[1]
        if layer.path != target:
            shutil.copyfile(layer.path, target)
    cfg_digest, cfg_size = _put_blob(blobs, _json_bytes(config))
    manifest = {
        "schemaVersion": 2,
        "mediaType": MT_MANIFEST,
        "config": {"mediaType": MT_CONFIG, "digest": cfg_digest, "size": cfg_size},
        "layers": [{"mediaType": lb.media_type, "digest": lb.digest, "size": lb.size} for lb in layers],
    }
    man_digest, man_size = _put_blob(blobs, _json_bytes(manifest))
    desc: dict[str, Any] = {"mediaType": MT_MANIFEST, "digest": man_digest, "size": man_size}
    if platform:
        desc["platform"] = platform
    if ref_name:
        desc["annotations"] = {"org.opencontainers.image.ref.name": ref_name}
    (dest / "index.json").write_bytes(_json_bytes({"schemaVersion": 2, "mediaType": MT_INDEX, "manifests": [desc]}))
    (dest / "oci-layout").write_bytes(_json_bytes({"imageLayoutVersion": "1.0.0"}))
    return {"manifest": man_digest, "config": cfg_digest}


def _add_bytes(tf: tarfile.TarFile, name: str, data: bytes, mtime: int) -> None:
    ti = tarfile.TarInfo(name)
    ti.size, ti.mtime, ti.mode = len(data), mtime, 0o644
    tf.addfile(ti, io.BytesIO(data))


def write_docker_archive(dest: Path, layers: Sequence[LayerBlob], config: dict[str, Any], *,
                         repo_tag: str = "demo:latest", fmt: str = "legacy") -> None:
    """Write a ``docker save`` style tar. ``fmt="legacy"``: ``manifest.json`` + ``<n>/layer.tar``
    (layers must be uncompressed); ``fmt="oci"``: the Docker >= 25 layout (``index.json`` etc. plus
    ``manifest.json`` pointing into ``blobs/``)."""
    when = source_date_epoch()
    with tarfile.open(dest, "w", format=tarfile.PAX_FORMAT) as tf:
        cfg = _json_bytes(config)
        cfg_hex = hashlib.sha256(cfg).hexdigest()
        if fmt == "legacy":
            names = []
            for i, lb in enumerate(layers):
                name = f"{i:064x}/layer.tar"
                tf.add(lb.path, arcname=name)
                names.append(name)
            _add_bytes(tf, f"{cfg_hex}.json", cfg, when)
            _add_bytes(tf, "manifest.json", json.dumps([{"Config": f"{cfg_hex}.json", "RepoTags": [repo_tag],
                                                         "Layers": names}]).encode(), when)
        elif fmt == "oci":
            with tempfile.TemporaryDirectory() as tmp:
                layout = Path(tmp) / "layout"
                write_oci_layout(layout, layers, config)
                index = json.loads((layout / "index.json").read_bytes())
                index["manifests"][0]["annotations"] = {"io.containerd.image.name": f"docker.io/library/{repo_tag}",
                                                        "org.opencontainers.image.ref.name": repo_tag.split(":")[-1]}
                (layout / "index.json").write_bytes(_json_bytes(index))
                for p in sorted(layout.rglob("*")):
                    if p.is_file():
                        tf.add(p, arcname=p.relative_to(layout).as_posix())
                legacy = [{"Config": f"blobs/sha256/{cfg_hex}", "RepoTags": [repo_tag],
                           "Layers": [f"blobs/sha256/{lb.digest.split(':')[1]}" for lb in layers]}]
                _add_bytes(tf, "manifest.json", json.dumps(legacy).encode(), when)
        else:
            raise ValueError(f"unknown docker archive format {fmt!r}")


def busybox_entries(busybox: Path, applets: Sequence[str]) -> list[LayerEntry]:
    """The demo image's single layer: busybox, its applet symlinks, /etc basics, /tmp, /root."""
    entries = [
        LayerEntry("bin/", "dir"),
        LayerEntry("bin/busybox", "file", source=busybox, mode=0o755),
        LayerEntry("etc/", "dir"),
        LayerEntry("etc/group", "file", data=b"root:x:0:\nnogroup:x:65534:\n"),
        LayerEntry("etc/passwd", "file", data=b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n"),
        LayerEntry("root/", "dir", mode=0o700),
        LayerEntry("tmp/", "dir", mode=0o1777),
    ]
    for name in sorted(set(applets) - {"busybox"}):
        if name and "/" not in name:
            entries.append(LayerEntry(f"bin/{name}", "symlink", target="busybox"))
    return entries


def build_demo_image(dest: Path, *, busybox: Path = Path("/bin/busybox"), ref_name: str = "openclaw-agent:demo") -> dict[str, str]:
    """Build the demo's stand-in agent image as an OCI layout in ``dest`` (must not exist or be empty).

    Returns:
        ``{"manifest": digest, "config": digest}``.

    Raises:
        TeeformError: busybox is missing (install Debian's ``busybox-static``) or ``dest`` is not empty.
    """
    from teeform.errors import TeeformError
    from teeform.run import run

    if not busybox.is_file():
        raise TeeformError("busybox not found", path=busybox, hint="apt-get install busybox-static")
    if dest.exists() and any(dest.iterdir()):
        raise TeeformError("the destination is not empty", path=dest)
    applets = run([str(busybox), "--list"]).stdout.decode().split()
    with tempfile.TemporaryDirectory() as tmp:
        layer = layer_blob(Path(tmp), busybox_entries(busybox, applets), compression="gzip")
        config = image_config([layer.diff_id], cmd=DEMO_CMD, env=DEMO_ENV)
        return write_oci_layout(dest, [layer], config, ref_name=ref_name,
                                platform={"architecture": "amd64", "os": "linux"})


def main(argv: list[str] | None = None) -> int:
    """``python -m image_builder.inputs.demo_image --out DIR [--busybox PATH]``."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--out", required=True, type=Path, help="OCI layout directory to create (replaced if it exists)")
    ap.add_argument("--busybox", type=Path, default=Path("/bin/busybox"), help="static busybox binary")
    args = ap.parse_args(argv)
    if args.out.exists():
        shutil.rmtree(args.out)
    digests = build_demo_image(args.out, busybox=args.busybox)
    print(f"demo image: {args.out} manifest {digests['manifest']}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
