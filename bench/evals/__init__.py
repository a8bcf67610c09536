"""Evaluation with lm-evaluation-harness: bench's offline smoke tasks and an lm-eval model over vLLM."""
