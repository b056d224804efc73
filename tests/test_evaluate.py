"""Per-language evaluation of every task type: the metrics against hand values, then the whole
evaluation of a tiny model on the bundled sample (its shape, its counts from the sample's files),
and bad input named."""

import math

import pandas as pd
import pytest
import torch

from f2llm.evaluation.evaluate import evaluate_model
from f2llm.evaluation.metrics import component_labels, kmeans_v_measure, logistic_accuracy, retrieval_scores


def test_retrieval_scores_by_hand():
    # query 0 ranks its document (1) second; query 1 ranks its document (0) first
    similarity = torch.tensor([[0.9, 0.5, 0.1], [0.8, 0.2, 0.3]])
    scores = retrieval_scores(similarity, [{1}, {0}], k=10)
    assert scores["ndcg@10"] == pytest.approx((1 / math.log2(3) + 1) / 2)
    assert scores["recall@10"] == 1.0 and scores["accuracy"] == 0.5
    assert retrieval_scores(similarity, [{1}, {0}], k=1)["recall@1"] == 0.5


def test_logistic_accuracy_and_an_unseen_label():
    train = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    test = torch.tensor([[0.8, 0.2], [0.2, 0.8], [0.7, 0.3]])
    assert logistic_accuracy(train, ["a", "a", "b", "b"], test, ["a", "b", "a"]) == 1.0
    # a label no train row has cannot be predicted: that row counts as wrong
    assert logistic_accuracy(train, ["a", "a", "b", "b"], test, ["a", "b", "c"]) == pytest.approx(2 / 3)


def test_cluster_labels_are_the_components_of_the_positive_pairs():
    texts, labels = component_labels(["jan", "feb", "mon", "tue", "mar"], ["feb", "mar", "tue", "wed", "jan"])
    assert texts == ["jan", "feb", "mar", "mon", "tue", "wed"]
    assert labels == [0, 0, 0, 1, 1, 1]


def test_v_measure_of_separated_and_of_mixed_clusters():
    blobs = torch.tensor([[1.0, 0.0], [0.99, 0.01], [0.0, 1.0], [0.01, 0.99]])
    assert kmeans_v_measure(blobs, [0, 0, 1, 1]) == pytest.approx(1.0)
    # the labels cut across the two blobs: k-means finds the blobs, which say nothing of the labels
    assert kmeans_v_measure(blobs, [0, 1, 0, 1]) == pytest.approx(0.0, abs=1e-9)


@pytest.fixture(scope="module")
def rows(sample_rows):
    return sample_rows


@pytest.fixture(scope="module")
def tiny_encoder(tiny_model_dir):
    from f2llm.model.encoder import Encoder

    return Encoder.load(tiny_model_dir, max_length=512)


@pytest.fixture(scope="module")
def scored(rows, tiny_encoder):
    return evaluate_model(tiny_encoder, rows, k=10)


def test_every_task_type_per_language_and_dim(rows, scored, tiny_encoder):
    held_out = rows[rows["split"] == "eval"]
    dims = sorted(set(scored["dim"]))
    assert dims[-1] == tiny_encoder.hidden_size and len(dims) >= 3
    for task, part in held_out.groupby("task"):
        got = scored[scored["task"] == task]
        assert set(got["language"]) == set(part["language"])
        assert len(got) == part["language"].nunique() * len(dims)
        per_language = got[got["dim"] == dims[-1]].set_index("language")["n"]
        if task == "clustering":  # distinct texts among queries and positives
            expected = part.groupby("language")[["query", "passage"]].apply(lambda p: len(set(p["query"]) | set(p["passage"])))
        else:
            expected = part.groupby("language").size()
        assert per_language.sort_index().tolist() == expected.sort_index().tolist(), task
    outside = scored[~scored["score"].between(-1e-9, 1 + 1e-9)]  # V-measure may round past 1
    assert outside.empty, outside
    assert set(scored["metric"]) == {"ndcg@10", "accuracy", "v_measure"}
    assert "eng" not in set(scored.loc[scored["task"] == "bitext", "language"])  # bitext is X -> eng


def test_a_retrieval_score_recomputed_by_hand(rows, scored, tiny_encoder):
    """swa retrieval at full dim: cosine ranking of the eval rows' queries over their corpus."""
    part = rows[(rows["split"] == "eval") & (rows["task"] == "retrieval") & (rows["language"] == "swa")]
    docs = sorted({t for r in part.itertuples() for t in (r.passage, *r.negatives)})
    from f2llm.tasks import query_prompt

    q = torch.stack([tiny_encoder.encode([r.query], query_prompt(r.instruction))[0] for r in part.itertuples()])
    d = tiny_encoder.encode(docs)
    ranks = [(row @ d.T).argsort(descending=True).tolist().index(docs.index(p)) for row, p in zip(q, part["passage"])]
    expected = sum(1 / math.log2(r + 2) for r in ranks if r < 10) / len(ranks)
    got = scored[(scored["task"] == "retrieval") & (scored["language"] == "swa") & (scored["dim"] == scored["dim"].max())]
    assert got["ndcg@10"].item() == pytest.approx(expected, abs=1e-6)


def test_classification_without_train_rows_is_named(rows, tiny_encoder):
    held_out_only = rows[(rows["split"] == "eval") & (rows["language"] == "yor")]
    with pytest.raises(ValueError, match=r"classification eval rows of yor \(cldr_kind_yor\) have no train-split rows"):
        evaluate_model(tiny_encoder, held_out_only, tasks=["classification"])
    only = evaluate_model(tiny_encoder, held_out_only, tasks=["retrieval"])
    assert set(only["task"]) == {"retrieval"}
