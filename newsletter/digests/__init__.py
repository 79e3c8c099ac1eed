"""Digests: newsletters, schedules, the digest's lifecycle, composition, dispatch, rendering."""
