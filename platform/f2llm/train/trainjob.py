"""A training stage on many nodes: a Kubeflow Trainer TrainJob, created, followed and handed on.

The KFP step (`train_job_op`, no GPU of its own) stages the stage's inputs in the store (nodes
share no disk, and KFP's artifact store is not theirs), creates a `trainer.kubeflow.org/v1alpha1`
TrainJob on the `torch-distributed` ClusterTrainingRuntime and follows it:

    {output_uri}/train-jobs/{name}/init/       the model the stage starts from
                                  /data/       the prepare step's tables
                                  /model/      written by rank 0 when the stage ends
                                  /log.jsonl   a line a step (rank 0)
                                  /summary.json

Every node runs `torchrun -m f2llm.train ...`: the runtime gives torchrun the node count,
processes per node, node rank and master address (PET_NNODES, PET_NPROC_PER_NODE, PET_NODE_RANK,
PET_MASTER_ADDR, PET_MASTER_PORT; a TrainJob may not set them itself), and the store keys come
as env from the run's Secret. Status, as Trainer writes it (v2.3): no `status` at first, then
`jobsStatus` (active/ready/succeeded/failed per replicated job) and finally a `Complete` or
`Failed` condition copied from the JobSet. Failed, or not Complete within `timeout_s` (the job
is then deleted, freeing its GPUs), fails the step with the conditions and the tail of node 0's
log. The name is derived from the KFP run, so a retried step finds its TrainJob: one still
running or complete is followed, not started twice; a failed one is replaced (the stage resumes
from `train.checkpoint_uri` when it has checkpoints).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from f2llm import storage
from f2llm.config import RunConfig
from f2llm.train.launch import stage_args

GROUP, VERSION, PLURAL, KIND = "trainer.kubeflow.org", "v1alpha1", "trainjobs", "TrainJob"
NODE = "node"  # the runtime's replicated job and its trainer container
# JobSet names pods "<trainjob>-node-0-<index>-xxxxx", a 63-character label: 48 are left for the name.
MAX_NAME = 48


class TrainJobFailed(RuntimeError):
    """The TrainJob failed, or was not Complete in time: the step fails with why."""


def job_name(run: str, stage: int, run_id: str) -> str:
    """`{run}-s{stage}-{8 hex of the KFP run id}`: the same for every try of a step, unique per run."""
    digest = hashlib.sha256(run_id.encode()).hexdigest()[:8]
    prefix = (run if run[:1].isalpha() else f"f2llm-{run}")[: MAX_NAME - len(f"-s{stage}-{digest}")].rstrip("-")
    return f"{prefix}-s{stage}-{digest}"


def staging_uri(cfg: RunConfig, name: str) -> str:
    return storage.join(cfg.output_uri, "train-jobs", name)


def train_job(cfg: RunConfig, stage: int, name: str, namespace: str) -> dict:
    """The TrainJob object: `cluster.train` nodes of the gpu kind's image and resources."""
    cluster, staging = cfg.cluster, staging_uri(cfg, name)
    res, gpus = cluster.resources["gpu"], cluster.train.gpus_per_node or cluster.resources["gpu"].gpus
    requests = {"cpu": res.cpu, "memory": res.memory}
    limits = {k: v for k, v in {"cpu": res.cpu_limit, "memory": res.memory_limit}.items() if v}
    if gpus:  # extended resources: the request defaults to the limit
        limits[res.accelerator] = str(gpus)
    env = [{"name": "F2LLM_S3_ENDPOINT", "value": cluster.s3_endpoint}] if cluster.s3_endpoint else []
    env.append({"name": "AWS_REGION", "value": cluster.s3_region})
    if cluster.s3_secret:
        env += [{"name": var, "valueFrom": {"secretKeyRef": {"name": cluster.s3_secret, "key": key}}}
                for var, key in cluster.s3_secret_keys.items()]
    pod: dict = {}
    if gpus:
        pod["nodeSelector"] = dict(cluster.gpu_node_selector)
        pod["tolerations"] = [t.model_dump(exclude_none=True) for t in cluster.gpu_tolerations]
    if cluster.cache_pvc:
        env.append({"name": "HF_HOME", "value": f"{cluster.cache_mount}/hf"})
        pod["volumes"] = [{"name": "model-cache", "persistentVolumeClaim": {"claimName": cluster.cache_pvc}}]
        pod["containers"] = [{"name": NODE, "volumeMounts": [{"name": "model-cache", "mountPath": cluster.cache_mount}]}]
    args = stage_args(storage.join(staging, "init"), storage.join(staging, "data"), stage, cfg.train,
                      cfg.model.max_length, storage.join(staging, "model"), storage.join(staging, "log.jsonl"),
                      storage.join(staging, "summary.json"))
    spec: dict = {
        "runtimeRef": {"name": cluster.train.runtime, "apiGroup": GROUP, "kind": "ClusterTrainingRuntime"},
        "trainer": {
            "image": cluster.images["gpu"], "command": ["torchrun", "-m", "f2llm.train", *args], "env": env,
            "numNodes": cluster.train.nodes, "numProcPerNode": cluster.train_gpus,
            "resourcesPerNode": {"requests": requests, **({"limits": limits} if limits else {})},
        },
    }
    if pod:
        spec["runtimePatches"] = [{"manager": "f2llm", "trainingRuntimeSpec": {"template": {"spec": {"replicatedJobs": [
            {"name": NODE, "template": {"spec": {"template": {"spec": pod}}}}]}}}}]
    labels = {"app.kubernetes.io/managed-by": "f2llm", "f2llm/run": cfg.name, "f2llm/stage": str(stage)}
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": KIND,
            "metadata": {"name": name, "namespace": namespace, "labels": labels}, "spec": spec}


