"""One lightweight KFP component per stage; each body only calls into the f2llm library.

KFP serialises a component's function source, so imports live inside the bodies. Locally
(kfp.local SubprocessRunner) they run in the current interpreter; on a cluster in the image of
their step kind (`ClusterConfig.images`: docker/data.Dockerfile, docker/train.Dockerfile).
"""

from typing import List

from kfp import dsl
from kfp.dsl import HTML, Artifact, Dataset, Input, Markdown, Metrics, Model, Output

IMAGE = "ghcr.io/f2llm/f2llm-data:0.1.0"  # compiled pipelines set each step's image (cluster.py)
component = dsl.component(base_image=IMAGE, install_kfp_package=False)


@component
def ingest_op(config_json: str, rows: Output[Dataset], metrics: Output[Metrics]) -> List[str]:
    """Rows to parquet partitioned by language -> the validation fan-out: groups of languages
    ("amh,ara,..."), at most `validation.tasks` of them, balanced by rows."""
    from f2llm.config import RunConfig
    from f2llm.data.ingest import ingest_partitioned
    from f2llm.data.validate import task_groups

    cfg = RunConfig.model_validate_json(config_json)
    stats = ingest_partitioned(cfg.data.uri, rows.path)
    metrics.log_metric("rows", sum(stats.rows.values()))
    metrics.log_metric("sources", stats.sources)
    metrics.log_metric("languages", len(stats.rows))
    return [",".join(group) for group in task_groups(stats.rows, cfg.validation.tasks)]


@component
def validate_language_op(
    config_json: str, rows: Input[Dataset], languages: str, accepted: Output[Dataset],
    quarantine: Output[Dataset], checks: Output[Dataset], language_summary: Output[Dataset],
    source_checks: Output[Dataset], data_docs: Output[Artifact],
):
    """A group of languages through the GX suite, each read alone from its partition."""
    from f2llm.config import RunConfig
    from f2llm.data.validate import validate_partitions

    cfg = RunConfig.model_validate_json(config_json)
    summary, records, sources = validate_partitions(
        rows.path, languages.split(","), cfg.validation, accepted.path, quarantine.path,
        docs_dir=data_docs.path, mined_tasks=cfg.mining.fills,
    )
    records.assign(observed=records["observed"].astype(str)).to_parquet(checks.path, index=False)
    summary.to_parquet(language_summary.path, index=False)
    sources.to_parquet(source_checks.path, index=False)


@component
def merge_validation_op(
    accepted_parts: Input[List[Dataset]], quarantine_parts: Input[List[Dataset]], check_parts: Input[List[Dataset]],
    summary_parts: Input[List[Dataset]], source_parts: Input[List[Dataset]], accepted: Output[Dataset],
    quarantine: Output[Dataset], per_language: Output[Dataset], summary: Output[Markdown], report: Output[HTML],
    metrics: Output[Metrics],
):
    """The validation tasks' outputs as one: rows streamed part by part (merge_parts), the
    per-language table, the HTML report and metrics."""
    import pandas as pd
    import pyarrow.parquet as pq
    from f2llm.data.validate import merge_parts
    from f2llm.evaluation.report import markdown_table, validation_html

    def concat(parts):
        return pd.concat([pd.read_parquet(p.path) for p in parts], ignore_index=True)

    n_ok = merge_parts([p.path for p in accepted_parts], accepted.path)
    n_bad = merge_parts([p.path for p in quarantine_parts], quarantine.path)
    languages = concat(summary_parts).sort_values("language")
    languages.to_csv(per_language.path, index=False)
    table = markdown_table(languages)
    print(table)
    with open(summary.path, "w") as fh:
        fh.write("# Validation per language\n\n" + table + "\n")
    # the report needs every reason but only a few rows of text
    reasons = pd.read_parquet(quarantine.path, columns=["reasons"])["reasons"]
    shown = ["language", "source", "row", "query", "reasons"]
    first = next(pq.ParquetFile(quarantine.path).iter_batches(batch_size=50, columns=shown), None)
    examples = first.to_pandas() if first is not None else pd.DataFrame(columns=shown)
    with open(report.path, "w") as fh:
        fh.write(validation_html(languages, concat(check_parts), reasons, examples, concat(source_parts)))
    metrics.log_metric("rows", int(languages["rows"].sum()))
    metrics.log_metric("accepted", n_ok)
    metrics.log_metric("quarantined", n_bad)


