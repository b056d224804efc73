"""Typed run configuration, validated once at the edge (YAML file -> RunConfig).

One RunConfig travels through the whole pipeline as JSON (the `config_json` pipeline parameter),
so every stage sees the same validated values locally and on a cluster.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from f2llm.tasks import TASKS, TaskType


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TinyModelConfig(_Strict):
    """Shape of the Qwen3-shaped model built from scratch for local runs and tests."""

    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 4
    num_kv_heads: int = 2
    head_dim: int = 32  # vLLM's CPU attention supports 32 and up
    intermediate_size: int = 128
    vocab_size: int = 2048
    seed: int = 0


class ModelConfig(_Strict):
    # "tiny" builds TinyModelConfig's model and a BPE tokenizer trained on the accepted data;
    # anything else is a Hugging Face checkpoint path or URI (file://, s3://).
    base: str = "tiny"
    tiny: TinyModelConfig = TinyModelConfig()
    max_length: int = Field(1024, ge=8)  # recipe: training max length 1024
    trust_remote_code: bool = False


class DataConfig(_Strict):
    uri: str  # directory holding sources.yaml
    max_per_source: int = Field(80_000, ge=1)  # recipe: at most 80k queries per source
    doc_instruction_ratio: float = Field(0.3, ge=0, le=1)  # stage 2, symmetric tasks
    # Optional temperature sampling over languages: p_l ~ n_l^(1/T); None keeps the cap only.
    language_temperature: float | None = Field(None, gt=0)
    seed: int = 0


class ValidationConfig(_Strict):
    """Row rules quarantine rows; source and language rules stop the run or drop the rows
    (`data/validate.py`). Language ID thresholds: `data/langid.py`, measured by bench_langid."""

    max_chars: int = Field(8192, ge=1)
    max_negatives: int = Field(24, ge=1)  # the recipe stores 24 mined negatives
    min_rows_per_slice: int = Field(1, ge=1)  # per language
    min_language_agreement: float = Field(0.6, ge=0, le=1)  # per source
    langid_min_chars: int = Field(20, ge=1)  # letters; shorter texts are checked by script only
    langid_confidence: float = Field(0.6, ge=0, le=1)  # confirm mode: another language this sure disagrees
    langid_margin: float = Field(0.1, ge=0, le=1)  # confirm mode: the label within this of the top reading agrees
    langid_exclude_confidence: float = Field(0.9, ge=0, le=1)  # exclude mode: another language this sure disagrees
    on_slice_failure: Literal["stop", "drop"] = "stop"
    tasks: int = Field(8, ge=1)  # validation tasks (pods); languages are packed into them by rows


class MiningConfig(_Strict):
    """Hard-negative mining (recipe, "Data": top 100, skip the top 5, keep candidates scoring
    < 0.8 and < 95% of the positive's score, keep 24)."""

    teacher: str | None = None  # HF / sentence-transformers path, URI, or package:<pkg>/<dir>; None: off
    tasks: list[str] = ["retrieval", "bitext"]
    mode: Literal["replace", "fill"] = "replace"  # fill: append mined to stored negatives up to `keep`
    top_k: int = Field(100, ge=1)
    skip_top: int = Field(5, ge=0)
    max_score: float = 0.8
    max_relative: float = 0.95
    keep: int = Field(24, ge=1)
    batch_size: int = Field(128, ge=1)
    max_length: int = 256

    @property
    def fills(self) -> list[str]:
        """Task types whose rows get their negatives from mining (validation needs none stored)."""
        return list(self.tasks) if self.teacher else []


class StageConfig(_Strict):
    """One training stage's optimisation (recipe, "Training")."""

    epochs: int = Field(2, ge=1)
    max_steps: int | None = Field(None, ge=1)  # stop early (smoke runs, benchmarks); None: all epochs
    lr: float = 1e-5
    min_lr: float = 1e-7
    batch_size: int = Field(512, ge=2)  # queries per global batch
    warmup_ratio: float = Field(0.05, ge=0, lt=1)
    warmup_steps: int | None = Field(None, ge=0)  # optimizer steps (recipe: 500); wins over warmup_ratio
    schedule: Literal["cosine", "constant"] = "cosine"
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.98)
    grad_clip: float = 1.0
    # Each rank's share of a batch runs as this many micro-batches. The loss still sees the
    # whole global batch: embeddings are computed without a graph, the loss's gradient w.r.t.
    # them is taken once, then each micro-batch is re-encoded and back-propagated with its
    # slice of that gradient (GradCache, arXiv 2101.06983). Same gradient as one pass; the
    # activation memory of one micro-batch; one extra forward.
    grad_accumulation: int = Field(1, ge=1)


