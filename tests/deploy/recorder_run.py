"""The recorder's Cloud Run: services, revisions and traffic (Knative serving v1), jobs
and executions (run.googleapis.com/v1), their IAM (v1 REST), and the deployed
service's own URL, which answers /health as the revision that receives the traffic."""

from __future__ import annotations

import hashlib
import json
import time

from api import config
from tests.deploy.recorder import PROJECT_NUMBER, Cloud, Reply, Request, not_found, route

NAME = r"([^/:]+)"
SERVING = r"/apis/serving\.knative\.dev/v1/namespaces/" + NAME
JOBS = r"/apis/run\.googleapis\.com/v1/namespaces/" + NAME
REGION = "us-central1"


def service_url(name: str) -> str:
    """The deterministic URL Cloud Run gives a service: name-projectnumber.region.run.app."""
    return f"https://{name}-{PROJECT_NUMBER}.{REGION}.run.app"


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())


def _conditions(*types: str, status: str = "True", message: str = "") -> list[dict]:
    found = [{"type": t, "status": status, "lastTransitionTime": _now()} for t in types]
    if message:
        for condition in found:
            condition["message"] = message
    return found


# -- Services, revisions, traffic -----------------------------------------------------


def _key(kind: str, name: str) -> str:
    return f"run/{kind}/{name}"


@route("GET", SERVING + r"/services/" + NAME)
def get_service(cloud: Cloud, request: Request, namespace: str, name: str) -> dict:
    return cloud.get(_key("services", name))


@route("POST", SERVING + r"/services")
def create_service(cloud, request, namespace):
    body = request.body
    name = body["metadata"]["name"]
    if _key("services", name) in cloud.resources:
        raise Reply(409, f"Resource '{name}' already exists.", "ALREADY_EXISTS")
    body["metadata"].update(generation=0, uid=f"uid-{name}", namespace=PROJECT_NUMBER)
    body["metadata"].setdefault("labels", {})["cloud.googleapis.com/location"] = REGION
    return _roll(cloud, name, body)


@route("PUT", SERVING + r"/services/" + NAME)
def replace_service(cloud, request, namespace, name):
    current = cloud.get(_key("services", name))
    body = request.body
    body["metadata"]["generation"] = current["metadata"]["generation"]
    return _roll(cloud, name, body, current)


def _roll(cloud: Cloud, name: str, body: dict, current: dict | None = None) -> dict:
    """A new generation: a new revision when the template changed, then traffic."""
    metadata = body["metadata"]
    metadata["generation"] += 1
    status = dict((current or {}).get("status", {}))
    template = body["spec"]["template"]
    revision = template.get("metadata", {}).get("name")
    old_template = (current or {}).get("spec", {}).get("template")
    if revision or old_template is None or _without_name(template) != _without_name(old_template):
        generation = metadata["generation"]
        revision = revision or f"{name}-{generation:05d}-{'abcdefghij'[generation % 10] * 3}"
        cloud.resources[_key("revisions", revision)] = {
            "apiVersion": "serving.knative.dev/v1",
            "kind": "Revision",
            "metadata": {
                "name": revision,
                "namespace": PROJECT_NUMBER,
                "labels": {"serving.knative.dev/service": name},
                "generation": 1,
                "creationTimestamp": _now(),
            },
            "spec": template["spec"],
            "status": {
                "conditions": _conditions(
                    "Ready", "Active", "ContainerHealthy", "ResourcesAvailable"
                ),
                "observedGeneration": 1,
                "logUrl": "https://console.cloud.google.com/logs",
            },
        }
        status["latestCreatedRevisionName"] = status["latestReadyRevisionName"] = revision
    latest = status["latestReadyRevisionName"]
    spec_traffic = body["spec"].get("traffic") or [{"latestRevision": True, "percent": 100}]
    body["spec"]["traffic"] = spec_traffic
    url = service_url(name)
    host = url.removeprefix("https://")
    status["traffic"] = [
        {
            **{k: v for k, v in target.items() if k != "latestRevision"},
            "revisionName": target.get("revisionName") or latest,
            **({"latestRevision": True} if target.get("latestRevision") else {}),
            **({"url": f"https://{target['tag']}---{host}"} if target.get("tag") else {}),
        }
        for target in spec_traffic
    ]
    status.update(
        observedGeneration=metadata["generation"],
        conditions=_conditions("Ready", "ConfigurationsReady", "RoutesReady"),
        url=url,
        address={"url": url},
    )
    metadata.setdefault("annotations", {})["run.googleapis.com/urls"] = json.dumps([url])
    body["status"] = status
    body.setdefault("apiVersion", "serving.knative.dev/v1")
    body.setdefault("kind", "Service")
    cloud.resources[_key("services", name)] = body
    return body


def _without_name(template: dict) -> dict:
    stripped = json.loads(json.dumps(template))
    stripped.get("metadata", {}).pop("name", None)
    return stripped


@route("GET", SERVING + r"/revisions/" + NAME)
def get_revision(cloud, request, namespace, name):
    return cloud.get(_key("revisions", name))


