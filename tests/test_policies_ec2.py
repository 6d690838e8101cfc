"""EC2 policies (IMDSv2, enclave option, EBS encryption): a compliant enclave-host launch template,
then one change per test with the exact message."""

from __future__ import annotations

import base64
import copy

from pulumi_support import policy_violations, resource

LT = "aws:ec2/launchTemplate:LaunchTemplate"
INSTANCE = "aws:ec2/instance:Instance"

HAPPY_LT = {
    "instanceType": "m6i.xlarge",
    "enclaveOptions": {"enabled": True},
    "metadataOptions": {"httpTokens": "required", "httpPutResponseHopLimit": 1},
    "blockDeviceMappings": [{"deviceName": "/dev/xvda", "ebs": {"encrypted": "true", "volumeSize": 16}}],
    "userData": base64.b64encode(b"#!/bin/bash\nnitro-cli run-enclave --eif-path /e.eif --cpu-count 2 --memory 512\n").decode(),
    "tags": {"teeform:role": "enclave-host"},
}


def lt(**changes):
    inputs = copy.deepcopy(HAPPY_LT)
    for k, v in changes.items():
        if v is None:
            inputs.pop(k, None)
        else:
            inputs[k] = v
    return resource(LT, inputs, "host-lt")


def messages(policy, res, config=None):
    return [v.message for v in policy_violations(policy, [res], config)]


def test_happy_launch_template_and_instance_from_it():
    inst = resource(INSTANCE, {"launchTemplate": {"id": "lt-1", "version": "1"}, "subnetId": "s"}, "host")
    for p in ("aws-ec2-imdsv2-required", "aws-ec2-enclave-enabled", "aws-ebs-encrypted"):
        assert messages(p, lt()) == [] and messages(p, inst) == [], p


def test_imdsv1_allowed_is_a_violation():
    assert messages("aws-ec2-imdsv2-required", lt(metadataOptions={"httpTokens": "optional"})) == [
        "aws:ec2/launchTemplate:LaunchTemplate 'host-lt': field 'metadataOptions.httpTokens' is 'optional', so IMDSv1 "
        "(no session token) stays reachable. Set metadata_options http_tokens=\"required\"."
    ]
    bare = resource(INSTANCE, {"ami": "ami-1", "instanceType": "m6i.xlarge"}, "vm")
    assert "field 'metadataOptions.httpTokens' is None" in messages("aws-ec2-imdsv2-required", bare)[0]
    assert messages("aws-ec2-imdsv2-required", lt(metadataOptions={"httpEndpoint": "disabled"})) == []


def test_enclave_host_without_enclave_option():
    assert messages("aws-ec2-enclave-enabled", lt(enclaveOptions={"enabled": False})) == [
        "aws:ec2/launchTemplate:LaunchTemplate 'host-lt': field 'enclaveOptions.enabled' is not true, but this is an "
        "enclave host (tagged or running nitro-cli run-enclave); nitro-cli cannot start an enclave. Set enclave_options enabled=True."
    ]
    # recognised by its user data alone, too; a template that is not an enclave host is not judged
    assert messages("aws-ec2-enclave-enabled", lt(enclaveOptions=None, tags={})) != []
    assert messages("aws-ec2-enclave-enabled", lt(enclaveOptions=None, tags={}, userData=None)) == []


def test_unencrypted_ebs():
    bdm = [{"deviceName": "/dev/xvda", "ebs": {"encrypted": "false"}}]
    assert messages("aws-ebs-encrypted", lt(blockDeviceMappings=bdm)) == [
        "aws:ec2/launchTemplate:LaunchTemplate 'host-lt': field 'blockDeviceMappings[0].ebs.encrypted' is not \"true\" "
        "(/dev/xvda). Set encrypted=\"true\" (launch template) / encrypted=True (instance, volume)."
    ]
    assert "declares no EBS volume" in messages("aws-ebs-encrypted", lt(blockDeviceMappings=None))[0]
    inst = resource(INSTANCE, {"rootBlockDevice": {"encrypted": False}}, "vm")
    assert "field 'rootBlockDevice.encrypted' is not true" in messages("aws-ebs-encrypted", inst)[0]
    vol = resource("aws:ebs/volume:Volume", {"availabilityZone": "a", "size": 1}, "v")
    assert messages("aws-ebs-encrypted", vol) == [
        "aws:ebs/volume:Volume 'v': field 'encrypted' is not true. Set encrypted=\"true\" (launch template) / encrypted=True (instance, volume)."
    ]
