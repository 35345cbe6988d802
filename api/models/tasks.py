"""Request models: they validate what clients send (and, later, generate the OpenAPI
schema). Bounds come from api.config so there is one place for every limit."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StringConstraints,
    field_validator,
)
from pydantic_core import PydanticCustomError

from api import config
from api.models.documents import TaskStatusName

Language = Literal["python", "bash", "javascript"]
# Bounds shared by every kind of task (and the agents' limits in models/agents.py).
TimeoutSeconds = Annotated[
    int, Field(ge=config.MIN_TIMEOUT_SECONDS, le=config.MAX_TIMEOUT_SECONDS, strict=True)
]
MemoryMb = Annotated[int, Field(ge=config.MIN_MEMORY_MB, le=config.MAX_MEMORY_MB, strict=True)]
# Where the finished task is POSTed (api/services/webhooks.py checks it against SSRF).
WebhookUrl = Annotated[
    str,
    StringConstraints(min_length=1, max_length=config.MAX_WEBHOOK_URL_CHARS),
    Field(
        description="https URL the finished task is POSTed to, signed per Standard Webhooks "
        "(see GET /api/webhooks/secret)."
    ),
]


SecretName = Annotated[
    str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$", max_length=64)
]


class NetworkAllow(BaseModel):
    """Egress through the runner's proxy to these hosts only (DESIGN section 16)."""

    model_config = ConfigDict(extra="forbid")

    allow: list[Annotated[str, StringConstraints(min_length=1, max_length=253)]] = Field(
        min_length=1,
        max_length=config.MAX_EGRESS_PATTERNS,
        description="Host names (`api.example.com`) and `*.` patterns (`*.example.org`: "
        "names below the domain). Within the deployment's EGRESS_ALLOWED_DOMAINS.",
    )

    @field_validator("allow")
    @classmethod
    def _patterns(cls, allow: list[str]) -> list[str]:
        from api.services.egress import normalize_pattern

        return list(dict.fromkeys(normalize_pattern(pattern) for pattern in allow))


Network = Annotated[
    StrictBool | NetworkAllow,
    Field(
        description='`{"allow": [...]}`: egress to those hosts through the runner\'s proxy, '
        "which refuses private, loopback and metadata addresses. `true`: the whole network "
        "(the weaker option), where ALLOW_TASK_NETWORK is set.",
    ),
]
Secrets = Annotated[
    list[SecretName],
    Field(
        max_length=config.MAX_SECRETS_PER_TASK,
        description="Names of your secrets (PUT /api/secrets/{name}) the program gets as "
        "environment variables; their values are masked as *** in what the task reports.",
    ),
]


EnvironmentRef = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"),
    Field(
        description="One of your custom environments (POST /api/environments), by name "
        "or id, once ready: its packages are on PATH and in Python's path."
    ),
]


def unique_names(names: list[str]) -> list[str]:
    if len(set(names)) != len(names):
        raise ValueError("secrets must not repeat")
    return names


