"""Random NF4 models (`bench.weights.synthetic_nf4`) on the CPU, against a real NF4 load of the same tiny
checkpoint: same modules, dtypes and markers, the estimator's bytes, one 16-bit weight at a time,
and `bench run --quant nf4 --weights synthetic` running NF4 for a registry model."""

from __future__ import annotations

import weakref

import pytest
import torch

from bench.records.store import iter_records
from tests.helpers.hub import hub_model_registry

pytest.importorskip("bitsandbytes")


def _random_nf4(path):
    from transformers import AutoConfig, AutoModelForCausalLM

    from bench.weights.synthetic_nf4 import nf4_config, random_model

    return random_model(AutoConfig.from_pretrained(path), auto_class=AutoModelForCausalLM, dtype=torch.bfloat16,
                        device=torch.device("cpu"), device_map={"": "cpu"}, quantization_config=nf4_config())


@pytest.fixture(scope="module")
def tiny(registry):
    from bench.weights import synthetic_hf

    return registry.model("tiny-llama"), synthetic_hf.build(registry.model("tiny-llama"), with_weights=True)


def test_random_nf4_model_is_what_from_pretrained_makes(tiny):
    from transformers import AutoModelForCausalLM

    from bench.weights.synthetic_nf4 import nf4_config

    _, path = tiny
    real = AutoModelForCausalLM.from_pretrained(path, quantization_config=nf4_config(), dtype=torch.bfloat16,
                                                device_map={"": "cpu"})
    made = _random_nf4(path)

    def layout(model):
        return ({name: type(m).__name__ for name, m in model.named_modules()},
                {name: (type(p).__name__, p.dtype, tuple(p.shape), p.requires_grad)
                 for name, p in model.named_parameters()})

    assert layout(made) == layout(real)
    assert type(made.model.layers[0].mlp.up_proj).__name__ == "Linear4bit"
    assert made.lm_head.weight.dtype == made.model.embed_tokens.weight.dtype == torch.bfloat16
    for marker in ("is_loaded_in_4bit", "is_4bit_serializable", "is_quantized", "quantization_method"):
        assert getattr(made, marker) == getattr(real, marker), marker
    assert type(made.hf_quantizer) is type(real.hf_quantizer)
    assert made.config.quantization_config.to_dict() == real.config.quantization_config.to_dict()
    logits = made(torch.tensor([[1, 5, 7, 9]])).logits
    assert logits.shape == (1, 4, 1024) and torch.isfinite(logits).all() and logits.std() > 0


def test_quantized_bytes_are_the_estimators(tiny):
    """Every tensor the model holds, against `weight_bytes` for NF4 with double quantisation: equal
    to the byte but for bitsandbytes' per-layer lookup tables (a 256-entry fp32 map for the nested
    absmax, 16 NF4 levels, one offset: 1,092 bytes a layer, 0.9% here, 0.0001% at 24B)."""
    from bench.estimate.memory import weight_bytes
    from bench.estimate.params import count_params
    from bench.estimate.quant import weight_format
    from bench.scenarios.finetune import state_census

    spec, path = tiny
    model = _random_nf4(path)
    held = sum(n for role in state_census(model).values() for n in role.values())
    estimate = weight_bytes(count_params(spec.architecture), weight_format("nf4", double_quant=True))
    assert held == pytest.approx(estimate, rel=0.01)
    layers = [m for m in model.modules() if type(m).__name__ == "Linear4bit"]
    tables = sum(t.numel() * t.element_size() for m in layers for t in (
        m.weight.quant_state.code, m.weight.quant_state.offset, m.weight.quant_state.state2.code))
    assert tables == len(layers) * (16 * 4 + 4 + 256 * 4)
    assert held - tables == estimate


def test_one_random_16bit_weight_is_alive_at_a_time(tiny, monkeypatch):
    """Peak memory is the quantized model plus one 16-bit weight: each random weight is gone before
    the loader reads the next."""
    from bench.weights import synthetic_nf4

    made, alive_at_each_read = [], []
    read = synthetic_nf4.RandomWeight.__getitem__

    def recording_read(self, index):
        alive_at_each_read.append(sum(ref() is not None for ref in made))
        tensor = read(self, index)
        made.append(weakref.ref(tensor))
        return tensor

    monkeypatch.setattr(synthetic_nf4.RandomWeight, "__getitem__", recording_read)
    _random_nf4(tiny[1])
    assert len(made) == 14  # q, k, v, o, gate, up, down in each of 2 layers
    assert alive_at_each_read == [0] * 14


def test_bench_run_nf4_with_synthetic_weights_runs_nf4(run_bench, tmp_path):
    env = hub_model_registry(tmp_path)
    proc = run_bench("run", "tiny-hub", "--backend", "transformers", "--quant", "nf4", "--weights", "synthetic",
                     "--device", "cpu", "--iterations", "2", "--min-duration", "0.1", "--batch", "2",
                     "--prompt-len", "8", "--output-len", "4", "--results-dir", str(tmp_path / "results"), env=env)
    assert proc.returncode == 0, proc.stderr
    (record,) = list(iter_records(tmp_path / "results"))
    assert record.status == "ok" and record.model.weights == "synthetic"
    assert record.config["scenario"]["engine"]["synthetic_weights"] is True
    assert record.details["engine"]["weights_format"] == "nf4"
    assert record.metrics["decode_tokens_per_s"].value > 0
