"""Real-weight runs through the hub code path, offline: a registry entry resolves its branch to the
commit of a cached snapshot, loads safetensors from it, and the record names that commit."""

from __future__ import annotations

import shutil

from bench.records.store import iter_records
from tests.helpers.paths import ROOT

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def test_registry_model_from_the_hub_cache(run_bench, registry, tmp_path):
    from bench.weights import synthetic_hf

    built = synthetic_hf.build(registry.model("tiny-llama"), with_weights=True)
    hub = tmp_path / "hf" / "hub" / "models--bench-test--tiny-llama"
    shutil.copytree(built, hub / "snapshots" / COMMIT)
    (hub / "refs").mkdir()
    (hub / "refs" / "main").write_text(COMMIT)

    configs = tmp_path / "configs"
    shutil.copytree(ROOT / "configs", configs)
    entry = (configs / "models" / "tiny-llama.yaml").read_text()
    entry = entry.replace("id: tiny-llama", "id: tiny-hub").replace("synthetic: true", "repo: bench-test/tiny-llama")
    (configs / "models" / "tiny-hub.yaml").write_text(entry)

    env = {"BENCH_CONFIG_DIR": str(configs), "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"}
    proc = run_bench("run", "tiny-hub", "--device", "cpu", "--backend", "transformers", "--iterations", "2",
                     "--min-duration", "0.1", "--batch", "2", "--prompt-len", "8", "--output-len", "4",
                     "--results-dir", str(tmp_path / "results"), env=env)
    assert proc.returncode == 0, proc.stderr
    (record,) = list(iter_records(tmp_path / "results"))
    assert record.model.weights == "real" and record.model.repo == "bench-test/tiny-llama"
    assert record.model.revision == "main" and record.model.resolved_revision == COMMIT
    assert record.model.path.endswith(COMMIT)
