"""The multi-node training step: the TrainJob it writes validates against Kubeflow Trainer's API models,
and against a FAKE Kubernetes API + FAKE Trainer (tests/fake_trainer_api.py), whose nodes are real
torchrun agents meeting on 127.0.0.1, it trains two nodes to one process's weights, adopts a
retried step's job, fails clearly with node 0's log, and times out an unschedulable job."""

import copy
import re

import pytest
from kubeflow_trainer_api.models.trainer_v1alpha1_train_job import TrainerV1alpha1TrainJob
from kubernetes.client.exceptions import ApiException
from safetensors.torch import load_file
from transformers import AutoTokenizer

from conftest import free_port
from f2llm.kube import load_api, load_core_api
from f2llm.train.trainjob import MAX_NAME, TrainJobFailed, job_name, run_train_job, train_job
from f2llm.config import (
    ClusterConfig,
    DataConfig,
    RunConfig,
    StageConfig,
    StepResources,
    TrainClusterConfig,
    TrainConfig,
)
from f2llm.data.prepare import prepare
from f2llm.model.recipes import run_config
from f2llm.train.trainer import train_stage
from fake_trainer_api import RFC1035, FakeTrainerApi

from tolerance import assert_same_training

NS = "team-a"
GROUP, VERSION, PLURAL = "trainer.kubeflow.org", "v1alpha1", "trainjobs"


def validated(obj: dict) -> dict:
    """Through Trainer's own models: they drop unknown fields silently, so the round trip must be exact."""
    again = TrainerV1alpha1TrainJob.from_dict(copy.deepcopy(obj)).to_dict()
    assert again == obj, "a field Trainer's API does not know, or of the wrong type"
    return obj


