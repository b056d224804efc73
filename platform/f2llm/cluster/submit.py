"""`f2llm submit`: compile the pipeline for a config, register it with Kubeflow Pipelines and start a run.

Through `kfp.Client` (the KFP REST API): the pipeline is found by its name (the run config's
`name`); a new one is uploaded, or a new version of an existing one; the run starts in an
experiment with `config_json` as its parameter. `--set key.path=value` overrides config fields
for this run only (values are YAML: numbers, lists, null). A token for a secured endpoint comes
from the environment (KFP_TOKEN), never from the command line.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml

from f2llm.config import RunConfig


@dataclass(frozen=True)
class Submitted:
    pipeline_id: str
    version_id: str
    experiment_id: str | None = None  # None: registered only
    run_id: str | None = None


def apply_overrides(cfg: RunConfig, overrides: list[str]) -> RunConfig:
    """`a.b.c=value` pairs onto a validated config, validated again."""
    data = cfg.model_dump(mode="json")
    for item in overrides:
        path, sep, raw = item.partition("=")
        if not sep or not path:
            raise ValueError(f"override {item!r} is not key.path=value")
        node = data
        *parents, leaf = path.split(".")
        for key in parents:
            if not isinstance(node.get(key), dict):
                raise ValueError(f"override {item!r}: {key!r} is not a section of the config")
            node = node[key]
        node[leaf] = yaml.safe_load(raw)
    return RunConfig.model_validate(data)


def submit(
    cfg: RunConfig, host: str, experiment: str = "f2llm", run_name: str | None = None, start_run: bool = True,
) -> Submitted:
    import kfp

    from f2llm.components.pipeline import compile_pipeline

    client = kfp.Client(host=host, existing_token=os.environ.get("KFP_TOKEN"))
    with tempfile.TemporaryDirectory(prefix="f2llm-submit-") as tmp:
        package = compile_pipeline(cfg, Path(tmp) / f"{cfg.name}.yaml")
        digest = hashlib.sha256(package.read_bytes()).hexdigest()[:12]
        pipeline_id = client.get_pipeline_id(cfg.name)
        if pipeline_id is None:
            pipeline_id = client.upload_pipeline(str(package), pipeline_name=cfg.name).pipeline_id
            versions = client.list_pipeline_versions(pipeline_id).pipeline_versions
            version_id = versions[0].pipeline_version_id
        else:  # same name: a new version, named after the package's content
            version_id = client.upload_pipeline_version(
                str(package), pipeline_version_name=f"{cfg.name}-{digest}", pipeline_id=pipeline_id
            ).pipeline_version_id
    if not start_run:  # what the Helm chart's registration Job does
        return Submitted(pipeline_id, version_id)
    experiment_id = client.create_experiment(experiment).experiment_id
    run = client.run_pipeline(
        experiment_id=experiment_id, job_name=run_name or f"{cfg.name}-{digest}",
        params={"config_json": cfg.model_dump_json()}, pipeline_id=pipeline_id, version_id=version_id,
    )
    return Submitted(pipeline_id, version_id, experiment_id, run.run_id)
