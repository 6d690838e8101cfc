"""Every CEL expression teeform writes for Confidential Space, parsed and evaluated by cel-python.

Oracle: cel-python (``celpy``, an independent CEL implementation of github.com/google/cel-spec), not
teeform's code. The sample token follows Google's Confidential Space token-claims reference
(https://cloud.google.com/confidential-computing/confidential-space/docs/reference/token-claims;
shared/reference/clouds.md §3.1). STS treats a condition that is false **or fails to evaluate** as a
refusal, so :func:`admits` is true only for a CEL ``true``.
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any

import celpy
import pytest

from components.gcp.cel import ATTRIBUTE_MAPPING, attribute_condition, cel_string, condition_clauses, principal_set

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

SA = "dev-cs-wl@my-project.iam.gserviceaccount.com"
D_OLD = "sha256:" + "1a" * 32
D_NEW = "sha256:" + "2b" * 32


def token(**changes: Any) -> dict[str, Any]:
    """A Confidential Space attestation token's claims (production image, STABLE, our SA, D_NEW)."""
    claims: dict[str, Any] = {
        "aud": "https://sts.googleapis.com", "iss": "https://confidentialcomputing.googleapis.com",
        "sub": "https://www.googleapis.com/compute/v1/projects/my-project/zones/europe-west4-a/instances/dev-cs-cs",
        "dbgstat": "disabled-since-boot", "hwmodel": "GCP_AMD_SEV", "oemid": 11129, "secboot": True,
        "swname": "CONFIDENTIAL_SPACE", "swversion": ["240500"],
        "google_service_accounts": [SA],
        "submods": {
            "confidential_space": {"support_attributes": ["LATEST", "STABLE", "USABLE"]},
            "container": {"image_digest": D_NEW, "image_id": "sha256:" + "3c" * 32,
                          "image_reference": f"europe-west4-docker.pkg.dev/my-project/teeform/agent@{D_NEW}",
                          "restart_policy": "Never"},
            "gce": {"zone": "europe-west4-a", "project_id": "my-project", "project_number": "123456789012",
                    "instance_name": "dev-cs-cs", "instance_id": "3682160105330909800"},
        },
    }
    for path, value in changes.items():
        *parents, last = path.split("__")
        cur = claims
        for p in parents:
            cur = cur[p]
        if value is None:
            del cur[last]
        else:
            cur[last] = value
    return claims


def evaluate(expr: str, claims: dict[str, Any]) -> Any:
    env = celpy.Environment()
    prog = env.program(env.compile(expr))
    return prog.evaluate({"assertion": celpy.json_to_cel(copy.deepcopy(claims))})


def admits(expr: str, claims: dict[str, Any]) -> bool:
    try:
        result = evaluate(expr, claims)
    except celpy.CELEvalError:
        return False
    return isinstance(result, celpy.celtypes.BoolType) and bool(result)


COND = attribute_condition(service_account=SA, image_digests=[D_NEW, D_OLD])


def test_condition_parses_and_admits_each_allowed_digest() -> None:
    assert admits(COND, token())
    assert admits(COND, token(submods__container__image_digest=D_OLD))  # rollover: the old build still admitted


@pytest.mark.parametrize(("why", "claims"), [
    ("another digest", token(submods__container__image_digest="sha256:" + "4d" * 32)),
    ("a debug image", token(dbgstat="enabled")),
    ("a non-STABLE image", token(submods__confidential_space__support_attributes=["USABLE", "EXPERIMENTAL"])),
    ("a foreign service account", token(google_service_accounts=["attacker@evil-project.iam.gserviceaccount.com"])),
    ("not Confidential Space (a plain CVM token)", token(swname="GCE")),
    ("no container claims", token(submods__container=None)),
    ("a digest in another claim only", token(submods__container__image_digest="sha256:" + "4d" * 32,
                                             submods__container__image_id=D_NEW)),
])
def test_condition_refuses(why: str, claims: dict[str, Any]) -> None:
    assert not admits(COND, claims), why


def test_each_clause_is_required_on_its_own() -> None:
    """Dropping any one clause's guarantee breaks the whole condition (each is a top-level conjunct)."""
    clauses = condition_clauses(service_account=SA, image_digests=[D_NEW])
    assert len(clauses) == 5 and " && ".join(clauses) == attribute_condition(service_account=SA, image_digests=[D_NEW])
    for c in clauses:
        assert admits(c, token()), c  # each clause alone is a valid CEL boolean, true for the good token


