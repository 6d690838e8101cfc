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

#: teeform's own component (components/measurement_manifest.py).
TEEFORM_MEASUREMENT_MANIFEST = "teeform:index:MeasurementManifest"

#: Types whose ``policy`` input is a KMS key policy document.
KMS_KEY_POLICY_TYPES = (AWS_KMS_KEY, AWS_KMS_KEY_POLICY)
