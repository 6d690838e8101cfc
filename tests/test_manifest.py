"""The measurement manifest: canonical text, round trip, and validation errors naming the field."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from teeform.errors import TeeformError
from teeform.manifest import (
    Artifact,
    ArtifactKind,
    Builder,
    InputDigest,
    Manifest,
    load_manifest,
    manifest_sha256,
    write_manifest,
)

H96 = "ab" * 48
H64 = "cd" * 32


def eif_manifest(**over) -> Manifest:
    fields = dict(
        kind=ArtifactKind.EIF,
        name="agent",
        version="1.2.3",
        artifact=Artifact("agent.eif", 4096, H64, H96),
        measurements={"PCR0": H96, "PCR1": "01" * 48, "PCR2": "02" * 48, "ImageSha384": H96},
        inputs=(InputDigest("kernel", "bzImage", H64, 10), InputDigest("image", "sha256:" + H64, H64)),
        builder=Builder("teeform", "0.1.0"),
        source_date_epoch=1700000000,
        details={"eif_version": 4},
    )
    fields.update(over)
    return Manifest(**fields)


# The canonical serialisation is part of the format (a schema change must show up as a diff here):
# 2-space indent, sorted keys, trailing newline, `size` omitted when unknown.
EXPECTED_TEXT = """{
  "artifact": {
    "file_name": "agent.eif",
    "sha256": "%(h64)s",
    "sha384": "%(h96)s",
    "size": 4096
  },
  "builder": {
    "name": "teeform",
    "version": "0.1.0"
  },
  "details": {
    "eif_version": 4
  },
  "inputs": [
    {
      "name": "bzImage",
      "role": "kernel",
      "sha256": "%(h64)s",
      "size": 10
    },
    {
      "name": "sha256:%(h64)s",
      "role": "image",
      "sha256": "%(h64)s"
    }
  ],
  "kind": "eif",
  "measurements": {
    "ImageSha384": "%(h96)s",
    "PCR0": "%(h96)s",
    "PCR1": "%(p1)s",
    "PCR2": "%(p2)s"
  },
  "name": "agent",
  "schema_version": 1,
  "source_date_epoch": 1700000000,
  "version": "1.2.3"
}
""" % {"h64": H64, "h96": H96, "p1": "01" * 48, "p2": "02" * 48}  # noqa: UP031 (reads as the file)


def test_exact_text_and_round_trip():
    m = eif_manifest()
    assert m.to_json() == EXPECTED_TEXT
    assert Manifest.from_json(EXPECTED_TEXT) == m


def test_write_then_load(tmp_path: Path):
    p = tmp_path / "m.json"
    digest = write_manifest(eif_manifest(), p)
    assert load_manifest(p) == eif_manifest()
    assert manifest_sha256(p) == digest == hashlib.sha256(p.read_bytes()).hexdigest()  # independent: hashlib over the file
    assert [x.name for x in tmp_path.iterdir()] == ["m.json"]  # no temp files left behind


@pytest.mark.parametrize(
    "mutate, field, text",
    [
        (lambda d: d["measurements"].pop("PCR1"), "measurements", "'PCR1' is a required property"),
        (lambda d: d["measurements"].update(PCR0="AB" * 48), "measurements/PCR0", "does not match"),
        (lambda d: d["measurements"].update(PCR9=H96), "measurements/PCR9", "unknown measurement 'PCR9'"),
        (lambda d: d["measurements"].update(PCR8="ab"), "measurements/PCR8", "must be 96 lowercase hex digits"),
        (lambda d: d.update(kind="tarball"), "kind", "is not one of"),
        (lambda d: d["artifact"].update(file_name="../x.eif"), "artifact/file_name", "does not match"),
        (lambda d: d.update(schema_version=2), "schema_version", "1 was expected"),
        (lambda d: d.pop("inputs"), "(top level)", "'inputs' is a required property"),
    ],
)
def test_validation_names_file_and_field(tmp_path: Path, mutate, field, text):
    d = json.loads(eif_manifest().to_json())
    mutate(d)
    p = tmp_path / "bad.manifest.json"
    p.write_text(json.dumps(d))
    with pytest.raises(TeeformError) as ei:
        load_manifest(p)
    assert ei.value.path == str(p)
    assert ei.value.field == field
    assert text in ei.value.message


def test_vm_image_kind_requires_its_measurements():
    m = eif_manifest(kind=ArtifactKind.VM_IMAGE)  # EIF names on a vm-image manifest
    with pytest.raises(TeeformError, match="'roothash' is a required property"):
        Manifest.from_json(m.to_json())


def test_not_json_and_missing(tmp_path: Path):
    p = tmp_path / "x.json"
    p.write_text("{nope")
    with pytest.raises(TeeformError, match="not valid JSON"):
        load_manifest(p)
    with pytest.raises(TeeformError, match="manifest not found"):
        load_manifest(tmp_path / "absent.json")


def test_failed_write_leaves_nothing(tmp_path: Path):
    bad = eif_manifest(measurements={"PCR0": "zz"})
    with pytest.raises(TeeformError):
        write_manifest(bad, tmp_path / "m.json")
    assert list(tmp_path.iterdir()) == []


def test_debug_flag():
    assert not eif_manifest().debug
    zero = "0" * 96
    assert eif_manifest(measurements={"PCR0": zero, "PCR1": zero, "PCR2": zero, "ImageSha384": zero}).debug
