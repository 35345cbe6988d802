"""The recorder's answers for every API but Cloud Run (recorder_run.py): Resource
Manager, Service Usage, Artifact Registry, Cloud Storage, Firestore, IAM, Secret
Manager, Cloud KMS, Cloud Build, Cloud Scheduler and Cloud Logging, each in its wire
format."""

from __future__ import annotations

import base64
import hashlib
import re
import time

import google_crc32c

from tests.deploy.recorder import (
    PROJECT_NUMBER,
    Cloud,
    Reply,
    Request,
    done_operation,
    not_found,
    route,
)

NAME = r"([^/:]+)"
P = r"/v1/projects/" + NAME


def _project(cloud: Cloud, project: str) -> None:
    if project not in (cloud.project, PROJECT_NUMBER, "-"):
        raise Reply(
            403, f"The caller does not have permission on project {project}", "PERMISSION_DENIED"
        )


def _iam_routes(prefix: str, name_of) -> None:
    """POST {prefix}:getIamPolicy and :setIamPolicy, for the resource name_of(groups)."""

    @route("GET", prefix + ":getIamPolicy")
    @route("POST", prefix + ":getIamPolicy")
    def get_policy(cloud, request, *groups):
        resource = name_of(*groups)
        cloud.get(resource)
        return cloud.policy(resource)

    @route("POST", prefix + ":setIamPolicy")
    def set_policy(cloud, request, *groups):
        resource = name_of(*groups)
        cloud.get(resource)
        return cloud.set_policy(resource, request.body["policy"])


# -- Resource Manager ----------------------------------------------------------------


@route("GET", P)
def get_project(cloud: Cloud, request: Request, project: str) -> dict:
    if project != cloud.project:
        raise Reply(403, f"Project {project} not found or permission denied", "PERMISSION_DENIED")
    return {
        "projectId": project,
        "projectNumber": PROJECT_NUMBER,
        "lifecycleState": "ACTIVE",
        "name": project,
    }


@route("POST", P + ":getIamPolicy")
def get_project_policy(cloud, request, project):
    _project(cloud, project)
    return cloud.policy(f"projects/{cloud.project}")


@route("POST", P + ":setIamPolicy")
def set_project_policy(cloud, request, project):
    _project(cloud, project)
    return cloud.set_policy(f"projects/{cloud.project}", request.body["policy"])


# -- Service Usage -------------------------------------------------------------------


@route("GET", P + "/services")
def list_services(cloud, request, project):
    _project(cloud, project)
    return {
        "services": [
            {
                "name": f"projects/{PROJECT_NUMBER}/services/{api}",
                "config": {"name": api},
                "state": "ENABLED",
                "parent": f"projects/{PROJECT_NUMBER}",
            }
            for api in sorted(cloud.enabled)
        ]
    }


@route("GET", P + "/services/" + NAME)
def get_service_state(cloud, request, project, api):
    _project(cloud, project)
    state = "ENABLED" if api in cloud.enabled else "DISABLED"
    return {
        "name": f"projects/{PROJECT_NUMBER}/services/{api}",
        "config": {"name": api},
        "state": state,
    }


@route("POST", P + "/services:batchEnable")
def enable_services(cloud, request, project):
    _project(cloud, project)
    cloud.enabled |= set(request.body["serviceIds"])
    return done_operation(
        f"operations/acf.{cloud.next_id()}",
        {"services": []},
        "google.api.serviceusage.v1.BatchEnableServicesResponse",
    )


# -- Artifact Registry ---------------------------------------------------------------

REPO = P + r"/locations/" + NAME + r"/repositories/" + NAME


@route("GET", REPO)
def get_repository(cloud, request, project, location, repo):
    return cloud.get(f"projects/{project}/locations/{location}/repositories/{repo}")


