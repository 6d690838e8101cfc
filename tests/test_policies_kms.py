"""KMS policies, unit level: a compliant key policy, then one change per test with the exact message.

Policies are called the way CrossGuard calls them (ResourceValidationArgs with the inputs wrapped in
pulumi_policy's unknown-checking proxy; teeform.preview.evaluate_policies). The documents here are
hand-written from the KMS developer guide example (eif-nitro.md §5.3), not produced by teeform.
"""

from __future__ import annotations

import base64
import json

import pytest
from pulumi_support import fake_hex, policy_violations, resource

KEY = "aws:kms/key:Key"
ROLE = "arn:aws:iam::111122223333:role/enclave-host"
PCR0 = fake_hex("pcr0")


def happy_policy() -> dict:
    return {
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "Admin", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:root"},
             "Action": ["kms:Describe*", "kms:Put*", "kms:ScheduleKeyDeletion"], "Resource": "*"},
            {"Sid": "Enclave", "Effect": "Allow", "Principal": {"AWS": ROLE},
             "Action": ["kms:Decrypt", "kms:GenerateDataKey"], "Resource": "*",
             "Condition": {"StringEqualsIgnoreCase": {"kms:RecipientAttestation:PCR0": [PCR0],
                                                      "kms:RecipientAttestation:ImageSha384": PCR0.upper()}}},
            {"Sid": "Seal", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:user/ci"},
             "Action": "kms:Encrypt", "Resource": "*"},
        ],
    }


def key(policy=None, **extra):
    inputs = {"policy": json.dumps(policy or happy_policy()), "enableKeyRotation": True, **extra}
    return resource(KEY, inputs, "agent-key-kms")


def messages(policy_name, res, config=None):
    return [v.message for v in policy_violations(policy_name, [res], config)]


def test_happy_path_passes_every_kms_policy():
    for name in ("aws-kms-decrypt-requires-attestation", "aws-kms-no-debug-measurements", "aws-kms-key-rotation-enabled"):
        assert messages(name, key()) == []


def test_admin_with_kms_wildcard_is_a_violation():
    p = happy_policy()
    p["Statement"][0]["Action"] = "kms:*"
    (msg,) = messages("aws-kms-decrypt-requires-attestation", key(p))
    assert msg.startswith(
        "aws:kms/key:Key 'agent-key-kms': field 'policy', statement 'Admin' allows kms:Decrypt, kms:GenerateDataKey, "
        "kms:GenerateDataKeyWithoutPlaintext, kms:GenerateDataKeyPair, kms:GenerateDataKeyPairWithoutPlaintext, "
        "kms:GenerateRandom, kms:DeriveSharedSecret, kms:ReEncryptFrom, kms:CreateGrant without a StringEqualsIgnoreCase "
        "condition on kms:RecipientAttestation:PCR0 / kms:RecipientAttestation:ImageSha384 / kms:RecipientAttestation:PCR8."
    )
    assert msg.endswith("or remove these actions from the statement.")


@pytest.mark.parametrize(
    "actions, granted",
    [
        ("*", "kms:Decrypt"),
        (["kms:generatedatakey*"], "kms:GenerateDataKey, kms:GenerateDataKeyWithoutPlaintext, kms:GenerateDataKeyPair"),
        (["kms:Create*"], "kms:CreateGrant"),
        (["kms:ReEncrypt*"], "kms:ReEncryptFrom"),
        (["kms:DeriveSharedSecret"], "kms:DeriveSharedSecret"),
    ],
)
def test_wildcards_and_case_are_understood(actions, granted):
    p = happy_policy()
    p["Statement"][2]["Action"] = actions
    (msg,) = messages("aws-kms-decrypt-requires-attestation", key(p))
    assert f"statement 'Seal' allows {granted}" in msg


def test_not_action_grants_everything_else():
    p = happy_policy()
    p["Statement"][2] = {"Sid": "Seal", "Effect": "Allow", "Principal": {"AWS": "x"}, "NotAction": ["kms:Decrypt"], "Resource": "*"}
    (msg,) = messages("aws-kms-decrypt-requires-attestation", key(p))
    assert "statement 'Seal' allows kms:GenerateDataKey," in msg


def test_wildcard_principal_is_a_violation_even_with_attestation():
    p = happy_policy()
    p["Statement"][1]["Principal"] = {"AWS": ["*"]}
    assert messages("aws-kms-decrypt-requires-attestation", key(p)) == [
        "aws:kms/key:Key 'agent-key-kms': field 'policy', statement 'Enclave' allows kms:Decrypt, kms:GenerateDataKey "
        "to a wildcard principal. Name the enclave host's role ARN as the principal instead of '*'."
    ]


@pytest.mark.parametrize(
    "condition",
    [
        {"StringEquals": {"kms:RecipientAttestation:PCR0": PCR0}},  # wrong operator
        {"StringEqualsIgnoreCaseIfExists": {"kms:RecipientAttestation:PCR0": PCR0}},  # absent key passes
        {"StringEqualsIgnoreCase": {"kms:RecipientAttestation:PCR4": PCR0}},  # instance id only: no image pinned
        {"StringEqualsIgnoreCase": {"aws:PrincipalTag/x": "y"}},
    ],
)
def test_missing_or_weak_attestation_condition(condition):
    p = happy_policy()
    p["Statement"][1]["Condition"] = condition
    (msg,) = messages("aws-kms-decrypt-requires-attestation", key(p))
    assert "statement 'Enclave' allows kms:Decrypt, kms:GenerateDataKey without a StringEqualsIgnoreCase condition" in msg


