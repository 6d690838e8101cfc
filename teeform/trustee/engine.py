"""Evaluate Trustee policies offline with regorus, the engine Trustee itself runs.

Trustee evaluates both policies with regorus (``deps/policy-engine/src/policy/rego.rs``) and gives the
attestation-service policy the extension ``query_reference_value(id)`` that returns the RVPS value of
``id`` or ``null`` (``attestation-service/src/ear_token/broker.rs``). The PyPI build used here is
``gordon-to-regorus`` (module ``regorus``, a fork of microsoft/regorus) because it is the one Python
build with ``Engine.add_extension``: ``opa-eval`` bundles regorus but exposes only ``evaluate`` (no
extensions), ``regopy`` is rego-cpp (a different engine, which disagreed with regorus on
confidential-agent's policy, clouds.md §4.5). ``regorus`` is imported lazily, so importing teeform
does not need it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from teeform.errors import TeeformError


def _engine(policy: str, name: str) -> Any:
    try:
        import regorus
    except ImportError as exc:  # pragma: no cover - the set-up installs it
        raise TeeformError("the Rego engine is missing: install gordon-to-regorus (scripts/setup.sh)") from exc
    eng = regorus.Engine()
    try:
        eng.add_policy(name, policy)
    except Exception as exc:  # regorus raises RuntimeError with the parse error
        raise TeeformError(f"Rego does not parse: {exc}", path=name) from exc
    return eng


def evaluate_attestation_policy(policy: str, claims: Mapping[str, Any],
                                reference_values: Mapping[str, Any]) -> dict[str, Any]:
    """Run an attestation-service policy as Trustee's EAR broker does.

    Args:
        policy: the Rego text.
        claims: the policy input, ``{"<verifier>": <verifier claims>, ...}`` (``transform_claims``).
        reference_values: RVPS contents, id -> value (what ``query_reference_value`` returns; unknown
            ids give ``null``).

    Returns:
        ``{"trust_claims": {...}, "extensions": [...]}`` (the two rules ``broker.rs`` reads).
    """
    eng = _engine(policy, "attestation-policy.rego")
    rvs = {k: v for k, v in reference_values.items()}
    eng.add_extension("query_reference_value", 1, lambda rv_id: rvs.get(rv_id))
    eng.set_input_json(json.dumps(dict(claims)))
    return {rule: json.loads(eng.eval_rule_as_json(f"data.policy.{rule}")) for rule in ("trust_claims", "extensions")}


def evaluate_resource_policy(policy: str, token_claims: Mapping[str, Any], resource_path: str) -> bool:
    """Run a KBS resource policy as ``kbs/src/api_server.rs`` does for ``GET /kbs/v0/<resource_path>``.

    Args:
        policy: the Rego text.
        token_claims: the verified EAR token's claims (``input``).
        resource_path: ``resource/<repository>/<type>/<tag>``; split into ``data.plugin`` and
            ``data["resource-path"]``, ``data.query`` empty.

    Returns:
        ``data.policy.allow`` (undefined or non-boolean counts as false, as the KBS does).
    """
    parts = resource_path.split("/")
    eng = _engine(policy, "resource-policy.rego")
    eng.add_data_json(json.dumps({"plugin": parts[0], "resource-path": parts[1:], "query": {}}))
    eng.set_input_json(json.dumps(dict(token_claims)))
    try:
        value = json.loads(eng.eval_rule_as_json("data.policy.allow"))
    except RuntimeError:
        return False
    return value is True


__all__ = ["evaluate_attestation_policy", "evaluate_resource_policy"]
