"""The target plug-in API: clouds, TEE types, typed settings, strict field readers.

A target plug-in (one per supported (cloud, TEE type) pair, see :mod:`teeform.targets`) says:

* which stack-config keys a target of its pair may carry besides the common ones (``name``,
  ``cloud``, ``region``, ``tee``, ``manifests``), and parses them into its own frozen settings
  dataclass (:meth:`TargetPlugin.parse_settings`); a key it does not declare is an error naming the
  field (``teeform:targets[1].enclave: not a setting of azure/sev-snp targets``);
* which manifest kinds it accepts (:attr:`TargetPlugin.manifest_kinds`);
* which measurement sets its key gate releases to (:meth:`TargetPlugin.key_release`, the
  cloud-neutral model of :mod:`teeform.keyrelease`), and in plain words what that gate pins
  (:attr:`TargetPlugin.gate`);
* which Pulumi builder creates its resources (:attr:`TargetPlugin.builder`, a lazily imported
  ``"module:function"`` string, so loading a stack never imports a cloud SDK) and the stack outputs
  that builder exports (:attr:`TargetPlugin.outputs`).

The field readers below refuse every type mismatch instead of coercing (``admins: "arn:..."`` is not
split into characters, ``name: {a: 1}`` is not turned into ``"{'a': 1}"``), and name the file and the
field in one line. The settings several clouds share are parsed here once: CIDRs (:func:`read_cidr`)
and ``network.ingress`` rules (:func:`read_ingress`, the allowed keys a parameter). An error raised
while parsing a value by code that does not know the stack file is re-anchored on it by
:func:`reanchor`.
"""

from __future__ import annotations

import enum
import ipaddress
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from teeform.errors import TeeformError

if TYPE_CHECKING:
    from teeform.keyrelease import KeyReleasePolicy
    from teeform.manifest import Manifest


class Cloud(enum.StrEnum):
    """Clouds teeform targets."""

    AWS = "aws"
    AZURE = "azure"
    GCP = "gcp"
    ALICLOUD = "alicloud"


class TeeType(enum.StrEnum):
    """TEE technologies."""

    NITRO_ENCLAVE = "nitro-enclave"
    SEV_SNP = "sev-snp"
    TDX = "tdx"
    NITRO_TPM = "nitro-tpm"
    CONFIDENTIAL_SPACE = "confidential-space"

    @property
    def manifest_kind(self) -> str:
        """The manifest kind this TEE boots (``eif`` for Nitro Enclaves, ``oci`` for Confidential Space,
        ``vm-image`` otherwise)."""
        if self is TeeType.CONFIDENTIAL_SPACE:
            return "oci"
        return "eif" if self is TeeType.NITRO_ENCLAVE else "vm-image"


# ----------------------------------------------------------------------------- strict field readers


def fail(message: str, source: str, fld: str, hint: str | None = None) -> TeeformError:
    """A :class:`TeeformError` naming ``source`` (the stack file) and ``fld`` (``teeform:targets[0].key``)."""
    return TeeformError(message, path=source, field=fld, hint=hint)


def reanchor(exc: TeeformError, source: os.PathLike[str] | str, fld: str | None = None, *,
             hint: str | None = None) -> TeeformError:
    """``exc`` as an error of the stack file ``source`` at ``fld`` (None: the file as a whole).

    For an error raised, while one settings value was parsed, by code that does not know the stack
    file: a check of the value (``check_lockout``, ``check_authority``, ``TrusteeOptions``), a
    :mod:`teeform.safeload` reader whose messages start with the name it was given (``"<source>: not
    valid YAML: ..."``), or the reader of a file the value names (a public key file). What ``exc``
    already says about ``source`` and ``fld`` is dropped (never ``f.yaml: x: f.yaml: x: ...``);
    ``exc``'s own field is replaced by ``fld``, but the path and field of *another* file it names stay
    in the message (``f.yaml: teeform:trustedManifestKeys[0]: keys/a.pub: public key not found``).

    Args:
        exc: the error to re-anchor.
        source: the stack (or project) file.
        fld: the field of the value being parsed (``teeform:targets[0].key.admins``).
        hint: the hint to give when ``exc`` has none.

    Returns:
        The new error (raise it ``from None``).
    """
    src = os.fspath(source)
    text = exc.render() if exc.path else exc.message
    for prefix in ((f"{src}: {fld}: ",) if fld else ()) + (f"{src}: ",):
        if text.startswith(prefix):
            text = text[len(prefix):]
            break
    return TeeformError(text, path=src, field=fld, hint=exc.hint or hint)


