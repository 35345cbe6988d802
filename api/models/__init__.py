"""Request models: they validate what clients (and runners) send. Bounds come from
api.config so there is one place for every limit."""

from api.models.agents import (
    AgentCreate,
    AgentPatch,
    AgentTaskInput,
    CompatConversationBody,
    ConversationCreate,
    MessageCreate,
)
from api.models.batches import TaskBatch
from api.models.runner import ClaimBody, EventsBody, ResultBody
from api.models.tasks import CodeTaskInput, ListTasksQuery, check_relative_path

__all__ = [
    "AgentCreate",
    "AgentPatch",
    "AgentTaskInput",
    "ClaimBody",
    "CodeTaskInput",
    "CompatConversationBody",
    "ConversationCreate",
    "EventsBody",
    "ListTasksQuery",
    "MessageCreate",
    "ResultBody",
    "TaskBatch",
    "check_relative_path",
]
