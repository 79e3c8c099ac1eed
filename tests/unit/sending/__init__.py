"""Unit tests of newsletter.sending: relay choice, retries, one message with a fake relay."""
