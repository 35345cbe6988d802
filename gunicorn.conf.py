# gunicorn settings for Cloud Run and for `make dev` alike: one worker with threads
# (the app keeps its dispatcher thread and in-process waiters per worker), no worker
# timeout (Cloud Run enforces request timeouts itself), and a graceful SIGTERM.
# https://cloud.google.com/run/docs/tips/python#optimize_gunicorn
import os

bind = f"{os.environ.get('HOST', '0.0.0.0')}:{os.environ.get('PORT', '8080')}"
workers = 1
threads = int(os.environ.get("GUNICORN_THREADS", "16"))
timeout = 0
graceful_timeout = 10
accesslog = None
