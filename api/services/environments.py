"""Custom environments (DESIGN section 17, ADR 0018): Python packages on top of the
default environment, built once per manifest and restored read-only into the tasks
that name them.

A build is a task of its owner (`kind: "environment"`), so it is queued, limited,
followed and cancelled like any other; its events are pip's output. Its runner's
only egress is the package index (PACKAGE_INDEX_URL, PACKAGE_INDEX_DOMAINS); the
archive it makes is stored in the bucket under the manifest's hash, and one build
document per hash (`environmentBuilds/{hash}`) makes sure a manifest is built once,
whoever asks. A failed build leaves nothing behind: the next environment with that
manifest builds again.

A build is keyed by the default environment too (environments/default/, the task
root it is installed on): when a deploy changes that, each environment is rebuilt on
the new one the first time it is read or used, and is `building` until then. An
archive nobody reads or uses for ENVIRONMENT_ARCHIVE_DAYS is deleted by the bucket's
lifecycle rule (its Custom-Time is moved on each day it is); the next read or use
builds it again, so archives of deleted environments do not pile up.
"""

from __future__ import annotations

import builtins
import hashlib
import secrets
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from api.adapters.firestore_environments import EnvironmentLimitReached, EnvironmentNameTaken
from api.config import ENVIRONMENT_ARCHIVE_DAYS
from api.errors import ApiError, not_found
from api.models.documents import TERMINAL, EnvironmentBuildDoc, EnvironmentEntry, TaskEnvironment
from api.services.state_machine import utcnow

if TYPE_CHECKING:
    from api.adapters.file_store import FileStore
    from api.adapters.firestore_store import FirestoreStore
    from api.config import Settings
    from api.models.documents import TaskDoc
    from api.models.environments import EnvironmentCreate
    from api.services.tasks import TaskService

# The memory a build's sandbox gets: pip resolving and unpacking wheels.
BUILD_MEMORY_MB = 2048
MANIFEST_FORMAT = "python-target-npm-prefix-v1"  # how the runner lays one out
# A ready archive's Custom-Time is moved on at most this often (a read or a use).
ARCHIVE_TOUCH_INTERVAL = timedelta(days=1)


# The default environment's manifest: in the repository, and in the API image
# (api/Dockerfile copies it beside api/).
DEFAULT_ENVIRONMENT_DIR = Path(__file__).resolve().parents[2] / "environments" / "default"


def default_environment_id(directory: Path = DEFAULT_ENVIRONMENT_DIR) -> str:
    """The default environment's identity: sha256 over its manifest's files (names and
    contents), the hash devtools/task_root.py keys the local task root by."""
    if not directory.is_dir():
        raise RuntimeError(
            f"{directory} is missing: the API keys environment builds by the default "
            "environment's manifest (api/Dockerfile copies environments/default/ there)."
        )
    digest = hashlib.sha256()
    for path in sorted(p for p in directory.iterdir() if p.is_file()):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def manifest_hash(python: builtins.list[str], npm: builtins.list[str], base: str) -> str:
    """What a build is keyed by: the packages (order and repeats aside) and the default
    environment (`base`) they are installed on."""
    text = "\n".join(
        [MANIFEST_FORMAT, f"base {base}", *sorted(set(python)), "--npm--", *sorted(set(npm))]
    )
    return hashlib.sha256(text.encode()).hexdigest()


def archive_object(digest: str) -> str:
    return f"environments/{digest}.tar"


