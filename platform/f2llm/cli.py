"""`f2llm run` (the whole pipeline locally through kfp.local; the family pipeline when the config
has `family:`), `f2llm compile` (KFP YAML), `f2llm tune` (an Optuna study over stage 2,
then the best run), `f2llm prune` (a smaller Qwen3 from a checkpoint),
`f2llm recipe` (a ready-made run config for one of the eight F2LLM-v2 sizes), `f2llm eval --mteb`
(an exported model through the mteb harness, every Matryoshka dim), `f2llm plan` (memory
per GPU by strategy, the GPUs and nodes a size needs), `f2llm serve`
(the KServe predictor with v1, v2 and OpenAI-compatible embeddings) and `f2llm submit` (the
pipeline to a Kubeflow Pipelines endpoint, as a new pipeline or version, and a run)."""

from __future__ import annotations

import argparse
import io
import os
import sys
import time

import pandas as pd


def _print_results(cfg, seconds: float) -> None:
    from rich.console import Console
    from rich.table import Table

    from f2llm import storage
    from f2llm.evaluation.report import TASK_ORDER, dim_table, language_table

    k = cfg.eval.k
    results = pd.read_csv(io.BytesIO(storage.read_bytes(storage.join(cfg.output_uri, "report", "results.csv"))))
    console = Console()
    if cfg.family is not None:
        _print_family(cfg, results, console)
        console.print(f"done in {seconds:.0f} s")
        return
    tasks = [t for t in TASK_ORDER if t in set(results["task"])]
    by_task = {t: language_table(results, t).set_index("language") for t in tasks}
    metrics = {t: results.loc[results["task"] == t, "metric"].iloc[0] for t in tasks}
    named = ", ".join(f"{t} {metrics[t]}" for t in tasks)
    table = Table(title=f"Held-out per language, dim {results['dim'].max()}, trained and its gain over base: {named}")
    for col in ("lang", "level", *tasks):
        table.add_column(col, justify="left" if col in ("lang", "level") else "right")

    def cell(frame: pd.DataFrame, metric: str) -> str:
        if frame.empty:
            return ""
        return f"{frame[f'trained {metric}'].mean():.3f} {frame['Δ base'].mean():+.2f}"

    languages = sorted(set().union(*(f.index for f in by_task.values())))
    for lang in languages:
        first = next(f.loc[lang] for f in by_task.values() if lang in f.index)
        table.add_row(lang, first["resource"],
                      *(cell(by_task[t].loc[[lang]] if lang in by_task[t].index else by_task[t].iloc[0:0], metrics[t])
                        for t in tasks))
    for label, level in (("mean", None), ("high", "high"), ("low", "low")):
        table.add_row(label, "", *(cell(by_task[t] if level is None else by_task[t][by_task[t]["resource"] == level],
                                            metrics[t]) for t in tasks), style="bold")
    console.print(table)
    console.print("Matryoshka dims, mean over languages, base->trained:")
    for task, part in dim_table(results, k).groupby("task"):
        dims = part.pivot(index="dim", columns="model", values="score")
        console.print(f"  {task:<14} " + ", ".join(
            f"{d} {r['base']:.2f}->{r['trained']:.2f}" for d, r in dims.sort_index(ascending=False).iterrows()))
    checked = pd.read_csv(io.BytesIO(storage.read_bytes(storage.join(cfg.output_uri, "report", "validation.csv"))))
    console.print(
        f"validation: {checked['rows'].sum()} rows in {len(checked)} languages -> {checked['accepted'].sum()} accepted, "
        f"{checked['quarantined'].sum()} quarantined ({storage.join(cfg.output_uri, 'report', 'validation.html')})"
    )
    console.print(f"model:  {storage.join(cfg.output_uri, 'model')}")
    console.print(f"report: {storage.join(cfg.output_uri, 'report', 'index.html')}")
    console.print(f"done in {seconds:.0f} s")


