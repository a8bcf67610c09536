"""Measurement trackers: context managers that observe a block of work."""
