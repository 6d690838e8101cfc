"""Hostile pack-config JSON and ``Pulumi.yaml`` given to ``teeform preview`` (issue 7 item 3).

Both are read with :mod:`teeform.safeload` (bounded, regular files only, duplicate keys refused):
each bad input is one line naming the file (and the field where there is one), exit 2, no
traceback, nothing printed on stdout. docs/hostile-inputs.md lists the rows.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pulumi_support import REPO, nitro_target, write_fake_eif_manifest, write_stack_file

from teeform.cli import main
from teeform.errors import TeeformError
from teeform.preview import project_name, read_pack_config

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    if "--project-dir" not in args:
        args = ("--project-dir", str(REPO), *args)
    rc = main(["preview", *args])
    out, err = capsys.readouterr()
    return rc, out, err


def _one_error_line(err: str) -> str:
    assert "Traceback" not in err and "Future exception" not in err, err
    lines = [ln for ln in err.splitlines() if ln.startswith("error: ")]
    assert len(lines) == 1, err
    return lines[0]


def _hostile(tmp_path: Path, kind: str, *, json_doc: bool) -> Path:
    """A file of ``kind`` (JSON for the pack config, YAML for Pulumi.yaml)."""
    f = tmp_path / ("pack.json" if json_doc else "Pulumi.yaml")
    if kind == "directory":
        f.mkdir()
    elif kind == "dev-zero":
        os.symlink("/dev/zero", f)
    elif kind == "duplicate-key":
        f.write_text('{"all": "advisory", "all": "mandatory"}' if json_doc else "name: teeform\nname: other\n")
    elif kind == "deep":
        f.write_text(("[" * 65 + "]" * 65) if json_doc else "name: teeform\nx: " + "[" * 65 + "]" * 65 + "\n")
    elif kind == "not-a-mapping":
        f.write_text('["all"]' if json_doc else "- name\n- teeform\n")
    return f


PACK_MESSAGES = {
    "duplicate-key": "duplicate key 'all' in a JSON object",
    "deep": "JSON nested 65 levels deep (limit 64)",
    "not-a-mapping": "a policy-pack config must be a JSON object",
    "dev-zero": "policy config is not a regular file",
    "directory": "policy config is a directory",
}


@pytest.mark.parametrize("kind", sorted(PACK_MESSAGES))
def test_hostile_pack_config_is_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str) -> None:
    img = write_fake_eif_manifest(tmp_path / "build")
    stack = write_stack_file(tmp_path / "Pulumi.dev.yaml", [nitro_target([img.manifest_path])])
    cfg = _hostile(tmp_path, kind, json_doc=True)
    with pytest.raises(TeeformError) as exc:
        read_pack_config(cfg, project_dir=REPO)
    assert exc.value.path == str(cfg) and PACK_MESSAGES[kind] in exc.value.message
    rc, out, err = _run(capsys, "--stack", "dev", "--stack-file", str(stack), "--policy-config", str(cfg))
    assert (rc, out) == (2, "")
    assert _one_error_line(err).startswith(f"error: {cfg}: {PACK_MESSAGES[kind]}")


PROJECT_MESSAGES = {
    "duplicate-key": ("", "duplicate key 'name' (line 2; YAML mapping keys must be unique)"),
    "deep": ("", "YAML nested more than 64 levels deep"),
    "not-a-mapping": ("(top level)", "must be a YAML mapping, got list"),
    "dev-zero": ("", "project file is not a regular file"),
    "directory": ("", "project file is a directory"),
}


@pytest.mark.parametrize("kind", sorted(PROJECT_MESSAGES))
def test_hostile_pulumi_yaml_is_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str) -> None:
    project = tmp_path / "project"
    project.mkdir()
    f = _hostile(project, kind, json_doc=False)
    field, message = PROJECT_MESSAGES[kind]
    with pytest.raises(TeeformError) as exc:
        project_name(project)
    assert exc.value.path == str(f) and exc.value.message == message and (exc.value.field or "") == field
    img = write_fake_eif_manifest(tmp_path / "build")
    stack = write_stack_file(tmp_path / "Pulumi.dev.yaml", [nitro_target([img.manifest_path])])
    rc, out, err = _run(capsys, "--stack", "dev", "--stack-file", str(stack), "--project-dir", str(project))
    assert (rc, out) == (2, "")
    line = _one_error_line(err)
    assert line.startswith(f"error: {f}: ") and message.split(" (")[0].split(": ")[-1] in line, line


def test_project_name_must_be_a_string(tmp_path: Path) -> None:
    (tmp_path / "Pulumi.yaml").write_text("name: {a: 1}\n")
    with pytest.raises(TeeformError) as exc:
        project_name(tmp_path)
    assert exc.value.render() == f"{tmp_path / 'Pulumi.yaml'}: name: must be a non-empty string, got dict"
    (tmp_path / "Pulumi.yaml").write_text("name: other\nruntime: python\n")
    assert project_name(tmp_path) == "other"
    assert project_name(REPO) == "teeform"
