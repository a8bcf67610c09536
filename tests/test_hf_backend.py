"""The transformers backend on the CPU: where it puts a model, which class loads it, and what it
says it ran. Checkpoints are tiny and written by transformers itself."""

from __future__ import annotations

import json

import pytest
import torch

from bench.backends.base import EngineSettings
from bench.backends.hf import TransformersBackend, auto_class_for, placement, quantization_config

pytest.importorskip("transformers")


def test_memory_cap_names_a_card_torch_resolves():
    """torch.cuda.set_per_process_memory_fraction resolves its device with _get_device_index,
    which refuses a CUDA device without an index; bench passes card indices."""
    from torch.cuda._utils import _get_device_index

    with pytest.raises(ValueError, match="specified index"):
        _get_device_index(torch.device("cuda"))  # what bench used to pass
    for cards, current in ((1, 0), (1, 1), (2, 0)):
        where = placement("cuda", cards, current, 20 * 2**30)
        assert [_get_device_index(card) for card in where.cards] == list(range(current, current + cards))


def test_one_card_holds_the_whole_model():
    where = placement("cuda", 1, 3, 20 * 2**30)
    assert where.device_map == {"": 3} and where.max_memory is None and where.device == torch.device("cuda", 3)
    cpu = placement("cpu", 1, 0, None)
    assert cpu.device_map == {"": "cpu"} and cpu.cards == () and cpu.device == torch.device("cpu")


def test_several_cards_share_the_model_and_a_spill_is_out_of_memory(registry):
    """The device map from_pretrained derives from bench's max_memory (transformers' own
    `_get_device_map`, which plans on the meta device: no GPU needed) spreads the layers over
    both cards; under too small a cap accelerate spills to disk, which bench calls out of memory."""
    from transformers import AutoConfig, AutoModelForCausalLM
    from transformers.integrations.accelerate import _get_device_map

    from bench.weights import synthetic_hf

    config = AutoConfig.from_pretrained(synthetic_hf.build(registry.model("tiny-llama"), with_weights=False))
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)  # 3.1 MiB in bf16
    roomy = placement("cuda", 2, 0, 4 * 2**20)
    assert roomy.device_map == "auto" and roomy.max_memory == {0: 4 * 2**20, 1: 4 * 2**20}
    assert roomy.cards == (0, 1)
    placed = _get_device_map(model, roomy.device_map, dict(roomy.max_memory), None)
    assert set(placed.values()) == {0, 1}
    roomy.check(placed)

    tight = placement("cuda", 2, 0, 2**20)
    placed = _get_device_map(model, tight.device_map, dict(tight.max_memory), None)
    assert "disk" in placed.values()
    with pytest.raises(torch.OutOfMemoryError, match="placed part of it on disk"):
        tight.check(placed)


def test_quants_it_cannot_run_are_refused():
    for quant in ("fp8", "int4"):
        with pytest.raises(ValueError, match=f"not {quant}"):
            quantization_config(quant, torch.bfloat16)
    assert quantization_config("bf16", torch.bfloat16) is None


def _tiny_mistral3(path):
    """A Mistral3ForConditionalGeneration checkpoint (Ministral 3's class): tiny ministral3 text
    model, tiny Pixtral vision tower."""
    from transformers import Mistral3Config, Mistral3ForConditionalGeneration

    text = dict(model_type="ministral3", hidden_size=256, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=2, head_dim=64, intermediate_size=512, vocab_size=512,
                max_position_embeddings=262144, tie_word_embeddings=True)  # 16 x the yarn original, as shipped
    vision = dict(model_type="pixtral", hidden_size=64, intermediate_size=128, num_hidden_layers=1,
                  num_attention_heads=2, head_dim=32, image_size=64, patch_size=16)
    torch.manual_seed(0)
    Mistral3ForConditionalGeneration(Mistral3Config(text_config=text, vision_config=vision)).to(
        torch.bfloat16).save_pretrained(path)
    return path


@pytest.mark.parametrize("quant", ["bf16", "nf4"])
def test_a_conditional_generation_checkpoint_generates_text(tmp_path, quant):
    from transformers import AutoConfig, AutoModelForImageTextToText

    if quant == "nf4":
        pytest.importorskip("bitsandbytes")
    path = _tiny_mistral3(tmp_path / "mistral3")
    assert json.loads((path / "config.json").read_text())["architectures"] == ["Mistral3ForConditionalGeneration"]
    assert auto_class_for(AutoConfig.from_pretrained(path)) is AutoModelForImageTextToText
    backend = TransformersBackend(EngineSettings(model_path=str(path), device="cpu", quant=quant))
    backend.load()
    (gen,) = backend.generate([[1, 5, 7, 9]], 4)
    info = backend.engine_info()
    backend.close()
    assert gen.output_tokens == 4 and len(gen.token_times) == 4
    assert info["model_class"] == "Mistral3ForConditionalGeneration" and info["weights_format"] == quant


def test_an_fp8_checkpoint_without_fp8_kernels_runs_and_says_bf16(tmp_path):
    """transformers dequantizes a pre-quantized FP8 checkpoint to bf16 where there is no GPU (or one
    below compute capability 8.9); the record then names what ran, not what the config said."""
    from safetensors.torch import load_file, save_file

    path = _tiny_mistral3(tmp_path / "fp8")
    weights = load_file(path / "model.safetensors")
    for name in [n for n in weights if ".layers." in n and "language_model" in n and n.endswith("proj.weight")]:
        out, inp = weights[name].shape  # 128 x 128 blocks, one fp32 scale each, as fine-grained FP8 stores them
        blocks = weights[name].float().reshape(out // 128, 128, inp // 128, 128)
        scale = blocks.abs().amax(dim=(1, 3)) / 448.0
        weights[name] = (blocks / scale[:, None, :, None]).reshape(out, inp).to(torch.float8_e4m3fn)
        weights[name.replace("weight", "weight_scale_inv")] = scale
    save_file(weights, path / "model.safetensors", metadata={"format": "pt"})
    config = json.loads((path / "config.json").read_text())
    config["quantization_config"] = {"quant_method": "fp8", "activation_scheme": "dynamic",
                                     "weight_block_size": [128, 128],
                                     "modules_to_not_convert": ["vision_tower", "multi_modal_projector", "lm_head"]}
    (path / "config.json").write_text(json.dumps(config))

    backend = TransformersBackend(EngineSettings(model_path=str(path), device="cpu", quant="bf16"))
    backend.load()
    (gen,) = backend.generate([[1, 5, 7]], 3)
    assert gen.output_tokens == 3 and backend.engine_info()["weights_format"] == "bf16"
    assert getattr(backend.model, "hf_quantizer", None) is None