def _print_study(cfg) -> None:
    """The study this run made: a row per trial, the best values, where the plots and storage are."""
    import json

    import optuna
    from rich.console import Console
    from rich.table import Table

    from f2llm import storage
    from f2llm.tune import open_storage, storage_url, trials_frame

    summary = json.loads(storage.read_bytes(storage.join(cfg.output_uri, "report", "tune.json")))
    study = optuna.load_study(study_name=summary["study"], storage=open_storage(storage_url(cfg), cfg.tune))
    frame = trials_frame(study)
    table = Table(title=f"Study {summary['study']}: held-out nDCG@{cfg.eval.k} per trial (mean over languages, "
                        "worst language), optimizer steps spent")
    for col in frame.columns:  # config paths by their last parts: lr, temperature, hard_negatives.retrieval
        name = str(col).removeprefix("train.").removeprefix("stage2.")
        table.add_column(name, justify="left" if col == "state" else "right", overflow="fold")
    for row in frame.itertuples(index=False):
        table.add_row(*(f"{v:.3g}" if isinstance(v, float) else str(v) for v in row))
    console = Console()
    console.print(table)
    # unwrapped: the paths and the command stay copy-pasteable
    console.print(f"best values (stage 2 trained with them): {summary['best']}", soft_wrap=True)
    console.print(f"plots: {storage.join(cfg.output_uri, 'report', 'tune.html')}", soft_wrap=True)
    console.print(f"dashboard: optuna-dashboard {summary['storage']}", soft_wrap=True, markup=False)


def _prune(args, parser) -> int:
    import json
    import tempfile
    from pathlib import Path

    from f2llm import storage
    from f2llm.model.prune import PruneTarget, calibration_texts, prune_checkpoint
    from f2llm.model.recipes import RECIPES

    if args.size is not None and args.size not in RECIPES:
        parser.error(f"unknown size {args.size!r}; one of {', '.join(RECIPES)}")
    try:
        target = PruneTarget.of(args.size) if args.size else PruneTarget(*map(int, args.shape.split(",")))
    except (TypeError, ValueError):
        parser.error(f"--shape takes HIDDEN,MLP,LAYERS (three whole numbers), not {args.shape!r}")
    if args.data.endswith(".parquet"):
        rows = pd.read_parquet(io.BytesIO(storage.read_bytes(args.data)))
    else:
        from f2llm.data.ingest import ingest

        rows = ingest(args.data)
    texts = calibration_texts(rows, args.rows)
    with tempfile.TemporaryDirectory() as tmp:
        local = args.out if "://" not in args.out else str(Path(tmp) / "pruned")
        report = prune_checkpoint(args.model, local, target, texts, args.depth, max_length=args.max_length)
        if local != args.out:
            storage.upload_dir(local, args.out)
    print(json.dumps(report, indent=2))
    return 0


def _print_family(cfg, results: pd.DataFrame, console) -> None:
    from rich.table import Table

    from f2llm import storage
    from f2llm.evaluation.report import dim_table, family_table

    k = cfg.eval.k
    frame = family_table(results, k)
    table = Table(title=f"Held-out nDCG@{k} per language: the teacher and its pruned students (full dims)")
    for col in frame.columns:
        table.add_column(col, justify="left" if col == "language" else "right")
    for row in frame.itertuples(index=False):
        style = "bold" if row[0] == "mean" else None
        table.add_row(row[0], *(f"{v:.3f}" for v in row[1:]), style=style)
    console.print(table)
    for model, part in dim_table(results, k).groupby("model"):
        console.print(f"Matryoshka {model}: " + ", ".join(f"{int(d)}: {v:.3f}" for d, v in
                                                          part.sort_values("dim", ascending=False)[["dim", f"ndcg@{k}"]].values))
    console.print(f"teacher: {storage.join(cfg.output_uri, 'model')}")
    for student in cfg.family.students:
        console.print(f"{student.name}: {storage.join(cfg.output_uri, 'students', student.name, 'model')}")
    console.print(f"report: {storage.join(cfg.output_uri, 'report', 'index.html')}")


