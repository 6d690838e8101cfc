"""Builder for an ``aws``/``nitro-enclave`` target: network, artifact store, enclave host, attested key.

Wiring (one explicit AWS provider per target, in the target's region)::

    EnclaveNetwork ──► EnclaveHost (role, policy, profile, launch template, instance)
    ArtifactStore  ──►      │  role ARN                ▲ key ARN (deferred output)
                            ▼                          │
                        AttestedKey (one key-policy statement per allowed manifest, pinning its PCRs) ─┘

The host's role policy needs the key ARN and the key policy needs the role ARN. The key is created
after the role (KMS rejects principals that do not exist yet) and the role policy after the key;
``pulumi.deferred_output()`` (a public SDK function) lets the host take the key ARN before the key
component is constructed. No resource is created inside an ``apply``.

Configuration errors (debug mode without ``allowDebug``, an instance type that cannot host the
enclave, a missing EIF) raise :class:`~teeform.errors.TeeformError` while the program is built,
i.e. during ``pulumi preview`` / ``teeform preview``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from typing import Any

import pulumi
import pulumi_aws as aws

from components.aws.artifact_store import ArtifactStore, ArtifactStoreArgs, eif_object_key
from components.aws.attested_key import AttestedKey, AttestedKeyArgs, release_statements
from components.aws.enclave_host import (
    EnclaveHost,
    EnclaveHostArgs,
    UserDataSpec,
    al2023_ami_parameter,
    check_enclave_fit,
    render_user_data,
)
from components.aws.enclave_network import EnclaveNetwork, EnclaveNetworkArgs
from components.measurement_manifest import TARGET_TAG
from components.registry import TargetContext
from teeform.errors import TeeformError

#: vsock CID of the enclave (must be >= 4; eif-nitro.md §6.5). Fixed so operators know where it is.
ENCLAVE_CID = 16


def physical_name(parts: list[str], max_len: int, *, lower: bool = False) -> str:
    """Join ``parts`` with ``-`` into a cloud resource name of at most ``max_len`` characters.

    Characters outside ``[A-Za-z0-9-]`` become ``-``; an over-long name is cut and suffixed with 8 hex
    digits of its SHA-256, so distinct stacks keep distinct names. Pure.
    """
    name = re.sub(r"[^A-Za-z0-9-]+", "-", "-".join(parts)).strip("-")
    if lower:
        name = name.lower()
    if len(name) > max_len:
        digest = hashlib.sha256(name.encode()).hexdigest()[:8]
        name = f"{name[: max_len - 9].rstrip('-')}-{digest}"
    return name


def deployer_principal(caller_arn: str) -> str:
    """The key-policy principal for the caller: an STS assumed-role session ARN
    (``arn:aws:sts::<id>:assumed-role/<role>/<session>``) becomes the role ARN
    (``arn:aws:iam::<id>:role/<role>``), because key policies cannot name sessions. Other ARNs
    (IAM users, roles) are returned unchanged. A role with a path must be given explicitly as an
    admin instead (the session ARN does not carry the path)."""
    m = re.match(r"^arn:([^:]+):sts::(\d{12}):assumed-role/([^/]+)/.+$", caller_arn)
    if m:
        return f"arn:{m.group(1)}:iam::{m.group(2)}:role/{m.group(3)}"
    return caller_arn


def _in_stack(exc: TeeformError, source: str, fld: str) -> TeeformError:
    """Re-anchor a component-level error on the stack file and the target's field."""
    field = exc.field if (exc.field or "").startswith("teeform:") else f"{fld}.{exc.field}" if exc.field else fld
    return TeeformError(exc.message, hint=exc.hint, path=exc.path or source, field=field)


