"""Bounded, hostile-input-safe reading of the files teeform is given (JSON, YAML, raw bytes).

Every file input goes through here, so a wrong file gives one :class:`~teeform.errors.TeeformError`
line naming the file (and, for structured data, the field), never a traceback, a hang or a memory
blow-up. Public API::

    read_limited(path, limit, *, what) -> bytes            # regular file of at most ``limit`` bytes
    open_regular(path, *, what) -> BinaryIO               # open for streaming; FIFOs/devices/dirs refused
    check_regular_file(path, limit, *, what) -> int       # stat only: a regular file of at most ``limit``
    check_tree(root, *, what) -> int                      # a directory input: depth, name/path length, UTF-8 names
    decode_utf8(data, *, source) -> str                   # strict UTF-8, error names the byte offset
    loads_json(data, *, source, max_depth=64) -> Any      # JSON with depth/number/string checks
    load_json_file(path, limit, *, what, max_depth=64) -> Any
    loads_yaml(text, *, source, max_nodes=100_000, max_depth=64) -> Any   # safe YAML, alias bombs refused
    check_text(value, *, source, field) -> str            # a str that encodes to UTF-8 (no lone surrogates)

Limits and why:

* **Size**: callers pass a documented bound per file kind (e.g. :data:`SMALL_JSON_LIMIT` for
  manifests and configs); the file is read with ``limit + 1`` bytes at most, so ``/dev/zero`` or a
  10 GiB file costs nothing. Directories, FIFOs and devices are refused by ``stat`` before reading.
* **JSON depth**: CPython's ``json`` recurses per nesting level and raises ``RecursionError`` near
  1,000 levels (and code walking the result recurses too); nesting is measured first, in one linear
  pass over the brackets outside strings, and refused past ``max_depth``.
* **Numbers**: integers longer than CPython's 4,300-digit ``int`` conversion limit (CPython 3.11
  ``sys.int_info.default_max_str_digits``; "Integer string conversion length limitation") raise
  ``ValueError`` inside ``json``; teeform refuses integers over 20 digits (no field it reads needs
  more than 64 bits) and the non-standard constants ``NaN``/``Infinity`` (RFC 8259 §6 has none).
* **Strings**: JSON ``\\ud800`` escapes decode to lone surrogates, which later fail to encode; every
  string (keys too) must be encodable as UTF-8 (RFC 8259 §8.2 "Unicode Characters").
* **Duplicate keys**: RFC 8259 §4 only says names "SHOULD be unique" and CPython's ``json`` keeps
  the last one; YAML 1.2.2 §3.2.1.1 says mapping keys "must be unique" but PyYAML keeps the last
  one too. Either way a second ``"PCR0"`` or ``admins:`` would silently win over the first, so both
  loaders refuse a repeated key with one line naming the file and the key (JSON: through
  ``object_pairs_hook``; YAML: per mapping node, with its line). YAML merge keys (``<<: *base``,
  YAML 1.1 merge type) may still be overridden by the mapping's own keys; that is not a duplicate.
* **YAML**: ``yaml.SafeLoader`` only (no object construction); aliases are expanded lazily by
  PyYAML's constructor, so a "billion laughs" document is refused by counting the nodes the
  composed graph expands to (aliases included) before constructing it.
"""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path
from typing import Any, BinaryIO

import yaml

from teeform.errors import TeeformError

#: Bound for small structured files: manifests, stack configs, pack configs, OCI JSON, sealed files.
SMALL_JSON_LIMIT = 16 << 20
#: Default nesting bound for JSON/YAML documents teeform reads.
MAX_DEPTH = 64
#: Longest integer literal accepted in JSON (a uint64 has 20 decimal digits).
MAX_INT_DIGITS = 20

#: A JSON string (the unrolled loop with possessive repeats: constant regex-engine memory, where
#: ``"(?:[^"\\]|\\.)*"`` kept one backtracking entry per character, about 2 GiB for a 16 MiB string),
#: a bracket, or a quote that opens no terminated string (the rest of the text is then invalid JSON).
_STRING_OR_BRACKET = re.compile(rb'"[^"\\]*+(?:\\.[^"\\]*+)*+"|[\[\]{}]|"', re.S)


