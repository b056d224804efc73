"""Does distillation help pruned students? The paper's ablation, on the tiny family.

Anchor (recipe, "Knowledge distillation"): with vs without KD, 80M 58.04 vs 53.37, 160M 60.53 vs
56.27, 330M 64.55 vs 62.77, 0.6B 66.72 vs 65.87: KD helps most at the smallest size.

Here: the demo's tiny teacher (64 wide, 2 layers) trained through stage 1 and stage 2 on the
bundled sample, then each student shape of `configs/family-demo.yaml` trained through stage 2 in
three arms, with the same steps, data and schedule:

    pruned + KD     pruned from the stage-1 teacher, KD from the stage-2 teacher (the recipe)
    pruned          pruned from the stage-1 teacher, no KD
    random + KD     the same shape from random init, KD from the stage-2 teacher

for seeds 0, 1, 2 (the seed of the pruning's calibration sample, the random init and the
training), each student arm for the same `--student-steps` (default: one epoch of stage 2). Reported: held-out nDCG@10 per language at each student's full dim, mean over
languages per run, then mean and spread (min..max) over seeds per arm. JSON and a PNG in
benchmarks/results/.

Before any training, each student shape is also pruned with both depth rules (the recipe's first
n layers, and block importance) and evaluated as it comes out of the surgery: which keeps more.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import RESULTS, peak_rss_mb, write  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ARMS = ("pruned + KD", "pruned", "random + KD")


def prepare_family(work: Path, cfg):
    """The pipeline's data stages and the teacher's two stages, run through the library."""
    import pandas as pd
    from transformers import AutoTokenizer

    from f2llm.data.ingest import ingest
    from f2llm.data.mining import mine_hard_negatives, quarantine_short_rows
    from f2llm.data.prepare import prepare
    from f2llm.data.validate import validate
    from f2llm.model.base_model import build_tiny_model
    from f2llm.train.trainer import train_stage

    rows = ingest(cfg.data.uri)
    accepted = pd.concat([validate(part, cfg.validation).accepted for _, part in rows.groupby("language")], ignore_index=True)
    mined, _ = mine_hard_negatives(accepted, cfg.mining)
    accepted, _ = quarantine_short_rows(mined)
    base = build_tiny_model(cfg.model.tiny, pd.concat([accepted["query"], accepted["passage"]]), work / "base")
    prepare(accepted, AutoTokenizer.from_pretrained(base), cfg.data, cfg.model.max_length, work / "data")
    train_stage(base, work / "data", 1, cfg.train, cfg.model.max_length, work / "stage1", work / "stage1.jsonl")
    train_stage(work / "stage1", work / "data", 2, cfg.train, cfg.model.max_length, work / "teacher", work / "teacher.jsonl")
    return accepted


def random_init_like(pruned_dir: Path, out: Path, seed: int) -> Path:
    """A model of the pruned one's exact config, from random init (the tokenizer copied)."""
    import torch
    from transformers import AutoConfig, AutoTokenizer, Qwen3Model

    torch.manual_seed(seed)
    Qwen3Model(AutoConfig.from_pretrained(pruned_dir)).save_pretrained(out)
    AutoTokenizer.from_pretrained(pruned_dir).save_pretrained(out)
    return out


def run_arm(work: Path, cfg, student, arm: str, seed: int, accepted, steps: int | None) -> dict:
    from f2llm.evaluation.evaluate import evaluate_model
    from f2llm.model.encoder import Encoder
    from f2llm.model.prune import PruneTarget, calibration_texts, prune_checkpoint
    from f2llm.train.trainer import train_stage

    run = work / f"{student.name}-{arm.replace(' + ', '-')}-{seed}"
    texts = calibration_texts(accepted, cfg.family.calibration_rows, seed)
    target = PruneTarget(student.hidden, student.mlp, student.layers)
    prune_checkpoint(work / "stage1", run / "pruned", target, texts, cfg.family.depth)
    init = random_init_like(run / "pruned", run / "random", seed) if arm == "random + KD" else run / "pruned"
    train = cfg.student_training(student.name, str(work / "teacher"))
    stage2 = train.stage2.model_copy(update={"max_steps": steps})
    train = train.model_copy(update={"seed": seed, "kd_weight": 0.0 if arm == "pruned" else train.kd_weight, "stage2": stage2})
    started = time.perf_counter()
    summary = train_stage(init, work / "data", 2, train, cfg.model.max_length, run / "model", run / "log.jsonl")
    held_out = accepted[accepted["split"] == "eval"]
    scores = evaluate_model(Encoder.load(run / "model", max_length=cfg.eval.max_length), held_out, k=cfg.eval.k,
                            tasks=["retrieval"])
    full = scores[scores["dim"] == student.hidden]
    return {
        "student": student.name, "arm": arm, "seed": seed, "steps": summary["steps"],
        "train_s": round(time.perf_counter() - started, 1),
        "ndcg@10": float(full["ndcg@10"].mean()),
        "per_language": dict(zip(full["language"], full["ndcg@10"].round(4))),
    }


