"""The agent platform's API: a stateless Flask app (DESIGN sections 3 and 6)."""

from __future__ import annotations

import atexit
import threading
from dataclasses import dataclass

from flask import Flask

from api import config
from api.config import Settings


@dataclass
class Services:
    """Everything the routes use, built once per app from the settings."""

    settings: Settings
    store: object
    machine: object
    dispatcher: object
    tasks: object
    watch: object
    agents: object
    conversations: object
    llm_proxy: object
    auth: object
    api_keys: object
    files: object
    request_rate: object
    webhooks: object


def create_app(
    settings: Settings | None = None,
    *,
    store=None,
    executor=None,
    file_store=None,
    start_background: bool | None = None,
) -> Flask:
    """Build the app. Tests pass `settings`, `store`, `executor` or `file_store` to override the
    ones the environment would choose. The background dispatcher starts unless
    `start_background` is False, or the app is built for a `flask` CLI command
    (`flask --app api keys ...`; see api/cli.py)."""
    from api import cli, errors
    from api.adapters.executors import make_executor
    from api.adapters.file_store import GcsFileStore
    from api.adapters.firebase_certs import FirebaseCerts
    from api.adapters.firestore_store import FirestoreStore
    from api.adapters.llm import AnthropicUpstream
    from api.logging_setup import configure_logging
    from api.routes import agents as agent_routes
    from api.routes import (
        console,
        deployment,
        health,
        internal,
        internal_files,
        openapi,
        tasks,
        usage,
        webhooks,
    )
    from api.routes import conversations as conversation_routes
    from api.routes import files as file_routes
    from api.services.admission import TaskAdmission
    from api.services.agents import AgentService
    from api.services.auth import ApiKeyService, Authenticator, FirebaseTokenVerifier
    from api.services.conversations import ConversationService
    from api.services.dispatcher import Dispatcher
    from api.services.files import FileService
    from api.services.llm_proxy import LlmProxy
    from api.services.request_rate import RequestRate
    from api.services.state_machine import IN_FLIGHT, TaskStateMachine
    from api.services.task_watch import TaskWatch
    from api.services.tasks import TaskService, render_task
    from api.services.webhooks import WebhookService

    settings = settings or Settings.from_env()
    configure_logging(settings.project)

    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = config.MAX_BODY_BYTES
    app.json.sort_keys = False

    store = store or FirestoreStore(settings.project)
    machine = TaskStateMachine(
        store,
        runner_overhead_seconds=config.RUNNER_OVERHEAD_SECONDS,
        heartbeat_grace_seconds=settings.heartbeat_grace_seconds,
        claim_grace_seconds=config.CLAIM_GRACE_SECONDS,
    )
    watch = TaskWatch()
    holder: dict = {}
    executor = executor or make_executor(
        settings,
        on_exit=lambda *args: holder["dispatcher"].runner_exited(*args),
        count_in_flight=lambda: store.count_tasks_with_status(IN_FLIGHT),
    )
    dispatcher = Dispatcher(
        machine,
        executor,
        token_key=settings.task_token_key,
        runner_overhead_seconds=config.RUNNER_OVERHEAD_SECONDS,
        interval_seconds=settings.reconcile_interval_seconds,
        on_change=watch.changed,
        launch_in_request=(
            settings.dispatch_inline
            if settings.dispatch_inline is not None
            else executor.backend == "cloudrun"
        ),
        max_running_per_owner=settings.max_active_tasks_per_user,
    )
    holder["dispatcher"] = dispatcher
    upstream = AnthropicUpstream(
        api_key=settings.anthropic_api_key,
        api_key_secret=settings.anthropic_api_key_secret,
        base_url=settings.anthropic_base_url,
    )
    webhook_service = WebhookService(
        store,
        render_task=render_task,
        allow_loopback=settings.webhook_allow_loopback,
        retry_hours=settings.webhook_retry_hours,
        first_retry_seconds=settings.webhook_first_retry_seconds,
    )
    task_service = TaskService(
        machine,
        dispatcher,
        watch,
        allow_network=settings.allow_task_network,
        max_pending=settings.max_pending_tasks,
        llm_configured=upstream.configured,
        admission=TaskAdmission(
            store,
            max_unsettled=settings.max_unsettled_tasks_per_user,
            max_per_day=settings.max_tasks_per_user_per_day,
            max_active=settings.max_active_tasks_per_user,
            daily_token_budget=settings.user_daily_token_budget,
        ),
        check_webhook_url=webhook_service.check_url,
    )
    agents = AgentService(
        store, default_model=settings.default_model, allowed_models=settings.allowed_models
    )
    llm_proxy = LlmProxy(
        store,
        upstream,
        token_key=settings.task_token_key,
        allowed_models=settings.allowed_models,
        user_daily_token_budget=settings.user_daily_token_budget,
    )
    api_keys = ApiKeyService(store)
    files = FileService(
        store,
        file_store
        or GcsFileStore(
            settings.files_bucket,
            settings.project,
            retry_seconds=settings.storage_retry_seconds,
        ),
        max_upload_bytes=settings.max_upload_bytes,
    )
    firebase = FirebaseTokenVerifier(settings.project, FirebaseCerts(settings.firebase_certs_url))
    auth = Authenticator(settings.auth_modes, firebase=firebase, api_keys=api_keys)
    app.extensions["agent_platform"] = Services(
        settings=settings,
        store=store,
        machine=machine,
        dispatcher=dispatcher,
        tasks=task_service,
        watch=watch,
        agents=agents,
        conversations=ConversationService(store, task_service, agents, files),
        llm_proxy=llm_proxy,
        auth=auth,
        api_keys=api_keys,
        files=files,
        request_rate=RequestRate(settings.user_requests_per_second, settings.user_request_burst),
        webhooks=webhook_service,
    )

    errors.init_app(app)
    cli.init_app(app)
    app.register_blueprint(health.bp)
    app.register_blueprint(tasks.bp)
    app.register_blueprint(internal.bp)
    app.register_blueprint(internal_files.bp)
    app.register_blueprint(file_routes.bp)
    app.register_blueprint(agent_routes.bp)
    app.register_blueprint(conversation_routes.bp)
    app.register_blueprint(openapi.bp)
    app.register_blueprint(usage.bp)
    app.register_blueprint(deployment.bp)
    app.register_blueprint(console.bp)
    app.register_blueprint(webhooks.bp)

    if start_background is None:
        start_background = not cli.loading_for_a_command()
    if start_background:
        dispatcher.start()
        webhook_service.start(interval=min(settings.reconcile_interval_seconds, 2.0))
        threading.Thread(target=upstream.warm_up, name="llm-warm-up", daemon=True).start()

        def _shutdown() -> None:
            webhook_service.stop()
            dispatcher.stop()
            executor.shutdown()

        atexit.register(_shutdown)
    return app
