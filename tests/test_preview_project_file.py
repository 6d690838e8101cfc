"""The offline preview reads ``Pulumi.yaml`` once per run (teeform.stack.read_stack returns the project
name with the config values), and the name it uses is the one in the file."""

from __future__ import annotations

from pathlib import Path

from pulumi_support import REPO, write_fake_eif_manifest
from test_preview_diff import repo_stack_with

import teeform.safeload
import teeform.stack
from teeform.preview import run_preview
from teeform.stack import read_stack


def test_run_preview_reads_the_project_file_once(tmp_path: Path, monkeypatch) -> None:
    img = write_fake_eif_manifest(tmp_path / "build")
    stack = repo_stack_with(tmp_path, "dev", [str(img.manifest_path)])
    reads: list[str] = []
    real = teeform.safeload.read_limited

    def counting(path, *args, **kwargs):  # type: ignore[no-untyped-def]
        if Path(path).name == "Pulumi.yaml":
            reads.append(str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(teeform.safeload, "read_limited", counting)
    monkeypatch.setattr(teeform.stack, "read_limited", counting, raising=False)
    run_preview(REPO, "dev", stack_file=stack)
    assert reads == [str(REPO / "Pulumi.yaml")]


def test_read_stack_returns_the_project_name_from_the_file(tmp_path: Path) -> None:
    (tmp_path / "Pulumi.yaml").write_text("name: agentproj\nruntime: python\nconfig:\n  region: eu-west-1\n")
    (tmp_path / "Pulumi.dev.yaml").write_text("config:\n  targets: []\n  aws:region: us-east-1\n")
    read = read_stack(tmp_path, "dev")
    assert read.project == "agentproj"
    assert read.values == {"agentproj:region": "eu-west-1", "agentproj:targets": [], "aws:region": "us-east-1"}
    assert read.source == str(tmp_path / "Pulumi.dev.yaml")


def test_allowed_manifests_follow_the_stack_order_not_the_registration_order(tmp_path: Path) -> None:
    """The mock engine may record registrations out of program order: the deployed manifest (index 0
    of a target's ``manifests`` list) must still come first, and only it is ``deployed``."""
    import datetime as dt

    from teeform.preview.manifests import MEASUREMENT_MANIFEST_TYPE, allowed_manifests
    from teeform.preview.model import RegisteredResource

    new = write_fake_eif_manifest(tmp_path / "new", version="1.1.0")
    old = write_fake_eif_manifest(tmp_path / "old", version="1.0.0")

    def reg(name: str, path: Path, index: float) -> RegisteredResource:
        inputs = {"target": "agent", "path": str(path), "sha256": "0" * 64, "index": index}  # wire numbers are floats
        return RegisteredResource(MEASUREMENT_MANIFEST_TYPE, name, f"urn:pulumi:dev::teeform::x::{name}", False, inputs)

    rows = allowed_manifests(tmp_path, [reg("agent-manifest-old", old.manifest_path, 1.0),
                                        reg("agent-manifest-new", new.manifest_path, 0.0)], dt.date(2026, 1, 1))
    assert [(r["key"], r["deployed"], r["manifest"]["version"]) for r in rows] == [("new", True, "1.1.0"),
                                                                                    ("old", False, "1.0.0")]


def test_allowed_manifests_follow_the_targets_stack_order(tmp_path: Path) -> None:
    """Targets come in the order of the stack's ``targets`` list however their manifests were
    registered (a 100-target preview printed agent4 before agent3 in some runs); a target the list
    does not name follows, in registration order."""
    import datetime as dt

    from teeform.preview.manifests import MEASUREMENT_MANIFEST_TYPE, allowed_manifests
    from teeform.preview.model import RegisteredResource

    img = write_fake_eif_manifest(tmp_path / "img")

    def reg(target: str) -> RegisteredResource:
        name = f"{target}-manifest-x"
        inputs = {"target": target, "path": str(img.manifest_path), "sha256": "0" * 64, "index": 0.0}
        return RegisteredResource(MEASUREMENT_MANIFEST_TYPE, name, f"urn:pulumi:dev::teeform::x::{name}", False, inputs)

    registered = [reg("agent4"), reg("extra"), reg("agent3"), reg("agent10")]
    rows = allowed_manifests(tmp_path, registered, dt.date(2026, 1, 1), ["agent3", "agent4", "agent10"])
    assert [r["target"] for r in rows] == ["agent3", "agent4", "agent10", "extra"]
    assert all(r["deployed"] for r in rows)
