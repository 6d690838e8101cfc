"""Unit tests of the enclave runtime's parts: transports, wire protocol, NSM protocol, bridge,
credential checks and secret delivery. Oracles: the NSM ioctl number from the ``_IOC`` formula of
``asm-generic/ioctl.h`` with ``struct nsm_raw`` = 32 bytes (``include/uapi/linux/nsm.h``), worked by hand
below; the CBOR request shape from ``aws-nitro-enclaves-nsm-api`` ``src/api/mod.rs`` (eif-nitro.md §4.1);
the test CA's documents parsed by teeform's independent attestation parser."""

from __future__ import annotations

import datetime as dt
import os
import socket
import threading
from pathlib import Path

import cbor2
import nitro_testca as tca
import pytest
from test_enclave_runtime_fakes import FakeImds, NsmResponder

from teeform.enclave_runtime import bridge, enclave, nsm, parent, wire
from teeform.enclave_runtime.transport import VMADDR_CID_ANY, Address, vsock_loopback_available
from teeform.errors import TeeformError

UTC = dt.UTC
NOW = dt.datetime(2026, 12, 3, 9, 0, tzinfo=UTC)


# ------------------------------------------------------------------------------------------ transport
def test_address_parse_and_render():
    assert Address.parse("vsock:3:9100") == Address("vsock", 3, 9100)
    assert Address.parse("vsock:any:9100") == Address("vsock", VMADDR_CID_ANY, 9100)
    assert str(Address.parse("vsock:any:9100")) == "vsock:any:9100"
    assert Address.parse("tcp:127.0.0.1:0") == Address("tcp", "127.0.0.1", 0)
    assert Address.parse("unix:/run/x.sock") == Address("unix", "/run/x.sock")
    for bad in ("vsock:3", "vsock:x:1", "tcp::80", "tcp:h:70000", "udp:h:1", "vsock:3:0", "unix:"):
        with pytest.raises(TeeformError, match="--parent"):
            Address.parse(bad, field="--parent")


def test_connect_failure_is_one_line(tmp_path):
    with pytest.raises(TeeformError, match=r"cannot connect to unix:.*nothing\.sock"):
        Address("unix", str(tmp_path / "nothing.sock")).connect(1)


def test_vsock_loopback_round_trip_or_one_line_refusal():
    """With vsock_loopback (CID 1) a real vsock round trip; without it, listening on CID 1 is refused
    with one line (the e2e tests then run over loopback TCP). Never skipped: both kernels are checked."""
    from teeform.enclave_runtime.transport import VMADDR_CID_LOCAL

    addr = Address("vsock", VMADDR_CID_LOCAL, 49152 + os.getpid() % 10000)
    if not vsock_loopback_available():
        with pytest.raises(TeeformError, match=r"^cannot (listen on|connect to) vsock:1:\d+: [^\n]+$"):
            addr.listen().close()
            addr.connect(2).close()
        return
    srv = addr.listen()
    threading.Thread(target=lambda: srv.accept()[0].sendall(b"ok"), daemon=True).start()
    with Address("vsock", VMADDR_CID_LOCAL, srv.getsockname()[1]).connect(2) as c:
        assert c.recv(2) == b"ok"
    srv.close()


# ------------------------------------------------------------------------------------------ wire
def _serve_once(reply: bytes) -> Address:
    srv = Address("tcp", "127.0.0.1", 0).listen()
    port = srv.getsockname()[1]

    def run():
        conn, _ = srv.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(reply)
        srv.close()

    threading.Thread(target=run, daemon=True).start()
    return Address("tcp", "127.0.0.1", port)


def test_wire_request_and_errors():
    assert wire.encode({"op": "sealed", "version": 1}) == b'{"op":"sealed","version":1}\n'
    assert wire.request(_serve_once(b'{"sealed":"x","version":1}\n'), "sealed") == "x"
    with pytest.raises(TeeformError, match="refused 'credentials': no role"):
        wire.request(_serve_once(b'{"error":"no role","version":1}\n'), "credentials")
    with pytest.raises(TeeformError, match="protocol version 2"):
        wire.request(_serve_once(b'{"sealed":"x","version":2}\n'), "sealed")
    with pytest.raises(TeeformError, match="not JSON"):
        wire.request(_serve_once(b'{"sealed": NaN, "version":1}\n'), "sealed")
    with pytest.raises(TeeformError, match="closed the connection"):
        wire.request(_serve_once(b'{"sealed"'), "sealed")


