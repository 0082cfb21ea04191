"""First-party filesystems plugins."""
