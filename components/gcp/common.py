"""Small helpers shared by the GCP components: physical names, labels, the target's provider."""

from __future__ import annotations

import hashlib
import re

import pulumi
import pulumi_gcp as gcp

#: Label key naming the target a resource belongs to (GCP label keys allow only ``[a-z0-9_-]``, so the
#: AWS tag ``teeform:target`` is spelled ``teeform-target`` here; Resource Manager "Labels" requirements).
TARGET_LABEL = "teeform-target"


def gcp_name(parts: list[str], max_len: int, *, min_len: int = 1) -> str:
    """``parts`` joined by ``-`` as a GCP resource name: lowercase, ``[a-z0-9-]``, starting with a letter,
    not ending with ``-``, at most ``max_len`` characters (an over-long name is cut and given 8 hex digits
    of its SHA-256 so different stacks keep different names), padded with ``0`` to ``min_len``. Pure.
    """
    name = re.sub(r"[^a-z0-9-]+", "-", "-".join(parts).lower()).strip("-")
    if not name or not name[0].isalpha():
        name = "t" + name
    if len(name) > max_len:
        digest = hashlib.sha256(name.encode()).hexdigest()[:8]
        name = f"{name[: max_len - 9].rstrip('-')}-{digest}"
    return name.ljust(min_len, "0")


def label_value(value: str) -> str:
    """A GCP label value: lowercase ``[a-z0-9_-]``, at most 63 characters."""
    return re.sub(r"[^a-z0-9_-]+", "-", value.lower())[:63]


def labels(stack: str, target: str, environment: str) -> dict[str, str]:
    """The labels teeform puts on every labelable GCP resource of a target."""
    return {"teeform-stack": label_value(stack), TARGET_LABEL: label_value(target),
            "teeform-environment": label_value(environment)}


def provider(target_name: str, project: str, region: str, zone: str) -> gcp.Provider:
    """One explicit provider per target (project, region and zone of the target)."""
    return gcp.Provider(f"{target_name}-gcp", project=project, region=region, zone=zone)


def project_number(project: str, given: str | None, opts: pulumi.InvokeOutputOptions) -> pulumi.Output[str]:
    """The numeric project number: ``projectNumber`` when set, else ``organizations.getProject``."""
    if given is not None:
        return pulumi.Output.from_input(given)
    return gcp.organizations.get_project_output(project_id=project, opts=opts).number


__all__ = ["TARGET_LABEL", "gcp_name", "label_value", "labels", "provider", "project_number"]
