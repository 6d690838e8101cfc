"""``teeform verify attestation``: check a live enclave's attestation document against the stack.

Exit status: 0 when every check passes, 1 when any check fails, 2 for unusable input (unreadable or
malformed document, missing manifests, bad options). The checks are documented in
:mod:`teeform.nitro.verify`; the user guide is ``docs/verify-and-seal.md``. A NitroTPM document
(``nitrotpm_pcrs``) is checked by :mod:`teeform.nitro.nitrotpm` against vm-image manifests
(``docs/nitrotpm.md``); which kind a document is decides which manifests are loaded.

Where the line between 1 and 2 falls for hostile documents: anything wrong with the COSE_Sign1/CBOR
structure or a payload field's type, size or range (``teeform.nitro.attestation``: not well-formed
CBOR, tags, duplicate keys, a ``timestamp`` after 9999, a file that is not a regular file of at most
512 KiB...) is unusable input, exit 2, one ``error:`` line naming the file and field. A well-formed
document whose certificates are malformed, use an unknown curve or key type, carry duplicate
extensions or unreadable validity times is evidence that does not verify: the ``signature``,
``chain`` or ``time`` row fails with the reason, exit 1.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from teeform.cli import exit_with
from teeform.errors import TeeformError
from teeform.nitro.attestation import read_attestation_document
from teeform.nitro.nitrotpm import allowed_from_vm_manifests, parse_pcr_list, verify_nitrotpm
from teeform.nitro.verify import allowed_from_manifests, load_root, parse_time, verify_attestation


def _nonce(text: str | None) -> bytes | None:
    if text is None:
        return None
    t = text.strip().lower().removeprefix("0x")
    try:
        return bytes.fromhex(t)
    except ValueError:
        raise TeeformError(f"must be hex, got {text!r}", field="--nonce") from None


@click.command("attestation")
@click.argument("document", metavar="<doc.cbor|doc.b64|->")
@click.option("--stack", help="Compare with the manifests allowed by this stack (stacks/Pulumi.<stack>.yaml).")
@click.option("--manifest", "manifests", multiple=True, type=click.Path(path_type=Path),
              help="Compare with this EIF manifest (repeatable; any one may match).")
@click.option("--nonce", help="Expected nonce, hex (the challenge you sent to the enclave).")
@click.option("--at", "at", help="Validation time: ISO 8601 or 'now' (default: the document's own timestamp).")
@click.option("--root", type=click.Path(path_type=Path),
              help="Trust this root certificate instead of the pinned AWS Nitro Enclaves Root-G1 (tests only).")
@click.option("--allow-debug", is_flag=True, help="Accept a debug-mode enclave (PCR0 all zeros).")
@click.option("--nitrotpm-pcrs", "nitrotpm_pcrs", metavar="4,12",
              help="NitroTPM documents: PCRs to compare with the vm-image manifests (default 4,12; 11 may be added).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--project-dir", type=click.Path(path_type=Path, file_okay=False),
              help="Project directory holding Pulumi.yaml (default: $TEEFORM_PROJECT_DIR or the nearest parent).")
def cmd(document: str, stack: str | None, manifests: tuple[Path, ...], nonce: str | None, at: str | None,
        root: Path | None, allow_debug: bool, nitrotpm_pcrs: str | None, as_json: bool,
        project_dir: Path | None) -> None:
    """Verify a Nitro attestation document (raw CBOR, base64 text, or - for stdin).

    \b
    Checks: COSE ES384 signature; certificate chain to the pinned AWS Nitro Enclaves
    Root-G1; certificate validity at the document's timestamp (or --at now for a live
    document); PCR0/1/2 (+PCR8 if pinned) equal one allowed manifest; nonce; debug mode.
    A NitroTPM document (an EC2 instance's, nitrotpm_pcrs) is compared with vm-image
    manifests instead: PCR4 and PCR12 (+PCR11 with --nitrotpm-pcrs 4,11,12) of one manifest.
    Exit 0 = all pass, 1 = a check failed, 2 = unusable input.

    \b
    Examples:
      teeform verify attestation doc.b64 --stack prod --at now --nonce 8f3a...
      teeform verify attestation - --manifest build/agent.manifest.json --json < doc.cbor
      teeform verify attestation tpm-doc.cbor --manifest build/vm.manifest.json --at now
    """
    if bool(stack) == bool(manifests):
        raise TeeformError("give exactly one of --stack <name> or --manifest <file> (repeatable)")
    stack_notes: list[str] = []
    paths: list[Path] = list(manifests)
    if stack:
        from teeform.stack import load_stack, project_dir_default

        cfg = load_stack(project_dir or project_dir_default(), stack)
        paths = list(cfg.manifest_paths())
        if allow_debug and not cfg.allow_debug:
            stack_notes.append(f"--allow-debug accepts debug mode although stack {stack!r} has teeform:allowDebug false")
    expected_nonce = _nonce(nonce)
    when = parse_time(at) if at else None
    trust = load_root(root)
    tpm_pcrs = parse_pcr_list(nitrotpm_pcrs)
    doc, _source = read_attestation_document(document)
    at_label = f"--at {at}" if at else None
    if doc.is_nitrotpm:  # an EC2 instance's NitroTPM: compare with vm-image manifests (teeform.nitro.nitrotpm)
        allowed, more = allowed_from_vm_manifests(paths, tpm_pcrs)
        report = verify_nitrotpm(doc, root=trust, allowed=allowed, nonce=expected_nonce, at=when, at_label=at_label)
    else:
        allowed, more = allowed_from_manifests(paths)
        report = verify_attestation(doc, root=trust, allowed=allowed, nonce=expected_nonce, at=when,
                                    allow_debug=allow_debug, at_label=at_label)
    notes = more + stack_notes
    if notes:
        from dataclasses import replace

        report = replace(report, notes=tuple(notes) + report.notes)
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2))
    else:
        click.echo(report.render(), nl=False)
    if not report.ok:
        exit_with(1)
