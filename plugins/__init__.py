"""First-party examkit plugins (installed as ``examkit_plugins``)."""
