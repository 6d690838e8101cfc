"""Explain how two measurement manifests differ: which measurements changed, and why.

:func:`diff_manifests` is pure (two :class:`~teeform.manifest.Manifest` objects in, a frozen
:class:`ManifestDiff` out); ``teeform measurements diff`` renders it as text, Markdown (for PR
comments) or JSON.

Cost: linear in the number of inputs (pairing uses a name index per role, not list scans; see
``benchmarks/measurements_diff_scaling.py``). Inputs are matched by role (``InputDigest.role``, compared case-insensitively with ``_`` read as
``-``); several inputs with one role are paired by name, then in order. A changed measurement is
explained by the changed inputs its dependency table lists, by changed measurements it embeds, and,
when nothing else explains it, by builder version / ``SOURCE_DATE_EPOCH`` changes.

Dependency tables (which input roles feed which measurement):

EIF (``shared/reference/eif-nitro.md`` §2.2, §2.5, §3.2): the hypervisor hashes only section data.

* PCR1 = kernel + cmdline + the first (bootstrap) ramdisk, which nitro-cli builds from ``init`` and
  ``nsm.ko``: roles :data:`EIF_BOOTSTRAP_ROLES`.
* PCR2 = every later ramdisk, i.e. the application image (docker image filesystem + its config):
  roles :data:`EIF_APP_ROLES`.
* PCR0 = ImageSha384 = all of the above (kernel, cmdline and every ramdisk in order).
* PCR8 = the signing certificate (DER): roles :data:`EIF_CERT_ROLES`. Re-signing changes PCR8 only;
  editing metadata changes no PCR (metadata and signature sections are not measured). teeform's EIF
  builder (``image_builder/pipelines/build_eif.py`` ``build_manifest``) records the certificate in
  ``details.signing_certificate_sha256`` (SHA-256 of its DER) and ``details.signing_certificate_subject``
  rather than as an input, so :func:`eif_inputs` turns those into a ``signing-certificate`` input.
* ``SOURCE_DATE_EPOCH`` is a measured input of teeform EIFs: it is the mtime of every entry of both
  ramdisks (``image_builder/pipelines/build_eif.py`` module docstring, ``image_builder/formats/cpio.py``), so a change
  explains PCR1, PCR2 and PCR0 (:data:`EIF_SDE_MEASURED`). Checked by building the same inputs with two
  values (``tests/test_measurements_diff.py::test_real_eif_builds``).

The input roles ``image_builder/pipelines/build_eif.py`` writes are ``image``, ``kernel``, ``init``, ``nsm`` and
``cmdline``; ``image_builder/pipelines/build_vm.py`` writes ``rootfs``, ``kernel``, ``stub``, ``cmdline``,
``os-release``, ``modules`` and ``initrd-host-file`` (both go into the initrd, a UKI section) and
``firmware``. Other roles in the tables are accepted aliases for manifests written by other tools.

vm-image (``shared/reference/uki-verity.md`` §1-§7), see :data:`VM_IMAGE_DEPENDENCIES`:

* ``roothash`` (dm-verity) = the root filesystem contents (and its build timestamps).
* ``uki_authenticode_*`` = every byte of the UKI: stub, kernel, initrd, cmdline, os-release, ... The
  cmdline carries ``roothash=``, so a roothash change changes it too.
* ``pcr11_*`` = the UKI sections systemd-stub measures (``.linux .osrel .cmdline .initrd .splash
  .dtb .uname .sbat .pcrpkey``; ``.sbat`` comes from the stub in 254+), so also roothash.
* ``pcr12_*`` = command line given from outside the UKI, credentials, addons (systemd-stub §1.4).
* ``rtmr1`` = the UKI's Authenticode SHA-384 (plus fixed firmware events), so UKI inputs + roothash.
* ``rtmr2`` = systemd-stub 256+ PCR 11/12/13 events (and the Linux stub's PCR 9 events).
* ``snp_launch_digest`` = OVMF + the SEV hash table of kernel, initrd and cmdline + vCPU setup.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from teeform import measurements as mtable
from teeform.errors import TeeformError
from teeform.manifest import ArtifactKind, InputDigest, Manifest

EIF_BOOTSTRAP_ROLES = frozenset({"kernel", "cmdline", "init", "nsm", "nsm-ko", "bootstrap-ramdisk", "linuxkit"})
EIF_APP_ROLES = frozenset({"image", "app-ramdisk", "application", "docker-image", "image-config", "customer-ramdisk"})
EIF_CERT_ROLES = frozenset({"signing-certificate", "signing-cert", "certificate"})
#: EIF measurements that contain the ramdisks, whose every entry has mtime = SOURCE_DATE_EPOCH.
EIF_SDE_MEASURED = frozenset({"PCR0", "PCR1", "PCR2", "ImageSha384"})

EIF_DEPENDENCIES: dict[str, frozenset[str]] = {
    "PCR0": EIF_BOOTSTRAP_ROLES | EIF_APP_ROLES,
    "ImageSha384": EIF_BOOTSTRAP_ROLES | EIF_APP_ROLES,
    "PCR1": EIF_BOOTSTRAP_ROLES,
    "PCR2": EIF_APP_ROLES,
    "PCR8": EIF_CERT_ROLES,
}

#: ``modules`` and ``initrd-host-file`` are what build_vm.py puts into the initrd (a UKI section).
_INITRD_ROLES = frozenset({"initrd", "modules", "initrd-host-file"})
_UKI_ROLES = frozenset({"stub", "kernel", "cmdline", "osrel", "os-release", "splash", "dtb", "uname",
                        "sbat", "pcrpkey", "ucode", "uki"}) | _INITRD_ROLES
_ROOTFS_ROLES = frozenset({"rootfs", "root", "root-filesystem", "image", "tree", "verity-salt"})
_PCR11_ROLES = _UKI_ROLES  # the stub counts: 254+ stubs measure their own .sbat (uki-verity.md §0)

VM_IMAGE_DEPENDENCIES: dict[str, frozenset[str]] = {
    "roothash": _ROOTFS_ROLES,
    "uki_authenticode_sha256": _UKI_ROLES,
    "uki_authenticode_sha384": _UKI_ROLES,
    "pcr11_sha256": _PCR11_ROLES,
    "pcr11_sha384": _PCR11_ROLES,
    "pcr12_sha256": frozenset({"cmdline-addon", "addon", "credentials", "extra-cmdline"}),
    "pcr12_sha384": frozenset({"cmdline-addon", "addon", "credentials", "extra-cmdline"}),
    "rtmr1": _UKI_ROLES | {"ovmf", "firmware"},
    "rtmr2": _PCR11_ROLES | {"cmdline-addon", "addon", "credentials"},
    "snp_launch_digest": frozenset({"ovmf", "firmware", "kernel", "cmdline", "vcpus"}) | _INITRD_ROLES,
    "pcr4_sha256": _UKI_ROLES,
    "pcr4_sha384": _UKI_ROLES,
}

#: measurement -> other measurements whose value it embeds (a change there changes it).
VM_IMAGE_EMBEDS: dict[str, tuple[str, ...]] = {
    "uki_authenticode_sha256": ("roothash",),
    "uki_authenticode_sha384": ("roothash",),
    "pcr11_sha256": ("roothash",),
    "pcr11_sha384": ("roothash",),
    "rtmr1": ("roothash",),
    "rtmr2": ("roothash",),
    "pcr4_sha256": ("roothash",),
    "pcr4_sha384": ("roothash",),
}
EIF_EMBEDS: dict[str, tuple[str, ...]] = {}

DEPENDENCIES = {ArtifactKind.EIF: EIF_DEPENDENCIES, ArtifactKind.VM_IMAGE: VM_IMAGE_DEPENDENCIES}
EMBEDS = {ArtifactKind.EIF: EIF_EMBEDS, ArtifactKind.VM_IMAGE: VM_IMAGE_EMBEDS}
WHY_EMBEDDED = {"roothash": "the dm-verity roothash is part of the kernel command line in the UKI"}


def norm_role(role: str) -> str:
    """Role comparison key: lowercase, ``_`` -> ``-``."""
    return role.strip().lower().replace("_", "-")


def short(h: str | None, n: int = 12) -> str:
    """``sha256:0123456789ab…`` style abbreviation of a hex digest (``-`` for None)."""
    if h is None:
        return "-"
    return h if len(h) <= n else h[:n] + "…"


@dataclass(frozen=True)
class InputChange:
    """One input that differs: ``change`` is ``changed``, ``added`` or ``removed``."""

    role: str
    change: str
    old: InputDigest | None
    new: InputDigest | None

    def describe(self) -> str:
        if self.change == "added":
            return f"input '{self.role}' added ({self.new.name}, sha256:{short(self.new.sha256)})"  # type: ignore[union-attr]
        if self.change == "removed":
            return f"input '{self.role}' removed ({self.old.name}, sha256:{short(self.old.sha256)})"  # type: ignore[union-attr]
        o, n = self.old, self.new
        assert o is not None and n is not None
        parts = []
        if o.sha256 != n.sha256:
            parts.append(f"sha256:{short(o.sha256)} -> sha256:{short(n.sha256)}")
        if o.name != n.name:
            parts.append(f"name {o.name} -> {n.name}")
        if o.size != n.size:
            parts.append(f"size {o.size} -> {n.size}")
        return f"input '{self.role}' changed (" + ", ".join(parts) + ")"

    def to_json(self) -> dict[str, Any]:
        d = lambda i: None if i is None else {"role": i.role, "name": i.name, "sha256": i.sha256, "size": i.size}  # noqa: E731
        return {"role": self.role, "change": self.change, "old": d(self.old), "new": d(self.new)}


@dataclass(frozen=True)
class MeasurementChange:
    """A measurement whose value differs (``old``/``new`` None when absent on that side), with reasons."""

    name: str
    old: str | None
    new: str | None
    causes: tuple[str, ...]
    explained: bool

    def sentence(self) -> str:
        if self.old is None:
            head = f"{self.name} added"
        elif self.new is None:
            head = f"{self.name} removed"
        else:
            head = f"{self.name} changed"
        if not self.causes:
            return head
        return f"{head} because " + "; ".join(self.causes) if self.explained else f"{head}: " + "; ".join(self.causes)

    def to_json(self) -> dict[str, Any]:
        return {"measurement": self.name, "old": self.old, "new": self.new, "causes": list(self.causes),
                "explained": self.explained, "summary": self.sentence()}


@dataclass(frozen=True)
class ManifestDiff:
    """The result of :func:`diff_manifests`."""

    kind: ArtifactKind
    old_label: str
    new_label: str
    measurements: tuple[MeasurementChange, ...]
    unchanged: tuple[str, ...]
    inputs: tuple[InputChange, ...]
    artifact: tuple[str, ...]
    builder: tuple[str, ...]
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def changed(self) -> bool:
        return bool(self.measurements)

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value, "old": self.old_label, "new": self.new_label,
            "measurements_changed": self.changed,
            "measurements": [m.to_json() for m in self.measurements],
            "unchanged": list(self.unchanged),
            "inputs": [i.to_json() for i in self.inputs],
            "artifact": list(self.artifact), "builder": list(self.builder), "notes": list(self.notes),
        }

    def render_text(self) -> str:
        out = [f"measurements diff ({self.kind.value}): {self.old_label} -> {self.new_label}", ""]
        if self.measurements:
            for m in self.measurements:
                out.append(f"* {m.sentence()}")
                out.append(f"    old {m.old or '-'}")
                out.append(f"    new {m.new or '-'}")
        else:
            out.append("no measurement changed")
        if self.unchanged:
            out.append(f"unchanged: {', '.join(self.unchanged)}")
        for title, rows in (("inputs", [i.describe() for i in self.inputs]), ("artifact", self.artifact),
                            ("builder", self.builder), ("notes", self.notes)):
            if rows:
                out.append("")
                out.append(f"{title}:")
                out.extend(f"  - {r}" for r in rows)
        return "\n".join(out) + "\n"

    def render_markdown(self) -> str:
        verdict = (f"**{len(self.measurements)} measurement(s) changed**: key release policies must be updated"
                   if self.measurements else "**No measurement changed**: key release policies stay valid")
        out = [f"### Measurements diff ({self.kind.value})", "", f"`{self.old_label}` → `{self.new_label}`", "", verdict, ""]
        if self.measurements:
            out += ["| measurement | old | new | why |", "|---|---|---|---|"]
            for m in self.measurements:
                why = "; ".join(m.causes).replace("|", "\\|") or "-"
                out.append(f"| {m.name} | `{short(m.old, 16)}` | `{short(m.new, 16)}` | {why} |")
            out.append("")
        if self.unchanged:
            out += [f"Unchanged: {', '.join(self.unchanged)}", ""]
        for title, rows in (("Inputs", [i.describe() for i in self.inputs]), ("Artifact", self.artifact),
                            ("Builder", self.builder), ("Notes", self.notes)):
            if rows:
                out.append(f"**{title}**")
                out.append("")
                out += [f"- {r}" for r in rows]
                out.append("")
        if self.measurements:
            out += ["<details><summary>Full values</summary>", "", "```"]
            for m in self.measurements:
                out += [f"{m.name} old {m.old or '-'}", f"{m.name} new {m.new or '-'}"]
            out += ["```", "", "</details>", ""]
        return "\n".join(out)


def _pair_inputs(old: Sequence[InputDigest], new: Sequence[InputDigest]) -> list[InputChange]:
    """Pair the inputs of two manifests (module docstring) in O(n) time for n inputs.

    Roles in order of first appearance (old, then new). Within a role: each old input, in order, takes
    the first unpaired new input of the same name; the rest are paired in order; leftovers are
    removed (old) or added (new). Output order: name pairs, positional pairs, removed, added.
    """
    by_role: dict[str, tuple[list[InputDigest], list[InputDigest]]] = {}
    normed: dict[str, str] = {}  # role as written -> norm_role(role); few distinct roles
    for side, inputs in ((0, old), (1, new)):
        for i in inputs:
            r = normed.get(i.role)
            if r is None:
                r = normed[i.role] = norm_role(i.role)
            by_role.setdefault(r, ([], []))[side].append(i)
    out: list[InputChange] = []
    for r, (olds, news) in by_role.items():
        free: dict[str, deque[int]] = {}  # name -> indexes of unpaired new inputs, in order
        for j, n in enumerate(news):
            free.setdefault(n.name, deque()).append(j)
        used = [False] * len(news)
        pairs: list[tuple[InputDigest | None, InputDigest | None]] = []
        rest_old: list[InputDigest] = []
        for o in olds:  # same name first
            q = free.get(o.name)
            if q:
                j = q.popleft()
                used[j] = True
                pairs.append((o, news[j]))
            else:
                rest_old.append(o)
        rest_new = [n for j, n in enumerate(news) if not used[j]]
        k = min(len(rest_old), len(rest_new))
        pairs += list(zip(rest_old[:k], rest_new[:k], strict=True))
        pairs += [(o, None) for o in rest_old[k:]] + [(None, n) for n in rest_new[k:]]
        for was, now in pairs:
            if was is None:
                out.append(InputChange(r, "added", None, now))
            elif now is None:
                out.append(InputChange(r, "removed", was, None))
            elif (was.sha256, was.name, was.size) != (now.sha256, now.name, now.size):
                out.append(InputChange(r, "changed", was, now))
    return out


def eif_inputs(m: Manifest) -> tuple[InputDigest, ...]:
    """The inputs of an EIF manifest, plus a ``signing-certificate`` input derived from
    ``details.signing_certificate_sha256`` / ``details.signing_certificate_subject`` (where teeform's
    EIF builder records the PCR8 certificate) when no input of a certificate role is recorded."""
    sha = m.details.get("signing_certificate_sha256")
    if not isinstance(sha, str) or any(norm_role(i.role) in EIF_CERT_ROLES for i in m.inputs):
        return tuple(m.inputs)
    subject = m.details.get("signing_certificate_subject")
    return (*m.inputs, InputDigest("signing-certificate", subject if isinstance(subject, str) else "signing certificate", sha))


def diff_manifests(old: Manifest, new: Manifest, *, old_label: str = "old", new_label: str = "new") -> ManifestDiff:
    """Compare two manifests of the same kind (see the module docstring for the rules).

    Raises:
        TeeformError: the manifests are of different kinds.
    """
    if old.kind is not new.kind:
        raise TeeformError(f"cannot diff a {old.kind.value!r} manifest with a {new.kind.value!r} manifest",
                           hint="compare two builds of the same artifact kind")
    kind = old.kind
    deps, embeds = DEPENDENCIES[kind], EMBEDS[kind]
    if kind is ArtifactKind.EIF:
        inputs = _pair_inputs(eif_inputs(old), eif_inputs(new))
    else:
        inputs = _pair_inputs(old.inputs, new.inputs)
    sde_changed = old.source_date_epoch != new.source_date_epoch

    builder: list[str] = []
    if (old.builder.name, old.builder.version) != (new.builder.name, new.builder.version):
        builder.append(f"builder {old.builder.name} {old.builder.version} -> {new.builder.name} {new.builder.version}")
    if old.source_date_epoch != new.source_date_epoch:
        builder.append(f"SOURCE_DATE_EPOCH {old.source_date_epoch} -> {new.source_date_epoch} "
                       "(file timestamps inside images and filesystems)")

    order = list(mtable.names(kind.value))  # table order (teeform.measurements.MEASUREMENTS)
    names = sorted(dict.fromkeys([*old.measurements, *new.measurements]),
                   key=lambda n: (order.index(n) if n in order else len(order), n))
    changed_names = {n for n in names if old.measurements.get(n) != new.measurements.get(n)}
    changes: list[MeasurementChange] = []
    described = [i.describe() for i in inputs]  # once each: every changed measurement may list them
    for n in names:
        if n not in changed_names:
            continue
        roles = deps.get(n, frozenset())
        causes = [described[k] for k, i in enumerate(inputs) if i.role in roles]
        causes += [f"{e} changed ({WHY_EMBEDDED.get(e, 'it is embedded')})" for e in embeds.get(n, ()) if e in changed_names]
        if kind is ArtifactKind.EIF and sde_changed and n in EIF_SDE_MEASURED:
            causes.append(f"SOURCE_DATE_EPOCH changed ({old.source_date_epoch} -> {new.source_date_epoch}; it is the "
                          "mtime of every ramdisk entry)")
        if n == "ImageSha384" and "PCR0" in changed_names and not causes:
            causes.append("PCR0 changed (ImageSha384 equals PCR0)")
        explained = bool(causes)
        if not causes:
            causes = [f"possibly {b}" for b in builder] or [
                "no recorded input explains it (an input missing from the manifest changed, or the build is not reproducible)"]
        changes.append(MeasurementChange(n, old.measurements.get(n), new.measurements.get(n), tuple(causes), explained))

    notes: list[str] = []
    known = frozenset().union(*deps.values())
    for i, text in zip(inputs, described, strict=True):
        if i.role not in known:
            notes.append(f"{text}; role '{i.role}' is not in the {kind.value} dependency table, so no measurement "
                         "is attributed to it")
        elif not any(i.role in deps.get(n, frozenset()) for n in changed_names):
            notes.append(f"{text}, but no measurement that depends on it changed (same bytes, or an unmeasured part)")

    artifact: list[str] = []
    oa, na = old.artifact, new.artifact
    if oa.file_name != na.file_name:
        artifact.append(f"file name {oa.file_name} -> {na.file_name}")
    if oa.size != na.size:
        artifact.append(f"size {oa.size} -> {na.size} bytes ({na.size - oa.size:+d})")
    if oa.sha256 != na.sha256:
        artifact.append(f"sha256 {short(oa.sha256)} -> {short(na.sha256)}")
        if not changed_names and kind is ArtifactKind.EIF:
            notes.append("the EIF file changed but no PCR did: only unmeasured parts changed (EIF header, metadata or "
                         "signature section; eif-nitro.md §2.2)")
    if (old.name, old.version) != (new.name, new.version):
        artifact.append(f"name/version {old.name} {old.version} -> {new.name} {new.version}")
    detail_keys = sorted(k for k in set(old.details) | set(new.details) if old.details.get(k) != new.details.get(k))
    if detail_keys:
        notes.append("details changed: " + ", ".join(detail_keys))
    if "PCR8" in changed_names and changed_names <= {"PCR8"}:
        how = ("the same image is now signed" if "PCR8" not in old.measurements else
               "the same image is no longer signed" if "PCR8" not in new.measurements else
               "the same image was signed with another certificate")
        notes.append(f"only PCR8 changed: {how} (policies pinning PCR0/1/2 stay valid; those pinning PCR8 must change)")

    return ManifestDiff(kind, old_label, new_label, tuple(changes),
                        tuple(n for n in names if n not in changed_names), tuple(inputs), tuple(artifact),
                        tuple(builder), tuple(notes))


def diff_files(old_path: str, new_path: str) -> ManifestDiff:
    """Load two manifest files (validated) and diff them.

    Raises:
        TeeformError: a file is missing or invalid, or the kinds differ.
    """
    from teeform.manifest import load_manifest

    return diff_manifests(load_manifest(old_path), load_manifest(new_path), old_label=str(old_path), new_label=str(new_path))