@route("POST", P + r"/locations/" + NAME + r"/repositories")
def create_repository(cloud, request, project, location):
    name = f"projects/{project}/locations/{location}/repositories/{request.arg('repositoryId')}"
    repository = cloud.create(name, {**request.body, "name": name})
    return done_operation(
        f"projects/{project}/locations/{location}/operations/op{cloud.next_id()}",
        repository,
        "google.devtools.artifactregistry.v1.Repository",
    )


_iam_routes(REPO, lambda p, loc, r: f"projects/{p}/locations/{loc}/repositories/{r}")


# -- Cloud Storage (JSON API) --------------------------------------------------------


def _bucket(cloud: Cloud, name: str) -> dict:
    if f"b/{name}" not in cloud.resources:
        raise Reply(404, "The specified bucket does not exist.")
    return cloud.resources[f"b/{name}"]


@route("GET", r"/storage/v1/b/" + NAME)
def get_bucket(cloud, request, bucket):
    return _bucket(cloud, bucket)


@route("POST", r"/storage/v1/b")
def create_bucket(cloud, request):
    body = {
        **request.body,
        "kind": "storage#bucket",
        "id": request.body["name"],
        "projectNumber": PROJECT_NUMBER,
        "metageneration": "1",
        "timeCreated": "2026-01-01T00:00:00.000Z",
    }
    return cloud.create(f"b/{request.body['name']}", body)


@route("PATCH", r"/storage/v1/b/" + NAME)
def update_bucket(cloud, request, bucket):
    current = _bucket(cloud, bucket)
    current.update(request.body)
    current["metageneration"] = str(int(current["metageneration"]) + 1)
    return current


@route("GET", r"/storage/v1/b/" + NAME + r"/iam")
def get_bucket_policy(cloud, request, bucket):
    _bucket(cloud, bucket)
    return {
        "kind": "storage#policy",
        "resourceId": f"projects/_/buckets/{bucket}",
        **cloud.policy(f"b/{bucket}"),
    }


@route("PUT", r"/storage/v1/b/" + NAME + r"/iam")
def set_bucket_policy(cloud, request, bucket):
    _bucket(cloud, bucket)
    return {"kind": "storage#policy", **cloud.set_policy(f"b/{bucket}", request.body)}


@route("POST", r"/upload/storage/v1/b/" + NAME + r"/o")
def upload_object(cloud, request, bucket):
    # gcloud builds submit uploads the source archive (multipart: metadata, then the
    # bytes) and checks the stored object's hashes against its own.
    _bucket(cloud, bucket)
    data = request.raw
    boundary = request.headers.get("Content-Type", "").partition("boundary=")[2].strip("'\"")
    if boundary:
        parts = data.split(b"--" + boundary.encode())
        data = parts[-2].split(b"\n\n", 1)[1].removesuffix(b"\n")
    crc = google_crc32c.value(data).to_bytes(4, "big")
    item = {
        "kind": "storage#object",
        "bucket": bucket,
        "name": request.arg("name"),
        "generation": str(cloud.next_id()),
        "size": str(len(data)),
        "md5Hash": base64.b64encode(hashlib.md5(data).digest()).decode(),
        "crc32c": base64.b64encode(crc).decode(),
    }
    cloud.resources[f"b/{bucket}/o/{item['name']}"] = item
    return item


@route("GET", r"/storage/v1/b/" + NAME + r"/o/(.+)")
def get_object(cloud, request, bucket, name):
    return cloud.get(f"b/{bucket}/o/{name}")


# -- Firestore -----------------------------------------------------------------------

DB = P + r"/databases/" + NAME


@route("GET", DB)
def get_database(cloud, request, project, database):
    return cloud.get(f"projects/{project}/databases/{database}")


@route("POST", P + r"/databases")
def create_database(cloud, request, project):
    name = f"projects/{project}/databases/{request.arg('databaseId')}"
    database = cloud.create(name, {**request.body, "name": name})
    return done_operation(
        f"projects/{project}/databases/-/operations/op{cloud.next_id()}",
        database,
        "google.firestore.admin.v1.Database",
    )


