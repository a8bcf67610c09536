"""bench: verdicts on claims about open-weight LLMs, from arithmetic first and measurement second."""

__version__ = "0.1.0"
