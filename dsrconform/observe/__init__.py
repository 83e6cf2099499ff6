"""Observation: what the framework records about a lab run (taps, histories, counters)."""
