"""The newsletter test suite."""