# ------------------------------------------------------------------------------------------ NSM
def test_nsm_ioctl_number_and_request_shape():
    # _IOWR(0x0A, 0, 32-byte struct): (1|2) << 30 | 32 << 16 | 0x0A << 8 | 0, computed by hand
    assert nsm.NSM_IOCTL_RAW == 0xC0200A00
    req = cbor2.loads(nsm.attestation_request(b"K", nonce=b"N"))
    assert req == {"Attestation": {"user_data": None, "nonce": b"N", "public_key": b"K"}}
    with pytest.raises(TeeformError, match="over the 4096-byte limit"):
        nsm.attestation_request(b"x" * 5000)


def test_nsm_reply_parsing():
    assert nsm.parse_attestation_response(cbor2.dumps({"Attestation": {"document": b"D"}})) == b"D"
    with pytest.raises(TeeformError, match="refused the attestation request: InvalidArgument"):
        nsm.parse_attestation_response(cbor2.dumps({"Error": "InvalidArgument"}))
    with pytest.raises(TeeformError, match="not CBOR"):
        nsm.parse_attestation_response(b"\xff\xff")
    with pytest.raises(TeeformError, match="is not"):
        nsm.parse_attestation_response(cbor2.dumps({"Attestation": {}}))


def test_device_nsm_on_a_non_device(tmp_path):
    f = tmp_path / "nsm"
    f.write_bytes(b"")
    with pytest.raises(TeeformError, match=r"nsm: the NSM ioctl failed"):
        nsm.DeviceNsm(str(f)).exchange(b"\xa0")
    with pytest.raises(TeeformError, match="cannot open the Nitro Secure Module"):
        nsm.DeviceNsm(str(tmp_path / "absent")).exchange(b"\xa0")


def test_socket_nsm_with_test_ca_document(tmp_path):
    from teeform.nitro.attestation import parse_attestation_document

    ca = tca.make_ca(dt.datetime.now(UTC))
    responder = NsmResponder(tmp_path / "nsm.sock", ca, tca.default_pcrs())
    doc = nsm.get_attestation_document(nsm.open_nsm(f"unix:{tmp_path / 'nsm.sock'}"), public_key=b"SPKI", nonce=b"n" * 32)
    parsed = parse_attestation_document(doc)
    assert parsed.public_key == b"SPKI" and parsed.nonce == b"n" * 32
    assert parsed.pcrs[0] == tca.default_pcrs()[0]
    responder.close()


# ------------------------------------------------------------------------------------------ bridge
def test_bridge_forwards_both_ways():
    upstream = Address("tcp", "127.0.0.1", 0).listen()

    def echo():
        conn, _ = upstream.accept()
        with conn:
            while data := conn.recv(1024):
                conn.sendall(data.upper())

    threading.Thread(target=echo, daemon=True).start()
    with bridge.Bridge(Address("tcp", "127.0.0.1", 0), Address("tcp", "127.0.0.1", upstream.getsockname()[1])) as br:
        with br.address.connect(5) as c:
            c.sendall(b"hello kms")
            c.shutdown(socket.SHUT_WR)
            got = b""
            while chunk := c.recv(1024):
                got += chunk
    assert got == b"HELLO KMS"
    upstream.close()


def test_map_host(tmp_path):
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 localhost\n")
    assert bridge.map_host(hosts, "kms.eu-west-1.amazonaws.com") is True
    assert bridge.map_host(hosts, "kms.eu-west-1.amazonaws.com") is False
    assert hosts.read_text() == "127.0.0.1 localhost\n127.0.0.1 kms.eu-west-1.amazonaws.com\n"


def test_loopback_is_up_here():
    assert bridge.ensure_loopback_up() is False  # already up: nothing to do, no privilege needed


# ------------------------------------------------------------------------------------------ credentials
def _creds(exp: str) -> dict[str, str]:
    return {"AccessKeyId": "ASIA1", "SecretAccessKey": "SECRET-xyz", "Token": "TOKEN-xyz", "Expiration": exp}


def test_check_credentials():
    c = enclave.check_credentials(_creds("2026-12-03T10:00:00Z"), now=NOW)
    assert c.expiration == dt.datetime(2026, 12, 3, 10, 0, tzinfo=UTC)
    assert "SECRET" not in repr(c) and "TOKEN" not in repr(c)  # secrets never show up in a repr
    with pytest.raises(TeeformError, match=r"credentials\.Expiration: the parent's credentials expired at 2026-12-03T08:59:00"):
        enclave.check_credentials(_creds("2026-12-03T08:59:00Z"), now=NOW)
    with pytest.raises(TeeformError, match="expire at 2026-12-03T09:00:30"):  # inside the 60 s margin
        enclave.check_credentials(_creds("2026-12-03T09:00:30Z"), now=NOW)
    with pytest.raises(TeeformError, match=r"credentials\.Token"):
        enclave.check_credentials({**_creds("2026-12-03T10:00:00Z"), "Token": 5}, now=NOW)
    with pytest.raises(TeeformError, match="not ISO 8601"):
        enclave.check_credentials(_creds("tomorrow"), now=NOW)