@route("GET", SERVING + r"/revisions")
def list_revisions(cloud, request, namespace):
    return {
        "apiVersion": "serving.knative.dev/v1",
        "kind": "RevisionList",
        "items": [v for k, v in cloud.resources.items() if k.startswith("run/revisions/")],
        "metadata": {},
    }


@route("GET", SERVING + r"/routes/" + NAME)
def get_route(cloud, request, namespace, name):
    service = cloud.get(_key("services", name))
    return {"metadata": service["metadata"], "status": service["status"], "spec": service["spec"]}


@route("GET", SERVING + r"/configurations/" + NAME)
def get_configuration(cloud, request, namespace, name):
    service = cloud.get(_key("services", name))
    return {
        "metadata": service["metadata"],
        "spec": {"template": service["spec"]["template"]},
        "status": {
            "conditions": _conditions("Ready"),
            "latestCreatedRevisionName": service["status"]["latestCreatedRevisionName"],
            "latestReadyRevisionName": service["status"]["latestReadyRevisionName"],
            "observedGeneration": service["metadata"]["generation"],
        },
    }


INVOKER_CHECK_DISABLED = "run.googleapis.com/invoker-iam-disabled"


def serving_revision(cloud: Cloud, host: str) -> dict:
    """The revision a request to HOST reaches: a tag's, or the 100% target's. Without a
    Google identity a caller gets through only if the service's invoker IAM check is
    disabled, or allUsers may invoke it (https://cloud.google.com/run/docs/securing/managing-access)."""
    for key, service in cloud.resources.items():
        if not key.startswith("run/services/"):
            continue
        url_host = service["status"]["url"].removeprefix("https://")
        for target in service["status"]["traffic"]:
            tagged = target.get("tag") and host == f"{target['tag']}---{url_host}"
            if (host == url_host and target.get("percent") == 100) or tagged:
                _check_invoker(cloud, key, service)
                return cloud.get(_key("revisions", target["revisionName"]))
    raise not_found(host)


def _check_invoker(cloud: Cloud, key: str, service: dict) -> None:
    annotations = service["metadata"].get("annotations", {})
    public = (key, "roles/run.invoker", "allUsers") in cloud.grants()
    if str(annotations.get(INVOKER_CHECK_DISABLED)).lower() != "true" and not public:
        raise Reply(403, "Forbidden: the caller may not invoke this service.", "PERMISSION_DENIED")


def revision_env(revision: dict) -> dict:
    return {e["name"]: e.get("value") for e in revision["spec"]["containers"][0].get("env", [])}


@route("GET", r"/health")
def health(cloud, request):
    """The deployed API's /health (api/routes/health.py): which revision answered."""
    revision = serving_revision(cloud, request.host)
    env = revision_env(revision)
    if cloud.health_broken or not env:
        raise Reply(503, "Service Unavailable", "UNAVAILABLE")
    return {"status": "ok", "service": "api-server", "revision": revision["metadata"]["name"]}


# -- Jobs and executions ---------------------------------------------------------------


@route("GET", JOBS + r"/jobs/" + NAME)
def get_job(cloud, request, namespace, name):
    return cloud.get(_key("jobs", name))


@route("POST", JOBS + r"/jobs")
def create_job(cloud, request, namespace):
    body = request.body
    name = body["metadata"]["name"]
    if _key("jobs", name) in cloud.resources:
        raise Reply(409, f"Resource '{name}' already exists.", "ALREADY_EXISTS")
    body["metadata"].update(generation=0, namespace=PROJECT_NUMBER, uid=f"uid-{name}")
    body["metadata"].setdefault("labels", {})["cloud.googleapis.com/location"] = REGION
    return _store_job(cloud, name, body)


@route("PUT", JOBS + r"/jobs/" + NAME)
def replace_job(cloud, request, namespace, name):
    current = cloud.get(_key("jobs", name))
    body = request.body
    body["metadata"]["generation"] = current["metadata"]["generation"]
    body["status"] = current.get("status", {})
    return _store_job(cloud, name, body)


def _store_job(cloud: Cloud, name: str, body: dict) -> dict:
    body["metadata"]["generation"] += 1
    status = body.get("status") or {}
    status.update(
        observedGeneration=body["metadata"]["generation"], conditions=_conditions("Ready")
    )
    body["status"] = status
    body.setdefault("apiVersion", "run.googleapis.com/v1")
    body.setdefault("kind", "Job")
    cloud.resources[_key("jobs", name)] = body
    return body


