"""The study: created once with exactly tune.trials queued trials, loaded by every worker, and
read back as what counted (less surplus and retried trials), the best values and a table."""

from __future__ import annotations

import warnings

import optuna
import pandas as pd
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState

from f2llm.config import RunConfig, TuneConfig
from f2llm.tune.storage import open_storage, shown_url, storage_url


FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


def report_every(cfg: RunConfig) -> int:
    """Queries seen between a trial's intermediate reports: tune.eval_every optimizer steps at the
    run's own stage-2 batch size (the pruner's unit, whatever batch a trial draws)."""
    return cfg.tune.eval_every * cfg.train.stage2.batch_size


def make_pruner(cfg: RunConfig) -> optuna.pruners.BasePruner:
    tune, every = cfg.tune, report_every(cfg)
    if tune.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=every)
    if tune.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=every)
    return optuna.pruners.NopPruner()


def study_name(cfg: RunConfig, run_id: str | None = None) -> str:
    """tune.study (a study to resume or extend), else the run's name, with the pipeline run's id
    on a cluster: every run its own study."""
    if cfg.tune.study:
        return cfg.tune.study
    return f"{cfg.name}-{run_id}" if run_id else cfg.name


def _sampler(tune: TuneConfig, seed: int | None) -> optuna.samplers.BaseSampler:
    if tune.objectives == "mean+worst":
        # a generation no larger than half the study (its default, 50, would leave 8 trials random)
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=max(2, min(50, tune.trials // 2)))
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(4, tune.trials))


def create_study(cfg: RunConfig, name: str | None = None) -> optuna.Study:
    """The study with tune.trials queued (WAITING) trials, the first with tune.enqueue's values.
    Idempotent: on an existing study (the step retried, or `tune.study` named to extend) it queues
    only what brings the study's own trials up to tune.trials."""
    tune = cfg.tune
    study = optuna.create_study(
        storage=open_storage(storage_url(cfg), tune), study_name=name or study_name(cfg),
        sampler=_sampler(tune, tune.seed), pruner=make_pruner(cfg),
        directions=["maximize", "maximize"] if tune.objectives == "mean+worst" else ["maximize"],
        load_if_exists=True,
    )
    queued = [t for t in study.get_trials(deepcopy=False)
              if t.user_attrs.get("queued") and "failed_trial" not in t.system_attrs]  # retries are copies
    if not queued:
        study.set_user_attr("space", {k: v.model_dump() for k, v in tune.space.items()})
    for i in range(len(queued), tune.trials):
        study.enqueue_trial(tune.enqueue[i] if i < len(tune.enqueue) else {}, user_attrs={"queued": True})
    return study


def load_study(cfg: RunConfig, name: str | None = None, seed: int | None = None) -> optuna.Study:
    """The shared study as a worker sees it (`seed`: the worker's own stream of samples)."""
    return optuna.load_study(study_name=name or study_name(cfg), storage=open_storage(storage_url(cfg), cfg.tune),
                             sampler=_sampler(cfg.tune, seed), pruner=make_pruner(cfg))


def counted(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """The study's trials that ended, less the surplus ones and those retried after a dead worker."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        retried = {n for t in study.get_trials(deepcopy=False) for n in RetryHeartbeatStaleTrialCallback.retry_history(t)}
    return [t for t in study.get_trials(deepcopy=False, states=FINISHED)
            if t.user_attrs.get("queued") and t.number not in retried]


def best_values(study: optuna.Study) -> dict:
    """The best trial's config values (mean+worst: the Pareto trial with the best mean)."""
    if not study.best_trials:
        states = pd.Series([t.state.name for t in counted(study)]).value_counts().to_dict()
        failed = [t.user_attrs.get("error") for t in counted(study) if t.user_attrs.get("error")]
        raise ValueError(f"study {study.study_name}: no trial completed ({states}); first error: "
                         f"{failed[0] if failed else 'none recorded'}")
    best = max(study.best_trials, key=lambda t: t.values[0])
    return dict(best.params)


def tuned_config(cfg: RunConfig, study: optuna.Study) -> RunConfig:
    """The run's config with the best trial's values: what the downstream stage 2 trains with."""
    return cfg.with_values(best_values(study))


def study_summary(cfg: RunConfig, study: optuna.Study) -> dict:
    """What `{output_uri}/report/tune.json` keeps: the study, where it is, its counts and best values."""
    frame = trials_frame(study)
    return {"study": study.study_name, "storage": shown_url(storage_url(cfg)), "objectives": cfg.tune.objectives,
            "trials": frame["state"].value_counts().to_dict(), "steps": int(frame["steps"].sum()),
            "best_mean": float(frame["mean"].max()), "best": best_values(study)}


def trials_frame(study: optuna.Study) -> pd.DataFrame:
    """A row per counted trial: number, state, mean (and worst) nDCG of a COMPLETE trial, the last
    report of a pruned one (Optuna stores that as a pruned trial's value; it is no final score),
    steps spent, the values."""
    nan = float("nan")
    rows = []
    for t in counted(study):
        done = t.state == TrialState.COMPLETE
        row = {"trial": t.number, "state": t.state.name, "mean": t.values[0] if done else nan,
               "worst": t.user_attrs.get("worst", nan),
               "last_report": t.intermediate_values[max(t.intermediate_values)] if t.intermediate_values else nan,
               "steps": t.user_attrs.get("steps", 0)}
        rows.append(row | t.params)
    return pd.DataFrame(rows)
