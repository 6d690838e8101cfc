"""The teeform CrossGuard policy pack: only constructs the PolicyPack from the registry.

Constructing ``PolicyPack`` starts a gRPC server and blocks (pulumi.md §3.1): never import this
module from tests or tools; import ``teeform_policies`` instead. Run it with
``pulumi preview --policy-pack policies --policy-pack-config policies/config/<stack>.json``.
"""

from pulumi_policy import EnforcementLevel, PolicyPack
from teeform_policies import PACK_NAME, all_policies

PolicyPack(
    name=PACK_NAME,
    policies=all_policies(),
    enforcement_level=EnforcementLevel.ADVISORY,
    description="teeform: secrets only for measured TEE images (Nitro attestation-gated KMS keys and their hosts)",
)
