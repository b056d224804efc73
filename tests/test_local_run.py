"""`f2llm run`'s one-screen report: a line per stage, kfp.local's output in the run's log.

The fake tasks log exactly as kfp.local's task dispatcher does (its own logger context,
colours and indented print), so a change in kfp.local's format fails here.
"""

from __future__ import annotations

import builtins
import io
import json
import logging
import re
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml
from kfp.local import logging_utils, status

from f2llm.cli import main
from f2llm.components.local_run import captured_run, figures, stages_of
from f2llm.components.pipeline import STAGES, build_pipeline

from conftest import ROOT

SPEC = build_pipeline(None).pipeline_spec
LINE = re.compile(r"^(?P<label>\S+(?: x\d+)?) +(?P<seconds>\d+\.\d) s(?:  (?P<detail>.*))?$")


def fake_task(run_dir: Path, folder: str, output: list[str], metrics: dict | None = None, ok: bool = True) -> None:
    """What kfp.local does for one task: log, stream the subprocess' lines, leave executor_output.json."""
    name = logging_utils.format_task_name(folder)
    with logging_utils.local_logger_context():
        logging.info(f"Executing task {name}")
        logging.info("Streamed logs:\n")
        with logging_utils.indented_print():
            for line in output:
                print(line)
            print("\n")
        if metrics is not None:
            (run_dir / folder).mkdir(parents=True, exist_ok=True)
            record = {"artifacts": {"metrics": {"artifacts": [{"name": "metrics", "metadata": metrics}]}}}
            (run_dir / folder / "executor_output.json").write_text(json.dumps(record))
        done = status.Status.SUCCESS if ok else status.Status.FAILURE
        log = logging.info if ok else logging.error
        log(f"Task {name} finished with status {logging_utils.format_status(done)}")
        logging_utils.print_horizontal_line()


def test_stages_come_from_the_pipeline_spec():
    stages = stages_of(SPEC)
    assert sorted(s.name for s in stages.values()) == sorted(STAGES)
    assert stages["mine-op"].name == "mine-negatives" and stages["train-op-2"].name == "train-stage-2"
    assert {s.name for s in stages.values() if s.fanout} == {"validate-language"}  # inside the ParallelFor


def test_a_line_per_stage_as_it_finishes_and_everything_in_the_log(tmp_path):
    out = io.StringIO()
    stdout, real_print, handlers = sys.stdout, builtins.print, logging.getLogger().handlers[:]
    run_dir = tmp_path / "f2llm-v2-2026-01-01-00-00-00-000000"
    with captured_run(SPEC, tmp_path, out) as run:
        fake_task(run_dir, "ingest-op", ["reading sources"], {"rows": 120, "sources": 4, "languages": 3})
        assert out.getvalue().splitlines()[-1].startswith("ingest ")  # live, not at the end
        # the fan-out: 30 iterations on two threads, as kfp.local's ParallelFor runs them (its
        # per-task logger swaps race there: without one context for the run, lines go missing)
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(lambda i: fake_task(run_dir / f"for-loop-1-iteration-{i}", "validate-language-op",
                                              [f"lang {i}"] * 20, {}), range(30)))
        fake_task(run_dir, "merge-validation-op", ["| lang |"], {"accepted": 118})  # quarantined not logged
        fake_task(run_dir, "mine-op", [], {"rows": 118, "mined_rows": 40, "negatives_mined": 90, "quarantined": 2})
        fake_task(run_dir, "base-model-op", [])  # no executor_output.json at all
        fake_task(run_dir, "prepare-op", [], {"train_rows": 100, "capped_rows": 0})  # no stage<n>_rows yet
        fake_task(run_dir, "train-op", [], {"steps": 30.0, "loss": 1.23456, "seconds": 2.0})
        fake_task(run_dir, "train-op-2", [], {"steps": 60.0, "loss": "n/a"})  # a loss that is no number
        fake_task(run_dir, "evaluate-op", [], {"base_ndcg@5": 0.25, "trained_ndcg@5": 0.5, "base_recall@5": 0.4})
        fake_task(run_dir, "export-op", ["uploading"], {"uri": "s3://bucket/model"})
        sys.stdout.write("\x1b[92ma line with no newline")  # partial and coloured
        sys.stderr.write("a warning\n")
    # kfp.local's racy swaps of print and of the root logger's handlers undone
    assert sys.stdout is stdout and builtins.print is real_print and logging.getLogger().handlers == handlers

    lines = out.getvalue().splitlines()
    parsed = [LINE.match(line) for line in lines]
    assert all(parsed), lines
    assert [p["label"] for p in parsed] == [
        "ingest", "validate-language x30", *STAGES[2:],
    ]
    detail = {p["label"].split()[0]: p["detail"] for p in parsed}
    assert detail["ingest"] == "120 rows, 3 languages"
    assert detail["validate-language"] is None
    assert detail["merge-validation"] == "118 accepted"
    assert detail["mine-negatives"] == "40 mined rows, 90 negatives, 2 quarantined"
    assert detail["base-model"] is None
    assert detail["prepare"] == "train_rows 100, capped_rows 0"  # none it knows: the first few there are
    assert detail["train-stage-1"] == "30 steps, loss 1.2346"
    assert detail["train-stage-2"] == "60 steps"
    assert detail["evaluate"] == "nDCG@5 0.500 vs base 0.250"
    assert detail["export"] == "model -> s3://bucket/model"

    assert run.log_path == run_dir / "run.log" and not list(tmp_path.glob("*.log"))
    log = run.log_path.read_text()
    assert "\x1b[" not in log
    assert log.count("finished with status SUCCESS") == 39
    assert [line.strip() for line in log.splitlines()].count("lang 1") == 20
    assert "Task 'train-op-2' finished with status SUCCESS" in log
    assert log.endswith("a warning\na line with no newline\n")


