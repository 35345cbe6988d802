"""The WSGI entry point gunicorn serves: `gunicorn api.wsgi:app`."""

from api import create_app
from api.memory import tune_malloc

tune_malloc()
app = create_app()