@route("GET", DB + r"/collectionGroups/-/indexes")
def list_indexes(cloud, request, project, database):
    parent = re.escape(f"projects/{project}/databases/{database}")
    found = cloud.of_kind(parent + r"/collectionGroups/[^/]+/indexes/.+")
    return {"indexes": list(found.values())}


@route("POST", DB + r"/collectionGroups/" + NAME + r"/indexes")
def create_index(cloud, request, project, database, group):
    cloud.get(f"projects/{project}/databases/{database}")
    parent = f"projects/{project}/databases/{database}/collectionGroups/{group}"
    name = f"{parent}/indexes/i{cloud.next_id()}"
    fields = list(request.body["fields"])
    # Firestore appends __name__ in the last field's direction, as a describe shows.
    if fields and fields[-1]["fieldPath"] != "__name__":
        fields.append({"fieldPath": "__name__", "order": fields[-1].get("order", "ASCENDING")})
    index = cloud.create(name, {**request.body, "fields": fields, "name": name, "state": "READY"})
    return done_operation(
        f"projects/{project}/databases/{database}/operations/op{cloud.next_id()}",
        index,
        "google.firestore.admin.v1.Index",
    )


@route("GET", DB + r"/collectionGroups/" + NAME + r"/fields")
def list_fields(cloud, request, project, database, group):
    prefix = re.escape(f"projects/{project}/databases/{database}/collectionGroups/")
    pattern = prefix + ("[^/]+" if group == "-" else group) + "/fields/.+"
    return {"fields": [f for f in cloud.of_kind(pattern).values() if f.get("ttlConfig")]}


@route("PATCH", DB + r"/collectionGroups/" + NAME + r"/fields/" + NAME)
def update_field(cloud, request, project, database, group, field):
    cloud.get(f"projects/{project}/databases/{database}")
    name = f"projects/{project}/databases/{database}/collectionGroups/{group}/fields/{field}"
    body = {**request.body, "name": name}
    if "ttlConfig" in body:
        body["ttlConfig"] = {"state": "ACTIVE"}
    cloud.resources[name] = body
    return done_operation(
        f"projects/{project}/databases/{database}/operations/op{cloud.next_id()}",
        body,
        "google.firestore.admin.v1.Field",
    )


# Documents (the REST API the deploy's smoke key is written and deleted with).
DOCS = DB + r"/documents/" + NAME


@route("POST", DOCS)
def create_document(cloud, request, project, database, collection):
    _project(cloud, project)
    document = request.arg("documentId")
    name = f"projects/{project}/databases/{database}/documents/{collection}/{document}"
    return cloud.create(name, {**request.body, "name": name})


@route("GET", DOCS + r"/" + NAME)
def get_document(cloud, request, project, database, collection, document):
    return cloud.get(f"projects/{project}/databases/{database}/documents/{collection}/{document}")


@route("DELETE", DOCS + r"/" + NAME)
def delete_document(cloud, request, project, database, collection, document):
    cloud.resources.pop(
        f"projects/{project}/databases/{database}/documents/{collection}/{document}", None
    )
    return {}


# -- IAM: service accounts and custom roles ------------------------------------------


def _account(cloud: Cloud, email: str) -> str:
    return f"projects/{cloud.project}/serviceAccounts/{email}"


@route("GET", r"/v1/projects/" + NAME + r"/serviceAccounts/" + NAME)
def get_account(cloud, request, project, email):
    return cloud.get(_account(cloud, email))


@route("GET", P + r"/serviceAccounts")
def list_accounts(cloud, request, project):
    _project(cloud, project)
    return {
        "accounts": list(cloud.of_kind(rf"projects/{cloud.project}/serviceAccounts/[^/]+").values())
    }


@route("POST", P + r"/serviceAccounts")
def create_account(cloud, request, project):
    _project(cloud, project)
    email = f"{request.body['accountId']}@{cloud.project}.iam.gserviceaccount.com"
    account = {
        **request.body.get("serviceAccount", {}),
        "email": email,
        "name": _account(cloud, email),
        "projectId": cloud.project,
        "uniqueId": str(100000 + cloud.next_id()),
    }
    created = cloud.create(_account(cloud, email), account)
    cloud.new_accounts.add(email)
    return created


