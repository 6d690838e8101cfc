"""stacks/Pulumi.alicloud.yaml -- a g8i, a gn8v-tee and an Azure target with the key broker -- previews
offline with no mandatory violation (issue 11 "Done when").

The manifest is a real build (``teeform build vm-image --format raw,vhd --platform-modules hyperv``, the
``vhd_manifest`` fixture of tests/test_azure_stack.py), used by all three targets: the Alibaba targets
import its raw disk, the Azure target its VHD. The shipped stack file is used as is, only its manifest
paths are pointed at that build. Oracles: the manifest file read with ``json``; the RVPS messages
decoded with ``base64`` + ``json``.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
import yaml
from pulumi_support import REPO
from test_azure_stack import vhd_manifest  # noqa: F401 - the module-scoped real-build fixture

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

REG = "pulumi-python:dynamic/trustee:KbsRegistration"


@pytest.mark.integration
def test_alicloud_stack_with_an_azure_broker_target_previews_clean(vhd_manifest: Path, tmp_path: Path) -> None:  # noqa: F811
    from components.trustee import broker
    from teeform.preview import run_preview

    broker._reset_for_tests()
    doc = yaml.safe_load((REPO / "stacks" / "Pulumi.alicloud.yaml").read_text())
    targets = doc["config"]["teeform:targets"]
    assert [(t["name"], t["cloud"], t.get("instanceType")) for t in targets] == [
        ("agent-g8i", "alicloud", "ecs.g8i.xlarge"), ("agent-gpu", "alicloud", "ecs.gn8v-tee.4xlarge"),
        ("agent-az", "azure", None)]
    assert targets[2]["keyBroker"]["kbs"].startswith("https://")
    for t in targets:
        t["manifests"] = [str(vhd_manifest)]
    stack_file = tmp_path / "Pulumi.alicloud.yaml"
    stack_file.write_text(yaml.safe_dump(doc, sort_keys=False))

    result = run_preview(REPO, "alicloud", stack_file=stack_file)
    assert result.mandatory == [], [v.message for v in result.mandatory]
    # The Key Vault key and the registrations are read by the key-release family: not reported NOT CHECKED.
    assert not [v.message for v in result.violations if "keyvault:Key" in v.message or REG in v.message]
    meas = json.loads(vhd_manifest.read_text())["measurements"]
    regs = {r.inputs["target"]: r for r in result.resources if r.type == REG}
    assert sorted(regs) == ["agent-az", "agent-g8i", "agent-gpu"]
    prov = {k: json.loads(base64.b64decode(r.inputs["rvps_message"]["payload"])) for k, r in regs.items()}
    assert list(prov["agent-az"].values()) == [[meas["pcr11_sha256"]]] and regs["agent-az"].inputs["verifier"] == "az-snp-vtpm"
    for name in ("agent-g8i", "agent-gpu"):
        assert [meas["uki_authenticode_sha384"]] in prov[name].values() and regs[name].inputs["verifier"] == "tdx"
    out = result.outputs
    assert set(out["instance_id"]) == {"agent-g8i", "agent-gpu"} and set(out["vm_id"]) == {"agent-az"}
    assert set(out["kbs_url"]) == {"agent-g8i", "agent-gpu", "agent-az"}
    assert out["kbs_url"]["agent-az"] == targets[2]["keyBroker"]["kbs"]
    assert out["key_resource"]["agent-az"] == "resource/teeform/agent-az/key"
    gate = out["key_gate"]["agent-az"]
    assert "pins the platform" in gate and "pins our image (vTPM PCR 11" in gate
    assert {"trustee-reference-values-match-manifest", "trustee-policy-refuses-debug",
            "azure-key-release-requires-attestation", "alicloud-no-public-ingress"} <= set(result.policies)