class TrainConfig(_Strict):
    stage1: StageConfig | None = StageConfig()  # None skips stage 1 (sizes below 0.6B)
    stage2: StageConfig = StageConfig()
    temperature: float = Field(0.05, gt=0)
    matryoshka: bool = True
    teacher: str | None = None  # stage-2 distillation teacher (same tokenizer), path or URI
    kd_weight: float = Field(1.0, ge=0)
    checkpoint_uri: str | None = None  # resume from its latest checkpoint when one exists
    checkpoint_every: int = Field(0, ge=0)  # steps; 0 = only the final model
    precision: Literal["auto", "bf16", "fp32"] = "auto"  # auto: bf16 autocast where the GPU has it
    gradient_checkpointing: bool = False
    # ddp: a full replica a rank (16 bytes of AdamW state a parameter); fsdp: FSDP2, the state
    # sharded over ranks with a unit per decoder layer (`f2llm plan` says which a size needs)
    strategy: Literal["ddp", "fsdp"] = "ddp"
    cpu_offload: bool = False  # fsdp: the sharded state in host memory, the GPU holds units in flight
    pooling: Literal["last", "mean"] = "last"  # recipe: last (EOS) token
    # The same positive text twice in a global batch is one in-batch column: otherwise a query is
    # pushed away from its own positive's copy (an in-batch false negative). Not in the published code.
    mask_duplicate_positives: bool = True
    # hard negatives a row brings to the loss, per task type; unset: the recipe's (tasks.TASKS: 7 retrieval
    # and bitext, 9 clustering, 1 classification). Every row must store at least that many.
    hard_negatives: dict[Literal["retrieval", "bitext", "clustering", "classification"], int] = {}
    seed: int = 0

    @model_validator(mode="after")
    def _offload_needs_fsdp(self) -> "TrainConfig":
        if self.cpu_offload and self.strategy != "fsdp":
            raise ValueError("train.cpu_offload needs train.strategy: fsdp")
        bad = {task: k for task, k in self.hard_negatives.items() if k < 1}
        if bad:
            raise ValueError(f"train.hard_negatives must be at least 1, not {bad}")
        return self

    def negatives_for(self, task: str) -> int:
        """Hard negatives a row of `task` brings to the loss: this config's, else the recipe's."""
        return self.hard_negatives.get(task, TASKS[TaskType(task)].hard_negatives)


class MtebConfig(_Strict):
    """The exported model through the `mteb` package (`f2llm.evaluation.mteb_run`), a step after
    export. Datasets load from the Hugging Face cache the step sees (HF_HOME: on a cluster the
    cache PVC, `cluster.cache_pvc`); a cluster without internet needs them placed there first."""

    tasks: list[str] = Field(min_length=1)  # mteb benchmark or task names, or local:<data dir> (its eval split)
    dims: list[int] | None = None  # None: every Matryoshka dim, each a separate result
    batch_size: int = Field(32, ge=1)
    instructions: dict[str, str] = {}  # by mteb task name or task type, over the recipe's instruction per type


class EvalConfig(_Strict):
    k: int = Field(10, ge=1)
    max_length: int = Field(8192, ge=8)  # recipe: evaluation at 8192 tokens, training at model.max_length (1024)
    batch_size: int = 64
    mteb: MtebConfig | None = None