def _kind(v: Any) -> str:
    if isinstance(v, bool):
        return f"true/false ({v!r})"
    if isinstance(v, Mapping):
        return "a mapping"
    if isinstance(v, (list, tuple)):
        return "a list"
    if v is None:
        return "nothing (null)"
    if isinstance(v, str):
        return f"a string ({v!r})" if len(v) <= 40 else "a string"
    if isinstance(v, int):
        return f"an integer ({v})"
    return f"{type(v).__name__} ({v!r})"


def read_str(v: Any, source: str, fld: str, *, allow_empty: bool = False) -> str:
    """A string (never coerced from a number, list or mapping)."""
    if not isinstance(v, str):
        raise fail(f"must be a string, got {_kind(v)}", source, fld)
    if not allow_empty and not v.strip():
        raise fail("must not be empty", source, fld)
    return v


def read_opt_str(v: Any, source: str, fld: str) -> str | None:
    """A non-empty string, or None when absent/null."""
    return None if v is None else read_str(v, source, fld)


def read_bool(v: Any, source: str, fld: str) -> bool:
    """``true``/``false`` (YAML booleans, or the strings Pulumi's CLI stores for them)."""
    if isinstance(v, bool):
        return v
    if isinstance(v, str) and v.lower() in ("true", "false"):
        return v.lower() == "true"
    raise fail(f"must be true or false, got {_kind(v)}", source, fld)


def read_int(v: Any, source: str, fld: str, lo: int, hi: int) -> int:
    """An integer in ``lo..hi`` (a decimal string is accepted, as Pulumi stores scalars as strings)."""
    if isinstance(v, bool) or not isinstance(v, (int, str)):
        raise fail(f"must be an integer, got {_kind(v)}", source, fld)
    if isinstance(v, str):
        s = v.strip()
        if not (s.isascii() and s.isdigit()) or len(s) > 12:
            raise fail(f"must be an integer, got {_kind(v)}", source, fld)
        v = int(s)
    if not lo <= v <= hi:
        raise fail(f"must be between {lo} and {hi}, got {v}", source, fld)
    return v


def read_map(v: Any, source: str, fld: str, allowed: set[str] | frozenset[str]) -> Mapping[str, Any]:
    """A mapping whose keys are all strings in ``allowed`` (None/absent = empty)."""
    if v is None:
        return {}
    if not isinstance(v, Mapping):
        raise fail(f"must be a mapping, got {_kind(v)}", source, fld)
    bad_keys = [k for k in v if not isinstance(k, str)]
    if bad_keys:
        raise fail(f"keys must be strings, got {bad_keys[0]!r}", source, fld)
    unknown = set(v) - set(allowed)
    if unknown:
        raise fail(f"unknown key(s) {sorted(unknown)}; allowed: {sorted(allowed)}", source, fld)
    return v


def read_list(v: Any, source: str, fld: str, *, non_empty: bool = False) -> list[Any]:
    """A list (None/absent = empty unless ``non_empty``); a string or mapping is refused, never split."""
    if v is None:
        v = []
    if not isinstance(v, list):
        raise fail(f"must be a list, got {_kind(v)}", source, fld)
    if non_empty and not v:
        raise fail("must be a non-empty list", source, fld)
    return v


def read_str_list(v: Any, source: str, fld: str, *, non_empty: bool = False) -> tuple[str, ...]:
    """A list of non-empty strings; each bad item is named (``...admins[1]``)."""
    items = read_list(v, source, fld, non_empty=non_empty)
    return tuple(read_str(x, source, f"{fld}[{i}]") for i, x in enumerate(items))


def read_cidr(v: Any, source: str, fld: str) -> str:
    """An IPv4 or IPv6 CIDR (host bits may be set: ``10.0.0.1/8`` is accepted), kept as written.

    Raises:
        TeeformError: not a string, or ``must be an IPv4 or IPv6 CIDR, got '<value>'``, naming ``fld``.
    """
    s = read_str(v, source, fld)
    try:
        ipaddress.ip_network(s, strict=False)
    except ValueError:
        raise fail(f"must be an IPv4 or IPv6 CIDR, got {s!r}", source, fld) from None
    return s


