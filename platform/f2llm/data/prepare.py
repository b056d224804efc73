"""Prepare: accepted rows -> tokenised training tables in the recipe's query/corpus layout.

The recipe stores a deduplicated corpus of token sequences and, per source, queries that point
at corpus ids. We write, under one directory:

    corpus.parquet    text_id, input_ids          every distinct text once (EOS-terminated)
    stage1.parquet    source, task, language, query_id, positive_id, negative_ids
    stage2.parquet    the same columns for stage 2

Stage 1 holds retrieval-like sources without instructions. Stage 2 holds every task type, with
the source's instruction on every query and on `doc_instruction_ratio` (recipe: 30%) of the
documents of symmetric tasks. The per-source cap (recipe: 80k queries) is the language
balancing, sources being split per language; capped rows are counted in the returned stats.
Optional temperature sampling over languages then reshapes the language mix.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pandas as pd
from transformers import PreTrainedTokenizerBase

from f2llm.config import DataConfig
from f2llm.tasks import STAGE1_TASKS, TASKS, TaskType, query_prompt
from f2llm.model.tokenizer import encode_with_eos


class _Corpus:
    def __init__(self) -> None:
        self.ids: dict[str, int] = {}

    def add(self, text: str) -> int:
        return self.ids.setdefault(text, len(self.ids))


def cap_per_source(train: pd.DataFrame, cap: int, seed: int) -> tuple[pd.DataFrame, dict[str, int]]:
    kept, capped = [], {}
    for source, part in train.groupby("source", sort=True):
        if len(part) > cap:
            capped[source] = len(part) - cap
            part = part.sample(n=cap, random_state=seed)
        kept.append(part)
    return pd.concat(kept).sort_index(), capped


def temperature_sample(train: pd.DataFrame, temperature: float, seed: int) -> tuple[pd.DataFrame, dict[str, int]]:
    """Resample languages to p_l = n_l^(1/T) / sum_m n_m^(1/T) of the same total.

    T = 1 keeps the natural distribution; larger T flattens it towards uniform. An up-sampled
    language repeats every row floor(t/n) times plus a random remainder, so none is left out;
    a down-sampled one keeps a random subset (the same trade as the per-source cap).
    """
    sizes = train.groupby("language").size()
    weights = sizes.astype(float) ** (1.0 / temperature)
    targets = (weights / weights.sum() * len(train)).round().astype(int).clip(lower=1)
    parts = []
    for lang, part in train.groupby("language", sort=True):
        repeats, remainder = divmod(int(targets[lang]), len(part))
        parts += [part] * repeats + [part.sample(n=remainder, random_state=seed)]
    return pd.concat(parts), {lang: int(n) for lang, n in targets.items()}


def _stage_rows(train: pd.DataFrame, corpus: _Corpus, stage: int, doc_ratio: float, rng: random.Random) -> pd.DataFrame:
    rows = []
    for r in train.itertuples(index=False):
        task = TaskType(r.task)
        if stage == 1 and task not in STAGE1_TASKS:
            continue
        prompt = query_prompt(r.instruction) if stage == 2 else ""

        def doc(text: str) -> int:
            instructed = stage == 2 and TASKS[task].symmetric and rng.random() < doc_ratio
            return corpus.add((prompt if instructed else "") + text)

        rows.append({
            "source": r.source, "task": r.task, "language": r.language,
            "query_id": corpus.add(prompt + r.query),
            "positive_id": doc(r.passage),
            "negative_ids": [doc(n) for n in r.negatives],
        })
    return pd.DataFrame(rows)


def prepare(
    accepted: pd.DataFrame, tokenizer: PreTrainedTokenizerBase, cfg: DataConfig, max_length: int,
    out_dir: str | Path,
) -> dict:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    train, capped = cap_per_source(accepted[accepted["split"] == "train"], cfg.max_per_source, cfg.seed)
    stats = {"train_rows": len(train), "capped": capped}
    if cfg.language_temperature is not None:
        train, stats["language_targets"] = temperature_sample(train, cfg.language_temperature, cfg.seed)
    corpus = _Corpus()
    rng = random.Random(cfg.seed)
    for stage in (1, 2):
        table = _stage_rows(train, corpus, stage, cfg.doc_instruction_ratio, rng)
        table.to_parquet(out / f"stage{stage}.parquet", index=False)
        stats[f"stage{stage}_rows"] = len(table)
        stats[f"stage{stage}_sources"] = int(table["source"].nunique()) if len(table) else 0
    texts = list(corpus.ids)
    pd.DataFrame({"text_id": range(len(texts)), "input_ids": encode_with_eos(tokenizer, texts, max_length)}).to_parquet(
        out / "corpus.parquet", index=False
    )
    stats["corpus_texts"] = len(texts)
    (out / "stats.json").write_text(json.dumps(stats, indent=2))
    return stats
