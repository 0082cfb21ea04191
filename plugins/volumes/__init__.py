"""First-party volumes plugins."""