def read_limited(path: os.PathLike[str] | str, limit: int, *, what: str) -> bytes:
    """Read a regular file of at most ``limit`` bytes.

    Args:
        path: the file.
        limit: the largest accepted size in bytes.
        what: what the file is, for the message (``"manifest"``, ``"stack config"``...).

    Raises:
        TeeformError: missing, not a regular file (directory, device, FIFO), unreadable, or larger
            than ``limit`` (checked on the bytes read, so a file that grows is also caught).
    """
    p = Path(path)
    size = check_regular_file(p, limit, what=what)
    try:
        with open(p, "rb") as fh:
            # read(n) allocates n bytes up front: ask for the size stat gave (+1), not the limit, so a
            # 1 GiB bound does not cost 1 GiB of address space per small file; a file that grew is read on
            data = fh.read(min(size, limit) + 1)
            if len(data) > size:
                data += fh.read(limit + 1 - len(data))
    except OSError as e:
        raise TeeformError(f"{p}: cannot read {what}: {e.strerror or e}") from None
    if len(data) > limit:
        raise TeeformError(f"{p}: {what} is over the {limit}-byte limit")
    return data


def check_regular_file(path: os.PathLike[str] | str, limit: int, *, what: str) -> int:
    """Check, without reading it, that ``path`` is a regular file of at most ``limit`` bytes.

    For inputs that a pipeline reads later (possibly through a library that reads the whole file,
    such as ``sevsnpmeasure.ovmf.OVMF``), so that a directory, ``/dev/zero`` or a huge file is
    refused before any work or output. Messages are those of :func:`read_limited`.

    Returns:
        the file's size in bytes.

    Raises:
        TeeformError: missing, not a regular file, unreadable, or larger than ``limit``.
    """
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise TeeformError(f"{p}: {what} not found") from None
    except OSError as e:
        raise TeeformError(f"{p}: cannot read {what}: {e.strerror or e}") from None
    if not stat.S_ISREG(st.st_mode):
        kind = "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file"
        raise TeeformError(f"{p}: {what} is {kind}", hint=f"give the path of the {what} file")
    if st.st_size > limit:
        raise TeeformError(f"{p}: {what} is {st.st_size} bytes, over the {limit}-byte limit")
    return st.st_size


#: Bounds of :func:`check_tree` (same as the OCI layer reader, ``image_builder.inputs.oci``): Linux
#: NAME_MAX 255 bytes and PATH_MAX 4096 with its NUL (``include/uapi/linux/limits.h``), and 512
#: levels (teeform's own: ``shutil.copytree`` and Python 3.11's ``os.walk`` recurse once per level
#: and CPython's default recursion limit is 1,000 frames, so a 1,100-level tree ends in RecursionError).
TREE_MAX_DEPTH, TREE_MAX_NAME, TREE_MAX_PATH = 512, 255, 4095