_iam_routes(
    r"/v1/projects/" + NAME + r"/serviceAccounts/" + NAME,
    lambda p, email: f"projects/{email.split('@')[1].split('.')[0]}/serviceAccounts/{email}",
)


@route("GET", P + r"/roles/" + NAME)
def get_role(cloud, request, project, role):
    return cloud.get(f"projects/{project}/roles/{role}")


@route("POST", P + r"/roles")
def create_role(cloud, request, project):
    name = f"projects/{project}/roles/{request.body['roleId']}"
    return cloud.create(name, {**request.body["role"], "name": name, "etag": "BwAAAA=="})


@route("POST", P + r"/roles/" + NAME + r":undelete")
def undelete_role(cloud, request, project, role):
    current = cloud.get(f"projects/{project}/roles/{role}")
    current.pop("deleted", None)
    return current


# -- Secret Manager ------------------------------------------------------------------

# -- Cloud KMS -----------------------------------------------------------------------

KEY_RING = P + r"/locations/" + NAME + r"/keyRings/" + NAME
CRYPTO_KEY = KEY_RING + r"/cryptoKeys/" + NAME


@route("GET", KEY_RING)
def get_key_ring(cloud, request, project, location, ring):
    return cloud.get(f"projects/{cloud.project}/locations/{location}/keyRings/{ring}")


@route("POST", P + r"/locations/" + NAME + r"/keyRings")
def create_key_ring(cloud, request, project, location):
    _project(cloud, project)
    name = f"projects/{cloud.project}/locations/{location}/keyRings/{request.arg('keyRingId')}"
    return cloud.create(name, {"name": name, "createTime": "2026-01-01T00:00:00Z"})


@route("GET", CRYPTO_KEY)
def get_crypto_key(cloud, request, project, location, ring, key):
    ring_name = f"projects/{cloud.project}/locations/{location}/keyRings/{ring}"
    return cloud.get(f"{ring_name}/cryptoKeys/{key}")


@route("POST", KEY_RING + r"/cryptoKeys")
def create_crypto_key(cloud, request, project, location, ring):
    parent = f"projects/{cloud.project}/locations/{location}/keyRings/{ring}"
    cloud.get(parent)
    name = f"{parent}/cryptoKeys/{request.arg('cryptoKeyId')}"
    return cloud.create(name, {**request.body, "name": name, "createTime": "2026-01-01T00:00:00Z"})


_iam_routes(
    CRYPTO_KEY,
    lambda project, location, ring, key: (
        f"projects/{project}/locations/{location}/keyRings/{ring}/cryptoKeys/{key}"
    ),
)


SECRET = P + r"/secrets/" + NAME


@route("GET", SECRET)
def get_secret(cloud, request, project, secret):
    return cloud.get(f"projects/{PROJECT_NUMBER}/secrets/{secret}")


@route("POST", P + r"/secrets")
def create_secret(cloud, request, project):
    name = f"projects/{PROJECT_NUMBER}/secrets/{request.arg('secretId')}"
    cloud.secret_data[name] = []
    return cloud.create(name, {**request.body, "name": name, "createTime": "2026-01-01T00:00:00Z"})


@route("POST", SECRET + r":addVersion")
def add_version(cloud, request, project, secret):
    name = f"projects/{PROJECT_NUMBER}/secrets/{secret}"
    cloud.get(name)
    data = base64.b64decode(request.body["payload"]["data"]).decode()
    cloud.secret_data[name].append(data)
    return {
        "name": f"{name}/versions/{len(cloud.secret_data[name])}",
        "state": "ENABLED",
        "clientSpecifiedPayloadChecksum": "dataCrc32c" in request.body["payload"],
    }


