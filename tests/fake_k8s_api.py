"""A FAKE of the Kubernetes API server's REST endpoints for a custom resource (`FakeCustomResourceApi`),
and on it KServe InferenceServices with a FAKE KServe controller writing their status
(`FakeKubernetesApi`, for deploy-step tests; `fake_trainer_api.py` does Kubeflow Trainer's TrainJobs).

No Kubernetes API server (nor KServe) can run here, so this in-memory stand-in serves
/apis/serving.kserve.io/v1beta1/namespaces/{ns}/inferenceservices[/{name}] to the official
`kubernetes` client and refuses what the real server refuses, in its Status shapes, so that a
wrong client fails. Read against kubernetes/apimachinery (pkg/api/errors/errors.go,
pkg/util/validation), kubernetes/apiserver (endpoints/handlers/{create,update,patch,delete,rest}.go,
registry/generic/registry/store.go, the NamespaceLifecycle admission plugin, the RBAC message in
responsewriters/errors.go), kubernetes/apiextensions-apiserver (registry/customresource/
{strategy,validator}.go, the CRD patch types) and kserve/kserve (v1beta1 inference_service_validation.go
and inference_service_status.go, the CRD's schema, the controller's finalizer); a KServe webhook
denial is a 403, as controller-runtime's admission.Denied makes it. Not modelled: watch, dryRun,
server-side apply, field selectors, managedFields, KServe's defaulting webhook, /status writes.

The controller is driven by reads, not by time: each spec change makes it write an in-progress
status at once (its own write, so the resourceVersion the client got back is already stale, as on
a real cluster); the `ready_after`-th GET or list reading the object after that change is the first
to see it Ready, or failed if `fail_storage` matches its storageUri.
"""

from __future__ import annotations

import copy
import datetime
import json
import random
import re
import threading
import uuid

import yaml
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

SUBDOMAIN = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"  # NameIsDNSSubdomain, <= 253
ISVC_NAME = "[a-z]([-a-z0-9]*[a-z0-9])?"  # KServe's IsvcNameFmt (its webhook sets no length limit)
PATCH_TYPES = ["application/json-patch+json", "application/merge-patch+json", "application/apply-patch+yaml"]
SERVER_META = ("uid", "creationTimestamp", "generation", "resourceVersion", "namespace")
CONDITIONS = ("IngressReady", "LatestDeploymentReady", "PredictorConfigurationReady", "PredictorReady",
              "PredictorRouteReady", "Ready", "RoutesReady")  # a ready serverless predictor-only ISVC, sorted
INFO = ("LatestDeploymentReady", "PredictorConfigurationReady", "PredictorRouteReady", "RoutesReady")
# Messages worded as the real components word them.
SUBDOMAIN_MSG = ("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must "
                 f"start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '{SUBDOMAIN}')")
WEBHOOK_MSG = ('admission webhook "inferenceservice.kserve-webhook-server.validator" denied the request: the InferenceService "{}" '
               "is invalid: a InferenceService name must consist of lower case alphanumeric characters or '-', and must start "
               f"with alphabetical character. (e.g. \"my-name\" or \"abc-123\", regex used for validation is '{ISVC_NAME}')")
CONFLICT_MSG = "the object has been modified; please apply your changes to the latest version and try again"
FORBIDDEN_MSG = 'User "{}" cannot {} resource "{}" in API group "{}" in the namespace "{}"'
NAMESPACE_MSG = "the namespace of the provided object does not match the namespace sent on the request"


class ApiError(Exception):
    """A metav1.Status as apimachinery's errors.go builds it (empty fields omitted)."""

    def __init__(self, code: int, reason: str, message: str, **details):
        super().__init__(message)
        self.code = code
        self.body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
                     **({"reason": reason} if reason else {}), "code": code}
        if details := {k: v for k, v in details.items() if v}:
            self.body["details"] = details


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def invalid(name: str, errs: list[tuple[str, str, str]], kind: str, group: str) -> ApiError:
    """errs: (cause type, field, field.Error.ErrorBody()); NewInvalid aggregates them into the message."""
    msgs = [f"{field}: {body}" for _, field, body in errs]
    return ApiError(422, "Invalid", f'{kind and kind + "." + group} "{name}" is invalid: '
                    + (msgs[0] if len(msgs) == 1 else "[" + ", ".join(msgs) + "]"), name=name,
                    group=kind and group, kind=kind, causes=[{"reason": t, "message": b, "field": f} for t, f, b in errs])


