"""Terraform state as an input of the Pulumi program: network ids from ``teeform:terraformState``.

``teeform:terraformState: {path: infra/terraform.tfstate, network: {vpcId: vpc_id, subnetId: subnet_id},
plain: [vpc_id, subnet_id]}`` makes the program read the state's **root-module outputs** through
pulumi-terraform's state reference (``pulumi_terraform.state.get_local_reference``, invoke token
``terraform:state:getLocalReference``, result ``{"outputs": {name: value}}``; pulumi/pulumi-terraform@77ed502
``provider/state_reference``), then:

* every aws/nitro-enclave target without its own ``network.vpcId``/``subnetId`` gets the named outputs'
  values there (so the target runs in a VPC Terraform manages), and the result is validated by the target's
  plug-in like any stack file (:func:`with_network`);
* the stack output ``terraform_outputs`` repeats the outputs, **each a Pulumi secret** unless listed in
  ``plain`` (or used as a network id): the provider returns Terraform ``sensitive = true`` outputs as
  plain values, ignoring the flag (gitops-signing-terraform.md §3.5), so secrecy is the default here
  (:func:`exported_outputs`).

Only root-module outputs are visible (a Terraform limitation of state references). Under ``teeform preview``
the invoke is answered by :mod:`teeform.preview.clouds.terraform`, which reads the same file.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pulumi

from teeform.errors import TeeformError
from teeform.stack import PROJECT, TerraformStateRef


def read_outputs(ref: TerraformStateRef, project_dir: Path) -> dict[str, Any]:
    """The root-module outputs of the state at ``ref.path`` (name -> value), via pulumi-terraform."""
    import pulumi_terraform as tf

    p = Path(ref.path)
    path = p if p.is_absolute() else project_dir / p
    result = tf.state.get_local_reference(path=str(path))
    outputs = result.outputs
    if not isinstance(outputs, Mapping):
        raise TeeformError("the Terraform state reference returned no outputs", path=str(path),
                           field=f"{PROJECT}:terraformState.path")
    return dict(outputs)


def with_network(raw_targets: Sequence[Any], ref: TerraformStateRef, outputs: Mapping[str, Any]) -> list[Any]:
    """``raw_targets`` (stack-config form) with ``network.vpcId``/``subnetId`` of each aws/nitro-enclave
    target that sets neither filled from the outputs named in ``ref.network``.

    Raises:
        TeeformError: a named output is missing or not a string (naming ``teeform:terraformState.network.*``).
    """
    if not ref.network:
        return list(raw_targets)
    ids: dict[str, str] = {}
    for key, name in ref.network.items():
        if name not in outputs:
            raise TeeformError(f"output {name!r} is not in the Terraform state (root-module outputs: {sorted(outputs)})",
                               field=f"{PROJECT}:terraformState.network.{key}")
        value = outputs[name]
        if not isinstance(value, str) or not value:
            raise TeeformError(f"output {name!r} must be a non-empty string, got {type(value).__name__}",
                               field=f"{PROJECT}:terraformState.network.{key}")
        ids[key] = value
    out = []
    for t in raw_targets:
        if isinstance(t, Mapping) and t.get("cloud") == "aws" and t.get("tee") == "nitro-enclave":
            net = t.get("network")
            net = dict(net) if isinstance(net, Mapping) else {}
            if "vpcId" not in net and "subnetId" not in net:
                t = {**t, "network": {**net, **ids}}
        out.append(t)
    return out


def exported_outputs(ref: TerraformStateRef, outputs: Mapping[str, Any]) -> dict[str, Any]:
    """The ``terraform_outputs`` stack output: every output a :meth:`pulumi.Output.secret` unless it is in
    ``ref.plain`` or used as a network id."""
    plain = set(ref.plain) | set(ref.network.values())
    return {k: (v if k in plain else pulumi.Output.secret(v)) for k, v in sorted(outputs.items())}


__all__ = ["read_outputs", "with_network", "exported_outputs"]
