"""The statements the Nitro Enclaves and NitroTPM key policies share (components/aws/attested_key.py,
components/aws/tpm_key.py).

Both keys must differ ONLY in their release statements (``EnclaveRelease<n>`` / ``NitroTpmRelease<n>``):
administration without plaintext operations or ``kms:CreateGrant``, the deployer's seal-only
statement and, locked, the break-glass statement plus the Deny of ``kms:PutKeyPolicy`` to everyone
else. The expected statements are written out here from the module docstrings (AWS's default
key-administrator list without ``kms:Create*``; Encrypt + DescribeKey for the deployer; IAM
"policy evaluation logic" for the Deny), not taken from the code, so a change to either builder's
shared statements fails here.
"""

from __future__ import annotations

from typing import Any

import pytest

from components.aws.attested_key import build_key_policy
from components.aws.tpm_key import build_tpm_key_policy
from teeform.errors import TeeformError
from teeform.keyrelease import KeyReleasePolicy, MeasurementSet

ADMINS = ["arn:aws:iam::111122223333:root", "arn:aws:iam::111122223333:role/admin"]
DEPLOYER = "arn:aws:iam::111122223333:role/deployer"
GLASS = "arn:aws:iam::111122223333:role/break-glass"

ENCLAVE = KeyReleasePolicy("agent", (MeasurementSet("a", {"PCR0": "aa" * 48, "PCR1": "bb" * 48}),
                                     MeasurementSet("b", {"PCR0": "cc" * 48})))
TPM = KeyReleasePolicy("vm", (MeasurementSet("a", {"pcr4_sha384": "aa" * 48, "pcr12_sha384": "0" * 96}),))

ADMIN_UNLOCKED = ["kms:CreateAlias", "kms:Describe*", "kms:Enable*", "kms:List*", "kms:Put*", "kms:Update*",
                  "kms:Revoke*", "kms:Disable*", "kms:Get*", "kms:Delete*", "kms:TagResource", "kms:UntagResource",
                  "kms:ScheduleKeyDeletion", "kms:CancelKeyDeletion", "kms:RotateKeyOnDemand"]


def expected_shared(locked: bool) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(statements before the release ones, statements after them), hand-written."""
    admin = {"Sid": "KeyAdministration", "Effect": "Allow", "Principal": {"AWS": ADMINS},
             "Action": [a for a in ADMIN_UNLOCKED if not (locked and a == "kms:Put*")], "Resource": "*"}
    after: list[dict[str, Any]] = [
        {"Sid": "DeployerSeal", "Effect": "Allow", "Principal": {"AWS": DEPLOYER},
         "Action": ["kms:Encrypt", "kms:DescribeKey"], "Resource": "*"},
    ]
    if locked:
        after += [
            {"Sid": "BreakGlassPolicyUpdate", "Effect": "Allow", "Principal": {"AWS": GLASS},
             "Action": ["kms:PutKeyPolicy", "kms:GetKeyPolicy", "kms:DescribeKey"], "Resource": "*"},
            {"Sid": "DenyPolicyUpdateExceptBreakGlass", "Effect": "Deny", "Principal": {"AWS": "*"},
             "Action": "kms:PutKeyPolicy", "Resource": "*",
             "Condition": {"ArnNotEquals": {"aws:PrincipalArn": GLASS}}},
        ]
    return [admin], after


def policies(locked: bool, vpce: str | None) -> tuple[dict[str, Any], dict[str, Any]]:
    glass = GLASS if locked else None
    enclave = build_key_policy(admin_arns=ADMINS, enclave_role_arn="arn:aws:iam::111122223333:role/host",
                               deployer_arn=DEPLOYER, release=ENCLAVE, break_glass_arn=glass, source_vpce=vpce)
    tpm = build_tpm_key_policy(admin_arns=ADMINS, vm_role_arn="arn:aws:iam::111122223333:role/vm",
                               deployer_arn=DEPLOYER, release=TPM, break_glass_arn=glass, source_vpce=vpce)
    return enclave, tpm


def split(policy: dict[str, Any], release_sid: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[str]]:
    """(statements before the release block, after it, release Sids); the release block is contiguous."""
    st = policy["Statement"]
    idx = [i for i, s in enumerate(st) if s["Sid"].startswith(release_sid)]
    assert idx == list(range(idx[0], idx[-1] + 1)), [s["Sid"] for s in st]
    return st[:idx[0]], st[idx[-1] + 1:], [st[i]["Sid"] for i in idx]


@pytest.mark.parametrize("locked", [False, True])
@pytest.mark.parametrize("vpce", [None, "vpce-0123456789abcdef0"])
def test_shared_statements_are_identical_and_as_documented(locked: bool, vpce: str | None) -> None:
    enclave, tpm = policies(locked, vpce)
    assert enclave["Version"] == tpm["Version"] == "2012-10-17"
    e_before, e_after, e_sids = split(enclave, "EnclaveRelease")
    t_before, t_after, t_sids = split(tpm, "NitroTpmRelease")
    assert e_sids == ["EnclaveRelease1", "EnclaveRelease2"] and t_sids == ["NitroTpmRelease1"]
    before, after = expected_shared(locked)
    assert e_before == t_before == before
    assert e_after == t_after == after


def test_the_release_statements_are_the_only_difference() -> None:
    enclave, tpm = policies(True, "vpce-1")
    e = [s for s in enclave["Statement"] if not s["Sid"].startswith("EnclaveRelease")]
    t = [s for s in tpm["Statement"] if not s["Sid"].startswith("NitroTpmRelease")]
    assert e == t
    (tpm_release,) = [s for s in tpm["Statement"] if s["Sid"] == "NitroTpmRelease1"]
    assert tpm_release == {
        "Sid": "NitroTpmRelease1", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:role/vm"},
        "Action": ["kms:Decrypt", "kms:GenerateDataKey"], "Resource": "*",
        "Condition": {"StringEqualsIgnoreCase": {"kms:RecipientAttestation:NitroTPMPCR4": "aa" * 48,
                                                 "kms:RecipientAttestation:NitroTPMPCR12": "0" * 96},
                      "StringEquals": {"aws:SourceVpce": "vpce-1"}},
    }


def test_both_refuse_no_administrator_before_the_release_policy() -> None:
    """With no administrator AND an empty release policy, both name the administrator first."""
    empty = KeyReleasePolicy("t", ())
    for build in (lambda: build_key_policy(admin_arns=[], enclave_role_arn="r", deployer_arn=DEPLOYER, release=empty),
                  lambda: build_tpm_key_policy(admin_arns=[], vm_role_arn="r", deployer_arn=DEPLOYER, release=empty)):
        with pytest.raises(TeeformError, match="at least one administrator principal"):
            build()
