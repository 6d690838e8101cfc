"""The image_builder layering contract (issue 7 item 4), checked by import-linter as part of the tests.

``pyproject.toml`` ``[tool.importlinter]`` declares the contracts (docs/architecture.md "image_builder
layers"): pipelines > measure > formats > inputs, no cycles between sibling modules, the EIF and VM
pipelines independent, the per-spec measurement models independent, and image_builder below the CLI.
``test_contracts_kept`` runs ``lint-imports`` over this tree; the other tests run it over a copy with
one injected import each and check that it reports exactly the contract that import breaks, so a
contract that silently stopped checking anything (a typo in a module name, a dropped entry) fails here.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from conftest import REPO

LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"
PACKAGES = ("image_builder", "teeform", "components")
OUR_CONTRACTS = {
    "image-builder-layers",
    "image-builder-acyclic",
    "image-builder-pipelines-independent",
    "image-builder-measure-per-spec",
    "image-builder-below-cli",
}


def lint_imports(root: Path, *contracts: str) -> subprocess.CompletedProcess[str]:
    """Run ``lint-imports`` with ``root``'s pyproject.toml, analysing the packages under ``root``."""
    if not LINT_IMPORTS.exists():
        pytest.fail(f"{LINT_IMPORTS} is missing: run scripts/setup.sh (import-linter is in requirements-dev.txt)")
    args = [str(LINT_IMPORTS), "--no-cache", "--no-logo"]
    for c in contracts:
        args += ["--contract", c]
    env = {**os.environ, "PYTHONPATH": str(root), "COLUMNS": "200"}
    return subprocess.run(args + [str(root / "pyproject.toml")], cwd=root, env=env, capture_output=True,
                          text=True, timeout=120)


def test_our_contracts_are_declared() -> None:
    with open(REPO / "pyproject.toml", "rb") as fh:
        cfg = tomllib.load(fh)["tool"]["importlinter"]
    assert set(cfg["root_packages"]) >= set(PACKAGES)
    ids = {c["id"] for c in cfg["contracts"]}
    assert ids >= OUR_CONTRACTS, f"missing contracts: {sorted(OUR_CONTRACTS - ids)}"
    layers = next(c for c in cfg["contracts"] if c["id"] == "image-builder-layers")
    assert layers["containers"] == ["image_builder"]
    assert layers["layers"] == ["pipelines", "measure", "formats", "inputs"]


def test_contracts_kept() -> None:
    proc = lint_imports(REPO)
    assert proc.returncode == 0, "import-linter reports a broken contract:\n" + proc.stdout + proc.stderr
    assert "0 broken" in proc.stdout


