"""A FAKE of the Kubeflow Pipelines v2beta1 REST API, for `f2llm submit` tests only.

No KFP server can run here (it needs a Kubernetes API server), so this in-memory stand-in
answers the calls `kfp.Client` makes to register a pipeline, add versions, find or create an
experiment and start a run, in the API's JSON shapes. It keeps what it received for asserting:
uploaded package YAML per version, and each run's request body.
"""

from __future__ import annotations

import itertools
import json
import threading
import time

import uvicorn
import yaml
from fastapi import FastAPI, Request, UploadFile


class FakeKfpApi:
    def __init__(self) -> None:
        self.pipelines: dict[str, dict] = {}
        self.versions: dict[str, list[dict]] = {}
        self.packages: dict[str, dict] = {}  # version id -> uploaded pipeline spec
        self.experiments: dict[str, dict] = {}
        self.runs: list[dict] = []
        self._ids = (f"id-{i}" for i in itertools.count(1))
        self.app = self._routes()

    def _add_version(self, pipeline_id: str, name: str, package: bytes) -> dict:
        version = {"pipeline_id": pipeline_id, "pipeline_version_id": next(self._ids), "display_name": name,
                   "created_at": "2026-11-23T00:00:00Z"}
        self.versions.setdefault(pipeline_id, []).append(version)
        self.packages[version["pipeline_version_id"]] = next(yaml.safe_load_all(package))
        return version

    def _routes(self) -> FastAPI:
        app = FastAPI()

        def matching(items, filter_json: str | None, key: str):
            if not filter_json:
                return list(items)
            wanted = json.loads(filter_json)["predicates"][0]["string_value" if "string_value" in filter_json else "stringValue"]
            return [i for i in items if i[key] == wanted]

        @app.get("/apis/v2beta1/healthz")
        def healthz():
            return {"multi_user": False, "pipeline_store": "database"}

        @app.get("/apis/v2beta1/pipelines")
        def list_pipelines(filter: str | None = None):
            found = matching(self.pipelines.values(), filter, "display_name")
            return {"pipelines": found, "total_size": len(found)} if found else {}

        @app.post("/apis/v2beta1/pipelines/upload")
        async def upload(uploadfile: UploadFile, name: str | None = None, display_name: str | None = None):
            pipeline = {"pipeline_id": next(self._ids), "display_name": display_name or name, "created_at": "2026-11-23T00:00:00Z"}
            self.pipelines[pipeline["pipeline_id"]] = pipeline
            self._add_version(pipeline["pipeline_id"], pipeline["display_name"], await uploadfile.read())
            return pipeline

        @app.post("/apis/v2beta1/pipelines/upload_version")
        async def upload_version(uploadfile: UploadFile, pipelineid: str, name: str | None = None,
                                 display_name: str | None = None):
            return self._add_version(pipelineid, display_name or name, await uploadfile.read())

        @app.get("/apis/v2beta1/pipelines/{pipeline_id}/versions")
        def list_versions(pipeline_id: str):
            found = list(reversed(self.versions.get(pipeline_id, [])))  # newest first
            return {"pipeline_versions": found, "total_size": len(found)}

        @app.get("/apis/v2beta1/experiments")
        def list_experiments(filter: str | None = None, namespace: str | None = None):
            found = matching(self.experiments.values(), filter, "display_name")
            return {"experiments": found, "total_size": len(found)} if found else {}

        @app.post("/apis/v2beta1/experiments")
        async def create_experiment(request: Request):
            body = await request.json()
            experiment = {"experiment_id": next(self._ids), "display_name": body["display_name"]}
            self.experiments[experiment["experiment_id"]] = experiment
            return experiment

        @app.post("/apis/v2beta1/runs")
        async def create_run(request: Request):
            body = await request.json()
            run = {**body, "run_id": next(self._ids), "state": "PENDING"}
            self.runs.append(run)
            return run

        return app

    def serve(self, port: int) -> uvicorn.Server:
        server = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=port, log_level="warning"))
        threading.Thread(target=server.run, daemon=True).start()
        while not server.started:
            time.sleep(0.05)
        return server
