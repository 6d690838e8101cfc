"""``teeform:gcp:AttestedKey``: a Cloud KMS key that only an attested Confidential Space workload can use.

Resources (pulumi-gcp 10.2 argument names, pulumi.md §4.3; facts clouds.md §3.1):

* ``iam.WorkloadIdentityPool`` (id: 4-32 characters, ``[a-z0-9-]``, no ``gcp-`` prefix);
* ``iam.WorkloadIdentityPoolProvider`` ``attestation-verifier``: OIDC issuer
  ``https://confidentialcomputing.googleapis.com/``, audience ``https://sts.googleapis.com``, the
  attribute mapping of :data:`components.gcp.cel.ATTRIBUTE_MAPPING` and the ``attribute_condition``
  the caller wrote with :func:`components.gcp.cel.attribute_condition`. STS refuses to exchange a
  token for which the condition is false, so no federated identity exists for it at all. Its
  ``description`` carries ``teeform:target=<name>`` (a provider has no labels), read by the policy
  ``gcp-wip-condition-pins-digest``;
* ``kms.KeyRing`` + ``kms.CryptoKey`` (``ENCRYPT_DECRYPT``, ``GOOGLE_SYMMETRIC_ENCRYPTION``, the
  configured protection level and ``rotation_period``);
* one ``kms.CryptoKeyIAMMember`` ``roles/cloudkms.cryptoKeyDecrypter`` per allowed manifest, for the
  principal set ``.../attribute.image_digest/sha256:<digest>`` (:func:`components.gcp.cel.principal_set`):
  the grant itself is narrowed to the image, so even a condition edited by hand outside teeform
  could not extend decryption to another digest; and ``roles/cloudkms.cryptoKeyEncrypter`` for each
  configured encrypter (who may seal secrets with ``teeform seal``).

No IAM Condition is used on the KMS grants: IAM Conditions see request attributes, not token claims
(clouds.md §6 item 7), so all claim checks are in the provider's condition.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_gcp as gcp

from components.gcp.cel import ATTRIBUTE_MAPPING, AUDIENCE, ISSUER_URI, principal_set
from components.gcp.common import gcp_name

TYPE = "teeform:gcp:AttestedKey"
PROVIDER_ID = "attestation-verifier"
DECRYPTER = "roles/cloudkms.cryptoKeyDecrypter"
ENCRYPTER = "roles/cloudkms.cryptoKeyEncrypter"


@dataclass
class AttestedKeyArgs:
    """Inputs of :class:`AttestedKey`.

    Attributes:
        name_parts: parts of the physical names (project, stack, target).
        target: the target name (provider description ``teeform:target=<name>``).
        project: GCP project id.
        project_number: its number (principal sets name the project by number).
        location: key ring location (a region, or ``global``).
        protection_level: ``HSM`` or ``SOFTWARE``.
        rotation_period: ``"<seconds>s"``.
        attribute_condition: the provider's CEL condition.
        image_digests: ``sha256:<hex>`` per allowed manifest (one decrypt grant each).
        encrypters: IAM members granted ``cryptoKeyEncrypter``.
        labels: labels for the key.
    """

    name_parts: list[str]
    target: str
    project: str
    project_number: pulumi.Input[str]
    location: str
    protection_level: str
    rotation_period: str
    attribute_condition: pulumi.Input[str]
    image_digests: Sequence[str]
    encrypters: Sequence[str]
    labels: dict[str, str]


class AttestedKey(pulumi.ComponentResource):
    """See the module docstring. Outputs: :attr:`key_id`, :attr:`provider_name`, :attr:`pool_name`."""

    def __init__(self, name: str, args: AttestedKeyArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(TYPE, name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        pool_id = gcp_name(["teeform", *args.name_parts], 32, min_len=4)  # never the reserved "gcp-" prefix
        self.pool = gcp.iam.WorkloadIdentityPool(
            f"{name}-pool", workload_identity_pool_id=pool_id, project=args.project,
            display_name=f"teeform {args.target}"[:32], opts=child)
        self.provider = gcp.iam.WorkloadIdentityPoolProvider(
            f"{name}-provider", workload_identity_pool_id=self.pool.workload_identity_pool_id,
            workload_identity_pool_provider_id=PROVIDER_ID, project=args.project,
            description=f"teeform:target={args.target}",
            oidc=gcp.iam.WorkloadIdentityPoolProviderOidcArgs(issuer_uri=ISSUER_URI, allowed_audiences=[AUDIENCE]),
            attribute_mapping=dict(ATTRIBUTE_MAPPING), attribute_condition=args.attribute_condition, opts=child)
        self.ring = gcp.kms.KeyRing(f"{name}-ring", name=gcp_name(args.name_parts, 63), location=args.location,
                                    project=args.project, opts=child)
        self.key = gcp.kms.CryptoKey(
            f"{name}-key", name=gcp_name([*args.name_parts, "key"], 63), key_ring=self.ring.id, purpose="ENCRYPT_DECRYPT",
            rotation_period=args.rotation_period,
            version_template=gcp.kms.CryptoKeyVersionTemplateArgs(algorithm="GOOGLE_SYMMETRIC_ENCRYPTION",
                                                                 protection_level=args.protection_level),
            labels=args.labels, opts=child)
        number = pulumi.Output.from_input(args.project_number)

        def member(digest: str) -> pulumi.Output[str]:
            return number.apply(lambda n: principal_set(str(n), pool_id, digest))

        self.decrypters = [
            gcp.kms.CryptoKeyIAMMember(f"{name}-decrypt-{d.split(':')[1][:12]}", crypto_key_id=self.key.id,
                                       role=DECRYPTER, member=member(d), opts=child)
            for d in dict.fromkeys(args.image_digests)
        ]
        self.encrypters = [
            gcp.kms.CryptoKeyIAMMember(f"{name}-encrypt-{i}", crypto_key_id=self.key.id, role=ENCRYPTER, member=m,
                                       opts=child)
            for i, m in enumerate(args.encrypters)
        ]
        self.key_id = self.key.id
        self.provider_name = self.provider.name
        self.pool_name = self.pool.name
        self.register_outputs({"key_id": self.key_id, "provider_name": self.provider_name, "pool_name": self.pool_name})


__all__ = ["AttestedKey", "AttestedKeyArgs", "TYPE", "PROVIDER_ID", "DECRYPTER", "ENCRYPTER"]
