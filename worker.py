"""Celery entry point: `celery -A worker worker` runs the newsletter's worker."""

from newsletter.celeryapp import app

__all__ = ["app"]
