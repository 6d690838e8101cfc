"""Deploy-time defects of the aws/nitro-enclave target (issue 8 item 2), through the real program
under the mock engine, with assertions on the registered resources' inputs.

Oracles: ARN shapes and API facts from AWS documentation (IAM identifiers: an IAM Identity Center
role is ``arn:aws:iam::<acct>:role/aws-reserved/sso.amazonaws.com/<region>/AWSReservedSSO_...``;
``sts get-caller-identity`` returns ``arn:aws:sts::<acct>:assumed-role/<name>/<session>``; KMS
CreateKey ``BypassPolicyLockoutSafetyCheck``; "Specifying KMS keys in IAM policy statements" for
GenerateRandom; S3 ``aws:SecureTransport``), the test's own manifests, and small evaluators written
here from the IAM evaluation rules -- never values computed by the code under test.
"""

from __future__ import annotations

import fnmatch
import json

import pytest
import yaml
from pulumi_support import by_type, nitro_target, one, policy_violations, resource, run, write_fake_eif_manifest

from teeform.errors import TeeformError
from teeform.preview import MOCK_ACCOUNT_ID, PreviewMocks

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

KEY = "aws:kms/key:Key"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
ENDPOINT = "aws:ec2/vpcEndpoint:VpcEndpoint"
ACCT = MOCK_ACCOUNT_ID
SSO_ROLE = f"arn:aws:iam::{ACCT}:role/aws-reserved/sso.amazonaws.com/eu-west-1/AWSReservedSSO_Deploy_0123456789abcdef"
SSO_SESSION = f"arn:aws:sts::{ACCT}:assumed-role/AWSReservedSSO_Deploy_0123456789abcdef/alice@example.com"
GLASS = f"arn:aws:iam::{ACCT}:role/teeform-break-glass"


@pytest.fixture
def ids(monkeypatch):
    """Record the id the mock engine gives each resource (name -> id)."""
    seen: dict[str, str] = {}
    orig = PreviewMocks.new_resource

    def new_resource(self, args):
        rid, state = orig(self, args)
        seen[args.name] = rid
        return rid, state

    monkeypatch.setattr(PreviewMocks, "new_resource", new_resource)
    return seen


@pytest.fixture
def sso_caller(monkeypatch):
    """The caller is an IAM Identity Center session; the session context maps it to the role with its path
    (what the AWS provider's getSessionContext answers; pulumi-aws iam.get_session_context docs)."""
    calls: list[dict] = []
    orig = PreviewMocks.call

    def call(self, args):
        if args.token == "aws:index/getCallerIdentity:getCallerIdentity":
            self.calls.append(args)
            return {"accountId": ACCT, "arn": SSO_SESSION, "userId": "AROAEXAMPLE:alice@example.com", "id": ACCT}
        if args.token == "aws:iam/getSessionContext:getSessionContext":
            self.calls.append(args)
            calls.append(dict(args.args))
            assert args.args["arn"] == SSO_SESSION
            return {"arn": SSO_SESSION, "issuerArn": SSO_ROLE, "issuerId": "AROAEXAMPLE",
                    "issuerName": "AWSReservedSSO_Deploy_0123456789abcdef", "sessionName": "alice@example.com", "id": SSO_SESSION}
        return orig(self, args)

    monkeypatch.setattr(PreviewMocks, "call", call)
    return calls


def key_policy(resources):
    return json.loads(one(resources, KEY).inputs["policy"])


def stmt(policy, sid):
    return next(s for s in policy["Statement"] if s["Sid"] == sid)


def allows(policy: dict, principal_arn: str, action: str) -> bool:
    """Whether ``principal_arn`` (an IAM role/user ARN, not via the root) may call ``action`` under key
    policy ``policy``, by IAM's rules: some Allow names the principal (or '*') and an action pattern
    matching ``action``, and no Deny applies -- a Deny to '*' with ArnNotEquals aws:PrincipalArn applies
    to every principal whose ARN is not listed (IAM "policy evaluation logic"). Only the condition
    shapes these policies use are understood; anything else fails the test."""
    def acts(st):
        return [a.lower() for a in (st["Action"] if isinstance(st["Action"], list) else [st["Action"]])]

    def names(st):
        p = st["Principal"]
        p = p["AWS"] if isinstance(p, dict) else p
        return p if isinstance(p, list) else [p]

    def matches(st):
        return any(fnmatch.fnmatchcase(action.lower(), a) for a in acts(st)) and (
            principal_arn in names(st) or "*" in names(st))

    allowed = False
    for st in policy["Statement"]:
        if not matches(st):
            continue
        if st["Effect"] == "Deny":
            cond = st.get("Condition", {})
            if not cond:
                return False
            assert list(cond) == ["ArnNotEquals"] and list(cond["ArnNotEquals"]) == ["aws:PrincipalArn"], cond
            exc = cond["ArnNotEquals"]["aws:PrincipalArn"]
            if principal_arn not in (exc if isinstance(exc, list) else [exc]):
                return False
        elif "Condition" not in st:
            allowed = True
    return allowed


