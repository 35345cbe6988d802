# gunicorn settings for Cloud Run and for `make dev` alike: one worker with threads
# (the app keeps its dispatcher thread and in-process waiters per worker), no worker
# timeout (Cloud Run enforces request timeouts itself), and a graceful SIGTERM.
# https://cloud.google.com/run/docs/tips/python#optimize_gunicorn
import os

bind = f"{os.environ.get('HOST', '0.0.0.0')}:{os.environ.get('PORT', '8080')}"
workers = 1
# uvicorn's event loop reads requests and writes responses; the Flask app runs on
# `threads` threads only once a request is in (api/serving.py, ADR 0015).
worker_class = "api.serving.BoundedWorker"
threads = int(os.environ.get("GUNICORN_THREADS", "16"))
timeout = 0
graceful_timeout = 10
accesslog = None
# No runtime control socket: one fixed path per user would clash between instances
# (tests run several), and Cloud Run manages the process anyway.
control_socket_disable = True

# gunicorn's own messages as JSON lines too, like the app's (Cloud Logging reads
# `severity` and `message`).
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "api.logging_setup.CloudLoggingFormatter"}},
    "handlers": {
        "stderr": {
            "class": "logging.StreamHandler",
            "formatter": "json",
            "stream": "ext://sys.stderr",
        }
    },
    "loggers": {
        "gunicorn.error": {"level": "INFO", "handlers": ["stderr"], "propagate": False},
        "gunicorn.access": {"level": "WARNING", "handlers": ["stderr"], "propagate": False},
    },
    "root": {"level": "INFO", "handlers": []},
}
