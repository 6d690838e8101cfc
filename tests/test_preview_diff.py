"""`teeform preview --json` as a stable format, and `teeform preview diff BASE HEAD` over real builds.

Oracles: the JSON Schema is checked with the ``jsonschema`` library's own validator (and the schema
itself against the 2020-12 meta-schema); the measurements the key policy must release to are read from
the manifests ``teeform build eif`` wrote (not from the diff); user data is decoded with the standard
library's ``base64``/``gzip``; the window arithmetic is calendar arithmetic done here with ``datetime``.
"""

from __future__ import annotations

import base64
import datetime as dt
import gzip
import json
import shutil
from pathlib import Path

import jsonschema
import pytest
import yaml
from pulumi_support import REPO, write_fake_eif_manifest

from teeform.cli import main
from teeform.preview_diff import MARKER, decode_script, diff_previews, policy_sets

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

SCHEMA = json.loads((REPO / "teeform" / "schema" / "preview.schema.json").read_text())


def run(capsys, *args: str) -> tuple[int, str, str]:
    rc = main(list(args))
    out, err = capsys.readouterr()
    return rc, out, err


def repo_stack_with(tmp_path: Path, env: str, manifests: list, **changes) -> Path:
    doc = yaml.safe_load((REPO / "stacks" / f"Pulumi.{env}.yaml").read_text())
    for t in doc["config"]["teeform:targets"]:
        t["manifests"] = manifests
        t.update(changes)
    from test_signing import sign_for_repo_stack  # prod pins the demo's signing key: use a test key

    paths = [Path(m["path"] if isinstance(m, dict) else m) for m in manifests]
    if paths:
        sign_for_repo_stack(doc, paths[0], tmp_path, *paths[1:])
    path = tmp_path / f"Pulumi.{env}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


# ------------------------------------------------------------------------------------- the format
def test_schema_is_a_valid_2020_12_schema():
    jsonschema.Draft202012Validator.check_schema(SCHEMA)


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_real_preview_output_validates(tmp_path, capsys, env):
    img = write_fake_eif_manifest(tmp_path / "build")
    stack = repo_stack_with(tmp_path, env, [str(img.manifest_path)])
    rc, out, err = run(capsys, "preview", "--project-dir", str(REPO), "--stack", env, "--stack-file", str(stack), "--json",
                       "--today", "2026-01-01")
    assert rc == 0, err
    doc = json.loads(out)
    jsonschema.Draft202012Validator(SCHEMA).validate(doc)
    assert list(doc)[:2] == ["format", "schemaVersion"] and doc["schemaVersion"] == 1
    assert doc["clock"] == {"date": "2026-01-01", "source": "--today"}
    assert doc["projectDir"] == str(REPO)
    [m] = doc["manifests"]
    assert m["deployed"] and m["until"] is None and m["manifest"] == json.loads(img.manifest_path.read_text())
    for r in doc["resources"]:  # stable ordering: keys sorted at every level of inputs
        def check(v):
            if isinstance(v, dict):
                assert list(v) == sorted(v)
                for x in v.values():
                    check(x)
            elif isinstance(v, list):
                for x in v:
                    check(x)
        check(r["inputs"])
    levels = [v["enforcementLevel"] == "mandatory" for v in doc["violations"]]
    assert levels == sorted(levels, reverse=True)


def test_schema_rejects_drift(tmp_path, capsys):
    img = write_fake_eif_manifest(tmp_path / "build")
    stack = repo_stack_with(tmp_path, "dev", [str(img.manifest_path)])
    _, out, _ = run(capsys, "preview", "--project-dir", str(REPO), "--stack", "dev", "--stack-file", str(stack), "--json")
    doc = json.loads(out)
    doc["surprise"] = 1
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, SCHEMA)


def test_preview_without_stack_is_a_usage_error(capsys):
    rc, _, err = run(capsys, "preview", "--project-dir", str(REPO))
    assert rc == 2 and "Missing option '--stack'" in err


# ----------------------------------------------------------------------------- two real builds
def _build_eif(tmp: Path, monkeypatch, out: Path, app: bytes, version: str) -> Path:
    """`teeform build eif` of a tiny OCI image whose one file holds ``app`` (as test_measurements_diff)."""
    from image_builder.inputs.demo_image import LayerEntry, image_config, layer_blob, write_oci_layout

    blobs = tmp / "blobs"
    if not blobs.exists():
        blobs.mkdir()
        for n, data in (("bzImage", b"kernel"), ("init", b"init-1"), ("nsm.ko", b"nsm")):
            (blobs / n).write_bytes(data)
    img = tmp / f"img-{app.hex()}"
    if not img.exists():
        blob = layer_blob(tmp / "layers", [LayerEntry("app/agent", "file", app, mode=0o755)], mtime=0)
        write_oci_layout(img, [blob], image_config([blob.diff_id], cmd=["/app/agent"], env=["PATH=/bin"], created=0),
                         ref_name="agent:1")
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    assert main(["build", "eif", "--image", str(img), "--kernel", str(blobs / "bzImage"), "--init", str(blobs / "init"),
                 "--nsm", str(blobs / "nsm.ko"), "--cmdline", "console=ttyS0", "--name", "openclaw-agent",
                 "--version", version, "--out", str(out)]) == 0
    monkeypatch.delenv("SOURCE_DATE_EPOCH")
    return out / "openclaw-agent.manifest.json"


