"""Celery tasks: thin adapters over the services, run by the worker."""
