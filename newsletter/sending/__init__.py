"""Sending: batches over one SMTP session, the delivery ledger, relays, the sweeper."""
