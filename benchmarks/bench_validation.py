"""Ingest + validation at scale, as the pipeline runs them. Goals (issue 15): >= 1M rows/minute
end to end, and peak RSS per task <= 2 GiB at 3M rows.

The corpus: N rows over 60 languages, two sources each, compressed JSON Lines (.jsonl.zst) with
a query, a passage and 7 negatives (`negative_1..7`) per row, written from CLDR texts in each
language's own script (`f2llm.data.cldr_text`, offline; pools of texts sampled per row, so a
few (query, passage) pairs repeat and are quarantined as duplicates, as in real data).

Each stage runs in a fresh process, as a KFP task runs in its own pod, calling the library
exactly as its component does, and reports its own wall time and peak RSS:

1. ingest (`ingest_op`): `ingest_partitioned` -> parquet per language; `task_groups`;
2. validate (`validate_language_op`): `validate_partitions` for each of `validation.tasks` groups
   (`--tasks`, default one per core), Data Docs included, `--workers` at a time (on a cluster
   every group is a pod and all run at once; here the cores bound it);
3. merge (`merge_validation_op`): `merge_parts` for accepted and quarantined rows.

End to end = the three stages' wall time, corpus writing excluded. Per-task figures show
whether memory stays flat as rows grow (it should: one batch plus ~100 bytes of flags a row).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import yaml
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).parent))
from common import peak_rss_mb, write  # noqa: E402

from f2llm.config import MiningConfig, ValidationConfig  # noqa: E402
from f2llm.data import langid  # noqa: E402

NEGATIVES = 7
POOL = 3000  # distinct texts per language and field
SEED = 0


def _languages(n: int) -> list[str]:
    from f2llm.data.cldr_text import cldr_languages

    codes = cldr_languages()
    step = max(1, len(codes) // n)  # spread over the alphabet, so over scripts and families
    return codes[::step][:n]


def write_corpus(folder: Path, rows: int, languages: list[str]) -> int:
    """`rows` rows as 2 sources per language; -> bytes written."""
    from f2llm.data.cldr_text import cldr_phrases

    rng = np.random.default_rng(SEED)
    sources, size = [], 0
    per_source = np.diff(np.linspace(0, rows, 2 * len(languages) + 1).astype(int))
    for i, lang in enumerate(tqdm(languages, desc="write corpus", unit="language")):
        phrases = np.array(cldr_phrases(lang, 600, SEED), dtype=object)

        def pool(k: int) -> np.ndarray:
            picks = rng.integers(0, len(phrases), size=(POOL, k))
            return np.array([" ".join(phrases[row]) for row in picks], dtype=object)

        query, passage, negative = pool(1), pool(2), pool(1)
        for part in (0, 1):
            n, name = int(per_source[2 * i + part]), f"{lang}_{part}"
            frame = pd.DataFrame({"query": query[rng.integers(0, POOL, n)], "passage": passage[rng.integers(0, POOL, n)]})
            for k in range(1, NEGATIVES + 1):
                frame[f"negative_{k}"] = negative[rng.integers(0, POOL, n)]
            path = folder / f"{name}.jsonl.zst"
            with pa.CompressedOutputStream(str(path), "zstd") as out:
                out.write(frame.to_json(orient="records", lines=True, force_ascii=False).encode())
            size += path.stat().st_size
            sources.append({"name": name, "path": path.name, "task": "retrieval", "language": lang})
    (folder / "sources.yaml").write_text(yaml.safe_dump({"sources": sources}, allow_unicode=True))
    return size


# --- the stages, each run in its own process (`--stage`) ---------------------------------------

def _cfg(tasks: int = 8) -> ValidationConfig:
    # drop, not stop: a CLDR source that reads poorly is quarantined, and the run goes on
    return ValidationConfig(on_slice_failure="drop", tasks=tasks)


def stage_ingest(data: str, work: str, tasks: str) -> dict:
    from f2llm.data.ingest import ingest_partitioned
    from f2llm.data.validate import task_groups

    stats = ingest_partitioned(data, f"{work}/rows")
    return {"rows": sum(stats.rows.values()), "files": stats.files,
            "groups": [",".join(g) for g in task_groups(stats.rows, int(tasks))]}


def stage_validate(work: str, group: str, index: int) -> dict:
    from f2llm.data.validate import validate_partitions

    out = Path(work) / "parts"
    out.mkdir(exist_ok=True)
    summary, _, _ = validate_partitions(f"{work}/rows", group.split(","), _cfg(), str(out / f"accepted_{index}.parquet"),
                                        str(out / f"quarantine_{index}.parquet"), docs_dir=str(out / f"docs_{index}"),
                                        mined_tasks=MiningConfig().fills)
    return {"rows": int(summary["rows"].sum()), "accepted": int(summary["accepted"].sum()),
            "quarantined": int(summary["quarantined"].sum()), "languages": len(summary)}


def stage_merge(work: str) -> dict:
    from f2llm.data.validate import merge_parts

    parts = Path(work) / "parts"
    return {kind: merge_parts(sorted(map(str, parts.glob(f"{kind}_*.parquet"))), f"{work}/{kind}.parquet")
            for kind in ("accepted", "quarantine")}


def _child(args: list[str]) -> dict:
    """One stage in a fresh interpreter; its result plus wall seconds and its own peak RSS."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, __file__, "--stage", *args], check=True, stdout=subprocess.PIPE, text=True)  # stderr: its progress
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return {**result, "seconds": round(time.perf_counter() - started, 2)}


