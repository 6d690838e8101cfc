"""``teeform sign MANIFEST --key KEY.pem``: sign a measurement manifest (in-toto + DSSE).

Writes ``<MANIFEST>.intoto.jsonl`` next to the manifest (or ``--out``): two DSSE envelopes, an
in-toto Statement v1 with SLSA provenance v1 and one with the teeform measurements predicate, both
over the artifact's digests, signed with an ECDSA P-256 key (format: :mod:`teeform.signing`,
docs/signing.md). Exit 0 when written, 2 for unusable input (nothing is written then).
"""

from __future__ import annotations

from pathlib import Path

import click

from teeform.fsutil import display_path


@click.command("sign")
@click.argument("manifest", type=click.Path(path_type=Path))
@click.option("--key", "key", required=True, type=click.Path(path_type=Path),
              help="PEM ECDSA P-256 private key (PKCS#8 or SEC1; encrypted: password in $TEEFORM_SIGNING_KEY_PASSWORD).")
@click.option("--out", type=click.Path(path_type=Path), help="Where to write the envelopes (default: MANIFEST.intoto.jsonl).")
def cmd(manifest: Path, key: Path, out: Path | None) -> None:
    """Sign MANIFEST: in-toto Statements (SLSA provenance v1 + teeform measurements v1) in DSSE envelopes.

    \b
    Example:
      openssl ecparam -name prime256v1 -genkey -noout | openssl pkcs8 -topk8 -nocrypt -out release.key
      openssl pkey -in release.key -pubout -out release.pub
      teeform sign build/agent.manifest.json --key release.key
      teeform verify manifest build/agent.manifest.json --key release.pub
    """
    from teeform.signing import key_fingerprint, load_private_key, sign_manifest

    fp = key_fingerprint(load_private_key(key).public_key())
    written = sign_manifest(manifest, key, out)
    click.echo(f"signed {display_path(manifest)} -> {display_path(written)}")
    click.echo("  statements  https://slsa.dev/provenance/v1, https://teeform.dev/measurements/v1 (DSSE, "
               "application/vnd.in-toto+json)")
    click.echo(f"  key         sha256:{fp} (ECDSA P-256)")
