"""Unit tests of newsletter.digests: schedules on each clock, the state machine."""
