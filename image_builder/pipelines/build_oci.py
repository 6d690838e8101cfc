"""``teeform build oci``: record a container image's registry identity in a measurement manifest.

Confidential Space (``shared/reference/clouds.md`` §3.1) releases keys on the token claim
``submods.container.image_digest``: the digest **a registry** reports for the image manifest the
launcher pulled. That value is known offline only when the exact manifest bytes are known and the push
does not rewrite them. This pipeline therefore accepts an **OCI image layout directory** only
(image-spec v1.1 ``image-layout.md``), and records:

* ``measurements.image_digest``: 64 lowercase hex digits, the SHA-256 of the image manifest blob the
  layout's ``index.json`` points to for the selected platform (nested indexes followed by
  :func:`image_builder.inputs.oci.open_image`). Stored **without** the ``sha256:`` prefix, like every
  other measurement (one hex format in :mod:`teeform.measurements`); consumers that need the
  registry's form (the CEL condition, ``tee-image-reference``) prepend ``sha256:``. This is the value
  ``skopeo inspect --raw oci:DIR | sha256sum`` prints and what ``docker://REG/IMG@sha256:<hex>``
  resolves to after ``skopeo copy --preserve-digests oci:DIR docker://REG/IMG:TAG`` (the copy does not
  re-encode a manifest it can push unchanged; ``--preserve-digests`` makes it fail instead of
  converting). OCI image-spec ``descriptor.md`` "Digests": the digest is over the exact blob bytes.
* ``measurements.image_id``: the config blob digest (64 hex), the image ID (image-spec ``config.md``
  "ImageID"), which Confidential Space reports as ``submods.container.image_id``.
* ``details``: ``image_digest`` / ``config_digest`` in ``sha256:<hex>`` form, the platform as the
  image config states it (``os``/``architecture``[/``variant``], image-spec ``config.md``), the
  manifest media type and size, every layer's digest, size and media type, the reference name from
  the index, and the push command that preserves the digest.
* ``artifact``: a byte-exact copy of the manifest blob, written as ``<name>.image-manifest.json``
  (so ``artifact.sha256`` equals ``image_digest``).
* ``inputs``: ``index`` (index.json), ``image-manifest``, ``image-config`` and one ``layer`` per
  layer blob (sha256 digests only), each with its size.

Every blob the push would upload is checked here: the manifest and config by
:func:`~image_builder.inputs.oci.open_image`, each layer blob's presence, size and SHA-256 by streaming
it once. A missing or altered blob is one :class:`~teeform.errors.TeeformError` naming it.

A ``docker save`` archive is refused: the legacy format holds no manifest blob at all (moby
``image/spec/v1.2.md``: ``manifest.json`` lists a config and layer tars), so the manifest a push would
create (and its digest) depends on the pushing tool's compression; Docker >= 25's OCI-in-tar holds
uncompressed layers that ``docker push`` compresses, which changes the manifest again. Convert it
with ``skopeo copy docker-archive:x.tar oci:DIR`` and build from ``DIR``.

Nothing is written unless every check passed: the manifest copy and the measurement manifest are
written with temp file + rename (:mod:`teeform.fsutil`), the copy removed again if the manifest fails.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import teeform
from image_builder.inputs import oci
from teeform.errors import TeeformError
from teeform.fsutil import CHUNK, atomic_write_bytes, ensure_output_dir
from teeform.manifest import (
    Artifact,
    ArtifactKind,
    Builder,
    InputDigest,
    Manifest,
    validate_manifest_dict,
    write_manifest,
)
from teeform.safeload import loads_json, read_limited

#: Manifest names and versions (they become file names; the same rule as ``build vm-image``).
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
#: ``--repository``: REGISTRY/PATH without tag or digest (OCI distribution-spec name grammar).
_REPOSITORY_RE = re.compile(r"^[a-z0-9.-]+(:[0-9]+)?(/[a-z0-9]+([._-][a-z0-9]+)*)+$")

#: Suffix of the byte-exact manifest blob copy written next to the measurement manifest.
IMAGE_MANIFEST_SUFFIX = ".image-manifest.json"

DOCKER_ARCHIVE_HINT = ("convert it to an OCI layout first: `skopeo copy docker-archive:IMAGE.tar oci:DIR`, then "
                       "`teeform build oci --image DIR` and push DIR with `skopeo copy --preserve-digests oci:DIR "
                       "docker://REGISTRY/REPO:TAG` (or `crane push DIR REGISTRY/REPO:TAG`)")


@dataclass(frozen=True)
class OciBuildConfig:
    """Inputs of :func:`build_oci_manifest`.

    Attributes:
        image: the OCI image layout directory.
        out: output directory (created).
        name: manifest name (default: the repository name from the index's ref annotation, else ``image``).
        version: manifest version string.
        platform: ``os/arch[/variant]`` to pick from a multi-platform index (None: the single image,
            else linux/amd64; :func:`image_builder.inputs.oci.open_image`).
        repository: ``REGISTRY/REPO`` the image will be pushed to, for the printed push command and
            ``details.image_reference`` (None: left as a placeholder).
        source_date_epoch: recorded in the manifest (nothing here is time-dependent).
    """

    image: Path
    out: Path
    name: str | None = None
    version: str = "0"
    platform: str | None = None
    repository: str | None = None
    source_date_epoch: int = 0


@dataclass(frozen=True)
class OciBuildResult:
    """What :func:`build_oci_manifest` wrote: the manifest path, the manifest copy and the values."""

    manifest_path: Path
    image_manifest_path: Path
    manifest: Manifest
    image_digest: str  # sha256:<hex>
    config_digest: str  # sha256:<hex>
    platform: str
    push_command: str


def _hex(digest: str, where: str, source: Path) -> str:
    alg, _, hexd = digest.partition(":")
    if alg != "sha256":
        raise TeeformError(f"{where} is {digest[:20]}...: only sha256 digests can be pinned (Confidential Space "
                           "reports sha256)", path=source, hint="re-export the image with sha256 digests")
    return hexd


def _check_layer(image: oci.OciImage, desc: oci.Descriptor, what: str) -> int:
    """Stream the layer blob ``desc`` once from the image's blob store
    (:class:`~image_builder.inputs.oci.LayoutStore`) and check its SHA-256 and size against ``desc``.

    Returns:
        the blob's size in bytes.

    Raises:
        TeeformError: a non-sha256 digest, a blob that cannot be opened (missing, not a regular file)
            or one that does not match ``desc``, each naming ``what``.
    """
    assert desc.digest is not None  # OCI layouts have layer descriptors
    alg, _, want = desc.digest.partition(":")
    if alg != "sha256":
        raise TeeformError(f"{what} has a {alg} digest; only sha256 layers are checked", path=image.source,
                           field=desc.location)
    h = hashlib.sha256()
    size = 0
    with contextlib.ExitStack() as stack:
        try:
            fh = stack.enter_context(image.store.open(desc.location))
        except TeeformError as exc:  # "blob <location> is missing", or not a regular file
            raise TeeformError(f"{what} {exc.message}: a push would fail", path=exc.path, field=exc.field,
                               hint="the layout is incomplete; re-export the whole image (skopeo copy ... oci:DIR)"
                               ) from None
        while chunk := fh.read(CHUNK):
            h.update(chunk)
            size += len(chunk)
    if h.hexdigest() != want or (desc.size is not None and size != desc.size):
        raise TeeformError(f"{what} blob does not match its descriptor ({desc.digest}, {desc.size} bytes): "
                           f"it hashes to sha256:{h.hexdigest()} ({size} bytes)", path=image.source,
                           field=desc.location)
    return size


def push_command(layout: Path, repository: str | None, image_digest: str) -> str:
    """The digest-preserving push of ``layout`` (skopeo, containers-transports(5) ``oci:`` / ``docker://``)."""
    repo = repository or "REGISTRY/REPO"
    return (f"skopeo copy --preserve-digests oci:{shlex.quote(str(layout))} docker://{repo}:TAG  "
            f"# then pull by digest: {repo}@{image_digest}")


def build_oci_manifest(config: OciBuildConfig) -> OciBuildResult:
    """Check the OCI layout ``config.image`` and write ``<name>.manifest.json`` (kind ``oci``) and
    ``<name>.image-manifest.json`` into ``config.out`` (module docstring).

    Raises:
        TeeformError: not an OCI layout (a docker-archive is refused with what to do instead), a
            malformed or inconsistent layout (a blob missing, or its digest/size not its descriptor's),
            a non-sha256 manifest/config digest; nothing is written then.
    """
    src = config.image
    if config.name is not None and not _NAME_RE.match(config.name):
        raise TeeformError(f"invalid name {config.name!r}", field="--name", hint="use [A-Za-z0-9][A-Za-z0-9._-]{0,63}")
    if not _NAME_RE.match(config.version):
        raise TeeformError(f"invalid version {config.version!r}", field="--version",
                           hint="use [A-Za-z0-9][A-Za-z0-9._-]{0,63}")
    if config.repository is not None and not _REPOSITORY_RE.match(config.repository):
        raise TeeformError(f"must be REGISTRY/PATH without tag or digest, got {config.repository!r}",
                           field="--repository")
    if not src.is_dir():
        if src.exists() or src.is_symlink():
            raise TeeformError(
                "a docker-archive cannot give the registry digest offline: `docker save` keeps no image manifest "
                "blob (legacy format) or uncompressed layers that `docker push` recompresses (OCI format), so the "
                "pushed manifest's digest is not known until after the push", path=src, field="--image",
                hint=DOCKER_ARCHIVE_HINT)
        raise TeeformError("image not found", path=src, field="--image")
    image = oci.open_image(src, platform=config.platform)
    assert image.manifest_digest is not None and image.manifest_size is not None  # OCI layouts always have one
    digest_hex = _hex(image.manifest_digest, "the image manifest digest", src)
    config_hex = _hex(image.config_digest, "the image config digest", src)
    # The manifest blob's exact bytes (open_image verified digest and size; read again to copy them).
    loc = f"blobs/sha256/{digest_hex}"
    man_bytes = read_limited(src / loc, oci.MAX_JSON_BLOB, what="image manifest blob")
    if hashlib.sha256(man_bytes).hexdigest() != digest_hex:
        raise TeeformError("the image manifest blob changed while it was read", path=src, field=loc)
    man = loads_json(man_bytes, source=f"{src}/{loc}")  # already parsed safely by open_image; bounded anyway
    index_bytes = read_limited(src / "index.json", oci.MAX_JSON_BLOB, what="index.json")

    inputs = [
        InputDigest("index", "index.json", hashlib.sha256(index_bytes).hexdigest(), len(index_bytes)),
        InputDigest("image-manifest", image.manifest_digest, digest_hex, len(man_bytes)),
    ]
    cfg_size = man.get("config", {}).get("size")
    inputs.append(InputDigest("image-config", image.config_digest, config_hex, cfg_size if isinstance(cfg_size, int) else None))
    layers: list[dict[str, Any]] = []
    for i, desc in enumerate(image.layers):
        size = _check_layer(image, desc, f"layer {i + 1}")
        assert desc.digest is not None
        inputs.append(InputDigest("layer", desc.digest, desc.digest.partition(":")[2], size))
        layers.append({"digest": desc.digest, "size": size, "media_type": desc.media_type})

    name = config.name or image.default_name or "image"
    image_digest = image.manifest_digest
    reference = f"{config.repository}@{image_digest}" if config.repository else None
    push = push_command(src, config.repository, image_digest)
    out = ensure_output_dir(config.out)
    copy_path = out / f"{name}{IMAGE_MANIFEST_SUFFIX}"
    manifest_path = out / f"{name}.manifest.json"
    manifest = Manifest(
        kind=ArtifactKind.OCI, name=name, version=config.version,
        artifact=Artifact(copy_path.name, len(man_bytes), digest_hex, hashlib.sha384(man_bytes).hexdigest()),
        measurements={"image_digest": digest_hex, "image_id": config_hex},
        inputs=tuple(inputs),
        builder=Builder("teeform", teeform.__version__),
        source_date_epoch=config.source_date_epoch,
        details={
            "image_digest": image_digest,
            "config_digest": image.config_digest,
            "platform": str(image.platform),
            "media_type": man.get("mediaType", oci.MT_OCI_MANIFEST),
            "manifest_size": len(man_bytes),
            "layers": layers,
            "ref_name": image.ref_name,
            "image_reference": reference,
            "push": push,
            "digest_note": ("image_digest = sha256 of the image manifest blob (OCI descriptor digest); a registry "
                            "serves the same bytes after a digest-preserving push"),
        },
    )
    validate_manifest_dict(json.loads(manifest.to_json()), source=str(manifest_path))
    atomic_write_bytes(copy_path, man_bytes)
    try:
        write_manifest(manifest, manifest_path)
    except BaseException:
        copy_path.unlink(missing_ok=True)
        raise
    return OciBuildResult(manifest_path, copy_path, manifest, image_digest, image.config_digest,
                          str(image.platform), push)


__all__ = ["OciBuildConfig", "OciBuildResult", "build_oci_manifest", "push_command", "IMAGE_MANIFEST_SUFFIX",
           "DOCKER_ARCHIVE_HINT"]
