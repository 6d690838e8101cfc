"""``teeform measurements diff``: which measurements changed between two manifests, and why.

Exit status 0 for any successful diff (changed or not), 2 for unusable input. The rules and
dependency tables are in :mod:`teeform.measurements_diff`.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from teeform.measurements_diff import diff_files


@click.command("diff")
@click.argument("old_manifest", type=click.Path(path_type=Path))
@click.argument("new_manifest", type=click.Path(path_type=Path))
@click.option("--markdown", is_flag=True, help="Markdown for a pull-request comment.")
@click.option("--json", "as_json", is_flag=True, help="JSON.")
def cmd(old_manifest: Path, new_manifest: Path, markdown: bool, as_json: bool) -> None:
    """Explain which measurements changed from OLD_MANIFEST to NEW_MANIFEST, and which inputs caused it.

    \b
    EIF: PCR1 = kernel + cmdline + bootstrap ramdisk (init, nsm); PCR2 = application
    image; PCR0 = ImageSha384 = both; PCR8 = signing certificate. SOURCE_DATE_EPOCH
    is the mtime of every ramdisk entry, so it moves PCR0/1/2 too.
    vm-image: roothash, UKI Authenticode, PCR 11/12, RTMR1/2, SNP launch digest.

    \b
    Exit 0 whether or not anything changed; 2 for a missing/invalid manifest.
    Example (PR comment):  teeform measurements diff old.manifest.json new.manifest.json --markdown
    """
    if markdown and as_json:
        from teeform.errors import TeeformError

        raise TeeformError("choose one of --markdown and --json")
    diff = diff_files(str(old_manifest), str(new_manifest))
    if as_json:
        click.echo(json.dumps(diff.to_json(), indent=2))
    elif markdown:
        click.echo(diff.render_markdown(), nl=False)
    else:
        click.echo(diff.render_text(), nl=False)
