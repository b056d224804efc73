"""A FAKE of Kubeflow Trainer v2 on the FAKE Kubernetes API: TrainJobs, their pods and logs. For the
multi-node training step's tests only.

No cluster (nor Trainer, JobSet, kubelet) can run here. This stand-in serves
/apis/trainer.kubeflow.org/v1alpha1/namespaces/{ns}/trainjobs[/{name}] with the API server's
semantics (`FakeCustomResourceApi`), and /api/v1/namespaces/{ns}/pods and .../pods/{pod}/log as the
kubelet would answer for the job's pods. Read against kubeflow/trainer v2.3.0 (trainjob_types.go and
its CRD's CEL rules, pkg/webhooks/trainjob_webhook.go, the torch and jobset plugins,
manifests/base/runtimes/torch_distributed.yaml) and kubernetes-sigs/jobset (pod labels, condition
reasons). What it enforces as they do:

- CEL: the name an RFC 1035 label of at most 63 characters; spec.runtimeRef.name required; trainer
  numNodes/numProcPerNode integers (numProcPerNode >= 1), command/args lists of strings; runtimeRef
  and trainer immutable after create.
- The webhook: runtimeRef of kind ClusterTrainingRuntime in trainer.kubeflow.org that exists; no
  PET_* variable in trainer.env (the torch plugin's reserved names).
- Pods get only what the TrainJob gives them: its command and env, env from Secrets by
  secretKeyRef (a missing Secret or key leaves the pod failing, as CreateContainerConfigError
  does), plus the runtime's PET_NNODES, PET_NPROC_PER_NODE, PET_NODE_RANK, PET_MASTER_ADDR,
  PET_MASTER_PORT. A node asking for more GPUs than the fake's nodes have stays Pending.
- Status as the controller writes it: none at first, then jobsStatus of the `node` replicated job,
  then Complete (AllJobsCompleted, "jobset completed successfully") when every node exited 0, or
  Failed (FailedJobs, "... (first failed job: <name>-node-0)") when one did not. Pods carry
  jobset.sigs.k8s.io/jobset-name, jobset.sigs.k8s.io/replicatedjob-name=node and
  batch.kubernetes.io/job-completion-index; their container is `node`.

Where it must differ: each node is a local process running the command in this interpreter's
environment (the image is not pulled), PET_MASTER_ADDR is 127.0.0.1 and the port a free one (real:
<name>-node-0-0.<name>:29500); a failed node is not retried (JobSet's backoff); no events,
Kueue, suspend, deadlines or initializers; RBAC is checked for trainjobs, not for pods.
"""

from __future__ import annotations

import json
import os
import random
import re
import socket
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from fastapi.responses import JSONResponse, PlainTextResponse

from conftest import kill_process_tree
from fake_k8s_api import ApiError, FakeCustomResourceApi, bad_request, now

RFC1035 = r"[a-z]([-a-z0-9]*[a-z0-9])?"
RESERVED_ENV = ("PET_NNODES", "PET_NPROC_PER_NODE", "PET_NODE_RANK", "PET_MASTER_ADDR", "PET_MASTER_PORT")
WEBHOOK = 'admission webhook "validator.trainjob.trainer.kubeflow.org" denied the request: '
PASSED_ENV = ("PATH", "HOME", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "TMPDIR")  # what an image would set


@dataclass
class Node:
    pod: str
    index: int
    log: Path
    created: str
    process: subprocess.Popen | None = None  # None: Pending (unschedulable) or never started
    reason: str = ""  # why the pod cannot start (CreateContainerConfigError)

    @property
    def phase(self) -> str:
        if self.reason:
            return "Failed"
        if self.process is None:
            return "Pending"
        code = self.process.poll()
        return "Running" if code is None else "Succeeded" if code == 0 else "Failed"


@dataclass
class Job:
    nodes: list[Node] = field(default_factory=list)


