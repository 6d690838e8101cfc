"""``attach_key_broker`` standalone (issue 11 items 2 and 4): any target builder can give its target an
image-pinned key in a Trustee KBS. Run under the Pulumi SDK's mocks (pulumi.md §2.1); the registered
inputs are compared with the RVPS message decoded here (``base64`` + ``json``) and with the policies
evaluated by regorus over Trustee-shaped claims."""

from __future__ import annotations

import base64
import json
from typing import Any

import pulumi
import pytest
from pulumi.runtime import settings

from components.trustee import broker as kb
from teeform.errors import TeeformError
from teeform.trustee.engine import evaluate_attestation_policy

A = {"uki_authenticode_sha384": "a1" * 48, "rtmr1": "b1" * 48, "pcr11_sha256": "d1" * 32}
B = {"uki_authenticode_sha384": "a2" * 48, "rtmr1": "b2" * 48, "pcr11_sha256": "d2" * 32}


class Mocks(pulumi.runtime.Mocks):
    def __init__(self) -> None:
        self.resources: list[Any] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        self.resources.append(args)
        return f"{args.name}-id", dict(args.inputs)

    def call(self, args: pulumi.runtime.MockCallArgs) -> dict[str, Any]:
        return {}


def run(fn) -> tuple[Mocks, Any]:
    settings.ROOT.set(None)
    kb._reset_for_tests()
    mocks = Mocks()
    pulumi.runtime.set_mocks(mocks, project="teeform", stack="t", preview=False)
    box: dict[str, Any] = {}

    @pulumi.runtime.test
    def _run():
        box["out"] = fn()

    _run()
    return mocks, box["out"]


def endpoint(url: str = "https://kbs.example:8080") -> kb.KbsEndpoint:
    return kb.KbsEndpoint(url, pulumi.Output.secret("-----BEGIN PRIVATE KEY-----\n"), key=url)


def test_attach_registers_reference_values_and_policies_for_an_azure_target() -> None:
    mocks, out = run(lambda: kb.attach_key_broker("az-agent", [("a", A), ("b", B)], "sev-snp", "az-snp-vtpm",
                                                  endpoint=endpoint()))
    (reg,) = [r for r in mocks.resources if r.typ == kb.KBS_REGISTRATION_TYPE]
    (comp,) = [r for r in mocks.resources if r.typ == kb.KEY_BROKER_TYPE]
    assert comp.name == "az-agent-key-broker" and reg.name == "az-agent-key-broker-kbs"
    prov = json.loads(base64.b64decode(reg.inputs["rvps_message"]["payload"]))
    assert sorted(v[0] for v in prov.values()) == sorted([A["pcr11_sha256"], B["pcr11_sha256"]])
    assert out["reference_value_ids"] == sorted(prov) == reg.inputs["reference_value_ids"]
    assert out["key_resource"] == "resource/teeform/az-agent/key" and reg.inputs["resources"] == ["key"]
    assert reg.inputs["verifier"] == "az-snp-vtpm" and reg.inputs["kbs_url"] == "https://kbs.example:8080"
    # The registered AS policy admits manifest A's PCR11 and not another value.
    claims = {"az-snp-vtpm": {"policy_debug_allowed": "false", "policy_migrate_ma": "false",
                              "tpm": {"pcr11": A["pcr11_sha256"]}}}
    tc = evaluate_attestation_policy(reg.inputs["attestation_policy"], claims, prov)["trust_claims"]
    assert (tc["executables"], tc["hardware"], tc["configuration"]) == (3, 2, 2)
    claims["az-snp-vtpm"]["tpm"]["pcr11"] = "d3" * 32
    assert evaluate_attestation_policy(reg.inputs["attestation_policy"], claims, prov)["trust_claims"]["executables"] == 33


def test_attach_takes_loaded_manifests_and_tdx() -> None:
    class LM:
        def __init__(self, key, meas):
            self.key = key
            self.manifest = type("M", (), {"measurements": meas})()

    mocks, out = run(lambda: kb.attach_key_broker("td", [LM("a", A)], "tdx", "tdx", endpoint=endpoint()))
    (reg,) = [r for r in mocks.resources if r.typ == kb.KBS_REGISTRATION_TYPE]
    prov = json.loads(base64.b64decode(reg.inputs["rvps_message"]["payload"]))
    assert sorted(prov.values()) == sorted([[A["uki_authenticode_sha384"]], [A["rtmr1"]]])


@pytest.mark.parametrize(("tee", "verifier"), [("sev-snp", "tdx"), ("tdx", "az-snp-vtpm"), ("nitro-enclave", "tdx")])
def test_verifier_must_fit_the_tee(tee, verifier) -> None:
    with pytest.raises(TeeformError, match="cannot appraise") as exc:
        run(lambda: kb.attach_key_broker("x", [("a", A)], tee, verifier, endpoint=endpoint()))
    assert exc.value.field == "teeform:targets[x].keyBroker.verifier"


def test_one_kbs_serves_one_target() -> None:
    def two():
        kb.attach_key_broker("one", [("a", A)], "tdx", "tdx", endpoint=endpoint())
        kb.attach_key_broker("two", [("b", B)], "tdx", "tdx", endpoint=endpoint())

    with pytest.raises(TeeformError, match="already serves target 'one'"):
        run(two)


def test_missing_value_names_the_target() -> None:
    with pytest.raises(TeeformError, match="no pcr11_sha256") as exc:
        run(lambda: kb.attach_key_broker("az", [("a", {"rtmr1": "b1" * 48})], "tdx", "az-tdx-vtpm",
                                         endpoint=endpoint()))
    assert exc.value.field == "teeform:targets[az].manifests"
