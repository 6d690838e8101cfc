"""Check hostile CBOR bytes before ``cbor2`` decodes them: one linear pass, no allocation from lengths.

:func:`check_cbor` walks the encoding (RFC 8949 §3, the well-formedness algorithm of Appendix C)
with an explicit stack, so it never recurses and never builds a value. It refuses, naming the byte
offset:

* **not well-formed** (RFC 8949 §3, App. C): reserved additional information 28-30; indefinite
  length on an integer or tag; a two-byte simple value below 32 (§3.3); a ``break`` (0xff) outside an
  indefinite-length array or map, or after a map key; an indefinite-length string whose chunks are
  not definite strings of the same major type (§3.2.3).
* **truncated**: a declared length or element count larger than the bytes that remain (each element
  takes at least one byte). ``cbor2`` 6.3 reads declared lengths in 64 KiB chunks and caps nesting at
  400 (checked: ``tests/test_hostile_cli.py::test_cbor2_declared_lengths_are_bounded_first``), but
  the check here does not rely on that: nothing is allocated from a declared length.
* **invalid text** (§3.1 major type 3 is UTF-8; §5.3.1): a text string that is not strict UTF-8.
* **nesting** deeper than ``max_depth`` arrays/maps.
* **tags** (§3.4): every semantic tag except ``allow_tag`` on the outermost item (COSE_Sign1's tag 18,
  RFC 9052 §4.2). ``cbor2`` turns tags into Python objects (datetimes that overflow past year 9999,
  bignums, decimal fractions with huge exponents, regular expressions, shared references that build
  cyclic objects, sets); neither the COSE_Sign1 envelope nor the Nitro payload uses any.
* **map keys** that are not integers or text strings (COSE header labels are ``int / tstr``,
  RFC 9052 §3; the Nitro payload has text keys and the ``pcrs`` map integer keys), and **duplicate
  keys** (§5.6: a map with duplicate keys is not valid, and decoders disagree on which one wins).
* **trailing bytes** after the one item.
"""

from __future__ import annotations

from teeform.errors import TeeformError

#: Default nesting bound: the attestation document is at most 3 levels deep (COSE_Sign1 array ->
#: payload map -> ``pcrs`` map / ``cabundle`` array); headers are flat.
MAX_DEPTH = 16

_MAJOR = ("unsigned integer", "negative integer", "byte string", "text string", "array", "map", "tag",
          "simple value or float")


class _Frame:
    __slots__ = ("remaining", "is_map", "keys", "expect_key", "start")

    def __init__(self, remaining: int | None, is_map: bool, start: int) -> None:
        self.remaining = remaining  # items left (a map counts keys and values), None = indefinite
        self.is_map = is_map
        self.keys: set[tuple[int, object]] = set()
        self.expect_key = is_map
        self.start = start