def check_tree(root: os.PathLike[str] | str, *, what: str, max_depth: int = TREE_MAX_DEPTH,
               max_name: int = TREE_MAX_NAME, max_path: int = TREE_MAX_PATH) -> int:
    """Walk the directory tree ``root`` iteratively (no recursion, symlinks not followed) and check
    every entry before anything copies or hashes it.

    Checks: nesting at most ``max_depth`` levels, each name at most ``max_name`` bytes and valid
    UTF-8 (the image's file names are recorded as UTF-8 text; POSIX names are bytes), each path
    below ``root`` at most ``max_path`` bytes.

    Returns:
        the number of entries below ``root``.

    Raises:
        TeeformError: ``<root>: <what>: <relative path>: <problem>`` (the path shortened to 80
            characters, non-UTF-8 bytes shown as ``\\xNN``).
    """
    base = os.fsencode(os.fspath(root))
    count = 0

    def shown(rel: bytes) -> str:
        text = rel.decode("utf-8", "backslashreplace")
        return "'" + (text if len(text) <= 80 else text[:77] + "...") + "'"

    stack: list[tuple[bytes, int]] = [(b"", 0)]
    while stack:
        rel_dir, depth = stack.pop()
        try:
            with os.scandir(os.path.join(base, rel_dir) if rel_dir else base) as it:
                entries = [(e.name, e.is_dir(follow_symlinks=False)) for e in it]
        except OSError as e:
            raise TeeformError(f"{root}: {what}: cannot read {shown(rel_dir) if rel_dir else 'the directory'}: "
                               f"{e.strerror or e}") from None
        for name, is_dir in entries:
            rel = os.path.join(rel_dir, name) if rel_dir else name
            count += 1
            if len(name) > max_name:
                raise TeeformError(f"{root}: {what}: {shown(rel)}: file name of {len(name)} bytes (limit {max_name}, "
                                   "Linux NAME_MAX)")
            if len(rel) > max_path:
                raise TeeformError(f"{root}: {what}: {shown(rel)}: path of {len(rel)} bytes (limit {max_path}, "
                                   "Linux PATH_MAX)")
            try:
                name.decode("utf-8")
            except UnicodeDecodeError as e:
                raise TeeformError(f"{root}: {what}: {shown(rel)}: file name is not UTF-8 (invalid byte at offset "
                                   f"{e.start})") from None
            if is_dir:
                if depth + 1 > max_depth:
                    raise TeeformError(f"{root}: {what}: {shown(rel)}: directories nested more than {max_depth} "
                                       "levels deep")
                stack.append((rel, depth + 1))
    return count


def open_regular(path: os.PathLike[str] | str, *, what: str) -> BinaryIO:
    """Open ``path`` for binary reading if (after following symlinks) it is a regular file.

    For inputs streamed rather than read whole (images, disks, layer blobs). The file is opened with
    ``O_NONBLOCK`` so that a FIFO cannot block the ``open`` itself, then checked with ``fstat`` (no
    race with a rename), then switched back to blocking reads; ``/dev/zero``, FIFOs, sockets and
    directories are refused before a byte is read.

    Raises:
        TeeformError: ``<path>: <what> not found``, ``... is a directory``, ``... is not a regular
            file`` or ``cannot read <what>: <reason>``.
    """
    p = Path(path)
    try:
        fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise TeeformError(f"{p}: {what} not found") from None
    except OSError as e:
        raise TeeformError(f"{p}: cannot read {what}: {e.strerror or e}") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = "a directory" if stat.S_ISDIR(mode) else "not a regular file"
            raise TeeformError(f"{p}: {what} is {kind}", hint=f"give the path of the {what} file")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def decode_utf8(data: bytes, *, source: str) -> str:
    """Decode ``data`` as strict UTF-8.

    Raises:
        TeeformError: ``<source>: not UTF-8 text (invalid byte at offset N)``.
    """
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise TeeformError(f"{source}: not UTF-8 text (invalid byte at offset {e.start})") from None


