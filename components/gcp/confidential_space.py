"""Builder for a ``gcp``/``confidential-space`` target: workload SA, VPC, Confidential Space VM, attested key.

Wiring (one explicit ``gcp.Provider`` per target)::

    serviceaccount.Account ──► projects.IAMMember roles/confidentialcomputing.workloadUser (+ logWriter)
          │ e-mail
          ├──► WorkloadNetwork (VPC, subnet with Private Google Access, firewall only for configured ingress)
          ├──► compute.Instance on projects/confidential-space-images/global/images/family/confidential-space
          │      confidential_instance_config (SEV | SEV_SNP + min_cpu_platform "AMD Milan" | TDX), shielded VM,
          │      scheduling.on_host_maintenance TERMINATE, metadata tee-image-reference=REPO@sha256:<digest>,
          │      tee-restart-policy, tee-container-log-redirect
          └──► AttestedKey: WorkloadIdentityPool + provider (CEL condition naming the e-mail and every
                 allowed digest), KeyRing, CryptoKey, decrypt grant per allowed digest

Facts: clouds.md §3.1, pulumi.md §4.3 (image project and families, VM flags, metadata keys, the
``roles/confidentialcomputing.workloadUser`` role the attached service account needs to obtain a token,
the ``cloud-platform`` scope). The deployed image is the **first** allowed manifest; the others stay
admitted by the condition (rollover).

Refused while the program is built (so in ``pulumi preview`` and ``teeform preview``): the debug image
family in a production stack, or in any stack without ``teeform:allowDebug: true``. With the debug
family (non-production, allowDebug) the ``dbgstat`` clause is left out of the condition (a debug image
reports ``dbgstat: enabled``) and the policy ``gcp-confidential-space-no-debug-image`` reports it.
"""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_gcp as gcp

from components.gcp.attested_key import AttestedKey, AttestedKeyArgs
from components.gcp.cel import attribute_condition
from components.gcp.common import gcp_name, labels, project_number, provider
from components.gcp.network import WorkloadNetwork, WorkloadNetworkArgs
from components.registry import TargetContext
from teeform.errors import TeeformError
from teeform.targets.gcp_confidential_space import SNP_MIN_CPU_PLATFORM, ConfidentialSpaceSettings

WORKLOAD_USER = "roles/confidentialcomputing.workloadUser"
LOG_WRITER = "roles/logging.logWriter"


def image_reference(repository: str, image_digest_hex: str) -> str:
    """``REPOSITORY@sha256:<hex>``: the ``tee-image-reference`` metadata value (pinned by digest)."""
    return f"{repository}@sha256:{image_digest_hex}"


def launcher_metadata(s: ConfidentialSpaceSettings, image_digest_hex: str) -> dict[str, str]:
    """The Confidential Space launcher's metadata keys (pulumi.md §4.3 "Metadata keys")."""
    return {
        "tee-image-reference": image_reference(s.image_repository, image_digest_hex),
        "tee-restart-policy": s.restart_policy,
        "tee-container-log-redirect": s.log_redirect,
    }


def build_confidential_space_target(ctx: TargetContext) -> dict[str, Any]:
    """Create the resources of one Confidential Space target; return its outputs in the plug-in's order.

    Raises:
        TeeformError: the debug image family where it is not allowed (module docstring), or a manifest
            without ``image_digest``.
    """
    t, stack = ctx.target, ctx.stack
    s = t.settings
    assert isinstance(s, ConfidentialSpaceSettings)
    fld = f"teeform:targets[{t.name}]"
    if s.debug_image and (stack.is_production or not stack.allow_debug):
        why = "a production stack" if stack.is_production else "a stack without teeform:allowDebug: true"
        raise TeeformError(
            f"the {s.image_family} image family (SSH, dbgstat 'enabled', the VM keeps running after the workload) "
            f"is refused in {why}", path=stack.source, field=f"{fld}.imageFamily",
            hint="use imageFamily: confidential-space")
    release = ctx.key_release()
    assert release is not None
    digests = [f"sha256:{ms.values['image_digest']}" for ms in release.sets]
    deployed_hex = ctx.deployed.manifest.measurements["image_digest"]
    zone = s.zone or f"{t.region}-a"
    parts = [stack.stack, t.name]
    lab = labels(stack.stack, t.name, stack.environment)

    prov = provider(t.name, s.project, t.region, zone)
    opts = pulumi.ResourceOptions(providers=[prov])
    number = project_number(s.project, s.project_number, pulumi.InvokeOutputOptions(provider=prov))

    sa = gcp.serviceaccount.Account(f"{t.name}-workload-sa", account_id=gcp_name([*parts, "wl"], 30, min_len=6),
                                    display_name=f"teeform workload {t.name}", project=s.project, opts=opts)
    roles = [WORKLOAD_USER] + ([LOG_WRITER] if s.log_redirect in ("true", "cloud_logging") else [])
    for role in roles:
        gcp.projects.IAMMember(f"{t.name}-sa-{role.split('/')[1].split('.')[-1].lower()}", project=s.project, role=role,
                               member=sa.email.apply(lambda e: f"serviceAccount:{e}"), opts=opts)
    net = WorkloadNetwork(f"{t.name}-net", WorkloadNetworkArgs(parts, s.project, t.region, s.network.cidr,
                                                               s.network.ingress, sa.email), opts)
    condition = sa.email.apply(lambda e: attribute_condition(
        service_account=e, image_digests=digests, support_attributes=s.support_attributes,
        production_image=not s.debug_image))
    key = AttestedKey(f"{t.name}-key", AttestedKeyArgs(
        name_parts=parts, target=t.name, project=s.project, project_number=number, location=s.key.location or t.region,
        protection_level=s.key.protection_level, rotation_period=s.key.rotation_period, attribute_condition=condition,
        image_digests=digests, encrypters=s.key.encrypters, labels=lab), opts)
    instance = gcp.compute.Instance(
        f"{t.name}-vm", name=gcp_name([*parts, "cs"], 63), project=s.project, zone=zone, machine_type=s.machine,
        boot_disk=gcp.compute.InstanceBootDiskArgs(
            initialize_params=gcp.compute.InstanceBootDiskInitializeParamsArgs(image=s.image)),
        network_interfaces=[gcp.compute.InstanceNetworkInterfaceArgs(subnetwork=net.subnetwork_id)],
        confidential_instance_config=gcp.compute.InstanceConfidentialInstanceConfigArgs(
            confidential_instance_type=s.confidential_type),
        min_cpu_platform=SNP_MIN_CPU_PLATFORM if s.confidential_type == "SEV_SNP" else None,
        shielded_instance_config=gcp.compute.InstanceShieldedInstanceConfigArgs(
            enable_secure_boot=True, enable_vtpm=True, enable_integrity_monitoring=True),
        scheduling=gcp.compute.InstanceSchedulingArgs(on_host_maintenance="TERMINATE", automatic_restart=False),
        service_account=gcp.compute.InstanceServiceAccountArgs(email=sa.email, scopes=["cloud-platform"]),
        metadata=launcher_metadata(s, deployed_hex), labels=lab, allow_stopping_for_update=True,
        opts=pulumi.ResourceOptions(providers=[prov], depends_on=[key]))
    return {
        "workload_identity_provider": key.provider_name,
        "kms_key_id": key.key_id,
        "instance_id": instance.instance_id,
        "image_reference": image_reference(s.image_repository, deployed_hex),
        "service_account": sa.email,
        "attribute_condition": condition,
    }


__all__ = ["build_confidential_space_target", "image_reference", "launcher_metadata", "WORKLOAD_USER"]
