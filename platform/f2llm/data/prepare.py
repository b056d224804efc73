"""Prepare: accepted rows -> tokenised training tables in the recipe's query/corpus layout.

The recipe stores a deduplicated corpus of token sequences and, per source, queries that point
at corpus ids. We write, under one directory:

    corpus.parquet    text_id, input_ids          every distinct text once (EOS-terminated)
    stage1.parquet    source, task, language, query_id, positive_id, negative_ids
    stage2.parquet    the same columns for stage 2

Each source feeds the stages its manifest entry lists (`stages`; by default retrieval-like sources
feed both, the others stage 2). Stage 1 is those sources as they are, without instructions: the
recipe's ~27M rows of large retrieval sources, uncapped. Stage 2 holds every task type, with the
source's instruction on every query and, for `doc_instruction_ratio` (recipe: 30%) of the rows of
symmetric tasks, on the row's documents: one draw per row, so a positive and its negatives carry
the instruction together (were it drawn per text, the prompt's presence would tell them apart).
Stage 2 only is capped per source (recipe: 80k queries), which is the language balancing, sources
being split per language; capped rows are counted in the returned stats. Optional temperature
sampling over languages then reshapes stage 2's language mix.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pandas as pd
from transformers import PreTrainedTokenizerBase

from f2llm.config import DataConfig
from f2llm.model.tokenizer import encode_with_eos
from f2llm.tasks import TASKS, TaskType, query_prompt


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
    return (pd.concat(kept).sort_index() if kept else train), capped


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


STAGE_COLUMNS = ["source", "task", "language", "query_id", "positive_id", "negative_ids"]


def feeding(train: pd.DataFrame, stage: int) -> pd.DataFrame:
    """The rows whose source feeds `stage` (the manifest's `stages`)."""
    return train[train["stages"].map(lambda stages: stage in stages)]


def _stage_rows(train: pd.DataFrame, corpus: _Corpus, stage: int, doc_ratio: float, rng: random.Random) -> pd.DataFrame:
    rows = []
    for r in train.itertuples(index=False):
        prompt = query_prompt(r.instruction) if stage == 2 else ""
        instructed = stage == 2 and TASKS[TaskType(r.task)].symmetric and rng.random() < doc_ratio
        doc_prompt = prompt if instructed else ""  # one draw for the row's positive and negatives
        rows.append((
            r.source, r.task, r.language, corpus.add(prompt + r.query), corpus.add(doc_prompt + r.passage),
            [corpus.add(doc_prompt + n) for n in r.negatives],
        ))
    return pd.DataFrame(rows, columns=STAGE_COLUMNS)


def prepare(
    accepted: pd.DataFrame, tokenizer: PreTrainedTokenizerBase, cfg: DataConfig, max_length: int,
    out_dir: str | Path,
) -> dict:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    train = accepted[accepted["split"] == "train"]
    stage2, capped = cap_per_source(feeding(train, 2), cfg.max_per_source, cfg.seed)
    stats = {"train_rows": len(train), "capped": capped}
    if cfg.language_temperature is not None:
        stage2, stats["language_targets"] = temperature_sample(stage2, cfg.language_temperature, cfg.seed)
    corpus = _Corpus()
    rng = random.Random(cfg.seed)
    for stage, rows in ((1, feeding(train, 1)), (2, stage2)):
        table = _stage_rows(rows, corpus, stage, cfg.doc_instruction_ratio, rng)
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
