"""Dynamic providers for Trustee: the KBS registration of one target, and the generated admin key / TLS pair.

``KbsRegistration`` (type ``pulumi-python:dynamic/trustee:KbsRegistration``) makes the KBS hold, for
one target, exactly what its inputs say, through the admin API (:class:`teeform.trustee.kbs_client.KbsAdmin`):

* **create**: wait until the KBS answers when ``wait_seconds`` is set (a Trustee VM just deployed),
  register the RVPS message, set the attestation-service policy (``default_cpu``) and the
  resource policy, then create each sealed resource (``resource/teeform/<target>/<tag>``) with 32
  random bytes from :func:`os.urandom`. The secret bytes are sent to the KBS only; they are never an
  output, so they are not in the Pulumi state.
* **update**: the same calls again (every call overwrites, so a repeated update is idempotent);
  reference-value ids that left the target are emptied (registered as ``[]``, the KBS admin API has
  no delete for them, ``kbs/src/api_server.rs``); resources that left are deleted, new ones created,
  kept ones untouched (their secret stays).
* **delete**: empty every reference-value id, replace both policies by refuse-all policies (the KBS
  has no policy delete) and delete the resources.
* **diff**: compares the inputs that matter; a new KBS URL or target replaces.

Sources for the dynamic-provider mechanics: ``shared/reference/pulumi.md`` §6.1 (no unpicklable state
captured: clients are built inside each method; outputs declared up front; ``diff`` implemented).

``GeneratedKeyPair`` (``pulumi-python:dynamic/trustee:GeneratedKeyPair``) creates, once, an Ed25519
admin key pair and a self-signed TLS certificate for a Trustee VM (``cryptography``); the private keys
are secret outputs and the public key / certificate go into the VM's cloud-init.
"""

from __future__ import annotations

import datetime
import os
import time
from typing import Any

import pulumi
import pulumi.dynamic as dyn

from teeform.trustee.kbs_client import KbsAdmin, KbsError
from teeform.trustee.reference_values import sample_message

#: A resource policy that releases nothing (Trustee's ``kbs/sample_policies/deny_all.rego``).
DENY_ALL_RESOURCE_POLICY = "package policy\n\nimport rego.v1\n\ndefault allow := false\n"
#: An attestation-service policy that affirms nothing: the contraindicating defaults only, the values of
#: Trustee's ``attestation-service/src/ear_token/ear_default_policy_cpu.rego`` (33 = unrecognised executables,
#: 97 = unrecognised hardware, 36 = configuration unavailable; EAR AR4SI trust claims), as
#: :mod:`teeform.trustee.rego` writes them.
DENY_ALL_AS_POLICY = """package policy

import rego.v1

default executables := 33
default hardware := 97
default configuration := 36

trust_claims := {"executables": executables, "hardware": hardware, "configuration": configuration}

extensions := []
"""
#: Inputs whose change is an update (the others are identity: a change replaces).
UPDATABLE = ("rvps_message", "reference_value_ids", "attestation_policy", "resource_policy", "resources",
             "admin_key_pem", "ca_cert_pem", "role", "issuer", "audience", "pin_only", "verifier")
IDENTITY = ("kbs_url", "target", "repository")


def _client(p: dict[str, Any]) -> KbsAdmin:
    return KbsAdmin(p["kbs_url"], p["admin_key_pem"], ca_cert_pem=p.get("ca_cert_pem") or None,
                    role=p.get("role") or "teeform-admin", issuer=p.get("issuer") or None,
                    audience=p.get("audience") or None, pin_only=bool(p.get("pin_only")))


def wait_until_reachable(client: KbsAdmin, seconds: float, *, interval: float = 10.0) -> None:
    """Poll ``GET /kbs/v0/resource-policy`` until the KBS answers (a freshly deployed Trustee VM boots
    for minutes). Only "cannot reach" is retried; an HTTP error (e.g. 401) is raised at once.

    Raises:
        KbsError: still unreachable after ``seconds``, or an HTTP error.
    """
    deadline = time.monotonic() + seconds
    while True:
        try:
            client.get_resource_policy()
            return
        except KbsError as exc:
            if exc.status is not None or time.monotonic() + interval > deadline:
                raise
        time.sleep(interval)


def _apply(client: KbsAdmin, p: dict[str, Any], old: dict[str, Any] | None) -> None:
    if p.get("wait_seconds"):
        wait_until_reachable(client, float(p["wait_seconds"]))
    client.register_reference_values(p["rvps_message"])
    gone = sorted(set((old or {}).get("reference_value_ids") or []) - set(p["reference_value_ids"]))
    if gone:
        client.register_reference_values(sample_message({k: [] for k in gone}))
    client.set_attestation_policy(p["attestation_policy"])
    client.set_resource_policy(p["resource_policy"])
    old_res = set((old or {}).get("resources") or [])
    for tag in sorted(set(p["resources"]) - old_res):
        client.put_resource(p["repository"], p["target"], tag, os.urandom(32))
    for tag in sorted(old_res - set(p["resources"])):
        client.delete_resource(p["repository"], p["target"], tag)