def _eval(args, parser) -> int:
    """mteb on an exported model through our wrapper; mteb's result files to --output (a folder or
    a store URI), a per-language table of main scores per dim on the screen."""
    import tempfile
    from pathlib import Path

    from rich.console import Console
    from rich.table import Table

    from f2llm import storage
    from f2llm.evaluation.mteb_run import resolve_tasks, run_mteb
    from f2llm.evaluation.report import mteb_html, mteb_table

    try:
        dims = [int(d) for d in args.dims.split(",")] if args.dims else None
    except ValueError:
        parser.error(f"--dims takes whole numbers separated by commas, not {args.dims!r}")
    tasks = resolve_tasks([t.strip() for t in args.mteb.split(",") if t.strip()])
    name = args.name or Path(args.model.rstrip("/")).name
    with tempfile.TemporaryDirectory() as tmp:
        local = args.output if "://" not in args.output else str(Path(tmp) / "mteb")
        frame = run_mteb(args.model, tasks, local, name, dims=dims, use_instructions=not args.no_instructions,
                         batch_size=args.batch_size, max_length=args.max_length)
        frame.to_csv(Path(local) / "summary.csv", index=False)
        (Path(local) / "report.html").write_text(mteb_html(frame, f"{name}: mteb"), encoding="utf-8")
        if local != args.output:
            storage.upload_dir(local, args.output)
    wide = mteb_table(frame)
    table = Table(title=f"mteb: {name}, main score per task, language and Matryoshka dim")
    for col in wide.columns:
        table.add_column(str(col), justify="left" if col in ("task", "language") else "right")
    for row in wide.itertuples(index=False):
        table.add_row(row[0], row[1], *(f"{v:.3f}" for v in row[2:]))
    console = Console()
    console.print(table)
    console.print(f"mteb results: {args.output} (summary.csv and report.html beside them)")
    return 0


