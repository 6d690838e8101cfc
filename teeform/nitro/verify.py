"""Verify a Nitro attestation document against the pinned AWS root and a set of allowed manifests.

The algorithm is ``shared/reference/eif-nitro.md`` §4.4, split into independent checks so a failure
names the right cause:

========== ===========================================================================================
check      what passes
========== ===========================================================================================
signature  the protected header is exactly ``{1: -35}`` (ES384, §4.2); the 96-byte raw ``r || s``
           signature verifies (ECDSA P-384, SHA-384) over ``Sig_structure1 = ["Signature1", protected,
           h'', payload]`` (RFC 8152 §4.4) with the leaf certificate's public key.
chain      ``cabundle[0]`` is byte-identical to the pinned root (§4.4 step 3: the root is pinned out
           of band, never taken from the document); the path ``certificate -> cabundle[N-1] -> ... ->
           cabundle[1] -> root`` is exactly the one ``cryptography``'s X.509 path validator
           (:mod:`cryptography.x509.verification`) builds; every link's issuer/subject and ECDSA
           signature verify; CA certificates have critical ``CA:TRUE``, ``keyCertSign`` and a path
           length that fits; the leaf has ``digitalSignature`` and is not a CA (§4.4 step 5). The
           validator runs at an instant inside every certificate's validity window, so an expired
           certificate is reported by the ``time`` check only, not twice.
time       every certificate of the chain is valid at the validation time: the document's own
           ``timestamp`` by default (archived documents), or ``--at`` (use ``now`` for a live document:
           leaf certificates last about 3 hours, §4.4 step 4). No CRL checking (NSM doc, §4.4).
PCRn       PCR0/1/2 (and PCR8 when an allowed manifest pins it) equal the values of ONE allowed
           manifest (a rollout may allow several; mixing PCRs of different manifests does not pass).
nonce      equals ``--nonce`` (skipped when none is given).
debug      the document is not from a debug-mode enclave (PCR0 all zeros, §4.6), unless allowed.
document   (only when it fails) the document is a NitroTPM one (``nitrotpm_pcrs``): those are checked
           against vm-image manifests by :mod:`teeform.nitro.nitrotpm`, never against EIF manifests.
========== ===========================================================================================

Everything here is pure: inputs are bytes/objects, outputs are frozen dataclasses; the CLI in
:mod:`teeform.commands.verify_attestation` does the I/O.

Hostile certificates: ``cryptography`` parses certificates lazily, so an unknown curve or key type
(``UnsupportedAlgorithm`` from ``public_key()``), a duplicate extension (``DuplicateExtension``; RFC
5280 §4.2 "a certificate MUST NOT include more than one instance of a particular extension"), a
malformed extension or subject (``ValueError``) surfaces only when a check reads that part. None of
these needs a valid signature to reach: the leaf key is read before any signature is checked. Every
check therefore turns such errors into its own ``fail`` row naming the certificate (exit status 1,
like any other certificate that does not verify), never a traceback; text taken from certificates
or exceptions is shown on one line with control characters escaped (:func:`one_line`), so a subject
cannot forge report lines or terminal escapes.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cbor2
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.x509 import verification as xv

from teeform import measurements as mtable
from teeform.errors import TeeformError
from teeform.fsutil import display_path
from teeform.nitro.attestation import COSE_ALG_ES384, ES384_SIGNATURE_LEN, AttestationDocument
from teeform.safeload import read_limited

if TYPE_CHECKING:
    from teeform.manifest import ArtifactKind, Manifest

#: The AWS Nitro Enclaves Root-G1 certificate shipped with teeform (eif-nitro.md §4.5).
ROOT_PEM_PATH = Path(__file__).resolve().parent.parent / "data" / "aws-nitro-enclaves-root-g1.pem"
#: SHA-256 of the Root-G1 DER certificate (eif-nitro.md §4.5; the same value is pinned by the QOS docs).
ROOT_DER_SHA256 = "641a0321a3e244efe456463195d606317ed7cdcc3c1756e09893f3c68f79bb5b"

#: Largest ``--root`` file read (a PEM certificate is a few KiB).
MAX_ROOT_BYTES = 64 << 10

#: PCRs compared with manifests (eif-nitro.md §2.2): PCR8 only when the manifest pins it. From the
#: one measurement table (:data:`teeform.measurements.NITRO_PINNABLE_PCRS`).
CHECKED_PCRS: tuple[str, ...] = mtable.NITRO_PINNABLE_PCRS
#: Attestation-document PCR index of each checked PCR name (``"PCR8"`` -> 8).
PCR_INDEX: dict[str, int] = {m.name: i for i, m in mtable.NITRO_PCR_INDEX.items()}

PASS, FAIL, SKIP = "pass", "fail", "skip"

#: What ``cryptography`` raises on a malformed or unsupported certificate part (module docstring).
CERT_ERRORS: tuple[type[Exception], ...] = (ValueError, TypeError, UnsupportedAlgorithm, x509.DuplicateExtension,
                                            x509.UnsupportedGeneralNameType, x509.InvalidVersion)
#: CERT_ERRORS plus a bad signature (one issuer -> child signature check).
SIGNATURE_ERRORS: tuple[type[Exception], ...] = (InvalidSignature, *CERT_ERRORS)
#: CERT_ERRORS plus a failed X.509 path validation (cryptography.x509.verification).
PATH_ERRORS: tuple[type[Exception], ...] = (xv.VerificationError, *CERT_ERRORS)


# --------------------------------------------------------------------------------------------- data
@dataclass(frozen=True)
class Root:
    """The trust anchor: the certificate, its DER SHA-256 (hex), where it came from, and whether it is
    the pinned AWS Root-G1 (False when ``--root`` overrides it, e.g. in tests)."""

    certificate: x509.Certificate
    der_sha256: str
    source: str
    pinned: bool


@dataclass(frozen=True)
class AllowedMeasurements:
    """One allowed measurement set: ``pcrs`` maps names of :data:`CHECKED_PCRS` (``"PCR0"``..) to
    their table hex length (96 lowercase hex digits, SHA-384); ``source`` names the manifest file it came from."""

    source: str
    pcrs: Mapping[str, str]


@dataclass(frozen=True)
class CheckResult:
    """One row of the verification table.

    ``status`` is ``"pass"``, ``"fail"`` or ``"skip"`` (not evaluated: no expectation given).
    ``expected`` lists the acceptable values (hex for PCRs/nonce), ``actual`` the document's value.
    """

    name: str
    status: str
    detail: str
    expected: tuple[str, ...] = ()
    actual: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"check": self.name, "status": self.status, "detail": self.detail,
                "expected": list(self.expected), "actual": self.actual}


@dataclass(frozen=True)
class VerificationReport:
    """All checks of one document. ``ok`` is True only when no check failed."""

    module_id: str
    document_time: _dt.datetime
    validation_time: _dt.datetime
    time_source: str
    root: str
    checks: tuple[CheckResult, ...]
    matched_manifest: str | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return all(c.status != FAIL for c in self.checks)

    def check(self, name: str) -> CheckResult:
        """The row named ``name`` (KeyError when absent)."""
        for c in self.checks:
            if c.name == name:
                return c
        raise KeyError(name)

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "module_id": self.module_id,
            "document_time": iso(self.document_time),
            "validation_time": iso(self.validation_time),
            "time_source": self.time_source,
            "root": self.root,
            "matched_manifest": self.matched_manifest,
            "checks": [c.to_json() for c in self.checks],
            "notes": list(self.notes),
        }

    def render(self) -> str:
        """Human-readable table: one block per check, full expected/actual values on their own lines."""
        lines = [
            f"attestation document  module {one_line(self.module_id)}, produced {iso(self.document_time)}",
            f"validation time       {iso(self.validation_time)} ({self.time_source})",
            f"root of trust         {self.root}",
            "",
            f"{'CHECK':<10} {'RESULT':<6} DETAIL",
        ]
        for c in self.checks:
            lines.append(f"{c.name:<10} {c.status.upper():<6} {c.detail}")
            pad = " " * 18
            if c.expected:
                for i, e in enumerate(c.expected):
                    lines.append(f"{pad}{'expected' if i == 0 else '    or  '} {e}")
            if c.actual is not None and (c.expected or c.status == FAIL):
                lines.append(f"{pad}actual   {c.actual}")
        for n in self.notes:
            lines.append(f"note: {n}")
        lines.append("")
        lines.append("RESULT: PASS (every check passed)" if self.ok else
                     "RESULT: FAIL (" + ", ".join(c.name for c in self.checks if c.status == FAIL) + ")")
        return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------- helpers
def iso(t: _dt.datetime) -> str:
    """UTC ISO 8601 with a ``Z`` suffix and millisecond precision when non-zero."""
    t = t.astimezone(_dt.UTC)
    s = t.strftime("%Y-%m-%dT%H:%M:%S")
    if t.microsecond:
        s += f".{t.microsecond // 1000:03d}"
    return s + "Z"


def parse_time(text: str) -> _dt.datetime:
    """Parse ``--at``: ``now`` or ISO 8601 (``Z`` or an offset; a naive time is taken as UTC).

    Raises:
        TeeformError: not a recognised time.
    """
    if text.strip().lower() == "now":
        return _dt.datetime.now(_dt.UTC)
    try:
        t = _dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise TeeformError(f"not an ISO 8601 time: {text!r}", field="--at",
                           hint="e.g. --at 2022-10-13T09:00:00Z, or --at now") from None
    t = t if t.tzinfo else t.replace(tzinfo=_dt.UTC)
    try:  # 9999-12-31T23:59:59-01:00 is after the last instant a datetime holds once in UTC
        return t.astimezone(_dt.UTC)
    except OverflowError:
        raise TeeformError(f"{text!r} is outside 0001-01-01 .. 9999-12-31 in UTC", field="--at") from None


def one_line(text: object, limit: int = 200) -> str:
    """``text`` on one line: control and other non-printable characters escaped (``\\n``, ``\\x1b``),
    cut to ``limit`` characters with ``…``."""
    s = str(text)
    s = "".join(c if c.isprintable() else repr(c)[1:-1] for c in s)
    return s if len(s) <= limit else s[:limit] + "…"


def _error(exc: BaseException) -> str:
    return one_line(f"{type(exc).__name__}: {exc}" if not isinstance(exc, ValueError) else exc)


def cert_name(cert: x509.Certificate) -> str:
    """``CN=<common name>`` of the subject, or the full RFC 4514 subject when it has no CN.

    Never raises: a subject that does not parse (RFC 5280 §4.1.2.6) is shown as
    ``<unreadable subject: ...>``; the result is on one line (:func:`one_line`).
    """
    try:
        cns = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
        cn = cns[0].value if cns else None  # str for CN; cryptography types NameAttribute.value as str | bytes
        if isinstance(cn, bytes):
            cn = cn.decode("utf-8", "replace")
        return one_line(f"CN={cn}" if cns else cert.subject.rfc4514_string())
    except CERT_ERRORS as exc:
        return f"<unreadable subject: {_error(exc)}>"


def load_root(path: str | Path | None = None) -> Root:
    """Load the trust anchor.

    Without ``path``: the shipped AWS Nitro Enclaves Root-G1 (:data:`ROOT_PEM_PATH`), whose DER SHA-256
    must equal :data:`ROOT_DER_SHA256` (eif-nitro.md §4.5), so a modified copy is refused. With ``path``
    (``--root``, meant for tests and other partitions): that PEM or DER certificate, not pinned.

    The file is read with :func:`teeform.safeload.read_limited` (a regular file of at most
    :data:`MAX_ROOT_BYTES`).

    Raises:
        TeeformError: unreadable, not a regular file, too large or invalid certificate, or the
            shipped root does not match its pin.
    """
    p = Path(path) if path else ROOT_PEM_PATH
    data = read_limited(p, MAX_ROOT_BYTES, what="root certificate")
    try:
        cert = (x509.load_pem_x509_certificate(data) if b"-----BEGIN" in data
                else x509.load_der_x509_certificate(data))
        why = _validity_problem(cert)
        cert.subject.rfc4514_string()  # refuse an unreadable subject here, not in every message
    except CERT_ERRORS as exc:
        raise TeeformError(f"not a PEM or DER certificate: {_error(exc)}", path=p) from None
    if why:
        raise TeeformError(f"the root certificate {why}", path=p)
    digest = hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()
    if path is None and digest != ROOT_DER_SHA256:
        raise TeeformError(
            f"the shipped AWS Nitro Enclaves Root-G1 has DER SHA-256 {digest}, not the pinned {ROOT_DER_SHA256}",
            path=p, hint="reinstall teeform; the file was modified",
        )
    return Root(cert, digest, str(p), pinned=path is None)


def allowed_from_kind(
    paths: Iterable[str | Path],
    *,
    kind: ArtifactKind,
    not_kind: str,
    pick: Callable[[str | Path, Manifest], Mapping[str, str]],
    none_left: str,
    hint: str,
) -> tuple[list[AllowedMeasurements], list[str]]:
    """Load the manifests of ``kind`` among ``paths`` as allowed measurement sets, **one set per
    manifest** (a document must match all values of one set together); ``source`` is the path relative
    to the current directory when under it (:func:`display_path`). Shared by
    :func:`allowed_from_manifests` (EIF) and :func:`teeform.nitro.nitrotpm.allowed_from_vm_manifests`.

    Args:
        paths: manifest files, in order.
        kind: the manifest kind compared; others are skipped with a note ``skipped <path>: kind
            '<kind>' is <not_kind>``.
        not_kind: the note's ending, e.g. ``"not an EIF manifest"``.
        pick: ``(path, manifest) -> {row name: hex value}``, the set of one manifest (may raise
            TeeformError for a manifest that lacks a required measurement).
        none_left: the error message when no manifest of ``kind`` remains (the given paths are appended).
        hint: that error's hint.

    Returns:
        (allowed sets, notes about skipped manifests of another kind).

    Raises:
        TeeformError: a manifest is missing/invalid, ``pick`` refuses one, or no manifest of ``kind`` remains.
    """
    from teeform.manifest import load_manifest

    allowed: list[AllowedMeasurements] = []
    notes: list[str] = []
    paths = list(paths)
    for p in paths:
        m = load_manifest(p)
        if m.kind is not kind:
            notes.append(f"skipped {p}: kind {m.kind.value!r} is {not_kind}")
            continue
        allowed.append(AllowedMeasurements(display_path(p), dict(pick(p, m))))
    if not allowed:
        raise TeeformError(none_left + (f" (given: {', '.join(map(str, paths))})" if paths else ""), hint=hint)
    return allowed, notes


def allowed_from_manifests(paths: Iterable[str | Path]) -> tuple[list[AllowedMeasurements], list[str]]:
    """Load the EIF manifests among ``paths`` as allowed measurement sets (:data:`CHECKED_PCRS` the
    manifest has; ``source`` is the path relative to the current directory when under it, see
    :func:`display_path`).

    Returns:
        (allowed sets, notes about skipped non-EIF manifests).

    Raises:
        TeeformError: a manifest is missing/invalid, or no EIF manifest remains.
    """
    from teeform.manifest import ArtifactKind

    return allowed_from_kind(
        paths, kind=ArtifactKind.EIF, not_kind="not an EIF manifest",
        pick=lambda _p, m: {k: m.measurements[k] for k in CHECKED_PCRS if k in m.measurements},
        none_left="no EIF manifest to compare the PCRs with",
        hint="pass --manifest <file.manifest.json> or a --stack whose targets use tee: nitro-enclave",
    )


# --------------------------------------------------------------------------------------------- checks
def check_signature(doc: AttestationDocument) -> CheckResult:
    """COSE_Sign1 ES384 signature over Sig_structure1 with the leaf key (eif-nitro.md §4.2, RFC 8152 §4.4)."""
    try:
        hdr = cbor2.loads(doc.protected) if doc.protected else {}
    except (cbor2.CBORError, ValueError, TypeError, OverflowError, RecursionError):
        hdr = None
    if hdr != {1: COSE_ALG_ES384}:
        return CheckResult("signature", FAIL, f"protected header must be exactly {{1: -35}} (alg ES384), got {hdr!r} "
                           f"(bytes {doc.protected.hex() or 'empty'})")
    if len(doc.signature) != ES384_SIGNATURE_LEN:
        return CheckResult("signature", FAIL, f"ES384 signature must be {ES384_SIGNATURE_LEN} bytes (raw r || s), "
                           f"got {len(doc.signature)}")
    try:
        leaf = x509.load_der_x509_certificate(doc.certificate)
        key = leaf.public_key()
    except CERT_ERRORS as exc:
        return CheckResult("signature", FAIL, f"cannot read the leaf certificate's key (expected ECDSA P-384): {_error(exc)}")
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP384R1):
        return CheckResult("signature", FAIL, "the leaf certificate's key is not an ECDSA P-384 key")
    half = ES384_SIGNATURE_LEN // 2
    der_sig = encode_dss_signature(int.from_bytes(doc.signature[:half], "big"), int.from_bytes(doc.signature[half:], "big"))
    to_be_signed = cbor2.dumps(["Signature1", doc.protected, b"", doc.payload])
    try:
        key.verify(der_sig, to_be_signed, ec.ECDSA(hashes.SHA384()))
    except (InvalidSignature, ValueError):  # ValueError: r or s out of range for the curve
        return CheckResult("signature", FAIL, f"ES384 signature does not verify over Sig_structure1 with the key of "
                           f"leaf certificate '{cert_name(leaf)}' (payload or signature modified)")
    return CheckResult("signature", PASS, f"ES384 over Sig_structure1 verified with leaf '{cert_name(leaf)}'")


def _load_chain(doc: AttestationDocument) -> tuple[list[x509.Certificate] | None, str]:
    """[leaf, cabundle[N-1], ..., cabundle[1]] or (None, reason)."""
    try:
        leaf = x509.load_der_x509_certificate(doc.certificate)
    except CERT_ERRORS as exc:
        return None, f"leaf certificate is not valid DER: {_error(exc)}"
    out = [leaf]
    for i in range(len(doc.cabundle) - 1, 0, -1):
        try:
            out.append(x509.load_der_x509_certificate(doc.cabundle[i]))
        except CERT_ERRORS as exc:
            return None, f"cabundle[{i}] is not a valid DER certificate: {_error(exc)}"
    for cert, where in zip(out, ["leaf certificate", *(f"cabundle[{i}]" for i in range(len(doc.cabundle) - 1, 0, -1))],
                           strict=True):
        why = _validity_problem(cert)
        if why:
            return None, f"{where} '{cert_name(cert)}' {why}"
    return out, ""


def _validity_problem(cert: x509.Certificate) -> str:
    """Why the validity times cannot be read ("" when they can). cryptography converts them lazily,
    and a GeneralizedTime of year 0000 is valid DER but no Python ``datetime`` (RFC 5280 §4.1.2.5)."""
    try:
        _ = cert.not_valid_before_utc, cert.not_valid_after_utc
    except CERT_ERRORS as exc:
        return f"has an unreadable validity time (RFC 5280 §4.1.2.5): {_error(exc)}"
    return ""


def _ca_ku(policy: Any, cert: x509.Certificate, ku: x509.KeyUsage) -> None:
    if not ku.key_cert_sign:
        raise ValueError(f"CA certificate '{cert_name(cert)}' lacks keyUsage keyCertSign")


def _ee_ku(policy: Any, cert: x509.Certificate, ku: x509.KeyUsage | None) -> None:
    if ku is None or not ku.digital_signature:
        raise ValueError(f"leaf certificate '{cert_name(cert)}' lacks keyUsage digitalSignature")


def _ee_bc(policy: Any, cert: x509.Certificate, bc: x509.BasicConstraints | None) -> None:
    if bc is not None and (bc.ca or bc.path_length is not None):
        raise ValueError(f"leaf certificate '{cert_name(cert)}' must not be a CA (basicConstraints {bc})")


def _extension_problems(chain: Sequence[x509.Certificate]) -> list[str]:
    """Certificates whose extensions cannot be read: duplicates (RFC 5280 §4.2) or malformed values."""
    problems = []
    for cert in chain:
        try:
            _ = [e.value for e in cert.extensions]
        except x509.DuplicateExtension as exc:
            problems.append(f"certificate '{cert_name(cert)}' has a duplicate {exc.oid.dotted_string} extension "
                            "(RFC 5280 §4.2: at most one instance of an extension)")
        except CERT_ERRORS as exc:
            problems.append(f"certificate '{cert_name(cert)}' has a malformed extension: {_error(exc)}")
    return problems


def _structure_problems(chain: Sequence[x509.Certificate]) -> list[str]:
    """Explicit §4.4 step 5 checks, for precise messages (the path validator enforces them too)."""
    problems = _extension_problems(chain)
    if problems:
        return problems
    leaf = chain[0]
    try:
        bc = leaf.extensions.get_extension_for_class(x509.BasicConstraints).value
        if bc.ca:
            problems.append(f"leaf certificate '{cert_name(leaf)}' is a CA (CA:TRUE)")
    except x509.ExtensionNotFound:
        pass
    for depth, cert in enumerate(chain[1:], start=1):
        try:
            ext = cert.extensions.get_extension_for_class(x509.BasicConstraints)
        except x509.ExtensionNotFound:
            problems.append(f"CA certificate '{cert_name(cert)}' has no basicConstraints")
            continue
        if not ext.value.ca or not ext.critical:
            problems.append(f"CA certificate '{cert_name(cert)}' needs critical basicConstraints CA:TRUE")
        # intermediates below this CA = depth - 1 (the leaf does not count; RFC 5280 §4.2.1.9)
        if ext.value.path_length is not None and depth - 1 > ext.value.path_length:
            problems.append(f"CA certificate '{cert_name(cert)}' has pathLen {ext.value.path_length} but "
                            f"{depth - 1} intermediate(s) follow it")
        try:
            if not cert.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign:
                problems.append(f"CA certificate '{cert_name(cert)}' lacks keyUsage keyCertSign")
        except x509.ExtensionNotFound:
            problems.append(f"CA certificate '{cert_name(cert)}' has no keyUsage")
    return problems


def _window_time(chain: Sequence[x509.Certificate], at: _dt.datetime) -> _dt.datetime:
    """``at`` if every certificate is valid then, else an instant inside every window (if one exists)."""
    nb = max(c.not_valid_before_utc for c in chain)
    na = min(c.not_valid_after_utc for c in chain)
    if nb <= at <= na:
        return at
    return nb if nb <= na else at


def check_chain(doc: AttestationDocument, root: Root, at: _dt.datetime) -> CheckResult:
    """Certificate path leaf -> cabundle[N-1..1] -> pinned root (eif-nitro.md §4.4 steps 3-5)."""
    root_der = root.certificate.public_bytes(serialization.Encoding.DER)
    root_label = f"'{cert_name(root.certificate)}' (DER sha256 {root.der_sha256[:16]}…)"
    if doc.cabundle[0] != root_der:
        return CheckResult("chain", FAIL, f"cabundle[0] is not the trusted root {root_label}",
                           (root.der_sha256,), hashlib.sha256(doc.cabundle[0]).hexdigest())
    chain, why = _load_chain(doc)
    if chain is None:
        return CheckResult("chain", FAIL, why)
    full = [*chain, root.certificate]
    # each link explicitly, for a precise message
    for child, issuer in zip(full, full[1:], strict=False):
        try:
            same = child.issuer == issuer.subject
        except CERT_ERRORS as exc:
            return CheckResult("chain", FAIL, f"certificate '{cert_name(child)}' or its issuer '{cert_name(issuer)}' "
                               f"has an unreadable name (RFC 5280 §4.1.2.4, §4.1.2.6): {_error(exc)}")
        if not same:
            return CheckResult("chain", FAIL, f"certificate '{cert_name(child)}' is issued by "
                               f"'{one_line(child.issuer.rfc4514_string())}', not by '{one_line(issuer.subject.rfc4514_string())}'")
        try:
            child.verify_directly_issued_by(issuer)
        except SIGNATURE_ERRORS as exc:
            return CheckResult("chain", FAIL, f"signature of certificate '{cert_name(child)}' does not verify with the "
                               f"key of '{cert_name(issuer)}'" + (f": {_error(exc)}" if str(exc) else ""))
    problems = _structure_problems(full)
    if problems:
        return CheckResult("chain", FAIL, "; ".join(problems))
    ca_policy = (xv.ExtensionPolicy.permit_all()
                 .require_present(x509.BasicConstraints, xv.Criticality.CRITICAL, None)
                 .require_present(x509.KeyUsage, xv.Criticality.AGNOSTIC, _ca_ku))
    ee_policy = (xv.ExtensionPolicy.permit_all()
                 .require_present(x509.KeyUsage, xv.Criticality.AGNOSTIC, _ee_ku)
                 .may_be_present(x509.BasicConstraints, xv.Criticality.AGNOSTIC, _ee_bc))
    verifier = (xv.PolicyBuilder().store(xv.Store([root.certificate]))
                .time(_window_time(full, at))
                .max_chain_depth(len(full))
                .extension_policies(ca_policy=ca_policy, ee_policy=ee_policy)
                .build_client_verifier())
    try:
        verified = verifier.verify(chain[0], chain[1:])
    except PATH_ERRORS as exc:
        return CheckResult("chain", FAIL, f"X.509 path validation failed: {one_line(exc, 400)}")
    got = [c.public_bytes(serialization.Encoding.DER) for c in verified.chain]
    want = [c.public_bytes(serialization.Encoding.DER) for c in full]
    if got != want:
        return CheckResult("chain", FAIL, "the validated path is not certificate -> cabundle[N-1..1] -> root "
                           f"(validator built {' -> '.join(cert_name(c) for c in verified.chain)})")
    return CheckResult("chain", PASS, f"leaf -> {len(chain) - 1} intermediate(s) -> {root_label}"
                       + ("" if root.pinned else f" [root from {root.source}, NOT the pinned AWS root]"))


def check_time(doc: AttestationDocument, root: Root, at: _dt.datetime, time_source: str) -> CheckResult:
    """Every certificate of the chain is within its validity window at ``at`` (eif-nitro.md §4.4 step 4)."""
    chain, why = _load_chain(doc)
    if chain is None:
        return CheckResult("time", FAIL, why)
    full = [*chain, root.certificate]
    for cert in full:
        if at > cert.not_valid_after_utc:
            return CheckResult("time", FAIL, f"certificate '{cert_name(cert)}' expired at {iso(cert.not_valid_after_utc)} "
                               f"(validation time {iso(at)}, {time_source})")
        if at < cert.not_valid_before_utc:
            return CheckResult("time", FAIL, f"certificate '{cert_name(cert)}' is not valid before "
                               f"{iso(cert.not_valid_before_utc)} (validation time {iso(at)}, {time_source})")
    leaf = chain[0]
    return CheckResult("time", PASS, f"all {len(full)} certificates valid at {iso(at)} ({time_source}); leaf valid "
                       f"{iso(leaf.not_valid_before_utc)} .. {iso(leaf.not_valid_after_utc)}")


def check_pcrs(doc: AttestationDocument, allowed: Sequence[AllowedMeasurements], *,
               index: Mapping[str, int] | None = None) -> tuple[list[CheckResult], str | None, list[str]]:
    """Compare PCR0/1/2 (and PCR8 where pinned) with the allowed sets.

    The document passes when it matches ANY one set entirely. Rows are reported against the matching
    set, or, when none matches, against the closest one (most equal PCRs); ``expected`` always lists
    every allowed value of that PCR.

    Args:
        index: ``{row name: document PCR index}`` of the PCRs to compare, in row order; default
            :data:`PCR_INDEX` (the enclave PCRs). NitroTPM passes its own
            (:data:`teeform.nitro.nitrotpm.NITROTPM_PCR_INDEX`).

    Returns:
        (one row per PCR, the matching manifest's source or None, notes).
    """
    index = PCR_INDEX if index is None else index
    names = [n for n in (CHECKED_PCRS if index is PCR_INDEX else tuple(index)) if any(n in a.pcrs for a in allowed)]

    def actual(n: str) -> str | None:
        return doc.pcr_hex(index[n])

    def score(a: AllowedMeasurements) -> int:
        return sum(1 for n, v in a.pcrs.items() if n in names and actual(n) == v.lower())

    match = next((a for a in allowed if score(a) == sum(1 for n in a.pcrs if n in names)), None)
    ref = match or max(allowed, key=score)
    rows = []
    for n in names:
        exp = tuple(dict.fromkeys(a.pcrs[n].lower() for a in allowed if n in a.pcrs))
        act = actual(n)
        if n not in ref.pcrs:
            rows.append(CheckResult(n, PASS if match else SKIP, f"not pinned by {ref.source}", exp, act))
        elif act is None:
            rows.append(CheckResult(n, FAIL, f"the document has no {n}", exp, None))
        elif act == ref.pcrs[n].lower():
            rows.append(CheckResult(n, PASS, f"matches {ref.source}", exp, act))
        else:
            other = [a.source for a in allowed if a.pcrs.get(n, "").lower() == act]
            why = f"differs from {ref.source}" + (f" (equals {', '.join(other)}, but other PCRs do not)" if other else
                                                  " and from every allowed manifest" if len(allowed) > 1 else "")
            rows.append(CheckResult(n, FAIL, why, exp, act))
    notes = []
    if match is None and len(allowed) > 1:
        notes.append(f"no allowed manifest matches every PCR; rows compare with the closest, {ref.source}")
    return rows, (match.source if match else None), notes


def check_nonce(doc: AttestationDocument, expected: bytes | None) -> CheckResult:
    """The document's ``nonce`` equals the challenge the verifier sent (eif-nitro.md §4.4 step 7)."""
    act = doc.nonce.hex() if doc.nonce is not None else None
    if expected is None:
        return CheckResult("nonce", SKIP, "not checked (no --nonce given)" + ("" if act is None else
                           f"; the document carries a {len(doc.nonce or b'')}-byte nonce"))
    if doc.nonce == expected:
        return CheckResult("nonce", PASS, "equals --nonce", (expected.hex(),), act)
    return CheckResult("nonce", FAIL, "differs from --nonce" if act is not None else "the document has no nonce (null)",
                       (expected.hex(),), act if act is not None else "null")


def check_debug(doc: AttestationDocument, allow_debug: bool) -> CheckResult:
    """Debug-mode marker: PCR0 all zeros (eif-nitro.md §4.6; real debug documents zero PCR0/1/2/8)."""
    zero = [n for n, i in PCR_INDEX.items() if i in doc.pcrs and not any(doc.pcrs[i])]
    if "PCR0" not in zero:
        return CheckResult("debug", PASS, "production enclave (PCR0 is not all zeros)")
    what = f"debug-mode enclave ({', '.join(zero)} all zeros)"
    if allow_debug:
        return CheckResult("debug", PASS, what + "; allowed by --allow-debug")
    return CheckResult("debug", FAIL, what + "; its memory is readable by the parent, so it proves nothing "
                       "(pass --allow-debug only for development)")


def verify_attestation(
    doc: AttestationDocument,
    *,
    root: Root,
    allowed: Sequence[AllowedMeasurements],
    nonce: bytes | None = None,
    at: _dt.datetime | None = None,
    allow_debug: bool = False,
    at_label: str | None = None,
) -> VerificationReport:
    """Run every check of the module docstring on ``doc``.

    Args:
        doc: the parsed document.
        root: trust anchor from :func:`load_root`.
        allowed: allowed PCR sets (at least one), e.g. from :func:`allowed_from_manifests`.
        nonce: expected nonce bytes, or None to skip the nonce check.
        at: validation time (aware datetime); None means the document's own timestamp.
        allow_debug: accept a debug-mode document.
        at_label: how ``at`` was given, for messages (default ``--at``).

    Returns:
        a :class:`VerificationReport`; ``report.ok`` is the overall verdict.

    Raises:
        TeeformError: no allowed set given.
    """
    kind = (CheckResult("document", FAIL, "a NitroTPM document (nitrotpm_pcrs), not a Nitro Enclaves one: compare it "
                        "with vm-image manifests (teeform.nitro.nitrotpm.verify_nitrotpm)") if doc.is_nitrotpm else None)
    return verify_document(doc, root=root, allowed=allowed, nonce=nonce, at=at, at_label=at_label, document=kind,
                           after=(check_debug(doc, allow_debug),))


def verify_document(
    doc: AttestationDocument,
    *,
    root: Root,
    allowed: Sequence[AllowedMeasurements],
    nonce: bytes | None = None,
    at: _dt.datetime | None = None,
    at_label: str | None = None,
    document: CheckResult | None = None,
    index: Mapping[str, int] | None = None,
    after: Sequence[CheckResult] = (),
    notes: Sequence[str] = (),
) -> VerificationReport:
    """The checks every Nitro document gets, in report order: ``document`` (when given), signature,
    chain, time, one row per PCR (:func:`check_pcrs`: all PCRs of ONE allowed set together), nonce,
    then ``after``. Shared by :func:`verify_attestation` (Nitro Enclaves) and
    :func:`teeform.nitro.nitrotpm.verify_nitrotpm` (NitroTPM), which differ only in the arguments below.

    Args:
        doc, root, allowed, nonce, at, at_label: as :func:`verify_attestation`.
        document: the document-kind row, or None for none.
        index: ``{row name: document PCR index}`` for :func:`check_pcrs` (None: the enclave PCRs).
        after: rows appended last (the enclave's ``debug`` row).
        notes: report notes after those of :func:`check_pcrs`.

    Returns:
        a :class:`VerificationReport`; ``report.ok`` is the overall verdict.

    Raises:
        TeeformError: no allowed set given.
    """
    if not allowed:
        raise TeeformError("no allowed measurement set given")
    t = at if at is not None else doc.time
    source = (at_label or "--at") if at is not None else "the document's timestamp"
    pcr_rows, matched, pcr_notes = check_pcrs(doc, allowed, index=index)
    checks = (
        *((document,) if document is not None else ()),
        check_signature(doc),
        check_chain(doc, root, t),
        check_time(doc, root, t, source),
        *pcr_rows,
        check_nonce(doc, nonce),
        *after,
    )
    root_desc = (f"{cert_name(root.certificate)} (pinned AWS Nitro Enclaves Root-G1, DER sha256 {root.der_sha256})"
                 if root.pinned else f"{cert_name(root.certificate)} from {root.source} (DER sha256 {root.der_sha256}; "
                 "NOT the pinned AWS root)")
    return VerificationReport(doc.module_id, doc.time, t, source, root_desc, checks, matched, (*pcr_notes, *notes))
