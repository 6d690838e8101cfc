"""Semantic diff of two ``teeform preview --json`` documents (base and head of a pull request).

Pure: two parsed, schema-valid documents in (:func:`load_preview_json` reads and validates a file),
a frozen :class:`PreviewDiff` out, rendered as Markdown for a PR comment
(:meth:`PreviewDiff.render_markdown`), text or JSON. It shows, in this order (the "danger first"
convention of tfcmt and Atlantis, ``shared/reference/gitops-signing-terraform.md`` §1.3):

1. **mandatory violations** of head (new ones marked), and the ones head resolved;
2. the summary line ``Plan: N to add, M to change, K to destroy.`` (Atlantis/tfcmt wording; the
   root ``pulumi:pulumi:Stack`` is not counted);
3. **key-release changes per key**, for every cloud: each key-release resource is parsed by
   :mod:`teeform.keyrelease_readers` into its allowed sets (AWS KMS/IAM policy documents with IAM
   semantics, Nitro Enclaves and NitroTPM keys; the CEL condition of a GCP Workload Identity
   Federation provider and the principal sets of the key's decrypter grants; an Azure Key Vault
   key's decoded secure-key-release policy; a Trustee KBS registration's RVPS reference values), and
   the sets are compared as sets: *allowed sets added / removed*, never JSON strings, with the
   conditions common to all sets (CEL conjuncts, MRTDs) added / removed and what the gate pins
   (our image, or the platform only);
4. **measurement changes per target** with the input that caused each (the deployed manifest of base
   vs head through :func:`teeform.measurements_diff.diff_manifests`), and allowed manifests added or
   removed;
5. **rollover windows** (``until``, days left) that changed, appeared or ran out
   (:mod:`teeform.rollover`);
6. advisory violations, then one collapsible ``<details>`` block per changed resource: inputs
   flattened to paths (JSON held in a string is parsed and flattened too, as ``policy<json>...``);
   user data and cloud-init are decoded (base64, then gzip when the bytes start with ``1f 8b``,
   RFC 1952 §2.3.1) and diffed as scripts (unified diff).

Paths: every string starting with the document's ``projectDir`` is rewritten to ``<project>/...``
before comparing, so two checkouts of the same commit compare equal.

Size: GitHub refuses comment bodies over 65,536 characters (pulumi/actions ``pr.ts``, Atlantis
``SplitComment``; gitops-signing-terraform.md §1.1, §1.3). :meth:`PreviewDiff.render_markdown`
with ``max_chars`` (default 65,000) drops resource detail blocks from the end first, then
truncates, and says so with a pointer to the job summary; the full report is the same call with
``max_chars=None`` (the job summary allows 1 MiB per step, §1.4).
"""

from __future__ import annotations

import base64
import binascii
import difflib
import json
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from teeform.errors import TeeformError
from teeform.keyrelease import MeasurementSet
from teeform.keyrelease_readers import (
    AWS_ATTESTATION_PREFIX,
    AWS_POLICY_TYPES,
    MAX_RELEASE_SETS,  # noqa: F401 - re-exported for callers
    PINS_TEXT,
    READERS,
    Gate,
    aws_statement_sets,
    read_gate,
)
from teeform.manifest import Manifest
from teeform.measurements_diff import ManifestDiff, diff_manifests, short
from teeform.rollover import describe_window
from teeform.safeload import SMALL_JSON_LIMIT, decode_utf8, loads_json, read_limited

#: the marker that identifies teeform's sticky PR comment (teeform/github_comment.py looks for it)
MARKER = "<!-- teeform-preview -->"
#: default cap of the Markdown body: below GitHub's 65,536-character comment limit with margin
MAX_COMMENT_CHARS = 65_000
#: the preview document format and version this module reads (teeform/preview/render.py)
FORMAT = "teeform-preview"
SCHEMA_VERSION = 1
#: largest preview document read (a whole stack's inputs; the CLI refuses bigger files). 64 MiB: one
#: aws/nitro-enclave target previews to about 44 KB (measured with ``teeform preview --json``), so a
#: 100-target stack to about 4.4 MB (docs/hostile-inputs.md; it was 1 GiB, whose parse alone needs GiBs)
PREVIEW_JSON_LIMIT = 4 * SMALL_JSON_LIMIT
#: largest decoded user-data script (after base64 and gzip): EC2 allows 16 KiB of user data, GCE
#: 256 KiB of metadata values, Azure 64 KiB of custom data; a gzip "bomb" is cut here, never inflated
MAX_SCRIPT_BYTES = 1 << 20
#: JSON held in a string is parsed and flattened at most this many levels down (a policy document
#: in a resource input is one level); deeper strings are compared as strings
MAX_EMBEDDED_JSON = 2
STACK_TYPE = "pulumi:pulumi:Stack"
PROJECT_PLACEHOLDER = "<project>"

#: resource types whose ``policy`` input is an IAM/KMS policy document that may release a key
POLICY_DOCUMENT_TYPES = frozenset(AWS_POLICY_TYPES)
#: every resource type whose key-release gate the diff reads (teeform.keyrelease_readers.READERS)
KEY_RELEASE_TYPES = frozenset(READERS)
#: input names that hold instance user data (EC2 launch templates: base64; instances: text)
USER_DATA_KEYS = frozenset({"userData", "userDataBase64", "customData", "user_data", "startupScript"})


