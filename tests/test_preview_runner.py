"""teeform.preview.runner: what it changes in the SDK while a program runs is restored afterwards, and
letting registrations settle during the program body changes no result."""

from __future__ import annotations

import gc

import pytest
from pulumi_support import REPO, config_values, nitro_target, write_fake_eif_manifest

from teeform.preview import registered_resources, run_program
from teeform.preview import runner as preview_runner
from teeform.preview.model import json_safe

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _run(tmp_path, n):
    img = write_fake_eif_manifest(tmp_path / "build")
    targets = [nitro_target([img.manifest_path], name=f"agent{i}") for i in range(n)]
    mocks, outputs = run_program(REPO, "dev", config_values(targets))
    return mocks, {r.urn: json_safe(r.inputs) for r in registered_resources(mocks, "dev")}, outputs  # assets by path


def test_settling_changes_no_result(tmp_path, monkeypatch):
    monkeypatch.setattr(preview_runner, "SETTLE_EVERY", 10)
    settled, res_a, out_a = _run(tmp_path / "a", 3)
    assert settled.settles >= 5  # 3 targets register ~80 resources
    monkeypatch.setattr(preview_runner, "SETTLE_EVERY", 10**9)
    plain, res_b, out_b = _run(tmp_path / "a", 3)
    assert plain.settles == 0
    assert res_a == res_b and out_a == out_b
    assert len(res_a) == len(settled.resources)  # every registration, each URN once


def test_sdk_and_gc_are_restored(tmp_path):
    import pulumi.resource
    import pulumi.runtime.resource

    register, stack_trace = pulumi.resource.register_resource, pulumi.runtime.resource._get_stack_trace
    threshold = gc.get_threshold()
    _run(tmp_path, 1)
    assert pulumi.resource.register_resource is register
    assert pulumi.runtime.resource._get_stack_trace is stack_trace
    assert gc.get_threshold() == threshold and gc.get_freeze_count() == 0
