"""`teeform measurements diff`: manifests whose inputs differ in known ways.

The EIF manifests here carry PCRs computed with the eif-nitro.md §2.2 formula
(PCRn = SHA384(0^48 || SHA384(measured bytes)), PCR1 over kernel||cmdline||bootstrap ramdisk, PCR2 over
the application ramdisk, PCR0 over all of them), so which PCRs differ follows from which input bytes
differ, not from the code under test.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from teeform.cli import main
from teeform.manifest import Artifact, ArtifactKind, Builder, InputDigest, Manifest, write_manifest
from teeform.measurements_diff import diff_manifests


def pcr(data: bytes) -> str:
    return hashlib.sha384(bytes(48) + hashlib.sha384(data).digest()).hexdigest()


def eif_manifest(*, kernel=b"K", cmdline=b"console=ttyS0", bootstrap=b"init+nsm", app=b"app-v1", cert=None,
                 builder="0.1.0", sde=1700000000, eif_bytes=None, details=None) -> Manifest:
    meas = {"PCR0": pcr(kernel + cmdline + bootstrap + app), "PCR1": pcr(kernel + cmdline + bootstrap), "PCR2": pcr(app)}
    meas["ImageSha384"] = meas["PCR0"]
    inputs = [InputDigest("kernel", "bzImage", hashlib.sha256(kernel).hexdigest(), len(kernel)),
              InputDigest("cmdline", "cmdline", hashlib.sha256(cmdline).hexdigest(), len(cmdline)),
              InputDigest("init", "init", hashlib.sha256(bootstrap).hexdigest(), len(bootstrap)),
              InputDigest("image", "agent:1", hashlib.sha256(app).hexdigest())]
    if cert is not None:
        meas["PCR8"] = pcr(cert)
        inputs.append(InputDigest("signing_certificate", "cert.pem", hashlib.sha256(cert).hexdigest(), len(cert)))
    blob = eif_bytes if eif_bytes is not None else kernel + cmdline + bootstrap + app + (cert or b"")
    return Manifest(ArtifactKind.EIF, "agent", "1.0.0",
                    Artifact("agent.eif", len(blob), hashlib.sha256(blob).hexdigest(), hashlib.sha384(blob).hexdigest()),
                    meas, tuple(inputs), Builder("teeform", builder), sde, details or {})


def by_name(diff):
    return {m.name: m for m in diff.measurements}


def test_image_change_moves_pcr2_and_pcr0_only():
    old, new = eif_manifest(), eif_manifest(app=b"app-v2")
    d = diff_manifests(old, new)
    ch = by_name(d)
    assert set(ch) == {"PCR0", "PCR2", "ImageSha384"} and "PCR1" in d.unchanged
    old_h, new_h = hashlib.sha256(b"app-v1").hexdigest(), hashlib.sha256(b"app-v2").hexdigest()
    s = ch["PCR2"].sentence()
    assert s == f"PCR2 changed because input 'image' changed (sha256:{old_h[:12]}… -> sha256:{new_h[:12]}…)"
    assert ch["PCR0"].explained and "input 'image' changed" in ch["PCR0"].sentence()
    assert ch["PCR2"].old == old.measurements["PCR2"] and ch["PCR2"].new == new.measurements["PCR2"]


def test_kernel_change_moves_pcr1_and_pcr0_not_pcr2():
    d = diff_manifests(eif_manifest(), eif_manifest(kernel=b"K2"))
    ch = by_name(d)
    assert set(ch) == {"PCR0", "PCR1", "ImageSha384"} and "PCR2" in d.unchanged
    assert "input 'kernel' changed" in ch["PCR1"].sentence() and "size 1 -> 2" in ch["PCR1"].sentence()


def test_bootstrap_init_change_is_pcr1():
    ch = by_name(diff_manifests(eif_manifest(), eif_manifest(bootstrap=b"init2+nsm")))
    assert "input 'init' changed" in ch["PCR1"].sentence()


def test_resigning_changes_pcr8_only():
    d = diff_manifests(eif_manifest(cert=b"cert-A"), eif_manifest(cert=b"cert-B"))
    assert set(by_name(d)) == {"PCR8"}
    assert "input 'signing-certificate' changed" in by_name(d)["PCR8"].sentence()
    assert any("only PCR8 changed" in n for n in d.notes)


def test_metadata_only_change_moves_no_pcr():
    d = diff_manifests(eif_manifest(eif_bytes=b"eif-a"), eif_manifest(eif_bytes=b"eif-bb", details={"build_time": "x"}))
    assert d.measurements == () and not d.changed
    assert any(a.startswith("size 5 -> 6 bytes (+1)") for a in d.artifact)
    assert any("only unmeasured parts changed" in n for n in d.notes)
    assert any("details changed: build_time" in n for n in d.notes)


def _with_pcr2(m: Manifest, data: bytes) -> Manifest:
    return Manifest(**{**m.__dict__, "measurements": {**m.measurements, "PCR2": pcr(data)}})


def test_unexplained_change_points_at_builder():
    # same recorded inputs and SOURCE_DATE_EPOCH, but the app ramdisk bytes differ (another builder version)
    old, new = eif_manifest(), _with_pcr2(eif_manifest(builder="0.2.0"), b"app-v1 laid out differently")
    ch = by_name(diff_manifests(old, new))
    assert not ch["PCR2"].explained
    assert "possibly builder teeform 0.1.0 -> teeform 0.2.0" in ch["PCR2"].sentence()
    # nothing recorded changed at all: say so
    ch = by_name(diff_manifests(old, _with_pcr2(eif_manifest(), b"app-v1 laid out differently")))
    assert not ch["PCR2"].explained and "no recorded input explains it" in ch["PCR2"].sentence()


def test_source_date_epoch_explains_eif_ramdisk_pcrs():
    # teeform EIFs: SOURCE_DATE_EPOCH is the mtime of every ramdisk entry (image_builder/pipelines/build_eif.py)
    old, new = eif_manifest(), _with_pcr2(eif_manifest(builder="0.2.0", sde=1700000500), b"app-v1 with other mtimes")
    ch = by_name(diff_manifests(old, new))
    assert ch["PCR2"].explained
    s = ch["PCR2"].sentence()
    assert "because SOURCE_DATE_EPOCH changed (1700000000 -> 1700000500; it is the mtime of every ramdisk entry)" in s


def test_vm_image_source_date_epoch_is_only_a_possible_cause():
    old, new = vm_manifest(), vm_manifest()
    new = Manifest(**{**new.__dict__, "source_date_epoch": 5,
                      "measurements": {**new.measurements, "pcr11_sha256": "9" * 64}})
    ch = by_name(diff_manifests(old, new))
    assert not ch["pcr11_sha256"].explained and "possibly SOURCE_DATE_EPOCH 0 -> 5" in ch["pcr11_sha256"].sentence()


def test_input_added_removed_and_unknown_role():
    old = eif_manifest()
    new = Manifest(**{**old.__dict__, "inputs": (*old.inputs[:3], InputDigest("image", "agent:2", "2" * 64),
                                                  InputDigest("sbom", "sbom.json", "3" * 64))})
    d = diff_manifests(old, new)
    kinds = {(i.role, i.change) for i in d.inputs}
    assert ("image", "changed") in kinds and ("sbom", "added") in kinds
    assert any("role 'sbom' is not in the eif dependency table" in n for n in d.notes)
    # image changed but no PCR did (the manifest PCRs are the same): flagged
    assert any("input 'image' changed" in n and "no measurement that depends on it changed" in n for n in d.notes)


def vm_manifest(root=b"rootfs-1", kernel=b"vmlinuz", cmd=b"ro", stub=b"stub252") -> Manifest:
    h = lambda b: hashlib.sha256(b).hexdigest()  # noqa: E731
    h3 = lambda b: hashlib.sha384(b).hexdigest()  # noqa: E731
    roothash = h(b"verity" + root)
    cmdline = cmd + b" roothash=" + roothash.encode()
    uki = stub + kernel + cmdline
    meas = {"roothash": roothash, "uki_authenticode_sha256": h(uki), "uki_authenticode_sha384": h3(uki),
            "pcr11_sha256": h(b"pcr11" + uki), "pcr11_sha384": h3(b"pcr11" + uki)}
    inputs = (InputDigest("rootfs", "rootfs.tar", h(root)), InputDigest("kernel", "vmlinuz", h(kernel)),
              InputDigest("cmdline", "cmdline", h(cmd)), InputDigest("stub", "linuxx64.efi.stub", h(stub)))
    return Manifest(ArtifactKind.VM_IMAGE, "agent-vm", "1", Artifact("disk.raw", 100, h(uki + root), h3(uki + root)),
                    meas, inputs, Builder("teeform", "0.1.0"), 0)


def test_vm_image_rootfs_change_cascades_through_roothash():
    ch = by_name(diff_manifests(vm_manifest(), vm_manifest(root=b"rootfs-2")))
    assert set(ch) == {"roothash", "uki_authenticode_sha256", "uki_authenticode_sha384", "pcr11_sha256", "pcr11_sha384"}
    assert "input 'rootfs' changed" in ch["roothash"].sentence()
    assert "roothash changed (the dm-verity roothash is part of the kernel command line" in ch["pcr11_sha384"].sentence()


def test_vm_image_stub_change_keeps_roothash():
    d = diff_manifests(vm_manifest(), vm_manifest(stub=b"stub254"))
    ch = by_name(d)
    assert "roothash" in d.unchanged and "input 'stub' changed" in ch["pcr11_sha256"].sentence()


def write(path: Path, m: Manifest) -> str:
    write_manifest(m, path)
    return str(path)


def test_cli_text_markdown_json(tmp_path, capsys):
    a = write(tmp_path / "old.manifest.json", eif_manifest())
    b = write(tmp_path / "new.manifest.json", eif_manifest(app=b"app-v2"))
    assert main(["measurements", "diff", a, b]) == 0
    text = capsys.readouterr().out
    assert "* PCR2 changed because input 'image' changed" in text and "unchanged: PCR1" in text
    assert main(["measurements", "diff", a, b, "--markdown"]) == 0
    md = capsys.readouterr().out
    assert md.startswith("### Measurements diff (eif)") and "| PCR2 |" in md and "key release policies must be updated" in md
    assert main(["measurements", "diff", a, b, "--json"]) == 0
    j = json.loads(capsys.readouterr().out)
    assert j["measurements_changed"] is True and {m["measurement"] for m in j["measurements"]} == {"PCR0", "PCR2", "ImageSha384"}
    # identical manifests: still exit 0
    assert main(["measurements", "diff", a, a, "--markdown"]) == 0
    assert "No measurement changed" in capsys.readouterr().out


def test_cli_bad_input(tmp_path, capsys):
    a = write(tmp_path / "old.manifest.json", eif_manifest())
    v = write(tmp_path / "vm.manifest.json", vm_manifest())
    assert main(["measurements", "diff", a, str(tmp_path / "missing.json")]) == 2
    assert "manifest not found" in capsys.readouterr().err
    assert main(["measurements", "diff", a, v]) == 2
    assert "cannot diff a 'eif' manifest with a 'vm-image' manifest" in capsys.readouterr().err
    (tmp_path / "bad.json").write_text('{"kind": "eif"}')
    assert main(["measurements", "diff", a, str(tmp_path / "bad.json")]) == 2


# ------------------------------------------------------------------------- real builds (teeform build eif)
def _signer(tmp: Path, cn: str) -> tuple[Path, Path]:
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP384R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=30)).sign(key, hashes.SHA384()))
    kp, cp = tmp / f"{cn}.key.pem", tmp / f"{cn}.cert.pem"
    kp.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption()))
    cp.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return kp, cp


def test_real_eif_builds(tmp_path, monkeypatch, capsys):
    """Build tiny EIFs with `teeform build eif`, changing one input at a time, and check that the diff
    names exactly that input (the role names image_builder/pipelines/build_eif.py writes) as the cause."""
    from image_builder.inputs.demo_image import LayerEntry, image_config, layer_blob, write_oci_layout

    def image(name: str, text: bytes) -> Path:
        blob = layer_blob(tmp_path / "layers", [LayerEntry("app/agent", "file", text, mode=0o755)], mtime=0)
        cfg = image_config([blob.diff_id], cmd=["/app/agent"], env=["PATH=/bin"], created=0)
        write_oci_layout(tmp_path / name, [blob], cfg, ref_name="agent:1")
        return tmp_path / name

    b = tmp_path / "blobs"
    b.mkdir()
    for n, data in (("bzImage", b"kernel"), ("init", b"init-1"), ("init2", b"init-2"), ("nsm.ko", b"nsm")):
        (b / n).write_bytes(data)
    img1, img2 = image("img1", b"agent v1"), image("img2", b"agent v2")
    k1, c1 = _signer(tmp_path, "signer-1")
    k2, c2 = _signer(tmp_path, "signer-2")

    def build(out: str, img: Path = img1, init: str = "init", sde: str = "1700000000", *extra: str) -> str:
        monkeypatch.setenv("SOURCE_DATE_EPOCH", sde)
        assert main(["build", "eif", "--image", str(img), "--kernel", str(b / "bzImage"), "--init", str(b / init),
                     "--nsm", str(b / "nsm.ko"), "--cmdline", "console=ttyS0", "--name", "agent",
                     "--out", str(tmp_path / out), *extra]) == 0
        return str(tmp_path / out / "agent.manifest.json")

    base = build("base")
    cases = {
        "image": (build("image", img2), {"PCR0", "PCR2", "ImageSha384"}, "input 'image' changed"),
        "init": (build("init", init="init2"), {"PCR0", "PCR1", "ImageSha384"}, "input 'init' changed"),
        "sde": (build("sde", sde="1800000000"), {"PCR0", "PCR1", "PCR2", "ImageSha384"},
                "SOURCE_DATE_EPOCH changed (1700000000 -> 1800000000"),
        "signed": (build("signed", img1, "init", "1700000000", "--signing-key", str(k1), "--signing-cert", str(c1)),
                   {"PCR8"}, "input 'signing-certificate' added (CN=signer-1"),
    }
    capsys.readouterr()
    for what, (new, changed, cause) in cases.items():
        assert main(["measurements", "diff", base, new, "--json"]) == 0
        j = json.loads(capsys.readouterr().out)
        got = {m["measurement"]: m for m in j["measurements"]}
        assert set(got) == changed, what
        for m in got.values():
            assert m["explained"] and any(cause in c for c in m["causes"]), (what, m)
    resigned = build("resigned", img1, "init", "1700000000", "--signing-key", str(k2), "--signing-cert", str(c2))
    capsys.readouterr()
    assert main(["measurements", "diff", cases["signed"][0], resigned]) == 0
    text = capsys.readouterr().out
    assert "* PCR8 changed because input 'signing-certificate' changed" in text and "name CN=signer-1 -> CN=signer-2" in text
    assert "unchanged: PCR0, PCR1, PCR2, ImageSha384" in text
    assert "the same image was signed with another certificate" in text
