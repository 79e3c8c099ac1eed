"""Benchmarks: how fast the newsletter's bulk paths run on a real database."""
