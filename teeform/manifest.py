"""The measurement manifest: what was built, from which inputs, and what it will measure as.

One manifest is written next to every artifact teeform builds (``<name>.manifest.json``). The
Pulumi program reads manifests and feeds their measurements into key release policies and stack
outputs, so a hash is never copied by hand.

Format (owned by teeform; JSON Schema in ``teeform/schema/manifest.schema.json``):

.. code-block:: json

    {
      "schema_version": 2,                # SCHEMA_VERSION; 1 is still read (see below)
      "kind": "eif",                      # ArtifactKind: "eif" | "vm-image" | "oci"
      "name": "openclaw-agent", "version": "1.0.0",
      "artifact": {"file_name": "openclaw-agent.eif", "size": 123, "sha256": "<64 hex>"},  # + "sha384" (optional)
      "measurements": {"PCR0": "<96 hex>", ...},   # kind-specific names, lowercase hex
      "inputs": [{"role": "kernel", "name": "bzImage", "sha256": "<64 hex>", "size": 1}, ...],
      "builder": {"name": "teeform", "version": "0.1.0"},
      "source_date_epoch": 0,
      "details": {...}                    # kind-specific, free-form JSON (event logs, assumptions)
    }

Measurement names per kind (:data:`REQUIRED_MEASUREMENTS`, :data:`OPTIONAL_MEASUREMENTS`, both
derived from the one table :data:`teeform.measurements.MEASUREMENTS`):

* ``eif``: ``PCR0``, ``PCR1``, ``PCR2``, ``ImageSha384`` (= PCR0, AWS KMS condition key
  ``kms:RecipientAttestation:ImageSha384``), and ``PCR8`` when the EIF is signed. 96 lowercase hex
  digits (SHA-384). Source: ``shared/reference/eif-nitro.md`` §2.2, §2.5.
* ``vm-image``: ``roothash`` (dm-verity, SHA-256), ``uki_authenticode_sha256`` /
  ``uki_authenticode_sha384`` (PE Authenticode), ``pcr11_sha256`` / ``pcr11_sha384`` (systemd-stub
  PCR 11, no phase), and optionally ``pcr12_sha256`` / ``pcr12_sha384``, ``rtmr1``, ``rtmr2``,
  ``snp_launch_digest``. Source: ``shared/reference/uki-verity.md`` §1, §4-§7.
* ``oci``: ``image_digest`` (the registry digest of the image manifest: SHA-256 of its exact bytes,
  64 hex digits without ``sha256:``) and ``image_id`` (the config digest), written by
  ``teeform build oci`` (:mod:`image_builder.pipelines.build_oci`). Source: OCI image-spec
  ``descriptor.md`` "Digests"; ``shared/reference/clouds.md`` §3.1 (Confidential Space
  ``submods.container.image_digest``).

The artifact (the built file) is identified by its SHA-256 (``artifact.sha256``, as OCI, in-toto/DSSE
subjects and Rekor identify files): the EIF's S3 object key, the enclave host's check before
``nitro-cli run-enclave`` and signed statements use it. ``artifact.sha384`` (96 hex digits, the SHA-384
of the same file) is optional in schema 2: EIF manifests omit it (``teeform build eif`` no longer hashes
the whole file twice), vm-image manifests still write it (the raw disk's S3 key and AMI name use it).
The SHA-384 values that matter for attestation are the measurements (PCRs), not the file's digest.
Schema 1 manifests (written before) are still read and still require ``artifact.sha384``; a manifest
records the version it was written with (:attr:`Manifest.schema_version`), so reading and writing back
gives the same bytes.

Serialisation is canonical: ``json.dumps(indent=2, sort_keys=True)`` plus a newline, so two
builds of the same inputs give byte-identical manifests.

Reading hostile manifests (:func:`load_manifest`, :meth:`Manifest.from_json`): the file is read with
:func:`teeform.safeload.read_limited` (a regular file of at most :data:`MAX_MANIFEST_BYTES`; a
directory, FIFO or ``/dev/zero`` is refused without reading), decoded as strict UTF-8 and parsed with
:func:`teeform.safeload.loads_json` (nesting <= 64, integers <= 20 digits, no ``NaN``/``Infinity``,
no lone surrogates). After the JSON Schema, :func:`validate_manifest_dict` also requires the integer
fields to be JSON integers (JSON Schema's ``"integer"`` accepts ``1.0``) and the digests to be exactly
their hex length (the schema's ``pattern`` ``$`` also matches before a trailing newline).
"""

from __future__ import annotations

import enum
import functools
import hashlib
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from teeform import measurements as mtable
from teeform.errors import TeeformError
from teeform.fsutil import atomic_write_text
from teeform.safeload import SMALL_JSON_LIMIT, loads_json, read_limited

