"""Resource type tokens the policies filter on, in one place (style.md guideline 14).

Python policy packs have no typed resource filter, so a token that drifts (a provider renames a
module) silently turns a policy off. ``tests/test_policy_tokens.py`` checks every constant here
against the token the pinned pulumi-aws SDK registers (and the MeasurementManifest token against
``components.measurement_manifest``).
"""

AWS_KMS_KEY = "aws:kms/key:Key"
AWS_KMS_KEY_POLICY = "aws:kms/keyPolicy:KeyPolicy"
AWS_EC2_LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"
AWS_EC2_INSTANCE = "aws:ec2/instance:Instance"
AWS_EC2_SECURITY_GROUP = "aws:ec2/securityGroup:SecurityGroup"
AWS_EC2_SECURITY_GROUP_RULE = "aws:ec2/securityGroupRule:SecurityGroupRule"
AWS_VPC_SECURITY_GROUP_INGRESS_RULE = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
AWS_EBS_VOLUME = "aws:ebs/volume:Volume"
AWS_S3_BUCKET = "aws:s3/bucket:Bucket"
AWS_S3_BUCKET_POLICY = "aws:s3/bucketPolicy:BucketPolicy"
AWS_EC2_VPC = "aws:ec2/vpc:Vpc"
AWS_EC2_DEFAULT_SECURITY_GROUP = "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup"
AWS_EC2_AMI = "aws:ec2/ami:Ami"

#: teeform's own component (components/measurement_manifest.py).
TEEFORM_MEASUREMENT_MANIFEST = "teeform:index:MeasurementManifest"

#: Types whose ``policy`` input is a KMS key policy document.
KMS_KEY_POLICY_TYPES = (AWS_KMS_KEY, AWS_KMS_KEY_POLICY)
AWS_VPC_SECURITY_GROUP_EGRESS_RULE = "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule"

# Other clouds. Only pulumi-aws is pinned in this repository, so these follow the providers' token
# forms (azure-native ``azure-native:<module>:<Resource>``, pulumi.md §4.2 cites
# ``azure-native:compute:VirtualMachine``; bridged providers ``<pkg>:<module>/<resourceCamel>:<Resource>``,
# e.g. ``pulumi import alicloud:ecs/securityGroupRule:SecurityGroupRule`` in pulumi-alicloud's docs)
# and are checked for that form by tests/test_policy_tokens.py, not against an installed SDK.
AZURE_NETWORK_SECURITY_GROUP = "azure-native:network:NetworkSecurityGroup"
AZURE_NETWORK_SECURITY_RULE = "azure-native:network:SecurityRule"
AZURE_KEYVAULT_KEY = "azure-native:keyvault:Key"
GCP_COMPUTE_FIREWALL = "gcp:compute/firewall:Firewall"
GCP_KMS_CRYPTO_KEY = "gcp:kms/cryptoKey:CryptoKey"
ALICLOUD_ECS_SECURITY_GROUP_RULE = "alicloud:ecs/securityGroupRule:SecurityGroupRule"
ALICLOUD_KMS_KEY = "alicloud:kms/key:Key"

# Issue 11 (Alibaba Cloud TDX, Trustee). pulumi-alicloud 4.0.0 is installed: checked against it in
# tests/test_alicloud_policies.py; the two ``pulumi-python:dynamic/...`` tokens are teeform's dynamic
# providers (components/alicloud/tdx_instance.py, components/trustee/provider.py).
ALICLOUD_ECS_INSTANCE = "alicloud:ecs/instance:Instance"
ALICLOUD_ECS_SECURITY_GROUP = "alicloud:ecs/securityGroup:SecurityGroup"
ALICLOUD_TDX_INSTANCE = "pulumi-python:dynamic/alicloud:TdxInstance"
TRUSTEE_KBS_REGISTRATION = "pulumi-python:dynamic/trustee:KbsRegistration"
# GCP resources the gcp-* policies filter on (pulumi-gcp 10.2 is installed; tests/test_gcp_policies.py
# checks each against the SDK's resource registry).
GCP_COMPUTE_INSTANCE = "gcp:compute/instance:Instance"
GCP_COMPUTE_INSTANCE_TEMPLATE = "gcp:compute/instanceTemplate:InstanceTemplate"
GCP_IAM_WIP_PROVIDER = "gcp:iam/workloadIdentityPoolProvider:WorkloadIdentityPoolProvider"
GCP_KMS_CRYPTO_KEY_IAM_MEMBER = "gcp:kms/cryptoKeyIAMMember:CryptoKeyIAMMember"
GCP_KMS_KEY_RING = "gcp:kms/keyRing:KeyRing"
# Azure (issue 10; pulumi-azure-native 3.29 is installed: tests/test_azure_policies.py checks these
# against the SDK's registered resource classes).
AZURE_COMPUTE_VIRTUAL_MACHINE = "azure-native:compute:VirtualMachine"
AZURE_KEYVAULT_VAULT = "azure-native:keyvault:Vault"
AZURE_NETWORK_PUBLIC_IP_ADDRESS = "azure-native:network:PublicIPAddress"
AZURE_NETWORK_INTERFACE = "azure-native:network:NetworkInterface"
