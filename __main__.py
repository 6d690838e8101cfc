"""The teeform Pulumi program: wiring only (logic lives in ``components/``).

1. Read ``teeform:*`` config and validate it with :meth:`teeform.stack.StackConfig.from_values`
   (the same validation and messages as the CLI).
2. For each target, load its manifests (paths relative to this directory), register each as a
   ``teeform:index:MeasurementManifest`` and call the builder that the target's (cloud, TEE type)
   plug-in names (:mod:`teeform.targets`; imported lazily).
3. Export, ``measurements`` first: ``measurements`` (per manifest: PCR0, PCR1, PCR2, PCR8 or null,
   ImageSha384; for vm-image manifests every recorded value), then the builder's outputs
   (``kms_key_arn``, ``instance_id``, ``eif_uri``, ``enclave_cpu_count``, ``enclave_memory_mib`` for
   Nitro), then ``manifest_sha256`` (per manifest). With several targets each output is a map keyed
   by target name (:func:`components.registry.shape_outputs`). With ``teeform:terraformState``, the
   network ids come from a Terraform state file and ``terraform_outputs`` (secret unless ``plain``) is
   exported last (:mod:`components.terraform_state`).

Runs unchanged under ``pulumi preview/up`` and under ``teeform preview`` (the SDK's mock engine).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pulumi

from components.measurement_manifest import load_target_manifests, measurement_output, register_manifests
from components.registry import TargetContext, builder_for, shape_outputs
from teeform.stack import PROJECT, StackConfig

PROJECT_DIR = Path(__file__).resolve().parent

config = pulumi.Config(PROJECT)
stack_name = pulumi.get_stack()
raw_config: dict[str, Any] = {
    "environment": config.get("environment"),
    "allowDebug": config.get("allowDebug") or False,
    "targets": config.get_object("targets"),
    "trustedManifestKeys": config.get_object("trustedManifestKeys"),
    "terraformState": config.get_object("terraformState"),
}
# `teeform preview --stack-file` names the file it loaded; the CLI uses stacks/Pulumi.<stack>.yaml.
stack_source = os.environ.get("TEEFORM_STACK_FILE") or f"stacks/Pulumi.{stack_name}.yaml"
stack = StackConfig.from_values(raw_config, stack=stack_name, source=stack_source, project_dir=PROJECT_DIR)
terraform_outputs: dict[str, object] | None = None
tf_ref = stack.terraform_state
if tf_ref is not None:  # network ids from a Terraform state file (components/terraform_state.py)
    from components.terraform_state import exported_outputs, read_outputs, with_network

    tf_outputs = read_outputs(tf_ref, PROJECT_DIR)
    raw_config["targets"] = with_network(raw_config["targets"] or [], tf_ref, tf_outputs)
    stack = StackConfig.from_values(raw_config, stack=stack_name, source=stack_source, project_dir=PROJECT_DIR)
    terraform_outputs = exported_outputs(tf_ref, tf_outputs)

per_target: dict[str, dict[str, object]] = {}
for target in stack.targets:
    manifests = load_target_manifests(stack, target)
    register_manifests(target, manifests)
    outputs = builder_for(target)(TargetContext(stack, target, manifests, pulumi.get_project()))
    per_target[target.name] = {
        "measurements": {lm.key: measurement_output(lm.manifest) for lm in manifests},
        **outputs,
        "manifest_sha256": {lm.key: lm.sha256 for lm in manifests},
    }

for name, value in shape_outputs(per_target).items():
    pulumi.export(name, value)
if terraform_outputs is not None:
    pulumi.export("terraform_outputs", terraform_outputs)
