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


def test_unexplained_change_points_at_builder_and_sde():
    old = eif_manifest()
    new = eif_manifest(builder="0.2.0", sde=1700000500)
    # same recorded inputs, but the app ramdisk bytes differ (e.g. cpio mtimes from SOURCE_DATE_EPOCH)
    meas = dict(new.measurements)
    meas["PCR2"] = pcr(b"app-v1 with other mtimes")
    new = Manifest(**{**new.__dict__, "measurements": meas})
    ch = by_name(diff_manifests(old, new))
    assert not ch["PCR2"].explained
    s = ch["PCR2"].sentence()
    assert "possibly builder teeform 0.1.0 -> teeform 0.2.0" in s and "SOURCE_DATE_EPOCH 1700000000 -> 1700000500" in s


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
