"""Unit tests of newsletter.subscribers: the signup limits."""