def check_cbor(data: bytes, *, source: str, what: str, fld: str | None = None, max_depth: int = MAX_DEPTH,
               allow_tag: int | None = None, tag_name: str = "COSE_Sign1",
               truncated_hint: str | None = "the file was probably cut off while copying; fetch it again") -> None:
    """Raise unless ``data`` is exactly one well-formed, tag-free CBOR item (module docstring).

    Args:
        data: the encoded item.
        source: file name, for messages (``TeeformError.path``).
        what: what the bytes are (``"attestation document"``, ``"payload"``), for messages.
        fld: the field the bytes came from (``TeeformError.field``).
        max_depth: deepest accepted nesting of arrays and maps.
        allow_tag: a tag number accepted on the outermost item only (None: no tag at all).
        tag_name: what ``allow_tag`` marks, for the message.
        truncated_hint: the hint of the "truncated" error.

    Raises:
        TeeformError: ``<source>: <fld>: <what> ...`` naming the problem and its byte offset.
    """
    n = len(data)

    def fail(msg: str, at: int) -> TeeformError:  # a refusal of well-formed CBOR (tags, keys, depth)
        return TeeformError(f"{what}: {msg} (byte offset {at})", path=source, field=fld)

    def invalid(msg: str, at: int) -> TeeformError:  # not well-formed or not valid (RFC 8949 §1.2, §5.3)
        return TeeformError(f"{what} is not valid CBOR: {msg} (byte offset {at})", path=source, field=fld)

    def truncated(at: int) -> TeeformError:
        return TeeformError(f"{what} is truncated ({n} bytes; the CBOR ends early)", path=source, field=fld,
                            hint=truncated_hint)

    def head(pos: int) -> tuple[int, int, int | None, int]:
        """(major type, additional info, argument or None for indefinite, position after the head)."""
        if pos >= n:
            raise truncated(pos)
        ib = data[pos]
        mt, ai = ib >> 5, ib & 0x1F
        if ai < 24:
            return mt, ai, ai, pos + 1
        if ai <= 27:
            size = 1 << (ai - 24)
            if pos + 1 + size > n:
                raise truncated(pos)
            return mt, ai, int.from_bytes(data[pos + 1:pos + 1 + size], "big"), pos + 1 + size
        if ai < 31:
            raise invalid(f"reserved additional information {ai} in initial byte 0x{ib:02x} (not well-formed, "
                       "RFC 8949 §3)", pos)
        if mt in (0, 1, 6):
            raise invalid(f"indefinite length on a {_MAJOR[mt]} (not well-formed, RFC 8949 §3.2.4)", pos)
        return mt, ai, None, pos + 1

    def string_end(mt: int, arg: int | None, pos: int, start: int) -> tuple[int, bytes | None]:
        """Skip a byte/text string whose head ended at ``pos``; return (end, content if text or wanted)."""
        if arg is not None:
            if arg > n - pos:
                raise truncated(start)
            return pos + arg, data[pos:pos + arg]
        chunks: list[bytes] = []
        while True:
            if pos >= n:
                raise truncated(pos)
            if data[pos] == 0xFF:
                return pos + 1, b"".join(chunks)
            cmt, _cai, carg, cpos = head(pos)
            if cmt != mt or carg is None:
                raise invalid(f"indefinite-length {_MAJOR[mt]} holds a chunk that is not a definite {_MAJOR[mt]} "
                           "(not well-formed, RFC 8949 §3.2.3)", pos)
            if carg > n - cpos:
                raise truncated(pos)
            chunks.append(data[cpos:cpos + carg])
            pos = cpos + carg

    stack: list[_Frame] = []
    pos = 0
    if n == 0:
        raise TeeformError(f"{what} is empty", path=source, field=fld)
    while True:
        start = pos
        if pos < n and data[pos] == 0xFF:  # break
            top = stack[-1] if stack else None
            if top is None or top.remaining is not None:
                raise invalid("unexpected break byte 0xff (not well-formed, RFC 8949 §3.2.1)", pos)
            if top.is_map and not top.expect_key:
                raise invalid("indefinite-length map ends after a key, without its value", pos)
            stack.pop()
            pos += 1
            key: tuple[int, object] | None = None
            kind = "map" if top.is_map else "array"
        else:
            mt, ai, arg, pos = head(pos)
            key = None
            kind = _MAJOR[mt]
            if mt in (0, 1):
                assert arg is not None
                key = (0, arg if mt == 0 else -1 - arg)
            elif mt in (2, 3):
                pos, content = string_end(mt, arg, pos, start)
                if mt == 3:
                    try:
                        key = (1, (content or b"").decode("utf-8"))
                    except UnicodeDecodeError as exc:
                        raise invalid(f"text string is not valid UTF-8 (RFC 8949 §3.1; invalid byte {exc.start} "
                                   "of the string)", start) from None
            elif mt in (4, 5):
                if arg is not None and (arg if mt == 4 else 2 * arg) > n - pos:
                    raise fail(f"{kind} declares {arg} {'elements' if mt == 4 else 'pairs'} but only {n - pos} "
                               "byte(s) remain (truncated)", start)
                if len(stack) >= max_depth:
                    raise fail(f"CBOR nested more than {max_depth} arrays/maps deep", start)
                count = None if arg is None else (arg if mt == 4 else 2 * arg)
                if stack and stack[-1].is_map and stack[-1].expect_key:
                    raise fail(f"map key is a {kind}; only integer and text keys are accepted (COSE labels are "
                               "int / tstr, RFC 9052 §3)", start)
                stack.append(_Frame(count, mt == 5, start))
                if count != 0:
                    continue
                stack.pop()  # an empty container is complete at once
            elif mt == 6:
                assert arg is not None
                if start == 0 and allow_tag is not None and arg != allow_tag:
                    raise fail(f"CBOR tag {arg} is not {tag_name} (tag {allow_tag})", start)
                if not (start == 0 and allow_tag is not None):
                    allowed = f" (only tag {allow_tag} on the outermost item)" if allow_tag is not None else ""
                    raise fail(f"CBOR tag {arg} is not accepted here{allowed}; tags are not used by COSE_Sign1 "
                               "attestation documents (RFC 8949 §3.4)", start)
                continue  # the tag content is the item
            else:  # major type 7
                if ai == 24 and arg is not None and arg < 32:
                    raise invalid(f"two-byte simple value {arg} below 32 (not well-formed, RFC 8949 §3.3)", start)
                if arg is None:
                    raise invalid("unexpected break byte 0xff (not well-formed, RFC 8949 §3.2.1)", start)
        # one item (starting at ``start``) is complete; account for it in the enclosing containers
        while True:
            if not stack:
                if pos != n:
                    raise fail(f"{n - pos} trailing byte(s) after the CBOR item", pos)
                return
            top = stack[-1]
            if top.is_map and top.expect_key:
                if key is None:
                    raise fail(f"map key is a {kind}; only integer and text keys are accepted (COSE labels are "
                               "int / tstr, RFC 9052 §3)", start)
                if key in top.keys:
                    raise invalid(f"duplicate map key {key[1]!r} (a map with duplicate keys is not valid CBOR, "
                               "RFC 8949 §5.6)", start)
                top.keys.add(key)
            if top.is_map:
                top.expect_key = not top.expect_key
            if top.remaining is None:
                break
            top.remaining -= 1
            if top.remaining:
                break
            stack.pop()
            key, kind, start = None, "map" if top.is_map else "array", top.start
