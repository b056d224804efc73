"""The deploy step: the exported model served by a KServe InferenceService. It runs after the
quality gate (`f2llm.evaluation.gate`) and the export, so only a model that passed reaches it.

Rollout: the InferenceService is created, or the existing one is merge-patched (RFC 7386, what
the API server takes for custom resources) to the new storageUri, which keeps any field set by
hand. With `canary_percent`, KServe sends that share to the new revision and the rest to the
last ready one. Then the step polls until the controller has seen this generation
(status.observedGeneration) and says Ready=True; a failed model load or the timeout fails the
run with the service's conditions in the message.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from f2llm.config import DeployConfig

GROUP, VERSION, PLURAL = "serving.kserve.io", "v1beta1", "inferenceservices"
MODEL_FORMAT = "f2llm-embedding"  # what the chart's ServingRuntimes declare


class DeployFailed(RuntimeError):
    """The InferenceService did not become Ready."""


def inference_service(cfg: DeployConfig, storage_uri: str, namespace: str) -> dict:
    predictor: dict = {"model": {"modelFormat": {"name": MODEL_FORMAT}, "runtime": cfg.runtime, "storageUri": storage_uri}}
    if cfg.service_account:
        predictor["serviceAccountName"] = cfg.service_account
    return {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "InferenceService",
        "metadata": {"name": cfg.name, "namespace": namespace, "labels": {"app.kubernetes.io/managed-by": "f2llm"}},
        "spec": {"predictor": predictor},
    }


@dataclass
class Rollout:
    name: str
    namespace: str
    storage_uri: str
    created: bool
    generation: int
    url: str | None = None
    traffic: list = field(default_factory=list)  # status.components.predictor.traffic
    seconds: float = 0.0


def describe(status: dict) -> str:
    """The conditions (and a failed load) as one line for an error message."""
    parts = [f"{c['type']}={c['status']}" + (f" ({c.get('reason', '')}: {c.get('message', '')})" if c["status"] != "True" else "")
             for c in status.get("conditions", [])]
    failure = status.get("modelStatus", {}).get("lastFailureInfo")
    if failure:
        parts.append(f"model load failed ({failure.get('reason')}: {failure.get('message')})")
    return "; ".join(parts) or "no status yet"


def _ready(status: dict) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions", []))


def deploy(api, cfg: DeployConfig, storage_uri: str, namespace: str, sleep=time.sleep) -> Rollout:
    """Create or update the InferenceService and wait for it (module docstring)."""
    from kubernetes.client.exceptions import ApiException

    start = time.monotonic()
    body = inference_service(cfg, storage_uri, namespace)
    try:
        api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, cfg.name)
        created = False
    except ApiException as error:
        if error.status != 404:
            raise
        created = True
    if created:
        obj = api.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
    else:  # merge patch: null removes a canary split left by the last rollout
        predictor = {**body["spec"]["predictor"], "canaryTrafficPercent": cfg.canary_percent}
        obj = api.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, cfg.name, {"spec": {"predictor": predictor}})
    generation = obj["metadata"]["generation"]
    while True:
        status = obj.get("status", {})
        seen = status.get("observedGeneration", 0) >= generation
        if seen and _ready(status):
            predictor = status.get("components", {}).get("predictor", {})
            return Rollout(cfg.name, namespace, storage_uri, created, generation, status.get("url"),
                           predictor.get("traffic", []), round(time.monotonic() - start, 3))
        if status.get("modelStatus", {}).get("transitionStatus") == "BlockedByFailedLoad":
            raise DeployFailed(f"InferenceService {namespace}/{cfg.name} cannot load {storage_uri}: {describe(status)}")
        if time.monotonic() - start > cfg.timeout_s:
            raise DeployFailed(f"InferenceService {namespace}/{cfg.name} not Ready after {cfg.timeout_s:.0f} s "
                               f"(generation {generation}, observed {status.get('observedGeneration')}): {describe(status)}")
        sleep(cfg.poll_s)
        obj = api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, cfg.name)
