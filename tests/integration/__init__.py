"""Integration tests: SQLite and PostgreSQL, Redis, a real Celery worker, SMTP on loopback."""
