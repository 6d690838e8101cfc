#!/usr/bin/env python3
"""Regenerate the example-output blocks of README.md from real runs of the demos.

Usage (after ``scripts/setup.sh``)::

    .venv/bin/python scripts/readme-examples.py            # run the demos, rewrite README.md
    .venv/bin/python scripts/readme-examples.py --check    # run them, compare, change nothing
    .venv/bin/python scripts/readme-examples.py --only make-demo

Each block sits between ``<!-- BEGIN <name> -->`` and ``<!-- END <name> -->`` in README.md and is
replaced as a whole: a list of the inputs it was generated from (package, version and sha256, from the
set-up's lock record ``.cache/inputs.lock.json``, see teeform/inputs_lock.py), then the abridged output.
Abridging is deterministic: fixed anchor lines are kept, everything between them becomes ``...``; an
anchor that is missing from the output is an error (the demo's output format changed), never a
silently shorter block.

Blocks:

* ``make-demo``: ``scripts/demo.sh`` (EIF from Debian's kernel + busybox-static, ``teeform preview --stack
  dev``): the key policy's PCR0 condition, the stack outputs' measurements, the policy summary.
* ``gcp-demo``: ``scripts/gcp-demo.sh`` (``teeform build oci`` of the demo image, ``teeform preview --stack
  gcp``): the image digest, the Workload Identity Federation condition teeform writes for it, the outputs.
* ``pr-preview``: ``scripts/pr-demo.sh`` (two demo EIF builds, the PR comment of ``teeform preview diff
  --markdown``): the comment up to its resource list, and the KMS key's and launch template's blocks.
* ``vm-demo``: ``scripts/vm-demo.sh`` (UKI + dm-verity disk booted under QEMU + OVMF + swtpm): predicted
  and measured PCR 11, the root mount. A run whose PCR 11 does not match is refused.

* ``nitro-tpm-demo``: ``scripts/nitro-tpm-demo.sh`` (the vm-demo disk built without the boot, then ``teeform
  preview --stack nitro-tpm --json``): the KMS key's NitroTPM release statement(s) as the program wrote them,
  the NitroTPM outputs and the violations.

``--check`` exits 1 when a block differs from a fresh run. If the README's recorded inputs are not the
ones this machine's set-up fetched (Debian published a new kernel since the README was generated), the
comparison ignores hex digests and input lines only, so the *format* is still checked, and a note says
to regenerate. Every error is one line on stderr.
"""

from __future__ import annotations

import argparse
import difflib
import os
import re
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from teeform.errors import TeeformError  # noqa: E402
from teeform.fsutil import atomic_write_text  # noqa: E402
from teeform.inputs_lock import InputsLock, load_lock  # noqa: E402

README = REPO / "README.md"
SCRIPT = "scripts/readme-examples.py"
INPUT_LINE = re.compile(r"^- `(?P<name>[\w.-]+)`: (?P<package>\S+) (?P<version>\S+), sha256 `(?P<sha256>[0-9a-f]{64})`$")
PACKAGE_LINE = re.compile(r"^- tool `(?P<package>[\w.+-]+)` (?P<version>\S+)$")
HEX = re.compile(r"\b[0-9a-f]{64}(?:[0-9a-f]{32})?\b")


@dataclass(frozen=True)
class Block:
    """One generated README block: the command that produces its output, and how to abridge it."""

    name: str
    command: tuple[str, ...]
    inputs: tuple[str, ...]  # lock names of the inputs the output depends on
    abridge: Callable[[str], list[str]]
    tools: tuple[str, ...] = ()  # Debian packages whose tools shape the output (versions from the lock)


def _find(lines: Sequence[str], pattern: str, start: int = 0, block: str = "") -> int:
    rx = re.compile(pattern)
    for i in range(start, len(lines)):
        if rx.search(lines[i]):
            return i
    raise TeeformError(f"{block}: the output has no line matching {pattern!r} (did its format change? update {SCRIPT})")


def abridge_demo(out: str) -> list[str]:
    """The key policy's PCR0 condition, the Outputs up to kms_key_arn, and the policy summary."""
    lines = out.splitlines()
    key = _find(lines, r"^\s+\+ aws:kms/key:Key\s+agent-key-kms$", block="make-demo")
    pcr0 = _find(lines, r"StringEqualsIgnoreCase kms:RecipientAttestation:PCR0 in \[", key, "make-demo")
    outputs = _find(lines, r"^Outputs:$", pcr0, "make-demo")
    arn = _find(lines, r"^  kms_key_arn: ", outputs, "make-demo")
    # The policy summary ("Policies: ... no violations." or "Policy violations (...)" with each
    # violation), through the mandatory verdict line.
    policies = _find(lines, r"^(Policies: |Policy violations \()", arn, "make-demo")
    verdict = _find(lines, r"^(No mandatory violations\.|\d+ mandatory violation)", policies, "make-demo")
    return [lines[key], "      ...", lines[pcr0], "      ...", *lines[outputs:arn + 1], "  ...",
            *lines[policies:verdict + 1]]