# ------------------------------------------------------------------------------------ loading
@lru_cache(maxsize=1)
def _validator() -> Any:
    import jsonschema

    schema = json.loads(resources.files("teeform").joinpath("schema/preview.schema.json").read_text(encoding="utf-8"))
    return jsonschema.Draft202012Validator(schema)


def validate_preview_doc(doc: Any, source: str) -> None:
    """Check ``doc`` against ``teeform/schema/preview.schema.json`` (JSON Schema 2020-12).

    Raises:
        TeeformError: naming ``source`` and the first failing field as a JSON path (``resources[3].urn``).
    """
    if not isinstance(doc, Mapping):
        raise TeeformError("a preview document must be a JSON object (teeform preview --json)", path=source)
    if doc.get("schemaVersion") != SCHEMA_VERSION:
        raise TeeformError(f"schemaVersion must be {SCHEMA_VERSION}, got {doc.get('schemaVersion')!r}",
                           path=source, field="schemaVersion",
                           hint="produce both documents with the same teeform: teeform preview --stack S --json")
    errors = sorted(_validator().iter_errors(doc), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        e = errors[0]
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in e.absolute_path).lstrip(".") or "(top level)"
        raise TeeformError(e.message if len(e.message) < 200 else e.message[:200] + "…", path=source, field=where)


def load_preview_json(path: str | Path) -> dict[str, Any]:
    """Read and validate one ``teeform preview --json`` file (bounded read, strict UTF-8, duplicate
    keys refused: :mod:`teeform.safeload`; then :func:`validate_preview_doc`).

    Raises:
        TeeformError: missing, too large, not JSON, or not a valid preview document (file and field).
    """
    p = Path(path)
    try:
        raw = read_limited(p, PREVIEW_JSON_LIMIT, what="preview document")
    except TeeformError as exc:
        raise TeeformError(exc.message.removeprefix(f"{p}: "), path=p, hint=exc.hint or
                           "write it with: teeform preview --stack S --json > FILE") from None
    doc = loads_json(decode_utf8(raw, source=str(p)), source=str(p))
    validate_preview_doc(doc, str(p))
    for i, r in enumerate(doc["resources"]):  # the release sets are bounded before any diff enumerates them
        if r.get("type") in POLICY_DOCUMENT_TYPES:
            pol = (r.get("inputs") or {}).get("policy")
            try:
                policy_sets(_maybe_json(pol) if isinstance(pol, str) else pol)
            except TeeformError as exc:
                raise TeeformError(exc.message, path=p, field=f"resources[{i}].inputs.policy.{exc.field}") from None
    return dict(doc)


def normalize_paths(v: Any, project_dir: str | None) -> Any:
    """``v`` with ``project_dir`` (and its ``/``-terminated prefix) in strings replaced by ``<project>``."""
    if not project_dir:
        return v
    root = project_dir.rstrip("/")
    if isinstance(v, str):
        return v.replace(root + "/", PROJECT_PLACEHOLDER + "/") if root + "/" in v else (PROJECT_PLACEHOLDER if v == root else v)
    if isinstance(v, Mapping):
        return {k: normalize_paths(x, project_dir) for k, x in v.items()}
    if isinstance(v, list):
        return [normalize_paths(x, project_dir) for x in v]
    return v


# ------------------------------------------------------------------------------- decoding helpers
def decode_script(value: str) -> tuple[str, str] | None:
    """Decode user data: ``(encoding, text)``, encoding ``text`` (a script or cloud-config as is: it starts
    with ``#!``, ``#cloud-config``, a MIME header, ``#include`` or ``<powershell>``; cloud-init "User data
    formats"), ``base64`` (RFC 4648 §4, how EC2 launch templates carry it) or ``base64+gzip`` (gzip magic
    ``1f 8b`` after base64, RFC 1952 §2.3.1). None when the bytes are not UTF-8 text after decoding."""
    s = value.strip()
    if s.startswith(("#!", "#cloud-config", "Content-Type:", "MIME-Version:", "#include", "<powershell>")):
        return "text", value
    try:
        raw = base64.b64decode(s, validate=True)
    except (binascii.Error, ValueError):
        return ("text", value) if "\n" in value else None
    enc = "base64"
    if raw[:2] == b"\x1f\x8b":
        # bounded inflate (a few KiB of gzip can hold GiBs): more than MAX_SCRIPT_BYTES is not shown as a script
        d = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        try:
            raw = d.decompress(raw, MAX_SCRIPT_BYTES + 1)
        except zlib.error:
            return None
        if len(raw) > MAX_SCRIPT_BYTES or d.unconsumed_tail:
            return None
        enc = "base64+gzip"
    if len(raw) > MAX_SCRIPT_BYTES:
        return None
    try:
        return enc, raw.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _maybe_json(s: str) -> Any:
    """``s`` parsed as JSON when it holds an object or array, else None; parsed with
    :func:`teeform.safeload.loads_json` (depth, number and duplicate-key bounds), so hostile JSON in a
    string is compared as a string, never a RecursionError."""
    t = s.lstrip()
    if not t.startswith(("{", "[")):
        return None
    try:
        return loads_json(s, source="<string>")
    except TeeformError:
        return None


