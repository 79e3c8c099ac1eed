"""Unit tests of newsletter.core: config, clock, tokens, logs, translations."""
