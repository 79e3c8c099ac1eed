"""What a reader or an editor does: service functions over a unit of work."""
