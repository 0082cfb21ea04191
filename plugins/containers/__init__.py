"""First-party containers plugins."""
