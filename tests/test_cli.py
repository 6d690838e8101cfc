"""The CLI front door: help text, error rendering (one line + hint, exit 2), debug tracebacks."""

from __future__ import annotations

import zlib
from pathlib import Path

import pytest

from teeform.cli import main


def test_help_lists_groups(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for word in ("build", "measure", "verify", "measurements"):
        assert word in out


def test_teeform_error_is_one_line_with_hint(tmp_path: Path, capsys):
    missing = tmp_path / "nope.eif"
    assert main(["measure", str(missing)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.splitlines() == [f"error: {missing}: cannot read: No such file or directory"]
    # An error that carries a hint: exactly one error line naming file and field, then one hint line.
    # The EIF is assembled here with struct/zlib (eif-nitro.md §1.2: magic, u16 version at 4, CRC-32 at 544
    # over the rest); version 5 is not a documented EIF version.
    header = bytearray(548)
    header[0:4] = b".eif"
    header[4:6] = (5).to_bytes(2, "big")
    header[544:548] = zlib.crc32(bytes(header[:544])).to_bytes(4, "big")
    bad = tmp_path / "v5.eif"
    bad.write_bytes(bytes(header))
    assert main(["measure", str(bad)]) == 2
    out, err = capsys.readouterr()
    lines = err.splitlines()
    assert out == "" and len(lines) == 2, err
    assert lines[0].startswith(f"error: {bad}: version: unsupported EIF version 5")
    assert lines[1].startswith("hint: ")


def test_empty_file(tmp_path: Path, capsys):
    f = tmp_path / "empty.bin"
    f.write_bytes(b"")
    assert main(["measure", str(f)]) == 2
    assert "file is empty" in capsys.readouterr().err


def test_debug_shows_traceback(tmp_path: Path):
    from teeform.errors import TeeformError

    with pytest.raises(TeeformError):
        main(["--debug", "measure", str(tmp_path / "nope")])


def test_unknown_command(capsys):
    assert main(["frobnicate"]) == 2
    assert "No such command" in capsys.readouterr().err


def test_debug_does_not_leak(tmp_path: Path):
    import os

    from teeform.errors import TeeformError

    with pytest.raises(TeeformError):
        main(["--debug", "measure", str(tmp_path / "nope")])
    assert "TEEFORM_DEBUG" not in os.environ
    assert main(["measure", str(tmp_path / "nope")]) == 2


def test_every_mapped_command_is_built_and_listed(capsys):
    """teeform.cli returns "no such command" when a mapped command module is missing; every command in
    COMMANDS must therefore import, expose a click command, and be reachable through --help."""
    import importlib

    import click

    from teeform.cli import COMMANDS

    assert COMMANDS
    for group, commands in COMMANDS.items():
        for name, target in commands.items():
            module, attr = target.split(":")
            assert isinstance(getattr(importlib.import_module(module), attr), click.Command), target
            argv = [group, name, "--help"] if group else [name, "--help"]
            assert main(argv) == 0, argv
            assert "Usage:" in capsys.readouterr().out, argv
