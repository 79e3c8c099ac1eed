"""What readers, editors and the beat do: service functions that commit, then enqueue."""
