"""`f2llm submit`: compile the pipeline for a config, register it with Kubeflow Pipelines and start a run.

Through `kfp.Client` (the KFP REST API), as KFP 2.x's API server behaves:
- The backend must be >= 2.14 (`dsl.Collected` over artifacts, the per-language fan-in): read
  from healthz's `tag_name`; an older one is refused before anything is uploaded.
- Registration is idempotent. A pipeline is unique by (name, namespace) and a version by
  (pipeline, name): the API answers 409 AlreadyExists to a second upload. Each upload carries
  the package's sha256 in its description (the first version copies the pipeline's), so an
  unchanged package is found and not uploaded again; a changed one becomes version
  `<name>-<digest>`. A 409 from a concurrent upload of the same digest is success.
- Multi-user KFP: pipelines, experiments and runs live in the profile namespace (`--namespace`);
  in a pod, the token is the projected service-account token (audience pipelines.kubeflow.org,
  KF_PIPELINES_SA_TOKEN_PATH); from a laptop, KFP_TOKEN. Never from the command line.
- A run gets the config as its parameter; `cluster.pipeline_root`, when set, as its pipeline
  root (KFP reads the root per run, else from its own kfp-launcher; README, "Namespaces").

`--set key.path=value` overrides config fields for this run only (values are YAML).
`upload_sample` copies a local directory (the bundled sample) to the config's `data.uri` first.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml

from f2llm.config import ClusterConfig, RunConfig

MIN_KFP = (2, 14)


@dataclass(frozen=True)
class Submitted:
    pipeline_id: str
    version_id: str
    uploaded: bool  # False: this package was registered already
    experiment_id: str | None = None  # None: registered only
    run_id: str | None = None


class KfpTooOld(RuntimeError):
    pass


def apply_overrides(cfg: RunConfig, overrides: list[str]) -> RunConfig:
    """`a.b.c=value` pairs (values are YAML) onto a validated config, validated again."""
    values = {}
    for item in overrides:
        path, sep, raw = item.partition("=")
        if not sep or not path:
            raise ValueError(f"override {item!r} is not key.path=value")
        values[path] = yaml.safe_load(raw)
    return cfg.with_values(values)


def kfp_pipeline_root(cluster: ClusterConfig) -> str | None:
    """The run's pipeline root with the store's endpoint as query parameters: with no `providers`
    in kfp-launcher, KFP's launcher opens the bucket through gocloud's s3blob with credentials from
    the task's environment (our Secret's keys) and these parameters (gocloud >= 0.40 names)."""
    if not cluster.pipeline_root:
        return None
    if not cluster.s3_endpoint:
        return cluster.pipeline_root
    query = f"endpoint={cluster.s3_endpoint}&region={cluster.s3_region}&use_path_style=true"
    if cluster.s3_endpoint.startswith("http://"):
        query += "&disable_https=true"
    return f"{cluster.pipeline_root}?{query}"


def _client(host: str, namespace: str | None):
    import kfp
    from kfp.client.set_volume_credentials import ServiceAccountTokenVolumeCredentials

    token, token_file = os.environ.get("KFP_TOKEN"), os.environ.get("KF_PIPELINES_SA_TOKEN_PATH")
    credentials = ServiceAccountTokenVolumeCredentials(token_file) if token_file and not token else None
    return kfp.Client(host=host, existing_token=token, credentials=credentials, namespace=namespace or "kubeflow")


def backend_version(client) -> tuple[int, ...] | None:
    """KFP's release from healthz's `tag_name` (the generated client model drops it: read raw)."""
    api_client = client._healthz_api.api_client  # the configured host and credentials
    response = api_client.call_api("/apis/v2beta1/healthz", "GET", auth_settings=["Bearer"],
                                   _preload_content=False, _return_http_data_only=True)
    tag = json.loads(response.data).get("tag_name", "")
    found = re.match(r"v?(\d+)\.(\d+)(?:\.(\d+))?", tag)
    return tuple(int(x) for x in found.groups() if x is not None) if found else None


def check_backend(client) -> None:
    version = backend_version(client)
    if version is not None and version[:2] < MIN_KFP:
        raise KfpTooOld(f"Kubeflow Pipelines {'.'.join(map(str, version))} is too old: the pipeline's per-language "
                        f"fan-in (dsl.Collected over artifacts) needs >= {'.'.join(map(str, MIN_KFP))}")


def _find_pipeline(client, name: str, namespace: str | None) -> str | None:
    found = client.list_pipelines(namespace=namespace, filter=json.dumps(
        {"predicates": [{"operation": "EQUALS", "key": "display_name", "stringValue": name}]})).pipelines or []
    return found[0].pipeline_id if found else None


def _versions(client, pipeline_id: str):
    token = ""
    while True:
        page = client.list_pipeline_versions(pipeline_id, page_token=token, page_size=100)
        yield from page.pipeline_versions or []
        token = page.next_page_token
        if not token:
            return


def register(client, package: Path, name: str, namespace: str | None) -> tuple[str, str, bool]:
    """-> (pipeline id, version id, uploaded): idempotent, as the module docstring says."""
    from kfp_server_api.exceptions import ApiException

    digest = hashlib.sha256(package.read_bytes()).hexdigest()[:12]
    description = f"F2LLM-v2 pipeline, package sha256 {digest}"
    pipeline_id = _find_pipeline(client, name, namespace)
    if pipeline_id is None:
        try:
            pipeline = client.upload_pipeline(str(package), pipeline_name=name, description=description, namespace=namespace)
            first = next(_versions(client, pipeline.pipeline_id))
            return pipeline.pipeline_id, first.pipeline_version_id, True
        except ApiException as error:
            if error.status != 409:  # another registration won the race: go on with it
                raise
            pipeline_id = _find_pipeline(client, name, namespace)
    for version in _versions(client, pipeline_id):
        if digest in (version.description or ""):
            return pipeline_id, version.pipeline_version_id, False
    version_name = f"{name}-{digest}"
    try:
        version = client.upload_pipeline_version(str(package), version_name, pipeline_id=pipeline_id,
                                                 description=description)
        return pipeline_id, version.pipeline_version_id, True
    except ApiException as error:
        if error.status != 409:
            raise
    found = next(v for v in _versions(client, pipeline_id) if v.display_name == version_name or digest in (v.description or ""))
    return pipeline_id, found.pipeline_version_id, False


def submit(
    cfg: RunConfig, host: str, experiment: str = "f2llm", run_name: str | None = None, start_run: bool = True,
    namespace: str | None = None, service_account: str | None = None, upload_sample: str | Path | None = None,
) -> Submitted:
    from f2llm import storage
    from f2llm.components.pipeline import compile_pipeline

    client = _client(host, namespace)
    check_backend(client)
    if upload_sample is not None:
        storage.upload_dir(upload_sample, cfg.data.uri)
    with tempfile.TemporaryDirectory(prefix="f2llm-submit-") as tmp:
        package = compile_pipeline(cfg, Path(tmp) / f"{cfg.name}.yaml")
        pipeline_id, version_id, uploaded = register(client, package, cfg.name, namespace)
    if not start_run:  # what the Helm chart's registration Job does
        return Submitted(pipeline_id, version_id, uploaded)
    experiment_id = client.create_experiment(experiment, namespace=namespace).experiment_id
    run = client.run_pipeline(
        experiment_id=experiment_id, job_name=run_name or f"{cfg.name}-run",
        params={"config_json": cfg.model_dump_json()}, pipeline_id=pipeline_id, version_id=version_id,
        pipeline_root=kfp_pipeline_root(cfg.cluster), service_account=service_account,
    )
    return Submitted(pipeline_id, version_id, uploaded, experiment_id, run.run_id)