class FakeTrainerApi(FakeCustomResourceApi):
    GROUP, VERSION, PLURAL, KIND = "trainer.kubeflow.org", "v1alpha1", "trainjobs", "TrainJob"

    def __init__(self, namespaces=("default",), runtimes=("torch-distributed",), secrets: dict | None = None,
                 gpus_per_node: int = 0, **kw):
        super().__init__(namespaces, **kw)
        self.runtimes = set(runtimes)  # ClusterTrainingRuntimes installed
        self.secrets = secrets or {}  # (namespace, name) -> {key: value}
        self.gpus_per_node = gpus_per_node  # what the fake's nodes can give
        self.jobs: dict[tuple[str, str], Job] = {}
        self._logs = Path(tempfile.mkdtemp(prefix="fake-trainer-"))

    # -- the CRD's rules and the webhook ----------------------------------------------------------
    def _schema_errors(self, obj: dict) -> list[tuple[str, str, str]]:
        name, spec = obj["metadata"].get("name", ""), obj.get("spec")
        errs = []
        if not re.fullmatch(RFC1035, name):
            errs.append(("FieldValueInvalid", "<nil>", "Invalid value: \"object\": metadata.name must match RFC 1035 DNS label format"))
        if len(name) > 63:
            errs.append(("FieldValueInvalid", "<nil>", "Invalid value: \"object\": metadata.name must be no more than 63 characters"))
        if not isinstance(spec, dict):
            return errs + [("FieldValueRequired", "spec", "Required value")]
        ref = spec.get("runtimeRef")
        if not isinstance(ref, dict) or not ref.get("name"):
            errs.append(("FieldValueRequired", "spec.runtimeRef.name", "Required value"))
        trainer = spec.get("trainer") or {}
        for key in ("numNodes", "numProcPerNode"):
            value = trainer.get(key)
            if value is not None and (type(value) is not int):
                errs.append(("FieldValueTypeInvalid", f"spec.trainer.{key}", f'Invalid value: "{type(value).__name__}": '
                             f"spec.trainer.{key} in body must be of type integer"))
        if isinstance(trainer.get("numProcPerNode"), int) and trainer["numProcPerNode"] < 1:
            errs.append(("FieldValueInvalid", "spec.trainer.numProcPerNode", "Invalid value: should be greater than or equal to 1"))
        for key in ("command", "args"):
            value = trainer.get(key)
            if value is not None and not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
                errs.append(("FieldValueTypeInvalid", f"spec.trainer.{key}", "Invalid value: must be a list of strings"))
        return errs

    def _admit(self, obj: dict, name: str) -> None:
        ref, trainer = obj["spec"]["runtimeRef"], obj["spec"].get("trainer") or {}
        group, kind = ref.get("apiGroup", self.GROUP), ref.get("kind", "ClusterTrainingRuntime")
        if group != self.GROUP or kind != "ClusterTrainingRuntime":
            raise ApiError(422, "Invalid", WEBHOOK + f"unsupported runtime: {kind}.{group}")
        if ref["name"] not in self.runtimes:
            raise ApiError(422, "Invalid", WEBHOOK + f'{self.KIND}.{self.GROUP} "{name}" is invalid: spec.RuntimeRef: '
                           f'Invalid value: "{ref["name"]}": {kind}.{group} "{ref["name"]}" not found: specified '
                           "clusterTrainingRuntime must be created before the TrainJob is created")
        reserved = sorted({e.get("name") for e in trainer.get("env", [])} & set(RESERVED_ENV))
        if reserved:
            raise ApiError(422, "Invalid", WEBHOOK + f'{self.KIND}.{self.GROUP} "{name}" is invalid: spec.trainer.env: '
                           f"Invalid value: {json.dumps(trainer['env'])}: must not have reserved envs, invalid envs "
                           f"configured: {reserved}")

    def _update(self, ns: str, name: str, new: dict, old: dict) -> dict:
        for key in ("runtimeRef", "trainer", "initializer", "managedBy"):  # CEL: self == oldSelf
            if (new.get("spec") or {}).get(key) != old["spec"].get(key):
                raise self._invalid(name, [("FieldValueInvalid", f"spec.{key}", "Invalid value: \"object\": field is immutable")])
        return super()._update(ns, name, new, old)

    # -- the FAKE controller and kubelet ----------------------------------------------------------
    def _env(self, ns: str, trainer: dict) -> tuple[dict, str]:
        """The container's env from the TrainJob alone (and Secrets), or why the pod cannot start."""
        env = {k: os.environ[k] for k in PASSED_ENV if k in os.environ}
        env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"  # the image's torchrun
        env["OMP_NUM_THREADS"] = "1"
        for var in trainer.get("env", []):
            ref = (var.get("valueFrom") or {}).get("secretKeyRef")
            if ref is None:
                env[var["name"]] = var.get("value", "")
                continue
            secret = self.secrets.get((ns, ref["name"]))
            if secret is None or ref["key"] not in secret:
                what = f'secret "{ref["name"]}" not found' if secret is None else f'couldn\'t find key {ref["key"]} in Secret {ns}/{ref["name"]}'
                return env, f"CreateContainerConfigError: {what}"
            env[var["name"]] = secret[ref["key"]]
        return env, ""

    def _reconcile(self, ns: str, name: str) -> None:
        if (ns, name) in self.jobs:  # a spec change that CEL allowed (suspend, metadata): nothing to start
            return
        trainer = self.objects[(ns, name)]["spec"].get("trainer") or {}
        nodes, procs = trainer.get("numNodes", 1), trainer.get("numProcPerNode", 1)
        gpus = max((int(v) for k, v in ((trainer.get("resourcesPerNode") or {}).get("limits") or {}).items()
                    if k.endswith("/gpu")), default=0)
        env, reason = self._env(ns, trainer)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        job = self.jobs[(ns, name)] = Job()
        for index in range(nodes):
            suffix = "".join(random.choices("bcdfghjklmnpqrstvwxz2456789", k=5))
            node = Node(f"{name}-node-0-{index}-{suffix}", index, self._logs / f"{ns}-{name}-{index}.log", now(), reason=reason)
            job.nodes.append(node)
            if reason or gpus > self.gpus_per_node:  # no container, or no node can take the pod
                node.log.write_text("")
                continue
            pet = {"PET_NNODES": str(nodes), "PET_NPROC_PER_NODE": str(procs), "PET_NODE_RANK": str(index),
                   "PET_MASTER_ADDR": "127.0.0.1", "PET_MASTER_PORT": str(port)}
            with open(node.log, "wb") as log:
                node.process = subprocess.Popen([*trainer.get("command", []), *trainer.get("args", [])], stdout=log,
                                                stderr=subprocess.STDOUT, env={**env, **pet}, start_new_session=True)

    def _read(self, ns: str, name: str) -> dict:
        job, obj = self.jobs.get((ns, name)), self.objects.get((ns, name))
        if job is None or obj is None:
            return self._get(ns, name)
        phases = [n.phase for n in job.nodes]
        status = dict(obj.get("status") or {})
        if not any(c["type"] in ("Complete", "Failed") for c in status.get("conditions", [])):
            failed, done = "Failed" in phases, all(p == "Succeeded" for p in phases)
            if failed:
                self._stop(job)
            started = any(p != "Pending" for p in phases)
            counts = {"active": int(started and not failed and not done), "ready": int(started and not failed and not done),
                      "succeeded": int(done), "failed": int(failed), "suspended": 0}
            new = {"jobsStatus": [{"name": "node", **counts}]} if started or failed else {}
            if done:
                new["conditions"] = [self._condition("Complete", "AllJobsCompleted", "jobset completed successfully")]
            elif failed:
                new["conditions"] = [self._condition("Failed", "FailedJobs", "jobset failed due to one or more job "
                                                     f"failures (first failed job: {name}-node-0)")]
            if new != status:
                obj["status"] = new
                self._write(obj)
        return self._get(ns, name)

    @staticmethod
    def _condition(kind: str, reason: str, message: str) -> dict:
        return {"type": kind, "status": "True", "reason": reason, "message": message, "lastTransitionTime": now()}

    @staticmethod
    def _stop(job: Job) -> None:
        """SIGKILL every process of the job's pods: each agent and its ranks."""
        for node in job.nodes:
            if node.process is not None and node.process.poll() is None:
                kill_process_tree(node.process.pid)
                node.process.wait()

    def _deleted(self, ns: str, name: str) -> None:
        job = self.jobs.pop((ns, name), None)
        if job is not None:
            self._stop(job)

    def close(self) -> None:
        for key in list(self.jobs):
            self._deleted(*key)

    # -- pods and logs ----------------------------------------------------------------------------
    def _pods(self, ns: str) -> list[tuple[str, Node]]:
        return [(name, node) for (n, name), job in self.jobs.items() if n == ns for node in job.nodes]

    def _extra_route(self, method: str, path: str, query):
        pods = re.fullmatch(r"api/v1/namespaces/([^/]+)/pods", path)
        log = re.fullmatch(r"api/v1/namespaces/([^/]+)/pods/([^/]+)/log", path)
        if method != "GET" or not (pods or log):
            return None
        if pods:
            wanted = dict(t.split("=", 1) for t in query.get("labelSelector", "").split(",") if t)
            if any("!" in k or "(" in v for k, v in wanted.items()):
                raise bad_request("FAKE Kubernetes API: only equality label selectors (k=v,...) are implemented")
            items = []
            for name, node in self._pods(pods.group(1)):
                labels = {"jobset.sigs.k8s.io/jobset-name": name, "jobset.sigs.k8s.io/replicatedjob-name": "node",
                          "batch.kubernetes.io/job-completion-index": str(node.index)}
                if all(labels.get(k) == v for k, v in wanted.items()):
                    items.append({"metadata": {"name": node.pod, "namespace": pods.group(1), "labels": labels,
                                               "creationTimestamp": node.created},
                                  "spec": {"containers": [{"name": "node", "image": "fake"}]},
                                  "status": {"phase": node.phase, **({"reason": node.reason} if node.reason else {})}})
            return JSONResponse({"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items})
        ns, pod = log.groups()
        node = next((n for _, n in self._pods(ns) if n.pod == pod), None)
        if node is None:
            raise ApiError(404, "NotFound", f'pods "{pod}" not found', name=pod, kind="pods")
        if query.get("container", "node") != "node":
            raise bad_request(f"container {query['container']} is not valid for pod {pod}")
        if node.reason or node.process is None:
            raise bad_request(f'container "node" in pod "{pod}" is waiting to start: '
                              + (node.reason.split(":")[0] if node.reason else "ContainerCreating"))
        lines = node.log.read_text(errors="replace").splitlines(keepends=True)
        tail = int(query.get("tailLines", len(lines)) or len(lines))
        return PlainTextResponse("".join(lines[-tail:]))
