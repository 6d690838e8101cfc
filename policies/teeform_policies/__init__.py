"""teeform's CrossGuard policies (pulumi-policy 1.21, Python).

Importable both when the Pulumi CLI runs the pack (cwd = ``policies/``) and offline with
``policies/`` on ``sys.path`` (``teeform preview``, tests). Depends only on ``pulumi_policy`` and the
standard library -- never on ``teeform`` -- so the pack's virtualenv needs nothing else.

Policies (one rule each; ids are stable):

========================================  ========  ==========================================
id                                        default   checks
========================================  ========  ==========================================
kms-decrypt-requires-attestation          mandatory plaintext KMS operations need Nitro attestation
kms-no-debug-measurements                 mandatory no all-zero PCRs; no debug enclave in prod
kms-key-rotation-enabled                  advisory  symmetric keys rotate
measurements-match-manifest (stack)       mandatory pinned PCRs come from loaded manifests
no-public-ingress                         advisory  no 0.0.0.0/0 or ::/0 ingress (prod: mandatory)
ec2-imdsv2-required                       mandatory IMDSv2 on launch templates/instances
ec2-enclave-enabled                       mandatory enclave hosts have the enclave option on
ebs-encrypted                             advisory  EBS volumes are encrypted
========================================  ========  ==========================================
"""

from __future__ import annotations

from teeform_policies import ec2, kms, manifest, network
from teeform_policies.registry import Policy, PolicyRegistry

PACK_NAME = "teeform"

REGISTRY = PolicyRegistry([*kms.POLICIES, *manifest.POLICIES, *network.POLICIES, *ec2.POLICIES])


def all_policies() -> list[Policy]:
    """Every policy of the pack, in registration order."""
    return REGISTRY.policies()


__all__ = ["PACK_NAME", "REGISTRY", "all_policies"]
