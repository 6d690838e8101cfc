"""``teeform``: the command-line front door.

Subcommands live one per module under :mod:`teeform.commands` and are imported lazily, so
``teeform --help`` is fast and a broken optional dependency of one command does not break the
others. Each module exposes a ``click.Command`` named in :data:`COMMANDS`.

Errors: a :class:`~teeform.errors.TeeformError` is printed as ``error: <path>: <field>: <message>``
plus ``hint: ...`` and exits with status 2. ``--debug`` (or ``TEEFORM_DEBUG=1``) shows the traceback
and echoes every external command.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

import click

from teeform import __version__
from teeform.errors import TeeformError

#: group path -> {command name: "module:attribute"}
COMMANDS: dict[str, dict[str, str]] = {
    "": {
        "measure": "teeform.commands.measure:cmd",
        "preview": "teeform.commands.preview:cmd",
        "seal": "teeform.commands.seal:seal_cmd",
        "unseal": "teeform.commands.seal:unseal_cmd",
        "sign": "teeform.commands.sign:cmd",
    },
    "build": {
        "eif": "teeform.commands.build_eif:cmd",
        "vm-image": "teeform.commands.build_vm_image:cmd",
        "oci": "teeform.commands.build_oci:cmd",
    },
    "verify": {
        "attestation": "teeform.commands.verify_attestation:cmd",
        "manifest": "teeform.commands.verify_manifest:cmd",
    },
    "measurements": {
        "diff": "teeform.commands.measurements_diff:cmd",
    },
    "export": {
        "tfvars": "teeform.commands.export_tfvars:cmd",
    },
    "rollover": {"plan": "teeform.commands.rollover:cmd"},
}

GROUP_HELP = {
    "build": "Build measured artifacts (EIF, UKI + dm-verity disk) and their manifests.",
    "verify": "Verify evidence from a running TEE against the stack's expected measurements.",
    "measurements": "Work with measurement manifests (diff old vs new for rollouts and PR previews).",
    "export": "Export manifests for other tools (Terraform *.auto.tfvars.json with ready-made key policies).",
    "rollover": "Plan a rollover from one build to the next (add new, deploy, verify, drop old).",
}


class LazyGroup(click.Group):
    """A click group whose subcommands are imported on first use from ``COMMANDS[path]``."""

    def __init__(self, *args: Any, lazy_path: str = "", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy_path = lazy_path

    def list_commands(self, ctx: click.Context) -> list[str]:
        names = set(COMMANDS.get(self.lazy_path, {}))
        if self.lazy_path == "":
            names |= {g for g in COMMANDS if g}
        return sorted(names | set(self.commands))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.commands:
            return self.commands[name]
        if self.lazy_path == "" and name in COMMANDS and name:
            return LazyGroup(name=name, lazy_path=name, help=GROUP_HELP.get(name))
        target = COMMANDS.get(self.lazy_path, {}).get(name)
        if target is None:
            return None
        module, attr = target.split(":")
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.startswith("teeform.commands"):
                return None  # command not built yet
            raise
        cmd: click.Command = getattr(mod, attr)
        return cmd


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="teeform")
@click.option("--debug", is_flag=True, envvar="TEEFORM_DEBUG", help="Show tracebacks and echo external commands.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """teeform: build measured TEE images and gate secrets on their measurements.

    \b
    Typical flow:
      teeform build eif --image img/ --kernel bzImage --init init --nsm nsm.ko --cmdline @cmdline --out build/
      teeform measure build/agent.eif
      teeform preview --stack dev          # offline: Pulumi mock engine + the policy pack
      pulumi preview --stack dev --policy-pack policies   # with the Pulumi CLI and credentials
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug
    if debug:
        os.environ["TEEFORM_DEBUG"] = "1"


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``teeform`` console script. Returns the process exit status."""
    debug = bool(os.environ.get("TEEFORM_DEBUG")) or "--debug" in (argv if argv is not None else sys.argv[1:])
    saved_env = os.environ.get("TEEFORM_DEBUG")
    try:
        rv = cli.main(args=argv, prog_name="teeform", standalone_mode=False)
        # with standalone_mode=False click *returns* the status of exit_with()/ctx.exit(n) instead of raising
        if isinstance(rv, int) and not isinstance(rv, bool):
            return rv
    except TeeformError as exc:
        if debug:
            raise
        click.secho(f"error: {exc.render()}", fg="red", err=True)
        if exc.hint:
            click.echo(f"hint: {exc.hint}", err=True)
        return 2
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 130
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        return 130
    except BrokenPipeError:  # `teeform ... | head`: the reader left; nothing more to say (128 + SIGPIPE)
        return 141
    except OSError as exc:  # an I/O failure no command turned into a TeeformError (a full disk, EACCES, EIO)
        if debug:
            raise
        where = f"{exc.filename}: " if exc.filename else ""
        click.secho(f"error: {where}{exc.strerror or exc}", fg="red", err=True)
        click.echo("hint: rerun with --debug for the traceback", err=True)
        return 2
    finally:  # --debug sets TEEFORM_DEBUG for teeform.run; do not leak it past this invocation
        if saved_env is None:
            os.environ.pop("TEEFORM_DEBUG", None)
        else:
            os.environ["TEEFORM_DEBUG"] = saved_env
    return 0


def exit_with(status: int) -> None:
    """Let a command end with a specific exit status (e.g. 1 for a failed check) without a traceback."""
    raise click.exceptions.Exit(status)


def entry() -> None:
    """The ``teeform`` console script (pyproject ``[project.scripts]``): :func:`main`, then a quick exit.

    After a large preview the interpreter's own teardown (freeing every object the Pulumi mock
    engine made, module by module) took 1.5-1.8 s of a 100-target run with nothing left to do. So
    once :func:`main` has returned, this runs the ``atexit`` handlers (``weakref.finalize`` cleanups
    such as temporary directories, logging), flushes stdout and stderr, and ends the process with
    ``os._exit`` and main's status. Called only as the script: code that calls :func:`main`
    (tests, benchmarks) keeps a normal interpreter. ``TEEFORM_NORMAL_EXIT=1`` turns it off.
    """
    import atexit

    status = main()
    if os.environ.get("TEEFORM_NORMAL_EXIT"):
        sys.exit(status)
    try:
        atexit._run_exitfuncs()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):  # a closed pipe (teeform ... | head): nothing left to say
                pass
        os._exit(status)


if __name__ == "__main__":  # pragma: no cover
    entry()
