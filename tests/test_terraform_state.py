"""``teeform:terraformState``: the Pulumi program takes network ids from a Terraform state file through
pulumi-terraform's state reference (``terraform:state:getLocalReference``) and exports the outputs as secrets
unless listed ``plain``. Runs under the SDK's mock engine; the state file is a real one written by Terraform
1.11.4 (tests/fixtures/terraform/README.md), answered by ``teeform.preview.clouds.terraform`` as the provider
answers (``{"outputs": {name: value}}``, sensitive flags dropped: gitops-signing-terraform.md §3.5)."""

from __future__ import annotations

import json

import pulumi
import pytest
from conftest import FIXTURES
from pulumi.runtime.sync_await import _sync_await
from pulumi_support import REPO, by_type, config_values, nitro_target, one, write_fake_eif_manifest

from teeform.errors import TeeformError
from teeform.preview.clouds.terraform import local_state_outputs
from teeform.stack import StackConfig

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

STATE = FIXTURES / "terraform" / "terraform.tfstate"
REF = {"path": str(STATE), "network": {"vpcId": "vpc_id", "subnetId": "subnet_id"}}


def _run(targets, tf_state):
    from teeform.preview import registered_resources, run_program

    cfg = config_values(targets)
    cfg["teeform:terraformState"] = tf_state
    mocks, outputs = run_program(REPO, "dev", cfg)
    return registered_resources(mocks, "dev"), outputs, mocks


def test_state_outputs_as_the_provider_returns_them():
    doc = json.loads(STATE.read_text())
    assert doc["version"] == 4 and doc["outputs"]["db_password"]["sensitive"] is True
    assert local_state_outputs(str(STATE)) == {k: v["value"] for k, v in doc["outputs"].items()}


def test_program_runs_the_target_in_terraforms_vpc(tmp_path):
    img = write_fake_eif_manifest(tmp_path / "build")
    resources, outputs, mocks = _run([nitro_target([img.manifest_path])], REF)
    (call,) = [c for c in mocks.calls if c.token == "terraform:state:getLocalReference"]
    assert call.args == {"path": str(STATE)}
    assert not by_type(resources, "aws:ec2/vpc:Vpc")  # no VPC created: Terraform's is used
    sg = one(resources, "aws:ec2/securityGroup:SecurityGroup")
    assert sg.inputs["vpcId"] == "vpc-0a1b2c3d4e5f60718"
    inst = one(resources, "aws:ec2/instance:Instance")
    assert inst.inputs["subnetId"] == "subnet-0f1e2d3c4b5a69788"
    assert outputs["terraform_outputs"] == {k: v["value"] for k, v in json.loads(STATE.read_text())["outputs"].items()}
    assert list(outputs)[-1] == "terraform_outputs"


def test_outputs_are_secret_unless_plain():
    from components.terraform_state import exported_outputs

    ref = StackConfig.from_values({"targets": [nitro_target(["m.json"])], "terraformState": {**REF, "plain": ["azs"]}},
                                  stack="dev").terraform_state
    assert ref is not None
    outs = exported_outputs(ref, local_state_outputs(str(STATE)))
    assert isinstance(outs["db_password"], pulumi.Output)
    assert _sync_await(outs["db_password"].is_secret()) is True
    assert outs["azs"] == ["eu-west-1a", "eu-west-1b"] and outs["vpc_id"] == "vpc-0a1b2c3d4e5f60718"


def test_a_target_with_its_own_network_keeps_it(tmp_path):
    img = write_fake_eif_manifest(tmp_path / "build")
    t = nitro_target([img.manifest_path], network={"vpcId": "vpc-own", "subnetId": "subnet-own"})
    resources, _, _ = _run([t], REF)
    assert one(resources, "aws:ec2/instance:Instance").inputs["subnetId"] == "subnet-own"


@pytest.mark.parametrize("tf_state, message", [
    ({"network": {"vpcId": "vpc_id", "subnetId": "subnet_id"}}, "teeform:terraformState: missing required key 'path'"),
    ({"path": str(STATE), "network": {"vpcId": "vpc_id"}}, "teeform:terraformState.network: give both vpcId"),
    ({"path": str(STATE), "network": {"vpcId": "nope", "subnetId": "subnet_id"}},
     "teeform:terraformState.network.vpcId: output 'nope' is not in the Terraform state"),
    ({"path": str(STATE), "network": {"vpcId": "azs", "subnetId": "subnet_id"}},
     "teeform:terraformState.network.vpcId: output 'azs' must be a non-empty string, got list"),
])
def test_bad_config_is_one_error_naming_the_field(tmp_path, tf_state, message):
    img = write_fake_eif_manifest(tmp_path / "build")
    with pytest.raises(TeeformError) as ei:
        _run([nitro_target([img.manifest_path])], tf_state)
    assert message in ei.value.render()


def test_not_a_state_file(tmp_path):
    bad = tmp_path / "x.tfstate"
    bad.write_text(json.dumps({"version": 3, "modules": []}))
    with pytest.raises(TeeformError, match=r"x.tfstate: version: not a Terraform state file of format version 4"):
        local_state_outputs(str(bad))
