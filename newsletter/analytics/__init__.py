"""What readers read: tracked links, the click buffer, machine clicks, reports."""