#: The manifest schema version teeform writes. 2: ``artifact.sha384`` optional (EIF manifests omit it).
SCHEMA_VERSION = 2
#: Every schema version :func:`validate_manifest_dict` accepts (1: ``artifact.sha384`` required).
SCHEMA_VERSIONS: tuple[int, ...] = (1, 2)
SCHEMA_PATH = Path(__file__).parent / "schema" / "manifest.schema.json"

_HEX = re.compile(r"[0-9a-f]+")
#: Largest manifest file read (:data:`teeform.safeload.SMALL_JSON_LIMIT`, 16 MiB).
MAX_MANIFEST_BYTES = SMALL_JSON_LIMIT


class ArtifactKind(enum.StrEnum):
    """What a manifest describes. New kinds are added here and in the JSON Schema."""

    EIF = "eif"
    VM_IMAGE = "vm-image"
    OCI = "oci"


#: Measurements every manifest of a kind must carry: name -> hex length (from the one table,
#: :data:`teeform.measurements.MEASUREMENTS`).
REQUIRED_MEASUREMENTS: dict[ArtifactKind, dict[str, int]] = {k: mtable.required(k.value) for k in ArtifactKind}

#: Measurements a manifest of a kind may carry: name -> hex length (same table).
OPTIONAL_MEASUREMENTS: dict[ArtifactKind, dict[str, int]] = {k: mtable.optional(k.value) for k in ArtifactKind}


@dataclass(frozen=True)
class Artifact:
    """The built file: its name (no directory), size in bytes, SHA-256 (64 lowercase hex, the file's
    identity) and optionally SHA-384 (96 lowercase hex; None when the manifest has none, as schema-2 EIF
    manifests; module docstring)."""

    file_name: str
    size: int
    sha256: str
    sha384: str | None = None

    @classmethod
    def from_file(cls, path: os.PathLike[str] | str) -> Artifact:
        """Describe ``path`` with both its SHA-256 and SHA-384, streaming it once (no whole-file read)."""
        from teeform.fsutil import hash_file

        p = Path(path)
        digests = hash_file(p, ("sha256", "sha384"))
        return cls(p.name, p.stat().st_size, digests["sha256"], digests["sha384"])


@dataclass(frozen=True)
class InputDigest:
    """One build input: its role (``kernel``, ``init``, ``nsm``, ``cmdline``, ``image``, ...), a
    display name (file name or image reference), its SHA-256 (lowercase hex, of the exact bytes
    used; for ``image`` the OCI manifest digest without ``sha256:``) and optionally its size."""

    role: str
    name: str
    sha256: str
    size: int | None = None


@dataclass(frozen=True)
class Builder:
    """The tool that produced the artifact."""

    name: str = "teeform"
    version: str = ""


@dataclass(frozen=True)
class Manifest:
    """A measurement manifest (see the module docstring for the format).

    ``measurements`` maps a kind-specific name to lowercase hex; ``details`` is kind-specific JSON
    (event logs, what each value assumes). Instances are immutable; use :meth:`to_json` /
    :meth:`from_json` and :func:`write_manifest` / :func:`load_manifest` for I/O.
    """

    kind: ArtifactKind
    name: str
    version: str
    artifact: Artifact
    measurements: Mapping[str, str]
    inputs: tuple[InputDigest, ...]
    builder: Builder
    source_date_epoch: int
    details: Mapping[str, Any] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    # ------------------------------------------------------------------ serialisation
    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-ready dict (plain types only; ``artifact.sha384`` and ``inputs[].size`` omitted when None)."""
        artifact: dict[str, Any] = {"file_name": self.artifact.file_name, "size": self.artifact.size,
                                    "sha256": self.artifact.sha256}
        if self.artifact.sha384 is not None:
            artifact["sha384"] = self.artifact.sha384
        return {
            "schema_version": self.schema_version,
            "kind": self.kind.value,
            "name": self.name,
            "version": self.version,
            "artifact": artifact,
            "measurements": dict(self.measurements),
            "inputs": [
                {k: v for k, v in (("role", i.role), ("name", i.name), ("sha256", i.sha256), ("size", i.size)) if v is not None}
                for i in self.inputs
            ],
            "builder": {"name": self.builder.name, "version": self.builder.version},
            "source_date_epoch": self.source_date_epoch,
            "details": dict(self.details),
        }

    def to_json(self) -> str:
        """Canonical JSON text: 2-space indent, sorted keys, trailing newline."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "<manifest>") -> Manifest:
        """Validate ``data`` against the JSON Schema and the per-kind measurement table, then build.

        Raises:
            TeeformError: naming ``source`` and the offending field.
        """
        validate_manifest_dict(data, source=source)
        kind = ArtifactKind(data["kind"])
        a = data["artifact"]
        return cls(
            schema_version=int(data["schema_version"]),
            kind=kind,
            name=data["name"],
            version=data["version"],
            artifact=Artifact(a["file_name"], int(a["size"]), a["sha256"], a.get("sha384")),
            measurements=dict(data["measurements"]),
            inputs=tuple(InputDigest(i["role"], i["name"], i["sha256"], i.get("size")) for i in data["inputs"]),
            builder=Builder(data["builder"]["name"], data["builder"]["version"]),
            source_date_epoch=int(data["source_date_epoch"]),
            details=dict(data.get("details") or {}),
        )

    @classmethod
    def from_json(cls, text: str | bytes, *, source: str = "<manifest>") -> Manifest:
        """Parse JSON ``text`` (str, or bytes decoded as strict UTF-8) with
        :func:`teeform.safeload.loads_json` (see the module docstring), then :meth:`from_dict`."""
        data = loads_json(text, source=source)
        if not isinstance(data, dict):
            raise TeeformError("a manifest must be a JSON object", path=source)
        return cls.from_dict(data, source=source)

    # ------------------------------------------------------------------ helpers
    @property
    def debug(self) -> bool:
        """True when the image was measured in a debug configuration (all-zero PCR0/1/2/8 for EIFs)."""
        return any(self.measurements.get(k) == "0" * mtable.hex_len(k) for k in mtable.NITRO_PINNABLE_PCRS)


