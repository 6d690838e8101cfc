"""AWS components under the Pulumi mock engine (the real program, pulumi.md §2.3) and their pure helpers.

Expected values come from the test's own inputs (the fake manifest it wrote, hashlib over the files
it wrote) and from the reference notes (eif-nitro.md §5, §6), never from the code under test.
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import json

import pytest
import yaml
from pulumi_support import by_type, fake_hex, nitro_target, one, run, write_fake_eif_manifest

from components.aws.enclave_host import UserDataSpec, check_enclave_fit, render_user_data
from components.aws.enclave_network import subnet_cidr
from components.aws.nitro import deployer_principal, physical_name
from teeform.errors import TeeformError
from teeform.preview import MOCK_AMI_ID

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

KEY = "aws:kms/key:Key"
LT = "aws:ec2/launchTemplate:LaunchTemplate"


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    d = tmp_path_factory.mktemp("single")
    img = write_fake_eif_manifest(d)
    resources, outputs, _ = run([nitro_target([img.manifest_path])])
    return img, resources, outputs


def key_policy(resources):
    return json.loads(one(resources, KEY).inputs["policy"])


def stmt(policy, sid):
    return next(s for s in policy["Statement"] if s["Sid"] == sid)


def test_key_policy_pins_exactly_the_manifest_measurements(single):
    img, resources, _ = single
    policy = key_policy(resources)
    assert policy["Version"] == "2012-10-17"
    assert [s["Sid"] for s in policy["Statement"]] == ["KeyAdministration", "EnclaveRelease1", "DeployerSeal"]
    enclave = stmt(policy, "EnclaveRelease1")
    m = img.manifest.measurements
    # eif-nitro.md §5.1/§5.3: StringEqualsIgnoreCase, one key per PCR, ImageSha384 = PCR0.
    assert enclave["Condition"] == {
        "StringEqualsIgnoreCase": {
            "kms:RecipientAttestation:PCR0": m["PCR0"],
            "kms:RecipientAttestation:PCR1": m["PCR1"],
            "kms:RecipientAttestation:PCR2": m["PCR2"],
            "kms:RecipientAttestation:ImageSha384": m["PCR0"],
        }
    }
    assert one(resources, KEY).inputs["tags"]["teeform:target"] == "agent"
    # GenerateRandom is not a key resource action (KMS developer guide, "Specifying KMS keys in IAM
    # policy statements": Resource "*" for CreateKey, GenerateRandom, ...): it is in the role's IAM policy.
    assert sorted(enclave["Action"]) == ["kms:Decrypt", "kms:GenerateDataKey"]
    role = one(resources, "aws:iam/role:Role").inputs["name"]
    assert enclave["Principal"] == {"AWS": f"arn:aws:iam::111122223333:role/{role}"}
    seal = stmt(policy, "DeployerSeal")
    assert seal["Principal"] == {"AWS": "arn:aws:iam::111122223333:user/teeform-deployer"}
    assert sorted(seal["Action"]) == ["kms:DescribeKey", "kms:Encrypt"]


def test_admin_statement_grants_no_plaintext_operation(single):
    _, resources, _ = single
    admin = stmt(key_policy(resources), "KeyAdministration")
    assert admin["Principal"] == {"AWS": ["arn:aws:iam::111122223333:root"]}
    assert "Condition" not in admin
    forbidden = [
        "kms:Decrypt", "kms:GenerateDataKey", "kms:GenerateDataKeyWithoutPlaintext", "kms:GenerateDataKeyPair",
        "kms:ReEncryptFrom", "kms:ReEncryptTo", "kms:GenerateRandom", "kms:DeriveSharedSecret", "kms:CreateGrant",
    ]
    for pattern in admin["Action"]:
        assert pattern not in ("*", "kms:*")
        hits = [a for a in forbidden if fnmatch.fnmatchcase(a.lower(), pattern.lower())]
        assert not hits, f"admin action {pattern} grants {hits}"
    for needed in ("kms:ScheduleKeyDeletion", "kms:CancelKeyDeletion", "kms:RotateKeyOnDemand", "kms:Put*", "kms:Disable*"):
        assert needed in admin["Action"]


def test_key_rotation_and_deletion_window(single):
    _, resources, _ = single
    k = one(resources, KEY).inputs
    assert k["enableKeyRotation"] is True and k["deletionWindowInDays"] == 30
    assert one(resources, "aws:kms/alias:Alias").inputs["name"].startswith("alias/")


def string_equals_ignore_case_allows(policy: dict, principal: str, action: str, context: dict[str, str]) -> bool:
    """A small, independent evaluator of the IAM rules the release statements rely on (IAM JSON
    policy reference, "Condition" and "Evaluation logic"): an Allow statement applies when its
    principal and action match and, for every key of its StringEqualsIgnoreCase block, the request's
    value equals one of the listed values ignoring case (keys ANDed, values ORed); a missing key
    fails. The policy allows the request when any statement applies (statements ORed)."""
    for st in policy["Statement"]:
        if st.get("Effect") != "Allow" or action not in (st["Action"] if isinstance(st["Action"], list) else [st["Action"]]):
            continue
        principals = st["Principal"]["AWS"]
        if principal not in (principals if isinstance(principals, list) else [principals]):
            continue
        ok = True
        for op, block in st.get("Condition", {}).items():
            assert op == "StringEqualsIgnoreCase", op  # the only operator these statements use
            for key, allowed in block.items():
                allowed = allowed if isinstance(allowed, list) else [allowed]
                got = next((v for k, v in context.items() if k.lower() == key.lower()), None)
                ok = ok and got is not None and got.lower() in [a.lower() for a in allowed]
        if ok:
            return True
    return False


def test_two_manifests_give_one_statement_each_and_no_cross_product(tmp_path):
    old = write_fake_eif_manifest(tmp_path / "v1", version="1.0.0")
    new = write_fake_eif_manifest(tmp_path / "v2", version="2.0.0")
    # The admin is also the deployer (KMS's lockout check: the creator must keep kms:PutKeyPolicy).
    key = {"admins": ["arn:aws:iam::111122223333:role/admin"], "deployerArn": "arn:aws:iam::111122223333:role/admin"}
    resources, outputs, _ = run([nitro_target([new.manifest_path, old.manifest_path], key=key)])
    policy = key_policy(resources)
    for sid, img in (("EnclaveRelease1", new), ("EnclaveRelease2", old)):
        cond = stmt(policy, sid)["Condition"]["StringEqualsIgnoreCase"]
        assert cond == {f"kms:RecipientAttestation:{k}": img.manifest.measurements[k] for k in ("PCR0", "PCR1", "PCR2", "ImageSha384")}
    assert stmt(policy, "KeyAdministration")["Principal"] == {"AWS": ["arn:aws:iam::111122223333:role/admin"]}

    role = "arn:aws:iam::111122223333:role/" + one(resources, "aws:iam/role:Role").inputs["name"]

    def doc(pcr0_from, pcr1_from, pcr2_from):  # the condition values an attestation document would carry
        return {"kms:RecipientAttestation:PCR0": pcr0_from.manifest.measurements["PCR0"].upper(),
                "kms:RecipientAttestation:PCR1": pcr1_from.manifest.measurements["PCR1"],
                "kms:RecipientAttestation:PCR2": pcr2_from.manifest.measurements["PCR2"],
                "kms:RecipientAttestation:ImageSha384": pcr0_from.manifest.measurements["PCR0"]}

    allows = lambda ctx: string_equals_ignore_case_allows(policy, role, "kms:Decrypt", ctx)  # noqa: E731
    assert allows(doc(new, new, new)) and allows(doc(old, old, old))
    assert not allows(doc(new, old, new))  # A.PCR0 with B.PCR1: a mix of builds is refused
    assert not allows(doc(old, old, new))
    assert not string_equals_ignore_case_allows(policy, "arn:aws:iam::111122223333:role/admin", "kms:Decrypt", doc(new, new, new))
    assert not string_equals_ignore_case_allows(policy, role, "kms:Decrypt", {})  # no attestation document
    # Same manifest name: exported as name@version; only the first (deployed) EIF is uploaded.
    assert list(outputs["measurements"]) == ["openclaw-agent@2.0.0", "openclaw-agent@1.0.0"]
    eif = [r for r in by_type(resources, "aws:s3/bucketObjectv2:BucketObjectv2") if r.name.endswith("-eif")]
    assert [r.inputs["key"] for r in eif] == [f"eif/sha256/{hashlib.sha256(new.eif_path.read_bytes()).hexdigest()}.eif"]


def test_evaluator_sees_the_cross_product_of_a_single_statement():
    """The evaluator itself: one statement listing two PCR0s and two PCR1s admits the mix."""
    a0, a1, b0, b1 = (fake_hex(x) for x in ("a0", "a1", "b0", "b1"))
    one_stmt = {"Statement": [{"Effect": "Allow", "Principal": {"AWS": "r"}, "Action": ["kms:Decrypt"], "Condition": {
        "StringEqualsIgnoreCase": {"kms:RecipientAttestation:PCR0": [a0, b0], "kms:RecipientAttestation:PCR1": [a1, b1]}}}]}
    mix = {"kms:RecipientAttestation:PCR0": a0, "kms:RecipientAttestation:PCR1": b1}
    assert string_equals_ignore_case_allows(one_stmt, "r", "kms:Decrypt", mix)


def test_launch_template_enclave_imdsv2_encrypted_ebs(single):
    _, resources, _ = single
    lt = one(resources, LT).inputs
    assert lt["enclaveOptions"] == {"enabled": True}
    assert lt["metadataOptions"]["httpTokens"] == "required"
    assert lt["metadataOptions"]["httpPutResponseHopLimit"] == 1
    (bdm,) = lt["blockDeviceMappings"]
    assert bdm["ebs"]["encrypted"] == "true"  # a string in pulumi-aws (pulumi.md §4.1)
    assert lt["instanceType"] == "m6i.xlarge"
    assert lt["iamInstanceProfile"]["arn"].startswith("arn:aws:iam::111122223333:instance-profile/")
    inst = one(resources, "aws:ec2/instance:Instance").inputs
    assert inst["launchTemplate"]["id"].startswith("lt-")


def test_user_data_in_template_checks_sha256_before_running(single):
    img, resources, _ = single
    text = base64.b64decode(one(resources, LT).inputs["userData"]).decode()
    sha = hashlib.sha256(img.eif_path.read_bytes()).hexdigest()
    check = text.index(f"echo '{sha}  /opt/teeform/enclave.eif' | sha256sum --check --strict --quiet -")
    run_at = text.index("nitro-cli run-enclave --eif-path /opt/teeform/enclave.eif --cpu-count 2 --memory 1024")
    assert text.index("aws s3 cp") < check < run_at
    assert "does not match the manifest's sha256; refusing to run it" in text and "sha384sum" not in text
    assert "--debug-mode" not in text and "--attach-console" not in text


@pytest.mark.parametrize("schema_version, artifact_sha384", [(2, False), (2, True), (1, True)])
def test_eif_object_key_and_host_check_use_the_manifests_sha256(tmp_path, schema_version, artifact_sha384):
    """Whatever the manifest (schema 2 without or with artifact.sha384, an old schema-1 one), the EIF is
    stored at eif/sha256/<the manifest's artifact.sha256>.eif and the host checks it with sha256sum
    against that value; the file's SHA-384, where recorded, is used nowhere."""
    img = write_fake_eif_manifest(tmp_path, schema_version=schema_version, artifact_sha384=artifact_sha384)
    doc = json.loads(img.manifest_path.read_text())  # the expected digest: the manifest file this test wrote
    assert doc["schema_version"] == schema_version and ("sha384" in doc["artifact"]) is artifact_sha384
    sha256 = doc["artifact"]["sha256"]
    assert sha256 == hashlib.sha256(img.eif_path.read_bytes()).hexdigest()
    resources, outputs, _ = run([nitro_target([img.manifest_path])])
    (eif,) = [r.inputs for r in by_type(resources, "aws:s3/bucketObjectv2:BucketObjectv2") if r.name.endswith("-eif")]
    assert eif["key"] == f"eif/sha256/{sha256}.eif" and eif["sourceHash"] == sha256
    bucket = one(resources, "aws:s3/bucket:Bucket").inputs["bucket"]
    assert outputs["eif_uri"] == f"s3://{bucket}/eif/sha256/{sha256}.eif"
    text = base64.b64decode(one(resources, LT).inputs["userData"]).decode()
    assert f"s3://{bucket}/eif/sha256/{sha256}.eif /opt/teeform/enclave.eif" in text
    assert f"echo '{sha256}  /opt/teeform/enclave.eif' | sha256sum --check --strict --quiet -" in text
    if artifact_sha384:
        assert doc["artifact"]["sha384"] not in text and doc["artifact"]["sha384"] not in json.dumps(outputs)


