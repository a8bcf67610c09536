"""Inference engines behind one small interface; registered by name and imported lazily.

`bench --help` and the model-free commands never import an engine: a backend's module is
imported only when a run asks for it by name.
"""

from __future__ import annotations

import importlib

from bench.backends.base import Backend, EngineSettings

ENGINE_CLASSES = {
    "transformers": "bench.backends.hf:TransformersBackend",
    "vllm": "bench.backends.vllm:VLLMBackend",
    "llama.cpp": "bench.backends.llamacpp:LlamaCppBackend",
}


def create_backend(name: str, settings: EngineSettings) -> Backend:
    module, cls = ENGINE_CLASSES[name].split(":")
    return getattr(importlib.import_module(module), cls)(settings)


__all__ = ["ENGINE_CLASSES", "Backend", "EngineSettings", "create_backend"]
