"""``teeform verify manifest MANIFEST --key PUB.pem``: check a manifest's signature offline.

Verifies ``<MANIFEST>.intoto.jsonl`` (teeform's in-toto/DSSE envelopes, or ``--envelopes F``) or a
cosign ``sign-blob --key`` signature (``--signature F.sig``: base64 DER ECDSA-P256 over SHA-256 of the
manifest's bytes) against pinned public keys (``--key``, repeatable, or ``--stack S`` for that stack's
``teeform:trustedManifestKeys``). What is checked: :mod:`teeform.signing`, docs/signing.md.

``--json`` prints, when verified, ``{verified, manifest, manifest_sha256, method, signer, key, predicates,
artifact{file_name, sha256, sha384}, measurements, rekor}``, an absent value being ``null`` (``rekor``
without ``--rekor``; ``artifact.sha384`` for a manifest that records none, as schema-2 EIF manifests), and
otherwise ``{verified: false, manifest, error}``.

Exit status: 0 verified; 1 the signature does not hold (unsigned, no pinned key signed it, wrong
payloadType or predicate, the manifest changed after signing); 2 unusable input (unreadable or
malformed manifest, key or envelope). Each failure is one line naming the file and field.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from teeform.cli import exit_with
from teeform.errors import TeeformError
from teeform.fsutil import display_path


@click.command("manifest")
@click.argument("manifest", type=click.Path(path_type=Path))
@click.option("--key", "keys", multiple=True, type=click.Path(path_type=Path),
              help="Trusted PEM public key (P-256; repeatable: any one may have signed).")
@click.option("--stack", help="Trust the keys of this stack's teeform:trustedManifestKeys instead of --key.")
@click.option("--signature", type=click.Path(path_type=Path),
              help="A cosign sign-blob --key signature file (base64) of MANIFEST, instead of the DSSE envelopes.")
@click.option("--envelopes", type=click.Path(path_type=Path), help="The envelopes file (default: MANIFEST.intoto.jsonl).")
@click.option("--rekor", "rekor_entry", type=click.Path(path_type=Path),
              help="Also verify this stored Rekor v1 entry of the cosign signature (inclusion proof, checkpoint, SET).")
@click.option("--rekor-key", "rekor_keys", multiple=True, type=click.Path(path_type=Path),
              help="Pinned log key (PEM, repeatable; default: rekor.sigstore.dev's, shipped in teeform/data/).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option("--project-dir", type=click.Path(path_type=Path, file_okay=False),
              help="Project directory holding Pulumi.yaml (with --stack).")
def cmd(manifest: Path, keys: tuple[Path, ...], stack: str | None, signature: Path | None, envelopes: Path | None,
        rekor_entry: Path | None, rekor_keys: tuple[Path, ...], as_json: bool, project_dir: Path | None) -> None:
    """Verify MANIFEST's signature offline against pinned public keys.

    \b
    Examples:
      teeform verify manifest build/agent.manifest.json --key release.pub
      teeform verify manifest build/agent.manifest.json --stack prod
      cosign sign-blob --key cosign.key --new-bundle-format=false --tlog-upload=false \\
          --output-signature agent.manifest.json.sig agent.manifest.json
      teeform verify manifest agent.manifest.json --key cosign.pub --signature agent.manifest.json.sig
    """
    from teeform.signing import SignatureInvalid, load_public_key, verify_manifest

    if bool(stack) == bool(keys):
        raise TeeformError("give exactly one of --key <pub.pem> (repeatable) or --stack <name>")
    if signature is not None and envelopes is not None:
        raise TeeformError("give at most one of --signature and --envelopes")
    if stack:
        from teeform.stack import load_stack, project_dir_default

        cfg = load_stack(project_dir or project_dir_default(), stack)
        trusted = cfg.trusted_keys()
        if not trusted:
            raise TeeformError(f"stack {stack!r} pins no key", path=cfg.source, field="teeform:trustedManifestKeys")
    else:
        trusted = [load_public_key(k) for k in keys]
    logged = None
    try:
        v = verify_manifest(manifest, trusted, envelopes=envelopes, signature=signature)
        if rekor_entry is not None:
            from teeform.rekor import load_log_key, verify_manifest_entry

            log_keys = [load_log_key(k) for k in rekor_keys] if rekor_keys else [load_log_key()]
            logged, _ = verify_manifest_entry(manifest, rekor_entry, trusted, log_keys)
    except SignatureInvalid as exc:
        if as_json:
            click.echo(json.dumps({"verified": False, "manifest": str(manifest), "error": exc.render()}, indent=2))
        else:
            click.secho(f"FAIL: {exc.render()}", fg="red", err=True)
            if exc.hint:
                click.echo(f"hint: {exc.hint}", err=True)
        exit_with(1)
        return
    a = v.manifest.artifact
    if as_json:
        click.echo(json.dumps({
            "verified": True, "manifest": str(manifest), "manifest_sha256": v.manifest_sha256, "method": v.method,
            "signer": v.signer, "key": v.key_source, "predicates": list(v.predicates),
            "artifact": {"file_name": a.file_name, "sha256": a.sha256, "sha384": a.sha384},
            "measurements": dict(v.manifest.measurements),
            "rekor": None if logged is None else {"origin": logged.origin, "tree_size": logged.tree_size,
                                                  "index": logged.index, "log_key": logged.log_key.source},
        }, indent=2))
        return
    how = ("in-toto DSSE envelopes (" + ", ".join(v.predicates) + ")" if v.method == "dsse"
           else "cosign sign-blob signature (ECDSA P-256, SHA-256 of the manifest bytes)")
    click.echo(f"VERIFIED {display_path(manifest)} (sha256 {v.manifest_sha256})")
    click.echo(f"  by        {v.signer} ({display_path(v.key_source)})")
    click.echo(f"  method    {how}")
    click.echo(f"  artifact  {a.file_name} sha256 {a.sha256}")
    click.echo(f"  pins      {', '.join(sorted(v.manifest.measurements))}")
    if logged is not None:
        click.echo(f"  log       {display_path(rekor_entry or '')}: in {logged.origin!r} at leaf {logged.index} of "
                   f"{logged.tree_size} (inclusion proof, checkpoint and SET by {display_path(logged.log_key.source)})")
    click.echo("  vouches   for our image's manifest (artifact digests and measurements), not for the platform "
               "(that is the attestation's certificate chain: teeform verify attestation)")