def untrained(work: Path, cfg, accepted) -> list[dict]:
    """nDCG@10 of each student shape pruned from the stage-1 teacher (as the pipeline does) and
    not trained, by depth rule (seed 0)."""
    from f2llm.evaluation.evaluate import evaluate_model
    from f2llm.model.encoder import Encoder
    from f2llm.model.prune import PruneTarget, calibration_texts, prune_checkpoint

    texts = calibration_texts(accepted, cfg.family.calibration_rows, 0)
    held_out = accepted[accepted["split"] == "eval"]
    out = []
    for student in cfg.family.students:
        for depth in ("first", "block"):
            target = PruneTarget(student.hidden, student.mlp, student.layers)
            report = prune_checkpoint(work / "stage1", work / f"untrained-{student.name}-{depth}", target, texts, depth)
            scores = evaluate_model(Encoder.load(work / f"untrained-{student.name}-{depth}"), held_out, k=cfg.eval.k,
                                    tasks=["retrieval"])
            out.append({"student": student.name, "depth": depth, "layers_kept": report["pruned"]["model"]["layers_kept"],
                        "ndcg@10": round(float(scores[scores["dim"] == student.hidden]["ndcg@10"].mean()), 4)})
    return out


def summarise(runs: list[dict]) -> list[dict]:
    import pandas as pd

    frame = pd.DataFrame(runs)
    out = []
    for (student, arm), part in frame.groupby(["student", "arm"], sort=False):
        values = part["ndcg@10"]
        out.append({"student": student, "arm": arm, "seeds": len(values), "mean": round(float(values.mean()), 4),
                    "min": round(float(values.min()), 4), "max": round(float(values.max()), 4)})
    return out


def plot(summary: list[dict], teacher: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    students = list(dict.fromkeys(s["student"] for s in summary))
    fig, ax = plt.subplots(figsize=(7, 3.5), dpi=110)
    width = 0.8 / len(ARMS)
    for a, arm in enumerate(ARMS):
        rows = [next(s for s in summary if s["student"] == st and s["arm"] == arm) for st in students]
        xs = [i + (a - 1) * width for i in range(len(students))]
        means = [r["mean"] for r in rows]
        errors = [[r["mean"] - r["min"] for r in rows], [r["max"] - r["mean"] for r in rows]]
        ax.bar(xs, means, width, yerr=errors, capsize=3, label=arm)
    ax.axhline(teacher, color="k", linestyle="--", linewidth=1, label="teacher (full dim)")
    ax.set_xticks(range(len(students)), students)
    ax.set_ylabel("held-out nDCG@10 (mean of languages)")
    ax.set_title("Pruned students: with and without distillation (3 seeds, min..max)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "configs" / "family-demo.yaml"))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--student-steps", type=int, default=155, help="optimizer steps of every student arm")
    args = parser.parse_args()

    from f2llm.config import load_config
    from f2llm.evaluation.evaluate import evaluate_model
    from f2llm.model.encoder import Encoder

    cfg = load_config(args.config)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        accepted = prepare_family(work, cfg)
        held_out = accepted[accepted["split"] == "eval"]
        teacher = evaluate_model(Encoder.load(work / "teacher", max_length=cfg.eval.max_length), held_out, k=cfg.eval.k,
                                 tasks=["retrieval"])
        before_training = untrained(work, cfg, accepted)
        print("untrained, by depth rule:", before_training, flush=True)
        runs = [
            run_arm(work, cfg, student, arm, seed, accepted, args.student_steps)
            for student in cfg.family.students for seed in range(args.seeds) for arm in ARMS
        ]
    teacher_full = float(teacher[teacher["dim"] == teacher["dim"].max()]["ndcg@10"].mean())
    summary = summarise(runs)
    plot(summary, teacher_full, RESULTS / "family_kd_cpu.png")
    write("family_kd_cpu", {
        "config": str(Path(args.config).relative_to(ROOT)), "seeds": args.seeds, "student_steps": args.student_steps,
        "teacher_ndcg@10": round(teacher_full, 4),
        "teacher_ndcg@10_per_dim": {int(d): round(float(v), 4) for d, v in teacher.groupby("dim")["ndcg@10"].mean().items()},
        "summary": summary,
        "untrained_by_depth": before_training,
        "runs": runs,
        "seconds": round(time.perf_counter() - started, 1), "peak_rss_mb": round(peak_rss_mb()),
    })


if __name__ == "__main__":
    main()
