"""docs/layout.md stays true where it names things that exist today: the target plug-ins and the
measurement table's consumers."""

from __future__ import annotations

import re

from pulumi_support import REPO

DOC = (REPO / "docs" / "layout.md").read_text()


def test_every_target_plugin_module_is_described() -> None:
    from teeform.targets import PLUGINS

    modules = {spec.split(":")[0].rsplit(".", 1)[1] for spec in PLUGINS.values()}
    named = set(re.findall(r"`((?:aws|azure|gcp|alicloud)_[a-z_]+?)(?:\.py)?`", DOC))
    assert modules == named, (modules, named)


def test_target_plugin_api_attributes_exist() -> None:
    from teeform.targets.base import TargetPlugin

    for attr in ("settings_keys", "parse_settings", "manifest_kinds", "outputs", "builder", "gate", "key_release"):
        assert f"`{attr}`" in DOC, attr
        assert hasattr(TargetPlugin, attr) or attr in TargetPlugin.__annotations__, attr


def test_azure_error_example_is_the_real_message() -> None:
    from teeform.errors import TeeformError
    from teeform.stack import StackConfig

    target = {"name": "a", "cloud": "aws", "region": "eu-west-1", "tee": "nitro-enclave", "manifests": ["m.json"]}
    azure = {"name": "b", "cloud": "azure", "region": "westeurope", "tee": "sev-snp", "manifests": ["v.json"],
             "enclave": {"cpuCount": 2}}
    try:
        StackConfig.from_values({"targets": [target, azure]}, stack="dev", source="s.yaml")
    except TeeformError as exc:
        message = str(exc).removeprefix("s.yaml: ")
    else:
        raise AssertionError("an Azure target with enclave: must be refused")
    assert f"`{message}`" in DOC, message
