"""Unit tests of newsletter.bounces.doors: the webhooks' checks, before any database."""