@pytest.fixture(scope="module")
def tree_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A pristine copy of the analysed packages and pyproject.toml (tests copy it again to modify)."""
    root = tmp_path_factory.mktemp("tree")
    for pkg in PACKAGES:
        shutil.copytree(REPO / pkg, root / pkg, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copy2(REPO / "pyproject.toml", root / "pyproject.toml")
    return root


def test_unmodified_copy_passes(tree_copy: Path) -> None:
    # The copy is what gets analysed, and as it stands it keeps every contract: so a failure in the
    # tests below comes from the injected import.
    proc = lint_imports(tree_copy, *sorted(OUR_CONTRACTS))
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize(("module", "injected", "contracts", "expected"), [
    # A byte format importing a pipeline: an upward import across two layers.
    ("image_builder/formats/gpt.py", "from image_builder.pipelines import build_vm",
     # (pipelines import formats, so the upward import also closes a cycle)
     ("image-builder-layers", "image-builder-acyclic"), "image_builder.formats.gpt -> image_builder.pipelines.build_vm"),
    # The OCI input layer importing a format (what inputs/demo_image.py did with eif.rfc3339).
    ("image_builder/inputs/demo_image.py", "from image_builder.formats import eif",
     ("image-builder-layers",), "image_builder.inputs.demo_image -> image_builder.formats.eif"),
    # eif imports eif_sign lazily; eif_sign importing eif closes a cycle (what eif_sign did before).
    ("image_builder/formats/eif_sign.py", "from image_builder.formats import eif",
     ("image-builder-acyclic",), "No cycles are allowed in image_builder.formats"),
    ("image_builder/pipelines/build_vm.py", "from image_builder.pipelines import build_eif",
     ("image-builder-pipelines-independent",), "image_builder.pipelines.build_vm -> image_builder.pipelines.build_eif"),
    ("image_builder/measure/snp.py", "from image_builder.measure import pcr11",
     ("image-builder-measure-per-spec",), "image_builder.measure.snp -> image_builder.measure.pcr11"),
    ("image_builder/formats/cpio.py", "import teeform.cli",
     ("image-builder-below-cli",), "image_builder.formats.cpio -> teeform.cli"),
])
def test_injected_import_breaks_the_contract(tree_copy: Path, tmp_path: Path, module: str, injected: str,
                                             contracts: tuple[str, ...], expected: str) -> None:
    root = tmp_path / "tree"
    shutil.copytree(tree_copy, root)
    target = root / module
    text = target.read_text(encoding="utf-8")
    anchor = "from __future__ import annotations\n"
    assert anchor in text, f"{module} has no {anchor!r} line to put the injected import after"
    target.write_text(text.replace(anchor, f"{anchor}\n{injected}  # injected by tests/test_layers.py\n", 1),
                      encoding="utf-8")
    proc = lint_imports(root, *sorted(OUR_CONTRACTS))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert f"{len(contracts)} broken" in out, out
    broken = out.split("Broken contracts", 1)[1]
    names = {c["id"]: c["name"] for c in tomllib.loads((root / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]}
    for contract in contracts:
        assert f"\n{names[contract]}\n" in broken, out
    assert expected in " ".join(broken.split()), out


def test_uki_prediction_maths_does_no_io(tmp_path: Path) -> None:
    """``image_builder.measure.vm.predict_uki`` is bytes in, prediction out: it still predicts the
    published TV-3 PCR 11 (ukify 254 layout, systemd-stub 254; tests/vectors/README.md) and RTMR1 once
    the UKI it was measured from is gone."""
    import uki_vectors as V
    from conftest import require_file

    from image_builder.formats.uki import SectionOrder, UkiInputs, build_uki, read_uki_layout
    from image_builder.measure.authenticode import authenticode_digest
    from image_builder.measure.vm import predict_uki, predict_vm_measurements

    files = V.write_tv2_inputs(tmp_path)
    uki = tmp_path / "uki.efi"
    build_uki(UkiInputs(stub=require_file(V.STUB_254, "systemd-stub 254"), linux=files["linux"],
                        initrd=files["initrd"], cmdline=files["cmdline"].read_bytes(),
                        osrel=files["osrel"].read_bytes(), uname=V.TV2_UNAME,
                        section_order=SectionOrder.UKIFY_254), uki)
    layout = read_uki_layout(uki)
    auth = authenticode_digest(uki, ("sha256", "sha384"))
    assert auth["sha256"] == V.TV3_AUTHENTICODE_SHA256
    from_file = predict_vm_measurements(uki)
    uki.unlink()
    pred = predict_uki(layout, authenticode=auth, stub_version=254,
                       stub_version_source="given", gpt_event_data=None, secure_boot=False)
    m = pred["measurements"]
    assert (m["pcr11_sha256"], m["pcr11_sha384"]) == (V.TV3_PCR11_254["sha256"], V.TV3_PCR11_254["sha384"])
    assert m["uki_authenticode_sha256"] == V.TV3_AUTHENTICODE_SHA256
    # The TV-2 kernel is not a PE image, so the file-based prediction had no kernel event either.
    assert m == from_file["measurements"]