def build_nitro_enclave_target(ctx: TargetContext) -> dict[str, Any]:
    """Create the components of one Nitro Enclave target and return its outputs, in export order:
    ``kms_key_arn``, ``instance_id``, ``eif_uri``, ``enclave_cpu_count``, ``enclave_memory_mib``.

    Raises:
        TeeformError: see the module docstring.
    """
    t, stack = ctx.target, ctx.stack
    s = t.nitro
    fld = f"teeform:targets[{t.name}]"
    if s.enclave.debug and not stack.allow_debug:
        raise TeeformError(
            "enclave debug mode is requested but teeform:allowDebug is false (debug enclaves report all-zero PCRs)",
            path=stack.source, field=f"{fld}.enclave.debug",
            hint="remove enclave.debug, or set teeform:allowDebug: true in a non-production stack",
        )
    deployed = ctx.deployed
    artifact = deployed.manifest.artifact
    release = ctx.key_release()
    assert release is not None  # the nitro-enclave plug-in always has a key gate
    spec = UserDataSpec(
        region=t.region, bucket="", eif_key=eif_object_key(artifact.sha384), eif_sha384=artifact.sha384,
        cpu_count=s.enclave.cpu_count, memory_mib=s.enclave.memory_mib, enclave_cid=ENCLAVE_CID, debug=s.enclave.debug,
    )
    # Configuration checks run before the first resource is registered (the EIF file itself is
    # checked by ArtifactStore, the first component created below).
    try:
        info = check_enclave_fit(s.instance_type, s.enclave.cpu_count, s.enclave.memory_mib, artifact.size, field_prefix=fld)
        release_statements(release, "arn:aws:iam::000000000000:role/check")
        render_user_data(spec)
    except TeeformError as exc:
        raise _in_stack(exc, stack.source, fld) from exc

    provider = aws.Provider(f"{t.name}-aws", region=t.region)
    opts = pulumi.ResourceOptions(providers=[provider])
    invoke = pulumi.InvokeOutputOptions(provider=provider)
    identity = aws.get_caller_identity_output(opts=invoke)
    account_id = identity.account_id
    partition = identity.arn.apply(lambda a: a.split(":")[1])
    tags = {"teeform:stack": stack.stack, TARGET_TAG: t.name, "teeform:environment": stack.environment}

    ami_id: pulumi.Input[str] = s.ami or aws.ssm.get_parameter_output(name=al2023_ami_parameter(info.arch), opts=invoke).value

    store = ArtifactStore(
        f"{t.name}-artifacts",
        ArtifactStoreArgs(
            bucket_name=account_id.apply(
                lambda a: physical_name([ctx.project, stack.stack, t.name, a, t.region], 63, lower=True)
            ),
            eif_path=deployed.artifact_path,
            eif_size=artifact.size,
            eif_sha384=artifact.sha384,
            manifest_path=deployed.path,
            manifest_sha256=deployed.sha256,
            force_destroy=not stack.is_production,
        ),
        opts,
    )
    network = EnclaveNetwork(
        f"{t.name}-net",
        EnclaveNetworkArgs(
            vpc_id=s.network.vpc_id, subnet_id=s.network.subnet_id, cidr=s.network.cidr,
            ingress=s.network.ingress, tags=tags,
        ),
        opts,
    )
    key_arn: pulumi.Output[str]
    resolve_key_arn: Callable[[pulumi.Output[str]], None]
    key_arn, resolve_key_arn = pulumi.deferred_output()
    host = EnclaveHost(
        f"{t.name}-host",
        EnclaveHostArgs(
            instance_type=s.instance_type,
            ami_id=ami_id,
            subnet_id=network.subnet_id,
            security_group_id=network.security_group_id,
            role_name=physical_name([ctx.project, stack.stack, t.name, "enclave-host"], 64),
            account_id=account_id,
            partition=partition,
            key_arn=key_arn,
            user_data=spec,
            eif_bucket=store.bucket_name,
            tags=tags,
        ),
        opts,
    )
    admins: pulumi.Input[list[str]] = (
        list(s.key.admins) if s.key.admins else pulumi.Output.all(partition, account_id).apply(lambda v: [f"arn:{v[0]}:iam::{v[1]}:root"])
    )
    key = AttestedKey(
        f"{t.name}-key",
        AttestedKeyArgs(
            enclave_role_arn=host.role_arn,
            deployer_arn=identity.arn.apply(deployer_principal),
            admin_arns=admins,
            release=release,
            deletion_window_days=s.key.deletion_window_days,
            protect=s.key.protect,
            alias_name="alias/" + physical_name([ctx.project, stack.stack, t.name], 200),
            tags=tags,
        ),
        pulumi.ResourceOptions(providers=[provider], depends_on=[host.role]),
    )
    resolve_key_arn(key.key_arn)
    return {
        "kms_key_arn": key.key_arn,
        "instance_id": host.instance_id,
        "eif_uri": store.eif_uri,
        "enclave_cpu_count": s.enclave.cpu_count,
        "enclave_memory_mib": s.enclave.memory_mib,
    }
