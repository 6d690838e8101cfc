"""The measurement manifest: canonical text, round trip, and validation errors naming the field."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from teeform.errors import TeeformError
from teeform.manifest import (
    SCHEMA_PATH,
    SCHEMA_VERSION,
    SCHEMA_VERSIONS,
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
# 2-space indent, sorted keys, trailing newline, `size` omitted when unknown. This one is a schema-1
# manifest (as written before schema 2): artifact.sha384 present, as schema 1 requires.
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

# The same build as a schema-2 EIF manifest, as `teeform build eif` now writes it: no artifact.sha384.
_SHA384_LINE = '    "sha384": "%s",\n' % H96  # noqa: UP031
assert EXPECTED_TEXT.count(_SHA384_LINE) == 1 and EXPECTED_TEXT.count('"schema_version": 1,') == 1
EXPECTED_TEXT_V2 = EXPECTED_TEXT.replace(_SHA384_LINE, "").replace('"schema_version": 1,', '"schema_version": 2,')


def test_exact_text_and_round_trip():
    m = eif_manifest(schema_version=1)
    assert m.to_json() == EXPECTED_TEXT
    assert Manifest.from_json(EXPECTED_TEXT) == m
    assert Manifest.from_json(EXPECTED_TEXT).to_json() == EXPECTED_TEXT  # an old file reads and writes back unchanged


def test_schema_2_eif_manifest_without_sha384_validates_and_round_trips_byte_identically(tmp_path: Path):
    m = eif_manifest(artifact=Artifact("agent.eif", 4096, H64))
    assert m.schema_version == SCHEMA_VERSION == 2 and m.artifact.sha384 is None
    assert m.to_json() == EXPECTED_TEXT_V2
    assert "sha384" not in json.loads(m.to_json())["artifact"]
    p = tmp_path / "agent.manifest.json"
    digest = write_manifest(m, p)
    assert p.read_bytes() == EXPECTED_TEXT_V2.encode() and digest == hashlib.sha256(p.read_bytes()).hexdigest()
    loaded = load_manifest(p)
    assert loaded == m and loaded.artifact.sha384 is None
    assert loaded.to_json().encode() == p.read_bytes()
    write_manifest(loaded, tmp_path / "again.json")
    assert (tmp_path / "again.json").read_bytes() == p.read_bytes()


def test_schema_2_keeps_an_artifact_sha384_when_given():
    m = eif_manifest()  # schema 2 with sha384 (vm-image manifests write it; optional for every kind)
    text = m.to_json()
    assert json.loads(text)["artifact"]["sha384"] == H96 and json.loads(text)["schema_version"] == 2
    assert Manifest.from_json(text) == m and Manifest.from_json(text).to_json() == text


def test_schema_versions_are_the_json_schemas():
    schema = json.loads(SCHEMA_PATH.read_text())
    assert tuple(schema["properties"]["schema_version"]["enum"]) == SCHEMA_VERSIONS == (1, 2)
    assert SCHEMA_VERSION == max(SCHEMA_VERSIONS)


def test_a_schema_1_manifest_without_sha384_is_not_written(tmp_path: Path):
    with pytest.raises(TeeformError) as ei:
        write_manifest(eif_manifest(schema_version=1, artifact=Artifact("agent.eif", 4096, H64)), tmp_path / "m.json")
    assert ei.value.field == "artifact" and "'sha384' is a required property" in ei.value.message
    assert list(tmp_path.iterdir()) == []


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
        (lambda d: d.update(schema_version=3), "schema_version", "3 is not one of [1, 2]"),
        (lambda d: d.update(schema_version=0), "schema_version", "0 is not one of [1, 2]"),
        # schema 1 still requires artifact.sha384 (old files validate exactly as before)
        (lambda d: (d.update(schema_version=1), d["artifact"].pop("sha384")), "artifact", "'sha384' is a required property"),
        (lambda d: (d.update(schema_version=1), d["artifact"].update(sha384="ab" * 32)), "artifact/sha384", "does not match"),
        # schema 2: optional, but a present sha384 must be 96 lowercase hex digits
        (lambda d: d["artifact"].update(sha384="AB" * 48), "artifact/sha384", "does not match"),
        (lambda d: d["artifact"].update(sha384="ab" * 32), "artifact/sha384", "does not match"),
        (lambda d: d["artifact"].update(sha384="ab" * 48 + "\n"), "artifact/sha384", "must be 96 lowercase hex digits"),
        (lambda d: d["artifact"].update(sha384=None), "artifact/sha384", "None is not of type 'string'"),
        (lambda d: d["artifact"].pop("sha256"), "artifact", "'sha256' is a required property"),
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
