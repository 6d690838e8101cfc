"""Stack config validation: typed targets, and errors that name the stack file and the field."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from teeform.errors import TeeformError
from teeform.stack import Cloud, StackConfig, TeeType, load_stack

GOOD = {
    "name": "agent",
    "cloud": "aws",
    "region": "eu-west-1",
    "tee": "nitro-enclave",
    "manifests": ["build/a.manifest.json", "build/b.manifest.json"],
    "enclave": {"cpuCount": 2, "memoryMib": 2048},
    "network": {"ingress": [{"cidr": "10.0.0.0/8", "port": 443}]},
    "key": {"deletionWindowDays": 7, "protect": True},
}


def project(tmp_path: Path, stack_cfg: dict) -> Path:
    (tmp_path / "Pulumi.yaml").write_text(
        "name: teeform\nruntime: python\nstackConfigDir: stacks\n"
        "config:\n  environment: {type: string, default: dev}\n  allowDebug: {type: boolean, default: false}\n"
    )
    (tmp_path / "stacks").mkdir()
    (tmp_path / "stacks" / "Pulumi.prod.yaml").write_text(yaml.safe_dump({"config": stack_cfg}))
    return tmp_path


def test_load_typed(tmp_path: Path):
    root = project(tmp_path, {"teeform:environment": "prod", "teeform:targets": [GOOD]})
    cfg = load_stack(root, "prod")
    assert cfg.is_production and not cfg.allow_debug
    t = cfg.targets[0]
    assert (t.cloud, t.tee) == (Cloud.AWS, TeeType.NITRO_ENCLAVE)
    assert t.enclave.memory_mib == 2048 and t.key.deletion_window_days == 7 and t.key.protect
    assert t.network.ingress[0].port == 443
    assert cfg.manifest_paths() == [root / "build/a.manifest.json", root / "build/b.manifest.json"]


def test_project_defaults_apply(tmp_path: Path):
    root = project(tmp_path, {"teeform:targets": [GOOD]})
    cfg = load_stack(root, "prod")
    assert cfg.environment == "dev"  # Pulumi.yaml default, as the CLI would materialise it


@pytest.mark.parametrize(
    "change, field, text",
    [
        ({"cloud": "oracle"}, "teeform:targets[0].cloud", "unknown cloud 'oracle'"),
        ({"tee": "tdx"}, "teeform:targets[0].tee", "aws does not offer tdx"),
        ({"manifests": []}, "teeform:targets[0].manifests", "non-empty list"),
        ({"enclave": {"cpuCount": "two"}}, "teeform:targets[0].enclave.cpuCount", "must be an integer"),
        ({"key": {"deletionWindowDays": 3}}, "teeform:targets[0].key.deletionWindowDays", "between 7 and 30"),
        ({"attestation": {"pcrs": ["PCR1"]}}, "teeform:targets[0].attestation.pcrs", "must list PCR0"),
        ({"network": {"ingress": [{"cidr": "0.0.0.0/0"}]}}, "teeform:targets[0].network.ingress[0]", "needs both"),
        ({"network": {"vpcId": "vpc-1"}}, "teeform:targets[0].network", "both vpcId and subnetId"),
        ({"enclave": {"cpus": 2}}, "teeform:targets[0].enclave", "unknown key(s) ['cpus']"),
    ],
)
def test_errors_name_file_and_field(tmp_path: Path, change, field, text):
    root = project(tmp_path, {"teeform:targets": [{**GOOD, **change}]})
    with pytest.raises(TeeformError) as ei:
        load_stack(root, "prod")
    assert ei.value.path == str(root / "stacks" / "Pulumi.prod.yaml")
    assert ei.value.field == field
    assert text in ei.value.message


def test_missing_stack_and_duplicate_names(tmp_path: Path):
    root = project(tmp_path, {"teeform:targets": [GOOD, GOOD]})
    with pytest.raises(TeeformError, match="target names must be unique"):
        load_stack(root, "prod")
    with pytest.raises(TeeformError, match="stack config for 'staging' not found"):
        load_stack(root, "staging")


def test_targets_as_json_string():
    import json

    cfg = StackConfig.from_values({"targets": json.dumps([GOOD])}, stack="dev")
    assert cfg.targets[0].name == "agent" and cfg.environment == "dev"