def check_text(value: str, *, source: str, field: str) -> str:
    """Return ``value`` if it encodes to UTF-8 (no lone surrogates), else raise naming ``field``."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        raise TeeformError(f"{source}: {field}: string holds a lone surrogate at index {e.start}") from None
    return value


def json_depth(data: bytes) -> int:
    """Maximum bracket nesting of a JSON text (brackets inside strings ignored); linear time and
    constant memory. The scan stops at a quote that opens no terminated string: without the stop,
    every escaped quote after it would start another scan to the end (quadratic; 20,000 ``\\"``
    took 4 s), and the text is not valid JSON anyway (the parser reports where)."""
    depth = best = 0
    for m in _STRING_OR_BRACKET.finditer(data):
        c = m.group()
        if c == b'"':
            break
        if c in (b"[", b"{"):
            depth += 1
            best = max(best, depth)
        elif c in (b"]", b"}"):
            depth -= 1
    return best


def _walk_strings(value: Any, source: str, path: str) -> None:
    stack: list[tuple[Any, str]] = [(value, path)]
    while stack:
        v, p = stack.pop()
        if isinstance(v, str):
            check_text(v, source=source, field=p or "(top level)")
        elif isinstance(v, dict):
            for k, item in v.items():
                if isinstance(k, str):  # YAML keys may also be numbers, booleans or null
                    check_text(k, source=source, field=f"{p}.{k!r}" if p else repr(k))
                stack.append((item, f"{p}.{k}" if p else str(k)))
        elif isinstance(v, list):
            stack.extend((item, f"{p}[{i}]") for i, item in enumerate(v))


def loads_json(data: bytes | str, *, source: str, max_depth: int = MAX_DEPTH) -> Any:
    """Parse JSON from hostile input.

    Args:
        data: the document (bytes are decoded as strict UTF-8).
        source: file name (or ``file: field``) for messages.
        max_depth: deepest accepted nesting of arrays/objects.

    Raises:
        TeeformError: not UTF-8, nested deeper than ``max_depth``, an integer of more than
            :data:`MAX_INT_DIGITS` digits, ``NaN``/``Infinity``, a lone surrogate, a key repeated in
            one object (``<source>: duplicate key 'k' in a JSON object``), or invalid JSON (with line
            and column).
    """
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    text = decode_utf8(raw, source=source) if isinstance(data, bytes) else data
    depth = json_depth(raw)
    if depth > max_depth:
        raise TeeformError(f"{source}: JSON nested {depth} levels deep (limit {max_depth})")

    def parse_int(s: str) -> int:
        if len(s.lstrip("-")) > MAX_INT_DIGITS:
            raise TeeformError(f"{source}: JSON integer of {len(s)} digits (limit {MAX_INT_DIGITS})")
        return int(s)

    def parse_constant(s: str) -> Any:
        raise TeeformError(f"{source}: JSON constant {s} is not allowed (RFC 8259 has no NaN/Infinity)")

    def parse_float(s: str) -> float:
        if len(s) > 64:
            raise TeeformError(f"{source}: JSON number of {len(s)} characters (limit 64)")
        return float(s)

    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        obj = dict(pairs)
        if len(obj) != len(pairs):
            seen: set[str] = set()
            for k, _ in pairs:
                if k in seen:
                    raise TeeformError(f"{source}: duplicate key {k!r} in a JSON object (RFC 8259 §4: names should "
                                       "be unique; which one wins is unspecified)")
                seen.add(k)
        return obj

    try:
        value = json.loads(text, parse_int=parse_int, parse_constant=parse_constant, parse_float=parse_float,
                           object_pairs_hook=no_duplicates)
    except json.JSONDecodeError as e:
        raise TeeformError(f"{source}: not valid JSON: {e.msg} (line {e.lineno}, column {e.colno})") from None
    except RecursionError:  # defence in depth: json_depth should have caught it
        raise TeeformError(f"{source}: JSON nested too deeply") from None
    _walk_strings(value, source, "")
    return value


def load_json_file(path: os.PathLike[str] | str, limit: int = SMALL_JSON_LIMIT, *, what: str,
                   max_depth: int = MAX_DEPTH) -> Any:
    """:func:`read_limited` then :func:`loads_json`; errors name the file."""
    return loads_json(read_limited(path, limit, what=what), source=str(path), max_depth=max_depth)


_YAML_MERGE_TAG = "tag:yaml.org,2002:merge"


class _CountingLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate mapping keys; :func:`loads_yaml` inspects the composed graph
    before constructing it. ``source`` is set by :func:`loads_yaml` for messages."""

    source = "<yaml>"

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        """:meth:`yaml.SafeLoader.construct_mapping`, after checking the mapping's own keys are unique
        (YAML 1.2.2 §3.2.1.1). Keys from a merge (``<<``) are not the mapping's own, so an explicit
        key overriding a merged one is allowed, as the merge type specifies."""
        if isinstance(node, yaml.MappingNode):
            seen: set[Any] = set()
            for key_node, _ in node.value:
                if key_node.tag == _YAML_MERGE_TAG:
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    dup = key in seen
                    seen.add(key)
                except TypeError:  # unhashable key: PyYAML's constructor reports it
                    continue
                if dup:
                    raise TeeformError(f"{self.source}: duplicate key {key!r} (line {key_node.start_mark.line + 1}; "
                                       "YAML mapping keys must be unique)")
        return super().construct_mapping(node, deep=deep)


