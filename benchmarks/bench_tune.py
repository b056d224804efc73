"""The pruner's saving on the demo: the same study (trials, space, seed) with the median pruner,
with Hyperband and without, for 3 seeds, on this machine.

Each study searches stage 2 of the demo's tiny model from a short stage 1 on the bundled sample
(the default space less the hard-negative count, which needs the mining step), scored by held-out
nDCG@10 as the tune pipeline scores it. Reported per pruner: optimizer steps spent, over all
trials (what the pruner saves), and the best mean nDCG@10 found, per seed and over seeds. Goal
(issue 18): the pruner spends <= 0.7x the steps of no pruning for a best value within the spread
of the 3 seeds. A PNG shows the best value so far against the steps spent.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import RESULTS, write  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SEEDS = (0, 1, 2)
PRUNERS = ("none", "median", "hyperband")
TRIALS, MAX_STEPS, EVAL_EVERY = 12, 40, 10


def main() -> None:
    import optuna
    import pandas as pd
    import yaml
    from transformers import AutoTokenizer

    from f2llm import tune
    from f2llm.config import RunConfig, TuneConfig, load_config
    from f2llm.data.ingest import ingest
    from f2llm.data.prepare import prepare
    from f2llm.model.base_model import build_tiny_model
    from f2llm.train.trainer import train_stage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    demo = load_config(ROOT / "configs" / "demo.yaml")
    rows = ingest(demo.data.uri)
    runs, curves = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        base = build_tiny_model(demo.model.tiny, pd.concat([rows["query"], rows["passage"]]).tolist(), work / "base")
        prepare(rows, AutoTokenizer.from_pretrained(base), demo.data, demo.model.max_length, work / "data")
        stage1 = demo.train.model_copy(update={"stage1": demo.train.stage1.model_copy(update={"max_steps": 30})})
        train_stage(base, work / "data", 1, stage1, demo.model.max_length, work / "stage1", work / "stage1.jsonl")
        inputs = tune.TrialInputs(work / "stage1", work / "data", rows)
        space = {k: v for k, v in TuneConfig().space.items() if not k.startswith("train.hard_negatives.")}
        for pruner in PRUNERS:
            for seed in SEEDS:
                raw = yaml.safe_load(demo.model_dump_json()) | {"output_uri": str(work / f"{pruner}-{seed}")}
                raw["train"]["stage2"]["max_steps"] = MAX_STEPS
                raw["tune"] = {"trials": TRIALS, "workers": 1, "pruner": pruner, "eval_every": EVAL_EVERY,
                               "seed": seed, "space": {k: v.model_dump() for k, v in space.items()}}
                cfg = RunConfig.model_validate(raw)
                started = time.perf_counter()
                tune.create_study(cfg)
                tune.run_worker(cfg, inputs)
                study = tune.load_study(cfg)
                frame = tune.trials_frame(study).sort_values("trial")
                runs[(pruner, seed)] = {
                    "steps": int(frame["steps"].sum()), "best_mean_ndcg": round(float(frame["mean"].max()), 4),
                    "best_trial": int(frame.loc[frame["mean"].idxmax(), "trial"]),
                    "steps_to_best": int(frame["steps"].cumsum()[frame["mean"].idxmax()]),
                    "states": frame["state"].value_counts().to_dict(), "seconds": round(time.perf_counter() - started, 1),
                }
                complete = frame["state"] == "COMPLETE"
                curves[(pruner, seed)] = (frame["steps"].cumsum().tolist(),  # a pruned trial keeps the best so far
                                          frame["mean"].where(complete).cummax().ffill().tolist())
                print(pruner, seed, runs[(pruner, seed)], flush=True)

    summary = {}
    for pruner in PRUNERS:
        best = pd.Series([runs[(pruner, s)]["best_mean_ndcg"] for s in SEEDS])
        steps = sum(runs[(pruner, s)]["steps"] for s in SEEDS)
        summary[pruner] = {"steps_total": steps, "best_mean": round(best.mean(), 4), "best_min": best.min(),
                           "best_max": best.max(), "per_seed": {s: runs[(pruner, s)] for s in SEEDS}}
    unpruned = summary["none"]
    for pruner in PRUNERS[1:]:
        mine = summary[pruner]
        mine["steps_ratio_vs_none"] = round(mine["steps_total"] / unpruned["steps_total"], 3)
        # "within the spread of 3 seeds": its mean best inside the unpruned [min, max] over seeds, or above it
        mine["best_within_seed_spread"] = bool(mine["best_mean"] >= unpruned["best_min"])
        mine["goal_met"] = bool(mine["steps_ratio_vs_none"] <= 0.7 and mine["best_within_seed_spread"])
    _plot(curves, RESULTS / "tune_cpu.png")
    write("tune_cpu", {
        "what": (f"Optuna study of stage 2 on the demo (tiny Qwen3 shape, bundled sample, stage 1 30 steps): "
                 f"{TRIALS} trials of {MAX_STEPS} steps, intermediate nDCG@10 every {EVAL_EVERY}, TPE, seeds {SEEDS}"),
        "space": list(space), "goal": "pruner steps <= 0.7x none, best within none's spread over seeds",
        "pruners": summary, "plot": "tune_cpu.png",
    })


def _plot(curves: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    colours = dict(zip(PRUNERS, ("tab:grey", "tab:blue", "tab:orange")))
    for (pruner, seed), (steps, best) in curves.items():
        ax.step(steps, best, where="post", color=colours[pruner], alpha=0.8, label=pruner if seed == SEEDS[0] else None)
    ax.set_xlabel("optimizer steps spent (all trials so far)")
    ax.set_ylabel("best held-out nDCG@10 so far")
    ax.set_title(f"Pruners on the demo: {TRIALS} trials x {MAX_STEPS} steps, {len(SEEDS)} seeds each")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
