"""stacks/Pulumi.azure.yaml previews offline with no mandatory violation (issue 10, "Done when").

The manifest is a real one: ``teeform build vm-image --format raw,vhd --platform-modules hyperv`` on a tiny busybox root (as
tests/test_program_vm_image.py builds it), so the VHD check, the gallery version name and the
exported measurements all run on the pipeline's real output. The shipped stack file is used as is,
only its manifest paths are pointed at that build (the file itself points at ``make vm-demo``'s output).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from conftest import busybox_rootfs, locked, require_tool
from pulumi_support import REPO

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def vhd_manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    for t in ("busybox", "veritysetup", "mkfs.erofs", "mkfs.vfat", "mcopy"):
        require_tool(t)
    tmp = tmp_path_factory.mktemp("azvm")
    root = busybox_rootfs(tmp)
    from teeform.cli import main

    status = main(["build", "vm-image", "--rootfs", str(root), "--kernel", str(locked("kernel.vmlinuz")),
                   "--stub", str(locked("bookworm.stub")), "--out", str(tmp / "out"), "--name", "agent-vm",
                   "--version", "1.0.0", "--format", "raw,vhd", "--platform-modules", "hyperv"])
    assert status == 0
    return tmp / "out" / "agent-vm.manifest.json"


@pytest.mark.integration
def test_shipped_azure_stack_previews_without_mandatory_violations(vhd_manifest: Path, tmp_path: Path) -> None:
    from teeform.preview import run_preview

    doc = yaml.safe_load((REPO / "stacks" / "Pulumi.azure.yaml").read_text())
    targets = doc["config"]["teeform:targets"]
    assert [(t["cloud"], t["tee"]) for t in targets] == [("azure", "sev-snp"), ("azure", "tdx")]
    for t in targets:
        t["manifests"] = [str(vhd_manifest)]
    stack_file = tmp_path / "Pulumi.azure.yaml"
    stack_file.write_text(yaml.safe_dump(doc, sort_keys=False))

    result = run_preview(REPO, "azure", stack_file=stack_file)
    assert result.mandatory == [], [v.message for v in result.mandatory]
    assert {v.policy for v in result.violations} <= {"policy-coverage"}
    assert not [v for v in result.violations if "keyvault:Key" in v.message]  # read by key-release since issue 11
    assert {"azure-key-release-requires-attestation", "azure-cvm-confidential", "azure-no-public-ingress",
            "azure-vault-purge-protection"} <= set(result.policies)
    recorded = json.loads(vhd_manifest.read_text())
    assert {"kernel/drivers/hv/hv_vmbus.ko", "kernel/drivers/scsi/hv_storvsc.ko"} <= set(recorded["details"]["initrd"]["modules"])
    out = result.outputs
    for name in ("snp", "tdx"):
        assert out["vm_measurements"][name]["agent-vm"] == {
            k: recorded["measurements"][k] for k in ("pcr4_sha256", "pcr11_sha256", "roothash") if k in recorded["measurements"]}
        assert out["image_version_id"][name].endswith(f"/images/agent-vm-{'sev-snp' if name == 'snp' else 'tdx'}/versions/1.0.0")
        assert "not the image" in out["key_gate"][name]
    assert json.loads(out["release_policy"]["tdx"])["anyOf"][0]["allOf"][0]["equals"] == "tdxvm"
    blob = next(r for r in result.resources if r.type == "pulumi-python:dynamic:Resource" and r.name == "snp-image-vhd")
    assert blob.inputs["sha256"] == recorded["details"]["formats"]["vhd"]["sha256"]
