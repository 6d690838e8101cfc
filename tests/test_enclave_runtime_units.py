"""The parent side as the enclave host's user data installs it: systemd units (checked by
``systemd-analyze verify`` where it is installed), the bundled parent server (unpacked from the user
data and run as the unit runs it), the restart policy, log forwarding and the CloudWatch agent config."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import time
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import require_tool
from test_enclave_runtime_fakes import FakeImds

from components.aws.enclave_host import (
    PARENT_LIB,
    USER_DATA_LIMIT,
    UserDataSpec,
    cloudwatch_agent_config,
    host_role_policy,
    render_user_data,
    systemd_units,
)
from teeform.enclave_runtime import bundle, wire
from teeform.enclave_runtime.transport import Address
from teeform.errors import TeeformError

SPEC = UserDataSpec(region="eu-west-1", bucket="b1", eif_key="eif/sha256/x.eif", eif_sha256="ab" * 32, cpu_count=2,
                    memory_mib=2048)
FULL = replace(SPEC, debug=True, sealed_key="secrets/dev/sealed.json", cloudwatch_log_group="/teeform/dev/agent")


def _ini(text: str) -> dict[str, dict[str, list[str]]]:
    """systemd unit text -> {section: {key: [values]}} (keys may repeat)."""
    out: dict[str, dict[str, list[str]]] = {}
    section = None
    for line in text.splitlines():
        if line.startswith("["):
            section = line.strip("[]")
            out[section] = {}
        elif "=" in line and section:
            k, _, v = line.partition("=")
            out[section].setdefault(k, []).append(v)
    return out


def test_enclave_unit_restarts_with_bounded_backoff():
    u = _ini(systemd_units(SPEC)["teeform-enclave.service"])
    assert u["Service"]["Restart"] == ["on-failure"] and u["Service"]["RestartSec"] == ["15"]
    assert u["Service"]["Type"] == ["simple"]  # the start script stays up while the enclave runs
    assert u["Unit"]["StartLimitIntervalSec"] == ["900"] and u["Unit"]["StartLimitBurst"] == ["5"]
    assert u["Service"]["ExecStopPost"] == ["-/usr/bin/nitro-cli terminate-enclave --enclave-name teeform"]
    assert "teeform-credentials.service" in u["Unit"]["Wants"][0]


def test_proxy_credentials_and_log_units():
    units = systemd_units(SPEC)
    proxy = _ini(units["teeform-vsock-proxy.service"])["Service"]
    assert proxy["ExecStart"] == ["/usr/bin/vsock-proxy 8000 kms.eu-west-1.amazonaws.com 443 --config /etc/nitro_enclaves/vsock-proxy.yaml"]
    assert proxy["RestartSec"] == ["2"]
    creds = _ini(units["teeform-credentials.service"])["Service"]
    assert creds["ExecStart"] == ["/usr/bin/python3 -m teeform.enclave_runtime.parent credentials --listen vsock:any:9100 "
                                  "--sealed /opt/teeform/sealed.json --allow-cid 16"]
    assert creds["Environment"] == [f"PYTHONPATH={PARENT_LIB}"] and creds["NoNewPrivileges"] == ["yes"]
    logs = _ini(units["teeform-enclave-logs.service"])["Service"]
    assert logs["ExecStart"] == ["/usr/bin/python3 -m teeform.enclave_runtime.parent logs --listen vsock:any:9101 "
                                 "--file /var/log/teeform/enclave.log"]
    assert logs["SyslogIdentifier"] == ["teeform-enclave"]
    assert "teeform-enclave-console.service" not in units
    console = _ini(systemd_units(replace(SPEC, debug=True))["teeform-enclave-console.service"])["Service"]
    assert console["ExecStart"] == ["/usr/bin/nitro-cli console --enclave-name teeform"]


def test_systemd_analyze_verify(tmp_path):
    analyze = require_tool("systemd-analyze")  # Debian package `systemd` (252 in bookworm, as on Amazon Linux 2023)
    root = tmp_path / "root"
    unit_dir = root / "etc/systemd/system"
    unit_dir.mkdir(parents=True)
    system_units = next((p for p in (Path("/usr/lib/systemd/system"), Path("/lib/systemd/system")) if p.is_dir()), None)
    if system_units is None:
        pytest.skip("no systemd unit directory to verify against")
    shutil.copytree(system_units, root / "usr/lib/systemd/system", symlinks=True)
    for exe in ("usr/bin/nitro-cli", "usr/bin/vsock-proxy", "usr/bin/python3", "usr/local/sbin/teeform-start-enclave", "bin/sleep"):
        (root / exe).parent.mkdir(parents=True, exist_ok=True)
        (root / exe).write_text("#!/bin/sh\n")
        (root / exe).chmod(0o755)
    # the allocator unit comes with the aws-nitro-enclaves-cli RPM (eif-nitro.md §6.2): a stub here
    (unit_dir / "nitro-enclaves-allocator.service").write_text("[Unit]\nDescription=stub\n[Service]\nType=oneshot\nExecStart=/bin/sleep 0\n")
    units = systemd_units(FULL)
    for name, text in units.items():
        (unit_dir / name).write_text(text)
    proc = subprocess.run([analyze, "verify", f"--root={root}", "--man=no", *sorted(units)], cwd=unit_dir,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout == "" and proc.stderr == "", proc.stderr + proc.stdout


def test_user_data_shape_and_size(tmp_path):
    text = render_user_data(FULL)
    assert text == render_user_data(FULL)  # pure
    assert len(text.encode()) <= USER_DATA_LIMIT
    script = tmp_path / "ud.sh"
    script.write_text(text)
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0
    assert "--enclave-name teeform --debug-mode" in text
    assert text.index("sha256sum --check") < text.index("nitro-cli run-enclave")
    assert "aws s3 cp --region eu-west-1 --only-show-errors s3://b1/secrets/dev/sealed.json /opt/teeform/sealed.json.tmp" in text
    assert 'select(.EnclaveName == "teeform") | .State' in text and "exit 1" in text  # the monitor
    assert "systemctl enable --now teeform-vsock-proxy.service teeform-credentials.service teeform-enclave-logs.service teeform-enclave.service" in text
    cw = json.loads(text.split("teeform.json <<'EOF'\n", 1)[1].split("\nEOF", 1)[0])
    assert cw == cloudwatch_agent_config("/teeform/dev/agent")
    assert cw["logs"]["logs_collected"]["files"]["collect_list"][0]["file_path"] == "/var/log/teeform/enclave.log"
    plain = render_user_data(SPEC)
    assert "amazon-cloudwatch-agent" not in plain and "sealed.json.tmp" not in plain and "--debug-mode" not in plain


def test_user_data_refuses_bad_values():
    with pytest.raises(TeeformError, match="cloudwatchLogGroup"):
        render_user_data(replace(SPEC, cloudwatch_log_group="bad group; rm"))
    with pytest.raises(TeeformError, match="sealedKey"):
        render_user_data(replace(SPEC, sealed_key="a'b"))


def test_start_script_runs_only_an_eif_whose_sha256_sha256sum_accepts(tmp_path):
    """The start script's check, run by bash with coreutils' sha256sum (the oracle) and stubbed ``aws`` /
    ``nitro-cli``: with the SHA-256 of the downloaded bytes (hashlib) the enclave is started; with one
    changed byte it exits 1 before ``nitro-cli run-enclave``."""
    require_tool("sha256sum")
    eif = os.urandom(4096)
    spec = replace(SPEC, eif_sha256=hashlib.sha256(eif).hexdigest())
    text = render_user_data(spec)
    start = text.split("/usr/local/sbin/teeform-start-enclave <<'EOF'\n", 1)[1].split("\nEOF\n", 1)[0] + "\n"
    assert "sha256sum --check --strict --quiet -" in start and "sha384sum" not in start
    local = tmp_path / "enclave.eif"
    start = start.replace("/opt/teeform/enclave.eif", str(local)).replace("while sleep 10; do", "while false; do")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (tmp_path / "served.eif").write_bytes(eif)
    # aws s3 cp <uri> <dest>: copy the served bytes to the last argument; nitro-cli: record the call
    (bin_dir / "aws").write_text(f'#!/bin/bash\ncp {tmp_path / "served.eif"} "${{@: -1}}"\n')
    (bin_dir / "nitro-cli").write_text(f'#!/bin/bash\necho "$1" >> {tmp_path / "calls"}\n')
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    script = tmp_path / "start.sh"
    script.write_text(start)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    r = subprocess.run(["bash", str(script)], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "calls").read_text().split() == ["terminate-enclave", "run-enclave"]
    (tmp_path / "calls").unlink()
    (tmp_path / "served.eif").write_bytes(bytes([eif[0] ^ 1]) + eif[1:])
    r = subprocess.run(["bash", str(script)], capture_output=True, text=True, env=env)
    assert r.returncode == 1
    assert f"teeform: {local} does not match the manifest's sha256; refusing to run it" in r.stderr
    assert not (tmp_path / "calls").exists()


def test_host_role_policy_for_logs_and_sealed_file():
    p = host_role_policy(partition="aws", bucket="b1", eif_key="e.eif", key_arn="arn:aws:kms:eu-west-1:1:key/k",
                         sealed_key="s.json", log_group="/teeform/dev", region="eu-west-1", account_id="111122223333")
    by_sid = {s["Sid"]: s for s in p["Statement"]}
    assert by_sid["ReadEif"]["Resource"] == ["arn:aws:s3:::b1/e.eif", "arn:aws:s3:::b1/s.json"]
    assert by_sid["ShipEnclaveLogs"]["Resource"] == "arn:aws:logs:eu-west-1:111122223333:log-group:/teeform/dev:*"
    plain = host_role_policy(partition="aws", bucket="b1", eif_key="e.eif", key_arn="k")
    assert [s["Sid"] for s in plain["Statement"]] == ["ReadEif", "UseAttestedKey"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_bundled_parent_server_runs_from_the_user_data(tmp_path):
    """Unpack the tarball exactly as the user data does and run the server the way the unit does."""
    text = render_user_data(SPEC)
    b64 = text.split("base64 -d > /tmp/teeform-parent.tar.gz <<'EOF'\n", 1)[1].split("EOF\n", 1)[0]
    lib = tmp_path / "lib"
    with tarfile.open(fileobj=io.BytesIO(base64.b64decode(b64)), mode="r:gz") as tar:
        names = sorted(m.name for m in tar.getmembers() if m.isfile())
        tar.extractall(lib, filter="data")
    assert names == sorted(bundle.PARENT_FILES)
    sealed = tmp_path / "sealed.json"
    sealed.write_text('{"x": 1}\n')
    imds = FakeImds()
    port = _free_port()
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(lib)}
    proc = subprocess.Popen([sys.executable, "-s", "-m", "teeform.enclave_runtime.parent", "credentials", "--listen",
                             f"tcp:127.0.0.1:{port}", "--sealed", str(sealed), "--imds", imds.url],
                            env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        addr = Address("tcp", "127.0.0.1", port)
        deadline = time.monotonic() + 20
        while True:
            try:
                got = wire.request(addr, "credentials")
                break
            except TeeformError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.1)
        assert got["AccessKeyId"] == imds.access_key
        assert wire.request(addr, "sealed") == '{"x": 1}\n'
    finally:
        proc.terminate()
        proc.wait(10)
        imds.close()
    assert bundle.parent_bundle() == bundle.parent_bundle()  # reproducible bytes


def test_parent_bad_option_is_one_line(capsys):
    from teeform.enclave_runtime import parent

    assert parent.main(["credentials", "--listen", "vsock:nope:1"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "teeform-parent: error: --listen: bad vsock CID in 'vsock:nope:1' (a number or 'any')"]


def test_parent_files_parse_as_python_3_9():
    """Amazon Linux 2023's python3 is 3.9: the parent side must not use newer syntax (checked with
    the 3.9 grammar of ``ast.parse``; 3.11-only library names such as ``datetime.UTC`` are avoided by hand)."""
    import ast

    for rel in bundle.PARENT_FILES:
        text = (bundle.PACKAGE_ROOT / rel).read_text()
        ast.parse(text, feature_version=(3, 9))
        assert "dt.UTC" not in text and "datetime.UTC" not in text, rel