def _utf8_len(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


def too_large(message: str) -> PydanticCustomError:
    """A size limit: the routes answer these with 413 rather than 400."""
    return PydanticCustomError("too_large", message)


class Base64File(BaseModel):
    """An input file's bytes, base64-encoded (RFC 4648, standard alphabet)."""

    model_config = ConfigDict(extra="forbid")

    base64: str


class UploadRef(BaseModel):
    """An input file uploaded before with `POST /api/uploads`."""

    model_config = ConfigDict(extra="forbid")

    upload: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{24}$")]


InputFile = str | Base64File | UploadRef


def decoded_size(value: InputFile) -> int:
    """Bytes the value adds to the task document (uploads live in the bucket)."""
    if isinstance(value, str):
        return _utf8_len(value)
    if isinstance(value, Base64File):
        return len(_decode_base64(value.base64))
    return 0


def _decode_base64(text: str) -> bytes:
    import base64
    import binascii

    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(
            "not valid base64 (standard alphabet A-Z a-z 0-9 + /, padded with =)"
        ) from None


class CodeTaskInput(BaseModel):
    """`POST /api/tasks` with `kind: "code"`."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    kind: Literal["code"]
    language: Language
    code: Annotated[str, StringConstraints(min_length=1)]
    stdin: str = ""
    files: dict[str, InputFile] = Field(default_factory=dict)
    timeout_seconds: TimeoutSeconds = Field(config.DEFAULT_TIMEOUT_SECONDS, alias="timeoutSeconds")
    memory_mb: MemoryMb = Field(config.DEFAULT_MEMORY_MB, alias="memoryMb")
    network: Network = False
    secrets: Secrets = Field(default_factory=list)
    environment: EnvironmentRef | None = None
    webhook_url: WebhookUrl | None = Field(None, alias="webhookUrl")

    _secrets = field_validator("secrets")(unique_names)

    @field_validator("code")
    @classmethod
    def _code_size(cls, code: str) -> str:
        if _utf8_len(code) > config.MAX_CODE_BYTES:
            raise too_large(f"code is larger than {config.MAX_CODE_BYTES} bytes")
        return code

    @field_validator("stdin")
    @classmethod
    def _stdin_size(cls, stdin: str) -> str:
        if _utf8_len(stdin) > config.MAX_STDIN_BYTES:
            raise too_large(f"stdin is larger than {config.MAX_STDIN_BYTES} bytes")
        return stdin

    @field_validator("files")
    @classmethod
    def _files(cls, files: dict[str, InputFile]) -> dict[str, InputFile]:
        if len(files) > config.MAX_FILES:
            raise too_large(f"at most {config.MAX_FILES} files are allowed")
        total = 0
        check_writable(files)
        for path, content in files.items():
            check_relative_path(path)
            try:
                total += decoded_size(content)
            except ValueError as problem:
                raise ValueError(f"files[{path!r}] is {problem}") from None
        if total > config.MAX_FILES_TOTAL_BYTES:
            raise too_large(
                f"files given inline add up to more than {config.MAX_FILES_TOTAL_BYTES} "
                "bytes: send bigger ones with POST /api/uploads and reference them as "
                '{"upload": "<id>"}'
            )
        return files

    def uploads(self) -> list[str]:
        return [v.upload for v in self.files.values() if isinstance(v, UploadRef)]

    def public(self) -> dict:
        """The task's `input`: what the runner needs (the webhook is the API's)."""
        exclude = {"webhook_url", *(("environment",) if self.environment is None else ())}
        return self.model_dump(by_alias=True, exclude=exclude)


def unwritable(message: str) -> PydanticCustomError:
    """Paths no file system can hold together: the routes answer these with 422."""
    return PydanticCustomError("unwritable_path", message)


def check_writable(paths: Iterable[str]) -> None:
    """Paths the runner can write: each name within the file system's 255 bytes, and
    no path both a file and a directory (`a` and `a/b`)."""
    given = set(paths)
    for path in given:
        parts = path.split("/")
        for part in parts:
            if len(part.encode("utf-8", "surrogatepass")) > config.MAX_FILE_NAME_BYTES:
                raise unwritable(
                    f"file path {path!r} has a name longer than {config.MAX_FILE_NAME_BYTES} bytes"
                )
        for depth in range(1, len(parts)):
            parent = "/".join(parts[:depth])
            if parent in given:
                raise unwritable(f"{parent!r} cannot be both a file and the directory of {path!r}")


def check_relative_path(path: str) -> None:
    if not path or len(path) > config.MAX_FILE_PATH_CHARS:
        raise ValueError(f"file path must be 1 to {config.MAX_FILE_PATH_CHARS} characters")
    if "\x00" in path or "\\" in path:
        raise ValueError(f"file path {path!r} has a forbidden character")
    parts = path.split("/")
    if path.startswith("/") or any(part in ("", ".", "..") for part in parts):
        raise ValueError(f"file path {path!r} must be relative, without '.', '..' or '//'")


class ListTasksQuery(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    limit: int = Field(config.LIST_PAGE_DEFAULT, ge=1, le=config.LIST_PAGE_MAX)
    page_token: str | None = Field(None, alias="pageToken", max_length=200)
    status: TaskStatusName | None = None