class GateThresholds(_Strict):
    """Bounds on one task type's main score (nDCG@k, accuracy or V-measure) at the gate's dim."""

    min_mean: float | None = None  # the mean over languages
    min_worst: float | None = None  # every language
    max_drop: float | None = Field(None, ge=0)  # the largest fall of a language below the reference model


class GateConfig(_Strict):
    """The quality gate between evaluation and export: a run whose trained model misses any bound
    stops there (nothing exported or deployed), the failing rows in the evaluation report and the
    gate step's output (`f2llm.evaluation.gate`)."""

    # "base": the run's base model; else a model directory or URI, e.g. the one deployed now
    reference: str = "base"
    dim: int | None = None  # None: each model's full dim
    tasks: dict[Literal["retrieval", "bitext", "classification", "clustering"], GateThresholds] = Field(min_length=1)


class StepResources(_Strict):
    """Requests/limits of one kind of step on a cluster (Kubernetes quantities)."""

    cpu: str = "1"
    memory: str = "4Gi"
    cpu_limit: str | None = None
    memory_limit: str | None = None
    gpus: int = Field(0, ge=0)
    accelerator: str = "nvidia.com/gpu"  # the resource (or accelerator type) the GPUs are asked as


class Toleration(_Strict):
    key: str
    operator: Literal["Equal", "Exists"] = "Equal"
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None


class TrainClusterConfig(_Strict):
    """How the training steps run on a cluster (`f2llm plan SIZE` says what a size needs).

    One node: the step's pod gets `gpus_per_node` GPUs and runs torchrun there, a process a GPU.
    More than one: the step creates a Kubeflow Trainer TrainJob (`f2llm.train.trainjob`) of
    `nodes` x `gpus_per_node` GPUs on the ClusterTrainingRuntime `runtime`, follows it to Complete
    or Failed and hands its model on. Trainer is a prerequisite of the cluster, like KFP and KServe.
    """

    nodes: int = Field(1, ge=1)
    gpus_per_node: int | None = Field(None, ge=1)  # None: the gpu kind's `gpus` (resources.gpu)
    runtime: str = "torch-distributed"  # a ClusterTrainingRuntime that Kubeflow Trainer installs
    timeout_s: float = Field(7 * 24 * 3600, gt=0)  # a TrainJob not Complete by then fails the step (and is deleted)
    poll_s: float = Field(30, gt=0)
    log_lines: int = Field(50, ge=1)  # of node 0's log, shown when a TrainJob fails


class ClusterConfig(_Strict):
    """What the compiled pipeline asks of a cluster. The local run (kfp.local) ignores all of it.

    Steps are of two kinds: `data` steps (ingest, validation, prepare, export) and `gpu` steps
    (mining, base model, training, evaluation); each kind has its image and resources, and steps
    asking for GPUs get the GPU node selector and tolerations. S3 keys come from a Kubernetes
    Secret as env vars (never from the config), the endpoint as plain env; an optional PVC
    caches models and tokenizers. Nothing here names KFP's own objects (kfp-launcher): KFP
    keeps its task artifacts in its own store unless `pipeline_root` is given to a run (README,
    "Namespaces").
    """

    images: dict[Literal["data", "gpu"], str] = {
        "data": "ghcr.io/f2llm/f2llm-data:0.1.0", "gpu": "ghcr.io/f2llm/f2llm-train:0.1.0",
    }
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    resources: dict[Literal["data", "gpu"], StepResources] = {
        "data": StepResources(cpu="2", memory="8Gi", memory_limit="16Gi"),
        "gpu": StepResources(cpu="8", memory="64Gi", memory_limit="96Gi", gpus=1),
    }
    gpu_node_selector: dict[str, str] = {"nvidia.com/gpu.present": "true"}
    gpu_tolerations: list[Toleration] = [Toleration(key="nvidia.com/gpu", operator="Exists", effect="NoSchedule")]
    # The chart's MinIO when installed as the README says (`helm install f2llm helm/f2llm -n f2llm`).
    s3_endpoint: str | None = "http://f2llm-minio.f2llm.svc:9000"
    s3_region: str = "us-east-1"
    s3_secret: str | None = "f2llm-s3"  # a Secret in the runs' namespace holding the keys below
    s3_secret_keys: dict[str, str] = {"AWS_ACCESS_KEY_ID": "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY": "AWS_SECRET_ACCESS_KEY"}
    # The tune pipeline's study storage: OPTUNA_STORAGE from this Secret (the chart's PostgreSQL, or
    # optuna.external.existingSecret); None: tune.storage must name it.
    optuna_secret: str | None = "f2llm-optuna"
    # KFP's own artifacts (each task's inputs and outputs): None keeps KFP's artifact store (its
    # kfp-launcher's root); an s3:// URI here is given to each run by `f2llm submit`.
    pipeline_root: str | None = None
    cache_pvc: str | None = None  # an existing claim (ReadWriteMany: tasks run on many nodes); None: no cache
    cache_mount: str = "/cache"
    caching: bool = True
    retries: int = Field(1, ge=0)
    train: TrainClusterConfig = TrainClusterConfig()

    @property
    def train_gpus(self) -> int:
        """GPUs a training node gets: torchrun processes a node (1 on the CPU-only demo)."""
        return self.train.gpus_per_node or max(1, self.resources["gpu"].gpus)


