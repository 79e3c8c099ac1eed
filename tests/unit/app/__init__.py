"""Unit tests of newsletter.app: jobs and the unit of work, with a fake session and queue."""
