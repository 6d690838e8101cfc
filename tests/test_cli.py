"""The CLI front door: help text, error rendering (one line + hint, exit 2), debug tracebacks."""

from __future__ import annotations

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
    err = capsys.readouterr().err
    assert err.startswith(f"error: {missing}: cannot read")
    assert "Traceback" not in err


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