@component
def mine_op(
    config_json: str, accepted: Input[Dataset], mined: Output[Dataset], quarantine: Output[Dataset],
    metrics: Output[Metrics],
):
    """Hard negatives from the configured teacher (without one, the stored negatives pass through);
    rows left with fewer than their task's count are quarantined."""
    import dataclasses

    import pandas as pd
    from f2llm.config import RunConfig
    from f2llm.data.mining import mine_hard_negatives, quarantine_short_rows

    cfg = RunConfig.model_validate_json(config_json)
    rows, stats = mine_hard_negatives(pd.read_parquet(accepted.path), cfg.mining)
    kept, short = quarantine_short_rows(rows)
    kept.to_parquet(mined.path, index=False)
    short.to_parquet(quarantine.path, index=False)
    for key, value in dataclasses.asdict(stats).items():
        metrics.log_metric(key, value)
    metrics.log_metric("accepted", len(kept))
    metrics.log_metric("quarantined", len(short))


@component
def base_model_op(config_json: str, accepted: Input[Dataset], model: Output[Model]):
    import pandas as pd
    from f2llm.config import RunConfig
    from f2llm.model.base_model import build_tiny_model, fetch_base_model

    cfg = RunConfig.model_validate_json(config_json)
    if cfg.model.base == "tiny":
        rows = pd.read_parquet(accepted.path, columns=["query", "passage"])
        build_tiny_model(cfg.model.tiny, pd.concat([rows["query"], rows["passage"]]), model.path)
    else:
        fetch_base_model(cfg.model, model.path)
    model.metadata["base"] = cfg.model.base


@component
def prepare_op(
    config_json: str, accepted: Input[Dataset], base_model: Input[Model], dataset: Output[Dataset],
    metrics: Output[Metrics],
):
    import pandas as pd
    from f2llm.config import RunConfig
    from f2llm.data.prepare import prepare
    from transformers import AutoTokenizer

    cfg = RunConfig.model_validate_json(config_json)
    tokenizer = AutoTokenizer.from_pretrained(base_model.path, trust_remote_code=cfg.model.trust_remote_code)
    stats = prepare(pd.read_parquet(accepted.path), tokenizer, cfg.data, cfg.model.max_length, dataset.path)
    for key, value in stats.items():
        if isinstance(value, int):
            metrics.log_metric(key, value)
    metrics.log_metric("capped_rows", sum(stats["capped"].values()))


@component
def train_op(
    config_json: str, stage: int, dataset: Input[Dataset], init_model: Input[Model],
    model: Output[Model], log: Output[Artifact], metrics: Output[Metrics], processes: int = 1,
):
    """One stage in this pod: in-process, or torchrun with `processes` ranks (one a GPU)."""
    from f2llm.config import RunConfig
    from f2llm.train.launch import passes_stage, run_stage

    cfg = RunConfig.model_validate_json(config_json)
    if passes_stage(cfg.train, stage, init_model.path, model.path, log.path):
        return
    summary = run_stage(init_model.path, dataset.path, stage, cfg.train, cfg.model.max_length, model.path, log.path,
                        processes=processes)
    for key in ("steps", "seconds", "loss", "samples_per_s"):
        metrics.log_metric(key, round(float(summary[key]), 4))


