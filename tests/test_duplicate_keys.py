"""Duplicate keys are refused, never silently resolved (issue 7 item 3; teeform.safeload).

CPython's ``json`` and PyYAML both keep the *last* of two equal keys, so ``{"PCR0": A, "PCR0": B}``
or a stack file with two ``admins:`` would silently drop a value. RFC 8259 §4 says object names
"SHOULD be unique" and YAML 1.2.2 §3.2.1.1 that mapping keys are unique; teeform refuses a repeat
with one line naming the file and the key. The hostile documents are written by hand as raw text
(the stdlib cannot even produce them from a dict).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_seal import project  # noqa: F401  (fixture: a project with stacks dev and prod)

from teeform.errors import TeeformError
from teeform.safeload import loads_json, loads_yaml

# ------------------------------------------------------------------------------ the loaders


@pytest.mark.parametrize("doc, key", [
    (b'{"a": 1, "a": 2}', "'a'"),
    (b'{"x": {"PCR0": "00", "PCR1": "11", "PCR0": "22"}}', "'PCR0'"),
    (b'[{"ok": 1}, {"k": 1, "k": 1}]', "'k'"),           # equal values are still a duplicate
    (b'{"\\u0061": 1, "a": 2}', "'a'"),                  # equal after unescaping
])
def test_json_duplicate_key_is_one_error_naming_the_key(doc: bytes, key: str) -> None:
    with pytest.raises(TeeformError) as e:
        loads_json(doc, source="m.json")
    assert str(e.value).startswith(f"m.json: duplicate key {key} in a JSON object"), str(e.value)
    assert "\n" not in str(e.value)


def test_json_same_key_in_different_objects_is_fine() -> None:
    assert loads_json(b'{"a": {"k": 1}, "b": {"k": 2}}', source="m.json") == {"a": {"k": 1}, "b": {"k": 2}}


@pytest.mark.parametrize("doc, key, line", [
    ("a: 1\nb: 2\na: 3\n", "'a'", 3),
    ("config:\n  teeform:targets:\n    - name: x\n      name: y\n", "'name'", 4),
    ("{a: 1, a: 1}\n", "'a'", 1),
    ("1: x\n1.0: y\n", "1.0", 2),       # equal keys of different spelling collapse in the dict too
])
def test_yaml_duplicate_key_is_one_error_naming_the_key_and_line(doc: str, key: str, line: int) -> None:
    with pytest.raises(TeeformError) as e:
        loads_yaml(doc, source="s.yaml")
    assert str(e.value) == f"s.yaml: duplicate key {key} (line {line}; YAML mapping keys must be unique)"


def test_yaml_merge_key_may_be_overridden() -> None:
    """``<<: *base`` then an explicit key is YAML's merge type, not a duplicate (yaml.org/type/merge)."""
    doc = "base: &b {a: 1, c: 3}\nx:\n  <<: *b\n  a: 2\n"
    assert loads_yaml(doc, source="s.yaml") == {"base": {"a": 1, "c": 3}, "x": {"a": 2, "c": 3}}


def test_yaml_same_key_in_sibling_mappings_is_fine() -> None:
    assert loads_yaml("- {a: 1}\n- {a: 2}\n", source="s.yaml") == [{"a": 1}, {"a": 2}]


# ------------------------------------------------------------------------------ stack files

PROJECT = ("name: teeform\nruntime: python\nstackConfigDir: stacks\n"
           "config:\n  environment: {type: string, default: dev}\n")
TARGET = ("    - name: agent\n      cloud: aws\n      region: eu-west-1\n      tee: nitro-enclave\n"
          "      manifests: [build/a.manifest.json]\n")


def _stack(tmp_path: Path, body: str) -> Path:
    (tmp_path / "Pulumi.yaml").write_text(PROJECT)
    (tmp_path / "stacks").mkdir(exist_ok=True)
    f = tmp_path / "stacks" / "Pulumi.prod.yaml"
    f.write_text(body)
    return f


@pytest.mark.parametrize("body, message", [
    ("config:\n  teeform:environment: a\n  teeform:environment: b\n  teeform:targets:\n" + TARGET,
     "duplicate key 'teeform:environment' (line 3;"),
    ("config:\n  teeform:targets:\n" + TARGET + "      key:\n        admins: [arn:aws:iam::1:root]\n"
     "        admins: []\n", "duplicate key 'admins' (line 10;"),
    ("config:\n  teeform:targets:\n" + TARGET.replace("      region: eu-west-1\n",
                                                      "      region: eu-west-1\n      region: us-east-1\n"),
     "duplicate key 'region' (line 6;"),
    ("config:\n  teeform:targets:\n" + TARGET + "config: {}\n", "duplicate key 'config' (line 8;"),
    ("config:\n  targets:\n" + TARGET + "  teeform:targets:\n" + TARGET,
     "config.teeform:targets: duplicate key: 'targets' and 'teeform:targets' both set 'teeform:targets'"),
])
def test_stack_file_duplicate_keys(tmp_path: Path, body: str, message: str) -> None:
    from teeform.stack import load_stack

    f = _stack(tmp_path, body)
    with pytest.raises(TeeformError) as e:
        load_stack(tmp_path, "prod")
    assert e.value.path == str(f) and message in str(e.value), str(e.value)


