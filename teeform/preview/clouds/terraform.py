"""pulumi-terraform's state reference under ``teeform preview`` (prefix ``terraform:``).

Answers the invoke ``terraform:state:getLocalReference`` (``{"path": ...}``) like the provider does for a
local backend: ``{"outputs": {name: value}}`` of the state's root module, ``sensitive`` flags dropped
(pulumi/pulumi-terraform@77ed502 ``provider/shim/shim.go`` ``StateReferenceRead``; gitops-signing-terraform.md
§3.5). The state file is a Terraform state v4 JSON document (``{"version": 4, "outputs": {name: {"value",
"type", "sensitive"}}}``), read bounded with :mod:`teeform.safeload`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from teeform.errors import TeeformError
from teeform.preview.clouds import CloudPlugin, register
from teeform.safeload import SMALL_JSON_LIMIT, load_json_file

GET_LOCAL_REFERENCE = "terraform:state:getLocalReference"


def local_state_outputs(path: str) -> dict[str, Any]:
    """Root-module output values of the Terraform state v4 file at ``path``.

    Raises:
        TeeformError: unreadable, not JSON, not a version-4 state, or ``outputs`` malformed (naming the file).
    """
    doc = load_json_file(path, SMALL_JSON_LIMIT, what="Terraform state")
    if not isinstance(doc, Mapping) or doc.get("version") != 4:
        raise TeeformError("not a Terraform state file of format version 4", path=path, field="version")
    outs = doc.get("outputs", {})  # absent = no outputs; [] or "" is not a state file's outputs object
    if not isinstance(outs, Mapping) or not all(isinstance(v, Mapping) and "value" in v for v in outs.values()):
        raise TeeformError("must map each output name to {value, type, sensitive}", path=path, field="outputs")
    return {str(k): v["value"] for k, v in outs.items()}


class TerraformPlugin(CloudPlugin):
    """The Terraform state reference invoke, read from the local file."""

    prefix = "terraform:"
    invoke_tokens = frozenset({GET_LOCAL_REFERENCE})

    def call(self, token: str, args: Mapping[str, Any], region: str) -> dict[str, Any]:
        """``{"outputs": ...}`` for :data:`GET_LOCAL_REFERENCE`; ``{}`` otherwise."""
        if token == GET_LOCAL_REFERENCE:
            return {"outputs": local_state_outputs(str(args.get("path")))}
        return {}


PLUGIN = register(TerraformPlugin())
