"""A one-screen `f2llm run`: a live line per pipeline stage, every other line in a log file.

kfp.local echoes each task's subprocess output and its own orchestration logs on stdout: some
12,000 lines for the demo, which bury the result table. While the pipeline runs, `captured_run`
puts sys.stdout/sys.stderr behind a line splitter that writes everything to `run.log` in the
run's folder and watches kfp.local's "Executing task" / "Task ... finished with status" lines.
At each finish it prints one line: the stage's display name, its seconds, and its key figures,
read from the task's executor_output.json (the structured record kfp.local leaves in each task
root: the Metrics the component logged and the other artifacts' metadata). The tasks of a
ParallelFor (validate-language) make one line. A failed task gets a FAILED line and the last
lines of its own output.

Python-level capture is enough: kfp.local pipes each task's stdout and stderr into this process
and re-prints them with `print`; its logging handler writes to sys.stdout.
"""

from __future__ import annotations

import builtins
import collections
import contextlib
import io
import json
import os
import re
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, Mapping, TextIO

from kfp.local import logging_utils

if TYPE_CHECKING:
    from kfp.pipeline_spec.pipeline_spec_pb2 import PipelineSpec

ANSI = re.compile(r"\x1b\[[0-9;]*m")
# kfp.local's own log lines ("HH:MM:SS.mmm - INFO - ..."); components' output is indented.
_LOGGED = r"^\d\d:\d\d:\d\d\.\d+ - \w+ - "
EXECUTING = re.compile(_LOGGED + r"Executing task '(?P<task>[^']+)'")
FINISHED = re.compile(_LOGGED + r"Task '(?P<task>[^']+)' finished with status (?P<status>\w+)")
RUN_LOG = "run.log"
TAIL_LINES = 20

# Per stage, its key figures: templates over the task's metrics, each shown if it renders
# (a metric missing or of another type drops that template, never the run).
FIGURES: dict[str, tuple[str, ...]] = {
    "ingest": ("{rows} rows", "{languages} languages"),
    "merge-validation": ("{accepted} accepted", "{quarantined} quarantined"),
    "mine-negatives": ("{mined_rows} mined rows", "{negatives_mined} negatives", "{quarantined} quarantined"),
    "base-model": ("base {base}",),
    "prepare": ("{stage1_rows} stage-1 rows", "{stage2_rows} stage-2 rows"),
    "train-stage-1": ("{steps} steps", "loss {loss:.4f}"),
    "train-stage-2": ("{steps} steps", "loss {loss:.4f}"),
    "evaluate": ("nDCG@{k} {trained_ndcg:.3f} vs base {base_ndcg:.3f}", "bitext {trained_bitext_accuracy:.3f}",
                 "classification {trained_classification_accuracy:.3f}", "V-measure {trained_clustering_v_measure:.3f}"),
    "gate": ("{failed} of {checks} checks failed",),
    "export": ("model -> {uri}",),
    # the family pipeline
    "prune": ("{parameters} parameters", "importance {importance_s:.1f} s"),
    "train-student": ("{steps} steps", "loss {loss:.4f}"),
    "export-student": ("-> {uri}",),
}
_AT_K = re.compile(r"^(?P<name>.+)@(?P<k>\d+)$")


class LocalRunFailed(RuntimeError):
    """A task of the local run failed: kfp.local's message, and the run's full log."""

    def __init__(self, message: str, log: Path):
        super().__init__(message)
        self.log = log


@dataclass(frozen=True)
class Stage:
    name: str  # the task's display name (pipeline.STAGES)
    fanout: bool  # inside a ParallelFor: its tasks share one line


def stages_of(spec: PipelineSpec) -> dict[str, Stage]:
    """kfp.local task folder name (component name less "comp-") -> Stage, from a PipelineSpec."""
    found: dict[str, Stage] = {}

    def walk(dag, in_loop: bool) -> None:
        for name, task in dag.tasks.items():
            component = spec.components[task.component_ref.name]
            if component.WhichOneof("implementation") == "dag":
                walk(component.dag, in_loop or task.WhichOneof("iterator") is not None)
            else:
                folder = task.component_ref.name.removeprefix("comp-")
                found[folder] = Stage(task.task_info.name or name, in_loop)

    walk(spec.root.dag, False)
    return found