def flatten(v: Any, prefix: str = "", _embedded: int = 0) -> dict[str, Any]:
    """Leaves of ``v`` by path (``a.b[0].c``); a string holding a JSON object/array is parsed and its
    leaves get the path suffix ``<json>`` (at most :data:`MAX_EMBEDDED_JSON` strings deep, so the
    recursion is bounded by that many times the JSON depth limit); a list of objects with distinct
    ``Sid`` strings (IAM policy statements) is keyed by Sid
    (``policy<json>.Statement[Sid=EnclaveRelease1].Condition...``)."""
    out: dict[str, Any] = {}
    if isinstance(v, Mapping):
        if not v and prefix:
            out[prefix] = {}
        for k in v:
            out.update(flatten(v[k], f"{prefix}.{k}" if prefix else str(k), _embedded))
    elif isinstance(v, list):
        if not v and prefix:
            out[prefix] = []
        sids = [x.get("Sid") for x in v if isinstance(x, Mapping)]
        if len(sids) == len(v) and all(isinstance(x, str) and x for x in sids) and len(set(sids)) == len(sids):
            for x in v:  # IAM statements: keyed by Sid, so inserting one does not shift the others
                out.update(flatten(x, f"{prefix}[Sid={x['Sid']}]", _embedded))
        else:
            for i, x in enumerate(v):
                out.update(flatten(x, f"{prefix}[{i}]", _embedded))
    elif (isinstance(v, str) and _embedded < MAX_EMBEDDED_JSON and (parsed := _maybe_json(v)) is not None
          and isinstance(parsed, (dict, list))):
        out.update(flatten(parsed, f"{prefix}<json>", _embedded + 1))
    else:
        out[prefix] = v
    return out


def policy_sets(doc: Any) -> list[tuple[MeasurementSet, tuple[str, ...]]]:
    """The measurement sets an IAM/KMS policy document releases to: ``[(set, actions)]``.

    A set is one ``Allow`` statement's ``kms:RecipientAttestation:<name>`` condition values (any
    ``String*`` operator); a key with several values ORs them, so such a statement allows the cross
    product and yields one set per combination. ``manifest_key`` is the statement's ``Sid``.
    Statements without attestation conditions release nothing and are skipped. NitroTPM keys are
    named by the manifest measurement they pin (``NitroTPMPCR4`` -> ``pcr4_sha384``):
    :func:`teeform.keyrelease_readers.aws_statement_sets`.
    """
    return [(MeasurementSet(sid, values), acts) for sid, values, acts in aws_statement_sets(doc)]



# ------------------------------------------------------------------------------------ results
@dataclass(frozen=True)
class ViolationRow:
    """One violation: ``status`` is ``new`` (only in head), ``existing`` (both) or ``resolved`` (only base)."""

    policy: str
    level: str
    message: str
    resource: str
    status: str

    def to_json(self) -> dict[str, str]:
        return {"policy": self.policy, "enforcementLevel": self.level, "message": self.message,
                "resource": self.resource, "status": self.status}


@dataclass(frozen=True)
class ReleaseSet:
    """An allowed measurement set of a key: values, the actions it gates, and which manifest it is."""

    values: tuple[tuple[str, str], ...]
    actions: tuple[str, ...]
    manifest: str

    def describe(self) -> str:
        vals = ", ".join(f"{k}={v if not _is_hex(v) else short(v, 16)}" for k, v in self.values)
        return f"{self.manifest or 'no listed manifest'}: {vals}"

    def to_json(self) -> dict[str, Any]:
        return {"manifest": self.manifest, "measurements": dict(self.values), "actions": list(self.actions)}


@dataclass(frozen=True)
class KeyReleaseChange:
    """The allowed sets of one key-release resource that head adds or removes (``kept``: unchanged count)."""

    resource: str
    added: tuple[ReleaseSet, ...]
    removed: tuple[ReleaseSet, ...]
    kept: int
    #: what the gate pins (``image``, ``platform``, ``identity``; teeform.keyrelease_readers.PINS_TEXT), "" if unknown
    pins: str = ""
    #: how the gate was read (``aws-iam``, ``gcp-wif-condition``, ``gcp-kms-grant``, ``azure-skr``, ``azure-release-role``,
    #: ``trustee-rvps``)
    kind: str = ""
    #: conditions that hold for every set (CEL conjuncts, MRTDs, the platform sentence) added / removed by head
    terms_added: tuple[str, ...] = ()
    terms_removed: tuple[str, ...] = ()
    #: why head's (or base's) resource could not be read ("" when it could)
    error: str = ""

    @property
    def pins_text(self) -> str:
        """The gate's "pins our image" / "pins the platform, not the image" sentence."""
        return PINS_TEXT.get(self.pins, self.pins)

    def to_json(self) -> dict[str, Any]:
        return {"resource": self.resource, "kind": self.kind, "pins": self.pins,
                "added": [s.to_json() for s in self.added], "removed": [s.to_json() for s in self.removed],
                "kept": self.kept, "termsAdded": list(self.terms_added), "termsRemoved": list(self.terms_removed),
                "error": self.error or None}


