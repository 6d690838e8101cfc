"""Rollover windows: `{path, until}` manifest entries, days left in the preview, the policy
`rollover-window-expired`, and `teeform rollover plan`.

Oracles: calendar arithmetic with ``datetime`` written here; 1700000000 s after the epoch is
2023-11-14T22:13:20Z (date(1) of GNU coreutils: ``date -u -d @1700000000``); the key policy's values
come from the manifests the test writes.
"""

from __future__ import annotations

import datetime as dt
import json

import pytest
import yaml
from pulumi_support import REPO, nitro_target, resource, write_fake_eif_manifest, write_stack_file

from teeform.cli import main
from teeform.errors import TeeformError
from teeform.rollover import describe_window, parse_until, resolve_today, window
from teeform.stack import load_stack

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def run(capsys, *args: str) -> tuple[int, str, str]:
    rc = main(list(args))
    out, err = capsys.readouterr()
    return rc, out, err


# ------------------------------------------------------------------------------ stack entries
def test_manifest_entries_may_carry_until(tmp_path):
    a = write_fake_eif_manifest(tmp_path / "a", version="1")
    b = write_fake_eif_manifest(tmp_path / "b", version="2")
    f = write_stack_file(tmp_path / "Pulumi.dev.yaml", [nitro_target([b.manifest_path])])
    text = f.read_text()
    assert f"  - {b.manifest_path}\n" in text
    # an unquoted YAML date (PyYAML: datetime.date) as in a hand-written stack file
    f.write_text(text.replace(f"  - {b.manifest_path}\n",
                              f"  - {b.manifest_path}\n    - {{path: {a.manifest_path}, until: 2026-12-31}}\n"))
    cfg = load_stack(REPO, "dev", f)
    t = cfg.targets[0]
    assert t.manifests == (str(b.manifest_path), str(a.manifest_path))
    assert t.manifest_until == (None, "2026-12-31") and t.until_of(1) == "2026-12-31" and t.until_of(5) is None


@pytest.mark.parametrize("entry, field, message", [
    ({"path": "x.json", "until": "2026-02-30"}, "manifests[0].until", "not a calendar date: '2026-02-30'"),
    ({"path": "x.json", "until": "31.12.2026"}, "manifests[0].until", "must be a date written YYYY-MM-DD, got '31.12.2026'"),
    ({"path": "x.json", "until": 20261231}, "manifests[0].until", "must be a date written YYYY-MM-DD, got 20261231"),
    ({"path": "x.json", "untill": "2026-12-31"}, "manifests[0]", "unknown key(s) ['untill']"),
    ({"until": "2026-12-31"}, "manifests[0]", "missing required key 'path'"),
    ({"path": 5}, "manifests[0].path", "must be a string"),
])
def test_bad_entries_are_one_line(tmp_path, capsys, entry, field, message):
    f = write_stack_file(tmp_path / "Pulumi.dev.yaml", [nitro_target([])])
    doc = yaml.safe_load(f.read_text())
    doc["config"]["teeform:targets"][0]["manifests"] = [entry]
    f.write_text(yaml.safe_dump(doc))
    rc, out, err = run(capsys, "preview", "--project-dir", str(REPO), "--stack", "dev", "--stack-file", str(f))
    assert rc == 2 and out == ""
    line = err.splitlines()[0]
    assert line.startswith(f"error: {f}: teeform:targets[0].{field}: ") and message in line, line
    assert "Traceback" not in err


def test_parse_until_refuses_a_datetime():
    with pytest.raises(TeeformError, match="without a time"):
        parse_until(dt.datetime(2026, 1, 1, 12, 0), "s", "f")
    assert parse_until(dt.date(2026, 1, 2), "s", "f") == "2026-01-02"


# ----------------------------------------------------------------------------------- the clock
def test_clock_sources():
    assert resolve_today("2026-03-01").to_json() == {"date": "2026-03-01", "source": "--today"}
    c = resolve_today(env={"SOURCE_DATE_EPOCH": "1700000000"})
    assert c.today == dt.date(2023, 11, 14) and c.source == "SOURCE_DATE_EPOCH=1700000000"
    assert resolve_today(env={}).source == "system clock (UTC)"
    with pytest.raises(TeeformError, match="non-negative integer"):
        resolve_today(env={"SOURCE_DATE_EPOCH": "-5"})


def test_window_arithmetic():
    today = dt.date(2026, 2, 20)
    for until in ("2026-02-20", "2026-02-21", "2026-03-01", "2026-02-19", "2025-12-31"):
        left = (dt.date.fromisoformat(until) - today).days
        assert window(until, today) == {"until": until, "daysLeft": left, "expired": left < 0}
    assert describe_window(window("2026-02-20", today)) == "last day (until 2026-02-20)"
    assert describe_window(window("2026-03-01", today)) == "9 days left (until 2026-03-01)"
    assert describe_window(window("2026-02-19", today)) == "EXPIRED 1 day ago (until 2026-02-19)"
    assert window(None, today) == {"until": None, "daysLeft": None, "expired": False}


