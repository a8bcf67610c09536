"""The weights a run loads: pinned hub downloads, real GGUF files, and random weights of real shapes."""
