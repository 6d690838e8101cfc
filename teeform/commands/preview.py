"""``teeform preview``: the Pulumi program under the SDK's mock engine, then the policy pack (offline).

See :mod:`teeform.preview` (runner, crossguard, clouds, render) for what runs and how it differs from ``pulumi preview``.
Exit status: 0 without mandatory violations, 1 with any, 2 for an error (bad config, a program
error such as a missing manifest or an instance type that cannot host the enclave).
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import click

from teeform.cli import exit_with
from teeform.preview import render_text, run_preview, to_json
from teeform.stack import project_dir_default

#: subcommands of ``teeform preview`` (``teeform preview diff BASE HEAD``), imported lazily; without a
#: subcommand ``teeform preview --stack S`` previews the stack as before.
SUBCOMMANDS = {"diff": "teeform.commands.preview_diff:cmd"}


class PreviewGroup(click.Group):
    """``teeform preview``: a command (``--stack``) that also has lazily imported subcommands."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(SUBCOMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        target = SUBCOMMANDS.get(name)
        if target is None:
            return None
        module, attr = target.split(":")
        sub: click.Command = getattr(importlib.import_module(module), attr)
        return sub


@click.group("preview", cls=PreviewGroup, invoke_without_command=True, subcommand_metavar="[diff BASE.json HEAD.json]")
@click.option("--stack", "stack", help="Stack name (reads stacks/Pulumi.<stack>.yaml). Required without a subcommand.")
@click.option("--json", "as_json", is_flag=True,
              help="Print one JSON document {format, schemaVersion, resources, outputs, violations, manifests, ...} "
                   "(docs/preview-json.md).")
@click.option("--today", help="Clock of the rollover windows, YYYY-MM-DD (default: SOURCE_DATE_EPOCH, else today, UTC).")
@click.option("--stack-file", type=click.Path(path_type=Path), help="Use this stack config file instead.")
@click.option(
    "--policy-config", type=click.Path(path_type=Path),
    help="Policy-pack config JSON (default: policies/config/<stack>.json, else "
         "policies/config/<environment>.json for the stack's teeform:environment, when present).",
)
@click.option(
    "--project-dir", type=click.Path(path_type=Path, file_okay=False),
    help="The teeform project (default: $TEEFORM_PROJECT_DIR or the nearest parent with Pulumi.yaml).",
)
@click.pass_context
def cmd(ctx: click.Context, stack: str | None, as_json: bool, today: str | None, stack_file: Path | None,
        policy_config: Path | None, project_dir: Path | None) -> None:
    """Preview a stack offline: run the Pulumi program with mocks and check it with the policy pack.

    \b
    Prints the resources (type, name, key properties), the stack outputs with the
    measurements first, then every policy violation with its enforcement level.
    Exit status: 0 with no mandatory violation (advisory ones are printed), 1 when a
    mandatory policy is violated (as `pulumi preview --policy-pack` would), 2 on an
    error (bad stack config, missing manifest, an instance type that cannot host
    the enclave), printed as one line naming the file and field.

    \b
    Examples:
      teeform preview --stack dev
      teeform preview --stack prod --json > head.json
      teeform preview diff base.json head.json --markdown   # PR comment (docs/gitops.md)
    """
    if ctx.invoked_subcommand is not None:
        return
    if not stack:
        raise click.UsageError("Missing option '--stack' (or a subcommand: teeform preview diff BASE.json HEAD.json).")
    result = run_preview(project_dir or project_dir_default(), stack, stack_file=stack_file, policy_config=policy_config,
                         today=today)
    if as_json:
        click.echo(json.dumps(to_json(result), indent=2))
    else:
        click.echo(render_text(result), nl=False)
    if result.mandatory:
        exit_with(1)
