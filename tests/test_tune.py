"""The Optuna search (f2llm.tune) on the sample, against real storages: a SQLite file and a real
PostgreSQL server this module starts on loopback. Workers are separate processes
(`python -m f2llm.tune`, what a tune-worker pod runs); one of them is SIGKILLed mid-trial."""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import pandas as pd
import pytest
import torch
import yaml
from optuna.trial import TrialState
from transformers import AutoTokenizer

from f2llm.config import DataConfig, RunConfig
from f2llm.data.prepare import prepare
from f2llm.model.encoder import Encoder
from f2llm.train.trainer import train_stage
from f2llm import tune

from conftest import ROOT, free_port, kill_process_tree

LANGUAGES = ["swa", "khm", "que", "eng"]
WAIT_S = 300


def _pg_bin(name: str) -> str:
    found = shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))[-1:]), None)
    assert found, f"{name} not found: `make test` installs Debian's postgresql package (Makefile: postgres)"
    return found


@pytest.fixture(scope="module")
def postgres_url():
    """A PostgreSQL server of our own on 127.0.0.1 (password auth over TCP, as the chart's), stopped
    at the end. As root, the server runs as the `postgres` user: initdb refuses root."""
    home = Path(tempfile.mkdtemp(prefix="f2llm-pg-"))  # pytest's tmp folders are root's only
    as_user = []
    if os.geteuid() == 0:
        as_user = ["runuser", "-u", "postgres", "--"]
        shutil.chown(home, "postgres")
    password = "pw-Not-In-Reports"
    (home / "pw").write_text(password)
    shutil.chown(home / "pw", "postgres") if as_user else None
    subprocess.run([*as_user, _pg_bin("initdb"), "-D", str(home / "data"), "-U", "f2llm", "--pwfile", str(home / "pw"),
                    "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8"], check=True, capture_output=True, text=True)
    port = free_port()
    server = subprocess.Popen([*as_user, _pg_bin("postgres"), "-D", str(home / "data"), "-p", str(port), "-k", str(home),
                               "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"postgresql+psycopg://f2llm:{password}@127.0.0.1:{port}/postgres"
    import psycopg

    deadline = time.time() + 60
    while True:
        try:
            psycopg.connect(f"host=127.0.0.1 port={port} user=f2llm password={password} dbname=postgres").close()
            break
        except psycopg.OperationalError:
            assert server.poll() is None and time.time() < deadline, "PostgreSQL did not start"
            time.sleep(0.2)
    yield url
    server.terminate()
    server.wait(timeout=30)
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, sample_rows, tiny_model_dir) -> tune.TrialInputs:
    """Four languages of the sample, prepared; the untrained tiny model stands in for stage 1."""
    out = tmp_path_factory.mktemp("tune-inputs")
    rows = sample_rows[sample_rows["language"].isin(LANGUAGES)].reset_index(drop=True)
    prepare(rows, AutoTokenizer.from_pretrained(tiny_model_dir), DataConfig(uri="unused"), 64, out / "data")
    rows.to_parquet(out / "rows.parquet")
    return tune.TrialInputs(tiny_model_dir, out / "data", rows)


def config(tmp_path, **tune_fields) -> RunConfig:
    return RunConfig.model_validate({
        "name": "tune-test", "data": {"uri": "unused"}, "output_uri": str(tmp_path / "run"), "model": {"max_length": 64},
        "train": {"stage1": None, "stage2": {"epochs": 1, "lr": 1e-3, "batch_size": 8, "warmup_ratio": 0.1,
                                             "max_steps": 12}},
        "tune": {"trials": 4, "workers": 2, "heartbeat_s": 1, "eval_every": 4, "pruner": "none",
                 "space": {"train.stage2.lr": {"low": 1e-4, "high": 3e-3, "log": True},
                           "train.temperature": {"low": 0.02, "high": 0.1, "log": True}}} | tune_fields,
    })


def start_worker(tmp_path, cfg: RunConfig, inputs: tune.TrialInputs, worker: int) -> subprocess.Popen:
    path = tmp_path / "run.json"
    path.write_text(cfg.model_dump_json())
    args = ["--config", str(path), "--worker", str(worker), "--init", str(inputs.init_model),
            "--data", str(inputs.dataset), "--accepted", str(inputs.dataset.parent / "rows.parquet")]
    return subprocess.Popen([sys.executable, "-m", "f2llm.tune", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})


def finish(process: subprocess.Popen) -> str:
    out, _ = process.communicate(timeout=WAIT_S)
    assert process.returncode == 0, out[-3000:]
    return out


def ran_by(out: str) -> int:
    return int(out.strip().splitlines()[-1].split(": ")[1].split()[0])


def assert_settled(study: optuna.Study, trials: int) -> list[optuna.trial.FrozenTrial]:
    """Exactly `trials` counted, all COMPLETE; nothing left RUNNING or WAITING; anything beyond
    them is a race's surplus (FAIL, never trained) or a dead worker's trial that was retried."""
    counted = tune.counted(study)
    assert len(counted) == trials and all(t.state == TrialState.COMPLETE for t in counted), counted
    assert not study.get_trials(states=(TrialState.RUNNING, TrialState.WAITING))
    for extra in set(t.number for t in study.trials) - set(t.number for t in counted):
        assert study.trials[extra].state == TrialState.FAIL
    return counted


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_two_workers_run_exactly_the_queued_trials(tmp_path, inputs, backend, request, monkeypatch):
    if backend == "postgresql":  # as on a cluster: the URL, password and all, from the environment
        monkeypatch.setenv("OPTUNA_STORAGE", request.getfixturevalue("postgres_url"))
    cfg = config(tmp_path)
    assert tune.storage_url(cfg).startswith("sqlite:///" if backend == "sqlite" else "postgresql+psycopg://")
    tune.create_study(cfg)
    tune.create_study(cfg)  # the step retried: the study is found, no trial queued twice
    workers = [start_worker(tmp_path, cfg, inputs, i) for i in range(2)]
    ran = [ran_by(finish(w)) for w in workers]

    study = tune.load_study(cfg)
    counted = assert_settled(study, 4)
    assert sum(ran) == 4  # each queued trial trained once, by one worker
    assert len({t.user_attrs["worker"] for t in counted}) == 2
    assert len({tuple(sorted(t.params.items())) for t in counted}) == 4  # no trial duplicated
    for t in counted:
        assert 1e-4 <= t.params["train.stage2.lr"] <= 3e-3 and 0.02 <= t.params["train.temperature"] <= 0.1
        assert 0 <= t.value <= 1 and t.user_attrs["steps"] == 12 and t.user_attrs["worst"] <= t.value
        assert sorted(t.intermediate_values) == [32, 64, 96]  # keyed by queries seen: every 4 steps of 8
    summary = tune.study_summary(cfg, study)
    assert summary["trials"] == {"COMPLETE": 4} and summary["steps"] == 48
    assert "pw-Not-In-Reports" not in json.dumps(summary)  # a URL with credentials is shown as its variable


def test_a_trial_scores_what_its_values_train_to(tmp_path, inputs):
    """The objective against an independent run: stage 2 trained with the best trial's values,
    then scored by the evaluation the pipeline reports, gives the trial's value."""
    cfg = config(tmp_path, trials=2)
    tune.create_study(cfg)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert tune.run_worker(cfg, inputs) == 2
        best = tune.load_study(cfg).best_trial
        tuned = tune.tuned_config(cfg, tune.load_study(cfg))
        assert tuned.train.stage2.lr == best.params["train.stage2.lr"]
        assert tuned.train.temperature == best.params["train.temperature"]
        train_stage(inputs.init_model, inputs.dataset, 2, tuned.train, 64, tmp_path / "again", tmp_path / "log.jsonl")
    finally:
        torch.set_num_threads(threads)
    encoder = Encoder.load(tmp_path / "again", max_length=cfg.eval.max_length, pooling=cfg.train.pooling)
    mean, worst = tune.retrieval_scores(encoder, inputs.rows, cfg)
    # the same computation on one thread: the same losses, weights and ranks (nDCG moves in steps of ~0.01)
    assert mean == pytest.approx(best.value, abs=1e-6) and worst == pytest.approx(best.user_attrs["worst"], abs=1e-6)
    log = pd.read_json(tmp_path / "log.jsonl", lines=True)
    assert len(log) == 12 and log["loss"].notna().all()


def test_sigkill_of_a_worker_mid_trial_loses_no_trial(tmp_path, inputs, postgres_url, monkeypatch):
    """A worker (a pod evicted) killed while its trial is RUNNING: its heartbeat stops, the other
    worker fails the stale trial and runs its retry (same values); the study ends with 3 COMPLETE."""
    monkeypatch.setenv("OPTUNA_STORAGE", postgres_url)
    cfg = config(tmp_path, trials=3, study="killed-worker")
    cfg.train.stage2.max_steps = 60  # long enough to be caught mid-trial
    tune.create_study(cfg)
    victim = start_worker(tmp_path, cfg, inputs, 0)
    deadline = time.time() + WAIT_S
    while True:
        running = [t for t in tune.load_study(cfg).get_trials(states=(TrialState.RUNNING,))
                   if t.user_attrs.get("worker", "").endswith(f":{victim.pid}")]
        if running:
            break
        assert victim.poll() is None and time.time() < deadline, "the victim never started a trial"
        time.sleep(0.2)
    kill_process_tree(victim.pid)
    assert victim.wait(timeout=30) == -signal.SIGKILL
    survivor = start_worker(tmp_path, cfg, inputs, 1)
    finish(survivor)

    study = tune.load_study(cfg)
    assert_settled(study, 3)
    killed = study.trials[running[0].number]
    assert killed.state == TrialState.FAIL
    retries = [t for t in study.trials if t.system_attrs.get("failed_trial") == running[0].number]
    assert len(retries) == 1 and retries[0].state == TrialState.COMPLETE and retries[0].params == killed.params


def test_a_stalled_worker_whose_trial_was_retried_goes_on(tmp_path, inputs):
    """A worker frozen (SIGSTOP: a stalled node) past the grace period: another worker fails its
    trial and runs the retry. Thawed, the first finds its trial FAIL under it, and carries on
    instead of crashing the pod; the study still ends with 3 COMPLETE."""
    cfg = config(tmp_path, trials=3, study="stalled-worker")
    cfg.train.stage2.max_steps = 60
    tune.create_study(cfg)
    frozen = start_worker(tmp_path, cfg, inputs, 0)
    deadline = time.time() + WAIT_S
    while not [t for t in tune.load_study(cfg).get_trials(states=(TrialState.RUNNING,))
               if t.user_attrs.get("worker", "").endswith(f":{frozen.pid}")]:
        assert frozen.poll() is None and time.time() < deadline, "the worker never started a trial"
        time.sleep(0.2)
    os.kill(frozen.pid, signal.SIGSTOP)
    time.sleep(3 * cfg.tune.heartbeat_s)  # past the grace period (2 heartbeats)
    other = start_worker(tmp_path, cfg, inputs, 1)
    deadline = time.time() + WAIT_S
    while not any(t.system_attrs.get("failed_trial") is not None for t in tune.load_study(cfg).trials):
        assert time.time() < deadline, "the stalled trial was never failed and retried"
        time.sleep(0.2)
    os.kill(frozen.pid, signal.SIGCONT)
    out = finish(frozen)
    assert "failed this trial under us" in out
    finish(other)
    assert_settled(tune.load_study(cfg), 3)


def test_a_study_named_again_is_topped_up_not_requeued(tmp_path):
    cfg = config(tmp_path, trials=2, study="extended")
    tune.create_study(cfg)
    tune.create_study(cfg)  # the step retried
    assert len(tune.load_study(cfg).get_trials(states=(TrialState.WAITING,))) == 2
    cfg.tune.trials = 5  # the same study, asked for more
    tune.create_study(cfg)
    assert len(tune.load_study(cfg).get_trials(states=(TrialState.WAITING,))) == 5


def test_failing_trials_do_not_stop_the_study(tmp_path, inputs):
    """A diverging lr (the loss goes NaN) and more hard negatives than the rows store: those
    trials end FAIL with the reason kept, the others COMPLETE, and the study still counts 6."""
    lr, negatives = "train.stage2.lr", "train.hard_negatives.retrieval"
    cfg = config(tmp_path, trials=6, space={lr: {"choices": [1e-3, 1e30]}, negatives: {"choices": [1, 99]}},
                 enqueue=[{lr: 1e-3, negatives: 1}, {lr: 1e30, negatives: 1}, {lr: 1e-3, negatives: 99}])
    tune.create_study(cfg)
    assert tune.run_worker(cfg, inputs) == 6
    trials = tune.counted(tune.load_study(cfg))
    assert len(trials) == 6
    for t in trials:
        if t.params[negatives] == 99:
            assert t.state == TrialState.FAIL and "fewer hard negatives" in t.user_attrs["error"], t.user_attrs
        elif t.params[lr] == 1e30:
            assert t.state == TrialState.FAIL and "the loss ended nan" in t.user_attrs["error"], t.user_attrs
        else:
            assert t.state == TrialState.COMPLETE and 0 <= t.value <= 1
    assert {t.state for t in trials} == {TrialState.FAIL, TrialState.COMPLETE}
    frame = tune.trials_frame(tune.load_study(cfg))
    assert len(frame) == 6 and frame["state"].value_counts().sum() == 6


def test_the_pruner_stops_trials_below_the_median(tmp_path, inputs):
    """Median pruning on the intermediate nDCG: a trial whose lr leaves the model where it started
    scores below the median of the first two at its first report and is stopped there."""
    lr = "train.stage2.lr"
    cfg = config(tmp_path, trials=4, pruner="median", space={lr: {"choices": [5e-3, 1e-9]}},
                 enqueue=[{lr: 5e-3}, {lr: 5e-3}, {lr: 1e-9}, {lr: 1e-9}])  # the first two set the median
    tune.create_study(cfg)
    assert tune.run_worker(cfg, inputs) == 4
    trials = tune.counted(tune.load_study(cfg))
    full, pruned = trials[:2], trials[2:]
    assert all(t.state == TrialState.COMPLETE and t.user_attrs["steps"] == 12 for t in full)
    for t in pruned:
        assert t.state == TrialState.PRUNED, t
        step, value = max(t.intermediate_values.items())
        assert step == 32 and t.user_attrs["steps"] == 4  # stopped at the first report past warm-up
        assert value < pd.Series([f.intermediate_values[step] for f in full]).median()  # MedianPruner's rule



@pytest.mark.parametrize("tune_section,words", [
    ({"space": {"data.max_per_source": {"low": 1, "high": 9}}}, "'data.max_per_source' is not a stage-2"),
    ({"space": {"train.stage1.lr": {"low": 1e-5, "high": 1e-3}}}, "'train.stage1.lr' is not a stage-2"),
    ({"space": {"train.stage2.lrr": {"low": 1e-5, "high": 1e-3}}}, "'train.stage2.lrr' cannot take"),
    ({"space": {"train.stage2.batch_size": {"choices": [1, 8]}}}, "'train.stage2.batch_size' cannot take 1"),
    ({"space": {"train.stage2.lr": {"low": 1e-3, "high": 1e-5}}}, "must be below high"),
    ({"space": {"train.stage2.lr": {"low": 0, "high": 1e-3, "log": True}}}, "log-uniform range starts above 0"),
    ({"space": {"train.stage2.lr": {"low": 1e-5}}}, "either low and high or choices"),
    ({"trials": 1, "enqueue": [{"train.stage2.lr": 1e-4}, {"train.stage2.lr": 1e-4}]}, "2 rows for 1 trials"),
    ({"enqueue": [{"train.stage2.lr": 1.0}]}, "train.stage2.lr=1.0 is outside"),
    ({"enqueue": [{"train.stage1.lr": 1e-4}]}, "'train.stage1.lr' is not in tune.space"),
    ({"pruner": "sometimes"}, "pruner"),
    ({"trials": 0}, "trials"),
    ({"storage": "postgresql://u:hunter2@db/optuna"}, "give it as $OPTUNA_STORAGE"),
    ({"storage": "not a url"}, "is not a database URL"),
])
def test_a_bad_tune_section_is_refused_naming_the_field(tmp_path, tune_section, words):
    from f2llm.config import load_config

    path = tmp_path / "run.yaml"
    path.write_text(json.dumps({"data": {"uri": "d"}, "output_uri": "out", "tune": tune_section}))
    with pytest.raises(ValueError, match=re.escape(words)):
        load_config(path)


def test_storage_urls(tmp_path, monkeypatch):
    cfg = config(tmp_path)
    monkeypatch.delenv("OPTUNA_STORAGE", raising=False)
    assert tune.storage_url(cfg) == f"sqlite:///{tmp_path}/run/tune/optuna.db"  # the embedded default
    monkeypatch.setenv("OPTUNA_STORAGE", "postgresql://u:secret@db:5432/optuna")  # the chart's Secret, as env
    assert tune.storage_url(cfg) == "postgresql+psycopg://u:secret@db:5432/optuna"  # psycopg 3, the driver we ship
    assert tune.shown_url(tune.storage_url(cfg)) == "$OPTUNA_STORAGE"
    assert tune.shown_url("postgresql+psycopg://db/optuna?user=u&password=secret") == "$OPTUNA_STORAGE"
    assert tune.shown_url("postgresql+psycopg://u@db/optuna") == "postgresql+psycopg://u@db/optuna"  # no secret in it
    cfg.tune.storage = "mysql+pymysql://elsewhere/optuna"  # the run config's own wins
    assert tune.storage_url(cfg) == cfg.tune.storage
    monkeypatch.delenv("OPTUNA_STORAGE")
    on_s3 = cfg.model_copy(update={"output_uri": "s3://bucket/run", "tune": cfg.tune.model_copy(update={"storage": None})})
    with pytest.raises(ValueError, match="SQLite is for one machine"):
        tune.storage_url(on_s3)


def test_two_objectives_give_a_pareto_front(tmp_path, inputs):
    """mean+worst: NSGA-II, no pruning (every trial runs to the end), the report's Pareto plot;
    the downstream takes the Pareto trial with the best mean."""
    cfg = config(tmp_path, trials=3, objectives="mean+worst", pruner="median")
    tune.create_study(cfg)
    assert tune.run_worker(cfg, inputs) == 3
    study = tune.load_study(cfg)
    trials = tune.counted(study)
    assert all(t.state == TrialState.COMPLETE and len(t.values) == 2 and not t.intermediate_values for t in trials)
    assert all(t.values[1] == t.user_attrs["worst"] <= t.values[0] for t in trials)
    front = [t for t in trials if not any(o.values[0] >= t.values[0] and o.values[1] >= t.values[1]
                                          and o.values != t.values for o in trials)]  # non-dominated, by hand
    assert {t.number for t in study.best_trials} == {t.number for t in front}
    assert tune.best_values(study) == max(front, key=lambda t: t.values[0]).params
    plots = tune.study_plots(study)
    assert set(plots) == {"optimization history", "parameter importances", "Pareto front"}
    assert all(png.startswith(b"\x89PNG") for png in plots.values())


@pytest.mark.slow
def test_f2llm_tune_runs_the_tune_pipeline_on_the_demo(tmp_path, capsys):
    """`f2llm tune` under kfp.local: the data stages, stage 1, the study (SQLite under the run's
    folder) pulled by 2 workers, then stage 2 with the best values, evaluated and exported; the
    final evaluation reproduces the best trial's score."""
    from f2llm.cli import main

    raw = yaml.safe_load((ROOT / "configs" / "demo.yaml").read_text())
    raw["data"]["uri"] = str(ROOT / "data" / "sample")
    raw.update(output_uri=str(tmp_path / "run"), pipeline_root=str(tmp_path / "kfp"), gate=None)
    for stage in ("stage1", "stage2"):
        raw["train"][stage]["max_steps"] = 10
    raw["tune"] = {"eval_every": 5}
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(raw))
    assert main(["tune", "--config", str(tmp_path / "run.yaml"), "--trials", "3", "--workers", "2"]) == 0
    printed = capsys.readouterr().out
    db = tmp_path / "run" / "tune" / "optuna.db"
    assert f"dashboard: optuna-dashboard sqlite:///{db}" in printed and "best values" in printed

    summary = json.loads((tmp_path / "run" / "report" / "tune.json").read_text())
    assert sum(summary["trials"].values()) == 3 and summary["storage"] == f"sqlite:///{db}"
    study = optuna.load_study(study_name=summary["study"], storage=f"sqlite:///{db}")
    assert len(tune.counted(study)) == 3 and summary["study"].startswith("f2llm-demo-")  # the run's own study
    assert summary["best"] == study.best_trial.params
    page = (tmp_path / "run" / "report" / "tune.html").read_text()
    assert page.count("data:image/png") >= 2 and "optimization history" in page
    assert (tmp_path / "run" / "model" / "model.safetensors").exists()
    results = pd.read_csv(tmp_path / "run" / "report" / "results.csv")
    final = results[(results["model"] == "trained") & (results["task"] == "retrieval")]
    final = final[final["dim"] == final["dim"].max()]
    assert final["score"].mean() == pytest.approx(summary["best_mean"], abs=0.01)  # the best values, retrained
