"""Where the checkout is, for tests that read its configs or run its scripts."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
