"""The WSGI entry point gunicorn serves: `gunicorn api.wsgi:app`."""

from api import create_app
from api.adapters.storage_check import check_storage_configuration
from api.config import Settings
from api.memory import tune_malloc

tune_malloc()
settings = Settings.from_env()
# A server that cannot store files does not start (the message says what to set).
check_storage_configuration(settings.files_bucket, settings.storage_emulator_host)
app = create_app(settings)
