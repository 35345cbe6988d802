"""`POST /api/tasks/batch` and the webhook secret's resource."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from api import config
from api.models.agents import AgentTaskInput
from api.models.tasks import CodeTaskInput, WebhookUrl


class TaskBatch(BaseModel):
    """Up to MAX_BATCH_TASKS task bodies, admitted together (all or none)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    tasks: Annotated[
        list[Annotated[CodeTaskInput | AgentTaskInput, Field(discriminator="kind")]],
        Field(min_length=1, max_length=config.MAX_BATCH_TASKS),
    ]
    webhook_url: WebhookUrl | None = Field(
        None, alias="webhookUrl", description="The webhook of every task without its own."
    )
