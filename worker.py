"""Celery entry point: `celery -A worker worker` runs the newsletter's worker."""

from newsletter.tasks.celeryapp import app

__all__ = ["app"]