def test_parent_credential_cache_refreshes_before_expiry():
    clock = [NOW]
    served = []

    def fetch():
        served.append(len(served))
        return _creds((clock[0] + dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ"))

    cache = parent.CredentialCache(fetch, margin_s=900, clock=lambda: clock[0])
    cache.get()
    cache.get()
    assert len(served) == 1
    clock[0] += dt.timedelta(minutes=46)  # 14 minutes left: inside the 15-minute margin
    cache.get()
    assert len(served) == 2
    assert 30 <= cache.seconds_until_refresh() <= 600


def test_parent_cache_never_serves_expired():
    clock = [NOW]
    cache = parent.CredentialCache(lambda: _creds("2026-12-03T08:00:00Z"), clock=lambda: clock[0])
    with pytest.raises(TeeformError, match="expired at 2026-12-03T08:00:00Z"):
        cache.get()


def test_imds_client_against_fake():
    imds = FakeImds(expires_in=3600)
    try:
        got = parent.Imds(imds.url).credentials()
        assert got["AccessKeyId"] == imds.access_key and got["Token"] == "fake-session-token-1"
        with pytest.raises(TeeformError, match="IMDS URL must be"):
            parent.Imds("https://x")
    finally:
        imds.close()


def test_credentials_server(tmp_path):
    imds = FakeImds()
    sealed = tmp_path / "sealed.json"
    sealed.write_text('{"format": "teeform-sealed-secrets"}\n')
    srv = parent.CredentialsServer(Address("tcp", "127.0.0.1", 0), parent.CredentialCache(parent.Imds(imds.url).credentials),
                                   sealed).start()
    try:
        assert wire.request(srv.address, "credentials")["AccessKeyId"] == imds.access_key
        assert wire.request(srv.address, "sealed") == sealed.read_text()
        sealed.unlink()
        with pytest.raises(TeeformError, match="sealed.json is missing"):
            wire.request(srv.address, "sealed")
    finally:
        srv.stop()
        imds.close()


# ------------------------------------------------------------------------------------------ delivery
@pytest.fixture
def shm_dir():
    base = Path("/dev/shm")
    if enclave.ram_filesystem(base) is None:
        pytest.skip("no tmpfs at /dev/shm")
    import tempfile

    d = Path(tempfile.mkdtemp(prefix="teeform-rt-", dir=base))
    yield d
    import shutil

    shutil.rmtree(d, ignore_errors=True)


def test_files_delivery_on_tmpfs(shm_dir):
    assert enclave.ram_filesystem(shm_dir) == "tmpfs"
    out = enclave.write_secret_files({"A": "1", "B": "two\n"}, shm_dir / "secrets")
    assert sorted(p.name for p in out.iterdir()) == ["A", "B"]
    assert (out / "B").read_text() == "two\n"
    assert oct(out.stat().st_mode & 0o777) == "0o700" and oct((out / "A").stat().st_mode & 0o777) == "0o400"
    with pytest.raises(TeeformError, match="not an empty directory"):
        enclave.write_secret_files({"A": "1"}, out)


def test_files_delivery_refuses_disk(tmp_path):
    if enclave.ram_filesystem(tmp_path) is not None:
        pytest.skip("tmp_path is on tmpfs here")
    with pytest.raises(TeeformError, match="not on a tmpfs/ramfs mount"):
        enclave.write_secret_files({"A": "1"}, tmp_path / "secrets")
    assert not (tmp_path / "secrets").exists()


def test_deliver_env_and_args():
    cfg = enclave.parse_args(["--delivery", "env", "--log", "none", "--", "agent", "--flag"])
    argv, env = enclave.deliver({"API_KEY": "k"}, cfg, environ={"PATH": "/bin"})
    assert argv == ["agent", "--flag"] and env == {"PATH": "/bin", "API_KEY": "k"}
    assert cfg.parent == Address("vsock", 3, 9100) and cfg.kms_proxy == Address("vsock", 3, 8000) and cfg.log is None
    with pytest.raises(TeeformError, match="--kms-proxy"):
        enclave.parse_args(["--kms-proxy", "vsock:3", "--", "a"])


def test_main_without_command_fails_clearly(capsys):
    assert enclave.main(["--log", "none"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["teeform-runtime: error: no agent command given (expected: -- COMMAND [ARGS...])"]


def test_main_parent_unreachable(capsys, tmp_path):
    rc = enclave.main(["--log", "none", "--no-loopback", "--parent", f"unix:{tmp_path / 'none.sock'}", "--", "true"])
    assert rc == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("teeform-runtime: error: cannot connect to unix:")