@component
def train_job_op(
    config_json: str, stage: int, run_id: str, dataset: Input[Dataset], init_model: Input[Model],
    model: Output[Model], log: Output[Artifact], metrics: Output[Metrics], job: Output[Markdown],
):
    """One stage on many nodes: a Kubeflow Trainer TrainJob, followed to Complete or Failed; its
    model (published to the store by its rank 0) becomes this step's output."""
    from f2llm.config import RunConfig
    from f2llm.kube import current_namespace
    from f2llm.train.launch import passes_stage
    from f2llm.train.trainjob import run_train_job

    cfg = RunConfig.model_validate_json(config_json)
    if passes_stage(cfg.train, stage, init_model.path, model.path, log.path):
        return
    result = run_train_job(cfg, stage, run_id, current_namespace(), init_model.path, dataset.path, model.path, log.path)
    for key in ("steps", "seconds", "loss", "samples_per_s"):
        metrics.log_metric(key, round(float(result.summary[key]), 4))
    metrics.log_metric("train_job_s", result.seconds)
    with open(job.path, "w") as fh:
        fh.write(result.markdown())


@component
def evaluate_op(
    config_json: str, accepted: Input[Dataset], base_model: Input[Model], trained_model: Input[Model],
    stage1_log: Input[Artifact], stage2_log: Input[Artifact], results: Output[Dataset],
    report: Output[HTML], table: Output[Markdown], metrics: Output[Metrics],
):
    """Base, trained (and the gate's reference model) on every task type of the held-out split, per
    language and Matryoshka dim; the report has the gate's verdict when the run has a gate."""
    import pandas as pd
    from f2llm.config import RunConfig
    from f2llm.evaluation.evaluate import evaluate_model
    from f2llm.evaluation.gate import check_gate
    from f2llm.evaluation.report import equity_table, language_table, loss_curve_png, markdown_table, render_html
    from f2llm.model.encoder import Encoder

    cfg = RunConfig.model_validate_json(config_json)
    k = cfg.eval.k
    rows = pd.read_parquet(accepted.path)
    models = [("base", base_model.path), ("trained", trained_model.path)]
    if cfg.gate is not None and cfg.gate.reference != "base":
        models.append(("reference", cfg.gate.reference))
    frames = []
    for name, path in models:
        encoder = Encoder.load(path, max_length=cfg.eval.max_length, pooling=cfg.train.pooling,
                               trust_remote_code=cfg.model.trust_remote_code)
        frames.append(evaluate_model(encoder, rows, k=k, batch_size=cfg.eval.batch_size).assign(model=name))
    scores = pd.concat(frames, ignore_index=True)
    scores.to_csv(results.path, index=False)
    verdict = check_gate(scores, cfg.gate) if cfg.gate is not None else None
    with open(report.path, "w") as fh:
        fh.write(render_html(scores, loss_curve_png([stage1_log.path, stage2_log.path]), f"{cfg.name}: evaluation", k,
                             gate=verdict.checks if verdict else None))
    with open(table.path, "w") as fh:
        fh.write("# Equity\n\n" + markdown_table(equity_table(scores)) + "\n")
        for task in sorted(set(scores["task"])):
            fh.write(f"\n# {task}\n\n{markdown_table(language_table(scores, task))}\n")
        if verdict is not None:
            fh.write("\n" + verdict.markdown())
    full = scores[scores["dim"] == scores.groupby("model")["dim"].transform("max")]
    for (name, task), part in full.groupby(["model", "task"]):
        metric = part["metric"].iloc[0]
        metrics.log_metric(f"{name}_{task}_{metric}", round(float(part["score"].mean()), 4))
        if task == "retrieval":  # the headline figures `f2llm run` prints
            metrics.log_metric(f"{name}_ndcg@{k}", round(float(part[f"ndcg@{k}"].mean()), 4))
            metrics.log_metric(f"{name}_recall@{k}", round(float(part[f"recall@{k}"].mean()), 4))


@component
def gate_op(config_json: str, results: Input[Dataset], verdict: Output[Markdown], metrics: Output[Metrics]):
    """The quality gate: fails the run (before export and deploy) when the trained model misses a bound."""
    import pandas as pd
    from f2llm.config import RunConfig
    from f2llm.evaluation.gate import check_gate, enforce_gate

    cfg = RunConfig.model_validate_json(config_json)
    checked = check_gate(pd.read_csv(results.path), cfg.gate)
    print(checked.markdown())
    with open(verdict.path, "w") as fh:
        fh.write(checked.markdown())
    metrics.log_metric("checks", len(checked.checks))
    metrics.log_metric("failed", len(checked.failed))
    enforce_gate(checked)