def _checkout(root: Path) -> Path:
    """A copy of the project (program, policy pack, stacks) in ``root``, as a second git checkout would be."""
    root.mkdir(parents=True)
    for f in ("Pulumi.yaml", "__main__.py"):
        shutil.copy2(REPO / f, root / f)
    shutil.copytree(REPO / "policies", root / "policies", ignore=shutil.ignore_patterns("venv", "__pycache__"))
    shutil.copytree(REPO / "stacks", root / "stacks")
    return root


def _preview(capsys, project: Path, manifests: list, out: Path, today: str, **changes) -> dict:
    stack = repo_stack_with(project / "stacks", "dev", manifests, **changes)
    rc, text, err = run(capsys, "preview", "--project-dir", str(project), "--stack", "dev", "--stack-file", str(stack),
                        "--json", "--today", today)
    assert rc == 0, err
    out.write_text(text)
    return json.loads(text)


@pytest.fixture(scope="module")
def two_builds(tmp_path_factory):
    """base: v1 deployed; head: v2 (another application image) deployed, v1 kept until 2026-01-31, 6 GiB enclave."""
    mp = pytest.MonkeyPatch()
    tmp = tmp_path_factory.mktemp("pr")
    base, head = _checkout(tmp / "base"), _checkout(tmp / "head")
    v1_base = _build_eif(tmp, mp, base / "build" / "v1", b"agent v1", "1.0.0")
    v1_head = _build_eif(tmp, mp, head / "build" / "v1", b"agent v1", "1.0.0")
    v2_head = _build_eif(tmp, mp, head / "build" / "v2", b"agent v2", "1.1.0")
    mp.undo()
    return {"tmp": tmp, "base": base, "head": head, "v1": v1_base, "v1_head": v1_head, "v2": v2_head}


def _capsys_free_preview(project: Path, manifests: list, out: Path, today: str, **changes) -> dict:
    from teeform.preview import run_preview, to_json

    stack = repo_stack_with(project / "stacks", "dev", manifests, **changes)
    doc = to_json(run_preview(project, "dev", stack_file=stack, today=today))
    out.write_text(json.dumps(doc, indent=2))
    return doc


@pytest.fixture(scope="module")
def pr_docs(two_builds):
    b = two_builds
    base = _capsys_free_preview(b["base"], ["build/v1/openclaw-agent.manifest.json"], b["tmp"] / "base.json", "2026-01-01")
    head = _capsys_free_preview(
        b["head"], ["build/v2/openclaw-agent.manifest.json", {"path": "build/v1/openclaw-agent.manifest.json", "until": "2026-01-31"}],
        b["tmp"] / "head.json", "2026-01-01", enclave={"cpuCount": 2, "memoryMib": 6144})
    return base, head


def test_two_checkouts_of_the_same_build_compare_equal(two_builds, pr_docs, tmp_path):
    b = two_builds
    assert b["v1"].read_bytes() == b["v1_head"].read_bytes()  # reproducible build, two directories
    again = _capsys_free_preview(b["head"], ["build/v1/openclaw-agent.manifest.json"], tmp_path / "again.json", "2026-01-01")
    base, _ = pr_docs
    assert base["projectDir"] != again["projectDir"]
    d = diff_previews(base, again)
    assert d.summary == "Plan: 0 to add, 0 to change, 0 to destroy."
    assert d.resources == () and d.key_release == () and d.measurements == () and d.outputs == ()