@dataclass(frozen=True)
class WindowRow:
    """A rollover window of base vs head for one allowed manifest (None: absent on that side)."""

    target: str
    manifest: str
    base: Mapping[str, Any] | None
    head: Mapping[str, Any] | None

    def describe(self) -> str:
        b = "not allowed" if self.base is None else describe_window(self.base)
        h = "not allowed" if self.head is None else describe_window(self.head)
        return f"{b} → {h}"

    def to_json(self) -> dict[str, Any]:
        pick = lambda w: None if w is None else {k: w.get(k) for k in ("until", "daysLeft", "expired")}  # noqa: E731
        return {"target": self.target, "manifest": self.manifest, "base": pick(self.base), "head": pick(self.head)}


@dataclass(frozen=True)
class ScriptDiff:
    """A decoded user-data script that changed: the input path, its encoding, the unified diff lines."""

    path: str
    encoding: str
    lines: tuple[str, ...]


@dataclass(frozen=True)
class ResourceChange:
    """One resource that head creates, updates or deletes, with its property and script diffs."""

    op: str  # create | update | delete
    type: str
    name: str
    urn: str
    props: tuple[tuple[str, str, Any, Any], ...]  # (sign "-", "+" or "~", path, old, new)
    scripts: tuple[ScriptDiff, ...] = ()

    @property
    def symbol(self) -> str:
        return {"create": "+", "update": "~", "delete": "-"}[self.op]

    def to_json(self) -> dict[str, Any]:
        return {"op": self.op, "type": self.type, "name": self.name, "urn": self.urn,
                "properties": [{"path": p, "old": o, "new": n} for _, p, o, n in self.props],
                "scripts": [{"path": s.path, "encoding": s.encoding, "diff": list(s.lines)} for s in self.scripts]}


