"""Reading IAM/KMS policy documents the way IAM evaluates them (stdlib only).

Grammar facts used here (IAM JSON policy element reference):

* ``Statement`` is one object or a list; ``Action``/``NotAction``/values may be a string or a list.
* Action names are case-insensitive and may use ``*`` and ``?`` wildcards (``kms:*``, ``kms:Generate*``, ``*``).
* ``Principal`` ``"*"``, ``{"AWS": "*"}`` (or a list holding ``"*"``) means everyone; ``NotPrincipal``
  with ``Allow`` means everyone but the listed principals.
* Condition keys are case-insensitive; keys in one operator block are ANDed, the values of one key ORed.
* An operator with the ``IfExists`` suffix is true when the key is absent.

Nitro condition keys (eif-nitro.md §5.1): ``kms:RecipientAttestation:ImageSha384`` and
``kms:RecipientAttestation:PCR<n>``, 96 hex digits (SHA-384), compared with ``StringEqualsIgnoreCase``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

ATTESTATION_PREFIX = "kms:recipientattestation:"
ATTESTATION_OPERATOR = "StringEqualsIgnoreCase"
HEX96 = re.compile(r"^[0-9a-fA-F]{96}$")
ZERO96 = "0" * 96


def as_list(value: Any) -> list[Any]:
    """``value`` as a list (a string or scalar becomes a one-element list; None becomes [])."""
    if value is None:
        return []
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        return list(value)  # lists, tuples and pulumi_policy's unknown-checking list proxy
    return [value]


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for k, _ in pairs:
            if k in seen:
                raise _DuplicateKey(k)
            seen.add(k)
    return obj


def parse_policy(text: Any) -> tuple[dict[str, Any] | None, str | None]:
    """Parse a policy document (a JSON string, or an already-decoded dict).

    A key repeated in one object (two ``"Condition"`` blocks in a statement, two
    ``kms:RecipientAttestation:PCR0`` entries in an operator block) makes the document unreadable:
    CPython's ``json`` keeps the last one, and nothing guarantees IAM reads the same one, so a
    check over the last could pass a policy that AWS enforces differently.

    Returns:
        (document, None) or (None, reason it cannot be read).
    """
    if isinstance(text, Mapping):
        return dict(text), None
    if not isinstance(text, str) or not text.strip():
        return None, "is empty"
    try:
        doc = json.loads(text, object_pairs_hook=_no_duplicate_keys)
    except _DuplicateKey as exc:
        return None, (f"has the key {exc.key!r} twice in one JSON object (RFC 8259 §4 leaves the meaning open: "
                      "this pack would read one, and IAM may read the other)")
    except json.JSONDecodeError as exc:
        return None, f"is not valid JSON ({exc.msg} at line {exc.lineno})"
    except (ValueError, RecursionError) as exc:  # integers over CPython's digit limit, absurd nesting
        return None, f"is not a usable JSON document ({type(exc).__name__})"
    if not isinstance(doc, dict):
        return None, "is not a JSON object"
    return doc, None


def statements(doc: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    """``(label, statement)`` pairs; the label is the ``Sid`` or ``#<index>``."""
    out = []
    for i, s in enumerate(as_list(doc.get("Statement"))):
        if isinstance(s, Mapping):
            out.append((str(s.get("Sid") or f"#{i}"), s))
    return out


def _pattern(p: str) -> re.Pattern[str]:
    return re.compile("^" + re.escape(p).replace(r"\*", ".*").replace(r"\?", ".") + "$", re.IGNORECASE)


def action_matches(pattern: str, action: str) -> bool:
    """Whether IAM action ``pattern`` (wildcards ``*``/``?``, case-insensitive) covers ``action``."""
    return bool(_pattern(str(pattern)).match(action))


def granted_actions(stmt: Mapping[str, Any], candidates: list[str]) -> list[str]:
    """The ``candidates`` an ``Allow`` statement grants (via ``Action`` patterns, or everything not
    matched by ``NotAction``). Deny statements grant nothing."""
    if str(stmt.get("Effect", "")).lower() != "allow":
        return []
    if "NotAction" in stmt:
        excluded = [str(p) for p in as_list(stmt.get("NotAction"))]
        return [a for a in candidates if not any(action_matches(p, a) for p in excluded)]
    patterns = [str(p) for p in as_list(stmt.get("Action"))]
    return [a for a in candidates if any(action_matches(p, a) for p in patterns)]


def wildcard_principal(stmt: Mapping[str, Any]) -> bool:
    """True for ``Principal: "*"``, ``{"AWS": "*"}`` (also inside a list) or any ``NotPrincipal``."""
    if "NotPrincipal" in stmt:
        return True
    p = stmt.get("Principal")
    if p == "*":
        return True
    if isinstance(p, Mapping):
        return any(v == "*" for vals in p.values() for v in as_list(vals))
    return False


def condition_entries(stmt: Mapping[str, Any]) -> Iterator[tuple[str, str, list[Any]]]:
    """Every ``(operator, condition key, values)`` of the statement's ``Condition``."""
    cond = stmt.get("Condition")
    if not isinstance(cond, Mapping):
        return
    for op, block in cond.items():
        if isinstance(block, Mapping):
            for key, values in block.items():
                yield str(op), str(key), as_list(values)


def attestation_entries(stmt: Mapping[str, Any]) -> list[tuple[str, str, list[Any]]]:
    """The ``kms:RecipientAttestation:*`` entries of the statement (any operator)."""
    return [(op, k, v) for op, k, v in condition_entries(stmt) if k.lower().startswith(ATTESTATION_PREFIX)]


def measurement_name(condition_key: str) -> str:
    """``kms:RecipientAttestation:pcr0`` -> ``PCR0``; ``...:imagesha384`` -> ``ImageSha384``."""
    suffix = condition_key.split(":", 2)[2] if condition_key.count(":") >= 2 else condition_key
    if suffix.lower() == "imagesha384":
        return "ImageSha384"
    if suffix.lower().startswith("pcr"):
        return "PCR" + suffix[3:]
    return suffix


def short(value: Any, n: int = 16) -> str:
    """First ``n`` characters of a long value, for messages."""
    s = str(value)
    return s if len(s) <= n else s[:n] + "..."