# ----------------------------------------------------------------------------- deployer principal


def test_sso_deployer_keeps_its_path(tmp_path, sso_caller):
    img = write_fake_eif_manifest(tmp_path)
    resources, _, _ = run([nitro_target([img.manifest_path])])
    assert sso_caller == [{"arn": SSO_SESSION}]  # the session context was asked for the caller's session
    assert stmt(key_policy(resources), "DeployerSeal")["Principal"] == {"AWS": SSO_ROLE}


def test_sso_deployer_without_root_admin_must_be_an_admin(tmp_path, sso_caller):
    img = write_fake_eif_manifest(tmp_path)
    with pytest.raises(TeeformError) as e:
        run([nitro_target([img.manifest_path], key={"admins": [f"arn:aws:iam::{ACCT}:role/platform-admin"]})])
    assert e.value.field == "teeform:targets[agent].key.admins"
    assert SSO_ROLE in e.value.message and "lockout" in e.value.message
    # With the SSO role (its path included) among the admins the key is created.
    resources, _, _ = run([nitro_target([img.manifest_path], key={"admins": [SSO_ROLE]})])
    assert stmt(key_policy(resources), "KeyAdministration")["Principal"] == {"AWS": [SSO_ROLE]}


def test_deployer_arn_override(tmp_path, sso_caller):
    img = write_fake_eif_manifest(tmp_path)
    ci = f"arn:aws:iam::{ACCT}:role/ci/github-deploy"
    resources, _, mocks = run([nitro_target([img.manifest_path], key={"deployerArn": ci})])
    assert stmt(key_policy(resources), "DeployerSeal")["Principal"] == {"AWS": ci}
    assert sso_caller == []  # no session lookup when the stack names the deployer


@pytest.mark.parametrize("admins, ok", [
    ([f"arn:aws:iam::{ACCT}:user/teeform-deployer"], True),  # the mock caller itself
    ([f"arn:aws:iam::{ACCT}:root"], True),                   # the root delegates to IAM
    ([f"arn:aws:iam::{ACCT}:role/platform-admin"], False),
    (["arn:aws:iam::444455556666:root"], False),             # another account's root
])
def test_lockout_check_on_the_mock_caller(tmp_path, admins, ok):
    img = write_fake_eif_manifest(tmp_path)
    target = nitro_target([img.manifest_path], key={"admins": admins})
    if ok:
        resources, _, _ = run([target])
        assert one(resources, KEY).inputs.get("bypassPolicyLockoutSafetyCheck") is False
        return
    with pytest.raises(TeeformError, match="lockout safety check") as e:
        run([target])
    assert e.value.field == "teeform:targets[agent].key.admins"


def test_lockout_refused_while_loading_the_stack_when_both_are_known(tmp_path, capsys):
    from teeform.cli import main

    img = write_fake_eif_manifest(tmp_path / "build")
    stack = tmp_path / "Pulumi.dev.yaml"
    target = nitro_target([img.manifest_path], key={"admins": [f"arn:aws:iam::{ACCT}:role/a"], "deployerArn": SSO_ROLE})
    stack.write_text(yaml.safe_dump({"config": {"aws:region": "eu-west-1", "teeform:environment": "dev",
                                                "teeform:targets": [target]}}))
    from pulumi_support import REPO

    rc = main(["preview", "--project-dir", str(REPO), "--stack", "dev", "--stack-file", str(stack)])
    out, err = capsys.readouterr()
    assert rc == 2
    first = err.strip().splitlines()[0]
    assert f"{stack}: teeform:targets[0].key.admins: the key admins" in first or \
        f"{stack.name}: teeform:targets[0].key.admins: the key admins" in first, err
    assert "Traceback" not in err


