"""The key-admins lockout refusal (issue 8 item 2) reaches ``teeform preview``'s error path as one
line: no traceback and no "Future exception was never retrieved" on stderr (it used to be raised
inside an ``Output.apply``; now ``components.aws.nitro.lockout_checked_deployer`` raises it in the
program body). Run in a subprocess so interpreter-exit warnings are seen too."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from pulumi_support import REPO, nitro_target, write_fake_eif_manifest, write_stack_file

from teeform.preview import MOCK_ACCOUNT_ID


@pytest.mark.parametrize("key", [
    {"admins": [f"arn:aws:iam::{MOCK_ACCOUNT_ID}:role/platform-admin"]},  # deployer from the session context
    {"admins": [f"arn:aws:iam::{MOCK_ACCOUNT_ID}:role/platform-admin"],
     "deployerArn": f"arn:aws:iam::{MOCK_ACCOUNT_ID}:role/ci/deploy"},     # deployer from the stack
], ids=["caller", "deployerArn"])
@pytest.mark.parametrize("tee", ["nitro-enclave", "nitro-tpm"])
def test_lockout_refusal_is_one_line_without_future_warnings(tmp_path, key, tee):
    """Also for the NitroTPM VM target, whose builder had kept the check inside an apply."""
    if tee == "nitro-enclave":
        target = nitro_target([write_fake_eif_manifest(tmp_path / "build").manifest_path], key=key)
    else:
        from test_aws_vm import fake_vm, vm_target

        target = vm_target([fake_vm(tmp_path / "vm")], key=key)
    stack = write_stack_file(tmp_path / "Pulumi.dev.yaml", [target])
    proc = subprocess.run(
        [sys.executable, "-c", "import sys; from teeform.cli import main; sys.exit(main())", "preview", "--project-dir", str(REPO), "--stack", "dev", "--stack-file", str(stack)],
        capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore::DeprecationWarning"}, timeout=300,
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stdout == ""
    assert "Traceback" not in proc.stderr and "Future exception" not in proc.stderr and "never retrieved" not in proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.strip() and not ln.startswith("hint: ")]
    assert len(errors) == 1, proc.stderr
    assert errors[0].startswith(f"error: {stack}: teeform:targets[") and ".key.admins: " in errors[0]
    assert "lockout safety check" in errors[0]


SCRIPT = """
import gc, sys
sys.path.insert(0, {tests!r})
from pulumi_support import nitro_target, run
from test_aws_vm import vm_target
from teeform.errors import TeeformError
target = vm_target if {tee!r} == "nitro-tpm" else nitro_target
messages = set()
for _ in range(6):  # whether a failed apply's future outlives the run depends on scheduling: try a few times
    try:
        run([target([{manifest!r}], key={key!r})])
    except TeeformError as exc:
        messages.add("error: " + exc.render())
    run([target([{manifest!r}])])  # the same process goes on: a later program run and a collection
    gc.collect()
print("\\n".join(messages), file=sys.stderr)
"""


@pytest.mark.parametrize("tee", ["nitro-enclave", "nitro-tpm"])
def test_lockout_refusal_leaves_no_failed_future_in_a_long_lived_process(tmp_path, tee):
    """What pytest saw at exit: with the check inside an apply, the failed apply's futures were
    collected later and asyncio printed "Future exception was never retrieved" with a traceback
    (the NitroTPM VM builder had kept that form)."""
    if tee == "nitro-enclave":
        manifest = write_fake_eif_manifest(tmp_path / "build").manifest_path
    else:
        from test_aws_vm import fake_vm

        manifest = fake_vm(tmp_path / "vm")
    key = {"admins": [f"arn:aws:iam::{MOCK_ACCOUNT_ID}:role/platform-admin"]}
    code = SCRIPT.format(tests=str(REPO / "tests"), manifest=str(manifest), key=key, tee=tee)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr and "Future exception" not in proc.stderr, proc.stderr[:3000]
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "key.admins" in lines[0], proc.stderr