def _expanded_size(root: yaml.Node, max_nodes: int, max_depth: int, source: str) -> None:
    sizes: dict[int, int] = {}

    def size(node: yaml.Node, depth: int) -> int:
        if depth > max_depth:
            raise TeeformError(f"{source}: YAML nested more than {max_depth} levels deep")
        key = id(node)
        if key in sizes:
            return sizes[key]
        sizes[key] = max_nodes + 1  # a cycle counts as too large
        total = 1
        if isinstance(node, yaml.SequenceNode):
            for child in node.value:
                total += size(child, depth + 1)
                if total > max_nodes:
                    break
        elif isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                total += size(k, depth + 1) + size(v, depth + 1)
                if total > max_nodes:
                    break
        sizes[key] = total
        return total

    if size(root, 0) > max_nodes:
        raise TeeformError(f"{source}: YAML expands to more than {max_nodes} nodes (alias bomb?)")


def loads_yaml(text: str, *, source: str, max_nodes: int = 100_000, max_depth: int = MAX_DEPTH) -> Any:
    """Parse one YAML document safely (``yaml.SafeLoader``: plain data only).

    Raises:
        TeeformError: invalid YAML (with line/column), more than ``max_nodes`` nodes once aliases
            are expanded (a "billion laughs" document), nesting deeper than ``max_depth``, several
            documents, a key repeated in one mapping (``<source>: duplicate key 'k' (line N; ...)``),
            or strings with lone surrogates.
    """
    try:
        loader = _CountingLoader(text)
        loader.source = source
    except yaml.YAMLError as e:  # the reader refuses control characters up front
        raise TeeformError(f"{source}: not valid YAML: {str(e).splitlines()[-1]}") from None
    try:
        try:
            node = loader.get_single_node()
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
            problem = getattr(e, "problem", None) or str(e).splitlines()[0]
            raise TeeformError(f"{source}: not valid YAML: {problem}{where}") from None
        if node is None:
            return None
        _expanded_size(node, max_nodes, max_depth, source)
        try:
            value = loader.construct_document(node)
        except yaml.YAMLError as e:
            raise TeeformError(f"{source}: not valid YAML: {str(e).splitlines()[0]}") from None
        except RecursionError:
            raise TeeformError(f"{source}: YAML nested too deeply") from None
    finally:
        loader.dispose()
    _walk_strings(value, source, "")
    return value


def require_type(value: Any, expected: type | tuple[type, ...], *, source: str, field: str,
                 describe: str | None = None) -> Any:
    """Return ``value`` if it is an instance of ``expected`` (``bool`` is not an ``int`` here).

    Raises:
        TeeformError: ``<source>: <field>: expected <describe>, got <type name>``.
    """
    types = expected if isinstance(expected, tuple) else (expected,)
    ok = isinstance(value, types) and not (isinstance(value, bool) and bool not in types)
    if not ok:
        names = describe or " or ".join(_TYPE_NAMES.get(t, t.__name__) for t in types)
        raise TeeformError(f"{source}: {field}: expected {names}, got {_TYPE_NAMES.get(type(value), type(value).__name__)}")
    return value


_TYPE_NAMES: dict[type, str] = {dict: "a mapping", list: "a list", str: "a string", int: "an integer",
                                bool: "true/false", float: "a number", type(None): "nothing (null)"}

__all__: list[str] = ["SMALL_JSON_LIMIT", "MAX_DEPTH", "MAX_INT_DIGITS", "read_limited", "open_regular", "check_regular_file", "check_tree", "TREE_MAX_DEPTH",
                      "TREE_MAX_NAME", "TREE_MAX_PATH", "decode_utf8",
                      "check_text", "json_depth", "loads_json", "load_json_file", "loads_yaml", "require_type"]
