"""The doors bounces come in by: inbound SMTP, mailboxes, and providers' webhooks."""
