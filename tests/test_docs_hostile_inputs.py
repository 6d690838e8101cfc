"""docs/hostile-inputs.md stays true: every regression test it names exists, and every bound constant
it names exists in the code (so a renamed test or constant cannot leave the table pointing nowhere)."""

from __future__ import annotations

import importlib
import re

from pulumi_support import REPO

DOC = REPO / "docs" / "hostile-inputs.md"
#: Modules the table names that arrive with the layout split of issue 7 item 4 (teeform/preview.py ->
#: teeform/preview/{runner,crossguard,clouds,render}.py, see docs/layout.md). Until that merge they
#: cannot be imported; the check below then requires the module to be one of these.
PENDING_MODULES = {"teeform.preview.crossguard"}


def _tests_named() -> list[tuple[str, str]]:
    text = DOC.read_text()
    out: list[tuple[str, str]] = []
    current = ""
    for m in re.finditer(r"`(?:(test_\w+\.py)::|::)?(test_\w+\*?)`|`(test_\w+\.py)`", text):
        if m.group(3):
            current = m.group(3)
            out.append((current, ""))
            continue
        current = m.group(1) or current
        out.append((current, m.group(2)))
    return out


def test_every_named_regression_test_exists() -> None:
    named = _tests_named()
    assert len(named) > 60
    for file, test in named:
        path = REPO / "tests" / file
        assert path.is_file(), f"docs/hostile-inputs.md names missing file tests/{file}"
        if not test:
            continue
        src = path.read_text()
        if test.endswith("*"):
            assert re.search(rf"^def {re.escape(test[:-1])}\w*\(", src, re.M), f"no test matching {file}::{test}"
        else:
            assert re.search(rf"^def {re.escape(test)}\(", src, re.M), f"docs/hostile-inputs.md names missing {file}::{test}"


def test_every_named_bound_constant_exists() -> None:
    text = DOC.read_text()
    table = text[text.index("## Size bound of every file input"):]
    found = 0
    for row in table.splitlines():
        if not row.startswith("|"):
            continue
        module = None
        for m in re.finditer(r"`((?:teeform|image_builder)(?:\.\w+)*?)\.([A-Z][A-Z0-9_]+|[a-z_]\w*)`|`([A-Z][A-Z0-9_]+)`", row):
            if m.group(1):
                module, name = m.group(1), m.group(2)
            elif module is not None:
                name = m.group(3)
            else:
                continue
            try:
                mod = importlib.import_module(module)
            except ModuleNotFoundError:
                assert module in PENDING_MODULES, f"docs/hostile-inputs.md names unknown module {module}"
                continue
            assert hasattr(mod, name), f"docs/hostile-inputs.md names missing {module}.{name}"
            found += 1
    assert found > 25
