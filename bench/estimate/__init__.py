"""Arithmetic from the architecture alone: parameters, memory, speed bounds. No torch here."""
