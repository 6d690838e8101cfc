"""``TdxInstance``: an Alibaba ECS instance in TDX mode, created with ``RunInstances`` through the ECS SDK.

pulumi-alicloud 4.0.0 has no ``security_options`` / ``confidential_computing_mode`` on ``ecs.Instance``
or ``ecs.EcsLaunchTemplate``, and a launch template cannot carry TDX mode (the SDK's
``CreateLaunchTemplateRequestSecurityOptions`` lacks it); ``RunInstances`` is the only path
(``shared/reference/clouds.md`` §4.1, ``pulumi.md`` §4.4). The provider (type
``pulumi-python:dynamic/alicloud:TdxInstance``):

* **create**: ``RunInstances`` with ``SecurityOptions.ConfidentialComputingMode=TDX``, ``Amount=1``, a
  ``ClientToken`` derived from the resource name and inputs (RunInstances is idempotent per token, so a
  retried create does not make a second instance), IMDSv2-style ``HttpTokens=required``; the id is
  the one instance id returned (``InstanceIdSets.InstanceIdSet[0]``);
* **read**: ``DescribeInstances(InstanceIds=[id])``; a vanished instance reads as gone;
* **delete**: ``DeleteInstance(InstanceId, Force=true)``;
* **diff**: any input change replaces (TDX mode, image and type are fixed at creation).

The request is built by :func:`run_instances_request` (pure) and serialised by the SDK's own model
(``alibabacloud_ecs20140526.models.RunInstancesRequest.to_map``); credentials come from the same
environment variables pulumi-alicloud reads (``ALICLOUD_ACCESS_KEY``/``ALICLOUD_SECRET_KEY``, or
``ALIBABA_CLOUD_ACCESS_KEY_ID``/``ALIBABA_CLOUD_ACCESS_KEY_SECRET``), never from inputs or state.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

import pulumi
import pulumi.dynamic as dyn

from teeform.errors import TeeformError

#: Input names (all replace on change).
INPUTS = ("region_id", "zone_id", "instance_type", "image_id", "v_switch_id", "security_group_id",
          "instance_name", "user_data", "system_disk_category", "system_disk_size", "tags")


def run_instances_request(props: dict[str, Any], client_token: str) -> Any:
    """The SDK ``RunInstancesRequest`` for ``props`` (see :data:`INPUTS`) in TDX mode."""
    from alibabacloud_ecs20140526 import models as ecs

    return ecs.RunInstancesRequest(
        region_id=props["region_id"], zone_id=props["zone_id"], instance_type=props["instance_type"],
        image_id=props["image_id"], v_switch_id=props["v_switch_id"], security_group_id=props["security_group_id"],
        instance_name=props.get("instance_name"), user_data=props.get("user_data") or None, amount=1,
        client_token=client_token, http_tokens="required", http_endpoint="enabled",
        internet_max_bandwidth_out=0,
        system_disk=ecs.RunInstancesRequestSystemDisk(category=props.get("system_disk_category") or "cloud_essd",
                                                      size=str(props.get("system_disk_size") or 40)),
        security_options=ecs.RunInstancesRequestSecurityOptions(confidential_computing_mode="TDX"),
        tag=[ecs.RunInstancesRequestTag(key=k, value=v) for k, v in sorted((props.get("tags") or {}).items())],
    )


def client_token(name: str, props: dict[str, Any]) -> str:
    """``teeform-`` + 32 hex of SHA-256 over the name and inputs (ClientToken is at most 64 ASCII characters)."""
    body = json.dumps({"name": name, **{k: props.get(k) for k in INPUTS}}, sort_keys=True, default=str)
    return "teeform-" + hashlib.sha256(body.encode()).hexdigest()[:32]


def _client(region: str) -> Any:
    from alibabacloud_ecs20140526.client import Client
    from alibabacloud_tea_openapi import models as open_api

    key = os.environ.get("ALICLOUD_ACCESS_KEY") or os.environ.get("ALIBABA_CLOUD_ACCESS_KEY_ID")
    secret = os.environ.get("ALICLOUD_SECRET_KEY") or os.environ.get("ALIBABA_CLOUD_ACCESS_KEY_SECRET")
    if not key or not secret:
        raise TeeformError("no Alibaba Cloud credentials: set ALICLOUD_ACCESS_KEY and ALICLOUD_SECRET_KEY")
    return Client(open_api.Config(access_key_id=key, access_key_secret=secret, region_id=region,
                                  security_token=os.environ.get("ALICLOUD_SECURITY_TOKEN"),
                                  endpoint=f"ecs.{region}.aliyuncs.com"))


class TdxInstanceProvider(dyn.ResourceProvider):
    """RunInstances / DescribeInstances / DeleteInstance (see module docs)."""

    def create(self, props: dict[str, Any]) -> dyn.CreateResult:
        """Run one TDX instance; id = its instance id."""
        req = run_instances_request(props, client_token(props.get("instance_name") or "", props))
        resp = _client(props["region_id"]).run_instances(req)
        ids = list(resp.body.instance_id_sets.instance_id_set or [])
        if len(ids) != 1:
            raise TeeformError(f"RunInstances returned {len(ids)} instance ids, expected 1 (request {resp.body.request_id})")
        return dyn.CreateResult(ids[0], {**props, "instance_id": ids[0]})

    def read(self, id_: str, props: dict[str, Any]) -> dyn.ReadResult:
        """The instance's state, or an empty id when it no longer exists."""
        from alibabacloud_ecs20140526 import models as ecs

        resp = _client(props["region_id"]).describe_instances(
            ecs.DescribeInstancesRequest(region_id=props["region_id"], instance_ids=json.dumps([id_])))
        found = resp.body.instances.instance if resp.body.instances else []
        if not found:
            return dyn.ReadResult(None, {})
        return dyn.ReadResult(id_, {**props, "instance_id": id_, "status": found[0].status})

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dyn.DiffResult:
        """Every input change replaces."""
        changed = [k for k in INPUTS if olds.get(k) != news.get(k)]
        return dyn.DiffResult(changes=bool(changed), replaces=changed, delete_before_replace=True)

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        """Force-delete the instance."""
        from alibabacloud_ecs20140526 import models as ecs

        _client(props["region_id"]).delete_instance(ecs.DeleteInstanceRequest(instance_id=id_, force=True))


class TdxInstance(dyn.Resource, module="alicloud", name="TdxInstance"):
    """A g8i (or other flag-requiring family) instance in TDX mode; output ``instance_id``."""

    instance_id: pulumi.Output[str]

    def __init__(self, name: str, props: dict[str, Any], opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(TdxInstanceProvider(), name, {**props, "instance_id": None}, opts)


__all__ = ["TdxInstance", "TdxInstanceProvider", "run_instances_request", "client_token", "INPUTS"]