@pytest.mark.parametrize("key, field, text", [
    ({"deployerArn": SSO_SESSION}, "key.deployerArn", "with its path"),
    ({"deployerArn": f"arn:aws:iam::{ACCT}:root"}, "key.deployerArn", "role or user ARN"),
    ({"policyUpdates": "locked"}, "key.breakGlassRole", "needs key.breakGlassRole"),
    ({"policyUpdates": "sealed"}, "key.policyUpdates", "must be one of"),
    ({"breakGlassRole": GLASS}, "key.breakGlassRole", "only with policyUpdates: locked"),
    ({"policyUpdates": "locked", "breakGlassRole": f"arn:aws:iam::{ACCT}:user/bob"}, "key.breakGlassRole", "role ARN"),
])
def test_bad_key_settings_name_the_field(tmp_path, key, field, text):
    img = write_fake_eif_manifest(tmp_path)
    with pytest.raises(TeeformError, match=text) as e:
        run([nitro_target([img.manifest_path], key=key)])
    assert e.value.field == f"teeform:targets[0].{field}"


# ----------------------------------------------------------------------------- GenerateRandom


def test_generate_random_is_granted_in_iam_with_the_attestation_condition(tmp_path):
    old = write_fake_eif_manifest(tmp_path / "v1", version="1.0.0")
    new = write_fake_eif_manifest(tmp_path / "v2", version="2.0.0")
    resources, _, _ = run([nitro_target([new.manifest_path, old.manifest_path])])
    policy = key_policy(resources)
    for st in policy["Statement"]:
        for a in st["Action"] if isinstance(st["Action"], list) else [st["Action"]]:
            assert not fnmatch.fnmatchcase("kms:generaterandom", a.lower()), (st["Sid"], a)
    rp = next(r for r in by_type(resources, ROLE_POLICY) if r.name == "agent-key-generate-random")
    assert rp.inputs["role"] == one(resources, "aws:iam/role:Role").inputs["name"]
    doc = json.loads(rp.inputs["policy"])
    assert doc["Version"] == "2012-10-17"
    expected = []
    for i, img in enumerate((new, old), 1):
        m = img.manifest.measurements
        expected.append({
            "Sid": f"GenerateRandomAttested{i}", "Effect": "Allow", "Action": ["kms:GenerateRandom"], "Resource": "*",
            "Condition": {"StringEqualsIgnoreCase": {f"kms:RecipientAttestation:{k}": m[k] for k in ("PCR0", "PCR1", "PCR2", "ImageSha384")}},
        })
    assert doc["Statement"] == expected


# ----------------------------------------------------------------------------- locked key policy


def test_locked_key_policy_only_break_glass_may_rewrite(tmp_path):
    img = write_fake_eif_manifest(tmp_path)
    resources, _, _ = run([nitro_target([img.manifest_path], key={"policyUpdates": "locked", "breakGlassRole": GLASS})])
    key = one(resources, KEY).inputs
    assert key["bypassPolicyLockoutSafetyCheck"] is True  # the deployer is deliberately locked out
    policy = key_policy(resources)
    root = f"arn:aws:iam::{ACCT}:root"
    admin = stmt(policy, "KeyAdministration")
    assert admin["Principal"] == {"AWS": [root]}
    assert not any(fnmatch.fnmatchcase("kms:putkeypolicy", a.lower()) for a in admin["Action"])
    assert "kms:ScheduleKeyDeletion" in admin["Action"] and "kms:Get*" in admin["Action"]
    assert allows(policy, GLASS, "kms:PutKeyPolicy")
    for other in (root, f"arn:aws:iam::{ACCT}:user/teeform-deployer", f"arn:aws:iam::{ACCT}:role/platform-admin"):
        assert not allows(policy, other, "kms:PutKeyPolicy"), other
    deny = stmt(policy, "DenyPolicyUpdateExceptBreakGlass")
    assert deny["Effect"] == "Deny" and deny["Principal"] == {"AWS": "*"}
    # the release statements are unchanged by the lock
    assert stmt(policy, "EnclaveRelease1")["Condition"]["StringEqualsIgnoreCase"]["kms:RecipientAttestation:PCR0"] == \
        img.manifest.measurements["PCR0"]
    # the advisory rewriters policy passes a locked key and lists the rewriters of an open one
    assert policy_violations("aws-kms-key-policy-rewriters", resources) == []


