"""Our trainer vs sentence-transformers' trainer: samples/s and peak RSS, in one run.

Both train the same tiny Qwen3 (the demo shape) on the same stage-2 retrieval data of the bundled
sample (query with its instruction, positive, 7 hard negatives), with the same batch size, step
count, optimiser settings and Matryoshka dims/weights, fp32 on the CPU:

- ours: `f2llm.train.train_stage` (one source per batch, hard-negative + in-batch InfoNCE per dim);
- theirs: `SentenceTransformerTrainer` with `MatryoshkaLoss(MultipleNegativesRankingLoss)`, one
  dataset per source and the proportional multi-dataset sampler (the recipe's batching).

Each runs in its own process (peak RSS is per process). Throughput is taken after `--warmup`
steps. Ours reads token ids prepared once by the pipeline's prepare stage; theirs tokenises in
its collator, as people use it: the prepare stage's tokenisation time is reported beside.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import peak_rss_mb, write  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def setup(work: Path, hidden: int, layers: int) -> dict:
    """Tiny model + prepared stage-2 retrieval tables + the same rows as texts (for theirs)."""
    import pandas as pd
    from transformers import AutoTokenizer

    from f2llm.model.base_model import build_tiny_model
    from f2llm.config import DataConfig, TinyModelConfig
    from f2llm.data.ingest import ingest
    from f2llm.data.prepare import prepare

    rows = ingest(str(ROOT / "data" / "sample"))
    rows = rows[rows["task"].isin(["retrieval", "bitext"])]
    rows = rows.assign(source=rows["task"])  # the sample's per-language sources hold 15 rows: pool them

    texts = pd.concat([rows["query"], rows["passage"]]).tolist()
    shape = TinyModelConfig(hidden_size=hidden, num_layers=layers, intermediate_size=2 * hidden)
    build_tiny_model(shape, texts, work / "model")
    tokenizer = AutoTokenizer.from_pretrained(work / "model")
    started = time.perf_counter()
    stats = prepare(rows, tokenizer, DataConfig(uri="unused"), 128, work / "data")
    prepare_s = time.perf_counter() - started
    # the same stage-2 rows as text: byte-level BPE decodes losslessly
    table = pd.read_parquet(work / "data" / "stage2.parquet")
    corpus = pd.read_parquet(work / "data" / "corpus.parquet")["input_ids"].map(lambda ids: tokenizer.decode(ids[:-1]))
    frame = pd.DataFrame({"source": table["source"], "anchor": corpus[table["query_id"]].values,
                          "positive": corpus[table["positive_id"]].values})
    for j in range(7):
        frame[f"negative_{j + 1}"] = [corpus[ids[j]] for ids in table["negative_ids"]]
    frame.to_parquet(work / "texts.parquet", index=False)
    return {"rows": int(stats["stage2_rows"]), "sources": int(stats["stage2_sources"]), "prepare_seconds": round(prepare_s, 2)}


def _rate(times: list[float], samples: list[int], warmup: int) -> float:
    """Samples/s between the end of step `warmup` and the end of the last step."""
    return sum(samples[warmup:]) / (times[-1] - times[warmup - 1])


def run_ours(work: Path, args) -> dict:
    from f2llm.config import StageConfig, TrainConfig
    from f2llm.train.trainer import train_stage

    stage = StageConfig(epochs=100, max_steps=args.steps, lr=1e-3, batch_size=args.batch, warmup_ratio=0.1)
    cfg = TrainConfig(stage1=None, stage2=stage, precision="fp32")
    baseline = peak_rss_mb()
    train_stage(work / "model", work / "data", 2, cfg, 128, work / "ours-out", work / "ours.jsonl")
    records = [json.loads(line) for line in (work / "ours.jsonl").read_text().splitlines()]
    times, samples = [r["elapsed_s"] for r in records], [r["samples"] for r in records]
    return {"steps": len(records), "samples_per_s": _rate(times, samples, args.warmup),
            "mean_batch": sum(samples) / len(samples),
            "final_loss": records[-1]["loss"], "rss_before_training_mb": baseline}


def run_theirs(work: Path, args) -> dict:
    import pandas as pd
    from datasets import Dataset, DatasetDict
    from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from sentence_transformers import losses, models
    from sentence_transformers.training_args import MultiDatasetBatchSamplers
    from transformers import TrainerCallback

    from f2llm.model.matryoshka import matryoshka_dims, matryoshka_weights

    transformer = models.Transformer(str(work / "model"), max_seq_length=128)
    hidden = transformer.get_embedding_dimension()
    model = SentenceTransformer(modules=[transformer, models.Pooling(hidden, pooling_mode="lasttoken"), models.Normalize()],
                                device="cpu")
    frame = pd.read_parquet(work / "texts.parquet")
    data = DatasetDict({
        source: Dataset.from_pandas(part.drop(columns="source"), preserve_index=False)
        for source, part in frame.groupby("source")
    })
    dims = matryoshka_dims(hidden)
    times: list[float] = []
    samples: list[int] = []

    class CountingMatryoshkaLoss(losses.MatryoshkaLoss):
        def forward(self, sentence_features, labels):
            samples.append(sentence_features[0]["input_ids"].shape[0])  # anchors in this batch
            return super().forward(sentence_features, labels)

    loss = CountingMatryoshkaLoss(model, losses.MultipleNegativesRankingLoss(model, scale=1 / 0.05), dims, matryoshka_weights(dims))

    class StepTimes(TrainerCallback):
        def on_step_end(self, *_, **__):
            times.append(time.perf_counter())

    training = SentenceTransformerTrainingArguments(
        output_dir=str(work / "theirs-out"), per_device_train_batch_size=args.batch, max_steps=args.steps,
        learning_rate=1e-3, warmup_ratio=0.1, lr_scheduler_type="cosine", adam_beta2=0.98, weight_decay=0.01,
        max_grad_norm=1.0, multi_dataset_batch_sampler=MultiDatasetBatchSamplers.PROPORTIONAL,
        save_strategy="no", report_to="none", logging_steps=args.steps, disable_tqdm=True,
        dataloader_num_workers=0, use_cpu=True, seed=0,
    )
    baseline = peak_rss_mb()
    trainer = SentenceTransformerTrainer(model=model, args=training, train_dataset=data, loss=loss, callbacks=[StepTimes()])
    output = trainer.train()
    return {"steps": len(times), "samples_per_s": _rate(times, samples, args.warmup),
            "mean_batch": sum(samples) / len(samples),
            "final_loss": output.training_loss, "rss_before_training_mb": baseline}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=80)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--worker", choices=["ours", "theirs"])
    parser.add_argument("--work")
    args = parser.parse_args()
    if args.worker:  # a child process: one trainer, its own peak RSS
        result = (run_ours if args.worker == "ours" else run_theirs)(Path(args.work), args)
        print("RESULT " + json.dumps({**result, "peak_rss_mb": peak_rss_mb()}))
        return

    with tempfile.TemporaryDirectory(prefix="f2llm-bench-") as tmp:
        work = Path(tmp)
        data = setup(work, args.hidden, args.layers)
        results = {}
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1"}
        for who in ("ours", "theirs"):
            cmd = [sys.executable, __file__, "--worker", who, "--work", tmp, *[
                f"--{k}={getattr(args, k)}" for k in ("steps", "warmup", "batch", "hidden", "layers")]]
            out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
            if out.returncode:
                raise SystemExit(f"{who} failed:\n{out.stderr[-3000:]}")
            results[who] = json.loads(next(line[7:] for line in out.stdout.splitlines() if line.startswith("RESULT ")))
            print(who, results[who], flush=True)
    ours, theirs = results["ours"], results["theirs"]
    write("trainer_cpu", {
        "setup": {"model": f"tiny Qwen3, hidden {args.hidden}, {args.layers} layers", "batch_size": args.batch,
                  "steps": args.steps, "warmup_steps_excluded": args.warmup, "hard_negatives": 7, "max_length": 128,
                  "precision": "fp32", **data},
        "ours": ours, "sentence_transformers": theirs,
        "speedup_samples_per_s": round(ours["samples_per_s"] / theirs["samples_per_s"], 3),
        "peak_rss_ratio": round(ours["peak_rss_mb"] / theirs["peak_rss_mb"], 3),
        "goal": "speedup >= 1.2 at peak_rss_ratio <= 1.0",
    })


if __name__ == "__main__":
    main()
