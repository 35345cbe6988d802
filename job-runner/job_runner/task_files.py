"""A task's files on the runner's side: inputs written into the workspace before the
program, outputs stored after it, and a conversation's workspace restored and saved.
The bytes go through the API (file_channel.py); this module decides what goes where.
"""

from __future__ import annotations

import os

from job_runner.file_channel import ChangedWhileRead, FileChannel, TransferFailed
from job_runner.outputs import OutputLimits, SkipFile, collect_outputs
from job_runner.snapshots import WorkspaceTooLarge, restore_archive, save_archive
from job_runner.workspace import write_input_files

TYPE_CHECKING = False
if TYPE_CHECKING:
    from job_runner.spec import TaskSpec


class InputsUnavailable(Exception):
    """An input file could not be fetched: `code` says why."""

    def __init__(self, message: str, code: str = "storage_unavailable") -> None:
        super().__init__(message)
        self.code = code


def input_writers(spec: TaskSpec, channel: FileChannel | None) -> dict:
    """path -> what write_input_files writes: text, bytes, or a fetch into the fd.

    The spec lists each file as {"path", "text"} | {"path", "base64"} |
    {"path", "upload", "size", "index"}; older specs carry input.files as text."""
    listed = spec.get("inputFiles")
    if listed is None:
        return dict(spec["input"].get("files") or {})
    writers: dict = {}
    for item in listed:
        if "text" in item:
            writers[item["path"]] = item["text"]
        elif "base64" in item:
            import base64

            writers[item["path"]] = base64.b64decode(item["base64"])
        else:
            if channel is None:
                raise InputsUnavailable("this runner has no channel to fetch uploads")
            size = item.get("size")
            if size is None:
                raise InputsUnavailable(
                    f"the upload {item['upload']} for {item['path']!r} has expired "
                    "(uploads are kept 24 h): upload it again",
                    "input_expired",
                )
            writers[item["path"]] = _fetcher(channel, item["index"], size)
    return writers


def _fetcher(channel: FileChannel, index: int, size: int):
    def fetch(fd: int) -> None:
        try:
            channel.fetch(f"/inputs/{index}", fd, size)
        except TransferFailed as failure:
            raise InputsUnavailable(str(failure)) from None

    return fetch


def write_inputs(spec: TaskSpec, channel: FileChannel | None, workspace: str, uid) -> None:
    """Write the task's input files into its workspace.

    :raises InputsUnavailable: an upload could not be fetched, or a file could not be
        written (`input_unwritable`: a name too long for the file system, a file where a
        directory must be): a task error with its reason, never a lost runner.
    """
    try:
        write_input_files(workspace, input_writers(spec, channel), uid)
    except (OSError, ValueError) as error:
        raise InputsUnavailable(
            f"an input file cannot be written: {error}", code="input_unwritable"
        ) from None


def store_outputs(spec: TaskSpec, channel: FileChannel | None, workspace: str) -> dict:
    """{"files", "skipped", "skippedCount"}: every file kept is in the bucket."""
    limits = OutputLimits.from_spec(spec["limits"]["outputs"])
    if channel is None:
        return collect_outputs(workspace, limits)

    def store(fd: int, size: int, index: int) -> str:
        assert channel is not None  # passed on only with a channel (below)
        try:
            return channel.send_file(f"/outputs/{index}", fd, size)
        except ChangedWhileRead:
            raise SkipFile("changed_while_read: it shrank while it was stored") from None
        except TransferFailed as failure:
            reason = "too_large" if failure.status == 413 else "storage_unavailable"
            raise SkipFile(f"{reason}: {failure}") from None

    return collect_outputs(workspace, limits, store)


def restore_workspace(spec: TaskSpec, channel: FileChannel, root: str, workspace: str, uid) -> None:
    """Bring the conversation's last snapshot back into the (new) workspace."""
    settings = spec.get("workspace")
    snapshot = settings.get("restore") if settings else None
    if not snapshot:
        return
    archive = os.path.join(root, "restore.tar.gz")
    fd = os.open(archive, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    try:
        channel.fetch("/workspace", fd, snapshot["size"])
    except TransferFailed as failure:
        raise InputsUnavailable(f"the conversation's workspace: {failure}") from None
    finally:
        os.close(fd)
    try:
        restore_archive(archive, workspace, uid)
    finally:
        os.unlink(archive)


def save_workspace(spec: TaskSpec, channel: FileChannel, root: str, workspace: str) -> dict | None:
    """Archive the workspace and send it; returns {"size", "sha256"} of the snapshot,
    or None when this task keeps no workspace.

    :raises WorkspaceTooLarge: over the conversation's limit (nothing is sent).
    """
    settings = spec.get("workspace")
    if not settings:
        return None
    archive = os.path.join(root, "snapshot.tar.gz")
    try:
        size = save_archive(workspace, archive, settings["maxBytes"])
        fd = os.open(archive, os.O_RDONLY)
        try:
            sha256 = channel.send_file("/snapshot", fd, size)
        finally:
            os.close(fd)
    finally:
        if os.path.exists(archive):
            os.unlink(archive)
    return {"size": size, "sha256": sha256}


def save_turn_workspace(
    spec: TaskSpec, channel: FileChannel, root: str, workspace: str, result: dict
) -> tuple[str, dict | None]:
    """Snapshot an agent turn's workspace (an engine's state in it too) for the
    conversation's next turn, into `result["workspace"]`: ("completed", None), or
    ("failed", error) when it is over its limit or cannot be sent (the conversation then
    keeps its previous snapshot)."""
    try:
        snapshot = save_workspace(spec, channel, root, workspace)
    except WorkspaceTooLarge as problem:
        return "failed", {"code": "workspace_too_large", "message": str(problem)}
    except (TransferFailed, OSError) as problem:
        message = f"The workspace could not be saved: {problem}"[:2000]
        return "failed", {"code": "storage_unavailable", "message": message}
    if snapshot is not None:
        result["workspace"] = snapshot
    return "completed", None


__all__ = [
    "InputsUnavailable",
    "WorkspaceTooLarge",
    "input_writers",
    "restore_workspace",
    "save_turn_workspace",
    "save_workspace",
    "store_outputs",
    "write_inputs",
]