def test_open_key_policy_lists_rewriters(tmp_path):
    img = write_fake_eif_manifest(tmp_path)
    resources, _, _ = run([nitro_target([img.manifest_path])])
    assert one(resources, KEY).inputs["bypassPolicyLockoutSafetyCheck"] is False
    (v,) = policy_violations("aws-kms-key-policy-rewriters", resources)
    assert v.enforcement == "advisory" and v.resource_name == "agent-key-kms"
    assert f"by: arn:aws:iam::{ACCT}:root (every IAM principal of account {ACCT} whose IAM policy allows kms:PutKeyPolicy)." in v.message
    assert policy_violations("aws-kms-key-policy-rewriters", resources, {"acceptedRewriters": [f"arn:aws:iam::{ACCT}:root"]}) == []


# ----------------------------------------------------------------------------- bucket and network


def test_artifact_bucket_denies_requests_without_tls(tmp_path):
    img = write_fake_eif_manifest(tmp_path)
    resources, _, _ = run([nitro_target([img.manifest_path])])
    bucket = one(resources, "aws:s3/bucket:Bucket").inputs["bucket"]
    bp = one(resources, "aws:s3/bucketPolicy:BucketPolicy").inputs
    assert bp["bucket"] == bucket
    assert json.loads(bp["policy"]) == {"Version": "2012-10-17", "Statement": [{
        "Sid": "DenyInsecureTransport", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
        "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"],
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    }]}
    assert policy_violations("aws-s3-bucket-tls-only", resources) == []
    no_policy = [r for r in resources if r.type != "aws:s3/bucketPolicy:BucketPolicy"]
    (v,) = policy_violations("aws-s3-bucket-tls-only", no_policy)
    assert v.resource_type == "aws:s3/bucket:Bucket" and "no aws.s3.BucketPolicy" in v.message


def test_created_vpc_default_security_group_is_closed(tmp_path, ids):
    img = write_fake_eif_manifest(tmp_path)
    resources, _, _ = run([nitro_target([img.manifest_path])])
    vpc = one(resources, "aws:ec2/vpc:Vpc")
    dsg = one(resources, "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup").inputs
    assert dsg["vpcId"] == ids[vpc.name]
    assert "ingress" not in dsg and "egress" not in dsg
    assert policy_violations("aws-ec2-default-sg-closed", resources) == []
    (v,) = policy_violations("aws-ec2-default-sg-closed", [r for r in resources if r.type != "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup"])
    assert v.resource_type == "aws:ec2/vpc:Vpc"


def test_existing_vpc_default_group_is_left_alone(tmp_path):
    img = write_fake_eif_manifest(tmp_path)
    resources, _, _ = run([nitro_target([img.manifest_path], network={"vpcId": "vpc-0123", "subnetId": "subnet-0123"})])
    assert by_type(resources, "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup") == []
    assert by_type(resources, ENDPOINT) == []


