"""AWS (pulumi-aws, prefix ``aws:``) mocks and summaries for the offline preview.

Ids and ARNs are deterministic (derived from resource names) and realistic in form: ARN layouts
follow the AWS Service Authorization Reference ("Resource types defined by <service>") and the
account id is the AWS documentation's example account ``111122223333``. Invokes answer what the
program asks: caller identity, the caller's session context, partition, region and the SSM
parameter holding the Amazon Linux AMI id.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import uuid
from collections.abc import Mapping
from typing import Any

from teeform.preview.clouds import CloudPlugin, register

#: The example account id of the AWS documentation, used by the mocks.
MOCK_ACCOUNT_ID = "111122223333"
MOCK_CALLER_ARN = f"arn:aws:iam::{MOCK_ACCOUNT_ID}:user/teeform-deployer"
MOCK_AMI_ID = "ami-0a1b2c3d4e5f60718"

KMS_KEY = "aws:kms/key:Key"
KMS_ALIAS = "aws:kms/alias:Alias"
KMS_KEY_POLICY = "aws:kms/keyPolicy:KeyPolicy"
IAM_ROLE = "aws:iam/role:Role"
IAM_INSTANCE_PROFILE = "aws:iam/instanceProfile:InstanceProfile"
IAM_ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
S3_BUCKET = "aws:s3/bucket:Bucket"
S3_OBJECT = "aws:s3/bucketObjectv2:BucketObjectv2"
S3_PUBLIC_ACCESS_BLOCK = "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"
EC2_LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"
EC2_INSTANCE = "aws:ec2/instance:Instance"
VPC_INGRESS = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
VPC_EGRESS = "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule"
EBS_SNAPSHOT_IMPORT = "aws:ebs/snapshotImport:SnapshotImport"
EC2_AMI = "aws:ec2/ami:Ami"

#: EC2/VPC resource token -> id prefix (``vpc-0123...``; EC2 API Reference, "Resource IDs").
EC2_ID_PREFIXES: dict[str, str] = {
    "aws:ec2/vpc:Vpc": "vpc",
    "aws:ec2/subnet:Subnet": "subnet",
    "aws:ec2/securityGroup:SecurityGroup": "sg",
    "aws:ec2/internetGateway:InternetGateway": "igw",
    "aws:ec2/routeTable:RouteTable": "rtb",
    "aws:ec2/routeTableAssociation:RouteTableAssociation": "rtbassoc",
    EC2_AMI: "ami",
    VPC_INGRESS: "sgr",
    VPC_EGRESS: "sgr",
}

CALLER_IDENTITY = "aws:index/getCallerIdentity:getCallerIdentity"
SSM_GET_PARAMETER = "aws:ssm/getParameter:getParameter"
GET_PARTITION = "aws:index/getPartition:getPartition"
GET_REGION = "aws:index/getRegion:getRegion"
GET_SESSION_CONTEXT = "aws:iam/getSessionContext:getSessionContext"

#: An STS assumed-role session ARN (IAM User Guide, "IAM identifiers": ``arn:<partition>:sts::<account>:
#: assumed-role/<role name>/<session name>``; the role's path is not part of it).
_ASSUMED_ROLE = re.compile(r"^arn:([^:]+):sts::(\d{12}):assumed-role/([^/]+)/(.+)$")
#: Prefix of the roles IAM Identity Center creates for permission sets (IAM Identity Center User
#: Guide, "Service-linked roles" / "Referencing permission sets in resource policies": they live
#: under the path ``/aws-reserved/sso.amazonaws.com/``, with the instance's region as a further
#: segment outside us-east-1, e.g. ``role/aws-reserved/sso.amazonaws.com/eu-west-1/AWSReservedSSO_...``).
SSO_ROLE_PREFIX = "AWSReservedSSO_"


def session_context(arn: str, region: str) -> dict[str, str]:
    """What pulumi-aws ``iam.getSessionContext(arn=...)`` answers (its docs: "for non-role ARNs ...
    simply passes the ARN through in issuer_arn"; for an STS assumed-role ARN it looks the role up
    with IAM ``GetRole`` and returns the role's ARN **with its path**, its unique id and name, and the
    session name).

    The mock account has no IAM API, so the role's path is inferred: an IAM Identity Center role
    (:data:`SSO_ROLE_PREFIX`) gets ``/aws-reserved/sso.amazonaws.com/<region>/`` (no region segment
    in ``us-east-1``; the Identity Center instance is assumed to be in the invoke's region), any
    other role the root path ``/``. Output keys are the wire (camelCase) names.
    """
    m = _ASSUMED_ROLE.match(arn)
    if not m:
        return {"arn": arn, "issuerArn": arn, "issuerId": "", "issuerName": "", "sessionName": "", "id": arn}
    partition, account, role, session = m.groups()
    path = "/"
    if role.startswith(SSO_ROLE_PREFIX):
        path = "/aws-reserved/sso.amazonaws.com/" + ("" if region == "us-east-1" else f"{region}/")
    return {
        "arn": arn, "issuerArn": f"arn:{partition}:iam::{account}:role{path}{role}",
        "issuerId": "AROA" + _hex("role" + role, 16).upper(), "issuerName": role, "sessionName": session, "id": arn,
    }


def _hex(seed: str, n: int) -> str:
    return hashlib.sha256(seed.encode()).hexdigest()[:n]


def _b64_text(v: Any) -> str:
    try:
        return base64.b64decode(str(v), validate=True).decode("utf-8", "replace")
    except (binascii.Error, ValueError):
        return str(v)


class AwsPlugin(CloudPlugin):
    """Mocks and summaries for pulumi-aws resources (see the module docstring)."""

    prefix = "aws:"
    resource_tokens = frozenset({
        KMS_KEY, KMS_ALIAS, KMS_KEY_POLICY, IAM_ROLE, IAM_INSTANCE_PROFILE, IAM_ROLE_POLICY, S3_BUCKET, S3_OBJECT,
        S3_PUBLIC_ACCESS_BLOCK, EC2_LAUNCH_TEMPLATE, EC2_INSTANCE, *EC2_ID_PREFIXES,
        EBS_SNAPSHOT_IMPORT,
    })
    invoke_tokens = frozenset({CALLER_IDENTITY, SSM_GET_PARAMETER, GET_PARTITION, GET_REGION, GET_SESSION_CONTEXT})

    def new_resource(self, typ: str, name: str, inputs: dict[str, Any], region: str) -> tuple[str, dict[str, Any]]:
        """Realistic ids and ARNs: ``arn:aws:kms:<region>:111122223333:key/<uuid>`` and so on."""
        acct = MOCK_ACCOUNT_ID
        state = dict(inputs)
        rid = f"{name}-id"
        if typ == KMS_KEY:
            rid = str(uuid.UUID(_hex("kms" + name, 32)))
            state.update(arn=f"arn:aws:kms:{region}:{acct}:key/{rid}", keyId=rid)
        elif typ == KMS_ALIAS:
            rid = str(inputs.get("name") or f"alias/{name}")
            state.update(arn=f"arn:aws:kms:{region}:{acct}:{rid}")
        elif typ == IAM_ROLE:
            rid = str(inputs.get("name") or name)
            state.update(arn=f"arn:aws:iam::{acct}:role/{rid}", uniqueId="AROA" + _hex(name, 16).upper())
        elif typ == IAM_INSTANCE_PROFILE:
            rid = str(inputs.get("name") or name)
            state.update(arn=f"arn:aws:iam::{acct}:instance-profile/{rid}")
        elif typ == IAM_ROLE_POLICY:
            rid = f"{inputs.get('role')}:{name}"
        elif typ == S3_BUCKET:
            rid = str(inputs.get("bucket") or name)
            state.update(bucket=rid, arn=f"arn:aws:s3:::{rid}", region=region)
        elif typ == S3_OBJECT:
            rid = str(inputs.get("key"))
            state.update(arn=f"arn:aws:s3:::{inputs.get('bucket')}/{rid}", versionId=_hex(name, 32))
        elif typ == EC2_LAUNCH_TEMPLATE:
            rid = "lt-" + _hex(name, 17)
            state.update(arn=f"arn:aws:ec2:{region}:{acct}:launch-template/{rid}", latestVersion=1, defaultVersion=1)
        elif typ == EC2_INSTANCE:
            rid = "i-" + _hex(name, 17)
            state.update(
                arn=f"arn:aws:ec2:{region}:{acct}:instance/{rid}", privateIp="10.42.0.10",
                instanceState="running", availabilityZone=f"{region}a",
            )
        elif typ == EBS_SNAPSHOT_IMPORT:
            rid = "snap-" + _hex(name, 17)
            state.update(arn=f"arn:aws:ec2:{region}::snapshot/{rid}", ownerId=acct)
        elif typ.startswith("aws:ec2/") or typ.startswith("aws:vpc/"):
            rid = f"{EC2_ID_PREFIXES.get(typ, 'res')}-{_hex(name, 17)}"
            last = typ.split(":")[-1]
            state.update(arn=f"arn:aws:ec2:{region}:{acct}:{last[0].lower() + last[1:]}/{rid}")
        else:
            state.setdefault("arn", f"arn:aws:{typ.split(':')[1].split('/')[0]}:{region}:{acct}:{name}")
        return rid, state

    def call(self, token: str, args: Mapping[str, Any], region: str) -> dict[str, Any]:
        """Caller identity (the example account), its session context (:func:`session_context`),
        partition ``aws``, the region, the AMI parameter."""
        if token == GET_SESSION_CONTEXT:
            return session_context(str(args.get("arn") or ""), region)
        if token == CALLER_IDENTITY:
            return {"accountId": MOCK_ACCOUNT_ID, "arn": MOCK_CALLER_ARN, "userId": "AIDA" + _hex("caller", 16).upper(), "id": MOCK_ACCOUNT_ID}
        if token == SSM_GET_PARAMETER:
            return {"name": args.get("name"), "value": MOCK_AMI_ID, "type": "String", "id": args.get("name")}
        if token == GET_PARTITION:
            return {"partition": "aws", "dnsSuffix": "amazonaws.com", "id": "aws"}
        if token == GET_REGION:
            return {"name": region, "region": region, "id": region}
        return {}

    def summarize(self, typ: str, inputs: Mapping[str, Any]) -> list[str]:
        """Launch template (instance type, enclave, IMDS, EBS, the run-enclave line), instance, KMS key
        and key-policy statements, security-group rules, S3 bucket/object/public-access block, IAM role."""
        i = inputs
        if typ == EC2_LAUNCH_TEMPLATE:
            ebs = [(b.get("ebs") or {}).get("encrypted") for b in i.get("blockDeviceMappings") or []]
            ud = _b64_text(i.get("userData", ""))
            run = next((ln.strip() for ln in ud.splitlines() if "nitro-cli run-enclave" in ln), "")
            return [
                f"instanceType={i.get('instanceType')}",
                f"enclaveOptions.enabled={(i.get('enclaveOptions') or {}).get('enabled')}",
                f"metadataOptions.httpTokens={(i.get('metadataOptions') or {}).get('httpTokens')}",
                f"ebs.encrypted={ebs}",
                f"userData: {run.replace('exec ', '')}" if run else "userData: (no run-enclave)",
            ]
        if typ == EC2_INSTANCE and not i.get("launchTemplate") and i.get("ami"):
            # an instance launched directly from an AMI (the nitro-tpm / sev-snp VMs)
            snp = (i.get("cpuOptions") or {}).get("amdSevSnp")
            return [f"ami={i.get('ami')} instanceType={i.get('instanceType')}",
                    f"metadataOptions.httpTokens={(i.get('metadataOptions') or {}).get('httpTokens')}",
                    f"rootBlockDevice.encrypted={(i.get('rootBlockDevice') or {}).get('encrypted')}",
                    *([f"cpuOptions.amdSevSnp={snp}"] if snp else []), f"subnetId={i.get('subnetId')}"]
        if typ == EC2_INSTANCE:
            lt = i.get("launchTemplate") or {}
            return [f"launchTemplate={lt.get('id')} v{lt.get('version')}", f"subnetId={i.get('subnetId')}"]
        if typ == EC2_AMI:
            return [f"bootMode={i.get('bootMode')} tpmSupport={i.get('tpmSupport')} imdsSupport={i.get('imdsSupport')}",
                    f"rootDeviceName={i.get('rootDeviceName')} snapshotId="
                    f"{[b.get('snapshotId') for b in i.get('ebsBlockDevices') or []]}"]
        if typ == EBS_SNAPSHOT_IMPORT:
            dc = i.get("diskContainer") or {}
            ub = dc.get("userBucket") or {}
            return [f"format={dc.get('format')} s3://{ub.get('s3Bucket')}/{ub.get('s3Key')}",
                    f"roleName={i.get('roleName')} encrypted={i.get('encrypted')}"]
        if typ in (KMS_KEY, KMS_KEY_POLICY):
            return _kms_lines(typ, i)
        if typ in (VPC_INGRESS, VPC_EGRESS):
            return [f"{i.get('ipProtocol')} {i.get('fromPort')}-{i.get('toPort')} {i.get('cidrIpv4') or i.get('cidrIpv6')}"]
        if typ == S3_OBJECT:
            return [f"key={i.get('key')}"]
        if typ == S3_PUBLIC_ACCESS_BLOCK:
            return [f"{k}={i.get(k)}" for k in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")]
        if typ == S3_BUCKET:
            return [f"bucket={i.get('bucket')}"]
        if typ == IAM_ROLE:
            return [f"name={i.get('name')}"]
        return []


def _kms_lines(typ: str, i: Mapping[str, Any]) -> list[str]:
    lines = []
    if typ == KMS_KEY:
        lines.append(f"enableKeyRotation={i.get('enableKeyRotation')} deletionWindowInDays={i.get('deletionWindowInDays')}")
    try:
        doc = json.loads(i.get("policy") or "{}")
    except json.JSONDecodeError:
        return lines + ["policy: (not JSON)"]
    stmts = doc.get("Statement") or []
    for s in stmts if isinstance(stmts, list) else [stmts]:
        acts = s.get("Action")
        acts = [acts] if isinstance(acts, str) else acts or []
        principal = s.get("Principal")
        if isinstance(principal, Mapping):
            principal = principal.get("AWS", principal)
        more = " ..." if len(acts) > 4 else ""
        lines.append(f"statement {s.get('Sid', '?')}: {s.get('Effect')} {principal} {len(acts)} action(s): {', '.join(acts[:4])}{more}")
        for op, block in (s.get("Condition") or {}).items():
            for k, v in block.items():
                vals = [v] if isinstance(v, str) else list(v)
                lines.append(f"  {op} {k} in [{', '.join(vals)}]")
    return lines


PLUGIN = register(AwsPlugin())
