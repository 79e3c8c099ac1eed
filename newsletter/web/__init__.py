"""The HTTP face of the service: readers' pages, the API, health."""