@pytest.mark.parametrize("bad", ["0x" + PCR0[:94], PCR0[:64], "*", ""])
def test_values_must_be_96_hex(bad):
    p = happy_policy()
    p["Statement"][1]["Condition"]["StringEqualsIgnoreCase"]["kms:RecipientAttestation:PCR0"] = [PCR0, bad]
    (msg,) = messages("aws-kms-decrypt-requires-attestation", key(p))
    assert msg == (
        f"aws:kms/key:Key 'agent-key-kms': field 'policy', statement 'Enclave': condition kms:RecipientAttestation:PCR0 "
        f"has {[bad]!r} value(s) that are not 96 hex digits (a SHA-384 PCR). Use the lowercase hex from the manifest, without '0x'."
    )


def test_key_policy_resource_and_missing_or_broken_policy():
    p = happy_policy()
    p["Statement"][0]["Action"] = "kms:Decrypt"
    kp = resource("aws:kms/keyPolicy:KeyPolicy", {"keyId": "k", "policy": json.dumps(p)}, "kp")
    assert "'kp': field 'policy', statement 'Admin' allows kms:Decrypt" in messages("aws-kms-decrypt-requires-attestation", kp)[0]
    (msg,) = messages("aws-kms-decrypt-requires-attestation", resource(KEY, {"enableKeyRotation": True}, "k"))
    assert "has no 'policy': AWS then applies its default key policy, which grants kms:* to the account root" in msg
    (msg,) = messages("aws-kms-decrypt-requires-attestation", resource(KEY, {"policy": "{not json"}, "k"))
    assert msg.startswith("aws:kms/key:Key 'k': field 'policy' is not valid JSON")


def test_custom_protected_actions_config():
    p = happy_policy()
    p["Statement"][2]["Action"] = "kms:Encrypt"
    assert messages("aws-kms-decrypt-requires-attestation", key(p), {"protectedActions": ["kms:Encrypt"]}) != []


def test_all_zero_measurement_is_a_debug_violation():
    p = happy_policy()
    p["Statement"][1]["Condition"]["StringEqualsIgnoreCase"]["kms:RecipientAttestation:PCR0"] = [PCR0, "0" * 96]
    assert messages("aws-kms-no-debug-measurements", key(p)) == [
        "aws:kms/key:Key 'agent-key-kms': field 'policy', statement 'Enclave': condition kms:RecipientAttestation:PCR0 "
        "allows the all-zero value that debug-mode enclaves report. Remove it; pin the measurements of a production "
        "build instead."
    ]


def launch_template(script: str):
    return resource("aws:ec2/launchTemplate:LaunchTemplate", {"userData": base64.b64encode(script.encode()).decode()}, "lt")


def test_debug_mode_user_data_only_fails_in_prod():
    lt = launch_template("nitro-cli run-enclave --eif-path /x.eif --cpu-count 2 --memory 512 --debug-mode\n")
    assert messages("aws-kms-no-debug-measurements", lt, {"environment": "dev"}) == []
    assert messages("aws-kms-no-debug-measurements", lt, {"environment": "prod"}) == [
        "aws:ec2/launchTemplate:LaunchTemplate 'lt': field 'userData' runs the enclave with --debug-mode (debug mode) "
        "in a production stack. Remove enclave.debug from the target (teeform:targets[].enclave.debug)."
    ]
    console = resource("aws:ec2/instance:Instance", {"userData": "#!/bin/sh\nnitro-cli run-enclave --attach-console\n"}, "i")
    assert "runs the enclave with --attach-console" in messages("aws-kms-no-debug-measurements", console, {"environment": "production"})[0]


def test_debug_environment_from_stack_config(monkeypatch):
    import pulumi

    lt = launch_template("nitro-cli run-enclave --debug-mode\n")
    pulumi.runtime.set_all_config({"teeform:environment": "prod"})
    try:
        assert len(messages("aws-kms-no-debug-measurements", lt)) == 1
    finally:
        pulumi.runtime.set_all_config({})


def test_key_rotation():
    assert messages("aws-kms-key-rotation-enabled", key(enableKeyRotation=False)) == [
        "aws:kms/key:Key 'agent-key-kms': field 'enableKeyRotation' is not true. Set enable_key_rotation=True (AttestedKey does)."
    ]
    assert messages("aws-kms-key-rotation-enabled", key(enableKeyRotation=False, customerMasterKeySpec="RSA_2048")) == []



@pytest.mark.parametrize("dup", ["Condition", "kms:RecipientAttestation:PCR0"])
def test_key_policy_with_a_duplicate_key_is_unreadable(dup):
    """A repeated JSON key is refused, not resolved to the last one (which IAM need not agree with)."""
    text = json.dumps(happy_policy())
    if dup == "Condition":
        text = text.replace('"Condition": {', '"Condition": {}, "Condition": {', 1)
    else:
        text = text.replace(f'"{dup}": ["{PCR0}"]', f'"{dup}": ["{PCR0}"], "{dup}": ["{"0" * 96}"]', 1)
    assert text.count(f'"{dup}"') == 2
    (msg,) = messages("aws-kms-decrypt-requires-attestation", resource(KEY, {"policy": text, "enableKeyRotation": True}, "k"))
    assert msg.startswith(f"aws:kms/key:Key 'k': field 'policy' has the key {dup!r} twice in one JSON object")
