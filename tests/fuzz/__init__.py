"""Hostile input at scale: hypothesis runs of 10,000+ cases per input surface (marker `fuzz`)."""
