"""First-party hashers plugins."""
