"""The pruner on a real 0.6B-shaped Qwen3 (random weights, fp32) on this machine.

Times the importance pass (forward passes with hooks over 256 calibration rows of the bundled
sample: each row's instructed query and its passage) and the surgery + write of each of the
recipe's three pruned sizes from that one pass, with the process's peak RSS and the model's own
size beside it (the pruner should hold the source model once, plus the pruned copy it writes).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import peak_rss_mb, write  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    import pandas as pd
    import torch
    from transformers import Qwen3Model

    from f2llm.config import TinyModelConfig
    from f2llm.data.ingest import ingest
    from f2llm.model.base_model import build_tiny_model
    from f2llm.model.prune import PruneTarget, calibration_texts, prune_checkpoint
    from f2llm.model.recipes import qwen3_config

    rows = ingest(str(ROOT / "data" / "sample"))
    texts = calibration_texts(rows, n_rows=256, seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        tokenizer_dir = build_tiny_model(TinyModelConfig(), pd.concat([rows["query"], rows["passage"]]), work / "tok")
        torch.manual_seed(0)
        started = time.perf_counter()
        source = Qwen3Model(qwen3_config("0.6B"))
        source.save_pretrained(work / "0.6b")
        del source
        from transformers import AutoTokenizer

        AutoTokenizer.from_pretrained(tokenizer_dir).save_pretrained(work / "0.6b")
        build_s = time.perf_counter() - started
        rss_before = peak_rss_mb()
        started = time.perf_counter()
        targets = {size: PruneTarget.of(size) for size in ("80M", "160M", "330M")}
        report = prune_checkpoint(work / "0.6b", work / "pruned", targets, texts, max_length=512)
        total_s = time.perf_counter() - started
    write("prune_cpu", {
        "source": "Qwen3 0.6B shape (596,049,920 parameters), random weights, fp32",
        "source_fp32_mb": round(report["source_parameters"] * 4 / 2**20),
        "calibration_rows": 256, "calibration_texts": report["calibration_texts"],
        "calibration_tokens": report["calibration_tokens"],
        "importance_s": round(report["importance_s"], 1),
        "tokens_per_s": round(report["calibration_tokens"] / report["importance_s"], 1),
        "surgery_and_write_s": {size: round(r["surgery_s"], 2) for size, r in report["pruned"].items()},
        "parameters": {size: r["parameters"] for size, r in report["pruned"].items()},
        "prune_total_s": round(total_s, 1),
        "build_source_s": round(build_s, 1),
        "peak_rss_mb_before_pruning": round(rss_before), "peak_rss_mb": round(peak_rss_mb()),
    })


if __name__ == "__main__":
    main()
