"""Readers: signup, confirmation, preferences, erasure, import, suppression, eligibility."""
