"""Unit tests of newsletter.bounces: reading returned mail and what the doors accept."""
