"""A FAKE of the Kubeflow Pipelines v2beta1 REST API, for `f2llm submit` tests only.

No KFP server can run here (it needs a Kubernetes API server), so this in-memory stand-in
answers the calls `kfp.Client` makes to register a pipeline, add versions, find or create an
experiment and start a run, in the API's JSON shapes. It enforces the constraints of KFP 2.x's
API server that a client can trip over (read in kubeflow/pipelines backend/src/apiserver):
- a pipeline is unique by (name, namespace) and a version by (pipeline, name)
  (model/pipeline.go, model/pipeline_version.go unique indexes); the multipart upload endpoints
  answer a duplicate with HTTP 409 {"error_message", "error_details"} (pipeline_upload_server.go);
- `upload` creates the first version with the pipeline's name, display name and description;
  `upload_version` needs `pipelineid` (400 without);
- multi-user mode: every call needs a bearer token, experiments need a namespace, runs execute
  in their experiment's namespace (run_server.go);
- healthz reports the release (`tag_name`), as apiserver/main.go does from the image's TAG_NAME.
It keeps what it received for asserting: uploaded package YAML per version, each run's body.
"""

from __future__ import annotations

import itertools
import json

import yaml
from fastapi import FastAPI, HTTPException, Request, UploadFile
from fastapi.responses import JSONResponse


class FakeKfpApi:
    def __init__(self, tag_name: str = "2.17.0", multi_user: bool = False, token: str | None = None) -> None:
        self.tag_name, self.multi_user, self.token = tag_name, multi_user, token
        self.pipelines: dict[str, dict] = {}
        self.versions: dict[str, list[dict]] = {}
        self.packages: dict[str, dict] = {}  # version id -> uploaded pipeline spec
        self.experiments: dict[str, dict] = {}
        self.runs: list[dict] = []
        self.uploads = 0  # package uploads that reached the store
        self._ids = (f"id-{i}" for i in itertools.count(1))
        self.app = self._routes()

    def _add_version(self, pipeline_id: str, name: str, display_name: str, description: str | None, package: bytes) -> dict:
        if any(v["name"] == name for v in self.versions.get(pipeline_id, [])):
            raise _conflict("Failed to create a pipeline version")
        version = {"pipeline_id": pipeline_id, "pipeline_version_id": next(self._ids), "name": name,
                   "display_name": display_name, "description": description or "", "created_at": "2026-11-23T00:00:00Z"}
        self.versions.setdefault(pipeline_id, []).append(version)
        self.packages[version["pipeline_version_id"]] = next(yaml.safe_load_all(package))
        self.uploads += 1
        return version

    def _routes(self) -> FastAPI:
        app = FastAPI()

        @app.exception_handler(_UploadError)
        def upload_error(_, error: _UploadError):
            return JSONResponse({"error_message": error.message, "error_details": error.message}, status_code=error.status)

        @app.middleware("http")
        async def authenticate(request: Request, call_next):
            if self.token and request.headers.get("authorization") != f"Bearer {self.token}":
                return JSONResponse({"code": 16, "message": "Unauthenticated: no valid token"}, status_code=401)
            return await call_next(request)

        def matching(items, filter_json: str | None, key: str):
            if not filter_json:
                return list(items)
            predicate = json.loads(filter_json)["predicates"][0]
            wanted = predicate.get("string_value", predicate.get("stringValue"))
            return [i for i in items if i[key] == wanted]

        def namespace_of(namespace: str | None) -> str:
            return (namespace or "") if self.multi_user else ""  # single-user: ReplaceNamespace -> ""

        @app.get("/apis/v2beta1/healthz")
        def healthz():
            return {"commit_sha": "0" * 40, "tag_name": self.tag_name, "multi_user": self.multi_user,
                    "pipeline_store": "database"}

        @app.get("/apis/v2beta1/pipelines")
        def list_pipelines(filter: str | None = None, namespace: str | None = None):
            ns = namespace_of(namespace)
            found = [p for p in matching(self.pipelines.values(), filter, "display_name") if p["namespace"] in (ns, "")]
            return {"pipelines": found, "total_size": len(found)} if found else {}

        @app.post("/apis/v2beta1/pipelines/upload")
        async def upload(uploadfile: UploadFile, name: str | None = None, display_name: str | None = None,
                         description: str | None = None, namespace: str | None = None):
            name = name or display_name or uploadfile.filename
            ns = namespace_of(namespace)
            if any(p["name"] == name and p["namespace"] == ns for p in self.pipelines.values()):
                raise _conflict("Failed to create a pipeline and a pipeline version")
            pipeline = {"pipeline_id": next(self._ids), "name": name, "display_name": display_name or name,
                        "description": description or "", "namespace": ns, "created_at": "2026-11-23T00:00:00Z"}
            self.pipelines[pipeline["pipeline_id"]] = pipeline
            self._add_version(pipeline["pipeline_id"], name, pipeline["display_name"], description, await uploadfile.read())
            return pipeline

        @app.post("/apis/v2beta1/pipelines/upload_version")
        async def upload_version(uploadfile: UploadFile, pipelineid: str | None = None, name: str | None = None,
                                 display_name: str | None = None, description: str | None = None):
            if not pipelineid or pipelineid not in self.pipelines:
                raise _UploadError(400, "Failed to create a pipeline version: pipeline ID is required")
            name = name or display_name or uploadfile.filename
            return self._add_version(pipelineid, name, display_name or name, description, await uploadfile.read())

        @app.get("/apis/v2beta1/pipelines/{pipeline_id}/versions")
        def list_versions(pipeline_id: str, page_size: int = 10, page_token: str = ""):
            found = self.versions.get(pipeline_id, [])
            start = int(page_token or 0)
            page = found[start:start + page_size]
            more = start + page_size < len(found)
            return {"pipeline_versions": page, "total_size": len(found),
                    **({"next_page_token": str(start + page_size)} if more else {})}

        @app.get("/apis/v2beta1/experiments")
        def list_experiments(filter: str | None = None, namespace: str | None = None):
            ns = namespace_of(namespace)
            found = [e for e in matching(self.experiments.values(), filter, "display_name") if e["namespace"] == ns]
            return {"experiments": found, "total_size": len(found)} if found else {}

        @app.post("/apis/v2beta1/experiments")
        async def create_experiment(request: Request):
            body = await request.json()
            if self.multi_user and not body.get("namespace"):
                raise HTTPException(400, "Invalid input error: experiment namespace cannot be empty in multi-user mode")
            experiment = {"experiment_id": next(self._ids), "display_name": body["display_name"],
                          "namespace": namespace_of(body.get("namespace"))}
            self.experiments[experiment["experiment_id"]] = experiment
            return experiment

        @app.post("/apis/v2beta1/runs")
        async def create_run(request: Request):
            body = await request.json()
            experiment = self.experiments.get(body.get("experiment_id"))
            if self.multi_user and experiment is None:
                raise HTTPException(400, "Invalid input error: a run cannot have an empty namespace in multi-user mode")
            run = {**body, "run_id": next(self._ids), "state": "PENDING",
                   "namespace": experiment["namespace"] if experiment else ""}
            self.runs.append(run)
            return run

        return app

    def serve(self, port: int):
        from conftest import serve_app

        return serve_app(self.app, port)


class _UploadError(Exception):
    def __init__(self, status: int, message: str) -> None:
        self.status, self.message = status, message


def _conflict(message: str) -> _UploadError:
    return _UploadError(409, message)