@dataclass(frozen=True)
class PreviewDiff:
    """The result of :func:`diff_previews` (see the module docstring for what each part means)."""

    stack: str
    base_label: str
    head_label: str
    violations: tuple[ViolationRow, ...]
    key_release: tuple[KeyReleaseChange, ...]
    measurements: tuple[tuple[str, ManifestDiff], ...]
    manifests_added: tuple[tuple[str, str], ...]
    manifests_removed: tuple[tuple[str, str], ...]
    windows: tuple[WindowRow, ...]
    resources: tuple[ResourceChange, ...]
    clock: str = ""
    #: stack outputs that changed: (sign, path, old, new), as in :attr:`ResourceChange.props`
    outputs: tuple[tuple[str, str, Any, Any], ...] = ()
    notes: tuple[str, ...] = field(default_factory=tuple)

    def count(self, op: str) -> int:
        return sum(1 for r in self.resources if r.op == op)

    @property
    def summary(self) -> str:
        """``Plan: N to add, M to change, K to destroy.``"""
        return f"Plan: {self.count('create')} to add, {self.count('update')} to change, {self.count('delete')} to destroy."

    def mandatory(self, *, resolved: bool = False) -> list[ViolationRow]:
        return [v for v in self.violations if v.level == "mandatory" and (v.status == "resolved") == resolved]

    def advisory(self) -> list[ViolationRow]:
        return [v for v in self.violations if v.level != "mandatory" and v.status != "resolved"]

    def to_json(self) -> dict[str, Any]:
        return {
            "stack": self.stack, "base": self.base_label, "head": self.head_label, "summary": self.summary,
            "counts": {"add": self.count("create"), "change": self.count("update"), "destroy": self.count("delete")},
            "violations": [v.to_json() for v in self.violations],
            "keyRelease": [k.to_json() for k in self.key_release],
            "measurements": [{"target": t, **d.to_json()} for t, d in self.measurements],
            "manifestsAdded": [{"target": t, "manifest": m} for t, m in self.manifests_added],
            "manifestsRemoved": [{"target": t, "manifest": m} for t, m in self.manifests_removed],
            "windows": [w.to_json() for w in self.windows],
            "resources": [r.to_json() for r in self.resources],
            "outputs": [{"path": p, "old": o, "new": n} for _, p, o, n in self.outputs],
            "notes": list(self.notes),
        }

    # ------------------------------------------------------------------------------ Markdown
    def _head_sections(self) -> list[str]:
        out = [MARKER, f"### teeform preview: stack `{self.stack}`", "",
               f"`{self.base_label}` → `{self.head_label}` (offline: Pulumi mock engine + the policy pack)", ""]
        mand, fixed = self.mandatory(), self.mandatory(resolved=True)
        if mand:
            out += [f"#### :no_entry: {len(mand)} mandatory policy violation(s): `pulumi preview --policy-pack` would fail", ""]
            out += [f"- {'**new** ' if v.status == 'new' else ''}`{v.policy}`{_on(v.resource)}: {_md(v.message)}" for v in mand]
            out.append("")
        else:
            out += [":white_check_mark: No mandatory policy violations.", ""]
        if fixed:
            out += [f"Resolved by this change: {', '.join(f'`{v.policy}`' + _on(v.resource) for v in fixed)}", ""]
        out += [f"**{self.summary}**", ""]
        if self.key_release:
            out += ["#### Key release", ""]
            for k in self.key_release:
                pins = f" ({k.pins_text})" if k.pins not in ("", "image") else ""
                out.append(f"`{k.resource}`{pins}: {len(k.added)} allowed set(s) added, {len(k.removed)} removed, "
                           f"{k.kept} kept")
                out += [f"- :heavy_plus_sign: {_md(s.describe())}" for s in k.added]
                out += [f"- :heavy_minus_sign: {_md(s.describe())}" for s in k.removed]
                out += [f"- :heavy_plus_sign: condition `{_md(t)}`" for t in k.terms_added]
                out += [f"- :heavy_minus_sign: condition `{_md(t)}`" for t in k.terms_removed]
                if k.error:
                    out.append(f"- :warning: {_md(k.error)}")
                out.append("")
        if self.measurements or self.manifests_added or self.manifests_removed:
            out += ["#### Measurements", ""]
            out += [f"- target `{t}`: allowed manifest **added** `{m}`" for t, m in self.manifests_added]
            out += [f"- target `{t}`: allowed manifest **removed** `{m}`" for t, m in self.manifests_removed]
            if self.manifests_added or self.manifests_removed:
                out.append("")
            for t, d in self.measurements:
                md = d.render_markdown().replace("### Measurements diff", f"##### Target `{t}`: measurements diff", 1)
                out += [md, ""]
        if self.windows:
            out += [f"#### Rollover windows (clock {self.clock})" if self.clock else "#### Rollover windows", "",
                    "| target | manifest | base | head |", "|---|---|---|---|"]
            for w in self.windows:
                b = "not allowed" if w.base is None else describe_window(w.base)
                h = "not allowed" if w.head is None else describe_window(w.head)
                out.append(f"| {w.target} | `{w.manifest}` | {b} | {h} |")
            out.append("")
        adv = self.advisory()
        if adv:
            out += [f"<details><summary>{len(adv)} advisory violation(s)</summary>", ""]
            out += [f"- {'**new** ' if v.status == 'new' else ''}`{v.policy}`{_on(v.resource)}: {_md(v.message)}" for v in adv]
            out += ["", "</details>", ""]
        if self.notes:
            out += [f"> {_md(n)}" for n in self.notes] + [""]
        if self.resources:
            out += ["#### Resources", ""]
            out += [f"- `{r.symbol}` `{r.type}` **{r.name}**" for r in self.resources]
            out.append("")
        return out

    def _details(self, r: ResourceChange) -> str:
        lines = [f"<details><summary><code>{r.symbol} {r.type}</code> {r.name} ({r.op})</summary>", ""]
        if r.props:
            lines.append("```diff")
            for sign, p, o, n in r.props:
                if sign in ("-", "~"):
                    lines.append(f"- {p}: {_show(o)}")
                if sign in ("+", "~"):
                    lines.append(f"+ {p}: {_show(n)}")
            lines.append("```")
        for s in r.scripts:
            lines += ["", f"`{s.path}` (decoded: {s.encoding}):", "", "```diff", *s.lines, "```"]
        lines += ["", "</details>", ""]
        return "\n".join(lines)

    def render_markdown(self, max_chars: int | None = MAX_COMMENT_CHARS, summary_hint: str = "the job summary") -> str:
        """The PR comment (Markdown, starts with :data:`MARKER`). With ``max_chars``, detail blocks are
        dropped from the end until the body fits, then the body is cut; a note says what was left out
        and points at ``summary_hint`` (where the full report, ``max_chars=None``, is)."""
        head = "\n".join(self._head_sections())
        blocks = [self._details(r) for r in self.resources]
        if self.outputs:
            blocks.insert(0, self._details(ResourceChange("update", STACK_TYPE, "stack outputs", "", self.outputs)))
        body = head + "\n" + "\n".join(blocks)
        if max_chars is None or len(body) <= max_chars:
            return body
        note_for = lambda n: (f"\n:warning: **Truncated**: {n} of {len(blocks)} resource detail block(s) left out "  # noqa: E731
                              f"to stay under GitHub's comment limit; the full report is in {summary_hint}.\n")
        kept = list(blocks)
        while kept:
            kept.pop()
            body = head + "\n" + "\n".join(kept) + note_for(len(blocks) - len(kept))
            if len(body) <= max_chars:
                return body
        note = note_for(len(blocks))
        cut = max_chars - len(note) - 40
        return head[:max(cut, 0)] + "\n\n…(cut)\n" + note

    def render_text(self) -> str:
        """Plain text: the same order as the Markdown, without HTML."""
        out = [f"teeform preview diff: stack {self.stack}: {self.base_label} -> {self.head_label}", ""]
        for v in self.mandatory():
            out.append(f"MANDATORY {'(new) ' if v.status == 'new' else ''}{v.policy}{_on(v.resource, md=False)}: {v.message}")
        for v in self.mandatory(resolved=True):
            out.append(f"resolved {v.policy}{_on(v.resource, md=False)}")
        out += [self.summary, ""]
        for k in self.key_release:
            pins = f" ({k.pins_text})" if k.pins not in ("", "image") else ""
            out.append(f"key release {k.resource}{pins}: +{len(k.added)} -{len(k.removed)} ={k.kept}")
            out += [f"  + {s.describe()}" for s in k.added] + [f"  - {s.describe()}" for s in k.removed]
            out += [f"  + condition {t}" for t in k.terms_added] + [f"  - condition {t}" for t in k.terms_removed]
            if k.error:
                out.append(f"  ! {k.error}")
        for t, m in self.manifests_added:
            out.append(f"target {t}: allowed manifest added {m}")
        for t, m in self.manifests_removed:
            out.append(f"target {t}: allowed manifest removed {m}")
        for t, d in self.measurements:
            out += [f"target {t}: " + d.render_text().rstrip()]
        for w in self.windows:
            out.append(f"window {w.target} {w.manifest}: {w.describe()}")
        for v in self.advisory():
            out.append(f"advisory {v.policy}{_on(v.resource, md=False)}: {v.message}")
        out += [f"note: {n}" for n in self.notes]
        for r in self.resources:
            out.append(f"{r.symbol} {r.type} {r.name}")
            for sign, p, o, n in r.props:
                if sign in ("-", "~"):
                    out.append(f"    - {p}: {_show(o)}")
                if sign in ("+", "~"):
                    out.append(f"    + {p}: {_show(n)}")
            for s in r.scripts:
                out.append(f"    {s.path} ({s.encoding}):")
                out += [f"      {line}" for line in s.lines]
        return "\n".join(out) + "\n"