def abridge_vm_demo(out: str) -> list[str]:
    """Predicted and measured PCR 11, the root mount (options and dm uuid shortened), and the verdict."""
    lines = out.splitlines()
    pred = _find(lines, r"^  predicted PCR11 \(manifest\): [0-9a-f]{64}$", block="vm-demo")
    meas = _find(lines, r"^  measured  PCR11 \(vTPM\)    : ", pred, "vm-demo")
    root = _find(lines, r"^  root mount                : ", meas, "vm-demo")
    verdict = _find(lines, r"^  (MATCH|MISMATCH)", root, "vm-demo")
    if not lines[verdict].startswith("  MATCH:"):
        raise TeeformError("vm-demo: the measured PCR 11 does not match the prediction; refusing to document it")
    mount = re.sub(r" (erofs|squashfs) ro,\S*", r" \1 ro,...", lines[root])
    mount = re.sub(r"CRYPT-VERITY-[0-9a-f]+-", "CRYPT-VERITY-...-", mount)
    return [lines[pred], lines[meas], mount, lines[verdict]]


def abridge_pr_preview(out: str) -> list[str]:
    """The PR comment of ``scripts/pr-demo.sh``: everything up to the resource list, then the detail blocks of
    the KMS key and the launch template (the others become ``...``). Code fences inside the comment are
    shown as ``~~~`` (the same fence in GitHub Markdown) so the comment fits in this block's fence."""
    lines = out.splitlines()
    if not lines or lines[0] != "<!-- teeform-preview -->":
        raise TeeformError(f"pr-preview: the output does not start with the comment marker (update {SCRIPT})")
    for anchor in (r"^\*\*Plan: \d+ to add, \d+ to change, \d+ to destroy\.\*\*$", r"^#### Key release$",
                   r"^#### Rollover windows", r"^#### Resources$"):
        _find(lines, anchor, block="pr-preview")
    first = _find(lines, r"^<details><summary><code>", _find(lines, r"^#### Resources$", block="pr-preview"), "pr-preview")
    keep = lines[:first]
    wanted = ("</code> agent-key-kms (update)</summary>", "</code> agent-host-lt (update)</summary>")
    for w in wanted:
        start = _find(lines, re.escape(w) + "$", first, "pr-preview")
        end = _find(lines, r"^</details>$", start, "pr-preview")
        keep += ["...", "", *lines[start:end + 1], ""]
    keep.append("...")
    return ["~~~" + line[3:] if line.startswith("```") else line for line in keep]


BLOCKS = {
    "make-demo": Block("make-demo", ("scripts/demo.sh",), ("kernel.vmlinuz", "busybox"), abridge_demo),
    "vm-demo": Block("vm-demo", ("scripts/vm-demo.sh",),
                     ("kernel.vmlinuz", "kernel.modules", "bookworm.stub", "busybox", "ovmf.code-4m", "ovmf.vars-4m"),
                     abridge_vm_demo, tools=("cryptsetup-bin", "erofs-utils", "qemu-system-x86", "swtpm")),
    "pr-preview": Block("pr-preview", ("scripts/pr-demo.sh",), ("kernel.vmlinuz", "busybox"), abridge_pr_preview),
}


def abridge_gcp_demo(out: str) -> list[str]:
    """The image digest from `build oci`, the provider's CEL condition, the GCP outputs, the verdict."""
    lines = out.splitlines()
    digest = _find(lines, r"^  image_digest  sha256:[0-9a-f]{64}$", block="gcp-demo")
    prov = _find(lines, r"^\s+\+ gcp:iam/workloadIdentityPoolProvider:WorkloadIdentityPoolProvider\s", digest, "gcp-demo")
    cond = _find(lines, r"^\s+condition: ", prov, "gcp-demo")
    grant = _find(lines, r"roles/cloudkms.cryptoKeyDecrypter -> principalSet://", cond, "gcp-demo")
    outputs = _find(lines, r"^Outputs:$", grant, "gcp-demo")
    wip = _find(lines, r"^  workload_identity_provider:", outputs, "gcp-demo")
    ref = _find(lines, r"^    agent-cs: \S+@sha256:[0-9a-f]{64}$", wip, "gcp-demo")  # image_reference of agent-cs
    verdict = _find(lines, r"^No mandatory violations\.$", ref, "gcp-demo")
    return [lines[digest], "...", *lines[prov:cond + 1], lines[grant - 1], lines[grant], "...",
            lines[outputs], "...", *lines[wip:ref + 1], "...", lines[verdict]]


