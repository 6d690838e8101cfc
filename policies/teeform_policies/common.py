"""Helpers shared by the policies: config with defaults, the stack's environment, resource labels."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from typing import Any

DOCS = "https://docs.aws.amazon.com"

#: The ``report`` callback a resource validation receives: ``report(message)`` or ``report(message, urn)``.
#: pulumi_policy 1.x declares ``ReportViolation = Callable[[str, Optional[str]], None]`` (urn required),
#: but documents urn as optional and always passes ``report_violation(message: str, urn: Optional[str] =
#: None)`` (pulumi_policy/policy.py ``_create_report_violation``, ``empty_report_violation``), so the
#: one-argument calls are correct; this alias types them. A validation typed with it still fits
#: pulumi_policy's ``ResourceValidation``.
ReportViolation = Callable[..., None]


def cfg(args: Any, key: str, default: Any) -> Any:
    """Policy config ``key`` (the engine fills ``config_schema`` defaults; fall back to ``default``)."""
    config = args.get_config() or {}
    return config.get(key, default)


def stack_config_value(key: str) -> str | None:
    """A stack config value (``teeform:environment``) as the policy host sees it.

    The analyzer process loads the stack's config into the Pulumi runtime from ``PULUMI_CONFIG``
    (pulumi_policy ``_configure_runtime_settings``); ``teeform preview`` sets it in-process. The
    ``pulumi`` package is a dependency of ``pulumi_policy``, so this adds no dependency.
    """
    try:
        from pulumi.runtime import get_config

        value = get_config(key)
        if value is not None:
            return str(value)
    except Exception:  # noqa: BLE001 - no runtime settings: fall back to the environment
        pass
    try:
        value = json.loads(os.environ.get("PULUMI_CONFIG", "{}")).get(key)
    except (ValueError, AttributeError):
        return None
    return None if value is None else str(value)


def environment(args: Any) -> str:
    """The environment: policy config ``environment``, else stack config ``teeform:environment``, else ""."""
    return str(cfg(args, "environment", "") or stack_config_value("teeform:environment") or "")


def is_production(args: Any) -> bool:
    """Whether :func:`environment` is one of the policy's ``productionEnvironments``."""
    prods = [str(p).lower() for p in cfg(args, "productionEnvironments", ["prod", "production"])]
    return environment(args).lower() in prods


def label(resource_type: str, name: str) -> str:
    """``aws:kms/key:Key 'agent-key-kms'`` for messages."""
    return f"{resource_type} {name!r}"


def get(props: Mapping[str, Any], *path: str) -> Any:
    """Nested lookup that returns None on any missing level (props are wire/camelCase names)."""
    cur: Any = props
    for p in path:
        if not isinstance(cur, Mapping) or p not in cur:
            return None
        cur = cur[p]
    return cur


def truthy(value: Any) -> bool:
    """``True``/``"true"`` (launch-template EBS flags are strings in pulumi-aws)."""
    return value is True or (isinstance(value, str) and value.lower() == "true")


def user_data_text(value: Any) -> str:
    """EC2 user data as text: launch templates carry base64 (``userData``), instances plain text or
    ``userDataBase64``; anything that is not valid base64 is returned as is."""
    import base64
    import binascii

    if not isinstance(value, str):
        return ""
    try:
        return base64.b64decode(value, validate=True).decode("utf-8", "replace")
    except (binascii.Error, ValueError):
        return value


def num(value: Any) -> Any:
    """Numbers arrive as doubles (protobuf ``Struct``); show ``22.0`` as ``22``."""
    return int(value) if isinstance(value, float) and value.is_integer() else value