def test_role_policy_is_least_privilege(single):
    img, resources, outputs = single
    host = next(r for r in by_type(resources, "aws:iam/rolePolicy:RolePolicy") if r.name == "agent-host-policy")
    doc = json.loads(host.inputs["policy"])
    read, use = doc["Statement"]
    bucket = one(resources, "aws:s3/bucket:Bucket").inputs["bucket"]
    assert read["Action"] == "s3:GetObject"
    sha256 = json.loads(img.manifest_path.read_text())["artifact"]["sha256"]
    assert read["Resource"] == f"arn:aws:s3:::{bucket}/eif/sha256/{sha256}.eif"
    assert use["Resource"] == outputs["kms_key_arn"]
    assert {"kms:Decrypt", "kms:GenerateDataKey"} <= set(use["Action"])
    assume = json.loads(one(resources, "aws:iam/role:Role").inputs["assumeRolePolicy"])
    assert assume["Statement"][0]["Principal"] == {"Service": "ec2.amazonaws.com"}


def test_security_group_has_no_ingress_by_default(single):
    _, resources, _ = single
    sg = one(resources, "aws:ec2/securityGroup:SecurityGroup").inputs
    assert "ingress" not in sg and "egress" not in sg
    assert by_type(resources, "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule") == []
    eg = one(resources, "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule").inputs
    assert (eg["ipProtocol"], eg["fromPort"], eg["toPort"], eg["cidrIpv4"]) == ("tcp", 443, 443, "0.0.0.0/0")