@route("POST", JOBS + r"/jobs/" + NAME + r":run")
def run_job(cloud, request, namespace, name):
    job = cloud.get(_key("jobs", name))
    number = cloud.next_id()
    execution = f"{name}-{'vwxyz'[number % 5]}{number:04d}"
    overrides = request.body.get("overrides", {})
    args = (overrides.get("containerOverrides") or [{}])[0].get("args", [])
    failed = cloud.self_check_fails and "--self-check" in args
    verdict = (
        {"ok": False, "failed": "sandbox", "fix": "allow unprivileged user namespaces"}
        if failed
        else {"ok": True}
    )
    spec = json.loads(json.dumps(job["spec"]["template"]["spec"]))
    body = {
        "apiVersion": "run.googleapis.com/v1",
        "kind": "Execution",
        "metadata": {
            "name": execution,
            "namespace": PROJECT_NUMBER,
            "generation": 1,
            "labels": {"run.googleapis.com/job": name, "cloud.googleapis.com/location": REGION},
            "creationTimestamp": _now(),
        },
        "spec": {**spec, "overrides": overrides},
        "status": {
            "observedGeneration": 1,
            "startTime": _now(),
            "completionTime": _now(),
            "conditions": (
                _conditions(
                    "Completed",
                    status="False",
                    message=f"Task {execution}-0 failed: {json.dumps(verdict)}",
                )
                if failed
                else _conditions("Completed", "ResourcesAvailable", "Started")
            ),
            "succeededCount": 0 if failed else 1,
            **({"failedCount": 1} if failed else {}),
            "logUri": f"https://console.cloud.google.com/logs/viewer?execution={execution}",
        },
    }
    cloud.resources[_key("executions", execution)] = body
    # What the container printed, as Cloud Logging keeps it (read by `gcloud logging read`).
    if "--self-check" in args:
        cloud.logs[execution] = [{"jsonPayload": verdict, "severity": "INFO"}]
    return body


@route("GET", JOBS + r"/executions/" + NAME)
def get_execution(cloud, request, namespace, name):
    return cloud.get(_key("executions", name))


# -- IAM on services and jobs (the v1 REST surface) -------------------------------------


def _iam(kind: str) -> None:
    prefix = r"/v1/projects/" + NAME + r"/locations/" + NAME + rf"/{kind}/" + NAME

    @route("GET", prefix + ":getIamPolicy")
    @route("POST", prefix + ":getIamPolicy")
    def get_policy(cloud, request, project, location, name):
        cloud.get(_key(kind, name))
        return cloud.policy(_key(kind, name))

    @route("POST", prefix + ":setIamPolicy")
    def set_policy(cloud, request, project, location, name):
        cloud.get(_key(kind, name))
        return cloud.set_policy(_key(kind, name), request.body["policy"])


_iam("services")
_iam("jobs")


# -- The deployed API's task routes (the smoke task) ------------------------------------
#
# Like api/routes/tasks.py, for the one thing a deploy asks of them: a code task, with
# an API key that must be a live apiKeys document in Firestore (written by the deploy),
# launched on the job the revision's CLOUD_RUN_JOB names, if the API's account may.


def _caller(cloud: Cloud, request: Request, revision: dict) -> str:
    if "apikey" not in (revision_env(revision).get("AUTH_MODE") or ""):
        raise Reply(401, "API keys are not accepted here.", "UNAUTHENTICATED")
    key = request.headers.get("Authorization", "").removeprefix("Bearer ")
    digest = hashlib.sha256(key.encode()).hexdigest()
    name = f"projects/{cloud.project}/databases/(default)/documents/apiKeys/{digest}"
    document = cloud.resources.get(name)
    if (
        not key.startswith("ak_")
        or document is None
        or "nullValue" not in (document["fields"].get("revokedAt", {}))
    ):
        raise Reply(401, "The API key is unknown or revoked.", "UNAUTHENTICATED")
    return document["fields"]["owner"]["stringValue"]


@route("POST", r"/api/tasks")
def create_task(cloud, request):
    revision = serving_revision(cloud, request.host)
    owner = _caller(cloud, request, revision)
    # The API's choice of job (api/services/job_classes.py), for a code task.
    env = revision_env(revision)
    small = request.body.get("memoryMb", 512) <= config.SMALL_JOB_MAX_TASK_MEMORY_MB
    job_resource = (
        (env.get("CLOUD_RUN_JOB_SMALL") if small else None) or env.get("CLOUD_RUN_JOB") or ""
    )
    job = job_resource.rsplit("/", 1)[-1]
    api = f"serviceAccount:{revision['spec']['serviceAccountName']}"
    launcher = f"projects/{cloud.project}/roles/agentTaskLauncher"
    task_id = f"task{cloud.next_id()}"
    task = {"id": task_id, "owner": owner, "kind": "code", "input": request.body}
    if (_key("jobs", job), launcher, api) not in cloud.grants():
        task.update(status="failed", error={"code": "dispatch_failed", "message": job_resource})
    else:
        execution = run_job(cloud, request, "-", job)["metadata"]["name"]
        task.update(
            status="completed",
            result={"exitCode": 0, "stdout": cloud.smoke_task_output, "stderr": ""},
            execution={"backend": "cloudrun", "name": f"{job_resource}/executions/{execution}"},
        )
    cloud.resources[f"api/tasks/{task_id}"] = task
    return task


@route("GET", r"/api/tasks/([^/]+)")
def get_task(cloud, request, task_id):
    owner = _caller(cloud, request, serving_revision(cloud, request.host))
    task = cloud.resources.get(f"api/tasks/{task_id}")
    if task is None or task["owner"] != owner:
        raise not_found(task_id)
    return task
