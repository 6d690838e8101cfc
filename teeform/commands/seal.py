"""``teeform seal`` / ``teeform unseal``: envelope-encrypt the agent's secrets to the stack's KMS key.

The format, cryptography and input bounds are documented in :mod:`teeform.seal`; the user guide is
``docs/verify-and-seal.md``. Secrets are read from the input file and written only to the sealed file
(``seal``) or to stdout / a mode-0600 file (``unseal``); nothing else is written.
"""

from __future__ import annotations

from pathlib import Path

import click

from teeform.errors import TeeformError
from teeform.fsutil import atomic_output


@click.command("seal")
@click.option("--stack", required=True, help="Stack (environment) the secrets are for: stacks/Pulumi.<stack>.yaml.")
@click.option("--target", help="Target of the stack (default: its only target).")
@click.option("--in", "in_path", required=True, type=click.Path(path_type=Path),
              help="Secrets: a .env file (NAME=VALUE lines) or a JSON object of strings.")
@click.option("--out", "out_path", required=True, type=click.Path(path_type=Path, dir_okay=False),
              help="Sealed JSON file to write (mode 0600, atomic).")
@click.option("--key-id", help="KMS key ARN/id/alias (default: the stack output kms_key_arn, via "
              "`pulumi stack output kms_key_arn --json --stack <stack>`; with several targets, the --target entry). "
              "Azure targets: the Key Vault key id (default: the stack output key_id).")
@click.option("--region", help="AWS region (default: the target's region).")
@click.option("--endpoint-url", help="KMS endpoint URL (e.g. a local moto server).")
@click.option("--project-dir", type=click.Path(path_type=Path, file_okay=False),
              help="Project directory holding Pulumi.yaml (default: $TEEFORM_PROJECT_DIR or the nearest parent).")
def seal_cmd(stack: str, target: str | None, in_path: Path, out_path: Path, key_id: str | None,
             region: str | None, endpoint_url: str | None, project_dir: Path | None) -> None:
    """Seal secrets to the stack's KMS key, bound to the deployed manifest.

    \b
    KMS GenerateDataKey (AES_256) with EncryptionContext
      {teeform:stack, teeform:target, teeform:manifest-sha256}
    then AES-256-GCM of the secrets locally; the plaintext data key is discarded.
    If the key policy denies GenerateDataKey (the stack's policy grants the
    deployer only kms:Encrypt), a local random key is wrapped with KMS Encrypt
    under the same context instead; unsealing is identical.

    \b
    Example:  teeform seal --stack dev --in secrets.env --out sealed.json
    """
    from teeform.manifest import load_manifest, manifest_sha256
    from teeform.seal import kms_client, load_secrets, resolve_key_id, seal_secrets
    from teeform.stack import load_stack, project_dir_default

    pdir = project_dir or project_dir_default()
    cfg = load_stack(pdir, stack)
    if target is None:
        if len(cfg.targets) != 1:
            raise TeeformError(f"stack {stack!r} has {len(cfg.targets)} targets; choose one with --target",
                               hint="targets: " + ", ".join(t.name for t in cfg.targets))
        tgt = cfg.targets[0]
    else:
        tgt = next((t for t in cfg.targets if t.name == target), None)  # type: ignore[assignment]
        if tgt is None:
            raise TeeformError(f"stack {stack!r} has no target {target!r}",
                               hint="targets: " + ", ".join(t.name for t in cfg.targets))
    m = Path(tgt.manifests[0])
    manifest_path = m if m.is_absolute() else pdir / m
    load_manifest(manifest_path)  # must exist and be valid: its digest is what the secrets are bound to
    digest = manifest_sha256(manifest_path)
    secrets = load_secrets(in_path)
    how: list[str] = []
    if tgt.cloud.value == "gcp":  # Cloud KMS, bound by AAD instead of EncryptionContext (teeform/seal_gcp.py)
        from teeform.seal_gcp import kms_client as gcp_kms_client
        from teeform.seal_gcp import resolve_key_name, seal_secrets_gcp

        name = resolve_key_name(key_id, stack, pdir, tgt.name)
        sealed = seal_secrets_gcp(secrets, kms=gcp_kms_client(endpoint_url=endpoint_url), key_name=name, stack=stack,
                                  target=tgt.name, manifest_sha256=digest)
        how.append("local 32-byte key (os.urandom) wrapped with Cloud KMS Encrypt, AAD = encryption context")
    elif tgt.cloud.value == "azure":  # issue 10: Key Vault RSA-OAEP-256 wrap (teeform/seal_azure.py)
        from teeform.seal_azure import resolve_key_id_azure, seal_secrets_azure

        kid = resolve_key_id_azure(key_id, stack, pdir, tgt.name)
        sealed = seal_secrets_azure(secrets, key_id=kid, stack=stack, target=tgt.name, manifest_sha256=digest,
                                    note=how.append)
    else:
        arn = resolve_key_id(key_id, stack, pdir, tgt.name)
        kms = kms_client(region=region or tgt.region, endpoint_url=endpoint_url)
        sealed = seal_secrets(secrets, kms=kms, key_id=arn, stack=stack, target=tgt.name, manifest_sha256=digest,
                              note=how.append)
    with atomic_output(out_path, 0o600) as fh:
        fh.write(sealed.to_json().encode("utf-8"))
    click.echo(f"sealed {len(secrets)} secret(s) for stack {stack!r} target {tgt.name!r} -> {out_path} (mode 0600)", err=True)
    click.echo(f"  key       {sealed.key_id}", err=True)
    from teeform.fsutil import display_path

    click.echo(f"  manifest  {display_path(manifest_path)} sha256 {digest}", err=True)
    for line in how:
        click.echo(f"  data key  {line}", err=True)


