"""``teeform preview diff BASE.json HEAD.json``: the semantic diff of two ``teeform preview --json`` documents.

What it shows and in which order: :mod:`teeform.preview_diff`. Exit status 0 for any successful diff
(whatever changed: head's own ``teeform preview`` run is the gate), 2 for unusable input (a missing
file, a document that is not ``teeform preview --json`` output, two different stacks), printed as
one line naming the file and the field.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from teeform.errors import TeeformError
from teeform.fsutil import atomic_write_text
from teeform.preview_diff import MAX_COMMENT_CHARS, diff_files


@click.command("diff")
@click.argument("base", type=click.Path(path_type=Path), metavar="BASE.json")
@click.argument("head", type=click.Path(path_type=Path), metavar="HEAD.json")
@click.option("--markdown", is_flag=True, help="Markdown for a pull-request comment (starts with <!-- teeform-preview -->).")
@click.option("--json", "as_json", is_flag=True, help="The diff as JSON.")
@click.option("--max-chars", type=click.IntRange(min=1000), default=MAX_COMMENT_CHARS, show_default=True,
              help="Cap of the --markdown body (GitHub refuses comments over 65,536 characters).")
@click.option("--full-report", type=click.Path(path_type=Path, dir_okay=False),
              help="Also write the untruncated Markdown here (e.g. for $GITHUB_STEP_SUMMARY).")
@click.option("--allow-missing-base", is_flag=True,
              help="Read a missing or empty BASE as an empty stack (the base branch could not be previewed).")
@click.option("--base-label", help="Name of BASE in the report (default: its file name).")
@click.option("--head-label", help="Name of HEAD in the report (default: its file name).")
def cmd(base: Path, head: Path, markdown: bool, as_json: bool, max_chars: int, full_report: Path | None,
        allow_missing_base: bool, base_label: str | None, head_label: str | None) -> None:
    """Compare two `teeform preview --stack S --json` documents semantically.

    \b
    Mandatory violations first, then "Plan: N to add, M to change, K to destroy.",
    key-release changes per key (allowed measurement sets added/removed), measurement
    changes per target with the input that caused each, rollover windows, and one
    collapsible block per changed resource (user data decoded and diffed as a script).
    Paths under each document's project directory compare equal across checkouts.

    \b
    Example (CI):
      teeform preview --stack dev --json > head.json
      teeform preview diff base.json head.json --markdown --full-report summary.md > comment.md
    """
    if markdown and as_json:
        raise TeeformError("choose one of --markdown and --json")
    labels = (base_label or base.name, head_label or head.name)
    diff = diff_files(base, head, labels=labels, allow_missing_base=allow_missing_base)
    if full_report is not None:
        atomic_write_text(full_report, diff.render_markdown(max_chars=None))
    if as_json:
        click.echo(json.dumps(diff.to_json(), indent=2))
    elif markdown:
        hint = "the job summary" if full_report is not None else "`teeform preview diff` without a cap"
        click.echo(diff.render_markdown(max_chars=max_chars, summary_hint=hint))
    else:
        click.echo(diff.render_text(), nl=False)