def test_configurable_support_attributes_and_debug_image() -> None:
    latest = attribute_condition(service_account=SA, image_digests=[D_NEW], support_attributes=["STABLE", "LATEST"])
    assert admits(latest, token())
    assert not admits(latest, token(submods__confidential_space__support_attributes=["STABLE"]))
    debug = attribute_condition(service_account=SA, image_digests=[D_NEW], production_image=False)
    assert admits(debug, token(dbgstat="enabled")) and "dbgstat" not in debug


def test_attribute_mapping_expressions() -> None:
    claims = token()
    assert evaluate(ATTRIBUTE_MAPPING["attribute.image_digest"], claims) == D_NEW
    assert evaluate(ATTRIBUTE_MAPPING["google.subject"], claims) == claims["sub"]
    assert evaluate(ATTRIBUTE_MAPPING["attribute.swname"], claims) == "CONFIDENTIAL_SPACE"


def test_cel_string_round_trips_through_cel() -> None:
    for s in ["plain", "it's", "back\\slash", "quote'and\\both"]:
        assert evaluate(cel_string(s), {}) == s
    with pytest.raises(ValueError, match="control character"):
        cel_string("a\nb")


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"service_account": SA, "image_digests": []}, "at least one image digest"),
    ({"service_account": SA, "image_digests": ["2b" * 32]}, "sha256:<64 lowercase hex>"),
    ({"service_account": "x' || true || '", "image_digests": [D_NEW]}, "not a service-account e-mail"),
    ({"service_account": SA, "image_digests": [D_NEW], "support_attributes": ["STABLE'"]}, "unknown support attribute"),
])
def test_writer_refuses_malformed_values(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        condition_clauses(**kwargs)


def test_principal_set_shape() -> None:
    assert principal_set("123456789012", "dev-cs", D_NEW) == (
        "principalSet://iam.googleapis.com/projects/123456789012/locations/global/workloadIdentityPools/dev-cs/"
        f"attribute.image_digest/{D_NEW}")
    with pytest.raises(ValueError):
        principal_set("my-project", "dev-cs", D_NEW)


def test_condition_the_program_registers_evaluates(tmp_path: Path) -> None:
    """The exact attribute_condition the Pulumi program registers (under the preview mocks) admits the
    manifest's digest and refuses another one."""
    sys.path.insert(0, str(Path(__file__).parent))
    from pulumi_support import one, run
    from test_gcp_confidential_space import cs_target, digest_of, oci_manifest

    m = oci_manifest(tmp_path)
    resources, outputs, _ = run([cs_target([m])])
    prov = one(resources, "gcp:iam/workloadIdentityPoolProvider:WorkloadIdentityPoolProvider")
    cond = prov.inputs["attributeCondition"]
    sa = outputs["service_account"]
    digest = "sha256:" + digest_of(m)  # from the manifest file the test wrote, not from the program
    assert outputs["measurements"]["agent"]["image_digest"] == digest.removeprefix("sha256:")
    good = token(google_service_accounts=[sa], submods__container__image_digest=digest)
    assert admits(cond, good)
    assert not admits(cond, token(google_service_accounts=[sa]))  # D_NEW is not the manifest's digest
    assert not admits(cond, token(google_service_accounts=[sa], submods__container__image_digest=digest,
                                  dbgstat="enabled"))


def test_readme_gcp_block_condition_admits_its_own_digest_only() -> None:
    """The README's generated gcp-demo block: its condition (evaluated by cel-python) admits the image digest
    `teeform build oci` printed above it, and the KMS grant names the same digest."""
    import re

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    body = text.split("<!-- BEGIN gcp-demo -->", 1)[1].split("<!-- END gcp-demo -->", 1)[0]
    digest = re.search(r"^  image_digest  (sha256:[0-9a-f]{64})$", body, re.M)
    cond = re.search(r"^      condition: (.+)$", body, re.M)
    sa = re.search(r"^  service_account: (\S+)$", body, re.M) or re.search(r"'(\S+@\S+)' in assertion", body)
    assert digest and cond and sa
    assert f"attribute.image_digest/{digest.group(1)}" in body
    assert admits(cond.group(1), token(google_service_accounts=[sa.group(1)], submods__container__image_digest=digest.group(1)))
    assert not admits(cond.group(1), token(google_service_accounts=[sa.group(1)]))
