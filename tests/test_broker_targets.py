"""``keyBroker:`` on the Azure and GCP confidential-VM targets (issue 11 item 4), under the SDK's mocks.

Oracles: the registered ``KbsRegistration``'s RVPS message is decoded here (``base64`` + ``json``) and its
values compared with the manifest **file**'s own values (read with ``json``, not through teeform's
loader); the AS policy is evaluated with regorus (the engine Trustee runs) over Trustee-shaped claims.
A target without ``keyBroker`` registers exactly what it did before (same resources, same outputs).
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from pulumi_support import REPO, by_type, fake_hex, one, run
from test_azure_components import azure_target, write_vhd_manifest
from test_gcp_confidential_vm import cvm_target, vm_manifest

from teeform.errors import TeeformError

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

REG = "pulumi-python:dynamic/trustee:KbsRegistration"
KBS = "https://kbs.example:8080"


@pytest.fixture(autouse=True)
def _fresh_kbs_registry():
    """Each test's program runs are separate programs: forget which KBS served which target
    (components/trustee/broker.py keeps that per process, keyed by project/stack/URL)."""
    from components.trustee import broker

    broker._reset_for_tests()
    yield
    broker._reset_for_tests()


def run_with(targets: list[dict[str, Any]], **config: Any):
    from pulumi_support import config_values

    from teeform.preview import registered_resources, run_program

    mocks, outputs = run_program(REPO, "dev", {**config_values(targets), **config})
    return registered_resources(mocks, "dev"), outputs


def provenance(reg: Any) -> dict[str, list[str]]:
    return json.loads(base64.b64decode(reg.inputs["rvps_message"]["payload"]))


@pytest.mark.parametrize(("tee", "size", "verifier"), [("sev-snp", "Standard_DC4as_v5", "az-snp-vtpm"),
                                                       ("tdx", "Standard_DC4es_v5", "az-tdx-vtpm")])
def test_azure_broker_pins_pcr11_of_each_manifest(tmp_path: Path, tee: str, size: str, verifier: str) -> None:
    a = write_vhd_manifest(tmp_path / "a", version="1.0.0")
    b = write_vhd_manifest(tmp_path / "b", version="1.1.0", extra={"pcr11_sha256": fake_hex("other-pcr11", 64)})
    res, outs = run_with([azure_target(a, "az", tee, vmSize=size, manifests=[str(a), str(b)],
                                       keyBroker={"kbs": KBS})], **{"teeform:kbsAdminKey": "pem"})
    reg = one(res, REG)
    prov = provenance(reg)
    files = [json.loads(p.read_text())["measurements"] for p in (a, b)]
    assert files[0]["pcr11_sha256"] != files[1]["pcr11_sha256"]
    # One set per manifest, one value per set: exactly the files' PCR 11 values, nothing else.
    assert sorted(prov.values()) == sorted([[f["pcr11_sha256"]] for f in files])
    assert all(k.endswith(".pcr11") for k in prov)
    assert reg.inputs["verifier"] == verifier and reg.inputs["target"] == "az" and reg.inputs["kbs_url"] == KBS
    assert outs["reference_value_ids"] == sorted(prov) and outs["key_resource"] == "resource/teeform/az/key"
    assert "pins our image (vTPM PCR 11" in outs["key_broker_gate"] and "resource/teeform/az/key" in outs["key_broker_gate"]
    assert "pins the platform" in outs["key_gate"] and "pins our image" in outs["key_gate"]
    # The Key Vault key is still there, with its platform-only release policy.
    assert len(by_type(res, "azure-native:keyvault:Key")) == 1


def test_azure_broker_policy_admits_one_manifest_and_refuses_a_mix(tmp_path: Path) -> None:
    from teeform.trustee.engine import evaluate_attestation_policy

    a = write_vhd_manifest(tmp_path / "a")
    res, _ = run_with([azure_target(a, "az", keyBroker={"kbs": KBS})], **{"teeform:kbsAdminKey": "pem"})
    reg = one(res, REG)
    pcr11 = json.loads(a.read_text())["measurements"]["pcr11_sha256"]
    claims = {"az-snp-vtpm": {"policy_debug_allowed": "false", "policy_migrate_ma": "false", "tpm": {"pcr11": pcr11}}}
    tc = evaluate_attestation_policy(reg.inputs["attestation_policy"], claims, provenance(reg))["trust_claims"]
    assert (tc["executables"], tc["hardware"], tc["configuration"]) == (3, 2, 2)
    claims["az-snp-vtpm"]["tpm"]["pcr11"] = fake_hex("not ours", 64)
    assert evaluate_attestation_policy(reg.inputs["attestation_policy"], claims, provenance(reg))["trust_claims"][
        "executables"] != 3


def test_azure_target_without_key_broker_is_unchanged(tmp_path: Path) -> None:
    from teeform.azure_release import GATE_PINS

    m = write_vhd_manifest(tmp_path / "a")
    res, outs, _ = run([azure_target(m, "az")])
    assert by_type(res, REG) == [] and by_type(res, "teeform:trustee:KeyBroker") == []
    assert list(outs) == ["measurements", "image_version_id", "vm_id", "key_id", "key_gate", "release_policy",
                          "attestation_authority", "secure_boot", "vm_measurements", "manifest_sha256"]
    assert outs["key_gate"] == GATE_PINS
    res2, _ = run_with([azure_target(m, "az", keyBroker={"kbs": KBS})], **{"teeform:kbsAdminKey": "pem"})
    extra = sorted({r.type for r in res2} - {r.type for r in res})
    assert extra == ["pulumi-python:dynamic/trustee:KbsRegistration", "teeform:trustee:KeyBroker"]


def test_gcp_tdx_broker_pins_uki_and_rtmrs(tmp_path: Path) -> None:
    man = vm_manifest(tmp_path / "b")
    res, outs = run_with([cvm_target([man], tee="tdx", keyBroker={"kbs": KBS})], **{"teeform:kbsAdminKey": "pem"})
    reg = one(res, REG)
    meas = json.loads(man.read_text())["measurements"]
    prov = provenance(reg)
    assert reg.inputs["verifier"] == "tdx"
    assert {k.rsplit(".", 1)[1]: v for k, v in prov.items()} == {"uki": [meas["uki_authenticode_sha384"]],
                                                                "rtmr_1": [meas["rtmr1"]]}
    assert list(outs)[-5:] == ["kbs_url", "reference_value_ids", "key_resource", "key_broker_gate", "manifest_sha256"]
    assert "UKI Authenticode SHA-384" in outs["key_broker_gate"]
    # pins: [uki] drops RTMR1 (Google's firmware may not emit teeform's OVMF event sequence, clouds.md §8).
    res, _ = run_with([cvm_target([man], tee="tdx", keyBroker={"kbs": KBS, "pins": ["uki"]})],
                      **{"teeform:kbsAdminKey": "pem"})
    assert list(provenance(one(res, REG)).values()) == [[meas["uki_authenticode_sha384"]]]


def test_one_kbs_serves_one_target_across_clouds(tmp_path: Path) -> None:
    m = write_vhd_manifest(tmp_path / "a")
    with pytest.raises(TeeformError, match="already serves target 'az'") as exc:
        run_with([azure_target(m, "az", keyBroker={"kbs": KBS}),
                  cvm_target([vm_manifest(tmp_path / "b")], tee="tdx", keyBroker={"kbs": KBS})],
                 **{"teeform:kbsAdminKey": "pem"})
    assert exc.value.field == "teeform:targets[cvm].keyBroker.kbs"


def test_gcp_target_without_key_broker_is_unchanged(tmp_path: Path) -> None:
    res, outs, _ = run([cvm_target([vm_manifest(tmp_path / "b")], tee="tdx")])
    assert by_type(res, REG) == []
    assert list(outs) == ["measurements", "instance_id", "image_self_link", "image_uri", "manifest_sha256"]


def test_endpoint_config_names_the_kbs(tmp_path: Path) -> None:
    m = write_vhd_manifest(tmp_path / "a")
    res, outs = run_with([azure_target(m, "az", keyBroker={"kbs": "kbsAzure"})],
                         **{"teeform:kbsAzure": {"url": "https://kbs.azure.example:8443", "adminKeySecret": "azKbsKey"},
                            "teeform:azKbsKey": "pem"})
    assert one(res, REG).inputs["kbs_url"] == "https://kbs.azure.example:8443" == outs["kbs_url"]
    with pytest.raises(TeeformError) as exc:
        run_with([azure_target(m, "az", keyBroker={"kbs": "kbsAzure"})], **{"teeform:kbsAzure": {"uri": "x"}})
    assert exc.value.field == "teeform:kbsAzure.uri"
    with pytest.raises(TeeformError, match="trustee endpoint config") as exc:
        run_with([azure_target(m, "az", keyBroker={"kbs": "kbsNowhere"})])
    assert exc.value.field == "teeform:kbsNowhere"


def test_missing_admin_key_offline_is_a_warning_and_online_an_error(tmp_path: Path, monkeypatch) -> None:
    from components.trustee import broker  # existing_kbs decides offline or not

    m = write_vhd_manifest(tmp_path / "a")
    res, _ = run_with([azure_target(m, "az", keyBroker={"kbs": KBS})])  # mock engine: secure values are left out
    assert one(res, REG).inputs["kbs_url"] == KBS
    monkeypatch.setattr(broker, "_offline", lambda: False)
    with pytest.raises(TeeformError, match="teeform:kbsAdminKey is missing") as exc:
        run_with([azure_target(m, "az", keyBroker={"kbs": KBS})])
    assert exc.value.field == "teeform:targets[az].keyBroker.adminKeySecret"
    assert "pulumi config set --secret" in (exc.value.hint or "")


def test_a_pinned_value_the_manifest_lacks_names_the_target(tmp_path: Path) -> None:
    man = vm_manifest(tmp_path / "b")  # records rtmr1, not rtmr2 (a stub older than 256)
    assert "rtmr2" not in json.loads(man.read_text())["measurements"]
    with pytest.raises(TeeformError, match="no rtmr2 measurement") as exc:
        run_with([cvm_target([man], tee="tdx", keyBroker={"kbs": KBS, "pins": ["uki", "rtmr_2"]})],
                 **{"teeform:kbsAdminKey": "pem"})
    assert exc.value.field == "teeform:targets[cvm].manifests" and exc.value.path is not None


@pytest.mark.parametrize(("cloud", "tee", "kb", "field", "msg"), [
    ("azure", "sev-snp", {"kbs": KBS, "verifier": "tdx"}, "keyBroker.verifier", "az-snp-vtpm verifier"),
    ("azure", "tdx", {"kbs": KBS, "verifier": "tdx"}, "keyBroker.verifier", "az-tdx-vtpm verifier"),
    ("azure", "sev-snp", {"kbs": KBS, "verifier": "sgx"}, "keyBroker.verifier", "unknown Trustee verifier"),
    ("azure", "sev-snp", {}, "keyBroker.kbs", "needs 'kbs'"),
    ("azure", "sev-snp", {"kbs": "ftp://x"}, "keyBroker.kbs", "http(s)://host[:port]"),
    ("azure", "sev-snp", {"kbs": "https://k:1/path"}, "keyBroker.kbs", "http(s)://host[:port]"),
    ("azure", "sev-snp", {"kbs": "no such name!"}, "keyBroker.kbs", "config key name"),
    ("azure", "sev-snp", {"kbs": "kbsAzure", "adminKeySecret": "k"}, "keyBroker.adminKeySecret", "in that config"),
    ("azure", "sev-snp", {"kbs": KBS, "url": KBS}, "keyBroker", "unknown key(s) ['url']"),
    ("azure", "sev-snp", {"kbs": KBS, "pins": ["uki"]}, "keyBroker.pins", "not a az-snp-vtpm claim"),
    ("azure", "sev-snp", {"kbs": KBS, "mrTd": ["ab" * 48]}, "keyBroker.mrTd", "TDX quotes"),
    ("azure", "tdx", {"kbs": KBS, "mrTd": ["ab"]}, "keyBroker.mrTd[0]", "96 lowercase hex"),
    ("azure", "tdx", {"kbs": KBS, "tcbStatuses": ["Fine"]}, "keyBroker.tcbStatuses[0]", "unknown TCB status"),
    ("azure", "sev-snp", {"kbs": KBS, "deploy": {}}, "keyBroker", "unknown key(s) ['deploy']"),
    ("gcp", "tdx", {"kbs": KBS, "pins": ["rtmr_1"]}, "keyBroker.pins", "must pin 'uki'"),
    ("gcp", "tdx", {"kbs": KBS, "verifier": "az-tdx-vtpm"}, "keyBroker.verifier", "tdx verifier"),
    ("gcp", "sev-snp", {"kbs": KBS}, "keyBroker", "no Trustee verifier"),
    ("azure", "sev-snp", "https://kbs", "keyBroker", "mapping"),
])
def test_bad_key_broker_names_the_field(tmp_path: Path, cloud, tee, kb, field, msg) -> None:
    from teeform.stack import StackConfig

    if cloud == "azure":
        t = azure_target(tmp_path / "m.json", "az", tee, keyBroker=kb)
        if tee == "tdx":
            t["vmSize"] = "Standard_DC4es_v5"
    else:
        t = cvm_target([tmp_path / "m.json"], tee=tee, keyBroker=kb)
    with pytest.raises(TeeformError) as exc:
        StackConfig.from_values({"environment": "dev", "targets": [t]}, stack="dev", source="stacks/x.yaml",
                                project_dir=REPO)
    assert exc.value.field == f"teeform:targets[0].{field}" and msg in exc.value.message, exc.value
    assert exc.value.path is not None and str(exc.value.path) == "stacks/x.yaml"


def test_gate_sentences_say_what_each_gate_pins() -> None:
    from teeform.targets import Cloud, TeeType, plugin_for

    for tee in (TeeType.SEV_SNP, TeeType.TDX):
        gate = plugin_for(Cloud.AZURE, tee).gate
        assert "pins the platform" in gate and "not the image" in gate
        assert "with keyBroker: the Trustee-released secret" in gate and "pins our image (vTPM PCR 11" in gate
    gate = plugin_for(Cloud.GCP, TeeType.TDX).gate
    assert "platform only" in gate and "pins our image (UKI Authenticode SHA-384" in gate
    assert "keyBroker" not in plugin_for(Cloud.GCP, TeeType.SEV_SNP).gate
