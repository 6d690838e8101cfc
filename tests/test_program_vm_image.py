"""The Pulumi program (__main__.py) with ``vm-image`` manifests: SEV-SNP and TDX targets (issue 4, item 8).

The program must accept a manifest written by ``teeform build vm-image`` for a target whose TEE
type consumes vm-images (sev-snp, tdx), register it as a ``teeform:index:MeasurementManifest``
and export every measurement the manifest records as stack outputs. The cloud components that
consume them come in their own issues, so such targets create no cloud resources yet.

The expected outputs are the manifest file's own values (read back with ``json``, not through
teeform), and ``manifest_sha256`` is hashlib over the file bytes.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from conftest import busybox_rootfs, locked, require_tool
from pulumi_support import REPO, by_type, measurements_only_stand_ins, run, write_stack_file

from teeform.manifest import Artifact, ArtifactKind, Builder, Manifest, write_manifest

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


# Every shipped vm-image pair creates cloud resources now (issues 8-11), each tested in its own module. What this
# module tests is the cloud-neutral part of the program (a vm-image manifest is loaded, registered and its
# measurements exported), so measurements-only stand-ins replace gcp/sev-snp, gcp/tdx and alicloud/tdx.
@pytest.fixture(autouse=True)
def _measurements_only(monkeypatch: pytest.MonkeyPatch) -> None:
    measurements_only_stand_ins(monkeypatch)



@pytest.fixture(scope="module")
def vm_manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real vm-image manifest: `teeform build vm-image` on a tiny busybox root."""
    for t in ("busybox", "veritysetup", "mkfs.erofs", "mkfs.vfat", "mcopy"):
        require_tool(t)
    kernel = locked("kernel.vmlinuz")
    tmp = tmp_path_factory.mktemp("vm")
    root = busybox_rootfs(tmp)
    from teeform.cli import main

    status = main(["build", "vm-image", "--rootfs", str(root), "--kernel", str(kernel),
                   "--stub", str(locked("bookworm.stub")), "--out", str(tmp / "out"),
                   "--name", "agent-vm", "--version", "1.0.0"])
    assert status == 0
    return tmp / "out" / "agent-vm.manifest.json"


def _target(name: str, cloud: str, tee: str, manifests: list[Path]) -> dict:
    return {"name": name, "cloud": cloud, "region": "r1", "tee": tee, "manifests": [str(m) for m in manifests]}


@pytest.mark.integration
@pytest.mark.parametrize(("cloud", "tee"), [("gcp", "sev-snp"), ("gcp", "tdx")])
def test_built_vm_image_manifest_exports_its_measurements(vm_manifest: Path, cloud: str, tee: str) -> None:
    doc = json.loads(vm_manifest.read_text())
    resources, outputs, _ = run([_target("vm", cloud, tee, [vm_manifest])])
    assert list(outputs) == ["measurements", "manifest_sha256"]
    assert outputs["measurements"] == {"agent-vm": doc["measurements"]}
    assert {"roothash", "uki_authenticode_sha256", "uki_authenticode_sha384", "pcr11_sha256", "pcr11_sha384",
            "pcr12_sha256", "pcr12_sha384", "rtmr1"} <= set(outputs["measurements"]["agent-vm"])
    assert outputs["manifest_sha256"] == {"agent-vm": hashlib.sha256(vm_manifest.read_bytes()).hexdigest()}
    (mm,) = by_type(resources, "teeform:index:MeasurementManifest")
    assert mm.name == "vm-manifest-agent-vm"
    assert mm.inputs["kind"] == "vm-image" and mm.inputs["measurements"] == doc["measurements"]
    # Measurements only: no cloud resources for SEV-SNP / TDX targets yet.
    assert [r.type for r in resources if not r.type.startswith(("teeform:", "pulumi:"))] == []


@pytest.mark.integration
def test_snp_and_tdx_targets_side_by_side_keyed_by_target(vm_manifest: Path) -> None:
    doc = json.loads(vm_manifest.read_text())
    resources, outputs, _ = run([_target("snp", "gcp", "sev-snp", [vm_manifest]),
                                 _target("td", "gcp", "tdx", [vm_manifest])])
    assert outputs["measurements"] == {"snp": {"agent-vm": doc["measurements"]}, "td": {"agent-vm": doc["measurements"]}}
    assert set(outputs["manifest_sha256"]) == {"snp", "td"}
    assert sorted(r.name for r in by_type(resources, "teeform:index:MeasurementManifest")) == [
        "snp-manifest-agent-vm", "td-manifest-agent-vm"]


def _minimal_vm_manifest(directory: Path, version: str, label: str) -> Path:
    """A vm-image manifest with only the required measurements (made-up hex, not golden values)."""
    directory.mkdir(parents=True, exist_ok=True)
    h = lambda s, n: hashlib.sha384(f"{label}:{s}".encode()).hexdigest()[:n]  # noqa: E731
    meas = {"roothash": h("r", 64), "uki_authenticode_sha256": h("a", 64), "uki_authenticode_sha384": h("a", 96),
            "pcr11_sha256": h("p", 64), "pcr11_sha384": h("p", 96)}
    m = Manifest(kind=ArtifactKind.VM_IMAGE, name="agent-vm", version=version,
                 artifact=Artifact("agent-vm.raw", 1, h("f", 64), h("f", 96)), measurements=meas, inputs=(),
                 builder=Builder("teeform", "test"), source_date_epoch=0)
    path = directory / "agent-vm.manifest.json"
    write_manifest(m, path)
    return path


def test_rollout_of_two_vm_image_versions_and_only_recorded_values(tmp_path: Path) -> None:
    """Two allowed versions of the same image (a rollout) are exported as name@version; a manifest without
    the optional values (no RTMR, no SNP) exports exactly what it records - nothing is invented."""
    old = _minimal_vm_manifest(tmp_path / "v1", "1", "old")
    new = _minimal_vm_manifest(tmp_path / "v2", "2", "new")
    _, outputs, _ = run([_target("td", "gcp", "tdx", [new, old])])
    assert set(outputs["measurements"]) == {"agent-vm@2", "agent-vm@1"}
    assert outputs["measurements"]["agent-vm@2"] == json.loads(new.read_text())["measurements"]
    assert set(outputs["measurements"]["agent-vm@1"]) == {
        "roothash", "uki_authenticode_sha256", "uki_authenticode_sha384", "pcr11_sha256", "pcr11_sha384"}


def test_vm_image_manifest_via_teeform_preview(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`teeform preview --json` runs the same program on a stack file with a TDX target."""
    from teeform.cli import main

    man = _minimal_vm_manifest(tmp_path / "build", "1", "preview")
    stack = write_stack_file(tmp_path / "Pulumi.dev.yaml", [_target("td", "alicloud", "tdx", [man])])
    rc = main(["preview", "--project-dir", str(REPO), "--stack", "dev", "--stack-file", str(stack), "--json"])
    out, err = capsys.readouterr()
    assert rc == 0, out + err
    doc = json.loads(out)
    assert doc["outputs"]["measurements"] == {"agent-vm": json.loads(man.read_text())["measurements"]}
    assert doc["outputs"]["manifest_sha256"] == {"agent-vm": hashlib.sha256(man.read_bytes()).hexdigest()}