def _dns(v: str) -> str:
    if not v.replace("-", "").isalnum() or not v.islower():
        raise ValueError("must be lower-case letters, digits and '-' (a Kubernetes name)")
    return v


class DeployConfig(_Strict):
    """The pipeline's last step, after the quality gate (`gate:`, required with deploy): the model
    served by a KServe InferenceService (created, or updated to the new model), Ready or the run fails."""

    name: str = Field(max_length=63)  # the InferenceService (a DNS-1035 label)
    namespace: str | None = None  # None: the namespace the run executes in
    runtime: str = "f2llm-predictor"  # a ServingRuntime there (the chart installs f2llm-predictor, f2llm-vllm)
    service_account: str | None = "f2llm-models"  # its Secrets give KServe's storage initializer the S3 keys
    canary_percent: int | None = Field(None, ge=1, le=99)  # an update sends this share to the new model first
    timeout_s: float = Field(900, gt=0)  # for Ready
    poll_s: float = Field(5, gt=0)

    @model_validator(mode="before")
    @classmethod
    def _gate_moved(cls, data):
        if isinstance(data, dict) and "min_ndcg" in data:
            raise ValueError(f"deploy.min_ndcg is now the run's gate: gate: {{tasks: {{retrieval: "
                             f"{{min_mean: {data['min_ndcg']}}}}}}}")
        return data

    @field_validator("name")
    @classmethod
    def _dns1035(cls, v: str) -> str:
        if not (v[:1].isalpha() and v[-1:].isalnum()):
            raise ValueError("must start with a letter and end with a letter or digit (a DNS-1035 label)")
        return _dns(v)


class StudentConfig(_Strict):
    """One pruned, distilled member of a family (`f2llm.model.recipes` fills these for 80M/160M/330M)."""

    name: str
    hidden: int = Field(ge=1)
    mlp: int = Field(ge=1)
    layers: int = Field(ge=1)
    stage2: StageConfig | None = None  # None: train.stage2
    kd_weight: float = Field(1.0, ge=0)  # 0: the no-distillation arm of an ablation

    @field_validator("name")
    @classmethod
    def _dns_name(cls, v: str) -> str:
        return _dns(v)