@component
def export_op(
    config_json: str, trained_model: Input[Model], results: Input[Dataset], report: Input[HTML],
    validation_report: Input[HTML], validation_summary: Input[Dataset], model: Output[Model],
):
    from f2llm import storage
    from f2llm.config import RunConfig
    from f2llm.model.export import export_sentence_transformers

    cfg = RunConfig.model_validate_json(config_json)
    export_sentence_transformers(trained_model.path, model.path, cfg.model.max_length, pooling=cfg.train.pooling)
    storage.upload_dir(model.path, storage.join(cfg.output_uri, "model"))
    with open(report.path, "rb") as fh:
        storage.write_bytes(storage.join(cfg.output_uri, "report", "index.html"), fh.read())
    with open(results.path, "rb") as fh:
        storage.write_bytes(storage.join(cfg.output_uri, "report", "results.csv"), fh.read())
    for artifact, name in ((validation_report, "validation.html"), (validation_summary, "validation.csv")):
        with open(artifact.path, "rb") as fh:
            storage.write_bytes(storage.join(cfg.output_uri, "report", name), fh.read())
    model.metadata["uri"] = storage.join(cfg.output_uri, "model")


@component
def deploy_op(config_json: str, model: Input[Model], service: Output[Markdown], metrics: Output[Metrics]):
    """The exported model (past the gate) on a KServe InferenceService, Ready or the run fails."""
    from f2llm.config import RunConfig
    from f2llm.kube import current_namespace, load_api
    from f2llm.serve.deploy import deploy

    cfg = RunConfig.model_validate_json(config_json)
    rollout = deploy(load_api(), cfg.deploy, model.metadata["uri"], cfg.deploy.namespace or current_namespace())
    metrics.log_metric("rollout_s", rollout.seconds)
    traffic = ", ".join(f"{t.get('revisionName')} {t.get('percent')}%" for t in rollout.traffic) or "-"
    with open(service.path, "w") as fh:
        fh.write(f"# {rollout.namespace}/{rollout.name}\n\n| | |\n|---|---|\n"
                 f"| action | {'created' if rollout.created else 'updated'} (generation {rollout.generation}) |\n"
                 f"| model | {rollout.storage_uri} |\n"
                 f"| URL | {rollout.url} |\n| traffic | {traffic} |\n")
    print(f"deployed {rollout.storage_uri} to {rollout.namespace}/{rollout.name}: {rollout.url}")


@component
def mteb_op(config_json: str, model: Input[Model], results: Output[Artifact], summary: Output[Markdown],
            report: Output[HTML], metrics: Output[Metrics]):
    """The exported model through mteb (`eval.mteb`): mteb's result files to {output_uri}/mteb, the
    per-language summary as Markdown, HTML (also {output_uri}/report/mteb.html) and Metrics."""
    import shutil
    import tempfile

    from f2llm import storage
    from f2llm.config import RunConfig
    from f2llm.evaluation.mteb_run import resolve_tasks, run_mteb
    from f2llm.evaluation.report import markdown_table, mteb_html, mteb_table

    cfg = RunConfig.model_validate_json(config_json)
    spec = cfg.eval.mteb
    with tempfile.TemporaryDirectory() as work:
        frame = run_mteb(model.path, resolve_tasks(spec.tasks), work, cfg.name, dims=spec.dims,
                         instructions=spec.instructions, batch_size=spec.batch_size, max_length=cfg.eval.max_length,
                         pooling=cfg.train.pooling)
        frame.to_csv(f"{work}/summary.csv", index=False)
        storage.upload_dir(work, storage.join(cfg.output_uri, "mteb"))
        shutil.copytree(work, results.path, dirs_exist_ok=True)
    results.metadata["uri"] = storage.join(cfg.output_uri, "mteb")
    with open(summary.path, "w") as fh:
        fh.write(f"# MTEB: main score per task, language and dim\n\n{markdown_table(mteb_table(frame))}\n")
    page = mteb_html(frame, f"{cfg.name}: mteb")
    with open(report.path, "w") as fh:
        fh.write(page)
    storage.write_bytes(storage.join(cfg.output_uri, "report", "mteb.html"), page.encode())
    full = frame[frame["dim"] == frame["dim"].max()]
    for task, part in full.groupby("task"):
        metrics.log_metric(f"{task}_{part['main_score_name'].iloc[0]}", round(float(part["main_score"].mean()), 4))


