"""Harmless sample hash sets for the demo and tests (installed as ``examkit_samples``)."""
