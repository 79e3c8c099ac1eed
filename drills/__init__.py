"""Fault drills: a digest sent through a private stack while something breaks (issue 7)."""