BLOCKS["gcp-demo"] = Block("gcp-demo", ("scripts/gcp-demo.sh",), ("busybox",), abridge_gcp_demo)


def abridge_nitro_tpm_demo(out: str) -> list[str]:
    """From the preview document: the ``NitroTpmRelease*`` statements of the ``aws:kms/key:Key``'s ``policy``
    input (parsed from its JSON string, pretty-printed), ``outputs.nitrotpm_measurements``, ``ami_id``,
    ``instance_id``, ``kms_key_arn``, and every violation. A missing part is an error, as a missing anchor."""
    import json

    name = "nitro-tpm-demo"
    try:
        doc = json.loads(out)
    except ValueError as exc:
        raise TeeformError(f"{name}: the output is not a JSON preview document ({exc}; update {SCRIPT})") from None
    keys = [r for r in doc.get("resources", []) if r.get("type") == "aws:kms/key:Key"]
    if len(keys) != 1:
        raise TeeformError(f"{name}: expected one aws:kms/key:Key in the preview, found {len(keys)} (update {SCRIPT})")
    key = keys[0]
    policy = json.loads(key["inputs"]["policy"])
    release = [st for st in policy.get("Statement", []) if str(st.get("Sid", "")).startswith("NitroTpmRelease")]
    outputs = doc.get("outputs", {})
    missing = [k for k in ("nitrotpm_measurements", "ami_id", "instance_id", "kms_key_arn") if k not in outputs]
    if not release or missing:
        raise TeeformError(f"{name}: the preview has no {'NitroTpmRelease statement' if not release else missing} "
                           f"(did its format change? update {SCRIPT})")
    lines = [f"resources[{key['type']} {key['name']}].inputs.policy (a JSON string), "
             f"its {len(release)} NitroTPM release statement(s) of {len(policy['Statement'])}:"]
    for st in release:
        lines += json.dumps(st, indent=2).splitlines()
    lines.append("...")
    for target, values in outputs["nitrotpm_measurements"].items():
        lines.append(f"outputs.nitrotpm_measurements.{target}:")
        lines += [f"  {k}: {v}" for k, v in values.items()]
    lines += [f"outputs.{k}: {outputs[k]}" for k in ("ami_id", "instance_id", "kms_key_arn")]
    viol = doc.get("violations", [])
    mandatory = sum(1 for v in viol if v.get("enforcementLevel") == "mandatory")
    lines.append(f"violations: {len(viol)} ({mandatory} mandatory)")
    lines += [f"  [{v.get('enforcementLevel')}] {v.get('policy')} ({v.get('resourceType')} {v.get('resourceName')})"
              for v in viol]
    return lines


BLOCKS["nitro-tpm-demo"] = Block("nitro-tpm-demo", ("scripts/nitro-tpm-demo.sh",),
                                 ("kernel.vmlinuz", "bookworm.stub", "busybox"), abridge_nitro_tpm_demo,
                                 tools=("cryptsetup-bin", "erofs-utils"))


def input_lines(lock: InputsLock, block: Block) -> list[str]:
    """``- `name`: package version, sha256 `hex``` per input, ``- tool `package` version`` per tool package
    (the forms :data:`INPUT_LINE` and :data:`PACKAGE_LINE` parse)."""
    lines = [f"- `{n}`: {lock.get(n).package} {lock.get(n).version}, sha256 `{lock.get(n).sha256}`"
             for n in block.inputs]
    for p in block.tools:
        if p not in lock.packages:
            raise TeeformError(f"{block.name}: package {p} is not in the lock's packages", path=lock.path)
        lines.append(f"- tool `{p}` {lock.packages[p]}")
    return lines


def render(block: Block, lock: InputsLock, output: str) -> str:
    """The text between the markers (without them)."""
    return "\n".join([
        f"Generated by `{SCRIPT}` from a real run of `{' '.join(block.command)}` (abridged: `...` marks",
        "left-out lines), with these inputs from the set-up's lock record (`.cache/inputs.lock.json`):",
        "",
        *input_lines(lock, block),
        "",
        "```",
        *block.abridge(output),
        "```",
    ])


def markers(name: str) -> tuple[str, str]:
    return f"<!-- BEGIN {name} -->", f"<!-- END {name} -->"


