"""KBS admin client and the ``KbsRegistration`` dynamic provider (issue 11 item 2), against a loopback
KBS implementing the documented admin API shapes (``tests/trustee_kbs_server.py`` cites them).

The server checks the bearer JWT with ``cryptography`` over the JWS signing input (not with PyJWT,
which signs), decodes the RVPS message with ``base64`` + ``json`` and the policies as base64url
without padding, and compiles them with regorus, as the KBS does.
"""

from __future__ import annotations

import base64
import json

import pytest
from trustee_kbs_server import LoopbackKbs

from components.trustee.provider import (
    DENY_ALL_RESOURCE_POLICY,
    GeneratedKeyPairProvider,
    KbsRegistrationProvider,
    generate_key_material,
)
from teeform.errors import TeeformError
from teeform.trustee.kbs_client import KbsAdmin, KbsError, admin_token
from teeform.trustee.reference_values import TrusteeOptions, Verifier, reference_values
from teeform.trustee.rego import attestation_policy, resource_policy

A = {"uki_authenticode_sha384": "a1" * 48, "rtmr1": "b1" * 48, "rtmr2": "c1" * 48}
B = {"uki_authenticode_sha384": "a2" * 48, "rtmr1": "b2" * 48}


@pytest.fixture(scope="module")
def keys() -> dict[str, str]:
    return generate_key_material("kbs.test")


@pytest.fixture
def kbs(keys):
    with LoopbackKbs(keys["admin_public_key_pem"]) as k:
        yield k


def props(url: str, keys: dict[str, str], manifests, resources=("key",)) -> dict:
    rv = reference_values("agent", manifests, TrusteeOptions(Verifier.TDX))
    return {"kbs_url": url, "target": "agent", "repository": "teeform", "admin_key_pem": keys["admin_private_key_pem"],
            "ca_cert_pem": None, "role": "teeform-admin", "issuer": None, "audience": None, "pin_only": False,
            "rvps_message": rv.message(), "reference_value_ids": list(rv.ids),
            "attestation_policy": attestation_policy(rv), "resource_policy": resource_policy(rv),
            "resources": list(resources)}


def test_token_is_eddsa_with_role_and_expiry(keys) -> None:
    tok = admin_token(keys["admin_private_key_pem"], now=1000, issuer="teeform", audience="kbs-admin")
    header = json.loads(base64.urlsafe_b64decode(tok.split(".")[0] + "=="))
    claims = json.loads(base64.urlsafe_b64decode(tok.split(".")[1] + "=="))
    assert header["alg"] == "EdDSA"
    assert claims == {"role": "teeform-admin", "iat": 1000, "exp": 1300, "iss": "teeform", "aud": "kbs-admin"}


def test_client_calls_match_the_documented_shapes(kbs, keys) -> None:
    c = KbsAdmin(kbs.url, keys["admin_private_key_pem"])
    rv = reference_values("agent", [("a", A)], TrusteeOptions(Verifier.TDX))
    c.register_reference_values(rv.message())
    uki_id = rv.sets[0].ids["uki"]
    assert c.get_reference_value(uki_id) == [A["uki_authenticode_sha384"]]
    assert c.get_reference_value("teeform.agent.unknown") is None
    c.set_attestation_policy(attestation_policy(rv))
    assert kbs.state.attestation_policies["default_cpu"] == attestation_policy(rv)
    c.set_resource_policy(resource_policy(rv))
    assert kbs.state.resource_policy == resource_policy(rv)
    assert c.get_resource_policy() == {"resource-policy": resource_policy(rv)}
    c.put_resource("teeform", "agent", "key", b"\x01" * 32)
    assert kbs.state.resources == {"teeform/agent/key": b"\x01" * 32}
    c.delete_resource("teeform", "agent", "key")
    c.delete_resource("teeform", "agent", "key")  # idempotent: 404 is not an error
    assert kbs.state.resources == {}


def test_errors_are_one_clear_line(kbs, keys) -> None:
    other = generate_key_material("x")["admin_private_key_pem"]
    with pytest.raises(KbsError) as exc:
        KbsAdmin(kbs.url, other).set_resource_policy(DENY_ALL_RESOURCE_POLICY)
    assert exc.value.status == 401 and exc.value.kind == "AdminAuthAccess"
    assert str(exc.value).startswith("keyBroker: POST /kbs/v0/resource-policy: HTTP 401 AdminAuthAccess: admin token refused")
    assert "\n" not in str(exc.value)
    with pytest.raises(KbsError, match="ParsePolicyError"):
        KbsAdmin(kbs.url, keys["admin_private_key_pem"]).set_resource_policy("package policy\nallow if {")
    with pytest.raises(KbsError, match="cannot reach"):
        KbsAdmin("http://127.0.0.1:9", keys["admin_private_key_pem"], timeout=2).set_resource_policy("package p")
    with pytest.raises(TeeformError, match="keyBroker.url"):
        KbsAdmin("ftp://x", keys["admin_private_key_pem"])
    with pytest.raises(TeeformError, match="Ed25519|PEM"):
        KbsAdmin(kbs.url, "not a key").set_resource_policy("package p")
    with pytest.raises(TeeformError, match="segment"):
        KbsAdmin(kbs.url, keys["admin_private_key_pem"]).put_resource("teeform", "../x", "k", b"")


