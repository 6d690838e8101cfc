"""One measurement table (issue 7 item 5): every measurement name any module accepts or prints is in
:data:`teeform.measurements.MEASUREMENTS`, with the same hex length.

The modules that once had their own name/length tables (manifest, report, measurements diff, Nitro
attestation verification, the policy pack's copy, the JSON Schema, the ``measure`` display names) are
checked against the table here, so adding a measurement in one place and not the other fails a test.
The lengths themselves are facts of the hash functions: SHA-256 = 32 bytes, SHA-384 = 48 bytes
(FIPS 180-4 §1, table 1), checked against ``hashlib`` below rather than against the table.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json

import pytest

from teeform import measurements as mtable
from teeform.manifest import OPTIONAL_MEASUREMENTS, REQUIRED_MEASUREMENTS, SCHEMA_PATH, ArtifactKind

KINDS = [k.value for k in ArtifactKind]


def test_table_is_consistent() -> None:
    names = [m.name for m in mtable.MEASUREMENTS]
    assert len(names) == len(set(names))
    shown = [m.shown for m in mtable.MEASUREMENTS if m.shown]
    assert len(shown) == len(set(shown))
    for m in mtable.MEASUREMENTS:
        assert m.kind in KINDS and m.tees and m.source and m.display
        # the algorithm is in the name or the display name; its digest size comes from hashlib
        algo = "sha384" if "384" in m.name + m.display or m.kind == mtable.EIF or m.name.startswith(("rtmr", "snp")) \
            else "sha256"
        assert m.hex_len == 2 * hashlib.new(algo).digest_size, m


def test_every_kind_has_a_table_entry() -> None:
    from teeform.stack import TeeType

    assert {m.kind for m in mtable.MEASUREMENTS} == set(KINDS)
    assert {t for m in mtable.MEASUREMENTS for t in m.tees} <= {t.value for t in TeeType}


@pytest.mark.parametrize("kind", list(ArtifactKind))
def test_manifest_accepts_exactly_the_table(kind: ArtifactKind) -> None:
    accepted = {**REQUIRED_MEASUREMENTS[kind], **OPTIONAL_MEASUREMENTS[kind]}
    assert accepted == {m.name: m.hex_len for m in mtable.MEASUREMENTS if m.kind == kind.value}
    assert set(REQUIRED_MEASUREMENTS[kind]) == {m.name for m in mtable.MEASUREMENTS if m.kind == kind.value and m.required}


def test_manifest_validation_uses_the_table_lengths() -> None:
    """A manifest carrying a table measurement at the wrong length is refused, at the right one accepted."""
    from teeform.errors import TeeformError
    from teeform.manifest import validate_manifest_dict

    def doc(meas: dict[str, str]) -> dict:
        return {"schema_version": 1, "kind": "eif", "name": "a", "version": "1",
                "artifact": {"file_name": "a.eif", "size": 1, "sha256": "0" * 64, "sha384": "0" * 96},
                "measurements": meas, "inputs": [], "builder": {"name": "teeform", "version": "0"},
                "source_date_epoch": 0, "details": {}}

    good = {n: "ab" * (mtable.hex_len(n) // 2) for n in mtable.names(mtable.EIF)}
    validate_manifest_dict(doc(good))
    with pytest.raises(TeeformError, match="measurements/PCR8"):
        validate_manifest_dict(doc({**good, "PCR8": "ab" * 32}))
    with pytest.raises(TeeformError, match="unknown measurement 'PCR3'"):
        validate_manifest_dict(doc({**good, "PCR3": "ab" * 48}))


def test_json_schema_required_lists_match_the_table() -> None:
    schema = json.loads(SCHEMA_PATH.read_text())
    found = {}
    for clause in schema.get("allOf", []):
        kind = clause["if"]["properties"]["kind"]["const"]
        found[kind] = set(clause["then"]["properties"]["measurements"]["required"])
    assert found == {k: set(mtable.required(k)) for k in KINDS}


def test_measurements_diff_knows_every_table_name() -> None:
    from teeform import measurements_diff as md

    for kind, deps in md.DEPENDENCIES.items():
        assert set(deps) == set(mtable.names(kind.value)), kind
    for kind, embeds in md.EMBEDS.items():
        for name, inner in embeds.items():
            assert {name, *inner} <= set(mtable.names(kind.value))
    assert md.EIF_SDE_MEASURED <= set(mtable.names(mtable.EIF))
    assert set(md.WHY_EMBEDDED) <= set(mtable.BY_NAME)


def test_nitro_verify_checks_table_pcrs_at_their_document_index() -> None:
    from teeform.nitro import verify

    assert set(verify.CHECKED_PCRS) <= set(mtable.names(mtable.EIF))
    for name, index in verify.PCR_INDEX.items():
        m = mtable.BY_NAME[name]
        assert name == f"PCR{index}" and "nitro-enclave" in m.tees and m.digest_bytes == hashlib.sha384().digest_size


def test_report_accepts_only_table_names_and_lengths() -> None:
    from teeform.report import MeasurementReport

    MeasurementReport("x", "eif", {"PCR0": "00" * 48, "ImageSha384": "00" * 48})
    with pytest.raises(ValueError, match="'PCR3' is not in teeform.measurements"):
        MeasurementReport("x", "eif", {"PCR3": "00" * 48})
    with pytest.raises(ValueError, match="'PCR11_sha256' has 96 hex digits, the table says 64"):
        MeasurementReport("x", "uki", {"PCR11_sha256": "00" * 48})


def test_measure_display_names_are_the_table_shown_names() -> None:
    """``teeform measure`` renames manifest names for display (formats/uki.py DISPLAY_NAMES, EIF as_hex)."""
    from image_builder.formats import eif

    # the UKI report lives in image_builder.pipelines.report once the layered layout is in (docs/layout.md)
    mods = [m for m in ("image_builder.pipelines.report", "image_builder.formats.uki") if importlib.util.find_spec(m)]
    table = next(mod.DISPLAY_NAMES for mod in map(importlib.import_module, mods) if hasattr(mod, "DISPLAY_NAMES"))
    assert table == mtable.shown_names(mtable.VM_IMAGE)
    shown = eif.EifPcrs(b"\0" * 48, b"\1" * 48, b"\2" * 48, b"\3" * 48).as_hex()
    assert list(shown) == [mtable.BY_NAME[n].shown for n in mtable.names(mtable.EIF)]
    assert all(len(v) == mtable.BY_SHOWN[k].hex_len for k, v in shown.items())


def test_policy_pack_copy_matches_the_table() -> None:
    """The pack cannot import teeform (its venv has only pulumi_policy): its copies are checked here."""
    import sys

    from pulumi_support import REPO

    sys.path.insert(0, str(REPO / "policies"))
    try:
        from teeform_policies import kms
    finally:
        sys.path.remove(str(REPO / "policies"))
    assert tuple(kms.DEBUG_MEASUREMENTS) == mtable.names(mtable.EIF)
    pinned = {k.rsplit(":", 1)[1] for k in kms.PINNING_KEYS}
    assert pinned <= set(mtable.names(mtable.EIF))


def test_stack_and_key_release_names_are_in_the_table() -> None:
    from teeform.targets.aws_nitro_enclave import AttestationConfig
    from teeform.targets.base import TargetPlugin

    assert set(mtable.NITRO_PINNABLE_PCRS) <= set(mtable.names(mtable.EIF))
    assert set(AttestationConfig().pins) <= set(mtable.names(mtable.EIF))
    for plugin_cls in _all_subclasses(TargetPlugin):
        kinds = getattr(plugin_cls, "manifest_kinds", None)
        if kinds is not None:
            assert set(kinds) <= set(KINDS), plugin_cls


def _all_subclasses(cls: type) -> list[type]:
    import teeform.targets  # noqa: F401  (registers every plug-in)

    out, todo = [], [cls]
    while todo:
        for sub in todo.pop().__subclasses__():
            out.append(sub)
            todo.append(sub)
    return out