def split_readme(text: str, name: str) -> tuple[str, str, str]:
    """``(before, block body, after)``; the markers must appear exactly once each, BEGIN first."""
    begin, end = markers(name)
    if text.count(begin) != 1 or text.count(end) != 1:
        raise TeeformError(f"README.md must contain {begin} and {end} exactly once each")
    head, rest = text.split(begin + "\n", 1) if begin + "\n" in text else (None, None)
    if head is None or end not in rest:
        raise TeeformError(f"README.md: {begin} must start a line and come before {end}")
    body, tail = rest.split(end, 1)
    return head + begin + "\n", body.rstrip("\n"), end + tail


def recorded_inputs(body: str) -> dict[str, tuple[str, ...]]:
    """``{name: (package, version, sha256)}`` and ``{"tool <package>": (version,)}`` from a block body."""
    found: dict[str, tuple[str, ...]] = {}
    for line in body.splitlines():
        if m := INPUT_LINE.match(line):
            found[m["name"]] = (m["package"], m["version"], m["sha256"])
        elif m := PACKAGE_LINE.match(line):
            found[f"tool {m['package']}"] = (m["version"],)
    return found


def current_inputs(block: Block, lock: InputsLock) -> dict[str, tuple[str, ...]]:
    """The same mapping for this machine's lock record."""
    want: dict[str, tuple[str, ...]] = {n: (lock.get(n).package, lock.get(n).version, lock.get(n).sha256)
                                        for n in block.inputs}
    want.update({f"tool {p}": (lock.packages.get(p, "?"),) for p in block.tools})
    return want


def run_block(block: Block) -> str:
    """Run the block's command in the checkout; its stdout (stderr is passed through on failure)."""
    env = {**os.environ, "SOURCE_DATE_EPOCH": os.environ.get("SOURCE_DATE_EPOCH", "1700000000")}
    r = subprocess.run(list(block.command), cwd=REPO, capture_output=True, text=True, env=env)
    if r.returncode != 0:
        sys.stderr.write(r.stderr[-4000:])
        raise TeeformError(f"{block.name}: {' '.join(block.command)} exited with status {r.returncode}")
    return r.stdout


def compare(name: str, old: str, new: str, lock: InputsLock) -> tuple[bool, str]:
    """``(ok, message)`` for ``--check``: exact when the README's inputs are this machine's, else format only."""
    want = current_inputs(BLOCKS[name], lock)
    same_inputs = recorded_inputs(old) == want
    if same_inputs:
        if old == new:
            return True, f"{name}: up to date"
        diff = "".join(difflib.unified_diff(old.splitlines(True), new.splitlines(True), "README.md", "fresh run"))
        return False, f"{name}: README block differs from a fresh run with the same inputs (run {SCRIPT})\n{diff}"

    def mask(text: str) -> list[str]:
        return [HEX.sub("<hex>", line) for line in text.splitlines()
                if not INPUT_LINE.match(line) and not PACKAGE_LINE.match(line)]

    if mask(old) != mask(new):
        diff = "".join(difflib.unified_diff([x + "\n" for x in mask(old)], [x + "\n" for x in mask(new)],
                                            "README.md", "fresh run"))
        return False, f"{name}: README block's format differs from a fresh run (run {SCRIPT})\n{diff}"
    return True, (f"{name}: note: generated from other inputs than this set-up's ({', '.join(sorted(want))}); "
                  f"the format matches, the digests are those of the recorded inputs (run {SCRIPT} to refresh)")


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="compare with a fresh run; do not write README.md")
    ap.add_argument("--only", choices=sorted(BLOCKS), action="append", help="only this block (repeatable)")
    args = ap.parse_args(argv)
    try:
        lock = load_lock(REPO)
        text = README.read_text(encoding="utf-8")
        ok = True
        for name in args.only or list(BLOCKS):
            head, old, tail = split_readme(text, name)
            print(f"running {' '.join(BLOCKS[name].command)} for README block {name} ...", file=sys.stderr)
            new = render(BLOCKS[name], lock, run_block(BLOCKS[name]))
            if args.check:
                good, msg = compare(name, old, new, lock)
                print(msg, file=sys.stderr)
                ok = ok and good
            else:
                text = head + new + "\n" + tail
        if not args.check:
            atomic_write_text(README, text)
            print(f"rewrote {', '.join(args.only or BLOCKS)} in README.md", file=sys.stderr)
    except TeeformError as exc:
        print(f"error: {exc}" + (f" ({exc.hint})" if exc.hint else ""), file=sys.stderr)
        return 1
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