def test_provider_create_update_delete(kbs, keys) -> None:
    p = KbsRegistrationProvider()
    news = props(kbs.url, keys, [("a", A), ("b", B)])
    created = p.create(news)
    assert created.id == f"{kbs.url}#agent"
    st = kbs.state
    assert set(st.reference_values) == set(news["reference_value_ids"])
    assert st.attestation_policies["default_cpu"] == news["attestation_policy"]
    assert st.resource_policy == news["resource_policy"]
    secret = st.resources["teeform/agent/key"]
    assert len(secret) == 32 and secret.hex() not in json.dumps(created.outs)  # never in the state

    # Diff: nothing changed -> no changes; a dropped manifest -> update; a new URL -> replace.
    assert p.diff(created.id, created.outs, dict(news)).changes is False
    newer = props(kbs.url, keys, [("a", A)], resources=("key", "extra"))
    d = p.diff(created.id, created.outs, newer)
    assert d.changes is True and d.replaces == []
    assert p.diff(created.id, created.outs, dict(news, kbs_url="http://elsewhere:1")).replaces == ["kbs_url"]

    p.update(created.id, created.outs, newer)
    dropped = set(news["reference_value_ids"]) - set(newer["reference_value_ids"])
    assert dropped and all(st.reference_values[k] == [] for k in dropped)
    assert all(st.reference_values[k] for k in newer["reference_value_ids"])
    assert st.resources["teeform/agent/key"] == secret  # kept resources keep their secret
    assert set(st.resources) == {"teeform/agent/key", "teeform/agent/extra"}
    # Repeating the update is idempotent.
    before = (dict(st.reference_values), dict(st.resources))
    p.update(created.id, newer, newer)
    assert (dict(st.reference_values), dict(st.resources)) == before

    p.delete(created.id, newer)
    assert all(v == [] for v in st.reference_values.values())
    assert st.resource_policy == DENY_ALL_RESOURCE_POLICY and st.resources == {}
    assert "trust_claims" in st.attestation_policies["default_cpu"]


def test_provider_failure_is_a_clear_error(kbs, keys) -> None:
    kbs.state.fail_next = 401
    with pytest.raises(KbsError, match="POST /kbs/v0/reference-value: HTTP 401 PluginInternalError: injected failure"):
        KbsRegistrationProvider().create(props(kbs.url, keys, [("a", A)]))


def test_generated_key_pair_is_made_once(keys) -> None:
    p = GeneratedKeyPairProvider()
    r = p.create({"common_name": "kbs.internal"})
    assert r.outs["admin_private_key_pem"].startswith("-----BEGIN PRIVATE KEY-----")
    assert r.outs["tls_cert_pem"].startswith("-----BEGIN CERTIFICATE-----")
    assert p.diff(r.id, r.outs, {"common_name": "kbs.internal"}).changes is False
    assert p.diff(r.id, r.outs, {"common_name": "other"}).replaces == ["common_name"]


def test_https_with_the_generated_certificate_pinned(keys) -> None:
    """A Trustee VM's KBS is reached by IP with teeform's self-signed certificate pinned (pin_only):
    the pinned certificate is accepted without a host-name match; another certificate is refused."""
    with LoopbackKbs(keys["admin_public_key_pem"], tls=(keys["tls_cert_pem"], keys["tls_private_key_pem"])) as k:
        assert k.url.startswith("https://127.0.0.1:")
        c = KbsAdmin(k.url, keys["admin_private_key_pem"], ca_cert_pem=keys["tls_cert_pem"], pin_only=True)
        c.set_resource_policy(DENY_ALL_RESOURCE_POLICY)
        assert k.state.resource_policy == DENY_ALL_RESOURCE_POLICY
        # Without pin_only the host name (127.0.0.1) does not match the certificate's SAN (kbs.test).
        with pytest.raises(KbsError, match="TLS with .* failed"):
            KbsAdmin(k.url, keys["admin_private_key_pem"], ca_cert_pem=keys["tls_cert_pem"]).get_resource_policy()
        other = generate_key_material("kbs.test")["tls_cert_pem"]
        with pytest.raises(KbsError, match="TLS with .* failed"):
            KbsAdmin(k.url, keys["admin_private_key_pem"], ca_cert_pem=other, pin_only=True).get_resource_policy()
    with pytest.raises(TeeformError, match="pin_only needs"):
        KbsAdmin("https://127.0.0.1:1", keys["admin_private_key_pem"], pin_only=True)


def test_wait_until_reachable(kbs, keys, monkeypatch) -> None:
    from components.trustee import provider

    monkeypatch.setattr(provider.time, "sleep", lambda s: None)
    provider.wait_until_reachable(KbsAdmin(kbs.url, keys["admin_private_key_pem"]), 5, interval=1)
    with pytest.raises(KbsError, match="cannot reach"):
        provider.wait_until_reachable(KbsAdmin("http://127.0.0.1:9", keys["admin_private_key_pem"], timeout=1), 2,
                                      interval=1)
    other = generate_key_material("x")["admin_private_key_pem"]
    with pytest.raises(KbsError, match="HTTP 401"):  # an answer is not retried
        provider.wait_until_reachable(KbsAdmin(kbs.url, other), 60, interval=1)


def test_unusable_json_from_the_kbs_is_one_clear_error(keys) -> None:
    """A KBS answering with JSON nested 100,000 deep (or with duplicate keys) gives a KbsError naming the
    endpoint, never a RecursionError traceback (teeform.safeload bounds)."""
    import http.server
    import threading

    bodies = {"/kbs/v0/resource-policy": b"[" * 100_000, "/kbs/v0/reference-value/x": b'{"a": 1, "a": 2}'}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server API
            body = bodies.get(self.path, b"null")
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        c = KbsAdmin(f"http://127.0.0.1:{srv.server_address[1]}", keys["admin_private_key_pem"])
        with pytest.raises(KbsError, match=r"resource-policy: the KBS answered with unusable JSON: .*nested"):
            c.get_resource_policy()
        with pytest.raises(KbsError, match=r"reference-value: the KBS answered with unusable JSON: .*duplicate"):
            c.get_reference_value("x")
    finally:
        srv.shutdown()
        srv.server_close()