# --- the family: students pruned from the stage-1 model, distilled from the stage-2 model


@component
def create_study_op(config_json: str, run_id: str) -> List[int]:
    """The run's Optuna study (`tune.study_name`) with tune.trials queued trials -> the worker fan-out."""
    from f2llm.config import RunConfig
    from f2llm.tune import create_study, study_name

    cfg = RunConfig.model_validate_json(config_json)
    study = create_study(cfg, study_name(cfg, run_id))
    print(f"study {study.study_name}: {len(study.trials)} trials, {cfg.tune.workers} workers")
    return list(range(cfg.tune.workers))


@component
def tune_worker_op(config_json: str, run_id: str, worker: int, dataset: Input[Dataset], init_model: Input[Model],
                   accepted: Input[Dataset]) -> int:
    """One of the study's workers (a pod on a cluster): queued trials until none is left -> trials run."""
    from pathlib import Path

    import pandas as pd
    from f2llm.config import RunConfig
    from f2llm.tune import TrialInputs, run_worker, study_name

    cfg = RunConfig.model_validate_json(config_json)
    study = study_name(cfg, run_id)
    inputs = TrialInputs(Path(init_model.path), Path(dataset.path), pd.read_parquet(accepted.path))
    ran = run_worker(cfg, inputs, study, worker)
    print(f"worker {worker} of study {study}: {ran} trials")
    return ran


@component
def tune_best_op(config_json: str, run_id: str, ran: List[int], report: Output[HTML], trials: Output[Markdown],
                 metrics: Output[Metrics]) -> str:
    """The study's outcome: Optuna's plots (HTML, also {output_uri}/report/tune.html), a row per
    trial, and the run's config with the best values (the downstream stage 2 trains with it)."""
    from f2llm import storage
    from f2llm.config import RunConfig
    from f2llm.evaluation.report import markdown_table, tune_html
    import json

    from f2llm.tune import best_values, load_study, study_name, study_plots, study_summary, trials_frame, tuned_config

    cfg = RunConfig.model_validate_json(config_json)
    study = study_name(cfg, run_id)
    found = load_study(cfg, study)
    frame = trials_frame(found)
    page = tune_html(frame, study_plots(found), f"{cfg.name}: study {study}", best_values(found))
    with open(report.path, "w") as fh:
        fh.write(page)
    storage.write_bytes(storage.join(cfg.output_uri, "report", "tune.html"), page.encode())
    storage.write_bytes(storage.join(cfg.output_uri, "report", "tune.json"),
                        json.dumps(study_summary(cfg, found), indent=2).encode())
    with open(trials.path, "w") as fh:
        fh.write(f"# Study {study}\n\n{markdown_table(frame)}\n")
    for state in ("COMPLETE", "PRUNED", "FAIL"):
        metrics.log_metric(f"trials_{state.lower()}", int((frame["state"] == state).sum()))
    metrics.log_metric("best_mean_ndcg", round(float(frame["mean"].max()), 4))
    metrics.log_metric("steps", int(frame["steps"].sum()))
    print(f"study {study}: {sum(ran)} trials run by {len(ran)} workers; best {best_values(found)}")
    return tuned_config(cfg, found).model_dump_json()


@component
def family_students_op(config_json: str) -> List[str]:
    """-> the students' names, for the per-student fan-out."""
    from f2llm.config import RunConfig

    return [s.name for s in RunConfig.model_validate_json(config_json).family.students]