def read_outputs(task_root: Path) -> dict[str, object]:
    """The metadata of a task's output artifacts, merged (Metrics last); {} if there is none."""
    try:
        artifacts = json.loads((task_root / "executor_output.json").read_text())["artifacts"]
        merged: dict[str, object] = {}
        for name in sorted(artifacts, key=lambda n: n == "metrics"):
            for artifact in artifacts[name]["artifacts"]:
                merged.update(artifact.get("metadata") or {})
        return merged
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def figures(stage: str, values: Mapping[str, object]) -> str:
    """The stage's key figures from its metrics; for a stage without templates, the first few."""
    # JSON keeps 90.0 steps a float; None is as good as missing
    present = {k: int(v) if isinstance(v, float) and v.is_integer() else v for k, v in values.items() if v is not None}
    fields = dict(present)
    for key, value in present.items():
        if at_k := _AT_K.match(key):  # "trained_ndcg@10": templates ask for trained_ndcg and k
            fields.setdefault(at_k["name"], value)
            fields.setdefault("k", int(at_k["k"]))
    shown = []
    for template in FIGURES.get(stage, ()):
        with contextlib.suppress(KeyError, ValueError, TypeError, IndexError, AttributeError):
            shown.append(template.format_map(fields))
    if not shown:
        shown = [f"{key} {value}" for key, value in present.items() if isinstance(value, (int, float))][:3]
    return ", ".join(shown)


class _Lines(io.TextIOBase):
    """A text stream that hands each complete line to `sink`; partial writes wait per thread."""

    def __init__(self, sink: Callable[[str], None]):
        self._sink = sink
        self._partial: dict[int, str] = {}

    @property
    def encoding(self) -> str:
        return "utf-8"

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        thread = threading.get_ident()
        *lines, rest = (self._partial.pop(thread, "") + text).split("\n")
        for line in lines:
            self._sink(line)
        if rest:
            self._partial[thread] = rest
        return len(text)

    def drain(self) -> None:
        for rest in self._partial.values():
            self._sink(rest)
        self._partial.clear()


@dataclass
class _Group:
    """A fan-out stage's tasks so far."""

    stage: str
    started: float
    done: int = 0
    ended: float = 0.0


