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

The deployer principal (sealing statement; KMS lockout check) is ``key.deployerArn`` when set,
else the caller's issuer ARN from ``aws.iam.get_session_context`` (keeps an IAM Identity Center
role's path, :func:`deployer_principal`). In ``open`` mode an admin list without the deployer or its
account root is refused naming ``key.admins`` (:func:`teeform.targets.aws_nitro_enclave.check_lockout`).

Configuration errors (debug mode without ``allowDebug``, an instance type that cannot host the
enclave, a missing EIF, an admin list that would trip KMS's lockout check) raise :class:`~teeform.errors.TeeformError` while the program is built,
i.e. during ``pulumi preview`` / ``teeform preview``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
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
from teeform.targets.aws_nitro_enclave import KeyConfig, check_lockout

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


def deployer_principal(caller_arn: str, issuer_arn: str | None = None) -> str:
    """The key-policy principal for the caller.

    ``issuer_arn`` is what ``aws.iam.get_session_context(arn=caller)`` returns: for an STS
    assumed-role session (``arn:aws:sts::<id>:assumed-role/<role>/<session>``) the IAM role ARN
    **with its path** (an IAM Identity Center role is
    ``arn:aws:iam::<id>:role/aws-reserved/sso.amazonaws.com/<region>/AWSReservedSSO_...``), for
    any other ARN the ARN itself (pulumi-aws ``iam.get_session_context`` docs). It is used whenever
    given. Without it (an engine that answers no session context, such as teeform's offline mocks)
    a session ARN becomes ``arn:aws:iam::<id>:role/<role>`` -- correct only for roles without a
    path, which is why the builder always asks for the session context and why ``key.deployerArn``
    can override both. Key policies cannot name sessions (KMS developer guide, "Principals in key
    policies").
    """
    if issuer_arn:
        return issuer_arn
    m = re.match(r"^arn:([^:]+):sts::(\d{12}):assumed-role/([^/]+)/.+$", caller_arn)
    if m:
        return f"arn:{m.group(1)}:iam::{m.group(2)}:role/{m.group(3)}"
    return caller_arn


def _in_stack(exc: TeeformError, source: str, fld: str) -> TeeformError:
    """Re-anchor a component-level error on the stack file and the target's field."""
    field = exc.field if (exc.field or "").startswith("teeform:") else f"{fld}.{exc.field}" if exc.field else fld
    return TeeformError(exc.message, hint=exc.hint, path=exc.path or source, field=field)


@dataclass(frozen=True)
class SealedObject:
    """The sealed-secrets object of a target: its key in the artifact bucket, and for a local file its
    path and SHA-256 (lowercase hex; the object is uploaded by the builder)."""

    key: str
    path: Path | None = None
    sha256: str | None = None


def sealed_object_key(sha256: str) -> str:
    """``sealed/sha256/<hex>.json``: the uploaded sealed file's object key, named by its SHA-256."""
    return f"sealed/sha256/{sha256}.json"


def sealed_secrets_object(ctx: TargetContext) -> SealedObject | None:
    """Resolve ``enclave.sealedSecrets`` of the target (None when it is not set).

    An ``s3Key`` is used as is (the operator uploads the object). A path (relative to the project
    directory) is read with :func:`teeform.safeload.read_limited` (at most
    :data:`teeform.seal.MAX_SEALED_BYTES`), parsed with :meth:`teeform.seal.SealedSecrets.from_json`,
    and must be sealed for this stack and this target (its KMS encryption context
    ``teeform:stack``/``teeform:target``) and for one of the target's manifests
    (``teeform:manifest-sha256``; ``teeform seal`` binds the deployed one, docs/verify-and-seal.md).

    Raises:
        TeeformError: naming the stack file and ``teeform:targets[<name>].enclave.sealedSecrets``.
    """
    from teeform.safeload import read_limited
    from teeform.seal import CTX_MANIFEST, CTX_STACK, CTX_TARGET, MAX_SEALED_BYTES, SealedSecrets

    t, stack = ctx.target, ctx.stack
    src = t.nitro.enclave.sealed_secrets
    if src is None:
        return None
    if src.s3_key is not None:
        return SealedObject(src.s3_key)
    assert src.path is not None
    fld = f"teeform:targets[{t.name}].enclave.sealedSecrets"
    path = Path(src.path) if Path(src.path).is_absolute() else stack.project_dir / src.path
    try:
        data = read_limited(path, MAX_SEALED_BYTES, what="sealed secrets file")
        sealed = SealedSecrets.from_json(data, source=str(path))
    except TeeformError as exc:
        where = f" ({exc.field})" if exc.field else ""
        raise TeeformError(f"{exc.message.removeprefix(f'{path}: ')}{where}: {path}", path=stack.source, field=fld,
                           hint="give the file `teeform seal --stack <stack> --target <name>` wrote") from None
    got = sealed.encryption_context
    for key, want in ((CTX_STACK, stack.stack), (CTX_TARGET, t.name)):
        if got.get(key) != want:
            raise TeeformError(f"{path} is sealed for {key} {got.get(key)!r}, not {want!r}", path=stack.source, field=fld,
                               hint=f"seal the secrets for this stack and target: teeform seal --stack {stack.stack} "
                                    f"--target {t.name}")
    manifests = {lm.sha256 for lm in ctx.manifests}
    if got.get(CTX_MANIFEST) not in manifests:
        raise TeeformError(f"{path} is sealed for manifest sha256 {got.get(CTX_MANIFEST)!r}, which is not one of the "
                           "target's manifests", path=stack.source, field=fld, hint="re-seal against the deployed manifest")
    digest = hashlib.sha256(data).hexdigest()
    return SealedObject(sealed_object_key(digest), path, digest)


def key_principals(key: KeyConfig, known_caller: str | None, identity: Any, partition: pulumi.Output[str],
                   invoke: pulumi.InvokeOutputOptions) -> tuple[pulumi.Output[list[str]], pulumi.Output[str]]:
    """(key administrators, deployer principal) of a target's KMS key, as Outputs.

    Administrators are ``key.admins``, else the account root. The deployer is ``known_caller`` (what
    :func:`lockout_checked_deployer` resolved, which must have run first, in the program body), else
    the caller resolved from ``identity`` (``aws.get_caller_identity_output``) and its session context.
    """
    admins: pulumi.Output[list[str]] = (
        pulumi.Output.from_input(list(key.admins)) if key.admins
        else pulumi.Output.all(partition, identity.account_id).apply(lambda v: [f"arn:{v[0]}:iam::{v[1]}:root"])
    )
    if known_caller is not None:
        return admins, pulumi.Output.from_input(known_caller)
    session = aws.iam.get_session_context_output(arn=identity.arn, opts=invoke)
    return admins, pulumi.Output.all(identity.arn, session.issuer_arn).apply(lambda v: deployer_principal(v[0], v[1]))


def lockout_checked_deployer(key: KeyConfig, provider: pulumi.ProviderResource, source: str, fld: str) -> str | None:
    """Run KMS's lockout check (:func:`check_lockout`) on plain values, in the program body.

    Only an ``open``-mode key with an explicit ``key.admins`` list can trip the check (the default
    admin is the account root, which always passes; ``locked`` keys bypass it on purpose,
    attested_key.py). The deployer principal is ``key.deployerArn``, else it is resolved now with the
    synchronous invokes ``aws.get_caller_identity`` and ``aws.iam.get_session_context`` (through the
    target's provider; pulumi-aws runs invokes during ``pulumi preview`` as well). Raising here,
    rather than inside an ``Output.apply``, makes the refusal reach the program's error path as one
    line, with no unretrieved future of a failed apply left behind.

    Returns:
        the deployer principal when it was resolved here (used for the key policy as is), else None.

    Raises:
        TeeformError: ``<stack file>: teeform:targets[<name>].key.admins: ...`` when the check fails.
    """
    if key.locked or not key.admins:
        return key.deployer_arn if key.deployer_arn is not None else None
    deployer = key.deployer_arn
    if deployer is None:
        opts = pulumi.InvokeOptions(provider=provider)
        arn = aws.get_caller_identity(opts=opts).arn
        deployer = deployer_principal(arn, aws.iam.get_session_context(arn=arn, opts=opts).issuer_arn)
    try:
        check_lockout(list(key.admins), deployer)
    except TeeformError as exc:
        raise _in_stack(exc, source, fld) from None
    return deployer


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
    sealed = sealed_secrets_object(ctx)
    spec = UserDataSpec(
        region=t.region, bucket="", eif_key=eif_object_key(artifact.sha256), eif_sha256=artifact.sha256,
        cpu_count=s.enclave.cpu_count, memory_mib=s.enclave.memory_mib, enclave_cid=ENCLAVE_CID, debug=s.enclave.debug,
        sealed_key=sealed.key if sealed is not None else None, cloudwatch_log_group=s.enclave.cloudwatch_log_group,
    )
    # Configuration checks run before the first resource is registered (the EIF file itself is
    # checked by ArtifactStore, the first component created below).
    try:
        info = check_enclave_fit(s.instance_type, s.enclave.cpu_count, s.enclave.memory_mib, artifact.size, field_prefix=fld)
        release_statements(release, "arn:aws:iam::000000000000:role/check")
        render_user_data(spec)
    except TeeformError as exc:
        raise _in_stack(exc, stack.source, fld) from exc

    locked = s.key.locked
    provider = aws.Provider(f"{t.name}-aws", region=t.region)
    opts = pulumi.ResourceOptions(providers=[provider])
    invoke = pulumi.InvokeOutputOptions(provider=provider)
    identity = aws.get_caller_identity_output(opts=invoke)
    known_caller = lockout_checked_deployer(s.key, provider, stack.source, fld)
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
            eif_sha256=artifact.sha256,
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
            ingress=s.network.ingress, tags=tags, private=s.network.private, region=t.region,
        ),
        opts,
    )
    host_opts = opts
    if sealed is not None and sealed.path is not None:
        sealed_object = aws.s3.BucketObjectv2(
            f"{t.name}-sealed-secrets",
            bucket=store.bucket_name,
            key=sealed.key,
            source=pulumi.FileAsset(str(sealed.path)),
            source_hash=sealed.sha256,
            content_type="application/json",
            server_side_encryption="aws:kms",
            opts=pulumi.ResourceOptions(parent=store),
        )
        host_opts = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=[sealed_object]))
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
        host_opts,
    )
    admins, caller = key_principals(s.key, known_caller, identity, partition, invoke)

    key = AttestedKey(
        f"{t.name}-key",
        AttestedKeyArgs(
            enclave_role_arn=host.role_arn,
            enclave_role_name=host.role.name,
            deployer_arn=caller,
            admin_arns=admins,
            release=release,
            deletion_window_days=s.key.deletion_window_days,
            protect=s.key.protect,
            alias_name="alias/" + physical_name([ctx.project, stack.stack, t.name], 200),
            break_glass_arn=s.key.break_glass_role if locked else None,
            source_vpce=network.kms_endpoint_id,
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
