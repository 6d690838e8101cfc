"""The enclave side of the runtime: fetch, attest, decrypt, then ``exec`` the agent.

Order of operations (:func:`obtain_secrets`, then :func:`deliver`); any failure stops the run with one
line ``teeform-runtime: error: <what>`` on stderr and exit status 2, **before** anything secret is
written or exported:

1. optional: connect stdout/stderr to the parent's log port (:data:`~teeform.enclave_runtime.LOG_PORT`)
   so this line and the agent's output reach the parent's journal (:func:`attach_log`);
2. bring ``lo`` up (:func:`teeform.enclave_runtime.bridge.ensure_loopback_up`);
3. ask the parent (:mod:`teeform.enclave_runtime.wire`) for the sealed file (the output of
   ``teeform seal``, :class:`teeform.seal.SealedSecrets`) and for the instance role's credentials; refuse
   credentials that expire within :data:`CREDENTIAL_MARGIN_S` seconds;
4. start the TCP -> vsock bridge to the parent's ``vsock-proxy`` and map
   ``kms.<region>.amazonaws.com`` (region from the sealed key ARN) to it in ``/etc/hosts``;
5. generate an ephemeral RSA-2048 key (the size the AWS SDK for C uses, eif-nitro.md §5.2) and ask
   the NSM for an attestation document whose ``public_key`` is its DER SubjectPublicKeyInfo;
6. KMS ``Decrypt`` with ``Recipient={KeyEncryptionAlgorithm: RSAES_OAEP_SHA_256, AttestationDocument}``,
   SigV4-signed by botocore with the parent's credentials; open ``CiphertextForRecipient``
   (:func:`teeform.seal.unseal_secrets`, :mod:`teeform.nitro.kms_recipient`);
7. ``exec`` the agent: secrets as environment variables (``--delivery env``) or as files
   ``<dir>/<NAME>`` (mode 0400, directory 0700) in a tmpfs (``--delivery files``; the directory is
   built under a temporary name and renamed into place, so it appears complete or not at all), with
   ``TEEFORM_SECRETS_DIR`` set.

The key never leaves this process; the plaintext data key and secrets exist only in its memory
until the ``exec`` (env) or the tmpfs files (files).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import secrets as _secrets
import shutil
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from teeform.enclave_runtime import CREDENTIALS_PORT, KMS_PROXY_PORT, LOG_PORT, PARENT_CID
from teeform.enclave_runtime.transport import Address
from teeform.errors import TeeformError

#: Credentials must stay valid at least this long after they are received (seconds): enough for
#: the NSM call and one KMS round trip through the proxy.
CREDENTIAL_MARGIN_S = 60
#: File systems that keep data in RAM only (``/proc/self/mountinfo`` field 9).
RAM_FILESYSTEMS = frozenset({"tmpfs", "ramfs"})
PREFIX = "teeform-runtime"


@dataclass(frozen=True)
class Credentials:
    """AWS credentials as served by the parent (the IMDSv2 document's fields)."""

    access_key_id: str
    secret_access_key: str
    token: str
    expiration: dt.datetime

    def __repr__(self) -> str:  # never print the secret parts
        return f"Credentials({self.access_key_id[:4]}..., expires {self.expiration.isoformat()})"


def parse_expiration(text: object) -> dt.datetime:
    """ISO 8601 UTC (``2026-12-03T16:00:00Z``, as IMDS writes it) -> aware datetime.

    Raises:
        TeeformError: not a string or not ISO 8601 with a time zone.
    """
    if not isinstance(text, str):
        raise TeeformError("must be an ISO 8601 string", field="credentials.Expiration")
    try:
        value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise TeeformError(f"not ISO 8601: {text[:40]!r}", field="credentials.Expiration") from None
    if value.tzinfo is None:
        raise TeeformError(f"has no time zone: {text[:40]!r}", field="credentials.Expiration")
    return value


def check_credentials(obj: Any, *, now: dt.datetime, margin_s: int = CREDENTIAL_MARGIN_S) -> Credentials:
    """Type-check the parent's ``credentials`` reply and refuse ones that are (about to be) expired.

    Raises:
        TeeformError: a missing/non-string field, or ``Expiration`` before ``now + margin_s``.
    """
    if not isinstance(obj, dict):
        raise TeeformError("the parent's credentials are not a JSON object", field="credentials")
    for k in ("AccessKeyId", "SecretAccessKey", "Token"):
        if not isinstance(obj.get(k), str) or not obj[k]:
            raise TeeformError("missing or not a non-empty string", field=f"credentials.{k}")
    exp = parse_expiration(obj.get("Expiration"))
    if exp <= now + dt.timedelta(seconds=margin_s):
        raise TeeformError(
            f"the parent's credentials expire{'d' if exp <= now else ''} at {exp.isoformat()} "
            f"(now {now.replace(microsecond=0).isoformat()}, {margin_s} s margin)",
            field="credentials.Expiration",
            hint="check teeform-credentials.service on the parent (it refreshes from IMDSv2 before expiry)",
        )
    return Credentials(obj["AccessKeyId"], obj["SecretAccessKey"], obj["Token"], exp)


@dataclass
class RuntimeConfig:
    """What the runtime needs (the command line of ``python3 -m teeform.enclave_runtime``).

    Attributes:
        command: the agent's argv (run with ``execvpe``).
        parent: the parent's credentials/sealed server.
        kms_proxy: the parent's vsock-proxy to KMS (the bridge's upstream).
        bridge_port: TCP port the bridge listens on at 127.0.0.1 (443: the KMS URL needs no port).
        kms_endpoint: KMS URL; default ``https://kms.<region>.amazonaws.com[:bridge_port]``. ``{port}``
            in it is replaced by the bridge's bound port (for ``--bridge-port 0`` on loopback tests,
            e.g. ``http://127.0.0.1:{port}``).
        hosts_file: where the KMS host is mapped to 127.0.0.1 (None: do not touch).
        nsm: ``/dev/nsm``, or ``unix:PATH``/``tcp:HOST:PORT`` for an NSM stand-in.
        delivery: ``env`` or ``files``.
        secrets_dir: target of ``files`` delivery (must be on tmpfs/ramfs unless ``allow_disk``).
        log: the parent's log port (None: keep the console).
        loopback: bring ``lo`` up before starting the bridge.
    """

    command: list[str]
    parent: Address = field(default_factory=lambda: Address("vsock", PARENT_CID, CREDENTIALS_PORT))
    kms_proxy: Address = field(default_factory=lambda: Address("vsock", PARENT_CID, KMS_PROXY_PORT))
    bridge_port: int = 443
    kms_endpoint: str | None = None
    hosts_file: Path | None = Path("/etc/hosts")
    nsm: str = "/dev/nsm"
    delivery: str = "env"
    secrets_dir: Path = Path("/run/teeform/secrets")
    allow_disk: bool = False
    log: Address | None = field(default_factory=lambda: Address("vsock", PARENT_CID, LOG_PORT))
    loopback: bool = True
    margin_s: int = CREDENTIAL_MARGIN_S


def _kms_client(region: str, endpoint: str, creds: Credentials) -> Any:
    """A botocore KMS client that signs with SigV4 (botocore's signer) using ``creds``."""
    import botocore.config
    import botocore.session

    session = botocore.session.get_session()
    return session.create_client(
        "kms", region_name=region, endpoint_url=endpoint, aws_access_key_id=creds.access_key_id,
        aws_secret_access_key=creds.secret_access_key, aws_session_token=creds.token,
        config=botocore.config.Config(connect_timeout=10, read_timeout=30, retries={"max_attempts": 3, "mode": "standard"}),
    )


def obtain_secrets(cfg: RuntimeConfig, *, now: dt.datetime | None = None) -> dict[str, str]:
    """Steps 2-6 of the module docstring; returns the secrets.

    Raises:
        TeeformError: one clear message for the first step that failed.
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    from teeform.enclave_runtime import bridge, nsm, wire
    from teeform.seal import SealedSecrets, recipient_for, region_from_arn, unseal_secrets

    if cfg.loopback:
        bridge.ensure_loopback_up()
    sealed_text = wire.request(cfg.parent, "sealed")
    if not isinstance(sealed_text, str):
        raise TeeformError("the parent's sealed file is not a JSON string", field="sealed")
    sealed = SealedSecrets.from_json(sealed_text, source="sealed file from the parent")
    creds = check_credentials(wire.request(cfg.parent, "credentials"), now=now or dt.datetime.now(dt.UTC),
                              margin_s=cfg.margin_s)
    region = region_from_arn(sealed.key_id)
    if region is None:
        raise TeeformError(f"key_id {sealed.key_id!r} is not a KMS key ARN, so the region is unknown",
                           path="sealed file from the parent", field="key_id")
    kms_host = f"kms.{region}.amazonaws.com"
    with bridge.Bridge(Address("tcp", "127.0.0.1", cfg.bridge_port), cfg.kms_proxy) as br:
        endpoint = cfg.kms_endpoint.replace("{port}", str(br.address.port)) if cfg.kms_endpoint else None
        if endpoint is None:
            if cfg.hosts_file is not None:
                bridge.map_host(cfg.hosts_file, kms_host)
            port = br.address.port
            endpoint = f"https://{kms_host}" + ("" if port == 443 else f":{port}")
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        spki = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        document = nsm.get_attestation_document(nsm.open_nsm(cfg.nsm), public_key=spki, nonce=_secrets.token_bytes(32))
        recipient = recipient_for(document, key, source="NSM attestation document")
        return unseal_secrets(sealed, kms=_kms_client(region, endpoint, creds), recipient=recipient)


def ram_filesystem(path: Path, mountinfo: Path = Path("/proc/self/mountinfo")) -> str | None:
    """The file-system type of the mount holding ``path`` if it is a RAM file system, else None.

    ``proc(5)`` mountinfo: field 5 is the mount point (octal escapes), the field after ``-`` the type.
    """
    target = os.path.realpath(path)
    best, fstype = "", None
    try:
        lines = mountinfo.read_text("utf-8", "replace").splitlines()
    except OSError:
        return None
    for line in lines:
        left, _, right = line.partition(" - ")
        parts = left.split()
        if len(parts) < 5 or not right:
            continue
        mount = parts[4].encode().decode("unicode_escape")
        if (target == mount or target.startswith(mount.rstrip("/") + "/")) and len(mount) >= len(best):
            best, fstype = mount, right.split()[0]
    return fstype if fstype in RAM_FILESYSTEMS else None


def write_secret_files(secrets: Mapping[str, str], directory: Path, *, allow_disk: bool = False) -> Path:
    """Write ``<directory>/<NAME>`` files (0400) atomically: built in a sibling temporary directory
    (0700) and renamed onto ``directory`` (which must be absent or empty).

    Raises:
        TeeformError: the target is not on tmpfs/ramfs (unless ``allow_disk``), exists and is not an
            empty directory, or a write fails (the temporary directory is removed).
    """
    parent = directory.parent
    parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not allow_disk and ram_filesystem(parent) is None:
        raise TeeformError("not on a tmpfs/ramfs mount; secrets are only written to RAM", path=parent,
                           field="--secrets-dir", hint="use a directory under /run or /dev/shm")
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise TeeformError("exists and is not an empty directory", path=directory, field="--secrets-dir")
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=parent))
    try:
        for name, value in secrets.items():
            fd = os.open(tmp / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o400)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(value)
        os.chmod(tmp, 0o700)
        if directory.exists():
            directory.rmdir()
        os.rename(tmp, directory)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise TeeformError(f"cannot write the secret files: {exc.strerror or exc}", path=directory) from None
    return directory


def deliver(secrets: Mapping[str, str], cfg: RuntimeConfig, *, environ: Mapping[str, str] | None = None) -> tuple[list[str], dict[str, str]]:
    """Prepare the agent's argv and environment (writing the tmpfs files for ``files`` delivery).

    Raises:
        TeeformError: no command, an unknown delivery mode, or :func:`write_secret_files` failed.
    """
    if not cfg.command:
        raise TeeformError("no agent command given (expected: -- COMMAND [ARGS...])")
    env = dict(os.environ if environ is None else environ)
    if cfg.delivery == "env":
        env.update(secrets)
    elif cfg.delivery == "files":
        env["TEEFORM_SECRETS_DIR"] = str(write_secret_files(secrets, cfg.secrets_dir, allow_disk=cfg.allow_disk))
    else:
        raise TeeformError(f"unknown delivery {cfg.delivery!r} (env or files)", field="--delivery")
    return list(cfg.command), env


def attach_log(address: Address) -> bool:
    """Send this process's (and the agent's) stdout/stderr to the parent's log port: connect, then
    ``dup2`` the socket onto fds 1 and 2. Returns False (and keeps the console) when the parent does
    not answer."""
    try:
        sock = address.connect(5.0)
    except TeeformError as exc:
        print(f"{PREFIX}: note: no log stream ({exc.message}); logging to the console", file=sys.stderr, flush=True)
        return False
    sock.settimeout(None)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(sock.fileno(), 1)
    os.dup2(sock.fileno(), 2)
    sock.close()
    return True


def parse_args(argv: Sequence[str]) -> RuntimeConfig:
    """Command line -> :class:`RuntimeConfig` (``--help`` lists the options).

    Raises:
        TeeformError: a malformed address or option.
    """
    argv = list(argv)
    command: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, command = argv[:i], argv[i + 1:]
    p = argparse.ArgumentParser(prog="teeform-runtime", description="Fetch and decrypt the sealed secrets, then exec the agent.")
    p.add_argument("--parent", default=f"vsock:{PARENT_CID}:{CREDENTIALS_PORT}")
    p.add_argument("--kms-proxy", default=f"vsock:{PARENT_CID}:{KMS_PROXY_PORT}")
    p.add_argument("--bridge-port", type=int, default=443)
    p.add_argument("--kms-endpoint", default=None)
    p.add_argument("--hosts-file", default="/etc/hosts", help="'none' to leave it alone")
    p.add_argument("--nsm", default="/dev/nsm")
    p.add_argument("--delivery", choices=("env", "files"), default="env")
    p.add_argument("--secrets-dir", default="/run/teeform/secrets")
    p.add_argument("--allow-disk", action="store_true", help="allow --secrets-dir outside tmpfs/ramfs (tests only)")
    p.add_argument("--log", default=f"vsock:{PARENT_CID}:{LOG_PORT}", help="'none' to keep the console")
    p.add_argument("--no-loopback", action="store_true", help="do not bring lo up")
    p.add_argument("--credential-margin", type=int, default=CREDENTIAL_MARGIN_S)
    a = p.parse_args(argv)
    if not 0 <= a.bridge_port <= 65535:
        raise TeeformError(f"port out of range: {a.bridge_port}", field="--bridge-port")
    return RuntimeConfig(
        command=command, parent=Address.parse(a.parent, field="--parent"),
        kms_proxy=Address.parse(a.kms_proxy, field="--kms-proxy"), bridge_port=a.bridge_port,
        kms_endpoint=a.kms_endpoint, hosts_file=None if a.hosts_file == "none" else Path(a.hosts_file), nsm=a.nsm,
        delivery=a.delivery, secrets_dir=Path(a.secrets_dir), allow_disk=a.allow_disk,
        log=None if a.log == "none" else Address.parse(a.log, field="--log"), loopback=not a.no_loopback,
        margin_s=a.credential_margin,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the runtime; on success this never returns (``execvpe``). Returns 2 on failure."""
    try:
        cfg = parse_args(sys.argv[1:] if argv is None else argv)
        if cfg.log is not None:
            attach_log(cfg.log)
        if not cfg.command:
            raise TeeformError("no agent command given (expected: -- COMMAND [ARGS...])")
        secrets = obtain_secrets(cfg)
        argv_, env = deliver(secrets, cfg)
        print(f"{PREFIX}: {len(secrets)} secret(s) delivered ({cfg.delivery}); starting {argv_[0]}", file=sys.stderr, flush=True)
        try:
            os.execvpe(argv_[0], argv_, env)
        except OSError as exc:
            raise TeeformError(f"cannot start the agent {argv_[0]!r}: {exc.strerror}") from None
    except TeeformError as exc:
        print(f"{PREFIX}: error: {exc.render()}" + (f" (hint: {exc.hint})" if exc.hint else ""), file=sys.stderr, flush=True)
        return 2
    except ImportError as exc:
        print(f"{PREFIX}: error: the image lacks a Python module the runtime needs: {exc.name} "
              "(hint: install cryptography, cbor2, asn1crypto, botocore and pyyaml in the image)", file=sys.stderr, flush=True)
        return 2
    return 2  # pragma: no cover  (execvpe does not return)
