import json

import pandas as pd
from transformers import AutoTokenizer

from f2llm.config import DataConfig
from f2llm.model.encoder import Encoder
from f2llm.model.export import export_sentence_transformers
from f2llm.data.prepare import cap_per_source, prepare
from f2llm.tasks import TASKS, TaskType, query_prompt

from tolerance import assert_close_scaled


def test_prepare_layout_stages_and_instructions(tmp_path, sample_rows, tiny_model_dir):
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    stats = prepare(sample_rows, tok, DataConfig(uri="unused"), 128, tmp_path)
    corpus = pd.read_parquet(tmp_path / "corpus.parquet")
    s1, s2 = (pd.read_parquet(tmp_path / f"stage{i}.parquet") for i in (1, 2))
    train = sample_rows[sample_rows["split"] == "train"]
    assert len(s2) == len(train) == stats["train_rows"]
    assert set(s1["task"]) == {"retrieval", "bitext"} and set(s2["task"]) == set(train["task"])
    assert corpus["text_id"].tolist() == list(range(len(corpus)))
    assert all(ids[-1] == tok.eos_token_id for ids in corpus["input_ids"])
    decode = lambda i: tok.decode(corpus["input_ids"][i][:-1])  # noqa: E731
    retrieval = s2[s2["task"] == "retrieval"].iloc[0]
    assert decode(retrieval["query_id"]).startswith(query_prompt(TASKS[TaskType.retrieval].instruction))
    assert not decode(s1.iloc[0]["query_id"]).startswith("Instruct:")
    # documents of symmetric tasks get the instruction ~30% of the time, asymmetric never
    clustering_docs = [decode(i) for i in s2.loc[s2["task"] == "clustering", "positive_id"]]
    share = sum(d.startswith("Instruct:") for d in clustering_docs) / len(clustering_docs)
    assert 0.15 < share < 0.45
    assert not any(decode(i).startswith("Instruct:") for i in s2.loc[s2["task"] == "retrieval", "positive_id"])
    assert json.loads((tmp_path / "stats.json").read_text())["corpus_texts"] == len(corpus)


def test_cap_per_source_counts_what_it_caps(sample_rows):
    train = sample_rows[sample_rows["split"] == "train"]
    kept, capped = cap_per_source(train, cap=10, seed=0)
    sizes = train.groupby("source").size()
    assert kept.groupby("source").size().max() == 10
    assert capped == {s: n - 10 for s, n in sizes.items() if n > 10}
    assert len(kept) + sum(capped.values()) == len(train)


def test_export_loads_in_sentence_transformers_with_our_vectors(tmp_path, tiny_model_dir):
    from sentence_transformers import SentenceTransformer

    out = export_sentence_transformers(tiny_model_dir, tmp_path / "st", max_length=64)
    st = SentenceTransformer(str(out), device="cpu")
    ours = Encoder.load(tiny_model_dir, max_length=64)
    texts = ["Mji mkuu wa Kenya ni upi?", "ケニアの首都はどこですか？", "Кто учит детей в школе?"]
    instruction = TASKS[TaskType.retrieval].instruction
    unit = {"rel": 1e-6, "scale": 1.0}  # unit vectors: ~10 fp32 roundoffs of their norm
    assert_close_scaled(
        st.encode(texts, prompt_name="query", convert_to_tensor=True), ours.encode(texts, prompt=query_prompt(instruction)),
        **unit, msg="queries",
    )
    assert_close_scaled(st.encode(texts, convert_to_tensor=True), ours.encode(texts), **unit, msg="documents")
    config = json.loads((out / "config.json").read_text())
    assert config["matryoshka_dimensions"] == [64, 32, 16, 8]
    pooling = json.loads((out / "1_Pooling" / "config.json").read_text())
    assert pooling["pooling_mode"] == "lasttoken" and pooling["include_prompt"] is True


def test_temperature_sampling_flattens_the_language_mix():
    from f2llm.data.prepare import temperature_sample

    train = pd.DataFrame({"language": ["eng"] * 900 + ["swa"] * 100, "query": [f"q{i}" for i in range(1000)]})
    same, targets = temperature_sample(train, temperature=1.0, seed=0)
    assert targets == {"eng": 900, "swa": 100}
    flat, targets = temperature_sample(train, temperature=2.0, seed=0)
    # p ~ sqrt(n): sqrt(900) = 30, sqrt(100) = 10 -> 750 / 250 of 1000
    assert targets == {"eng": 750, "swa": 250}
    assert flat.groupby("language").size().to_dict() == targets
    assert flat.loc[flat["language"] == "swa", "query"].nunique() == 100  # up-sampled with replacement
