"""teeform.safeload: bounded, hostile-input-safe JSON/YAML/file reading (issue 7 item 3)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from teeform.errors import TeeformError
from teeform.safeload import json_depth, loads_json, loads_yaml, read_limited, require_type


@pytest.mark.parametrize(
    ("doc", "needle"),
    [
        (b"[" * 5000 + b"]" * 5000, "nested 5000 levels"),
        (b'{"a": 1' + b"0" * 5000 + b"}", "5001 digits"),
        (b'{"a": "\\ud800"}', "lone surrogate"),
        (b"[NaN]", "NaN"),
        (b'{"a": Infinity}', "Infinity"),
        (b"\xff{}", "not UTF-8"),
        (b'{"a": [1,}', "line 1, column 10"),
    ],
)
def test_hostile_json_is_one_clear_error(doc: bytes, needle: str) -> None:
    with pytest.raises(TeeformError) as e:
        loads_json(doc, source="m.json")
    assert str(e.value).startswith("m.json: ") and needle in str(e.value)


def test_json_depth_ignores_brackets_in_strings() -> None:
    assert json_depth(b'{"a": "[[[[{{{{", "b": [[1]]}') == 3


BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{n}: &{n} [{', '.join(['*' + p] * 9)}]\n" for p, n in zip("abcdefgh", "bcdefghi", strict=True)
)


def test_yaml_alias_bomb_refused() -> None:
    with pytest.raises(TeeformError, match="alias bomb"):
        loads_yaml(BOMB, source="s.yaml")


def test_yaml_small_aliases_still_work() -> None:
    assert loads_yaml("a: &a [1, 2]\nb: *a\n", source="s.yaml") == {"a": [1, 2], "b": [1, 2]}


def test_read_limited_refuses_devices_dirs_and_big_files(tmp_path: Path) -> None:
    with pytest.raises(TeeformError, match="not a regular file"):
        read_limited("/dev/zero", 10, what="manifest")
    with pytest.raises(TeeformError, match="is a directory"):
        read_limited(tmp_path, 10, what="manifest")
    big = tmp_path / "big"
    big.write_bytes(b"x" * 11)
    with pytest.raises(TeeformError, match="over the 10-byte limit"):
        read_limited(big, 10, what="manifest")


def test_require_type_does_not_take_bool_for_int() -> None:
    with pytest.raises(TeeformError, match="expected an integer, got true/false"):
        require_type(True, int, source="s", field="f")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.text(),
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4),
    max_leaves=30,
)


@settings(max_examples=200, deadline=None)
@given(json_values)
def test_roundtrip_of_valid_json_equals_stdlib(value: object) -> None:
    """Valid documents within the bounds parse exactly as the stdlib parses them (the oracle)."""
    text = json.dumps(value)
    if json_depth(text.encode()) <= 64:
        try:
            got = loads_json(text.encode("utf-8", "surrogatepass"), source="x")
        except TeeformError as e:
            assert "surrogate" in str(e) or "not UTF-8" in str(e)
        else:
            assert got == json.loads(text)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_crash(data: bytes) -> None:
    try:
        loads_json(data, source="x")
    except TeeformError:
        pass
    try:
        loads_yaml(data.decode("latin-1"), source="y")
    except TeeformError:
        pass
