"""teeform's CrossGuard policies (pulumi-policy 1.21, Python), ready for four clouds.

Importable both when the Pulumi CLI runs the pack (cwd = ``policies/``) and offline with
``policies/`` on ``sys.path`` (``teeform preview``, tests). Depends only on ``pulumi_policy`` and the
standard library -- never on ``teeform`` -- so the pack's virtualenv needs nothing else.

Cloud-neutral rules are written once over a rule family (:mod:`teeform_policies.families`) with
one extractor per cloud; in-scope resources no extractor reads are reported by ``policy-coverage``
with the ``NOT CHECKED`` marker (advisory), never passed silently. AWS-only rules carry the
``aws-`` prefix; their old ids are aliases (:mod:`teeform_policies.aliases`).

Policies (ids are stable; README.md "Policy pack" lists the same, a test compares them):

=========================================  =========  ==================================================
id                                         default    checks
=========================================  =========  ==================================================
measurements-match-manifest (stack)        mandatory  key-release rules admit only single manifests of
                                                      the key's own target (key-release family)
no-public-ingress                          advisory   no 0.0.0.0/0 or ::/0 ingress, four clouds (ingress
                                                      family; prod config: mandatory)
policy-coverage                            advisory   in-scope resources no extractor reads: NOT CHECKED
aws-kms-decrypt-requires-attestation       mandatory  plaintext KMS operations need Nitro attestation
aws-kms-no-debug-measurements              mandatory  no all-zero PCRs; no debug enclave in prod
aws-kms-key-rotation-enabled               advisory   symmetric keys rotate
aws-ec2-imdsv2-required                    mandatory  IMDSv2 on launch templates/instances
aws-ec2-enclave-enabled                    mandatory  enclave hosts have the enclave option on
aws-ebs-encrypted                          advisory   EBS volumes are encrypted
aws-kms-key-policy-rewriters               advisory   lists who can rewrite each key policy (PutKeyPolicy);
                                                      keys locked to a break-glass role pass
aws-s3-bucket-tls-only (stack)             advisory   buckets deny requests without TLS
aws-ec2-default-sg-closed (stack)          advisory   created VPCs' default security groups have no rules
manifest-signed                            mandatory  in prod, every manifest was verified against a key of
                                                      teeform:trustedManifestKeys (signed/signer)
aws-ami-uefi-tpm                           mandatory  AMIs register UEFI boot and NitroTPM v2.0
aws-kms-nitrotpm-requires-pcr12-or-pcr7    mandatory  a statement pinning NitroTPMPCR4 also pins PCR12 or PCR7
aws-ec2-sev-snp-enabled                    mandatory  SEV-SNP-tagged instances set cpuOptions.amdSevSnp on
                                                      M6a/C6a/R6a
trustee-reference-values-match-manifest    mandatory  Trustee reference values are single manifests of the
(stack)                                               registration's own target; policies pin those sets
trustee-policy-refuses-debug               mandatory  Trustee AS/resource policies affirm non-debug guests only
alicloud-no-public-ingress                 mandatory  no 0.0.0.0/0 or ::/0 ingress on Alibaba (ingress family)
alicloud-tdx-instance-type                 mandatory  TDX guests on g8i (RunInstances TDX) / gn8v-tee, listed zones
gcp-wip-condition-pins-digest (stack)      mandatory  Confidential Space provider conditions pin the
                                                      manifests' image digests (plain conjunction)
gcp-confidential-space-no-debug-image      mandatory  prod: no debug image, dbgstat clause required
gcp-confidential-instance-enabled          mandatory  confidential VM type, TERMINATE, SNP on Milan, vTPM
gcp-no-public-ingress                      advisory   GCP firewalls open to the internet; external IPs
gcp-kms-key-rotation                       advisory   symmetric Cloud KMS keys rotate (<= 365 days)
rollover-window-expired (stack)            advisory   no key releases to a manifest past its ``until``
                                                      (prod config: mandatory)
azure-key-release-requires-attestation     mandatory  exportable Key Vault keys have a release policy
                                                      requiring the TEE-type claim; HSM-backed
azure-cvm-confidential                     mandatory  VMs are ConfidentialVM with vTPM, CVM disk security
azure-no-public-ingress                    advisory   no NSG rule from the internet, no public IP (prod:
                                                      mandatory)
azure-vault-purge-protection               mandatory  key vaults have purge protection on
=========================================  =========  ==================================================
"""

from __future__ import annotations

from teeform_policies import aws_deploy, aws_vm, coverage, ec2, kms, manifest, network, signing
from teeform_policies import azure as azure_policies
from teeform_policies import gcp as gcp_policies
from teeform_policies.aliases import ALIASES, PackConfigError, ResolvedPackConfig, resolve_pack_config
from teeform_policies.families import NOT_CHECKED
from teeform_policies.registry import Policy, PolicyRegistry
from teeform_policies.rollover import POLICIES as ROLLOVER_POLICIES

PACK_NAME = "teeform"

REGISTRY = PolicyRegistry(
    [*manifest.POLICIES, *network.POLICIES, *coverage.POLICIES, *kms.POLICIES, *ec2.POLICIES, *aws_deploy.POLICIES,
     *signing.POLICIES, *aws_vm.POLICIES, *gcp_policies.POLICIES],
    aliases=ALIASES,
)
from teeform_policies import alicloud, trustee  # noqa: E402 - issue 11, kept apart from the shared lines above

for _policy in (*trustee.POLICIES, *alicloud.POLICIES):  # issue 11: Trustee key broker, Alibaba Cloud
    REGISTRY.add(_policy)
for _p in ROLLOVER_POLICIES:  # issue 12: rollover windows
    REGISTRY.add(_p)
for _policy in azure_policies.POLICIES:  # issue 10
    REGISTRY.add(_policy)


def all_policies() -> list[Policy]:
    """Every policy of the pack, in registration order."""
    return REGISTRY.policies()


__all__ = ["PACK_NAME", "REGISTRY", "NOT_CHECKED", "ALIASES", "PackConfigError", "ResolvedPackConfig",
           "all_policies", "resolve_pack_config"]
