"""``ReleaseKey``: Key Vault Premium + an exportable ``RSA-HSM`` key with a secure key release policy.

* ``keyvault.Vault``: ``sku`` family ``A`` / ``premium`` (HSM-backed keys need Premium or a Managed
  HSM; clouds.md §2.4 "Exportable keys must be HSM-backed"), ``enable_rbac_authorization=True`` (no
  access policies), ``enable_purge_protection=True``, ``enable_soft_delete=True`` with
  ``soft_delete_retention_in_days`` from config, tenant from ``authorization.get_client_config``.
* ``keyvault.Key``: ``kty=RSA-HSM``, ``key_size`` from config, ``attributes.exportable=True``,
  ``key_ops`` ``wrapKey``/``unwrapKey``/``encrypt``/``decrypt``, ``release_policy`` =
  ``{content_type: "application/json; charset=utf-8", data: base64url(policy JSON)}`` written by
  :mod:`teeform.azure_release` (pulumi.md §4.2; clouds.md §2.4 "Encoding -- settled"). ARM creates keys
  but "does not update existing keys" (clouds.md §2.4), so a changed policy replaces the key
  (``replace_on_changes`` on ``properties.releasePolicy``): sealed data must be re-sealed then.
* ``authorization.RoleAssignment``: **Key Vault Crypto Service Release User**
  (role definition ``08bbd89e-9f13-488c-ac41-acfcb10c90ab``; the Azure built-in roles list and
  clouds.md §2.4 "Roles") for the VM's user-assigned identity only, scoped to the key itself.
  No other principal is granted release by teeform.

**What this gate pins**: :data:`teeform.azure_release.GATE_PINS` -- the platform, not the image.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_azure_native as azn

from teeform.azure_release import CONTENT_TYPE, encode_policy, policy_bytes

#: Built-in role "Key Vault Crypto Service Release User" (release of keys with a release policy).
RELEASE_ROLE_ID = "08bbd89e-9f13-488c-ac41-acfcb10c90ab"
#: Key operations the released key serves (the VM unwraps data keys with it after release).
KEY_OPS = ("wrapKey", "unwrapKey", "encrypt", "decrypt")


def role_definition_id(subscription_id: str, role: str = RELEASE_ROLE_ID) -> str:
    """``/subscriptions/<id>/providers/Microsoft.Authorization/roleDefinitions/<role>`` (ARM built-in role id form)."""
    return f"/subscriptions/{subscription_id}/providers/Microsoft.Authorization/roleDefinitions/{role}"


def role_assignment_name(*parts: str) -> str:
    """A deterministic GUID (role assignment names must be GUIDs): UUIDv5 of ``parts`` in the URL namespace."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "teeform:" + "/".join(parts)))


@dataclass
class ReleaseKeyArgs:
    """Inputs of :class:`ReleaseKey`.

    Attributes:
        policy: the SKR policy document (:func:`teeform.azure_release.release_policy`).
        principal_id: object id of the VM's user-assigned identity (the only release grantee).
        key_size: 2048, 3072 or 4096.
        soft_delete_retention_days: 7..90.
        protect: Pulumi ``protect`` on vault and key.
    """

    resource_group_name: pulumi.Input[str]
    location: str
    vault_name: str
    key_name: str
    policy: dict[str, Any]
    principal_id: pulumi.Input[str]
    key_size: int
    soft_delete_retention_days: int
    protect: bool
    tags: dict[str, str]


class ReleaseKey(pulumi.ComponentResource):
    """See the module docstring. Outputs: ``key_id`` (versionless key URL), ``key_uri_with_version``, ``vault_uri``."""

    key_id: pulumi.Output[str]

    def __init__(self, name: str, args: ReleaseKeyArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("teeform:azure:ReleaseKey", name, None, opts)
        a = args
        child = pulumi.ResourceOptions(parent=self, protect=a.protect)
        client = azn.authorization.get_client_config_output()
        vault = azn.keyvault.Vault(
            f"{name}-vault", resource_group_name=a.resource_group_name, location=a.location, vault_name=a.vault_name,
            properties=azn.keyvault.VaultPropertiesArgs(
                tenant_id=client.tenant_id,
                sku=azn.keyvault.SkuArgs(family="A", name="premium"),
                enable_rbac_authorization=True,
                enable_purge_protection=True,
                enable_soft_delete=True,
                soft_delete_retention_in_days=a.soft_delete_retention_days,
                public_network_access="Enabled",
            ),
            tags=a.tags, opts=child,
        )
        self.release_policy_json = json.dumps(a.policy, indent=2)
        key = azn.keyvault.Key(
            f"{name}-key", resource_group_name=a.resource_group_name, vault_name=vault.name, key_name=a.key_name,
            properties=azn.keyvault.KeyPropertiesArgs(
                kty="RSA-HSM", key_size=a.key_size, key_ops=list(KEY_OPS),
                attributes=azn.keyvault.KeyAttributesArgs(enabled=True, exportable=True),
                release_policy=azn.keyvault.KeyReleasePolicyArgs(
                    content_type=CONTENT_TYPE, data=encode_policy(policy_bytes(a.policy)),
                ),
            ),
            tags=a.tags,
            opts=pulumi.ResourceOptions(parent=self, protect=a.protect, replace_on_changes=["properties.releasePolicy"]),
        )
        azn.authorization.RoleAssignment(
            f"{name}-release",
            role_assignment_name=role_assignment_name(a.vault_name, a.key_name, "release"),
            principal_id=a.principal_id, principal_type="ServicePrincipal",
            role_definition_id=client.subscription_id.apply(role_definition_id),
            scope=key.id,
            description="teeform: secure key release of this key to the confidential VM's identity only",
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.key_id = key.key_uri
        self.key_uri_with_version = key.key_uri_with_version
        self.vault_uri = vault.properties.vault_uri
        self.register_outputs({"key_id": key.key_uri, "vault_uri": self.vault_uri})


__all__ = ["ReleaseKey", "ReleaseKeyArgs", "RELEASE_ROLE_ID", "KEY_OPS", "role_definition_id", "role_assignment_name"]
