"""Azure physical names: deterministic, within each service's length and alphabet, unique per stack/target.

Rules (Azure "Naming rules and restrictions for Azure resources"): storage accounts 3-24 lowercase
letters and digits, globally unique; key vaults 3-24 letters, digits and hyphens, starting with a
letter, globally unique; compute galleries letters, digits, ``.`` and ``_`` (no hyphen); most other
resources up to 64-80 characters of letters, digits, ``-``, ``_``, ``.``.
"""

from __future__ import annotations

import hashlib
import re


def _digest(parts: list[str]) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def storage_account_name(parts: list[str]) -> str:
    """``tf`` + up to 14 letters/digits of ``parts`` + 8 hex digits of their SHA-256: 3-24 lowercase alnum."""
    stem = re.sub(r"[^a-z0-9]", "", "".join(parts).lower())[:14]
    return f"tf{stem}{_digest(parts)[:8]}"


def vault_name(parts: list[str]) -> str:
    """``tf-`` + up to 12 characters + ``-`` + 7 hex digits: 3-24 of letters, digits, hyphens, no ``--``."""
    stem = re.sub(r"-+", "-", re.sub(r"[^A-Za-z0-9-]", "-", "-".join(parts))).strip("-")[:12].rstrip("-")
    return f"tf-{stem}-{_digest(parts)[:7]}"


def gallery_name(parts: list[str]) -> str:
    """Letters, digits and ``_`` only, at most 80 characters."""
    name = re.sub(r"[^A-Za-z0-9_]", "_", "_".join(parts)).strip("_")
    return name[:71] + "_" + _digest(parts)[:8] if len(name) > 80 else name


def resource_name(parts: list[str], max_len: int = 64) -> str:
    """Letters, digits, ``-``, ``_``, ``.``; an over-long name is cut and suffixed with 8 hex digits."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", "-".join(parts)).strip("-.")
    if len(name) > max_len:
        name = f"{name[: max_len - 9].rstrip('-.')}-{_digest(parts)[:8]}"
    return name


__all__ = ["storage_account_name", "vault_name", "gallery_name", "resource_name"]
