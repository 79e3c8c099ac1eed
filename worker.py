"""Celery entry point: `celery -A worker worker` runs the newsletter's worker.

The one Celery app lives in newsletter.app.queue; here it is configured from the settings,
and the worker imports the tasks (newsletter.tasks.jobs) from the app's include list.
"""

from newsletter.app.queue import configure
from newsletter.core.config import get_settings

app = configure(get_settings())

__all__ = ["app"]
