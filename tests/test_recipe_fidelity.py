"""Where the trainer had drifted from the recipe (../shared/F2LLM-V2-RECIPE.md), back to it:
stage 1 uncapped, hard-negative counts that never collapse, one instruction decision per row,
in-batch false negatives masked, warmup in steps and evaluation at its own length."""

import json
import math

import pandas as pd
import pytest
import torch
import yaml
from transformers import AutoTokenizer

from f2llm.config import DataConfig, EvalConfig, MiningConfig, StageConfig, TrainConfig
from f2llm.data.ingest import IngestError, ingest
from f2llm.data.mining import mine_hard_negatives, quarantine_short_rows
from f2llm.data.prepare import prepare
from f2llm.model.recipes import run_config
from f2llm.tasks import TASKS, TaskType
from f2llm.train.losses import contrastive_loss
from f2llm.train.trainer import lr_lambda, train_stage

from naive_losses import naive_hn, unit
from tolerance import assert_close_scaled


def _write_source(path, prefix: str, n: int, negatives: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as fh:
        for i in range(n):
            row = {"query": f"{prefix} question {i}?", "passage": f"{prefix} answer {i}."}
            row.update({f"negative_{j + 1}": f"{prefix} other {i}-{j}." for j in range(negatives)})
            fh.write(json.dumps(row) + "\n")


@pytest.fixture
def two_sources(tmp_path):
    """qa (retrieval, 30 rows), topics (clustering, 30 rows), extra (bitext, stage 2 only by the manifest)."""
    _write_source(tmp_path / "qa.jsonl", "qa", 30, 7)
    _write_source(tmp_path / "topics.jsonl", "topic", 30, 9)
    _write_source(tmp_path / "extra.jsonl", "extra", 12, 7)
    sources = [
        {"name": "qa", "path": "qa.jsonl", "task": "retrieval", "language": "eng"},
        {"name": "topics", "path": "topics.jsonl", "task": "clustering", "language": "eng"},
        {"name": "extra", "path": "extra.jsonl", "task": "bitext", "language": "eng", "stages": [2]},
    ]
    (tmp_path / "sources.yaml").write_text(yaml.safe_dump({"sources": sources}))
    return tmp_path


# --- 2. stage 1 gets its own, uncapped data
def test_stage1_sees_every_retrieval_row_the_cap_is_stage2s(two_sources, tiny_model_dir):
    rows = ingest(str(two_sources))
    assert rows.groupby("source")["stages"].first().map(list).to_dict() == {"qa": [1, 2], "topics": [2], "extra": [2]}
    stats = prepare(rows, AutoTokenizer.from_pretrained(tiny_model_dir), DataConfig(uri="unused", max_per_source=10),
                    64, two_sources / "out")
    s1, s2 = (pd.read_parquet(two_sources / "out" / f"stage{i}.parquet") for i in (1, 2))
    assert s1.groupby("source").size().to_dict() == {"qa": 30}  # more than the cap of 10
    assert s2.groupby("source").size().to_dict() == {"extra": 10, "qa": 10, "topics": 10}
    assert stats["stage1_rows"] == 30 and stats["stage2_rows"] == 30
    assert stats["capped"] == {"extra": 2, "qa": 20, "topics": 20}  # counted, stage 2 only


def test_a_manifest_stage_that_does_not_exist_names_the_field(two_sources):
    manifest = yaml.safe_load((two_sources / "sources.yaml").read_text())
    manifest["sources"][1]["stages"] = [3]
    (two_sources / "sources.yaml").write_text(yaml.safe_dump(manifest))
    with pytest.raises(IngestError, match=r"sources\[1\]\.stages"):
        ingest(str(two_sources))
    manifest["sources"][1]["stages"] = []
    (two_sources / "sources.yaml").write_text(yaml.safe_dump(manifest))
    with pytest.raises(IngestError, match=r"sources\[1\]\.stages"):
        ingest(str(two_sources))


# --- 4. one instruction decision per row
def test_a_rows_documents_carry_the_instruction_together(tmp_path, sample_rows, tiny_model_dir):
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    prepare(sample_rows, tok, DataConfig(uri="unused"), 128, tmp_path)
    corpus = pd.read_parquet(tmp_path / "corpus.parquet")["input_ids"]
    s2 = pd.read_parquet(tmp_path / "stage2.parquet")
    symmetric = s2[s2["task"].map(lambda t: TASKS[TaskType(t)].symmetric)]
    instructed = []
    for row in symmetric.itertuples():
        flags = {tok.decode(corpus[i][:-1]).startswith("Instruct:") for i in [row.positive_id, *row.negative_ids]}
        assert len(flags) == 1, f"{row.source}: positive and negatives disagree on the instruction"
        instructed.append(flags.pop())
    assert 0.2 < sum(instructed) / len(instructed) < 0.4  # recipe: 30% of symmetric rows


# --- 3. the hard-negative count never collapses
def _embed(vectors):
    return lambda texts, is_query: torch.tensor([vectors[t] for t in texts])


def test_mining_fills_from_stored_negatives_and_quarantines_rows_that_stay_short():
    # one mined candidate per row at most; retrieval needs 7
    vectors = {"q1": [1.0, 0.0], "q2": [0.0, 1.0], "p1": [1.0, 0.0], "p2": [0.0, 1.0]}
    rows = pd.DataFrame({
        "source": "s", "task": "retrieval", "split": "train", "query": ["q1", "q2"], "passage": ["p1", "p2"],
        "negatives": [[f"s{i}" for i in range(7)], ["s0", "s1", "s2"]],  # the second row was already short
    })
    mined, stats = mine_hard_negatives(rows, MiningConfig(teacher="x", skip_top=0, max_score=0.9), _embed(vectors))
    assert mined["negatives"].tolist() == [["p2", "s0", "s1", "s2", "s3", "s4", "s5"], ["p1", "s0", "s1", "s2"]]
    assert stats.negatives_from_stored == 6 + 3
    kept, quarantined = quarantine_short_rows(mined)
    assert len(kept) + len(quarantined) == len(rows)  # rows in = accepted + quarantined
    assert kept["query"].tolist() == ["q1"] and quarantined["query"].tolist() == ["q2"]
    assert quarantined["reasons"].iloc[0] == "4 hard negatives after mining; retrieval needs 7"


def test_no_batch_trains_with_fewer_negatives_than_its_task_count(tmp_path, sample_rows, tiny_model_dir):
    rows = sample_rows[sample_rows["language"].isin(["swa", "khm"])]
    prepare(rows, AutoTokenizer.from_pretrained(tiny_model_dir), DataConfig(uri="unused"), 64, tmp_path / "data")
    cfg = TrainConfig(stage1=None, stage2=StageConfig(epochs=1, lr=1e-4, batch_size=16))
    train_stage(tiny_model_dir, tmp_path / "data", 2, cfg, 64, tmp_path / "model", tmp_path / "log.jsonl")
    log = pd.read_json(tmp_path / "log.jsonl", lines=True)
    assert set(log["task"]) == {"retrieval", "bitext", "clustering", "classification"}
    assert (log["hard_negatives"] == log["task"].map(lambda t: TASKS[TaskType(t)].hard_negatives)).all()

    table = pd.read_parquet(tmp_path / "data" / "stage2.parquet")
    short = table.index[table["task"] == "clustering"][3]
    table.at[short, "negative_ids"] = table.at[short, "negative_ids"][:2]
    table.to_parquet(tmp_path / "data" / "stage2.parquet", index=False)
    with pytest.raises(ValueError, match=rf"row {short} \(source {table.at[short, 'source']}\) has 2 hard negatives; clustering needs 9"):
        train_stage(tiny_model_dir, tmp_path / "data", 2, cfg, 64, tmp_path / "model2", tmp_path / "log2.jsonl")


# --- 5. in-batch false negatives
def _naive_in_batch_without_duplicates(q, p_all, positive_ids, tau, offset=0):
    """Every query against the positives of the batch with each duplicated text's later columns
    removed; a query whose own positive was removed targets the column kept for that text."""
    keep = [m for m, t in enumerate(positive_ids) if t not in positive_ids[:m]]
    total = 0
    for i in range(q.shape[0]):
        own = keep[[positive_ids[m] for m in keep].index(positive_ids[offset + i])]
        row = {m: torch.exp(torch.dot(q[i], p_all[m]) / tau) for m in keep}
        total = total - torch.log(row[own] / sum(row.values()))
    return total / q.shape[0]


@pytest.mark.parametrize("backend,rel", [("torch", 1e-9), ("triton", 1e-5)])  # the kernels compute in fp32
def test_a_duplicated_positive_is_masked(backend, rel, monkeypatch):
    monkeypatch.setenv("F2LLM_KERNELS", backend)
    g = torch.Generator().manual_seed(0)
    q = torch.randn(5, 16, generator=g, dtype=torch.float64, requires_grad=True)
    p = torch.randn(5, 16, generator=g, dtype=torch.float64)
    p[3] = p[1]  # the same text twice in the batch: identical states
    p.requires_grad_(True)
    n = torch.randn(5, 2, 16, generator=g, dtype=torch.float64)
    ids = [40, 41, 42, 41, 43]
    dims, weights = [16, 8], [1.0, 1 / (2 * math.sqrt(2))]

    def naive(ids_seen, offset=0, rows=slice(None)):
        return sum(
            w * (naive_hn(unit(q[rows, :d]), unit(p[rows, :d]), unit(n[rows, :, :d]), 0.05)
                 + _naive_in_batch_without_duplicates(unit(q[rows, :d]), unit(p[:, :d]), ids_seen, 0.05, offset))
            for d, w in zip(dims, weights)
        )

    kwargs = {"in_batch": True, "dims": dims, "weights": weights, "temperature": 0.05}
    ours, _ = contrastive_loss(q, p, n, positive_ids=ids, **kwargs)
    want = naive(ids)
    assert ours.item() == pytest.approx(want.item(), rel=rel)
    unmasked, _ = contrastive_loss(q, p, n, **kwargs)  # column 3 counted as a negative for query 1
    assert unmasked.item() > want.item() + 0.1
    for got, ref, name in zip(torch.autograd.grad(ours, (q, p)), torch.autograd.grad(want, (q, p)), "qp"):
        assert_close_scaled(got, ref, rel=rel, msg=f"d{name}")
    # a rank holding queries 2..4 of the global batch, all positives gathered
    share = slice(2, 5)
    ours, _ = contrastive_loss(q[share], p[share], n[share], all_positives=p, offset=2, positive_ids=ids, **kwargs)
    assert ours.item() == pytest.approx(naive(ids, offset=2, rows=share).item(), rel=rel)


# --- 6. the recipe's schedule and evaluation length
def test_warmup_in_optimizer_steps():
    f = lr_lambda(StageConfig(lr=1e-3, min_lr=1e-5, warmup_steps=5, warmup_ratio=0.5), 105)
    assert [f(s) for s in range(5)] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])  # steps win over the ratio
    assert f(55) == pytest.approx(0.5 * (1 + math.cos(math.pi * 50 / 100)))
    assert f(105) == pytest.approx(0.01)


def test_recipe_configs_warm_up_500_steps_and_evaluate_at_8192():
    assert EvalConfig().max_length == 8192
    cfg = run_config("0.6B")
    assert cfg.train.stage2.warmup_steps == 500 and cfg.train.stage1.warmup_steps == 500
    assert cfg.model.max_length == 1024 and cfg.eval.max_length == 8192