# ---------------------------------------------------------------------- preview and the policy
def _stack(tmp_path, env: str, until: str) -> tuple:
    old = write_fake_eif_manifest(tmp_path / "old", version="1.0.0")
    new = write_fake_eif_manifest(tmp_path / "new", version="2.0.0")
    doc = yaml.safe_load((REPO / "stacks" / f"Pulumi.{env}.yaml").read_text())
    for t in doc["config"]["teeform:targets"]:
        t["manifests"] = [str(new.manifest_path), {"path": str(old.manifest_path), "until": until}]
    from test_signing import sign_for_repo_stack  # prod pins the demo's signing key: use a test key

    sign_for_repo_stack(doc, new.manifest_path, tmp_path, old.manifest_path)
    f = tmp_path / f"Pulumi.{env}.yaml"
    f.write_text(yaml.safe_dump(doc))
    return f, old, new


def test_preview_shows_days_left(tmp_path, capsys):
    f, old, _ = _stack(tmp_path, "dev", "2026-01-31")
    rc, out, _ = run(capsys, "preview", "--project-dir", str(REPO), "--stack", "dev", "--stack-file", str(f), "--today", "2026-01-01")
    assert rc == 0
    left = (dt.date(2026, 1, 31) - dt.date(2026, 1, 1)).days
    assert "Rollover windows (days left per allowed manifest; clock 2026-01-01 from --today):" in out
    assert f"  agent: openclaw-agent@1.0.0 (old, {old.manifest_path}): {left} days left (until 2026-01-31)" in out
    rc, out, _ = run(capsys, "preview", "--project-dir", str(REPO), "--stack", "dev", "--stack-file", str(f), "--today",
                     "2026-01-01", "--json")
    doc = json.loads(out)
    [m] = [m for m in doc["manifests"] if m["until"]]
    assert (m["daysLeft"], m["expired"], m["deployed"]) == (left, False, False)
    mm = next(r for r in doc["resources"] if r["name"] == "agent-manifest-openclaw-agent@1.0.0")
    assert mm["inputs"]["until"] == "2026-01-31"  # the window reaches the policy through the component


@pytest.mark.parametrize("env, level, rc_expected", [("prod", "mandatory", 1), ("dev", "advisory", 0)])
def test_expired_window_refuses_the_key(tmp_path, capsys, env, level, rc_expected):
    f, old, _ = _stack(tmp_path, env, "2026-01-31")
    args = ("preview", "--project-dir", str(REPO), "--stack", env, "--stack-file", str(f))
    rc, out, _ = run(capsys, *args, "--today", "2026-01-31")  # the last day: still allowed
    assert "rollover-window-expired" not in out
    rc, out, _ = run(capsys, *args, "--today", "2026-02-03")
    assert rc == rc_expected, out
    assert f"  [{level}] rollover-window-expired (aws:kms/key:Key: agent-key-kms)" in out
    assert ("still releases the key to manifest 'openclaw-agent' of target 'agent', whose rollover window ended on "
            "2026-01-31 (3 days ago; clock 2026-02-03 from TEEFORM_TODAY=2026-02-03)") in out
    assert "EXPIRED 3 days ago (until 2026-01-31)" in out


def test_policy_unit_cases():
    from pulumi_support import fake_hex, policy_violations

    def manifest(name, target, until, label):
        return resource("teeform:index:MeasurementManifest", {
            "target": target, "name": name, "until": until,
            "measurements": {"PCR0": fake_hex(label + "0"), "PCR1": fake_hex(label + "1")}}, f"{target}-manifest-{name}")

    def key(target, *labels):
        stmts = [{"Sid": f"R{i}", "Effect": "Allow", "Action": "kms:Decrypt", "Condition": {"StringEqualsIgnoreCase": {
            "kms:RecipientAttestation:PCR0": fake_hex(lb + "0"), "kms:RecipientAttestation:PCR1": fake_hex(lb + "1")}}}
            for i, lb in enumerate(labels)]
        return resource("aws:kms/key:Key", {"policy": json.dumps({"Statement": stmts}), "tags": {"teeform:target": target}},
                        f"{target}-key")

    cfg = {"today": "2026-05-01"}
    res = [manifest("old", "a", "2026-04-30", "old"), manifest("new", "a", None, "new"), key("a", "new", "old"),
           key("b", "old")]  # target b's key is not target a's business
    found = policy_violations("rollover-window-expired", res, cfg)
    assert [(v.resource_name, v.enforcement) for v in found] == [("a-key", "advisory")]
    assert "statement 'R1' still releases the key to manifest 'old'" in found[0].message
    assert policy_violations("rollover-window-expired", res, {"today": "2026-04-30"}) == []
    # dropped from the key: fine even though the manifest is still registered
    assert policy_violations("rollover-window-expired", [*res[:2], key("a", "new")], cfg) == []
    bad = [resource("teeform:index:MeasurementManifest", {"target": "a", "name": "x", "until": "soon"}, "m")]
    [v] = policy_violations("rollover-window-expired", bad, cfg)
    assert "until 'soon' is not a date YYYY-MM-DD" in v.message