class KbsRegistrationProvider(dyn.ResourceProvider):
    """Create/update/delete one target's reference values, policies and sealed resources in a KBS."""

    def create(self, props: dict[str, Any]) -> dyn.CreateResult:
        """Register everything; id ``<kbs url>#<target>``."""
        _apply(_client(props), props, None)
        return dyn.CreateResult(f"{props['kbs_url']}#{props['target']}", dict(props))

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dyn.DiffResult:
        """Changed inputs among :data:`UPDATABLE` update; among :data:`IDENTITY` replace."""
        replaces = [k for k in IDENTITY if olds.get(k) != news.get(k)]
        changed = [k for k in UPDATABLE if olds.get(k) != news.get(k)]
        return dyn.DiffResult(changes=bool(replaces or changed), replaces=replaces, delete_before_replace=True)

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dyn.UpdateResult:
        """Re-register (idempotent overwrites), empty dropped ids, add/delete changed resources."""
        _apply(_client(news), news, olds)
        return dyn.UpdateResult(dict(news))

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        """Empty the ids, install refuse-all policies, delete the resources."""
        client = _client(props)
        if props.get("reference_value_ids"):
            client.register_reference_values(sample_message({k: [] for k in props["reference_value_ids"]}))
        client.set_resource_policy(DENY_ALL_RESOURCE_POLICY)
        client.set_attestation_policy(DENY_ALL_AS_POLICY)
        for tag in props.get("resources") or []:
            client.delete_resource(props["repository"], props["target"], tag)


class KbsRegistration(dyn.Resource, module="trustee", name="KbsRegistration"):
    """One target's registration in a KBS (see module docs). Outputs echo the inputs."""

    kbs_url: pulumi.Output[str]
    target: pulumi.Output[str]
    reference_value_ids: pulumi.Output[list[str]]
    resources: pulumi.Output[list[str]]

    def __init__(self, name: str, props: dict[str, Any], opts: pulumi.ResourceOptions | None = None) -> None:
        secret = pulumi.ResourceOptions(additional_secret_outputs=["admin_key_pem"])
        super().__init__(KbsRegistrationProvider(), name, props, pulumi.ResourceOptions.merge(secret, opts))


def generate_key_material(common_name: str) -> dict[str, str]:
    """A fresh Ed25519 admin key pair and a self-signed Ed25519 TLS certificate (10 years, CN and SAN
    ``common_name``), all PEM: ``admin_private_key_pem``, ``admin_public_key_pem``,
    ``tls_private_key_pem``, ``tls_cert_pem``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.x509.oid import NameOID

    def pem_priv(k: Ed25519PrivateKey) -> str:
        return k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                               serialization.NoEncryption()).decode()

    admin, tls = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(tls.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=3650))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(common_name)]), critical=False)
            .sign(tls, None))
    return {
        "admin_private_key_pem": pem_priv(admin),
        "admin_public_key_pem": admin.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode(),
        "tls_private_key_pem": pem_priv(tls),
        "tls_cert_pem": cert.public_bytes(serialization.Encoding.PEM).decode(),
    }


class GeneratedKeyPairProvider(dyn.ResourceProvider):
    """Generates the key material once (create); updates never regenerate it."""

    def create(self, props: dict[str, Any]) -> dyn.CreateResult:
        """Generate; id = SHA-256 of the admin public key (hex, first 16)."""
        import hashlib

        outs = {**props, **generate_key_material(props["common_name"])}
        return dyn.CreateResult(hashlib.sha256(outs["admin_public_key_pem"].encode()).hexdigest()[:16], outs)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dyn.DiffResult:
        """Only a new common name replaces."""
        rep = olds.get("common_name") != news.get("common_name")
        return dyn.DiffResult(changes=rep, replaces=["common_name"] if rep else [])


class GeneratedKeyPair(dyn.Resource, module="trustee", name="GeneratedKeyPair"):
    """Admin key pair + TLS certificate of a Trustee VM; the private keys are secret outputs."""

    admin_private_key_pem: pulumi.Output[str]
    admin_public_key_pem: pulumi.Output[str]
    tls_private_key_pem: pulumi.Output[str]
    tls_cert_pem: pulumi.Output[str]

    def __init__(self, name: str, common_name: str, opts: pulumi.ResourceOptions | None = None) -> None:
        props = {"common_name": common_name, "admin_private_key_pem": None, "admin_public_key_pem": None,
                 "tls_private_key_pem": None, "tls_cert_pem": None}
        secret = pulumi.ResourceOptions(additional_secret_outputs=["admin_private_key_pem", "tls_private_key_pem"])
        super().__init__(GeneratedKeyPairProvider(), name, props, pulumi.ResourceOptions.merge(secret, opts))


__all__ = ["KbsRegistration", "KbsRegistrationProvider", "GeneratedKeyPair", "GeneratedKeyPairProvider",
           "generate_key_material", "DENY_ALL_AS_POLICY", "DENY_ALL_RESOURCE_POLICY"]
