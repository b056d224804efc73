"""The F2LLM-v2 pipeline: ingest -> validate (a task per group of languages) -> mine negatives -> base model -> prepare -> stage 1 -> stage 2 ->
evaluate -> [gate] -> export -> [mteb] [deploy]. The whole run is configured by one validated RunConfig passed as JSON.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from f2llm.components.cluster import OPTUNA_STEPS, STEP_KINDS, apply_cluster, use_optuna_storage
from f2llm.components.local_run import LocalRunFailed, captured_run, strip_ansi
from f2llm.components.stages import (
    base_model_op,
    deploy_op,
    evaluate_op,
    export_op,
    gate_op,
    ingest_op,
    merge_validation_op,
    mine_op,
    mteb_op,
    prepare_op,
    train_job_op,
    train_op,
    validate_language_op,
)
from f2llm.config import ClusterConfig, RunConfig
from kfp import compiler, dsl
from kfp.dsl import PipelineTask
from kfp.dsl.pipeline_channel import PipelineChannel

FRONT_STAGES = (  # `data_and_teacher`: every pipeline starts with these
    "ingest", "validate-language", "merge-validation", "mine-negatives", "base-model", "prepare", "train-stage-1",
    "train-stage-2",
)
STAGES = FRONT_STAGES + ("evaluate", "export")  # the steps of every single-model run (`stage_names`)


def stage_names(cfg: RunConfig) -> tuple[str, ...]:
    """A single-model run's steps in the order they finish: "gate" with `gate:`, "mteb" with
    `eval.mteb`, "deploy" with `deploy:`."""
    return (FRONT_STAGES + ("evaluate",) + ("gate",) * (cfg.gate is not None) + ("export",)
            + ("mteb",) * (cfg.eval.mteb is not None) + ("deploy",) * (cfg.deploy is not None))


class StageNamer:
    """task, step -> the task named `step`, with `cluster`'s settings for its kind, or none (a local
    run: kfp.local would apply their env vars here). The data flow is the same either way."""

    def __init__(self, cluster: ClusterConfig | None):
        self.cluster = cluster

    def __call__(self, task: PipelineTask, step: str, kind: str | None = None, gpus: int | None = None) -> PipelineTask:
        if self.cluster is not None:
            apply_cluster(task, kind or STEP_KINDS[step], self.cluster, gpus)
            if step in OPTUNA_STEPS:
                use_optuna_storage(task, self.cluster)
        return task.set_display_name(step)

    def train(self, step: str, config_json, stage: int, dataset, init_model) -> PipelineTask:
        """A training step: in its pod (torchrun with a process a GPU when it has several), or with
        `cluster.train.nodes` > 1 a TrainJob that a light step (data kind: no GPU) creates and follows."""
        cluster = self.cluster
        if cluster is not None and cluster.train.nodes > 1:
            task = train_job_op(config_json=config_json, stage=stage, run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
                                dataset=dataset, init_model=init_model)
            return self(task, step, kind="data")
        task = train_op(config_json=config_json, stage=stage, dataset=dataset, init_model=init_model,
                        processes=self.processes)
        return self.on_train_node(task, step)

    @property
    def processes(self) -> int:
        """torchrun processes of a one-node training step: its GPUs (1 locally and on CPUs)."""
        return self.cluster.train_gpus if self.cluster is not None else 1

    def on_train_node(self, task: PipelineTask, step: str) -> PipelineTask:
        return self(task, step, gpus=self.cluster.train.gpus_per_node if self.cluster is not None else None)


@dataclass
class Front:
    """The tasks every pipeline starts with, from the raw sources to the stage-2 model."""

    validation: PipelineTask
    accepted: PipelineChannel  # the mined, accepted rows
    base: PipelineTask
    prepare: PipelineTask
    stage1: PipelineTask
    stage2: PipelineTask | None  # None: the tune pipeline trains stage 2 after its study


def data_and_teacher(config_json, on_cluster: StageNamer, stage2: bool = True) -> Front:
    """ingest -> validate (a task per group of languages) -> merge -> mine -> base model -> prepare -> stage 1
    [-> stage 2], inside a pipeline function."""
    ingest = on_cluster(ingest_op(config_json=config_json), "ingest")
    with dsl.ParallelFor(ingest.outputs["Output"], parallelism=8) as languages:
        check = on_cluster(validate_language_op(
            config_json=config_json, rows=ingest.outputs["rows"], languages=languages
        ), "validate-language")
    validation = on_cluster(merge_validation_op(
        accepted_parts=dsl.Collected(check.outputs["accepted"]),
        quarantine_parts=dsl.Collected(check.outputs["quarantine"]),
        check_parts=dsl.Collected(check.outputs["checks"]),
        summary_parts=dsl.Collected(check.outputs["language_summary"]),
        source_parts=dsl.Collected(check.outputs["source_checks"]),
    ), "merge-validation")
    mine = on_cluster(mine_op(config_json=config_json, accepted=validation.outputs["accepted"]), "mine-negatives")
    accepted = mine.outputs["mined"]
    base = on_cluster(base_model_op(config_json=config_json, accepted=accepted), "base-model")
    prepare = on_cluster(prepare_op(
        config_json=config_json, accepted=accepted, base_model=base.outputs["model"]
    ), "prepare")
    stage1 = on_cluster.train("train-stage-1", config_json, 1, prepare.outputs["dataset"], base.outputs["model"])
    front = Front(validation, accepted, base, prepare, stage1, None)
    if stage2:
        front.stage2 = train_stage2(config_json, front, on_cluster)
    return front


def train_stage2(config_json, front: Front, on_cluster: StageNamer) -> PipelineTask:
    return on_cluster.train("train-stage-2", config_json, 2, front.prepare.outputs["dataset"],
                            front.stage1.outputs["model"])


def evaluate_and_export(config_json, front: Front, stage2: PipelineTask, on_cluster: StageNamer, gate: bool,
                        mteb: bool, deploy: bool) -> None:
    """evaluate (against the base model) -> [gate] -> export -> [mteb] [deploy], inside a pipeline function."""
    evaluate = on_cluster(evaluate_op(
        config_json=config_json, accepted=front.accepted, base_model=front.base.outputs["model"],
        trained_model=stage2.outputs["model"], stage1_log=front.stage1.outputs["log"], stage2_log=stage2.outputs["log"],
    ), "evaluate")
    export = on_cluster(export_op(
        config_json=config_json, trained_model=stage2.outputs["model"], results=evaluate.outputs["results"],
        report=evaluate.outputs["report"], validation_report=front.validation.outputs["report"],
        validation_summary=front.validation.outputs["per_language"],
    ), "export")
    if gate:
        export.after(on_cluster(gate_op(config_json=config_json, results=evaluate.outputs["results"]), "gate"))
    if mteb:
        on_cluster(mteb_op(config_json=config_json, model=export.outputs["model"]), "mteb")
    if deploy:
        on_cluster(deploy_op(config_json=config_json, model=export.outputs["model"]), "deploy")


def build_pipeline(cluster: ClusterConfig | None = None, deploy: bool = False, gate: bool = False,
                   mteb: bool = False):
    """The single-model pipeline: the front, then evaluation against the base model, with `gate` the
    quality gate (export waits for it), export, with `mteb` the exported model through mteb, and
    with `deploy` the InferenceService."""
    on_cluster = StageNamer(cluster)

    @dsl.pipeline(name="f2llm-v2", description="F2LLM-v2 embedding recipe, end to end")
    def f2llm_pipeline(config_json: str):
        front = data_and_teacher(config_json, on_cluster)
        evaluate_and_export(config_json, front, front.stage2, on_cluster, gate, mteb, deploy)

    return f2llm_pipeline


def pipeline_for(cfg: RunConfig, cluster: ClusterConfig | None = None):
    """The family pipeline when the config has students, the tune pipeline with `tune:`, else the
    single-model one."""
    if cfg.tune is not None:
        from f2llm.components.tune import build_tune_pipeline

        return build_tune_pipeline(cluster, deploy=cfg.deploy is not None, gate=cfg.gate is not None,
                                   mteb=cfg.eval.mteb is not None)
    if cfg.family is not None:
        from f2llm.components.family import build_family_pipeline

        return build_family_pipeline(cluster)
    return build_pipeline(cluster, deploy=cfg.deploy is not None, gate=cfg.gate is not None,
                          mteb=cfg.eval.mteb is not None)


def compile_pipeline(cfg: RunConfig, output: str | Path) -> Path:
    """Write the pipeline as KFP YAML with this config as the default of `config_json`.

    The YAML runs on a cluster, so every data and model location must be a store URI: a local path
    (this machine's) is an error naming the field. kfp.local's `pipeline_root` is reset to its default.
    """
    local = cfg.local_paths()
    if local:
        listed = ", ".join(f"{k}={v}" for k, v in local.items())
        raise ValueError(f"{cfg.name}: a compiled pipeline runs on a cluster, but these are paths on this "
                         f"machine: {listed}. Use store URIs (s3://...), e.g. configs/cluster-demo.yaml.")
    cfg = cfg.model_copy(update={"pipeline_root": RunConfig.model_fields["pipeline_root"].default})
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(
        pipeline_for(cfg, cfg.cluster), str(output), pipeline_name=cfg.name,
        pipeline_parameters={"config_json": cfg.model_dump_json()},
    )
    return output


def run_local(cfg: RunConfig, out: TextIO | None = None) -> Path:
    """Run the whole pipeline on this machine: kfp.local, in the current interpreter.

    Prints a line per stage to `out` (stdout) as it finishes; everything kfp.local and the
    components print goes to the returned log file in the run's folder. A failed task raises
    LocalRunFailed, which names that log.
    """
    import warnings

    from kfp import local

    # Cluster settings are for the compiled YAML only; display names are ignored here.
    warnings.filterwarnings("ignore", message=r"Task .* have no effect in the current local runner")
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=cfg.pipeline_root)
    pipeline = pipeline_for(cfg)
    failure: RuntimeError | None = None
    with captured_run(pipeline.pipeline_spec, cfg.pipeline_root, out) as run:
        try:
            pipeline(config_json=cfg.model_dump_json())
        except RuntimeError as error:  # kfp.local: "Pipeline ... finished with status FAILURE ..."
            failure = error
    if failure is not None:
        raise LocalRunFailed(strip_ansi(str(failure)), run.log_path) from failure
    return run.log_path
