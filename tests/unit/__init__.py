"""Unit tests: no database server, broker, SMTP server or worker; under a minute."""
