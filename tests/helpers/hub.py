"""A registry with a model that bench must treat as a hub model (not one it builds), for the offline hub paths."""

from __future__ import annotations

import shutil

from tests.helpers.paths import ROOT


def hub_model_registry(tmp_path) -> dict[str, str]:
    """A copy of the registry with `tiny-hub`: tiny-llama's shape as a hub model (not built by bench),
    so `--weights synthetic` takes the real-scale path (config and tokenizer only, random weights)."""
    configs = tmp_path / "configs"
    shutil.copytree(ROOT / "configs", configs)
    entry = (configs / "models" / "tiny-llama.yaml").read_text()
    entry = entry.replace("id: tiny-llama", "id: tiny-hub").replace("synthetic: true", "repo: bench-test/tiny-llama")
    (configs / "models" / "tiny-hub.yaml").write_text(entry)
    return {"BENCH_CONFIG_DIR": str(configs), "HF_HUB_OFFLINE": "1"}