@click.command("unseal")
@click.option("--in", "in_path", required=True, type=click.Path(path_type=Path),
              help="Sealed JSON file written by `teeform seal`.")
@click.option("--out", "out_path", type=click.Path(path_type=Path, dir_okay=False),
              help="Write the secrets here (mode 0600, atomic) instead of stdout.")
@click.option("--format", "fmt", type=click.Choice(["json", "env"]), default="json", show_default=True,
              help="Output format of the secrets.")
@click.option("--stack", help="Refuse the file unless it was sealed for this stack.")
@click.option("--region", help="AWS region (default: the region in the key ARN).")
@click.option("--endpoint-url", help="KMS endpoint URL (e.g. a local moto server).")
@click.option("--recipient-key", type=click.Path(path_type=Path),
              help="Enclave path: RSA private key (PEM) whose public half is in the attestation document.")
@click.option("--attestation-doc", help="Enclave path: the attestation document (CBOR or base64; - for stdin).")
@click.option("--wif-provider", help="GCP Confidential Space path: the Workload Identity Pool provider name (stack "
              "output workload_identity_provider); the attestation token is exchanged at STS for it.")
@click.option("--attestation-token", default=None,
              help="GCP: the Confidential Space attestation token file "
                   "(default /run/container_launcher/attestation_verifier_claims_token).")
@click.option("--sts-url", default=None, help="GCP: STS token endpoint (default https://sts.googleapis.com/v1/token).")
def unseal_cmd(in_path: Path, out_path: Path | None, fmt: str, stack: str | None, region: str | None,
               endpoint_url: str | None, recipient_key: Path | None, attestation_doc: str | None,
               wif_provider: str | None = None, attestation_token: str | None = None, sts_url: str | None = None) -> None:
    """Unseal secrets: KMS Decrypt of the data key, then AES-256-GCM.

    \b
    Plain path (operators, CI):   teeform unseal --in sealed.json
    Enclave path (the reference): --recipient-key rsa.pem --attestation-doc doc.cbor
      adds Recipient={RSAES_OAEP_SHA_256, AttestationDocument} to Decrypt, so KMS
      checks the enclave's PCRs against the key policy and returns CiphertextForRecipient.
    """
    import json

    from teeform.safeload import read_limited
    from teeform.seal import (
        MAX_SEALED_BYTES,
        SealedSecrets,
        format_env,
        kms_client,
        recipient_for,
        region_from_arn,
        unseal_secrets,
    )

    if bool(recipient_key) != bool(attestation_doc):
        raise TeeformError("--recipient-key and --attestation-doc go together (the enclave path)")
    if not in_path.exists() and not in_path.is_symlink():
        raise TeeformError("sealed file not found", path=in_path)
    sealed = SealedSecrets.from_json(read_limited(in_path, MAX_SEALED_BYTES, what="sealed file"), source=str(in_path))
    if stack is not None and sealed.aad.get("stack") != stack:
        raise TeeformError(f"sealed for stack {sealed.aad.get('stack')!r}, not {stack!r}", path=in_path, field="aad.stack")
    recipient = None
    if recipient_key and attestation_doc:
        from teeform.nitro.attestation import read_attestation_bytes
        from teeform.nitro.kms_recipient import load_recipient_key

        doc, source = read_attestation_bytes(attestation_doc)
        recipient = recipient_for(doc, load_recipient_key(recipient_key), source=source)
    from teeform.seal_azure import is_key_vault_key_id, unseal_secrets_azure
    from teeform.seal_gcp import is_gcp_key

    if is_gcp_key(sealed.key_id):  # Cloud KMS (teeform/seal_gcp.py): STS + Decrypt in the workload, else ADC
        from teeform.seal_gcp import DEFAULT_TOKEN_PATH, STS_URL, unseal_gcp_workload, unseal_secrets_gcp
        from teeform.seal_gcp import kms_client as gcp_kms_client

        if wif_provider:
            secrets = unseal_gcp_workload(sealed, provider=wif_provider, token_path=attestation_token or DEFAULT_TOKEN_PATH,
                                          sts_url=sts_url or STS_URL, kms_endpoint=endpoint_url)
        else:
            secrets = unseal_secrets_gcp(sealed, kms=gcp_kms_client(endpoint_url=endpoint_url))
    elif is_key_vault_key_id(sealed.key_id) and recipient is None:  # issue 10: sealed to an Azure Key Vault key
        secrets = unseal_secrets_azure(sealed)
    else:
        kms = kms_client(region=region or region_from_arn(sealed.key_id), endpoint_url=endpoint_url)
        secrets = unseal_secrets(sealed, kms=kms, recipient=recipient)
    rendered = format_env(secrets) if fmt == "env" else json.dumps(secrets, indent=2, sort_keys=True) + "\n"
    if out_path is None:
        click.echo(rendered, nl=False)
    else:
        with atomic_output(out_path, 0o600) as fh:
            fh.write(rendered.encode("utf-8"))
        click.echo(f"unsealed {len(secrets)} secret(s) -> {out_path} (mode 0600)", err=True)