def condition(status: dict, kind: str) -> dict | None:
    return next((c for c in status.get("conditions", []) if c["type"] == kind and c["status"] == "True"), None)


def describe(status: dict) -> str:
    """Conditions and per-job pod counts, one line."""
    parts = [f"{c['type']}={c['status']} ({c.get('reason', '')}: {c.get('message', '')})" for c in status.get("conditions", [])]
    parts += [f"{j['name']}: {j.get('active', 0)} active, {j.get('ready', 0)} ready, {j.get('succeeded', 0)} "
              f"succeeded, {j.get('failed', 0)} failed" for j in status.get("jobsStatus", [])]
    return "; ".join(parts) or "no status yet"


def log_tail(core, namespace: str, name: str, lines: int) -> str:
    """The last `lines` of node 0's trainer container (its newest pod), or why there are none."""
    from kubernetes.client.exceptions import ApiException

    selector = f"jobset.sigs.k8s.io/jobset-name={name},jobset.sigs.k8s.io/replicatedjob-name={NODE}"
    try:
        pods = [p for p in core.list_namespaced_pod(namespace, label_selector=selector).items
                if (p.metadata.labels or {}).get("batch.kubernetes.io/job-completion-index") == "0"]
        if not pods:
            return "(no pod of node 0)"
        newest = max(pods, key=lambda p: p.metadata.creation_timestamp)
        return core.read_namespaced_pod_log(newest.metadata.name, namespace, container=NODE, tail_lines=lines)
    except ApiException as error:  # e.g. 400 'container "node" in pod ... is waiting to start: ...'
        try:
            why = json.loads(error.body)["message"]
        except (TypeError, ValueError, KeyError):
            why = error.reason
        return f"(no log: {error.status} {why})"


@dataclass
class TrainJobResult:
    name: str
    namespace: str
    adopted: bool  # an earlier try's TrainJob, followed instead of a new one
    summary: dict
    seconds: float
    status: dict = field(default_factory=dict)

    def markdown(self) -> str:
        rows = [("TrainJob", f"{self.namespace}/{self.name}" + (" (adopted from an earlier try)" if self.adopted else "")),
                ("status", describe(self.status)), ("steps", self.summary.get("steps")),
                ("world size", self.summary.get("world_size")), ("loss", self.summary.get("loss")),
                ("samples/s", round(float(self.summary.get("samples_per_s", 0)), 2)), ("wall time s", self.seconds)]
        return "# Training on many nodes\n\n| | |\n|---|---|\n" + "".join(f"| {k} | {v} |\n" for k, v in rows)


def run_train_job(cfg: RunConfig, stage: int, run_id: str, namespace: str, init_dir, data_dir, model_dir, log_path,
                  api=None, core=None, sleep=time.sleep) -> TrainJobResult:
    """Stage the inputs, create (or adopt) the TrainJob, follow it, fetch its model and log (module docstring)."""
    from kubernetes.client.exceptions import ApiException

    from f2llm.kube import load_api, load_core_api

    api = api or load_api()
    core = core or load_core_api(api)
    train = cfg.cluster.train
    name, started = job_name(cfg.name, stage, run_id), time.monotonic()
    staging = staging_uri(cfg, name)
    try:
        obj = api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
    except ApiException as error:
        if error.status != 404:
            raise
        obj = None
    if obj is not None and condition(obj.get("status", {}), "Failed"):
        print(f"TrainJob {namespace}/{name} of an earlier try failed ({describe(obj['status'])}): replacing it")
        api.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
        obj = None
    adopted = obj is not None
    if adopted:
        print(f"TrainJob {namespace}/{name} exists (an earlier try): following it")
    else:
        storage.upload_dir(init_dir, storage.join(staging, "init"))
        storage.upload_dir(data_dir, storage.join(staging, "data"))
        body = train_job(cfg, stage, name, namespace)
        for attempt in range(10):
            try:
                obj = api.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
                break
            except ApiException as error:  # the replaced job may take a moment to be gone
                if error.status != 409 or attempt == 9:
                    raise
                sleep(train.poll_s)
        print(f"TrainJob {namespace}/{name} created: {train.nodes} nodes x {obj['spec']['trainer']['numProcPerNode']} "
              f"processes on runtime {train.runtime}")
    seen = None
    while True:
        status = obj.get("status") or {}
        if (line := describe(status)) != seen:
            print(f"TrainJob {name}: {line}", flush=True)
            seen = line
        if condition(status, "Complete"):
            break
        if condition(status, "Failed"):
            raise TrainJobFailed(f"TrainJob {namespace}/{name} failed: {describe(status)}\n"
                                 f"node 0, last {train.log_lines} lines:\n{log_tail(core, namespace, name, train.log_lines)}")
        if time.monotonic() - started > train.timeout_s:
            tail = log_tail(core, namespace, name, train.log_lines)
            api.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
            raise TrainJobFailed(f"TrainJob {namespace}/{name} not Complete after {train.timeout_s:.0f} s ({describe(status)}); "
                                 f"deleted it.\nnode 0, last {train.log_lines} lines:\n{tail}")
        sleep(train.poll_s)
        obj = api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
    storage.download_dir(storage.join(staging, "model"), model_dir)
    Path(log_path).write_bytes(storage.read_bytes(storage.join(staging, "log.jsonl")))
    summary = json.loads(storage.read_text(storage.join(staging, "summary.json")))
    return TrainJobResult(name, namespace, adopted, summary, round(time.monotonic() - started, 3), status)