@dataclass(frozen=True)
class IngressRule:
    """Allow TCP ``port`` from ``cidr`` (IPv4 or IPv6 CIDR); ``description`` is empty unless given."""

    cidr: str
    port: int
    description: str = ""


#: The keys of one ``network.ingress`` rule (a cloud without rule descriptions passes ``{"cidr", "port"}``).
INGRESS_KEYS = frozenset({"cidr", "port", "description"})


def read_ingress(v: Any, source: str, fld: str, *, keys: set[str] | frozenset[str] = INGRESS_KEYS,
                 ) -> tuple[IngressRule, ...]:
    """``network.ingress`` (``fld``): a list (None/absent = none) of ``{cidr, port[, description]}``.

    Args:
        v: the ``ingress`` value.
        source: the stack file.
        fld: ``teeform:targets[0].network.ingress``.
        keys: the keys a rule may have (``cidr`` and ``port`` are required); default :data:`INGRESS_KEYS`.

    Raises:
        TeeformError: naming ``fld`` (not a list) or ``fld[i]`` (not a mapping, an unknown key, ``needs
            both 'cidr' and 'port'``) or ``fld[i].cidr`` / ``.port`` (1..65535) / ``.description`` (a string,
            may be empty).
    """
    rules = []
    for i, r in enumerate(read_list(v, source, fld)):
        rf = f"{fld}[{i}]"
        r = read_map(r, source, rf, keys)
        if "cidr" not in r or "port" not in r:
            raise fail("needs both 'cidr' and 'port'", source, rf)
        rules.append(IngressRule(
            read_cidr(r["cidr"], source, f"{rf}.cidr"), read_int(r["port"], source, f"{rf}.port", 1, 65535),
            read_str(r.get("description", ""), source, f"{rf}.description", allow_empty=True),
        ))
    return tuple(rules)


# ----------------------------------------------------------------------------- plug-in API


@dataclass(frozen=True)
class TargetSettings:
    """Base of every plug-in's typed settings (the target keys beyond the common ones)."""


@dataclass(frozen=True)
class OutputSpec:
    """One stack output a plug-in's builder exports: its name and what it holds."""

    name: str
    description: str


class TargetPlugin:
    """What a (cloud, TEE type) pair contributes. Subclasses set the class attributes and implement
    :meth:`parse_settings`; :meth:`key_release` defaults to "no key gate"."""

    cloud: ClassVar[Cloud]
    tee: ClassVar[TeeType]
    #: Manifest kinds a target of this pair accepts (``{"eif"}`` or ``{"vm-image"}``).
    manifest_kinds: ClassVar[frozenset[str]]
    #: Stack-config keys (camelCase) of this pair's settings.
    settings_keys: ClassVar[frozenset[str]] = frozenset()
    #: ``"module:function"`` of the Pulumi builder (``components/...``), imported only when building.
    builder: ClassVar[str]
    #: Outputs the builder exports, in order (without ``measurements``/``manifest_sha256``).
    outputs: ClassVar[tuple[OutputSpec, ...]] = ()
    #: What the key gate of this pair pins, in one sentence (shown in docs and ``teeform preview``).
    gate: ClassVar[str]

    @property
    def pair(self) -> str:
        """``aws/nitro-enclave``."""
        return f"{self.cloud.value}/{self.tee.value}"

    def parse_settings(self, raw: Mapping[str, Any], source: str, fld: str) -> TargetSettings:
        """Parse this pair's keys of target ``raw`` (already checked to be among :attr:`settings_keys`).

        Raises:
            TeeformError: naming ``source`` and the field under ``fld``.
        """
        raise NotImplementedError

    def key_release(self, target_name: str, settings: TargetSettings,
                    manifests: Sequence[tuple[str, Manifest]]) -> KeyReleasePolicy | None:
        """The measurement sets this target's key may be released to (None: no key gate yet).

        Args:
            target_name: the target's name.
            settings: what :meth:`parse_settings` returned.
            manifests: ``(export key, manifest)`` of each allowed manifest, first = deployed.
        """
        return None


__all__ = ["Cloud", "TeeType", "TargetSettings", "TargetPlugin", "OutputSpec", "fail", "reanchor", "read_str",
           "read_opt_str", "read_bool", "read_int", "read_map", "read_list", "read_str_list", "read_cidr", "IngressRule",
           "INGRESS_KEYS", "read_ingress"]