def test_configured_ingress_and_existing_network(tmp_path):
    img = write_fake_eif_manifest(tmp_path)
    net = {"vpcId": "vpc-0123", "subnetId": "subnet-0123", "ingress": [{"cidr": "10.0.0.0/8", "port": 443}, {"cidr": "fd00::/8", "port": 8443}]}
    resources, _, _ = run([nitro_target([img.manifest_path], network=net)])
    rules = [r.inputs for r in by_type(resources, "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")]
    assert [(r.get("cidrIpv4"), r.get("cidrIpv6"), r["fromPort"], r["toPort"]) for r in rules] == [
        ("10.0.0.0/8", None, 443, 443), (None, "fd00::/8", 8443, 8443)
    ]
    assert by_type(resources, "aws:ec2/vpc:Vpc") == []
    assert one(resources, "aws:ec2/securityGroup:SecurityGroup").inputs["vpcId"] == "vpc-0123"
    assert one(resources, "aws:ec2/instance:Instance").inputs["subnetId"] == "subnet-0123"


def test_bucket_private_versioned_encrypted_content_addressed(single):
    img, resources, outputs = single
    pab = one(resources, "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock").inputs
    assert all(pab[k] is True for k in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets"))
    assert one(resources, "aws:s3/bucketVersioning:BucketVersioning").inputs["versioningConfiguration"]["status"] == "Enabled"
    sse = one(resources, "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration").inputs
    assert sse["rules"][0]["applyServerSideEncryptionByDefault"]["sseAlgorithm"] == "aws:kms"
    objs = {r.name.rsplit("-", 1)[1]: r.inputs for r in by_type(resources, "aws:s3/bucketObjectv2:BucketObjectv2")}
    eif_sha256 = hashlib.sha256(img.eif_path.read_bytes()).hexdigest()
    sha256 = hashlib.sha256(img.manifest_path.read_bytes()).hexdigest()
    assert objs["eif"]["key"] == f"eif/sha256/{eif_sha256}.eif" and objs["eif"]["sourceHash"] == eif_sha256
    assert objs["manifest"]["key"] == f"manifests/sha256/{sha256}.json"
    bucket = one(resources, "aws:s3/bucket:Bucket").inputs["bucket"]
    assert outputs["eif_uri"] == f"s3://{bucket}/eif/sha256/{eif_sha256}.eif"


def test_missing_or_stale_eif_is_a_clear_error(tmp_path):
    img = write_fake_eif_manifest(tmp_path / "a", write_eif=False)
    with pytest.raises(TeeformError, match="the EIF openclaw-agent.eif described by the manifest is not on disk"):
        run([nitro_target([img.manifest_path])])
    img = write_fake_eif_manifest(tmp_path / "b")
    data = bytearray(img.eif_path.read_bytes())
    data[0] ^= 1
    img.eif_path.write_bytes(bytes(data))
    with pytest.raises(TeeformError, match="EIF sha256 [0-9a-f]{64} does not match the manifest's"):
        run([nitro_target([img.manifest_path])])


def test_small_instance_type_rejected_in_program(tmp_path):
    img = write_fake_eif_manifest(tmp_path)
    with pytest.raises(TeeformError) as ei:
        run([nitro_target([img.manifest_path], instanceType="c6g.large", enclave={"cpuCount": 2, "memoryMib": 1024})])
    assert ei.value.field == "teeform:targets[agent].enclave.cpuCount"
    assert "c6g.large has 2 vCPUs; an enclave of 2 leaves the parent fewer than 1" in ei.value.message


# ----------------------------------------------------------------------------- pure helpers


@pytest.mark.parametrize(
    "itype, cpus, mem, eif, fragment",
    [
        ("m6i.large", 2, 1024, 1, "m6i.large has 2 vCPUs; Nitro Enclaves on Intel/AMD instances need at least 4"),
        ("t3.xlarge", 2, 1024, 1, "the t3 family does not support Nitro Enclaves"),
        ("m7g.xlarge", 2, 1024, 1, "the m7g family does not support Nitro Enclaves"),
        ("m6i.xlarge", 3, 1024, 1, "needs whole cores (an even vCPU count), got 3"),
        ("m6i.xlarge", 4, 1024, 1, "leaves the parent fewer than 2"),
        ("m6i.xlarge", 2, 1024, 300 << 20, "nitro-cli needs at least 1200 MiB (4 x the 300 MiB EIF"),
        ("m6i.xlarge", 2, 16384, 1, "leaves the parent less than 1024 MiB"),
        ("z1.mega", 2, 1024, 1, "unknown instance type 'z1.mega'; known: c5.2xlarge,"),
    ],
)
def test_check_enclave_fit_rejects(itype, cpus, mem, eif, fragment):
    with pytest.raises(TeeformError) as ei:
        check_enclave_fit(itype, cpus, mem, eif, field_prefix="t")
    assert fragment in ei.value.message


def test_check_enclave_fit_accepts():
    assert check_enclave_fit("m6i.xlarge", 2, 15360, 3000 << 20).vcpus == 4
    assert check_enclave_fit("m6g.large", 1, 64, 1).arch == "arm64"  # Graviton: 2 vCPUs, no SMT (§6.1)


SPEC = UserDataSpec(region="eu-west-1", bucket="b1", eif_key="eif/sha256/x.eif", eif_sha256=fake_hex("eif", 64), cpu_count=2,
                    memory_mib=2048)


def test_user_data_allocator_and_vsock_allowlist():
    text = render_user_data(SPEC)
    assert text == render_user_data(SPEC)  # pure
    allocator = yaml.safe_load(text.split("allocator.yaml <<'EOF'\n", 1)[1].split("\nEOF", 1)[0])
    assert allocator == {"memory_mib": 2048, "cpu_count": 2}
    allow = yaml.safe_load(text.split("vsock-proxy.yaml <<'EOF'\n", 1)[1].split("\nEOF", 1)[0])
    assert allow == {"allowlist": [{"address": "kms.eu-west-1.amazonaws.com", "port": 443}]}
    assert "vsock-proxy 8000 kms.eu-west-1.amazonaws.com 443" in text
    assert "dnf install -y aws-nitro-enclaves-cli" in text
    assert "systemctl enable --now nitro-enclaves-allocator.service" in text
    assert text.index("sha256sum --check") < text.index("nitro-cli run-enclave")
    assert "--enclave-cid 16" in text and "--debug-mode" not in text


def test_user_data_debug_and_validation():
    from dataclasses import replace

    assert render_user_data(replace(SPEC, debug=True)).count("--debug-mode") == 1
    with pytest.raises(TeeformError, match="not an AWS region"):
        render_user_data(replace(SPEC, region="eu-west-1; rm -rf /"))
    with pytest.raises(TeeformError, match="enclave CID must be >= 4"):
        render_user_data(replace(SPEC, enclave_cid=3))
    for bad in (fake_hex("eif"), fake_hex("eif", 64).upper(), fake_hex("eif", 63)):  # an old sha384, upper case, short
        with pytest.raises(TeeformError, match="EIF sha256 must be 64 lowercase hex digits"):
            render_user_data(replace(SPEC, eif_sha256=bad))


def test_names_and_principals():
    assert physical_name(["teeform", "dev", "agent", "111122223333", "eu-west-1"], 63, lower=True) == "teeform-dev-agent-111122223333-eu-west-1"
    long = physical_name(["x" * 80], 63)
    assert len(long) == 63 and long != physical_name(["x" * 81], 63)
    assert deployer_principal("arn:aws:sts::111122223333:assumed-role/Deploy/gh-123") == "arn:aws:iam::111122223333:role/Deploy"
    assert deployer_principal("arn:aws:iam::111122223333:user/ci") == "arn:aws:iam::111122223333:user/ci"
    assert subnet_cidr("10.42.0.0/16") == "10.42.0.0/24" and subnet_cidr("10.0.0.0/26") == "10.0.0.0/26"
    with pytest.raises(TeeformError, match="/16 to /28"):
        subnet_cidr("10.0.0.0/8")


def test_attested_key_component_alone_protect_and_errors():
    """AttestedKey constructed directly under mocks (no program): protect reaches the key."""
    import pulumi
    from pulumi.runtime import settings

    from components.aws.attested_key import AttestedKey, AttestedKeyArgs
    from teeform.keyrelease import KeyReleasePolicy, MeasurementSet
    from teeform.preview import make_mocks

    release = KeyReleasePolicy("unit", (MeasurementSet("a", {"PCR0": fake_hex("a0"), "PCR1": fake_hex("a1")}),))
    settings.ROOT.set(None)
    mocks = make_mocks("eu-west-1")
    pulumi.runtime.set_mocks(mocks, project="teeform", stack="unit", preview=False)
    built = {}

    @pulumi.runtime.test
    def _build():
        built["key"] = AttestedKey(
            "k", AttestedKeyArgs(
                enclave_role_arn="arn:aws:iam::111122223333:role/host", deployer_arn="arn:aws:iam::111122223333:user/ci",
                admin_arns=["arn:aws:iam::111122223333:root"], release=release,
                deletion_window_days=30, protect=True, alias_name="alias/teeform/unit", tags={"teeform:target": "unit"},
            ),
        )

    _build()
    assert built["key"].key._protect is True  # SDK attribute holding ResourceOptions.protect
    (kms,) = [r for r in mocks.resources if r.typ == KEY]
    assert kms.name == "k-kms"
    cond = json.loads(kms.inputs["policy"])["Statement"][1]["Condition"]["StringEqualsIgnoreCase"]
    assert cond == {"kms:RecipientAttestation:PCR0": fake_hex("a0"), "kms:RecipientAttestation:PCR1": fake_hex("a1")}
    assert kms.inputs["tags"] == {"teeform:target": "unit"}


def test_ami_default_from_al2023_parameter_or_pinned(tmp_path):
    img = write_fake_eif_manifest(tmp_path)
    resources, _, mocks = run([nitro_target([img.manifest_path], instanceType="m6g.xlarge")])
    (call,) = [c for c in mocks.calls if c.token == "aws:ssm/getParameter:getParameter"]
    assert call.args["name"] == "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-arm64"
    assert one(resources, LT).inputs["imageId"] == MOCK_AMI_ID  # what the mocked SSM parameter returned
    resources, _, mocks = run([nitro_target([img.manifest_path], ami="ami-0123456789abcdef0")])
    assert one(resources, LT).inputs["imageId"] == "ami-0123456789abcdef0"
    assert not [c for c in mocks.calls if c.token == "aws:ssm/getParameter:getParameter"]


def test_configured_deletion_window_reaches_the_key_and_below_7_is_refused(tmp_path):
    img = write_fake_eif_manifest(tmp_path)
    resources, _, _ = run([nitro_target([img.manifest_path], key={"deletionWindowDays": 7, "protect": False})])
    assert one(resources, KEY).inputs["deletionWindowInDays"] == 7
    with pytest.raises(TeeformError, match=r"teeform:targets\[0\].key.deletionWindowDays: must be between 7 and 30, got 6"):
        run([nitro_target([img.manifest_path], key={"deletionWindowDays": 6})])

    import pulumi

    from components.aws.attested_key import AttestedKey, AttestedKeyArgs
    from teeform.keyrelease import KeyReleasePolicy, MeasurementSet

    release = KeyReleasePolicy("k6", (MeasurementSet("a", {"PCR0": fake_hex("a0")}),))
    with pytest.raises(TeeformError, match="deletion window must be 7..30 days, got 6"):
        AttestedKey("k6", AttestedKeyArgs(
            enclave_role_arn="arn:aws:iam::111122223333:role/host", deployer_arn="arn:aws:iam::111122223333:user/ci",
            admin_arns=["arn:aws:iam::111122223333:root"], release=release,
            deletion_window_days=6, protect=False, alias_name="alias/teeform/k6",
        ), pulumi.ResourceOptions())
