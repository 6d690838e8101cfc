"""The Pulumi program (__main__.py) under mocks: outputs, the manifest resources, the target registry."""

from __future__ import annotations

import hashlib

import pytest
from pulumi_support import (
    by_type,
    measurements_only_stand_ins,
    nitro_target,
    one,
    run,
    write_fake_eif_manifest,
    write_fake_vm_manifest,
)

from components.registry import builder_for, manifest_keys, measurements_only, shape_outputs
from teeform.errors import TeeformError
from teeform.stack import Cloud, StackConfig, TeeType
from teeform.targets import PLUGINS, plugin_for

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def test_outputs_measurements_first(tmp_path):
    img = write_fake_eif_manifest(tmp_path, pcr8=True)
    resources, outputs, _ = run([nitro_target([img.manifest_path], attestation={"pcrs": ["PCR0", "PCR8"]})])
    assert list(outputs) == [
        "measurements", "kms_key_arn", "instance_id", "eif_uri", "enclave_cpu_count", "enclave_memory_mib", "manifest_sha256",
    ]
    m = img.manifest.measurements
    assert outputs["measurements"] == {
        "openclaw-agent": {k: m[k] for k in ("PCR0", "PCR1", "PCR2", "PCR8", "ImageSha384")}
    }
    assert outputs["manifest_sha256"] == {"openclaw-agent": hashlib.sha256(img.manifest_path.read_bytes()).hexdigest()}
    assert outputs["kms_key_arn"].startswith("arn:aws:kms:eu-west-1:111122223333:key/")
    assert outputs["instance_id"].startswith("i-")
    assert (outputs["enclave_cpu_count"], outputs["enclave_memory_mib"]) == (2, 1024)
    mm = one(resources, "teeform:index:MeasurementManifest")
    assert mm.name == "agent-manifest-openclaw-agent"
    assert mm.inputs == {
        "target": "agent", "name": "openclaw-agent", "kind": "eif", "path": str(img.manifest_path),
        "sha256": outputs["manifest_sha256"]["openclaw-agent"], "measurements": dict(m),
        "signed": False, "signer": "", "index": 0,  # the first (deployed) manifest of its target; no teeform:trustedManifestKeys (tests/test_signing_stack.py)
    }


def test_unsigned_eif_exports_null_pcr8(tmp_path):
    img = write_fake_eif_manifest(tmp_path)
    _, outputs, _ = run([nitro_target([img.manifest_path])])
    assert outputs["measurements"]["openclaw-agent"]["PCR8"] is None


def test_vm_image_target_exports_measurements_only_and_targets_keyed_by_name(tmp_path, monkeypatch):
    img = write_fake_eif_manifest(tmp_path / "eif")
    vm = write_fake_vm_manifest(tmp_path / "vm")
    measurements_only_stand_ins(monkeypatch)  # every shipped vm-image pair has components now (issues 8-11)
    snp = {"name": "vm", "cloud": "gcp", "region": "europe-west4", "tee": "sev-snp", "manifests": [str(vm)]}
    resources, outputs, _ = run([nitro_target([img.manifest_path]), snp])
    assert list(outputs)[0] == "measurements"
    assert set(outputs["measurements"]) == {"agent", "vm"}
    vm_meas = outputs["measurements"]["vm"]["agent-vm"]
    for k in ("roothash", "pcr11_sha256", "pcr11_sha384", "uki_authenticode_sha256", "rtmr1", "snp_launch_digest"):
        assert len(vm_meas[k]) in (64, 96)
    assert set(outputs["kms_key_arn"]) == {"agent"}  # measurements-only targets export no cloud outputs
    assert set(outputs["manifest_sha256"]) == {"agent", "vm"}
    assert [r.name for r in by_type(resources, "teeform:index:MeasurementManifest")] == [
        "agent-manifest-openclaw-agent", "vm-manifest-agent-vm",
    ]
    assert not [r for r in resources if r.type.startswith(("azure", "gcp"))]


def test_manifest_kind_must_fit_tee(tmp_path):
    vm = write_fake_vm_manifest(tmp_path)
    with pytest.raises(TeeformError) as ei:
        run([nitro_target([vm])])
    assert ei.value.field == "teeform:targets[agent].manifests[0]"
    assert "is of kind 'vm-image', but the aws/nitro-enclave target needs 'eif'" in ei.value.message


def test_debug_needs_allow_debug(tmp_path):
    img = write_fake_eif_manifest(tmp_path)
    target = nitro_target([img.manifest_path], enclave={"cpuCount": 2, "memoryMib": 1024, "debug": True})
    with pytest.raises(TeeformError, match="teeform:allowDebug is false"):
        run([target])
    resources, _, _ = run([target], allow_debug=True)
    import base64

    assert "--debug-mode" in base64.b64decode(one(resources, "aws:ec2/launchTemplate:LaunchTemplate").inputs["userData"]).decode()


def test_config_errors_use_stack_validation(tmp_path):
    with pytest.raises(TeeformError) as ei:
        run([{"name": "agent", "cloud": "aws", "region": "eu-west-1", "tee": "tdx", "manifests": ["x"]}])
    assert ei.value.field == "teeform:targets[0].tee" and "aws does not offer tdx" in ei.value.message


def test_registry_and_output_shaping(monkeypatch):
    assert plugin_for(Cloud.AWS, TeeType.NITRO_ENCLAVE).builder == "components.aws.nitro:build_nitro_enclave_target"
    assert PLUGINS[(Cloud.GCP, TeeType.TDX)] == "teeform.targets.gcp_tdx:PLUGIN"
    measurements_only_stand_ins(monkeypatch)
    cfg = StackConfig.from_values(
        {"targets": [{"name": "g", "cloud": "alicloud", "region": "r", "tee": "tdx", "manifests": ["m"]}]}, stack="s"
    )
    assert builder_for(cfg.targets[0]) is measurements_only
    one_target = shape_outputs({"a": {"x": 1, "measurements": {"m": {}}}})
    assert list(one_target) == ["measurements", "x"]
    many = shape_outputs({"a": {"measurements": 1, "x": 2}, "b": {"measurements": 3}})
    assert many == {"measurements": {"a": 1, "b": 3}, "x": {"a": 2}}


def test_manifest_keys(tmp_path):
    a = write_fake_eif_manifest(tmp_path / "a", version="1").manifest
    b = write_fake_eif_manifest(tmp_path / "b", version="2").manifest
    assert manifest_keys([a]) == ["openclaw-agent"]
    assert manifest_keys([a, b]) == ["openclaw-agent@1", "openclaw-agent@2"]
    with pytest.raises(TeeformError, match="listed more than once"):
        manifest_keys([a, a])