def _schema() -> dict[str, Any]:
    with open(SCHEMA_PATH, encoding="utf-8") as fh:
        return json.load(fh)


@functools.lru_cache(maxsize=1)
def _validators() -> tuple[Any, Any]:
    """(validator of the whole schema, validator of one ``inputs`` item), built once."""
    import jsonschema

    schema = _schema()
    item = {**schema["properties"]["inputs"]["items"], "$defs": schema["$defs"]}
    return jsonschema.Draft202012Validator(schema), jsonschema.Draft202012Validator(item)


_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


def _plainly_valid_input(item: Any) -> bool:
    """True only for an ``inputs`` item the schema certainly accepts (conservative: anything else goes
    to jsonschema; ``tests/test_fuzz_cli_parsers.py`` checks the implication on generated items)."""
    return (type(item) is dict and item.keys() <= {"role", "name", "sha256", "size"}
            and type(item.get("role")) is str and item["role"] != "" and type(item.get("name")) is str
            and type(item.get("sha256")) is str and _SHA256_HEX.fullmatch(item["sha256"]) is not None
            and ("size" not in item or (type(item["size"]) is int and item["size"] >= 0)))


def _schema_errors(data: Mapping[str, Any]) -> list[tuple[list[Any], str]]:
    """All JSON Schema errors as (JSON path, message), sorted by path (stable).

    jsonschema costs ~60 µs per ``inputs`` item (10 s for 100,000), so items that are plainly valid
    (:func:`_plainly_valid_input`) skip it; the rest are validated with the item subschema and report
    exactly what the whole-document validation would.
    """
    whole, item = _validators()
    inputs = data.get("inputs") if isinstance(data, Mapping) else None
    if not isinstance(inputs, list):
        errors = [(list(e.absolute_path), e.message) for e in whole.iter_errors(data)]
    else:
        errors = [(list(e.absolute_path), e.message) for e in whole.iter_errors({**data, "inputs": []})]
        for i, inp in enumerate(inputs):
            if not _plainly_valid_input(inp):
                errors += [(["inputs", i, *e.absolute_path], e.message) for e in item.iter_errors(inp)]
    return sorted(errors, key=lambda e: e[0])


def validate_manifest_dict(data: Mapping[str, Any], *, source: str = "<manifest>") -> None:
    """Check ``data`` against ``manifest.schema.json`` and the per-kind measurement names/lengths.

    Both :data:`SCHEMA_VERSIONS` are accepted: ``schema_version`` 1 requires ``artifact.sha384``, 2 does
    not (when present it must be 96 lowercase hex digits in either).

    Raises:
        TeeformError: with ``path=source`` and ``field`` set to the JSON path of the first error.
    """
    errors = _schema_errors(data)
    if errors:
        path, message = errors[0]
        where = "/".join(str(p) for p in path) or "(top level)"
        raise TeeformError(message, path=source, field=where, hint="see teeform/schema/manifest.schema.json")
    _check_exact(data, source)
    kind = ArtifactKind(data["kind"])
    meas = data["measurements"]
    required, optional = REQUIRED_MEASUREMENTS[kind], OPTIONAL_MEASUREMENTS[kind]
    for name in required:
        if name not in meas:
            raise TeeformError(f"missing measurement {name!r} (required for kind {kind.value!r})", path=source, field="measurements")
    for name, value in meas.items():
        length = required.get(name) or optional.get(name)
        if length is None:
            raise TeeformError(f"unknown measurement {name!r} for kind {kind.value!r}", path=source, field=f"measurements/{name}")
        if not isinstance(value, str) or len(value) != length or not _HEX.fullmatch(value):
            raise TeeformError(
                f"must be {length} lowercase hex digits, got {value!r}", path=source, field=f"measurements/{name}"
            )