class FamilyConfig(_Strict):
    """Students pruned from the run's stage-1 model and trained through stage 2 with the distillation
    term from its stage-2 model (recipe: 80M/160M/330M from the stage-1 0.6B, taught by the 0.6B)."""

    students: list[StudentConfig] = Field(min_length=1)
    calibration_rows: int = Field(1024, ge=1)  # training rows, mixed over sources, with instructions
    calibration_max_length: int = Field(512, ge=8)
    depth: Literal["first", "block"] = "first"  # recipe: keep the first n layers

    @field_validator("students")
    @classmethod
    def _unique(cls, v: list[StudentConfig]) -> list[StudentConfig]:
        names = [s.name for s in v]
        if len(set(names)) != len(names):
            raise ValueError(f"student names must be unique: {names}")
        return v

    def student(self, name: str) -> StudentConfig:
        return next(s for s in self.students if s.name == name)


class SearchParam(_Strict):
    """One searched config field: a float or int range (`log`: log-uniform) or a list of choices."""

    low: float | None = None
    high: float | None = None
    log: bool = False
    integer: bool = False  # whole numbers in [low, high]
    choices: list[float | int | str] | None = None

    @model_validator(mode="after")
    def _range_or_choices(self):
        if (self.choices is None) == (self.low is None or self.high is None):
            raise ValueError("a search parameter takes either low and high or choices")
        if self.low is not None and self.high is not None and not self.low < self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        if self.log and self.low is not None and self.low <= 0:
            raise ValueError(f"a log-uniform range starts above 0, not at {self.low}")
        return self

    def contains(self, value) -> bool:
        if self.choices is not None:
            return value in self.choices
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (self.integer and value != int(value)):
            return False
        return self.low <= value <= self.high


def _default_space() -> dict[str, SearchParam]:
    return {
        "train.stage2.lr": SearchParam(low=1e-5, high=5e-3, log=True),
        "train.temperature": SearchParam(low=0.01, high=0.1, log=True),
        "train.stage2.batch_size": SearchParam(choices=[8, 16, 32]),  # the global batch (queries)
        "train.hard_negatives.retrieval": SearchParam(low=1, high=7, integer=True),
        "train.stage2.warmup_ratio": SearchParam(low=0.0, high=0.2),
    }


class TuneConfig(_Strict):
    """`f2llm tune`: an Optuna study of stage 2 from the run's stage-1 model (`f2llm.tune`).

    Each key of `space` is a config path (as `--set` takes them); a trial trains stage 2 with its
    values and is scored on the held-out retrieval rows (nDCG@k at full dim): the mean over
    languages, and with `objectives: mean+worst` also the worst language (a Pareto front)."""

    trials: int = Field(8, ge=1)
    workers: int = Field(2, ge=1)  # parallel trial pullers (pods on a cluster)
    study: str | None = None  # default: the run's name (in the pipeline: and the run's id, a study per run)
    storage: str | None = None  # RDB URL, no password; None: $OPTUNA_STORAGE, else SQLite under output_uri
    objectives: Literal["mean", "mean+worst"] = "mean"
    pruner: Literal["median", "hyperband", "none"] = "median"
    eval_every: int = Field(10, ge=1)  # optimizer steps between intermediate evaluations (pruning)
    seed: int = 0
    heartbeat_s: int = Field(10, ge=1)  # a RUNNING trial silent for 2x this is failed and retried
    max_retry: int = Field(1, ge=0)
    space: dict[str, SearchParam] = Field(default_factory=_default_space)
    # the first trials' values (Optuna's enqueue_trial): a known baseline, e.g. the recipe's; the
    # sampler fills any path a row leaves out
    enqueue: list[dict[str, float | int | str]] = []

    @field_validator("storage")
    @classmethod
    def _no_password(cls, url: str | None) -> str | None:
        """The config travels as the run's parameter (KFP's UI, logs): no password in it."""
        if url is None:
            return url
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            parsed = make_url(url)
        except ArgumentError:
            raise ValueError(f"tune.storage: {url!r} is not a database URL (e.g. postgresql://host/optuna)") from None
        if parsed.password or "password" in parsed.query:
            raise ValueError("tune.storage: a URL with a password would sit in the run's parameters; give it as "
                             "$OPTUNA_STORAGE instead (on a cluster: the Secret cluster.optuna_secret names)")
        return url

    @model_validator(mode="after")
    def _enqueued_in_space(self) -> TuneConfig:
        if len(self.enqueue) > self.trials:
            raise ValueError(f"tune.enqueue: {len(self.enqueue)} rows for {self.trials} trials")
        for i, row in enumerate(self.enqueue):
            for path, value in row.items():
                if path not in self.space:
                    raise ValueError(f"tune.enqueue[{i}]: {path!r} is not in tune.space")
                if not self.space[path].contains(value):
                    raise ValueError(f"tune.enqueue[{i}]: {path}={value!r} is outside its search range")
        return self


