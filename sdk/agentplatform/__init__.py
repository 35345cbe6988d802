"""The Agent Platform SDK: run code and Claude agents as isolated tasks.

from agentplatform import Client

with Client("http://127.0.0.1:8080", user="alice") as client:
    task = client.run("print(6 * 7)")
    print(task.stdout)
"""

from __future__ import annotations

__version__ = "0.1.0"

from agentplatform._async import AsyncClient  # noqa: E402
from agentplatform._sync import Client  # noqa: E402
from agentplatform.errors import (  # noqa: E402
    AgentPlatformError,
    APIError,
    BadRequest,
    Conflict,
    InternalServerError,
    NotFound,
    PermissionDenied,
    RangeNotSatisfiable,
    RateLimited,
    ServiceUnavailable,
    TaskFailed,
    TooLarge,
    TransportError,
    Unauthenticated,
    Unprocessable,
    UnsupportedMediaType,
    ValidationError,
)
from agentplatform.models import (  # noqa: E402
    Agent,
    ApiKey,
    Conversation,
    Environment,
    ErrorDetail,
    Execution,
    FileListing,
    Message,
    OutputFile,
    Task,
    TaskEvent,
    TaskResult,
    Upload,
    Usage,
)

__all__ = [
    "APIError",
    "Agent",
    "AgentPlatformError",
    "ApiKey",
    "AsyncClient",
    "BadRequest",
    "Client",
    "Conflict",
    "Conversation",
    "Environment",
    "ErrorDetail",
    "Execution",
    "FileListing",
    "InternalServerError",
    "Message",
    "NotFound",
    "OutputFile",
    "PermissionDenied",
    "RangeNotSatisfiable",
    "RateLimited",
    "ServiceUnavailable",
    "Task",
    "TaskEvent",
    "TaskFailed",
    "TaskResult",
    "TooLarge",
    "TransportError",
    "Unauthenticated",
    "Unprocessable",
    "UnsupportedMediaType",
    "Upload",
    "Usage",
    "ValidationError",
]
