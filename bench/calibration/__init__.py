"""Probes that hold bench's estimates to what torch and the card actually did; not used by the commands."""