class RunConfig(_Strict):
    name: str = "f2llm"
    data: DataConfig
    validation: ValidationConfig = ValidationConfig()
    mining: MiningConfig = MiningConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()
    output_uri: str  # where the exported model and the report are published
    pipeline_root: str = "runs/local_outputs"  # kfp.local task outputs
    cluster: ClusterConfig = ClusterConfig()  # compiled into the pipeline YAML, ignored locally
    family: FamilyConfig | None = None  # pruned, distilled students: the family pipeline
    gate: GateConfig | None = None  # the quality gate before export; None: every trained model is exported
    deploy: DeployConfig | None = None  # the deploy step (a cluster with KServe); None: export only
    tune: TuneConfig | None = None  # `f2llm tune`: the search over stage 2 (none: no tune pipeline)

    def student_training(self, name: str, teacher: str) -> TrainConfig:
        """A student's TrainConfig: stage 2 only (its own settings, else the run's), distilled from
        `teacher` (the run's stage-2 model) with the student's kd_weight."""
        student = self.family.student(name)
        checkpoints = self.train.checkpoint_uri
        return self.train.model_copy(update={
            "stage1": None, "stage2": student.stage2 or self.train.stage2, "teacher": teacher,
            "kd_weight": student.kd_weight,
            "checkpoint_uri": f"{checkpoints.rstrip('/')}/students/{name}" if checkpoints else None,
        })

    @field_validator("name")
    @classmethod
    def _dns_name(cls, v: str) -> str:
        return _dns(v)

    def with_values(self, values: dict[str, object]) -> RunConfig:
        """This config with `{"a.b.c": value}` set, validated again (errors name the path)."""
        data = self.model_dump(mode="json")
        for path, value in values.items():
            node = data
            *parents, leaf = path.split(".")
            for key in parents:
                if not isinstance(node.get(key), dict):
                    raise ValueError(f"{path!r}: {key!r} is not a section of the config")
                node = node[key]
            node[leaf] = value
        return RunConfig.model_validate(data)

    def local_paths(self) -> dict[str, str]:
        """The fields naming a path on this machine: a cluster's pods cannot read them."""
        fields = {"data.uri": self.data.uri, "output_uri": self.output_uri, "model.base": self.model.base,
                  "train.teacher": self.train.teacher, "train.checkpoint_uri": self.train.checkpoint_uri,
                  "mining.teacher": self.mining.teacher,
                  "gate.reference": self.gate.reference if self.gate and self.gate.reference != "base" else None}
        return {k: v for k, v in fields.items()
                if v and ("://" not in v or v.startswith("file://")) and v != "tiny" and not v.startswith("package:")}

    @model_validator(mode="after")
    def _searchable_space(self) -> RunConfig:
        """tune.space: stage-2 training fields only (a trial starts from the stage-1 model), each
        taking its range's values (checked with the low end or the first choice)."""
        if self.tune is None:
            return self
        if self.family is not None:
            raise ValueError("tune: searches a single model's stage 2; a family run has no tune pipeline")
        data = self.model_dump(mode="json") | {"tune": None}
        for path, param in self.tune.space.items():
            if not path.startswith("train.") or path.startswith("train.stage1."):
                raise ValueError(f"tune.space: {path!r} is not a stage-2 training field (train.stage2.*, "
                                 "train.temperature, train.hard_negatives.<task>, ...)")
            example = param.choices[0] if param.choices is not None else (int(param.low) if param.integer else param.low)
            try:
                RunConfig.model_validate(data).with_values({path: example})
            except ValueError as error:
                raise ValueError(f"tune.space: {path!r} cannot take {example!r}: {error}") from None
        return self

    @model_validator(mode="after")
    def _deploy_single_model(self) -> RunConfig:
        if self.deploy is not None and self.family is not None:
            raise ValueError("deploy: is for single-model runs; a family run exports each student for review")
        if self.deploy is not None and self.gate is None:
            raise ValueError("deploy: needs a gate: (e.g. gate: {tasks: {retrieval: {min_mean: 0.5}}}): "
                             "nothing is served unchecked")
        return self


