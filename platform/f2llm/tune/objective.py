"""A trial and a worker: stage 2 with the trial's values from the stage-1 model, scored on the
held-out retrieval rows (reported every tune.eval_every steps for the pruner); a worker pulls
queued trials until none is left."""

from __future__ import annotations

import math
import os
import socket
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import optuna
import pandas as pd
import torch
from optuna.storages import fail_stale_trials
from optuna.trial import TrialState

from f2llm.config import RunConfig, SearchParam
from f2llm.evaluation.evaluate import evaluate_model
from f2llm.model.encoder import Encoder
from f2llm.tune.study import load_study, report_every


class Surplus(RuntimeError):
    """A trial Optuna created beyond the queued ones (two workers raced for the last): not run."""


@dataclass
class TrialInputs:
    """What every trial reads: the stage-1 model, the prepared dataset, the accepted rows."""

    init_model: Path
    dataset: Path
    rows: pd.DataFrame


def suggest(trial: optuna.Trial, space: dict[str, SearchParam]) -> dict:
    values = {}
    for path, param in space.items():
        if param.choices is not None:
            values[path] = trial.suggest_categorical(path, param.choices)
        elif param.integer:
            values[path] = trial.suggest_int(path, int(param.low), int(param.high), log=param.log)
        else:
            values[path] = trial.suggest_float(path, param.low, param.high, log=param.log)
    return values


def retrieval_scores(encoder: Encoder, rows: pd.DataFrame, cfg: RunConfig) -> tuple[float, float]:
    """(mean, worst) over languages of held-out retrieval nDCG@k at full dim."""
    results = evaluate_model(encoder, rows, k=cfg.eval.k, batch_size=cfg.eval.batch_size, tasks=["retrieval"])
    full = results[results["dim"] == results["dim"].max()]
    if full.empty:
        raise ValueError(f"{cfg.name}: the data has no held-out retrieval rows to score trials on")
    return float(full["score"].mean()), float(full["score"].min())


class Objective:
    """A trial: stage 2 with the trial's values, scored on the held-out retrieval rows."""

    def __init__(self, cfg: RunConfig, inputs: TrialInputs):
        self.cfg, self.inputs = cfg, inputs
        self.multi = cfg.tune.objectives == "mean+worst"

    def __call__(self, trial: optuna.Trial) -> float | tuple[float, float]:
        if not trial.user_attrs.get("queued"):
            raise Surplus(f"trial {trial.number} was not queued: {self.cfg.tune.trials} trials are running already")
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        try:
            return self._run(trial)
        except optuna.TrialPruned:
            raise
        except Exception as error:  # Optuna only logs why a trial failed: the study keeps it too
            trial.set_user_attr("error", f"{type(error).__name__}: {error}"[:1000])
            raise

    def _run(self, trial: optuna.Trial) -> float | tuple[float, float]:
        values = suggest(trial, self.cfg.tune.space)
        # no checkpoints: a trial resuming another's (or the final stage 2 resuming a trial's) would be wrong
        cfg = self.cfg.with_values(values | {"train.checkpoint_uri": None})
        with tempfile.TemporaryDirectory(prefix=f"f2llm-trial{trial.number}-") as tmp:
            summary = self._train(trial, cfg, Path(tmp))
            trial.set_user_attr("steps", summary["steps"])
            if not math.isfinite(summary["loss"]):
                raise ValueError(f"trial {trial.number}: the loss ended {summary['loss']} with {values}")
            encoder = Encoder.load(Path(tmp) / "model", max_length=cfg.eval.max_length, pooling=cfg.train.pooling)
            mean, worst = retrieval_scores(encoder, self.inputs.rows, cfg)
        trial.set_user_attr("worst", worst)
        return (mean, worst) if self.multi else mean

    def _train(self, trial: optuna.Trial, cfg: RunConfig, tmp: Path) -> dict:
        from f2llm.train.trainer import train_stage

        every, batch = report_every(self.cfg), cfg.train.stage2.batch_size
        reported = 0

        def on_step(step: int, encoder: Encoder) -> None:
            # reports are keyed by queries seen, not steps: batch size is searched, and the pruner
            # compares trials at equal keys (step 100 at batch 8 is a quarter of step 100 at batch 32)
            nonlocal reported
            seen = step * batch // every * every
            if self.multi or seen <= reported:
                return
            reported = seen
            trial.set_user_attr("steps", step)  # what a pruned trial spent
            encoder.model.eval()
            with torch.no_grad():
                mean, _ = retrieval_scores(encoder, self.inputs.rows, cfg)
            encoder.model.train()
            trial.report(mean, seen)
            if trial.should_prune():
                raise optuna.TrialPruned(f"nDCG {mean:.3f} at step {step} ({seen} queries)")

        return train_stage(self.inputs.init_model, self.inputs.dataset, 2, cfg.train, cfg.model.max_length,
                           tmp / "model", tmp / "log.jsonl", on_step=on_step)


def run_worker(cfg: RunConfig, inputs: TrialInputs, name: str | None = None, worker: int = 0) -> int:
    """Pull queued trials from the shared study until none is left -> trials this worker ran."""
    study = load_study(cfg, name, seed=cfg.tune.seed + 1 + worker)
    objective, ran = Objective(cfg, inputs), 0
    while True:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            fail_stale_trials(study)  # a dead worker's trial back in the queue
        if study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
            try:
                study.optimize(objective, n_trials=1, catch=(Exception,), gc_after_trial=True)
                ran += 1
            except (AssertionError, ValueError, optuna.exceptions.UpdateFinishedTrialError) as error:
                # our trial was failed under us (its heartbeat looked stale: a stalled database or
                # process); its retry runs it again, so this worker goes on
                print(f"worker {worker}: the study failed this trial under us ({error!r}); going on")
        elif study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            time.sleep(cfg.tune.heartbeat_s)  # another worker's last trials: done, or stale and queued again
        else:
            return ran