def _check_exact(data: Mapping[str, Any], source: str) -> None:
    """What the JSON Schema lets through (module docstring): ``1.0`` for integers, ``"<hex>\\n"`` digests."""
    a = data["artifact"]
    ints = [("artifact/size", a["size"]), ("source_date_epoch", data["source_date_epoch"])]
    digests = [("artifact/sha256", a["sha256"], 64)]
    if "sha384" in a:  # optional in schema 2 (schema 1 requires it: the JSON Schema checked that)
        digests.append(("artifact/sha384", a["sha384"], 96))
    for i, inp in enumerate(data["inputs"]):
        if "size" in inp:
            ints.append((f"inputs/{i}/size", inp["size"]))
        digests.append((f"inputs/{i}/sha256", inp["sha256"], 64))
    for where, value in ints:
        if not isinstance(value, int) or isinstance(value, bool):
            raise TeeformError(f"must be a JSON integer, got {value!r}", path=source, field=where)
    for where, value, length in digests:
        if len(value) != length or not _HEX.fullmatch(value):
            raise TeeformError(f"must be {length} lowercase hex digits, got {value!r}", path=source, field=where)


def load_manifest(path: os.PathLike[str] | str) -> Manifest:
    """Read and validate the manifest at ``path`` (at most :data:`MAX_MANIFEST_BYTES`, module docstring).

    Raises:
        TeeformError: the file is missing, not a regular file, too large, unreadable, not UTF-8, not
            (acceptable) JSON, or fails validation (naming the field).
    """
    p = Path(path)
    if not p.exists() and not p.is_symlink():
        raise TeeformError("manifest not found", path=p, hint="build one with `teeform build eif ...` (or `make demo`)")
    data = read_limited(p, MAX_MANIFEST_BYTES, what="manifest")
    return Manifest.from_json(data, source=str(p))


def manifest_sha256(path: os.PathLike[str] | str) -> str:
    """SHA-256 (lowercase hex) of the manifest file's exact bytes, as exported in stack outputs
    (read with the same bound as :func:`load_manifest`)."""
    return hashlib.sha256(read_limited(path, MAX_MANIFEST_BYTES, what="manifest")).hexdigest()


def write_manifest(manifest: Manifest, path: os.PathLike[str] | str) -> str:
    """Validate and atomically write ``manifest`` to ``path`` (temp file + rename).

    Returns:
        the SHA-256 (hex) of the written bytes.
    """
    text = manifest.to_json()
    validate_manifest_dict(json.loads(text), source=str(path))
    atomic_write_text(path, text)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def check_artifact_file(path: Path, *, what: str, size: int | None, algorithm: str, digest: str, manifest_path: Path,
                        build_hint: str) -> None:
    """Check that the file at ``path`` is the one ``manifest_path`` records: present, ``size`` bytes (when
    given) and ``algorithm`` digest ``digest`` (lowercase hex; hashed once per run, teeform.fsutil.hash_file).

    ``what`` names the file in messages ("EIF", "raw disk", "gce-tar artifact"); ``build_hint`` says how
    to build it.

    Raises:
        TeeformError: naming ``path``: missing, or its size or digest differ from the manifest's.
    """
    from teeform.fsutil import hash_file

    if not path.is_file():
        raise TeeformError(f"the {what} {path.name} described by the manifest is not on disk", path=path,
                           hint=f"build it next to {manifest_path} ({build_hint})")
    actual = path.stat().st_size
    if size is not None and actual != size:
        raise TeeformError(f"{what} is {actual} bytes but the manifest says {size}", path=path,
                           hint=f"rebuild, or use the manifest written with this {what} ({manifest_path})")
    got = hash_file(path, (algorithm,))[algorithm]
    if got != digest.lower():
        raise TeeformError(f"{what} {algorithm} {got} does not match the manifest's {digest}", path=path,
                           hint=f"rebuild, or use the manifest written with this {what} ({manifest_path})")


def manifest_keys(manifests: Sequence[Manifest]) -> list[str]:
    """Export keys for a target's manifests: the name, or ``name@version`` when names repeat (the stack
    outputs' keys, components/registry.py, and ``teeform export tfvars``'s).

    Raises:
        TeeformError: two manifests share both name and version (the same build listed twice).
    """
    names = [m.name for m in manifests]
    keys = [m.name if names.count(m.name) == 1 else f"{m.name}@{m.version}" for m in manifests]
    dup = sorted({k for k in keys if keys.count(k) > 1})
    if dup:
        raise TeeformError(f"manifest(s) {dup} listed more than once (same name and version)")
    return keys