def merge_patch(target, patch):
    """RFC 7386: objects merge recursively, null deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return patch
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class FakeCustomResourceApi:
    """The API server's side of one namespaced custom resource (GROUP/VERSION/PLURAL of KIND):
    authentication, RBAC, create/get/list/update/patch/delete with their errors. A subclass is the
    FAKE controller: `_validate_spec` (schema, webhooks), `_reconcile` (after a spec change),
    `_read` (a read: the controller may move on) and `_extra_route` (other paths it serves)."""

    GROUP = VERSION = PLURAL = KIND = ""

    def __init__(self, namespaces=("default",), token: str = "fake-token",
                 user: str = "system:serviceaccount:default:f2llm-deployer", allowed: set | None = None):
        self.namespaces, self.token, self.user = set(namespaces), token, user
        self.allowed = allowed  # RBAC: {(namespace, verb)} the token may use; None allows everything
        self.objects: dict[tuple[str, str], dict] = {}  # (namespace, name) -> stored object
        self.requests: list[dict] = []  # every request: method, path, query, content_type, body
        self.resource_version = 1000  # etcd's revision: one counter for every write
        self._lock = threading.Lock()
        self.app = self._routes()

    @property
    def api_version(self) -> str:
        return f"{self.GROUP}/{self.VERSION}"

    @property
    def resource(self) -> str:  # schema.GroupResource.String()
        return f"{self.PLURAL}.{self.GROUP}"

    def write_kubeconfig(self, path, host: str, namespace: str, token: str | None = None) -> None:
        config = {"apiVersion": "v1", "kind": "Config", "current-context": "fake",
                  "clusters": [{"name": "fake", "cluster": {"server": host}}],
                  "users": [{"name": "fake-user", "user": {"token": token or self.token}}],
                  "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake-user", "namespace": namespace}}]}
        with open(path, "w") as f:
            yaml.safe_dump(config, f)

    # -- the API server -----------------------------------------------------------------------------
    def _write(self, obj: dict) -> dict:
        self.resource_version += 1
        obj["metadata"]["resourceVersion"] = str(self.resource_version)
        self.objects[(obj["metadata"]["namespace"], obj["metadata"]["name"])] = obj
        return copy.deepcopy(obj)

    def _get(self, ns: str, name: str) -> dict:
        if (ns, name) not in self.objects:
            raise ApiError(404, "NotFound", f'{self.resource} "{name}" not found', name=name, group=self.GROUP, kind=self.PLURAL)
        return copy.deepcopy(self.objects[(ns, name)])

    def _invalid(self, name: str, errs: list[tuple[str, str, str]]) -> ApiError:
        return invalid(name, errs, self.KIND, self.GROUP)

    def _validate(self, obj: dict, name: str) -> None:
        if obj.get("kind") != self.KIND:  # customresource validator.go ValidateTypeMeta
            raise self._invalid(name, [("FieldValueInvalid", "kind",
                                        f"Invalid value: {json.dumps(obj.get('kind'))}: must be {self.KIND}")])
        errs = []
        if not name:
            errs.append(("FieldValueRequired", "metadata.name", "Required value: name or generateName is required"))
        elif len(name) > 253 or not re.fullmatch(SUBDOMAIN, name):
            errs.append(("FieldValueInvalid", "metadata.name", f"Invalid value: {json.dumps(name)}: {SUBDOMAIN_MSG}"))
        errs += self._schema_errors(obj)
        if errs:
            raise self._invalid(name, errs)
        self._admit(obj, name)

    def _schema_errors(self, obj: dict) -> list[tuple[str, str, str]]:
        """The CRD's schema and CEL rules, as (cause type, field, message) (a subclass's)."""
        return []

    def _admit(self, obj: dict, name: str) -> None:
        """The validating admission webhooks, after the schema (a subclass's)."""

    def _reconcile(self, ns: str, name: str) -> None:
        """The controller, after a spec change (a subclass's)."""

    def _read(self, ns: str, name: str) -> dict:
        return self._get(ns, name)

    def _deleted(self, ns: str, name: str) -> None:
        """The object is gone (a subclass forgets what it tracked)."""

    def _extra_route(self, method: str, path: str, query) -> object | None:
        """A response for a path outside the custom resource, or None: 404 (a subclass's)."""
        return None

    def _create(self, ns: str, obj: dict) -> dict:
        meta = obj.setdefault("metadata", {})
        if ns not in self.namespaces:  # NamespaceLifecycle admission: only create is refused this way
            raise ApiError(404, "NotFound", f'namespaces "{ns}" not found', name=ns, kind="namespaces")
        if meta.get("namespace", ns) != ns:
            raise bad_request(NAMESPACE_MSG)
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + "".join(random.choices("bcdfghjklmnpqrstvwxz2456789", k=5))
        name = meta.get("name", "")
        obj.pop("status", None)  # status subresource: create cannot set status
        self._validate(obj, name)
        if (ns, name) in self.objects:
            raise ApiError(409, "AlreadyExists", f'{self.resource} "{name}" already exists', name=name, group=self.GROUP,
                           kind=self.PLURAL)
        if meta.get("resourceVersion"):  # etcd3 store.Create; not an APIStatus error, hence a bare 500
            raise ApiError(500, "", "resourceVersion should not be set on objects to be created")
        meta.update(namespace=ns, uid=str(uuid.uuid4()), creationTimestamp=now(), generation=1)
        written = self._write(obj)
        self._reconcile(ns, name)
        return written

    def _update(self, ns: str, name: str, new: dict, old: dict) -> dict:
        """store.Update + customResourceStrategy.PrepareForUpdate: status kept, generation on non-metadata change."""
        meta = new.setdefault("metadata", {})
        if meta.get("name") != name:  # handlers/rest.go checkName
            raise bad_request(f"the name of the object ({meta.get('name', '')}) does not match the name on the URL ({name})")
        if meta.get("namespace", ns) != ns:
            raise bad_request(NAMESPACE_MSG)
        if not meta.get("resourceVersion"):  # CRs: AllowUnconditionalUpdate() is false
            raise invalid(name, [("FieldValueInvalid", "metadata.resourceVersion",
                                  "Invalid value: 0: must be specified for an update")], self.PLURAL, self.GROUP)
        if meta["resourceVersion"] != old["metadata"]["resourceVersion"]:
            raise ApiError(409, "Conflict", f'Operation cannot be fulfilled on {self.resource} "{name}": {CONFLICT_MSG}',
                           name=name, group=self.GROUP, kind=self.PLURAL)
        meta.update({k: old["metadata"][k] for k in SERVER_META})
        new.pop("status", None)
        new.update({"status": old["status"]} if "status" in old else {})
        self._validate(new, name)
        if new == old:  # GuaranteedUpdate skips a write that changes nothing: resourceVersion stays
            return new
        spec_changed = {k: v for k, v in new.items() if k != "metadata"} != {k: v for k, v in old.items() if k != "metadata"}
        meta["generation"] += spec_changed
        written = self._write(new)
        if spec_changed:
            self._reconcile(ns, name)
        return written

    # -- HTTP ---------------------------------------------------------------------------------------
    def _handle(self, method: str, ns: str, name: str, query, content_type: str, body):
        verb = {"GET": "get" if name else "list", "POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}[method]
        if self.allowed is not None and (ns, verb) not in self.allowed:  # RBAC; responsewriters.ForbiddenStatusError
            who = f'{self.resource} "{name}"' if name else self.resource
            raise ApiError(403, "Forbidden", f"{who} is forbidden: "
                           + FORBIDDEN_MSG.format(self.user, verb, self.PLURAL, self.GROUP, ns),
                           name=name, group=self.GROUP, kind=self.PLURAL)
        for unsupported in ("dryRun", "watch"):
            if unsupported in query:
                raise bad_request(f"FAKE Kubernetes API: {unsupported} is not implemented")
        if method in ("POST", "PUT") and (body or {}).get("apiVersion") != self.api_version:  # handlers/create.go, update.go
            raise bad_request(f"the API version in the data ({(body or {}).get('apiVersion', '')}) does not match the "
                              f"expected API version ({self.api_version})")
        if method == "GET" and not name:
            terms = [term.replace("==", "=") for term in query.get("labelSelector", "").split(",") if term]
            if any("=" not in term or "!=" in term for term in terms):
                raise bad_request("FAKE Kubernetes API: only equality label selectors (k=v,...) are implemented")
            wanted = dict(term.split("=", 1) for term in terms)
            items = [self._read(n, i) for n, i in sorted(self.objects) if n == ns]
            return {"apiVersion": self.api_version, "kind": f"{self.KIND}List", "metadata": {"resourceVersion": str(self.resource_version)},
                    "items": [o for o in items if all(o["metadata"].get("labels", {}).get(k) == v for k, v in wanted.items())]}
        if method == "POST":
            return self._create(ns, body)
        if method == "GET":
            return self._read(ns, name)
        old = self._get(ns, name)  # PUT / PATCH / DELETE of a missing object: 404 (no create-on-update for CRs)
        if method == "PUT":
            return self._update(ns, name, body, old)
        if method == "DELETE":
            del self.objects[(ns, name)]
            self._deleted(ns, name)
            if not old["metadata"].get("finalizers"):
                return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                        "details": {"name": name, "group": self.GROUP, "kind": self.PLURAL, "uid": old["metadata"]["uid"]}}
            self.resource_version += 1  # marked for deletion, then KServe drops its finalizer and the object is gone
            old["metadata"].update(deletionTimestamp=now(), deletionGracePeriodSeconds=0, resourceVersion=str(self.resource_version))
            return old
        if content_type not in PATCH_TYPES[:2]:  # CRDs: no strategic merge patch (customresource_handler.go)
            if content_type == PATCH_TYPES[2]:
                raise bad_request("FAKE Kubernetes API: server-side apply is not implemented")
            raise ApiError(415, "UnsupportedMediaType", "the body of the request was in an unknown format - accepted "
                           "media types include: " + ", ".join(PATCH_TYPES))
        if content_type == PATCH_TYPES[1] and not isinstance(body, dict):  # MergePatch returns the non-object itself
            json_type = {"list": "array", "str": "string", "int": "number", "float": "number"}.get(type(body).__name__, "bool")
            why = f"json: cannot unmarshal {json_type} into Go value of type map[string]interface {{}}"
            raise invalid("", [("FieldValueInvalid", "patch", f"Invalid value: {json.dumps(json.dumps(body))}: {why}")], kind="", group="")
        if content_type == PATCH_TYPES[0] and not isinstance(body, list):  # jsonpatch.DecodePatch fails: 400
            raise bad_request("json: cannot unmarshal object into Go value of type jsonpatch.Patch")
        if content_type == PATCH_TYPES[1]:
            return self._update(ns, name, merge_patch(old, body), old)
        import jsonpatch  # RFC 6902 in full; installed with moto[server] (through cfn-lint)

        try:
            new = jsonpatch.apply_patch(old, body)
        except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as err:  # patch.go: Apply fails, 422
            raise ApiError(422, "Invalid", "the server rejected our request due to an error in our request") from err
        return self._update(ns, name, new, old)

    def _routes(self) -> FastAPI:
        app = FastAPI()

        @app.api_route("/{path:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
        async def route(path: str, request: Request):
            raw = (await request.body()).decode()
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = raw
            content_type = (request.headers.get("content-type") or "").split(";")[0].strip()
            self.requests.append({"method": request.method, "path": "/" + path, "query": dict(request.query_params),
                                  "content_type": content_type, "body": body})
            match = re.fullmatch(f"apis/{self.GROUP}/{self.VERSION}/namespaces/([^/]+)/{self.PLURAL}(?:/([^/]+))?", path)
            try:
                if request.headers.get("authorization") != f"Bearer {self.token}":  # filters/authentication.go
                    raise ApiError(401, "Unauthorized", "Unauthorized")
                if not match:
                    with self._lock:
                        extra = self._extra_route(request.method, path, request.query_params)
                    if extra is not None:
                        return extra
                if not match or request.method not in (("GET", "PUT", "PATCH", "DELETE") if match.group(2) else ("GET", "POST")):
                    raise ApiError(404, "NotFound", "the server could not find the requested resource "
                                   f"(FAKE Kubernetes API: {request.method} /{path} is not served)")
                if isinstance(body, str):
                    raise bad_request(f"the object provided is unrecognized: {body[:80]!r} is not JSON")
                with self._lock:
                    result = self._handle(request.method, match.group(1), match.group(2) or "", request.query_params,
                                          content_type, copy.deepcopy(body))
                return JSONResponse(result, status_code=201 if request.method == "POST" else 200)
            except ApiError as err:
                return JSONResponse(err.body, status_code=err.code)

        return app

    def serve(self, port: int):
        from conftest import serve_app

        return serve_app(self.app, port)


class FakeKubernetesApi(FakeCustomResourceApi):
    """InferenceServices, with the FAKE KServe controller (module docstring)."""

    GROUP, VERSION, PLURAL, KIND = "serving.kserve.io", "v1beta1", "inferenceservices", "InferenceService"

    def __init__(self, namespaces=("default",), token: str = "fake-token", ready_after: int = 2,
                 user: str = "system:serviceaccount:default:f2llm-deployer", allowed: set | None = None):
        super().__init__(namespaces, token, user, allowed)
        self.ready_after = ready_after
        self.failures: list[tuple[str, str, str]] = []  # (storageUri prefix, reason, message)
        self._reads: dict[tuple[str, str], int] = {}  # reads since the last spec change, while rolling out
        self._revisions: dict[tuple[str, str], tuple[dict, int]] = {}  # Knative: template -> revision number

    def fail_storage(self, prefix: str, reason: str = "ModelLoadFailed",
                     message: str = "the storage initializer could not download the model") -> None:
        """Rollouts of a spec.predictor.model.storageUri starting with prefix fail and never become ready."""
        self.failures.append((prefix, reason, message))

    def _schema_errors(self, obj: dict) -> list[tuple[str, str, str]]:
        if not isinstance((obj.get("spec") or {}).get("predictor"), dict):  # CRD schema: spec.required: [predictor]
            return [("FieldValueRequired", "spec.predictor", "Required value")]
        return []

    def _admit(self, obj: dict, name: str) -> None:
        if not re.fullmatch(ISVC_NAME, name):  # KServe's validating webhook
            raise ApiError(403, "Forbidden", WEBHOOK_MSG.format(name))

    def _conditions(self, status: dict, state: str, reason: str = "", message: str = "", ingress: str = "") -> list:
        before = {c["type"]: c for c in status.get("conditions", [])}
        out = []
        for kind in CONDITIONS:
            s = (ingress or before.get(kind, {}).get("status", "Unknown")) if kind == "IngressReady" else state
            same = before.get(kind, {}).get("status") == s
            c = {"type": kind, "status": s, "lastTransitionTime": before[kind]["lastTransitionTime"] if same else now()}
            c.update({"severity": "Info"} if kind in INFO else {})
            c.update({"reason": reason, "message": message} if s != "True" and kind != "IngressReady" else {})
            out.append(c)
        return out

    def _reconcile(self, ns: str, name: str) -> None:
        """After a spec change: KServe's finalizer; Knative makes a revision when the template changed."""
        key, obj = (ns, name), self.objects[(ns, name)]
        template = copy.deepcopy(obj["spec"])
        template["predictor"].pop("canaryTrafficPercent", None)  # a traffic-only change makes no new revision
        previous, number = self._revisions.get(key, (None, 0))
        self._revisions[key] = (template, number + (template != previous))
        old, self._reads[key] = obj.get("status", {}), 0
        obj["metadata"].setdefault("finalizers", ["inferenceservice.finalizers"])
        predictor = {**old.get("components", {}).get("predictor", {}),
                     "latestCreatedRevision": f"{name}-predictor-{self._revisions[key][1]:05d}"}
        active = old.get("modelStatus", {}).get("states", {}).get("activeModelState", "")
        obj["status"] = {**old, "observedGeneration": obj["metadata"]["generation"], "deploymentMode": "Serverless",
                         "conditions": self._conditions(old, "Unknown", "RevisionMissing",
                                                        f'Configuration "{name}-predictor" is waiting for a Revision to become ready.'),
                         "components": {"predictor": predictor},
                         "modelStatus": {"transitionStatus": "InProgress", "copies": {"failedCopies": 0, "totalCopies": 0},
                                         "states": {"activeModelState": active, "targetModelState": "Pending"}}}
        self._write(obj)
        if self.ready_after <= 0:
            self._settle(ns, name)

    def _settle(self, ns: str, name: str) -> None:
        """The new revision becomes ready and takes its traffic, or fails to load and traffic stays."""
        obj = self.objects[(ns, name)]
        status, spec = obj["status"], obj["spec"]["predictor"]
        predictor, new = status["components"]["predictor"], status["components"]["predictor"]["latestCreatedRevision"]
        uri = (spec.get("model") or {}).get("storageUri", "")
        for prefix, reason, message in self.failures:
            if uri.startswith(prefix):
                status["conditions"] = self._conditions(status, "False", reason, message)
                status["modelStatus"].update(transitionStatus="BlockedByFailedLoad",
                                             lastFailureInfo={"reason": reason, "message": message})
                status["modelStatus"]["states"]["targetModelState"] = "FailedToLoad"
                self._write(obj)
                return
        svc, prev, canary = f"{name}-predictor.{ns}", predictor.get("latestRolledoutRevision"), spec.get("canaryTrafficPercent")
        if canary is not None and prev and prev != new:  # split between the new and the last fully rolled-out revision
            traffic = [{"tag": "latest", "revisionName": new, "percent": canary, "latestRevision": True,
                        "url": f"http://latest-{svc}.example.com"},
                       {"tag": "prev", "revisionName": prev, "percent": 100 - canary, "latestRevision": False,
                        "url": f"http://prev-{svc}.example.com"}]
        else:
            traffic = [{"revisionName": new, "percent": 100, "latestRevision": True}]
            if prev != new:  # KServe tracks the last revision fully rolled out, and the one before it
                predictor.update({"latestRolledoutRevision": new, **({"previousRolledoutRevision": prev} if prev else {})})
        predictor.update(latestReadyRevision=new, traffic=traffic, url=f"http://{svc}.example.com",
                         address={"url": f"http://{svc}.svc.cluster.local"})
        status.update(conditions=self._conditions(status, "True", ingress="True"), url=f"http://{name}.{ns}.example.com",
                      address={"url": f"http://{name}.{ns}.svc.cluster.local"},
                      modelStatus={"transitionStatus": "UpToDate", "copies": {"failedCopies": 0, "totalCopies": 1},
                                   "states": {"activeModelState": "Loaded", "targetModelState": "Loaded"}})
        self._write(obj)

    def _read(self, ns: str, name: str) -> dict:
        key = (ns, name)
        if key in self._reads and self.objects[key]["status"]["modelStatus"]["transitionStatus"] == "InProgress":
            self._reads[key] += 1
            if self._reads[key] >= self.ready_after:
                self._settle(ns, name)
        return self._get(ns, name)

    def _deleted(self, ns: str, name: str) -> None:
        self._reads.pop((ns, name), None)