def test_pr_diff_of_two_real_builds(two_builds, pr_docs, capsys):
    b = two_builds
    base_json, head_json = b["tmp"] / "base.json", b["tmp"] / "head.json"
    v1 = json.loads(b["v1"].read_text())
    v2 = json.loads(b["v2"].read_text())
    assert v1["measurements"]["PCR1"] == v2["measurements"]["PCR1"] and v1["measurements"]["PCR2"] != v2["measurements"]["PCR2"]

    rc, md, _ = run(capsys, "preview", "diff", str(base_json), str(head_json), "--markdown")
    assert rc == 0 and md.startswith(MARKER + "\n")
    assert ":white_check_mark: No mandatory policy violations." in md
    # key release: the KMS key now also releases to v2's tuple (values from the builder's manifest); v1 kept
    d = diff_previews(*pr_docs)
    kms = next(k for k in d.key_release if k.resource == "aws:kms/key:Key agent-key-kms")
    pins = ("PCR0", "PCR1", "PCR2", "ImageSha384")  # stacks/Pulumi.dev.yaml attestation: PCR0-2 + imageSha384
    assert [dict(s.values) for s in kms.added] == [{k: v2["measurements"][k] for k in pins}]
    assert kms.removed == () and kms.kept == 1
    assert "agent/openclaw-agent@1.1.0" in kms.added[0].manifest
    assert "`aws:kms/key:Key agent-key-kms`: 1 allowed set(s) added, 0 removed, 1 kept" in md
    rand = next(k for k in d.key_release if k.resource == "aws:iam/rolePolicy:RolePolicy agent-key-generate-random")
    assert len(rand.added) == 1 and rand.kept == 1  # GenerateRandom is gated by the same tuples
    # measurements: PCR2 and PCR0 changed because of the image; PCR1 unchanged
    [(target, md_diff)] = d.measurements
    ch = {m.name: m for m in md_diff.measurements}
    assert target == "agent" and set(ch) == {"PCR0", "PCR2", "ImageSha384"} and "PCR1" in md_diff.unchanged
    assert "input 'image' changed" in ch["PCR2"].sentence()
    assert "| PCR2 |" in md and "input 'image' changed" in md
    # user data decoded and diffed as a script
    lt = next(r for r in d.resources if r.name == "agent-host-lt")
    [script] = lt.scripts
    assert script.encoding == "base64" and "-memory_mib: 4096" in script.lines and "+memory_mib: 6144" in script.lines
    raw = next(r for r in pr_docs[1]["resources"] if r["name"] == "agent-host-lt")["inputs"]["userData"]
    assert "memory_mib: 6144" in base64.b64decode(raw).decode()
    assert "+nitro-cli run-enclave --eif-path /opt/teeform/enclave.eif --cpu-count 2 --memory 6144" in md
    # rollover window: v1 has (2026-01-31 - 2026-01-01) days left in head, none in base
    left = (dt.date(2026, 1, 31) - dt.date(2026, 1, 1)).days
    w = next(w for w in d.windows if w.manifest.startswith("openclaw-agent@1.0.0"))
    assert w.base is not None and w.base["until"] is None and w.head is not None and w.head["daysLeft"] == left
    assert f"no window | {left} days left (until 2026-01-31)" in md
    # summary: manifests are renamed name@version when a target lists two builds of one name
    assert d.summary == f"Plan: 2 to add, {d.count('update')} to change, 1 to destroy."
    assert f"**{d.summary}**" in md
    assert md.count("<details><summary><code>") == len(d.resources) + 1  # + the stack outputs block
    # no absolute checkout path leaks into the comment
    assert str(b["base"]) not in md and str(b["head"]) not in md
    # text and JSON forms
    rc, text, _ = run(capsys, "preview", "diff", str(base_json), str(head_json))
    assert rc == 0 and d.summary in text and "key release aws:kms/key:Key agent-key-kms: +1 -0 =1" in text
    rc, js, _ = run(capsys, "preview", "diff", str(base_json), str(head_json), "--json")
    j = json.loads(js)
    assert j["counts"] == {"add": 2, "change": d.count("update"), "destroy": 1}


def test_markdown_is_capped_and_full_report_written(two_builds, pr_docs, capsys, tmp_path):
    base, head = pr_docs
    many = json.loads(json.dumps(head))
    proto = next(r for r in many["resources"] if r["name"] == "agent-host-lt")
    for i in range(400):  # 400 new launch templates: ~400 detail blocks with a 6 KiB script each
        many["resources"].append({**proto, "name": f"lt-{i}", "urn": proto["urn"] + f"-{i}"})
    big = tmp_path / "big.json"
    big.write_text(json.dumps(many))
    full = tmp_path / "summary.md"
    rc, md, _ = run(capsys, "preview", "diff", str(two_builds["tmp"] / "base.json"), str(big), "--markdown",
                    "--full-report", str(full))
    assert rc == 0
    assert len(md) <= 65_000 + 1  # + click's newline
    assert "Plan: 402 to add" in md and ":warning: **Truncated**" in md and "the full report is in the job summary" in md
    report = full.read_text()
    assert len(report) > 65_000 and "Truncated" not in report and report.count("lt-399") >= 1
    # a small cap keeps the summary and the key-release section
    small = diff_previews(base, head).render_markdown(max_chars=3000)
    assert len(small) <= 3000 and "Plan: 2 to add" in small and "#### Key release" in small


