"""The offline mocks answer ``aws:iam/getSessionContext:getSessionContext`` as pulumi-aws does
(issue 7; components/aws/nitro.py asks it for the deployer principal).

Oracles: the pulumi-aws docs of ``iam.get_session_context`` ("For non-role ARNs, this data source
simply passes the ARN through in issuer_arn"; for an STS assumed-role ARN it returns the source
role's ARN) and the IAM Identity Center role ARN shape
``arn:aws:iam::<acct>:role/aws-reserved/sso.amazonaws.com/<region>/AWSReservedSSO_...`` (IAM
Identity Center User Guide), written out here by hand.
"""

from __future__ import annotations

import json

import pytest
from pulumi_support import nitro_target, one, run, write_fake_eif_manifest

from teeform.preview import MOCK_ACCOUNT_ID, MOCK_CALLER_ARN, PreviewMocks
from teeform.preview.clouds import plugin_for

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

TOKEN = "aws:iam/getSessionContext:getSessionContext"
ACCT = MOCK_ACCOUNT_ID
SSO_NAME = "AWSReservedSSO_Deploy_0123456789abcdef"
SSO_SESSION = f"arn:aws:sts::{ACCT}:assumed-role/{SSO_NAME}/alice@example.com"


def test_the_aws_plugin_declares_and_answers_the_invoke() -> None:
    plugin = plugin_for(TOKEN)
    assert TOKEN in plugin.invoke_tokens
    user = plugin.call(TOKEN, {"arn": MOCK_CALLER_ARN}, "eu-west-1")
    assert user["issuerArn"] == MOCK_CALLER_ARN and user["arn"] == MOCK_CALLER_ARN and user["issuerName"] == ""
    sso = plugin.call(TOKEN, {"arn": SSO_SESSION}, "eu-west-1")
    assert sso["issuerArn"] == f"arn:aws:iam::{ACCT}:role/aws-reserved/sso.amazonaws.com/eu-west-1/{SSO_NAME}"
    assert (sso["issuerName"], sso["sessionName"]) == (SSO_NAME, "alice@example.com")
    assert sso["issuerId"].startswith("AROA")
    home = plugin.call(TOKEN, {"arn": SSO_SESSION}, "us-east-1")
    assert home["issuerArn"] == f"arn:aws:iam::{ACCT}:role/aws-reserved/sso.amazonaws.com/{SSO_NAME}"
    plain = plugin.call(TOKEN, {"arn": f"arn:aws-cn:sts::{ACCT}:assumed-role/deploy/ci-run-7"}, "cn-north-1")
    assert plain["issuerArn"] == f"arn:aws-cn:iam::{ACCT}:role/deploy"


def test_program_gets_the_sso_role_with_its_path_from_the_mocks(tmp_path, monkeypatch) -> None:
    """Only the caller identity is replaced; the session context comes from the mocks themselves."""
    orig = PreviewMocks.call
    asked: list[str] = []

    def call(self, args):
        if args.token == "aws:index/getCallerIdentity:getCallerIdentity":
            return {"accountId": ACCT, "arn": SSO_SESSION, "userId": "AROAEXAMPLE:alice@example.com", "id": ACCT}, []
        if args.token == TOKEN:
            asked.append(args.args["arn"])
        return orig(self, args)

    monkeypatch.setattr(PreviewMocks, "call", call)
    img = write_fake_eif_manifest(tmp_path)
    resources, _, _ = run([nitro_target([img.manifest_path])])
    assert asked == [SSO_SESSION]
    policy = json.loads(one(resources, "aws:kms/key:Key").inputs["policy"])
    seal = next(s for s in policy["Statement"] if s["Sid"] == "DeployerSeal")
    assert seal["Principal"] == {"AWS": f"arn:aws:iam::{ACCT}:role/aws-reserved/sso.amazonaws.com/eu-west-1/{SSO_NAME}"}