def _plan(args, parser) -> int:
    from rich.console import Console
    from rich.table import Table

    from f2llm.model.recipes import RECIPES
    from f2llm.model.plan import fit, layout, plan

    console = Console()
    if args.size == "all":
        table = Table(title=f"Recipe layouts on {args.gpus_per_node}-GPU nodes of {args.gpu_memory:g} GB "
                            f"(global batch 512 x 9 sequences of {args.max_length} tokens)")
        for col in ("size", "strategy", "GPUs", "nodes", "state GB/GPU", "activations GB", "micro-batches"):
            table.add_column(col, justify="left" if col in ("size", "strategy") else "right")
        for size in RECIPES:
            found = layout(size, args.gpu_memory, args.gpus_per_node, args.max_length)
            if found is None:
                table.add_row(size, "does not fit", "", "", "", "", "")
                continue
            strategy, gpus, nodes = found
            f = fit(size, strategy, gpus, args.gpu_memory, args.max_length)
            table.add_row(size, strategy, str(gpus), str(nodes), f"{f.state_gb:.1f}", f"{f.activation_gb:.1f}",
                          str(f.micro_batches))
        console.print(table)
        return 0
    if args.size not in RECIPES:
        parser.error(f"unknown size {args.size!r}; one of {', '.join(RECIPES)} or all")
    table = Table(title=f"{args.size} on {args.gpus} x {args.gpu_memory:g} GB (per GPU; host memory per rank)")
    for col in ("strategy", "state GB", "host GB", "activations GB", "micro-batches", "total GB", "fits"):
        table.add_column(col, justify="left" if col == "strategy" else "right")
    for f in plan(args.size, args.gpus, args.gpu_memory, args.max_length):
        table.add_row(f.strategy, f"{f.state_gb:.1f}", f"{f.host_gb:.1f}", f"{f.activation_gb:.1f}",
                      str(f.micro_batches or "-"), f"{f.total_gb:.1f}", "yes" if f.fits else "no")
    console.print(table)
    found = layout(args.size, args.gpu_memory, args.gpus_per_node, args.max_length)
    console.print(f"recipe layout: {found[0]} on {found[1]} GPUs ({found[2]} node{'s' * (found[2] > 1)})"
                  if found else "recipe layout: does not fit on up to 1024 GPUs")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="f2llm", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the whole pipeline locally (kfp.local)")
    run.add_argument("--config", required=True)
    comp = sub.add_parser("compile", help="write the pipeline as KFP YAML")
    comp.add_argument("--config", required=True)
    comp.add_argument("--output", required=True)
    recipe = sub.add_parser("recipe", help="print the run config of one F2LLM-v2 size as YAML")
    recipe.add_argument("size", help="80M, 160M, 330M, 0.6B, 1.7B, 4B, 8B, 14B, or family (0.6B + the three pruned)")
    recipe.add_argument("--store", default="s3://f2llm", help="bucket/prefix holding data, models and runs")
    prn = sub.add_parser("prune", help="prune a Qwen3 checkpoint to a smaller Qwen3 (activation importance)")
    prn.add_argument("--model", required=True, help="checkpoint directory or store URI")
    prn.add_argument("--out", required=True, help="output directory or store URI")
    shape = prn.add_mutually_exclusive_group(required=True)
    shape.add_argument("--size", help="a recipe size: 80M, 160M or 330M (any size's shape works)")
    shape.add_argument("--shape", metavar="HIDDEN,MLP,LAYERS", help="e.g. 320,2048,8")
    prn.add_argument("--data", required=True, help="calibration rows: a data directory (sources.yaml) or a parquet of accepted rows")
    prn.add_argument("--rows", type=int, default=1024, help="calibration rows, mixed over sources and languages")
    prn.add_argument("--depth", choices=("first", "block"), default="first", help="keep the first layers (recipe) or by block importance")
    prn.add_argument("--max-length", type=int, default=512)
    evl = sub.add_parser("eval", help="an exported model through mteb (our wrapper, every Matryoshka dim)")
    evl.add_argument("--model", required=True, help="exported sentence-transformers directory, a path or store URI")
    evl.add_argument("--mteb", required=True, metavar="BENCHMARK_OR_TASKS",
                     help="comma-separated mteb benchmark or task names, or local:<data dir> (its eval split)")
    evl.add_argument("--output", default="runs/mteb", help="folder or store URI for mteb's result files")
    evl.add_argument("--name", help="the model's name in the results (default: the model folder's name)")
    evl.add_argument("--dims", help="comma-separated Matryoshka dims (default: every one)")
    evl.add_argument("--no-instructions", action="store_true", help="no query prompt at all (the harness check)")
    evl.add_argument("--batch-size", type=int, default=32)
    evl.add_argument("--max-length", type=int, default=8192, help="tokens (recipe: evaluation at 8192)")
    pln = sub.add_parser("plan", help="memory per GPU by strategy (DDP, FSDP, FSDP + offload) and the GPUs/nodes a size needs")
    pln.add_argument("size", help="80M ... 14B, or all (the recipe layout of every size)")
    pln.add_argument("--gpus", type=int, default=8, help="GPUs in all (default: one node)")
    pln.add_argument("--gpu-memory", type=float, default=80, help="GB per GPU (H100: 80, H200: 141)")
    pln.add_argument("--gpus-per-node", type=int, default=8)
    pln.add_argument("--max-length", type=int, default=1024, help="training tokens per sequence (recipe: 1024)")
    srv = sub.add_parser("serve", help="serve an exported model (KServe v1, v2, OpenAI /openai/v1/embeddings)")
    srv.add_argument("--model", required=True, help="exported model directory or store URI")
    srv.add_argument("--name", default="f2llm")
    srv.add_argument("--host", help="address to listen on (default 127.0.0.1; 0.0.0.0: every interface, as in a pod)")
    srv.add_argument("--port", type=int, default=8080)
    srv.add_argument("--model-control", action="store_true",
                     help="mount /v2/repository load/unload, for holders of the $F2LLM_CONTROL_TOKEN bearer token")
    srv.add_argument("--config", help="YAML with more ServeConfig fields (batching, limits)")
    tun = sub.add_parser("tune", help="an Optuna study over stage 2, then the best run (the tune pipeline, locally)")
    tun.add_argument("--config", required=True, help="a run config; its tune: section (or the defaults) sets the search")
    tun.add_argument("--trials", type=int, help="trials in the study (default: tune.trials)")
    tun.add_argument("--workers", type=int, help="parallel workers pulling trials (default: tune.workers)")
    tun.add_argument("--storage", help="Optuna RDB URL, passed to the steps as $OPTUNA_STORAGE (default: tune.storage, "
                     "else $OPTUNA_STORAGE, else SQLite under output_uri)")
    tun.add_argument("--compile", metavar="OUTPUT", help="write the tune pipeline as KFP YAML instead of running it")
    sbm = sub.add_parser("submit", help="register the pipeline with KFP (new version if it exists) and start a run")
    sbm.add_argument("--config", required=True)
    sbm.add_argument("--host", required=True, help="KFP API endpoint, e.g. http://ml-pipeline-ui.kubeflow")
    sbm.add_argument("--experiment", default="f2llm")
    sbm.add_argument("--run-name")
    sbm.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE", help="override a config field")
    sbm.add_argument("--register-only", action="store_true", help="upload the pipeline (or a new version), start no run")
    sbm.add_argument("--namespace", help="multi-user KFP: the profile namespace the pipeline and runs live in")
    sbm.add_argument("--service-account", help="the runs' service account (default: KFP's)")
    sbm.add_argument("--upload-sample", metavar="DIR", help="first copy DIR (e.g. data/sample) to the config's data.uri")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)

    if args.command == "serve":
        import yaml

        # kserve parses sys.argv when imported (abbreviations on: --config would be its
        # --configure_logging); our server passes everything it needs explicitly.
        sys.argv = sys.argv[:1]
        from pathlib import Path

        from f2llm.config import ServeConfig
        from f2llm.serve.server import serve

        extra = yaml.safe_load(Path(args.config).read_text(encoding="utf-8")) if args.config else {}
        flags = {"model": args.model, "name": args.name, "http_port": args.port}
        flags |= {"host": args.host} if args.host else {}
        flags |= {"model_control": True} if args.model_control else {}
        serve(ServeConfig.model_validate({**extra, **flags}))
        return 0
    if args.command == "prune":
        return _prune(args, parser)
    if args.command == "plan":
        return _plan(args, parser)
    if args.command == "eval":
        return _eval(args, parser)
    if args.command == "recipe":
        from f2llm.model.recipes import FAMILY, RECIPES, run_config_yaml

        if args.size not in RECIPES and args.size != FAMILY:
            parser.error(f"unknown size {args.size!r}; one of {', '.join(RECIPES)} or {FAMILY}")
        print(run_config_yaml(args.size, args.store), end="")
        return 0

    from f2llm.components.pipeline import compile_pipeline, run_local
    from f2llm.config import load_config

    cfg = load_config(args.config)
    if args.command == "tune":
        tune = {"trials": args.trials, "workers": args.workers}
        if args.storage:  # as the env the steps read, not a run parameter: it may hold a password
            os.environ["OPTUNA_STORAGE"] = args.storage
            tune["storage"] = None
        try:
            cfg = cfg.with_values({"tune": (cfg.tune.model_dump(mode="json") if cfg.tune else {})
                                   | {k: v for k, v in tune.items() if v is not None or k == "storage"}})
        except ValueError as error:
            parser.error(str(error))
        if args.compile:
            print(compile_pipeline(cfg, args.compile))
            return 0
    if args.command == "submit":
        from f2llm.cluster.submit import apply_overrides, submit

        done = submit(apply_overrides(cfg, args.set), args.host, args.experiment, args.run_name, not args.register_only,
                      namespace=args.namespace, service_account=args.service_account, upload_sample=args.upload_sample)
        started = f": run {done.run_id} in experiment {done.experiment_id}" if done.run_id else " (registered, no run)"
        print(f"pipeline {done.pipeline_id} version {done.version_id}{'' if done.uploaded else ' (unchanged)'}{started}")
        return 0
    if args.command == "compile":
        print(compile_pipeline(cfg, args.output))
        return 0
    from f2llm.components.local_run import LocalRunFailed

    # A line per stage as it finishes, then the results; kfp.local's ~12k lines go to the log.
    started = time.perf_counter()
    try:
        log = run_local(cfg)
    except LocalRunFailed as failed:
        print(f"error: {failed}", file=sys.stderr)
        print(f"full log: {failed.log}")
        return 1
    if cfg.tune is not None:
        _print_study(cfg)
    _print_results(cfg, time.perf_counter() - started)
    print(f"full log: {log}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