def test_stack_file_without_duplicates_loads(tmp_path: Path) -> None:
    from teeform.stack import load_stack

    _stack(tmp_path, "config:\n  teeform:targets:\n" + TARGET)
    assert [t.name for t in load_stack(tmp_path, "prod").targets] == ["agent"]


def test_stack_file_duplicate_key_cli_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from pulumi_support import REPO

    from teeform.cli import main

    f = _stack(tmp_path, "config:\n  teeform:targets:\n" + TARGET + "      name: other\n")
    assert main(["preview", "--stack", "prod", "--project-dir", str(REPO), "--stack-file", str(f)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert f"{f}" in err[0] and "duplicate key 'name' (line 8;" in err[0], err
    assert "Traceback" not in "\n".join(err)


# ------------------------------------------------------------------------------ JSON file inputs


def _manifest_text() -> str:
    d = {"schema_version": 1, "kind": "eif", "name": "agent", "version": "1.0.0",
         "artifact": {"file_name": "agent.eif", "size": 1, "sha256": "0" * 64, "sha384": "0" * 96},
         "measurements": {"PCR0": "11" * 48, "PCR1": "22" * 48, "PCR2": "33" * 48, "ImageSha384": "11" * 48},
         "inputs": [{"role": "image", "name": "agent:1", "sha256": "1" * 64}],
         "builder": {"name": "teeform", "version": "0.1.0"}, "source_date_epoch": 0, "details": {}}
    return json.dumps(d)


def test_manifest_with_two_pcr0_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from teeform.cli import main

    good, bad = tmp_path / "good.manifest.json", tmp_path / "bad.manifest.json"
    good.write_text(_manifest_text())
    text = _manifest_text()
    bad.write_text(text.replace('"PCR0": "' + "11" * 48 + '"', '"PCR0": "' + "11" * 48 + '", "PCR0": "' + "44" * 48 + '"'))
    assert main(["measurements", "diff", str(good), str(bad)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.strip().splitlines()[0] == (f"error: {bad}: duplicate key 'PCR0' in a JSON object (RFC 8259 §4: "
                                           "names should be unique; which one wins is unspecified)")


def test_secrets_json_with_a_duplicate_name_writes_nothing(project: Path,  # noqa: F811
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    from teeform.cli import main

    proj = project
    secrets = proj / "s.json"
    secrets.write_text('{"TOKEN": "a", "TOKEN": "b"}')
    key = "arn:aws:kms:eu-west-1:111122223333:key/00000000-0000-0000-0000-000000000000"
    status = main(["seal", "--stack", "dev", "--in", str(secrets), "--out", str(proj / "sealed.json"), "--key-id", key,
                   "--endpoint-url", "http://127.0.0.1:9", "--project-dir", str(proj)])
    _out, err = capsys.readouterr()
    assert status == 2 and err.strip().splitlines()[0].startswith(f"error: {secrets}: duplicate key 'TOKEN'")
    assert not [p for p in proj.iterdir() if p.name.startswith(("sealed.json", ".sealed.json"))]


def test_sealed_file_with_a_duplicate_field_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from teeform.cli import main

    sealed = tmp_path / "sealed.json"
    sealed.write_text('{"format": "teeform-sealed-secrets", "version": 1, "key_id": "a", "key_id": "b"}')
    status = main(["unseal", "--in", str(sealed), "--out", str(tmp_path / "out.env"), "--endpoint-url", "http://127.0.0.1:9"])
    _out, err = capsys.readouterr()
    assert status == 2 and err.strip().splitlines()[0].startswith(f"error: {sealed}: duplicate key 'key_id'")
    assert not [p for p in tmp_path.iterdir() if "out.env" in p.name]


@pytest.mark.parametrize("which", ["index", "config"])
def test_oci_json_with_a_duplicate_key_names_the_document(tmp_path: Path, which: str) -> None:
    from test_hostile_images import _j, base_config, refused, write_layout

    from image_builder.inputs import oci

    if which == "config":
        cfg = _j(base_config())[:-1] + b',"architecture":"arm64"}'
        img = write_layout(tmp_path / "img", config_bytes=cfg)
        where = "image config sha256:"
    else:
        idx = b'{"schemaVersion":2,"schemaVersion":2,"manifests":[]}'
        img = write_layout(tmp_path / "img", index_bytes=idx)
        where = "index.json"
    msg = refused(oci.open_image, img)
    assert msg.startswith(f"{img}: ") and where in msg and "duplicate key" in msg, msg


def test_eif_metadata_with_a_duplicate_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from test_hostile_images import measure, write_eif_file

    p = write_eif_file(tmp_path / "x.eif", metadata=b'{"ImageName":"a","ImageName":"b"}')
    line = measure(p, capsys)
    assert line.startswith(f"error: {p}: section 2 (metadata): duplicate key 'ImageName'"), line