class EnvironmentService:
    def __init__(
        self, store: FirestoreStore, tasks: TaskService, files: FileStore, settings: Settings
    ) -> None:
        self.store = store
        self.tasks = tasks
        self.files = files
        self.settings = settings
        self.base = default_environment_id()

    # -- the owner's environments --------------------------------------------------------

    def create(self, owner: str, body: EnvironmentCreate) -> dict[str, Any]:
        """The new environment: `ready` at once when its manifest was built before,
        else `building` with the build task that builds it (its own, or, when someone
        else's build of the same manifest is under way, that one's).

        :raises ApiError: 409 a name taken or too many environments.
        """
        known = self.store.list_environments(owner)
        self._check_room(owner, body.name, known)
        digest = manifest_hash(body.python, body.npm, self.base)
        entry: EnvironmentEntry = {
            "id": "env_" + secrets.token_hex(8),
            "name": body.name,
            "python": list(body.python),
            "npm": list(body.npm),
            "hash": digest,
            "buildTaskId": None,
            "createdAt": utcnow(),
        }
        build = self._kept(self.store.get_environment_builds([digest]).get(digest))
        if build is None or build["status"] != "ready":
            build = self._start_build(owner, entry)
        try:
            self.store.add_environment(owner, entry, self.settings.max_environments_per_user)
        except (EnvironmentNameTaken, EnvironmentLimitReached):
            self._check_room(owner, body.name, self.store.list_environments(owner))
            raise
        return self._view(entry, build)

    def list(self, owner: str) -> builtins.list[dict[str, Any]]:
        entries = sorted(
            self.store.list_environments(owner).values(), key=lambda e: (e["createdAt"], e["id"])
        )
        return [self._view(*current) for current in self._current(owner, entries, quiet=True)]

    def get(self, owner: str, name_or_id: str) -> dict[str, Any]:
        [current] = self._current(owner, [self._entry(owner, name_or_id)], quiet=True)
        return self._view(*current)

    def delete(self, owner: str, name_or_id: str) -> None:
        """New tasks can no longer name it; tasks already submitted still restore it
        (its archive is the manifest's, shared with any other environment of it)."""
        entry = self._entry(owner, name_or_id)
        if not self.store.delete_environment(owner, entry["id"]):
            raise not_found("environment")

    # -- tasks that use one --------------------------------------------------------------

    def resolve(self, owner: str, name_or_id: str) -> TaskEnvironment:
        """The environment a task names, ready to restore.

        :raises ApiError: 404 the owner has none of that name or id; 409 not ready
            (or being rebuilt on a new default environment); 429 its rebuild was
            refused by the owner's limits.
        """
        [(entry, build)] = self._current(owner, [self._entry(owner, name_or_id)])
        build = self._settled(build)
        if build is None or build["status"] != "ready":
            status = build["status"] if build is not None else "failed"
            raise ApiError(
                409,
                "environment_not_ready",
                f"The environment {entry['name']!r} is {status}: a task can use it once "
                "GET /api/environments/{id} says it is ready.",
            )
        size = build.get("sizeBytes", 0)
        return {"id": entry["id"], "name": entry["name"], "hash": entry["hash"], "size": size}

    def archive(self, task: TaskDoc) -> tuple[str, int]:
        """(object name, size) of the archive the task restores."""
        environment = task.get("environment")
        if environment is None:
            raise ApiError(404, "no_environment", "This task uses no custom environment.")
        return archive_object(environment["hash"]), environment["size"]

    # -- builds --------------------------------------------------------------------------

    def build_spec(self, task: TaskDoc) -> dict[str, Any]:
        """What the runner needs to build the environment (the task's spec's `build`)."""
        return {
            "python": list(task["input"]["python"]),
            "npm": list(task["input"].get("npm") or []),
            "indexUrl": self.settings.package_index_url,
            "npmRegistryUrl": self.settings.npm_registry_url,
            "maxBytes": self.settings.environment_max_mb * 1024 * 1024,
        }

    def build_domains(self, task: TaskDoc) -> builtins.list[str]:
        """A build's only egress: the package index's hosts, and the npm registry's
        when it installs npm packages."""
        domains = list(self.settings.package_index_domains) if task["input"]["python"] else []
        if task["input"].get("npm"):
            domains += self.settings.npm_registry_domains
        return list(dict.fromkeys(domains))

    def build_finished(self, task: TaskDoc) -> None:
        """A build task settled: its manifest is ready if it completed and its archive
        is stored, else forgotten (nothing cached)."""
        digest = task["input"]["hash"]
        info = None
        if task["status"] == "completed":
            info = self.files.stat(archive_object(digest))
            # Its Custom-Time, from which the bucket's lifecycle rule counts.
            if info is not None and not self.files.touch(info.name, utcnow()):
                info = None
        self.store.finish_environment_build(
            digest, task["id"], info.size if info is not None else None, utcnow()
        )

    def _settled(self, build: EnvironmentBuildDoc | None) -> EnvironmentBuildDoc | None:
        """The build document, settled first if its task has ended and it was not yet
        (the runner's report is being handled, or the API stopped in between)."""
        if build is None or build["status"] != "building":
            return build
        task = self.store.get_tasks([build["taskId"]])[0]
        if task is not None and task["status"] not in TERMINAL:
            return build
        if task is not None:
            self.build_finished(task)
        else:  # its task was deleted: nothing will ever finish it
            self.store.finish_environment_build(build["hash"], build["taskId"], None, utcnow())
        return self.store.get_environment_builds([build["hash"]]).get(build["hash"])

    def _current(
        self, owner: str, entries: builtins.list[EnvironmentEntry], quiet: bool = False
    ) -> builtins.list[tuple[EnvironmentEntry, EnvironmentBuildDoc | None]]:
        """Each environment with its build, made usable: built again on the current
        default environment when it was built on another, or when its archive expired
        (`_kept`), and recorded so in the owner's listing. A rebuild the owner's limits
        refuse raises, or, when `quiet` (a read, not a use), leaves the environment as
        it was until the next request."""
        digests = [manifest_hash(e["python"], e.get("npm", []), self.base) for e in entries]
        builds = self.store.get_environment_builds(digests)
        current = []
        for entry, digest in zip(entries, digests, strict=True):
            build = self._kept(builds.get(digest))
            if entry["hash"] == digest and (build is None or build["status"] != "expired"):
                current.append((entry, build))
                continue
            moved: EnvironmentEntry = {**entry, "hash": digest, "buildTaskId": None}
            if build is None or build["status"] != "ready":
                try:
                    build = self._start_build(owner, moved)
                except ApiError as error:
                    if not quiet or error.status != 429:
                        raise
                    old = self.store.get_environment_builds([entry["hash"]]).get(entry["hash"])
                    current.append((entry, old))
                    continue
            if not self.store.rebase_environment(owner, moved, entry["hash"]):
                # Moved by another request (or deleted meanwhile): as the listing has it.
                moved = self.store.list_environments(owner).get(entry["id"], moved)
            current.append((moved, build))
        return current

    def _kept(self, build: EnvironmentBuildDoc | None) -> EnvironmentBuildDoc | None:
        """A ready build whose archive is kept ENVIRONMENT_ARCHIVE_DAYS from now (its
        Custom-Time moved on, at most once a day), or `expired` when the bucket's
        lifecycle rule has deleted it already."""
        if build is None or build["status"] != "ready":
            return build
        now = utcnow()
        used = build.get("usedAt") or build.get("readyAt") or build["createdAt"]
        if now - used < ARCHIVE_TOUCH_INTERVAL:
            return build
        if self.files.touch(build["object"], now):
            self.store.use_environment_build(build["hash"], now)
            return {**build, "usedAt": now}
        self.store.expire_environment_build(build["hash"], build["taskId"])
        return {**build, "status": "expired"}

    def _start_build(self, owner: str, entry: EnvironmentEntry) -> EnvironmentBuildDoc:
        task_id = secrets.token_hex(12)
        build: EnvironmentBuildDoc = {
            "hash": entry["hash"],
            "status": "building",
            "taskId": task_id,
            "object": archive_object(entry["hash"]),
            "createdAt": utcnow(),
        }
        current, claimed = self.store.claim_environment_build(build)
        if not claimed:
            if current["status"] != "ready":
                building = self.store.get_tasks([current["taskId"]])[0]
                if building is not None and building["owner"] == owner:
                    entry["buildTaskId"] = current["taskId"]
            return current
        task_input = {
            "kind": "environment",
            "name": entry["name"],
            "python": entry["python"],
            "npm": entry.get("npm", []),
            "hash": entry["hash"],
            "timeoutSeconds": self.settings.environment_build_seconds,
            "memoryMb": BUILD_MEMORY_MB,
        }
        try:
            self.tasks.submit(owner, "environment", task_input, None, id=task_id)
        except BaseException:
            self.store.finish_environment_build(entry["hash"], task_id, None, utcnow())
            raise
        entry["buildTaskId"] = task_id
        return build

    def _check_room(self, owner: str, name: str, known: dict[str, EnvironmentEntry]) -> None:
        if any(entry["name"] == name for entry in known.values()):
            raise ApiError(
                409, "environment_exists", f"You already have an environment named {name!r}."
            )
        if len(known) >= self.settings.max_environments_per_user:
            raise ApiError(
                409,
                "too_many_environments",
                f"You have {len(known)} environments (MAX_ENVIRONMENTS_PER_USER): delete one "
                "first.",
            )

    def _entry(self, owner: str, name_or_id: str) -> EnvironmentEntry:
        known = self.store.list_environments(owner)
        if name_or_id in known:
            return known[name_or_id]
        for entry in known.values():
            if entry["name"] == name_or_id:
                return entry
        raise not_found("environment")

    def exists(self, owner: str, name_or_id: str) -> bool:
        try:
            self._entry(owner, name_or_id)
        except ApiError:
            return False
        return True

    def _view(self, entry: EnvironmentEntry, build: EnvironmentBuildDoc | None) -> dict[str, Any]:
        """The public environment: `ready` (with its archive's size) once a build of its
        manifest made it, `building` while one runs, else `failed` (with the error of
        its own build, whose events are pip's output)."""
        view: dict[str, Any] = {**entry, "status": "failed", "sizeBytes": None, "error": None}
        build = self._settled(build)
        if build is not None and build["status"] == "ready":
            return {**view, "status": "ready", "sizeBytes": build.get("sizeBytes")}
        if build is not None and build["status"] == "expired":
            # Only while the owner's limits refuse its rebuild (`_current`).
            view["error"] = {
                "code": "environment_expired",
                "message": f"Unused for {ENVIRONMENT_ARCHIVE_DAYS} days, its archive was "
                "deleted; it is built again at the next read or use once you have "
                "room for another task.",
            }
            return view
        if build is not None:
            return {**view, "status": "building"}
        own = self.store.get_tasks([entry["buildTaskId"]])[0] if entry["buildTaskId"] else None
        if own is not None:
            view["error"] = own.get("error") or {
                "code": "build_failed",
                "message": "The build ended without an environment: see its task's events.",
            }
        return view