def run_stage(argv: list[str]) -> None:
    stage, *rest = argv
    result = {"ingest": stage_ingest, "validate": lambda w, g, i: stage_validate(w, g, int(i)),
              "merge": stage_merge}[stage](*rest)
    result["peak_rss_mb"] = round(peak_rss_mb())
    print(json.dumps(result))


def run(rows: int, languages: list[str], workers: int, tasks: int, scratch: Path) -> dict:
    work = Path(tempfile.mkdtemp(dir=scratch, prefix=f"bench_{rows}_"))
    try:
        data = work / "data"
        data.mkdir()
        corpus_bytes = write_corpus(data, rows, languages)
        ingest = _child(["ingest", str(data), str(work), str(tasks)])
        assert ingest["rows"] == rows, ingest
        started = time.perf_counter()
        with ThreadPoolExecutor(workers) as pool:
            done = list(tqdm(pool.map(lambda ig: _child(["validate", str(work), ig[1], str(ig[0])]), enumerate(ingest["groups"])),
                              total=len(ingest["groups"]), desc=f"validate {rows:,} rows", unit="task"))
        validate_s = time.perf_counter() - started
        merge = _child(["merge", str(work)])
        accepted, quarantined = sum(t["accepted"] for t in done), sum(t["quarantined"] for t in done)
        assert accepted + quarantined == rows and merge["accepted"] == accepted and merge["quarantine"] == quarantined
        total = ingest["seconds"] + validate_s + merge["seconds"]
        return {
            "rows": rows, "languages": len(languages), "corpus_mb": round(corpus_bytes / 2**20), "workers": workers,
            "tasks": tasks,
            "accepted": accepted, "quarantined": quarantined,
            "ingest": {k: ingest[k] for k in ("seconds", "peak_rss_mb", "files")},
            "validate": {"seconds": round(validate_s, 2), "tasks": len(done),
                         "task_seconds_max": max(t["seconds"] for t in done),
                         "task_peak_rss_mb_max": max(t["peak_rss_mb"] for t in done),
                         "task_rows_max": max(t["rows"] for t in done)},
            "merge": {k: merge[k] for k in ("seconds", "peak_rss_mb")},
            "end_to_end_seconds": round(total, 2), "rows_per_minute": round(rows / total * 60),
            "peak_rss_mb_per_task": max(ingest["peak_rss_mb"], merge["peak_rss_mb"],
                                        *(t["peak_rss_mb"] for t in done)),
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 3_000_000])
    parser.add_argument("--languages", type=int, default=60)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="validation tasks at once")
    parser.add_argument("--tasks", type=int, help="validation.tasks (default: --workers, a pod per core)")
    parser.add_argument("--scratch", default=tempfile.gettempdir(), help="where the corpus and parquet go")
    parser.add_argument("--stage", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stage:
        return run_stage(args.stage)
    languages = _languages(args.languages)
    runs = []
    for rows in args.rows:
        runs.append(run(rows, languages, args.workers, args.tasks or args.workers, Path(args.scratch)))
        print(json.dumps(runs[-1]), flush=True)
    write("validation_cpu", {
        "runs": runs, "goal_rows_per_minute": 1_000_000, "goal_peak_rss_mb_per_task": 2048,
        "languages": languages, "negatives_per_row": NEGATIVES,
        "checked_by": dict(Counter(str(langid.method_for(code)) for code in languages)),
        "config": _cfg(args.tasks or args.workers).model_dump(),
    })


if __name__ == "__main__":
    main()