def test_a_failed_task_shows_its_own_last_lines_and_nothing_after(tmp_path):
    out = io.StringIO()
    run_dir = tmp_path / "f2llm-v2-2026-01-01-00-00-00-000000"
    with captured_run(SPEC, tmp_path, out) as run:
        fake_task(run_dir, "ingest-op", [], {"rows": 10, "languages": 2})
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(lambda args: fake_task(run_dir / f"for-loop-1-iteration-{args[0]}", "validate-language-op",
                                                 *args[1:]),
                          [(0, [f"ok {n}" for n in range(40)], {}, True),
                           (1, [f"bad {n}" for n in range(40)], {}, False),
                           (2, ["later"], {}, True)]))
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("ingest ")
    assert re.match(r"validate-language +\d+\.\d s  FAILED \(task validate-language-op", lines[1])
    # the failed task's last 20 lines, not its sibling's (same time, other thread), no trailing blanks
    assert [line.strip() for line in lines[2:]] == [f"bad {n}" for n in range(20, 40)]
    assert "later" in run.log_path.read_text()  # the loop's remaining tasks still reach the log


def test_figures_never_fail_on_what_is_there():
    assert figures("ingest", {}) == ""
    assert figures("ingest", {"rows": "many", "languages": 3}) == "many rows, 3 languages"
    assert figures("train-stage-1", {"steps": None, "loss": 2}) == "loss 2.0000"
    assert figures("unknown-stage", {"a": 1, "b": 2.5, "c": "x", "d": 4, "e": 5}) == "a 1, b 2.5, d 4"


def test_run_command_fails_with_the_stage_the_error_and_the_log(tmp_path, capsys):
    """A real local run whose data cannot be read: ingest FAILED, its traceback's end, exit 1."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.jsonl").write_text('{"query": "q", "passage": "p"}\n{not json\n')
    (data / "sources.yaml").write_text(yaml.safe_dump(
        {"sources": [{"name": "a", "path": "a.jsonl", "task": "retrieval", "language": "swa"}]}
    ))
    config = yaml.safe_load((ROOT / "configs" / "demo.yaml").read_text())
    config.update(output_uri=str(tmp_path / "out"), pipeline_root=str(tmp_path / "kfp"))
    config["data"]["uri"] = str(data)
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(config))

    assert main(["run", "--config", str(tmp_path / "run.yaml")]) == 1
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert re.match(r"ingest +\d+\.\d s  FAILED", lines[0])
    assert 3 <= len(lines) <= 23
    assert any("IngestError" in line and "a.jsonl: record 1 (line 2): not valid JSON" in line for line in lines[1:-1])
    assert lines[-1].startswith("full log: ")
    log = Path(lines[-1].removeprefix("full log: "))
    assert log.parent.parent == tmp_path / "kfp" and log.name == "run.log"
    assert "Task 'ingest-op' finished with status FAILURE" in log.read_text()
    assert "error: Pipeline 'f2llm-v2' finished with status FAILURE" in captured.err