def test_prod_config_makes_it_mandatory():
    cfg = json.loads((REPO / "policies" / "config" / "prod.json").read_text())
    assert cfg["rollover-window-expired"] == "mandatory"


# ------------------------------------------------------------------------------- rollover plan
def test_rollover_plan(tmp_path, capsys):
    old = write_fake_eif_manifest(tmp_path / "v1", version="1.0.0")
    new = write_fake_eif_manifest(tmp_path / "v2", version="2.0.0")
    f = REPO / "stacks" / "Pulumi.prod.yaml"
    assert f.exists()
    rc, out, err = run(capsys, "rollover", "plan", str(old.manifest_path), str(new.manifest_path), "--project-dir", str(REPO),
                       "--stack", "prod", "--days", "7", "--today", "2026-01-01")
    assert rc == 0, err
    o, n = old.manifest_path, new.manifest_path
    cfg = "policies/config/prod.json"
    assert out.startswith("teeform rollover plan: stack prod, target agent: openclaw-agent@1.0.0 -> openclaw-agent@2.0.0\n")
    assert "measurements changed: PCR0, PCR1, PCR2, ImageSha384" in out
    assert "old build allowed through 2026-01-08 (7 days left (until 2026-01-08)" in out
    titles = [line.split(":")[0] for line in out.splitlines() if line[:2] in ("1.", "2.", "3.", "4.")]
    assert titles == ["1. add new", "2. deploy", "3. verify", "4. drop old"]
    assert f"   $ teeform measurements diff {o} {n}" in out
    assert f"   $ pulumi up --stack prod --policy-pack policies --policy-pack-config {cfg}" in out
    assert f"     - {{path: {o}, until: \"2026-01-08\"}}" in out
    # `teeform verify attestation` takes exactly one of --manifest / --stack (teeform/commands/verify_attestation.py)
    assert f"   $ teeform verify attestation <attestation-doc.cbor> --manifest {n} --nonce <hex> --at now" in out
    assert "   $ teeform verify attestation <attestation-doc.cbor> --stack prod --nonce <hex> --at now" in out
    rc, _, err = run(capsys, "verify", "attestation", str(tmp_path / "doc.cbor"), "--manifest", str(n), "--nonce", "00",
                     "--at", "now")
    assert rc == 2 and "give exactly one" not in err and "doc.cbor" in err  # the options parse; the document is missing
    assert "The key policy is locked (key.policyUpdates: locked)" in out  # stacks/Pulumi.prod.yaml locks it
    # the YAML it prints is a valid manifests entry for the stack loader
    entry = yaml.safe_load("\n".join(line[5:] for line in out.split("2. deploy", 1)[1].splitlines()[2:5]))
    assert entry == {"manifests": [str(n), {"path": str(o), "until": "2026-01-08"}]}
    rc, out, _ = run(capsys, "rollover", "plan", str(o), str(n), "--project-dir", str(REPO), "--until", "2026-02-01", "--json",
                     "--today", "2026-01-01")
    j = json.loads(out)
    assert j["target"] == "agent" and j["window"] == {"until": "2026-02-01", "daysLeft": 31, "expired": False}
    assert [s["title"] for s in j["steps"]] == ["1. add new", "2. deploy", "3. verify", "4. drop old"]


def test_rollover_plan_refuses_same_name_and_version(tmp_path, capsys):
    a = write_fake_eif_manifest(tmp_path / "a", version="1", label="a")
    b = write_fake_eif_manifest(tmp_path / "b", version="1", label="b")
    rc, out, err = run(capsys, "rollover", "plan", str(a.manifest_path), str(b.manifest_path), "--project-dir", str(REPO))
    assert rc == 2 and out == ""
    assert err.splitlines()[0] == (f"error: {b.manifest_path}: version: both manifests are openclaw-agent@1: a target cannot "
                                   "list two builds with the same name and version")
    rc, _, err = run(capsys, "rollover", "plan", str(a.manifest_path), str(tmp_path / "nope.json"), "--project-dir", str(REPO))
    assert rc == 2 and "manifest not found" in err
    rc, _, err = run(capsys, "rollover", "plan", str(a.manifest_path), str(b.manifest_path), "--project-dir", str(REPO),
                     "--until", "2026-13-01")
    assert rc == 2 and "until" in err