def _on(resource: str, md: bool = True) -> str:
    if not resource:
        return ""
    return f" on `{resource}`" if md else f" on {resource}"


def _md(s: str) -> str:
    return s.replace("\n", " ").replace("<", "&lt;").replace(">", "&gt;")


def _show(v: Any) -> str:
    s = json.dumps(v, ensure_ascii=False)
    return s if len(s) <= 400 else s[:400] + "…"


# ------------------------------------------------------------------------------------ the diff
def _resources(doc: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    return {str(r["urn"]): r for r in doc.get("resources", []) if r.get("type") != STACK_TYPE}


def _violations(base: Mapping[str, Any], head: Mapping[str, Any]) -> list[ViolationRow]:
    def rows(doc: Mapping[str, Any]) -> dict[tuple[str, str, str, str], Mapping[str, Any]]:
        out = {}
        for v in doc.get("violations", []):
            res = f"{v.get('resourceType')} {v.get('resourceName')}".strip() if v.get("resourceType") else ""
            out[(str(v["policy"]), str(v.get("enforcementLevel", "")), res, str(v.get("message", "")))] = v
        return out

    b, h = rows(base), rows(head)
    out = [ViolationRow(k[0], k[1], k[3], k[2], "existing" if k in b else "new") for k in h]
    out += [ViolationRow(k[0], k[1], k[3], k[2], "resolved") for k in b if k not in h]
    rank = {"mandatory": 0, "remediate": 1, "advisory": 2}
    return sorted(out, key=lambda v: (rank.get(v.level, 3), v.status != "new", v.policy, v.resource))


def _manifest_label(m: Mapping[str, Any]) -> str:
    man = m.get("manifest") or {}
    return f"{m.get('key')} ({man.get('name')}@{man.get('version')}, sha256:{short(str(m.get('sha256')))})"


def _label_for(values: tuple[tuple[str, str], ...], manifests: Iterable[Mapping[str, Any]], pins: str = "image") -> str:
    """``target/key (name@version)`` of the first manifest whose measurements hold every value of the set
    ("platform claims" for a platform-only gate, whose sets name no measurement)."""
    if pins == "platform":
        return "platform claims"
    want = dict(values)
    for m in manifests:
        meas = (m.get("manifest") or {}).get("measurements") or {}
        if not isinstance(meas, Mapping):
            continue
        if all(str(meas.get(k, "")).lower() == v for k, v in want.items()):
            man = m.get("manifest") or {}
            return f"{m.get('target')}/{m.get('key')} ({man.get('name')}@{man.get('version')})"
    return ""


def _is_hex(v: str) -> bool:
    return len(v) >= 32 and all(c in "0123456789abcdef" for c in v)


@dataclass
class _GateAcc:
    """The gates of one document merged by group (one GCP key's grants) or by URN."""

    label: str
    kind: str
    pins: str
    sets: dict[tuple[tuple[str, str], ...], tuple[str, ...]] = field(default_factory=dict)
    terms: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    target: str = ""  # the resource's teeform:target tag, when it has one


def _gates(resources: Mapping[str, Mapping[str, Any]]) -> dict[str, _GateAcc]:
    """Every key-release gate of a document (:mod:`teeform.keyrelease_readers`), keyed by group or URN."""
    out: dict[str, _GateAcc] = {}
    for urn, r in resources.items():
        gate: Gate | None = read_gate(str(r.get("type")), r.get("inputs"))
        if gate is None:
            continue
        key = gate.group or urn
        tags = (r.get("inputs") or {}).get("tags")
        target = str(tags.get("teeform:target", "")) if isinstance(tags, Mapping) else ""
        acc = out.setdefault(key, _GateAcc(gate.group or f"{r['type']} {r['name']}", gate.kind, gate.pins, target=target))
        # one gate, several resources (GCP grants): the weakest pin wins, since any one of them releases the key
        weakest = {"image": 0, "platform": 1, "identity": 2}
        if weakest.get(gate.pins, 3) > weakest.get(acc.pins, 3):
            acc.pins = gate.pins
        for s in gate.sets:
            acc.sets.setdefault(s.values, s.actions)
        acc.terms += [t for t in gate.terms if t not in acc.terms]
        if gate.error:
            acc.errors.append(gate.error)
    return out


def _prop_changes(old: Mapping[str, Any] | None, new: Mapping[str, Any] | None) -> tuple[list[tuple[str, str, Any, Any]], list[ScriptDiff]]:
    old, new = old or {}, new or {}
    scripts: list[ScriptDiff] = []
    o_in, n_in = dict(old), dict(new)
    for k in sorted(set(o_in) | set(n_in)):
        if k not in USER_DATA_KEYS:
            continue
        ov, nv = o_in.get(k), n_in.get(k)
        od = decode_script(ov) if isinstance(ov, str) else None
        nd = decode_script(nv) if isinstance(nv, str) else None
        if (ov is None or od) and (nv is None or nd) and (od or nd):
            o_in.pop(k, None)
            n_in.pop(k, None)
            if ov != nv:
                ot, nt = (od[1] if od else ""), (nd[1] if nd else "")
                lines = list(difflib.unified_diff(ot.splitlines(), nt.splitlines(), f"base/{k}", f"head/{k}", lineterm="", n=2))
                enc = nd[0] if nd else od[0] if od else "text"
                scripts.append(ScriptDiff(k, enc, tuple(lines)))
    fo, fn = flatten(o_in), flatten(n_in)
    props: list[tuple[str, str, Any, Any]] = []
    for p in sorted(set(fo) | set(fn)):
        if p in fo and p in fn:
            if fo[p] != fn[p]:
                props.append(("~", p, fo[p], fn[p]))
        elif p in fo:
            props.append(("-", p, fo[p], None))
        else:
            props.append(("+", p, None, fn[p]))
    return props, scripts


def diff_previews(base: Mapping[str, Any], head: Mapping[str, Any], *, base_label: str = "base",
                  head_label: str = "head") -> PreviewDiff:
    """Compare two validated preview documents (:func:`load_preview_json`); pure.

    Raises:
        TeeformError: the documents are of different stacks, or a manifest in them is invalid.
    """
    base = normalize_paths(base, base.get("projectDir"))
    head = normalize_paths(head, head.get("projectDir"))
    notes: list[str] = []
    if base.get("stack") != head.get("stack"):
        raise TeeformError(f"the documents are of different stacks: {base.get('stack')!r} and {head.get('stack')!r}",
                           field="stack", hint="preview the same stack on both sides")
    br, hr = _resources(base), _resources(head)
    br, hr = dict(sorted(br.items())), dict(sorted(hr.items()))  # by URN: stable whatever the documents' order
    changes: list[ResourceChange] = []
    for urn in [*hr, *(u for u in br if u not in hr)]:
        b, h = br.get(urn), hr.get(urn)
        ref = h or b
        assert ref is not None
        props, scripts = _prop_changes(b.get("inputs") if b else None, h.get("inputs") if h else None)
        op = "create" if b is None else "delete" if h is None else "update"
        if op == "update" and not props and not scripts:
            continue
        changes.append(ResourceChange(op, str(ref["type"]), str(ref["name"]), urn, tuple(props), tuple(scripts)))

    all_manifests = [*base.get("manifests", []), *head.get("manifests", [])]
    key_release: list[KeyReleaseChange] = []
    bg, hg = _gates(br), _gates(hr)
    for gk in [*hg, *(g for g in bg if g not in hg)]:
        bacc, hacc = bg.get(gk), hg.get(gk)
        ref_acc = hacc or bacc
        assert ref_acc is not None
        bs = bacc.sets if bacc else {}
        hs = hacc.sets if hacc else {}
        added = [ReleaseSet(k, hs[k], _label_for(k, head.get("manifests", []), ref_acc.pins)) for k in hs if k not in bs]
        removed = [ReleaseSet(k, bs[k], _label_for(k, all_manifests, ref_acc.pins)) for k in bs if k not in hs]
        bt_, ht_ = (bacc.terms if bacc else []), (hacc.terms if hacc else [])
        t_add = tuple(t for t in ht_ if t not in bt_)
        t_rem = tuple(t for t in bt_ if t not in ht_)
        err = "; ".join(dict.fromkeys([*(f"head: {e}" for e in (hacc.errors if hacc else [])),
                                       *(f"base: {e}" for e in (bacc.errors if bacc else []))]))
        if hacc and bacc and hacc.errors == bacc.errors and not (added or removed or t_add or t_rem):
            continue
        if added or removed or t_add or t_rem or err:
            key_release.append(KeyReleaseChange(ref_acc.label, tuple(added), tuple(removed),
                                                sum(1 for k in hs if k in bs), ref_acc.pins, ref_acc.kind,
                                                t_add, t_rem, err))

    def by_target(doc: Mapping[str, Any]) -> dict[str, list[Mapping[str, Any]]]:
        out: dict[str, list[Mapping[str, Any]]] = {}
        for m in doc.get("manifests", []):
            out.setdefault(str(m["target"]), []).append(m)
        return out

    bt, ht = by_target(base), by_target(head)
    measurements: list[tuple[str, ManifestDiff]] = []
    added_m: list[tuple[str, str]] = []
    removed_m: list[tuple[str, str]] = []
    windows: list[WindowRow] = []
    for t in [*ht, *(x for x in bt if x not in ht)]:
        bl, hl = bt.get(t, []), ht.get(t, [])
        bsha, hsha = {m["sha256"]: m for m in bl}, {m["sha256"]: m for m in hl}
        added_m += [(t, _manifest_label(m)) for s, m in hsha.items() if s not in bsha]
        removed_m += [(t, _manifest_label(m)) for s, m in bsha.items() if s not in hsha]
        if bl and hl and bl[0]["sha256"] != hl[0]["sha256"]:
            old = Manifest.from_dict(bl[0]["manifest"], source=f"{base_label}: manifests[{bl[0]['key']}]")
            new = Manifest.from_dict(hl[0]["manifest"], source=f"{head_label}: manifests[{hl[0]['key']}]")
            if old.kind is new.kind:
                measurements.append((t, diff_manifests(old, new, old_label=f"{bl[0]['path']} ({old.name}@{old.version})",
                                                       new_label=f"{hl[0]['path']} ({new.name}@{new.version})")))
            else:
                notes.append(f"target {t}: the deployed manifest changed kind ({old.kind.value} -> {new.kind.value})")
        for s in [*hsha, *(x for x in bsha if x not in hsha)]:
            bw, hw = bsha.get(s), hsha.get(s)
            bu = bw.get("until") if bw else None
            hu = hw.get("until") if hw else None
            if bu is None and hu is None:
                continue
            bexp = bool(bw and bw.get("expired"))
            hexp = bool(hw and hw.get("expired"))
            if bw is None or hw is None or bu != hu or bexp != hexp or hu is not None:
                windows.append(WindowRow(t, str((hw or bw or {}).get("key")), bw, hw))
    # A platform-only gate (Azure SKR) that a change of allowed manifests leaves as it was: say so, since
    # "no key-release change" would otherwise read as "the key still goes to the old image only".
    moved = {t for t, _ in added_m} | {t for t, _ in removed_m} | {t for t, _ in measurements}
    changed_gates = {k.resource for k in key_release}
    for acc in hg.values():
        if acc.pins == "platform" and acc.label not in changed_gates and moved and (not acc.target or acc.target in moved):
            notes.append(f"{acc.label} {PINS_TEXT['platform']}: the allowed manifests of "
                         f"{'target ' + acc.target if acc.target else 'this stack'} changed, who can obtain this key "
                         "did not (any compliant confidential VM of its TEE type attested by its authority)")
    outputs, _ = _prop_changes(base.get("outputs"), head.get("outputs"))
    clock = (head.get("clock") or {})
    return PreviewDiff(
        stack=str(head.get("stack")), base_label=base_label, head_label=head_label,
        violations=tuple(_violations(base, head)), key_release=tuple(key_release), measurements=tuple(measurements),
        manifests_added=tuple(added_m), manifests_removed=tuple(removed_m), windows=tuple(windows),
        resources=tuple(changes), clock=f"{clock.get('date')}, {clock.get('source')}" if clock else "",
        notes=tuple(notes), outputs=tuple(outputs),
    )


def empty_like(doc: Mapping[str, Any]) -> dict[str, Any]:
    """A preview document of ``doc``'s stack with nothing in it (the base of a stack that is new, or
    whose base preview could not run): every resource of ``doc`` is then "to add"."""
    return {**doc, "projectDir": None, "resources": [], "outputs": {}, "violations": [], "manifests": []}


def diff_files(base: str | Path, head: str | Path, *, labels: Sequence[str] | None = None,
               allow_missing_base: bool = False) -> PreviewDiff:
    """Load, validate and diff two preview files (labels default to the file names).

    With ``allow_missing_base``, a missing or empty ``base`` file is read as :func:`empty_like` head,
    and the diff carries a note saying so.

    Raises:
        TeeformError: as :func:`load_preview_json` and :func:`diff_previews`.
    """
    h = load_preview_json(head)
    bl, hl = labels if labels else (Path(base).name, Path(head).name)
    bp = Path(base)
    if allow_missing_base and (not bp.exists() or (bp.is_file() and bp.stat().st_size == 0)):
        d = diff_previews(empty_like(h), h, base_label=f"{bl} (unavailable)", head_label=hl)
        note = (f"The base preview {bl} is unavailable (the base branch could not be previewed); "
                "everything is shown as new.")
        return PreviewDiff(**{**d.__dict__, "notes": (note, *d.notes)})
    return diff_previews(load_preview_json(base), h, base_label=bl, head_label=hl)


__all__ = ["MARKER", "MAX_COMMENT_CHARS", "AWS_ATTESTATION_PREFIX", "POLICY_DOCUMENT_TYPES", "KEY_RELEASE_TYPES", "PreviewDiff", "ResourceChange", "KeyReleaseChange", "WindowRow",
           "ViolationRow", "ReleaseSet", "ScriptDiff", "decode_script", "flatten", "policy_sets", "normalize_paths",
           "validate_preview_doc", "load_preview_json", "diff_previews", "diff_files", "empty_like"]