class Reporter:
    """Writes every line to the log; prints a stage line to `out` as each stage finishes."""

    def __init__(self, stages: Mapping[str, Stage], pipeline_name: str, pipeline_root: Path, out: TextIO):
        self.stages, self.root, self.out = stages, pipeline_root, out
        self._run_prefix = pipeline_name + "-"  # kfp.local names a run's folder <pipeline>-<timestamp>
        pipeline_root.mkdir(parents=True, exist_ok=True)
        self._before = {p.name for p in pipeline_root.iterdir()}
        # Here until kfp.local has made the run's folder, then moved into it (the file stays open).
        self.log_path = pipeline_root / time.strftime(f"f2llm-run-%Y-%m-%d-%H-%M-%S-{os.getpid()}.log")
        self._log = open(self.log_path, "w", encoding="utf-8")
        self.run_dir: Path | None = None
        self.failed = False
        self._lock = threading.RLock()
        self._running: dict[int, tuple[str, float]] = {}  # thread -> its task, started
        self._tails: dict[int, collections.deque[str]] = {}  # thread -> its task's last lines (some blank)
        self._group: _Group | None = None

    def line(self, text: str) -> None:
        text = ANSI.sub("", text)
        with self._lock:
            if self._log.closed:  # a stray write after the run (a thread kfp.local left behind)
                return
            self._log.write(text + "\n")
            self._log.flush()
            thread = threading.get_ident()
            if started := EXECUTING.search(text):
                self._start(thread, started["task"])
            elif finished := FINISHED.search(text):
                self._finish(thread, finished["task"], finished["status"])
            else:
                self._tails.setdefault(thread, collections.deque(maxlen=2 * TAIL_LINES)).append(text)

    def close(self) -> None:
        with self._lock:
            self._flush_group()
            self._find_run_dir()
            self._log.close()

    def _stage(self, task: str) -> Stage:
        return self.stages.get(task, Stage(task, False))

    def _start(self, thread: int, task: str) -> None:
        now, stage = time.monotonic(), self._stage(task)
        self._running[thread] = (task, now)
        self._tails[thread] = collections.deque(maxlen=2 * TAIL_LINES)
        if self._group is not None and self._group.stage != stage.name:
            self._flush_group()
        if stage.fanout and self._group is None:
            self._group = _Group(stage.name, now)

    def _finish(self, thread: int, task: str, status: str) -> None:
        now, stage = time.monotonic(), self._stage(task)
        _, started = self._running.pop(thread, (task, now))
        self._find_run_dir()
        if self.failed:  # the run is over; later tasks (a ParallelFor's rest) only go to the log
            return
        if status != "SUCCESS":
            self.failed = True
            self._group = None
            self._print(stage.name, now - started, f"FAILED (task {task}; its last lines:)")
            tail = list(self._tails.get(thread, ()))
            while tail and not tail[-1].strip():
                tail.pop()
            for text in tail[-TAIL_LINES:]:
                self.out.write(text.rstrip() + "\n")
            self.out.flush()
        elif stage.fanout and self._group is not None:
            self._group.done += 1
            self._group.ended = now
        else:
            root = self._task_root(task)
            self._print(stage.name, now - started, figures(stage.name, read_outputs(root) if root else {}))

    def _flush_group(self) -> None:
        group, self._group = self._group, None
        if group is not None and group.done and not self.failed:
            self._print(f"{group.stage} x{group.done}", group.ended - group.started, "")

    def _print(self, label: str, seconds: float, detail: str) -> None:
        self.out.write(f"{label:<21} {seconds:7.1f} s  {detail}".rstrip() + "\n")
        self.out.flush()

    def _task_root(self, task: str) -> Path | None:
        """<run>/<task>, or <run>/<loop iteration>/<task> for a task inside a loop (the newest)."""
        if self.run_dir is None:
            return None
        if (self.run_dir / task).is_dir():
            return self.run_dir / task
        nested = sorted(self.run_dir.glob(f"*/{task}"), key=lambda p: p.stat().st_mtime)
        return nested[-1] if nested else None

    def _find_run_dir(self) -> None:
        """The folder kfp.local made for this run: new in the pipeline root since we started."""
        if self.run_dir is not None:
            return
        new = [
            p for p in self.root.iterdir()
            if p.is_dir() and p.name.startswith(self._run_prefix) and p.name not in self._before
        ]
        if not new:
            return
        self.run_dir = max(new, key=lambda p: p.stat().st_mtime)
        moved = self.run_dir / RUN_LOG
        self.log_path.replace(moved)
        self.log_path = moved


@contextlib.contextmanager
def _one_logger_context() -> Iterator[None]:
    """kfp.local's logger context for the whole run, its per-task ones made no-ops.

    Each task swaps the root logger's handlers and level (logging_utils.local_logger_context);
    a ParallelFor's threads race on that and lose or double lines (a run showed 25 "finished"
    lines for 26 tasks). All of them log to our stream anyway.
    """
    per_task = logging_utils.local_logger_context
    with per_task():
        logging_utils.local_logger_context = contextlib.nullcontext
        try:
            yield
        finally:
            logging_utils.local_logger_context = per_task


@contextlib.contextmanager
def captured_run(spec: PipelineSpec, pipeline_root: str | Path, out: TextIO | None = None) -> Iterator[Reporter]:
    """Within: sys.stdout and sys.stderr go to the log of the run of `spec` (a PipelineSpec),
    stage lines to `out` (sys.stdout as it was)."""
    reporter = Reporter(stages_of(spec), spec.pipeline_info.name, Path(pipeline_root), out or sys.stdout)
    saved = sys.stdout, sys.stderr, builtins.print
    streams = _Lines(reporter.line), _Lines(reporter.line)
    sys.stdout, sys.stderr = streams
    try:
        with _one_logger_context():  # its handler writes to sys.stdout as it is now: our stream
            yield reporter
    finally:
        # kfp.local swaps builtins.print per task too, as racily: put it back
        sys.stdout, sys.stderr, builtins.print = saved
        for stream in streams:
            stream.drain()
        reporter.close()


def strip_ansi(text: str) -> str:
    return ANSI.sub("", text)