@route("GET", SECRET + r"/versions")
def list_versions(cloud, request, project, secret):
    name = f"projects/{PROJECT_NUMBER}/secrets/{secret}"
    cloud.get(name)
    wanted = request.arg("filter").replace(" ", "")
    if wanted and wanted != "state:ENABLED":
        # Secret Manager matches enum values exactly: state:enabled finds nothing.
        return {"versions": [], "totalSize": 0}
    versions = [
        {"name": f"{name}/versions/{n}", "state": "ENABLED"}
        for n in range(len(cloud.secret_data[name]), 0, -1)
    ]
    return {"versions": versions, "totalSize": len(versions)}


@route("GET", SECRET + r"/versions/latest:access")
def access_latest(cloud, request, project, secret):
    name = f"projects/{PROJECT_NUMBER}/secrets/{secret}"
    versions = cloud.secret_data.get(name)
    if not versions:
        raise not_found(f"{name}/versions/latest")
    data = base64.b64encode(versions[-1].encode()).decode()
    return {"name": f"{name}/versions/{len(versions)}", "payload": {"data": data}}


_iam_routes(SECRET, lambda p, s: f"projects/{PROJECT_NUMBER}/secrets/{s}")


# -- Cloud Build ---------------------------------------------------------------------


@route("POST", P + r"/locations/" + NAME + r"/builds")
def create_build(cloud, request, project, location):
    build_id = f"build-{cloud.next_id()}"
    name = f"projects/{project}/locations/{location}/builds/{build_id}"
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    build = {
        **request.body,
        "id": build_id,
        "name": name,
        "projectId": project,
        "status": "SUCCESS",
        "createTime": now,
        "startTime": now,
        "finishTime": now,
        "logUrl": f"https://console.cloud.google.com/cloud-build/builds;region={location}/{build_id}",
    }
    cloud.resources[name] = build
    return {
        "name": f"projects/{project}/locations/{location}/operations/op{cloud.next_id()}",
        "metadata": {
            "@type": "type.googleapis.com/google.devtools.cloudbuild.v1.BuildOperationMetadata",
            "build": build,
        },
    }


@route("GET", P + r"/locations/" + NAME + r"/builds/" + NAME)
def get_build(cloud, request, project, location, build_id):
    return cloud.get(f"projects/{project}/locations/{location}/builds/{build_id}")


@route("POST", r"/v2/entries:list")
def list_log_entries(cloud, request):
    # An execution's container log (gcloud logging read, by its execution_name label).
    wanted = re.search(r'execution_name"="([^"]+)"', request.body.get("filter", ""))
    if wanted:
        return {
            "entries": [
                {
                    **entry,
                    "logName": f"projects/{cloud.project}/logs/run.googleapis.com%2Fstdout",
                    "insertId": str(n),
                    "timestamp": "2026-01-01T00:00:00Z",
                    "labels": {"run.googleapis.com/execution_name": wanted.group(1)},
                }
                for n, entry in enumerate(cloud.logs.get(wanted.group(1), []))
            ]
        }
    # gcloud beta builds submit streams a CLOUD_LOGGING_ONLY build's log from here.
    return {
        "entries": [
            {
                "textPayload": "the recorder's build log",
                "logName": "x",
                "insertId": "1",
                "timestamp": "2026-01-01T00:00:00Z",
            }
        ]
    }


# -- Cloud Scheduler -----------------------------------------------------------------

SCHED = P + r"/locations/" + NAME + r"/jobs/" + NAME


@route("GET", SCHED)
def get_scheduler_job(cloud, request, project, location, job):
    return cloud.get(f"projects/{project}/locations/{location}/jobs/{job}")


@route("POST", P + r"/locations/" + NAME + r"/jobs")
def create_scheduler_job(cloud, request, project, location):
    return cloud.create(request.body["name"], {**request.body, "state": "ENABLED"})


@route("PATCH", SCHED)
def update_scheduler_job(cloud, request, project, location, job):
    current = cloud.get(f"projects/{project}/locations/{location}/jobs/{job}")
    current.update(request.body)
    return current
