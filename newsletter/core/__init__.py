"""The core every part stands on: settings, database, models, clock, tokens, checks, logs."""