def test_private_network_endpoints_and_source_vpce(tmp_path, ids):
    img = write_fake_eif_manifest(tmp_path)
    resources, _, _ = run([nitro_target([img.manifest_path], network={"private": True})])
    assert by_type(resources, "aws:ec2/internetGateway:InternetGateway") == []
    rt = one(resources, "aws:ec2/routeTable:RouteTable")
    assert not rt.inputs.get("routes")
    assert one(resources, "aws:ec2/subnet:Subnet").inputs["mapPublicIpOnLaunch"] is False
    eps = {r.inputs["serviceName"]: r for r in by_type(resources, ENDPOINT)}
    # Service names: PrivateLink guide, com.amazonaws.<region>.<service>.
    assert set(eps) == {"com.amazonaws.eu-west-1.s3", "com.amazonaws.eu-west-1.kms"}
    s3, kms = eps["com.amazonaws.eu-west-1.s3"].inputs, eps["com.amazonaws.eu-west-1.kms"]
    assert s3["vpcEndpointType"] == "Gateway" and s3["routeTableIds"] == [ids[rt.name]]
    assert kms.inputs["vpcEndpointType"] == "Interface" and kms.inputs["privateDnsEnabled"] is True
    subnet = one(resources, "aws:ec2/subnet:Subnet")
    assert kms.inputs["subnetIds"] == [ids[subnet.name]]
    groups = {r.name: r for r in by_type(resources, "aws:ec2/securityGroup:SecurityGroup")}
    (ep_sg,) = kms.inputs["securityGroupIds"]
    rule = next(r.inputs for r in by_type(resources, "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
                if r.inputs["securityGroupId"] == ep_sg)
    assert (rule["ipProtocol"], rule["fromPort"], rule["toPort"]) == ("tcp", 443, 443)
    assert rule["referencedSecurityGroupId"] == ids["agent-net-sg"] and "agent-net-sg" in groups
    vpce = ids[kms.name]
    policy = key_policy(resources)
    assert stmt(policy, "EnclaveRelease1")["Condition"]["StringEquals"] == {"aws:SourceVpce": vpce}
    rp = next(r for r in by_type(resources, ROLE_POLICY) if r.name == "agent-key-generate-random")
    assert json.loads(rp.inputs["policy"])["Statement"][0]["Condition"]["StringEquals"] == {"aws:SourceVpce": vpce}
    # the other policies still pass this key
    for name in ("aws-kms-decrypt-requires-attestation", "measurements-match-manifest", "no-public-ingress"):
        assert [v for v in policy_violations(name, resources)] == [], name


def test_private_network_needs_a_created_vpc(tmp_path):
    img = write_fake_eif_manifest(tmp_path)
    with pytest.raises(TeeformError) as e:
        run([nitro_target([img.manifest_path], network={"private": True, "vpcId": "vpc-1", "subnetId": "subnet-1"})])
    assert e.value.field == "teeform:targets[0].network.private"


# ----------------------------------------------------------------------------- policy units


def _kms(policy: dict, name: str = "k"):
    return resource("aws:kms/key:Key", {"policy": json.dumps(policy)}, name)


def _messages(name, resources, config=None):
    return [v.message for v in policy_violations(name, resources, config)]


ROOT = f"arn:aws:iam::{ACCT}:root"


@pytest.mark.parametrize("statements, listed", [
    ([{"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "kms:*", "Resource": "*"}], ["* (every principal)"]),
    ([{"Effect": "Allow", "Principal": {"AWS": [ROOT, GLASS]}, "Action": ["kms:Put*"], "Resource": "*"}], [ROOT, GLASS]),
    ([{"Effect": "Allow", "Principal": {"AWS": GLASS}, "NotAction": ["kms:Decrypt"], "Resource": "*"}], [GLASS]),
    # a Deny without exception: nobody can rewrite (and nobody can manage the key)
    ([{"Effect": "Allow", "Principal": {"AWS": GLASS}, "Action": "kms:PutKeyPolicy", "Resource": "*"},
      {"Effect": "Deny", "Principal": "*", "Action": "kms:PutKeyPolicy", "Resource": "*"}], ["nobody"]),
    # a Deny whose exception is the account root does not lock
    ([{"Effect": "Allow", "Principal": {"AWS": ROOT}, "Action": "kms:*", "Resource": "*"},
      {"Effect": "Deny", "Principal": "*", "Action": "kms:PutKeyPolicy", "Resource": "*",
       "Condition": {"ArnNotEquals": {"aws:PrincipalArn": ROOT}}}], [ROOT]),
])
def test_rewriters_policy_fails(statements, listed):
    (msg,) = _messages("aws-kms-key-policy-rewriters", [_kms({"Version": "2012-10-17", "Statement": statements})])
    for p in listed:
        assert p in msg


@pytest.mark.parametrize("statements, config", [
    # locked to a break-glass role by a wildcard Deny with an aws:PrincipalArn exception
    ([{"Effect": "Allow", "Principal": {"AWS": ROOT}, "Action": "kms:*", "Resource": "*"},
      {"Effect": "Deny", "Principal": {"AWS": "*"}, "Action": ["kms:PutKeyPolicy"], "Resource": "*",
       "Condition": {"ArnNotLike": {"aws:PrincipalArn": [GLASS]}}}], None),
    # nobody may rewrite except an accepted principal
    ([{"Effect": "Allow", "Principal": {"AWS": GLASS}, "Action": "kms:PutKeyPolicy", "Resource": "*"},
      {"Effect": "Allow", "Principal": {"AWS": ROOT}, "Action": "kms:Decrypt", "Resource": "*"}], {"acceptedRewriters": [GLASS]}),
])
def test_rewriters_policy_passes(statements, config):
    assert _messages("aws-kms-key-policy-rewriters", [_kms({"Version": "2012-10-17", "Statement": statements})], config) == []


def _bucket_pair(policy: dict | None):
    out = [resource("aws:s3/bucket:Bucket", {"bucket": "b1"}, "b")]
    if policy is not None:
        out.append(resource("aws:s3/bucketPolicy:BucketPolicy", {"bucket": "b1", "policy": json.dumps(policy)}, "bp"))
    return out


def _deny(**changes):
    st = {"Effect": "Deny", "Principal": "*", "Action": "s3:*", "Resource": ["arn:aws:s3:::b1", "arn:aws:s3:::b1/*"],
          "Condition": {"Bool": {"aws:SecureTransport": "false"}}}
    st.update(changes)
    return {"Version": "2012-10-17", "Statement": [st]}


@pytest.mark.parametrize("policy, ok", [
    (_deny(), True),
    (_deny(Action="*", Principal={"AWS": "*"}), True),
    (None, False),
    (_deny(Effect="Allow"), False),
    (_deny(Action="s3:GetObject"), False),                    # writes over plain HTTP stay allowed
    (_deny(Principal={"AWS": "arn:aws:iam::111122223333:root"}), False),
    (_deny(Resource="arn:aws:s3:::b1"), False),               # the bucket, not its objects
    (_deny(Condition={"Bool": {"aws:SecureTransport": "true"}}), False),
])
def test_tls_only_policy_units(policy, ok):
    msgs = _messages("aws-s3-bucket-tls-only", _bucket_pair(policy))
    assert (msgs == []) is ok, msgs


def test_default_sg_policy_units():
    vpc = resource("aws:ec2/vpc:Vpc", {"cidrBlock": "10.0.0.0/16"}, "v")
    closed = resource("aws:ec2/defaultSecurityGroup:DefaultSecurityGroup", {"vpcId": "vpc-1"}, "d")
    open_ = resource("aws:ec2/defaultSecurityGroup:DefaultSecurityGroup",
                     {"vpcId": "vpc-1", "egress": [{"protocol": "-1", "fromPort": 0, "toPort": 0, "cidrBlocks": ["0.0.0.0/0"]}]}, "d")
    assert _messages("aws-ec2-default-sg-closed", [vpc, closed]) == []
    (m,) = _messages("aws-ec2-default-sg-closed", [vpc, open_])
    assert "'egress'" in m
    (m,) = _messages("aws-ec2-default-sg-closed", [vpc])
    assert "1 VPC(s) but closes 0" in m


def test_default_security_group_ingress_is_read_by_no_public_ingress():
    """The default group's inline ``ingress`` has SecurityGroup's shape (pulumi-aws DefaultSecurityGroup
    docs), so no-public-ingress reads it instead of policy-coverage marking it NOT CHECKED."""
    dsg = resource("aws:ec2/defaultSecurityGroup:DefaultSecurityGroup",
                   {"vpcId": "vpc-1", "ingress": [{"protocol": "tcp", "fromPort": 22, "toPort": 22, "cidrBlocks": ["0.0.0.0/0"]}]}, "d")
    (m,) = _messages("no-public-ingress", [dsg])
    assert "0.0.0.0/0" in m and "ingress[0].cidrBlocks" in m
    assert _messages("policy-coverage", [resource("aws:ec2/defaultSecurityGroup:DefaultSecurityGroup", {"vpcId": "vpc-1"}, "d")]) == []


def test_repository_prod_stack_is_private_and_locked(tmp_path, capsys):
    """stacks/Pulumi.prod.yaml previewed with the prod pack config (all: mandatory): locked key, private
    network, no violation of the new policies."""
    from pulumi_support import REPO

    from teeform.cli import main

    img = write_fake_eif_manifest(tmp_path / "build")
    doc = yaml.safe_load((REPO / "stacks" / "Pulumi.prod.yaml").read_text())
    (t,) = doc["config"]["teeform:targets"]
    assert t["key"]["policyUpdates"] == "locked" and t["network"]["private"] is True
    t["manifests"] = [str(img.manifest_path)]
    from test_signing import sign_for_repo_stack  # prod pins the demo's signing key: use a test key

    sign_for_repo_stack(doc, img.manifest_path, tmp_path)
    stack = tmp_path / "Pulumi.prod.yaml"
    stack.write_text(yaml.safe_dump(doc))
    rc = main(["preview", "--project-dir", str(REPO), "--stack", "prod", "--stack-file", str(stack)])
    out, err = capsys.readouterr()
    assert rc == 0, out + err
    assert "statement DenyPolicyUpdateExceptBreakGlass: Deny * 1 action(s): kms:PutKeyPolicy" in out
    assert "+ aws:ec2/vpcEndpoint:VpcEndpoint  agent-net-kms-endpoint" in out
    for pid in ("aws-kms-key-policy-rewriters", "aws-s3-bucket-tls-only", "aws-ec2-default-sg-closed"):
        assert pid not in out.split("\nOutputs:\n", 1)[1], pid
    assert "No mandatory violations." in out