def test_the_14b_trainjob_validates_against_the_trainer_api():
    cfg = run_config("14B")
    cfg.cluster.train = TrainClusterConfig(nodes=4, gpus_per_node=8)
    cfg.cluster.cache_pvc = "model-cache"
    name = job_name(cfg.name, 2, "0b8c4e1e-5f0a-4a47-9d9e-1f8c5e0a9d21")
    obj = validated(train_job(cfg, 2, name, NS))
    trainer = obj["spec"]["trainer"]
    assert len(name) <= MAX_NAME and re.fullmatch(RFC1035, name)
    assert obj["spec"]["runtimeRef"]["name"] == "torch-distributed"
    assert trainer["numNodes"] == 4 and trainer["numProcPerNode"] == 8
    assert trainer["resourcesPerNode"]["limits"]["nvidia.com/gpu"] == "8"
    assert trainer["command"][:3] == ["torchrun", "-m", "f2llm.train"]  # the runtime's PET_* give torchrun the rest
    assert "--nnodes" not in trainer["command"] and not any(e["name"].startswith("PET_") for e in trainer["env"])
    secret = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in trainer["env"] if "valueFrom" in e}
    assert secret == {"AWS_ACCESS_KEY_ID": {"name": "f2llm-s3", "key": "AWS_ACCESS_KEY_ID"},
                      "AWS_SECRET_ACCESS_KEY": {"name": "f2llm-s3", "key": "AWS_SECRET_ACCESS_KEY"}}
    pod = obj["spec"]["runtimePatches"][0]["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"][0]
    assert pod["name"] == "node"
    pod = pod["template"]["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"} and pod["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert pod["containers"][0]["volumeMounts"][0]["mountPath"] == "/cache"
    assert name == job_name(cfg.name, 2, "0b8c4e1e-5f0a-4a47-9d9e-1f8c5e0a9d21") != job_name(cfg.name, 1, "0b8c4e1e")


@pytest.fixture
def trainer(tmp_path, monkeypatch, s3_endpoint):
    """The fake on a port, KUBECONFIG pointing at it, the store's Secret in the namespace."""
    import os

    secret = {k: os.environ[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    api = FakeTrainerApi(namespaces=(NS,), secrets={(NS, "f2llm-s3"): secret})
    server = api.serve(port := free_port())
    api.write_kubeconfig(tmp_path / "kubeconfig", f"http://127.0.0.1:{port}", NS)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "kubeconfig"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    yield api
    api.close()
    server.should_exit = True


def run_cfg(s3_endpoint, **train) -> RunConfig:
    stage = StageConfig(epochs=2, lr=1e-3, batch_size=7, warmup_ratio=0.1)
    return RunConfig(
        name="f2llm-test", data=DataConfig(uri="s3://unused/data"), output_uri="s3://f2llm-runs/f2llm-test",
        train=TrainConfig(stage1=None, stage2=stage, strategy="fsdp"),
        cluster=ClusterConfig(s3_endpoint=s3_endpoint, train=TrainClusterConfig(poll_s=0.5, **train),
                              resources={"data": StepResources(), "gpu": StepResources(gpus=0)}),  # CPU nodes
    )


@pytest.fixture
def stage_data(tmp_path, sample_rows, tiny_model_dir):
    rows = sample_rows[sample_rows["language"].isin(["swa", "jpn", "amh"])]
    prepare(rows, AutoTokenizer.from_pretrained(tiny_model_dir), DataConfig(uri="unused"), 64, tmp_path / "data")
    return tmp_path / "data"


def test_two_nodes_train_to_one_process_and_a_retry_adopts_the_job(tmp_path, trainer, stage_data, tiny_model_dir,
                                                                    s3_endpoint):
    cfg = run_cfg(s3_endpoint, nodes=2)
    result = run_train_job(cfg, 2, "run-1", NS, tiny_model_dir, stage_data, tmp_path / "model", tmp_path / "log.jsonl")
    assert result.status["conditions"][0]["reason"] == "AllJobsCompleted" and not result.adopted
    assert result.summary["world_size"] == 2 and "| TrainJob | team-a/" in result.markdown()
    validated(train_job(cfg, 2, result.name, NS))

    one = train_stage(tiny_model_dir, stage_data, 2, cfg.train.model_copy(update={"strategy": "ddp"}), 64,
                      tmp_path / "one", tmp_path / "one.jsonl")
    steps = (tmp_path / "one.jsonl").read_text().count("\n")
    assert one["steps"] == steps == (tmp_path / "log.jsonl").read_text().count("\n") > 0
    assert_same_training(load_file(tmp_path / "model" / "model.safetensors"),
                         load_file(tmp_path / "one" / "model.safetensors"), lr=cfg.train.stage2.lr, steps=steps)

    posts = sum(r["method"] == "POST" for r in trainer.requests)
    again = run_train_job(cfg, 2, "run-1", NS, tiny_model_dir, stage_data, tmp_path / "again", tmp_path / "again.jsonl")
    assert again.adopted and again.name == result.name  # the retried step followed the Complete job
    assert sum(r["method"] == "POST" for r in trainer.requests) == posts
    assert (tmp_path / "again" / "model.safetensors").read_bytes() == (tmp_path / "model" / "model.safetensors").read_bytes()


def test_a_failing_node_fails_the_step_with_its_log_and_a_retry_replaces_the_job(tmp_path, trainer, stage_data,
                                                                                 tiny_model_dir, s3_endpoint):
    cfg = run_cfg(s3_endpoint, nodes=2)
    cfg.train.stage1 = StageConfig(batch_size=7)  # the prepared data has no stage-1 table for the sources here
    (stage_data / "stage1.parquet").unlink(missing_ok=True)
    with pytest.raises(TrainJobFailed) as failed:
        run_train_job(cfg, 1, "run-2", NS, tiny_model_dir, stage_data, tmp_path / "model", tmp_path / "log.jsonl")
    message = str(failed.value)
    assert "Failed=True (FailedJobs: jobset failed due to one or more job failures" in message
    assert "node 0, last 50 lines" in message and "stage1.parquet" in message  # the trainer's traceback, from node 0
    with pytest.raises(TrainJobFailed):
        run_train_job(cfg, 1, "run-2", NS, tiny_model_dir, stage_data, tmp_path / "model", tmp_path / "log.jsonl")
    methods = [r["method"] for r in trainer.requests if r["path"].endswith("/trainjobs") or "/trainjobs/" in r["path"]]
    assert methods.count("POST") == 2 and "DELETE" in methods  # the failed job was replaced, not followed


def test_an_unschedulable_job_times_out_and_is_deleted(tmp_path, trainer, stage_data, tiny_model_dir, s3_endpoint):
    cfg = run_cfg(s3_endpoint, nodes=2, gpus_per_node=8, timeout_s=2)  # the fake's nodes have no GPU
    with pytest.raises(TrainJobFailed, match=r"not Complete after 2 s \(no status yet\); deleted it") as late:
        run_train_job(cfg, 2, "run-3", NS, tiny_model_dir, stage_data, tmp_path / "model", tmp_path / "log.jsonl")
    assert "waiting to start" in str(late.value) or "no log" in str(late.value)
    assert not trainer.objects


def test_a_missing_secret_leaves_the_pods_failing(tmp_path, trainer, stage_data, tiny_model_dir, s3_endpoint):
    cfg = run_cfg(s3_endpoint, nodes=2)
    cfg.cluster.s3_secret = "no-such-secret"
    with pytest.raises(TrainJobFailed, match="FailedJobs") as failed:
        run_train_job(cfg, 2, "run-4", NS, tiny_model_dir, stage_data, tmp_path / "model", tmp_path / "log.jsonl")
    assert "CreateContainerConfigError" in str(failed.value)


def test_the_fake_refuses_what_trainer_refuses(trainer, s3_endpoint):
    api = load_api()
    good = train_job(run_cfg(s3_endpoint, nodes=2), 2, "ok-job", NS)
    good["spec"]["trainer"]["command"] = ["true"]

    def create(obj) -> ApiException:
        with pytest.raises(ApiException) as refused:
            api.create_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, obj)
        return refused.value

    bad = copy.deepcopy(good)
    bad["metadata"]["name"] = "9-starts-with-a-digit"
    refused = create(bad)
    assert refused.status == 422 and "RFC 1035" in refused.body
    bad = copy.deepcopy(good)
    bad["spec"]["trainer"]["env"].append({"name": "PET_NNODES", "value": "3"})
    assert "reserved envs" in create(bad).body
    bad = copy.deepcopy(good)
    bad["spec"]["runtimeRef"]["name"] = "deepspeed-distributed"
    assert "must be created before the TrainJob" in create(bad).body
    bad = copy.deepcopy(good)
    bad["spec"]["trainer"]["numProcPerNode"] = "auto"
    assert "must be of type integer" in create(bad).body
    api.create_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, good)
    assert create(good).status == 409
    with pytest.raises(ApiException, match="field is immutable"):
        api.patch_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, "ok-job", {"spec": {"trainer": {"numNodes": 3}}})
    pods = load_core_api(api).list_namespaced_pod(NS, label_selector="jobset.sigs.k8s.io/jobset-name=ok-job").items
    assert sorted(p.metadata.labels["batch.kubernetes.io/job-completion-index"] for p in pods) == ["0", "1"]
