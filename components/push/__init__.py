"""Push: the versioned serving directory and the Pusher that writes it."""