def test_violations_come_first(pr_docs):
    base, head = (json.loads(json.dumps(x)) for x in pr_docs)
    head["violations"].append({"policy": "no-public-ingress", "enforcementLevel": "mandatory", "severity": "high",
                               "message": "opens port 22", "resourceType": "aws:vpc/x:Y", "resourceName": "r", "urn": "u"})
    md = diff_previews(base, head).render_markdown()
    assert md.index("mandatory policy violation") < md.index("Plan:") < md.index("#### Key release")
    assert "- **new** `no-public-ingress` on `aws:vpc/x:Y r`: opens port 22" in md
    md2 = diff_previews(head, base).render_markdown()
    assert "Resolved by this change: `no-public-ingress` on `aws:vpc/x:Y r`" in md2


# ------------------------------------------------------------------------------------ bad input
def test_bad_inputs_are_one_line(tmp_path, capsys, pr_docs):
    base, head = pr_docs
    good = tmp_path / "good.json"
    good.write_text(json.dumps(base))
    rc, out, err = run(capsys, "preview", "diff", str(good), str(tmp_path / "missing.json"))
    assert rc == 2 and out == "" and err.startswith(f"error: {tmp_path / 'missing.json'}: ") and "Traceback" not in err
    old = tmp_path / "old.json"
    old.write_text(json.dumps({k: v for k, v in base.items() if k not in ("format", "schemaVersion")}))
    rc, _, err = run(capsys, "preview", "diff", str(old), str(good))
    assert rc == 2 and err.splitlines()[0] == f"error: {old}: schemaVersion: schemaVersion must be 1, got None"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**base, "resources": [{**base["resources"][0], "urn": 5}]}))
    rc, _, err = run(capsys, "preview", "diff", str(good), str(bad))
    assert rc == 2 and err.splitlines()[0].startswith(f"error: {bad}: resources[0].urn: ")
    other = tmp_path / "other.json"
    other.write_text(json.dumps({**head, "stack": "prod"}))
    rc, _, err = run(capsys, "preview", "diff", str(good), str(other))
    assert rc == 2 and "different stacks: 'dev' and 'prod'" in err
    (tmp_path / "dup.json").write_text('{"schemaVersion": 1, "schemaVersion": 1}')
    rc, _, err = run(capsys, "preview", "diff", str(good), str(tmp_path / "dup.json"))
    assert rc == 2 and "duplicate" in err.lower()


# -------------------------------------------------------------------------------------- helpers
def test_decode_script_base64_and_gzip():
    script = "#!/bin/bash\necho hi\n"
    assert decode_script(base64.b64encode(script.encode()).decode()) == ("base64", script)
    assert decode_script(base64.b64encode(gzip.compress(script.encode())).decode()) == ("base64+gzip", script)
    assert decode_script("#cloud-config\nruncmd: [ls]\n") == ("text", "#cloud-config\nruncmd: [ls]\n")
    assert decode_script(base64.b64encode(b"\xff\xfe\x00binary").decode()) is None


def test_policy_sets_follow_iam_semantics():
    doc = {"Statement": [
        {"Sid": "A", "Effect": "Allow", "Action": "kms:Decrypt",
         "Condition": {"StringEqualsIgnoreCase": {"kms:RecipientAttestation:PCR0": ["AA", "bb"],
                                                  "kms:RecipientAttestation:PCR1": "cc"}}},
        {"Sid": "Admin", "Effect": "Allow", "Action": "kms:*"},
        {"Sid": "D", "Effect": "Deny", "Condition": {"StringEquals": {"kms:RecipientAttestation:PCR0": "dd"}}},
    ]}
    got = [(s.manifest_key, dict(s.values), a) for s, a in policy_sets(doc)]
    # values of one key are ORed: the statement allows two tuples; Deny and unconditioned statements release nothing
    assert got == [("A", {"PCR0": "aa", "PCR1": "cc"}, ("kms:Decrypt",)), ("A", {"PCR0": "bb", "PCR1": "cc"}, ("kms:Decrypt",))]


def test_missing_base_reads_as_empty_stack(tmp_path, capsys, pr_docs):
    _, head = pr_docs
    h = tmp_path / "head.json"
    h.write_text(json.dumps(head))
    (tmp_path / "base.json").write_text("")
    rc, md, _ = run(capsys, "preview", "diff", str(tmp_path / "base.json"), str(h), "--markdown", "--allow-missing-base")
    n = sum(1 for r in head["resources"] if r["type"] != "pulumi:pulumi:Stack")
    assert rc == 0 and f"Plan: {n} to add, 0 to change, 0 to destroy." in md and "base.json is unavailable" in md
    rc, _, err = run(capsys, "preview", "diff", str(tmp_path / "base.json"), str(h))
    assert rc == 2 and str(tmp_path / "base.json") in err