def _resolve(value: str, base: Path) -> str:
    """Relative paths in a config file are relative to that file."""
    if "://" in value:
        return value
    return str((base / value).resolve())


def load_config(path: str | Path) -> RunConfig:
    path = Path(path)
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    cfg = RunConfig.model_validate(raw)
    base = path.parent
    cfg.data.uri = _resolve(cfg.data.uri, base)
    cfg.output_uri = _resolve(cfg.output_uri, base)
    cfg.pipeline_root = _resolve(cfg.pipeline_root, base)
    if cfg.model.base != "tiny":
        cfg.model.base = _resolve(cfg.model.base, base)
    if cfg.train.teacher:
        cfg.train.teacher = _resolve(cfg.train.teacher, base)
    if cfg.mining.teacher and not cfg.mining.teacher.startswith("package:"):
        cfg.mining.teacher = _resolve(cfg.mining.teacher, base)
    if cfg.gate and cfg.gate.reference != "base":
        cfg.gate.reference = _resolve(cfg.gate.reference, base)
    return cfg


class ServeConfig(_Strict):
    """`f2llm serve`: the predictor's limits and batching (one exported model per server).

    Every limit bounds memory or time before the work it guards: characters and tokens per input,
    tokens per request, padded tokens per forward pass, tokens in flight (beyond: 503), bytes and
    seconds per body, seconds per request head.
    """

    model: str  # exported sentence-transformers directory: a path or a store URI
    name: str = "f2llm"  # the model's name in every protocol (v1/v2 path, OpenAI `model`)
    host: str = "127.0.0.1"  # a pod listens on 0.0.0.0 (the ServingRuntimes pass --host)
    http_port: int = Field(8080, ge=1, le=65535)
    max_batch_size: int = Field(64, ge=1)  # inputs per forward pass, across requests
    max_batch_tokens: int = Field(16384, ge=2)  # padded tokens (rows x longest) per forward pass
    max_wait_ms: float = Field(5.0, ge=0)  # how long a batch waits to fill
    max_input_tokens: int = Field(8192, ge=2)  # recipe: evaluation at 8192
    on_too_long: Literal["truncate", "reject"] = "truncate"  # reject: HTTP 413
    max_inputs: int = Field(2048, ge=1)  # per request (OpenAI's limit)
    max_request_tokens: int = Field(300_000, ge=2)  # summed over a request's inputs (OpenAI's limit); over: 413
    max_inflight_tokens: int = Field(262_144, ge=2)  # admitted, not yet answered; over: 503 + Retry-After
    max_request_bytes: int = Field(8 * 2**20, ge=1024)  # larger bodies: HTTP 413
    max_buffered_bytes: int = Field(64 * 2**20, ge=1024)  # bodies held at once, all requests; over: 503
    max_connections: int = Field(512, ge=1)  # uvicorn's limit_concurrency; over: 503
    header_timeout_s: float = Field(10.0, gt=0)  # a request's head must arrive within this
    body_timeout_s: float = Field(30.0, gt=0)  # its body within this of the head; else 408
    keep_alive_s: int = Field(65, ge=1)  # an idle keep-alive connection is closed after this (KServe's value)
    model_control: bool = False  # /v2/repository load/unload, with F2LLM_CONTROL_TOKEN as a bearer token
    device: str = "auto"  # auto: cuda when present