@component
def prune_op(
    config_json: str, student: str, init_model: Input[Model], accepted: Input[Dataset], model: Output[Model],
    metrics: Output[Metrics],
):
    """The stage-1 model pruned to one student's shape, importance from a calibration set of the data."""
    import pandas as pd
    from f2llm.config import RunConfig
    from f2llm.model.prune import PruneTarget, calibration_texts, prune_checkpoint

    cfg = RunConfig.model_validate_json(config_json)
    family, shape = cfg.family, cfg.family.student(student)
    texts = calibration_texts(pd.read_parquet(accepted.path), family.calibration_rows, cfg.data.seed)
    report = prune_checkpoint(
        init_model.path, model.path, PruneTarget(shape.hidden, shape.mlp, shape.layers), texts, family.depth,
        max_length=family.calibration_max_length, trust_remote_code=cfg.model.trust_remote_code,
    )
    pruned = report["pruned"]["model"]
    model.metadata.update(student=student, parameters=pruned["parameters"])
    for key in ("parameters", "surgery_s"):
        metrics.log_metric(key, round(float(pruned[key]), 4))
    metrics.log_metric("importance_s", round(report["importance_s"], 4))
    metrics.log_metric("calibration_tokens", report["calibration_tokens"])


@component
def train_student_op(
    config_json: str, student: str, dataset: Input[Dataset], init_model: Input[Model], teacher_model: Input[Model],
    model: Output[Model], log: Output[Artifact], metrics: Output[Metrics], processes: int = 1,
):
    """A pruned student through stage 2 with the distillation term from the teacher (in-process, or
    torchrun with `processes` ranks)."""
    from f2llm.config import RunConfig
    from f2llm.train.launch import run_stage

    cfg = RunConfig.model_validate_json(config_json)
    train = cfg.student_training(student, teacher_model.path)
    summary = run_stage(init_model.path, dataset.path, 2, train, cfg.model.max_length, model.path, log.path,
                        processes=processes)
    model.metadata["student"] = student
    for key in ("steps", "seconds", "loss", "samples_per_s"):
        metrics.log_metric(key, round(float(summary[key]), 4))


@component
def evaluate_family_op(
    config_json: str, accepted: Input[Dataset], teacher_model: Input[Model], student_models: Input[List[Model]],
    results: Output[Dataset], report: Output[HTML], table: Output[Markdown], metrics: Output[Metrics],
):
    """Every student beside the teacher: one per-language table and the Matryoshka curve."""
    import pandas as pd
    from f2llm.config import RunConfig
    from f2llm.evaluation.evaluate import evaluate_model
    from f2llm.evaluation.report import family_html, family_table, markdown_table
    from f2llm.model.encoder import Encoder

    cfg = RunConfig.model_validate_json(config_json)
    k = cfg.eval.k
    rows = pd.read_parquet(accepted.path)
    members = [("teacher", teacher_model)] + [(m.metadata["student"], m) for m in student_models]
    frames = []
    for name, artifact in members:
        encoder = Encoder.load(artifact.path, max_length=cfg.eval.max_length, pooling=cfg.train.pooling)
        frames.append(evaluate_model(encoder, rows, k=k, batch_size=cfg.eval.batch_size, tasks=["retrieval"])
                      .assign(model=name))
    scores = pd.concat(frames, ignore_index=True)
    scores.to_csv(results.path, index=False)
    with open(report.path, "w") as fh:
        fh.write(family_html(scores, f"{cfg.name}: the family", k))
    with open(table.path, "w") as fh:
        fh.write(markdown_table(family_table(scores, k)))
    full = scores[scores["dim"] == scores.groupby("model")["dim"].transform("max")]
    for name, part in full.groupby("model"):
        metrics.log_metric(f"{name}_ndcg@{k}", round(float(part[f"ndcg@{k}"].mean()), 4))


@component
def export_student_op(config_json: str, student: str, trained_model: Input[Model], model: Output[Model]):
    """One student as a sentence-transformers directory, published under output_uri/students/<name>."""
    from f2llm import storage
    from f2llm.config import RunConfig
    from f2llm.model.export import export_sentence_transformers

    cfg = RunConfig.model_validate_json(config_json)
    export_sentence_transformers(trained_model.path, model.path, cfg.model.max_length, pooling=cfg.train.pooling)
    uri = storage.join(cfg.output_uri, "students", student, "model")
    storage.upload_dir(model.path, uri)
    model.metadata.update(student=student, uri=uri)
