"""`python -m f2llm.tune`: a worker on a study, outside the pipeline."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from f2llm.tune.objective import TrialInputs, run_worker


def main(argv: list[str] | None = None) -> int:
    """`python -m f2llm.tune`: one more worker on a study (what a tune-worker pod runs), e.g. on a
    spare machine beside a running pipeline: it pulls the study's queued trials until none is left."""
    import argparse

    from f2llm.config import load_config

    parser = argparse.ArgumentParser(prog="python -m f2llm.tune", description=main.__doc__)
    parser.add_argument("--config", required=True, help="the run's config (YAML or JSON) with its tune: section")
    parser.add_argument("--study", help="the study's name (default: tune.study, else the run's name)")
    parser.add_argument("--worker", type=int, default=0, help="the worker's index: its own sampler seed")
    parser.add_argument("--init", required=True, help="the stage-1 model every trial starts from")
    parser.add_argument("--data", required=True, help="the prepared (tokenised) dataset")
    parser.add_argument("--accepted", required=True, help="the accepted rows (parquet): the held-out split scores")
    args = parser.parse_args(argv)
    cfg = load_config(args.config)
    if cfg.tune is None:
        parser.error(f"{args.config}: the config has no tune: section")
    inputs = TrialInputs(Path(args.init), Path(args.data), pd.read_parquet(args.accepted))
    ran = run_worker(cfg, inputs, args.study, args.worker)
    print(f"worker {args.worker}: {ran} trials")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
