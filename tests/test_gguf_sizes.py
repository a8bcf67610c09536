"""GGUF weights as llama.cpp's quantizer writes them, checked against published files.

A published size is the whole file: the tensor data bench computes plus a header
(metadata and the tokenizer's vocabulary, a few MB: about 0.1-0.2% of these files).
The hub shows sizes in decimal GB rounded to three figures. So each check asserts that
bench's tensor bytes are within 1% of the published size *and* not above it beyond the
display's rounding: the header can only add bytes.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from bench.config.hfconfig import from_hf_dict
from bench.estimate.gguf import (
    GGML_TYPES,
    GGUF_FTYPES,
    GGUF_QUANTS,
    gguf_tensor_sizes,
    gguf_tensors,
    gguf_weight_bytes,
    source_tensors,
    type_counts,
)
from tests.helpers.imports import HEAVY, PROBE
from tests.helpers.paths import ROOT

# config.json numbers of the text models (Hugging Face field names).
LLAMA31_8B = dict(model_type="llama", hidden_size=4096, num_hidden_layers=32, num_attention_heads=32,
                  num_key_value_heads=8, intermediate_size=14336, vocab_size=128256,
                  max_position_embeddings=131072, tie_word_embeddings=False)
LLAMA33_70B = dict(LLAMA31_8B, hidden_size=8192, num_hidden_layers=80, num_attention_heads=64,
                   intermediate_size=28672)
MISTRAL_SMALL_24B = dict(model_type="mistral", hidden_size=5120, num_hidden_layers=40, num_attention_heads=32,
                         num_key_value_heads=8, head_dim=128, intermediate_size=32768, vocab_size=131072,
                         max_position_embeddings=32768, sliding_window=None)
MISTRAL_SMALL_22B = dict(MISTRAL_SMALL_24B, hidden_size=6144, num_hidden_layers=56, num_attention_heads=48,
                         intermediate_size=16384, vocab_size=32768)
QWEN25_7B = dict(model_type="qwen2", hidden_size=3584, num_hidden_layers=28, num_attention_heads=28,
                 num_key_value_heads=4, intermediate_size=18944, vocab_size=152064, max_position_embeddings=32768,
                 tie_word_embeddings=False)
GEMMA2_9B = dict(model_type="gemma2", hidden_size=3584, num_hidden_layers=42, num_attention_heads=16,
                 num_key_value_heads=8, head_dim=256, intermediate_size=14336, vocab_size=256000,
                 max_position_embeddings=8192, sliding_window=4096)
# Qwen3: per-head q/k norms, no biases. Qwen/Qwen3-8B and Qwen/Qwen3-4B config.json (Qwen3-4B ties its
# embeddings).
QWEN3_8B = dict(model_type="qwen3", hidden_size=4096, num_hidden_layers=36, num_attention_heads=32,
                num_key_value_heads=8, head_dim=128, intermediate_size=12288, vocab_size=151936,
                max_position_embeddings=40960, tie_word_embeddings=False)
QWEN3_4B = dict(QWEN3_8B, hidden_size=2560, intermediate_size=9728, tie_word_embeddings=True)
# Qwen3-30B-A3B: 128 routed experts of width 768, 8 per token, no shared expert (Qwen/Qwen3-30B-A3B config.json).
QWEN3_30B_A3B = dict(model_type="qwen3_moe", hidden_size=2048, num_hidden_layers=48, num_attention_heads=32,
                     num_key_value_heads=4, head_dim=128, intermediate_size=6144, moe_intermediate_size=768,
                     num_experts=128, num_experts_per_tok=8, vocab_size=151936, max_position_embeddings=40960,
                     tie_word_embeddings=False)
# DeepSeek-V3 (deepseek-ai/DeepSeek-V3 config.json): MLA, 3 dense layers, 256 routed experts and one shared.
DEEPSEEK_V3 = dict(model_type="deepseek_v3", hidden_size=7168, num_hidden_layers=61, num_attention_heads=128,
                   num_key_value_heads=128, intermediate_size=18432, moe_intermediate_size=2048, n_routed_experts=256,
                   n_shared_experts=1, num_experts_per_tok=8, first_k_dense_replace=3, q_lora_rank=1536,
                   kv_lora_rank=512, qk_nope_head_dim=128, qk_rope_head_dim=64, v_head_dim=128, vocab_size=129280,
                   max_position_embeddings=163840)
# Gemma 3 4B: google/gemma-3-4b-it's text_config over transformers' Gemma3TextConfig defaults
# (sources in configs/models/gemma-3-4b.yaml).
GEMMA3_4B = dict(model_type="gemma3_text", hidden_size=2560, num_hidden_layers=34, num_attention_heads=8,
                 num_key_value_heads=4, head_dim=256, intermediate_size=10240, vocab_size=262208,
                 max_position_embeddings=131072, sliding_window=1024)
MIXTRAL_8X7B = dict(model_type="mixtral", hidden_size=4096, num_hidden_layers=32, num_attention_heads=32,
                    num_key_value_heads=8, intermediate_size=14336, vocab_size=32000,
                    max_position_embeddings=32768, num_local_experts=8, num_experts_per_tok=2)

# (model config, rope_freqs tensor present, quant, published GB, source)
PUBLISHED = [
    (LLAMA31_8B, True, "q4_k_m", 4.92,
     "https://huggingface.co/bartowski/Meta-Llama-3.1-8B-Instruct-GGUF/blob/7cbac9881964b4c07e9d7097c4f5c2f5e132c78c/Meta-Llama-3.1-8B-Instruct-Q4_K_M.gguf"),  # noqa: E501
    (LLAMA31_8B, True, "q8_0", 8.54,
     "https://huggingface.co/bartowski/Meta-Llama-3.1-8B-Instruct-GGUF/blob/c17199b442aed9e7c9935d2a1b36ad9e1c0416a0/Meta-Llama-3.1-8B-Instruct-Q8_0.gguf"),  # noqa: E501
    (LLAMA33_70B, True, "q4_k_m", 42.5,  # the 70B rule: attn_v Q4_K -> Q5_K
     "https://huggingface.co/mmnga/Llama-3.3-70B-Instruct-gguf/blob/3cca58a10c9ec752713c8745e56f3010f453aa67/Llama-3.3-70B-Instruct-Q4_K_M.gguf"),  # noqa: E501
    (MISTRAL_SMALL_24B, False, "q4_k_m", 14.3,  # Mistral-Small-24B-Base-2501, the same text shapes
     "https://huggingface.co/lolnoyarite/Mistral-Small-24B-Base-2501-Q4_K_M-GGUF/tree/7bbe86529e0a337e7638be4041455d15c7048c07"),  # noqa: E501
    (MISTRAL_SMALL_24B, False, "q4_k_s", 13.5,
     "https://huggingface.co/bartowski/Mistral-Small-24B-Instruct-2501-GGUF/blob/62a613c92d5a5f73bba6d348b51433b232c4640c/Mistral-Small-24B-Instruct-2501-Q4_K_S.gguf"),  # noqa: E501
    (MISTRAL_SMALL_24B, False, "q5_k_m", 16.8,
     "https://huggingface.co/bartowski/Mistral-Small-24B-Instruct-2501-GGUF/blob/3e1031233011b2b7e3c8598e7bc97252c84787fd/Mistral-Small-24B-Instruct-2501-Q5_K_M.gguf"),  # noqa: E501
    (MISTRAL_SMALL_24B, False, "q5_k_s", 16.3,
     "https://huggingface.co/bartowski/Mistral-Small-24B-Instruct-2501-GGUF/blob/c0ff4679bbb7162aee7feb284e8fd363223a9873/Mistral-Small-24B-Instruct-2501-Q5_K_S.gguf"),  # noqa: E501
    # Mistral Small 3.1 (2503): the same text model; its vision tower is a separate mmproj file.
    (MISTRAL_SMALL_24B, False, "bf16", 47.2,
     "https://huggingface.co/unsloth/Mistral-Small-3.1-24B-Instruct-2503-GGUF/tree/main"),
    (MISTRAL_SMALL_24B, False, "q6_k", 19.3,
     "https://huggingface.co/unsloth/Mistral-Small-3.1-24B-Instruct-2503-GGUF/tree/main"),
    (MISTRAL_SMALL_24B, False, "q8_0", 25.1,
     "https://huggingface.co/unsloth/Mistral-Small-3.1-24B-Instruct-2503-GGUF/tree/main"),
    (MISTRAL_SMALL_22B, False, "q4_k_s", 12.7,
     "https://huggingface.co/bartowski/Mistral-Small-Instruct-2409-GGUF/blob/65027d4ddaea67220fa1f920a0181e01fed8c698/Mistral-Small-Instruct-2409-Q4_K_S.gguf"),  # noqa: E501
    (MISTRAL_SMALL_22B, False, "q6_k", 18.3,
     "https://huggingface.co/bartowski/Mistral-Small-Instruct-2409-GGUF/blob/fadc4e9275ddb0c29cbcf900418dfda765d661c2/Mistral-Small-Instruct-2409-Q6_K.gguf"),  # noqa: E501
    (QWEN25_7B, False, "q4_k_m", 4.68,
     "https://huggingface.co/bartowski/Qwen2.5-7B-Instruct-GGUF/blob/f4b6063c19a94c15fe9031d8afbbb9df7ec8b93f/Qwen2.5-7B-Instruct-Q4_K_M.gguf"),  # noqa: E501
    (GEMMA2_9B, False, "q4_k_m", 5.76,  # tied embeddings: token_embd at Q6_K
     "https://huggingface.co/bartowski/gemma-2-9b-it-GGUF/blob/main/gemma-2-9b-it-Q4_K_M.gguf"),
    (GEMMA2_9B, False, "q4_k_s", 5.48,
     "https://huggingface.co/bartowski/gemma-2-9b-it-GGUF/blob/a451be6bec4945f9fc0af02e017c35f43b3e459b/gemma-2-9b-it-Q4_K_S.gguf"),  # noqa: E501
    (GEMMA2_9B, False, "q4_0", 5.44,
     "https://huggingface.co/SanctumAI/gemma-2-9b-it-GGUF/blob/15a5cc333c722c4fbdce9ae629d5478437a6b2a4/gemma-2-9b-it.Q4_0.gguf"),  # noqa: E501
    (MIXTRAL_8X7B, False, "q4_k_m", 28.4,  # 8 experts: attn_k/attn_v Q8_0, attn_output Q5_K
     "https://huggingface.co/Artefact2/Mixtral-8x7B-v0.1-GGUF/blob/7b94e42a1e57efa91a45ce98425917e12279a186/Mixtral-8x7B-v0.1-Q4_K_M.gguf"),  # noqa: E501
    (MIXTRAL_8X7B, False, "q4_0", 26.4,
     "https://huggingface.co/gobean/Mixtral-8x7B-Instruct-v0.1-GGUF/tree/b2c06e8c20f6eaf1938c0d0b46d63d41ca172995"),
    (MIXTRAL_8X7B, False, "q5_k_m", 33.2,
     "https://huggingface.co/gobean/Mixtral-8x7B-Instruct-v0.1-GGUF/tree/b2c06e8c20f6eaf1938c0d0b46d63d41ca172995"),
    (MIXTRAL_8X7B, False, "q6_k", 38.4,
     "https://huggingface.co/gobean/Mixtral-8x7B-Instruct-v0.1-GGUF/tree/b2c06e8c20f6eaf1938c0d0b46d63d41ca172995"),
    # bartowski/Qwen_Qwen3-8B-GGUF (llama.cpp b5200), its README's table as mirrored by aibase.
    (QWEN3_8B, False, "bf16", 16.39, "https://model.aibase.cn/models/details/1924737620978700288"),
    (QWEN3_8B, False, "q8_0", 8.71, "https://model.aibase.cn/models/details/1924737620978700288"),
    (QWEN3_8B, False, "q6_k", 6.73, "https://model.aibase.cn/models/details/1924737620978700288"),
    # bartowski/Qwen_Qwen3-4B-GGUF (llama.cpp b5200), tied embeddings: token_embd at Q6_K.
    (QWEN3_4B, False, "bf16", 8.05, "https://hf.qhduan.com/bartowski/Qwen_Qwen3-4B-GGUF/blob/main/README.md"),
    (QWEN3_4B, False, "q8_0", 4.28, "https://hf.qhduan.com/bartowski/Qwen_Qwen3-4B-GGUF/blob/main/README.md"),
    (QWEN3_4B, False, "q6_k", 3.31, "https://hf.qhduan.com/bartowski/Qwen_Qwen3-4B-GGUF/blob/main/README.md"),
    (QWEN3_4B, False, "q5_k_m", 2.89, "https://hf.qhduan.com/bartowski/Qwen_Qwen3-4B-GGUF/blob/main/README.md"),
    (QWEN3_4B, False, "q5_k_s", 2.82, "https://hf.qhduan.com/bartowski/Qwen_Qwen3-4B-GGUF/blob/main/README.md"),
    (QWEN3_4B, False, "q4_k_m", 2.50, "https://hf.qhduan.com/bartowski/Qwen_Qwen3-4B-GGUF/blob/main/README.md"),
    (QWEN3_4B, False, "q4_k_s", 2.38, "https://hf.qhduan.com/bartowski/Qwen_Qwen3-4B-GGUF/blob/main/README.md"),
    # bartowski/Qwen_Qwen3-30B-A3B-GGUF (llama.cpp b5200), its README's table as mirrored by aibase; bf16 in two parts.
    (QWEN3_30B_A3B, False, "bf16", 61.10, "https://model.aibase.com/zh/models/details/1924737621108723712"),
    (QWEN3_30B_A3B, False, "q8_0", 32.48, "https://model.aibase.com/zh/models/details/1924737621108723712"),
    (QWEN3_30B_A3B, False, "q6_k", 25.10, "https://model.aibase.com/zh/models/details/1924737621108723712"),
    (QWEN3_30B_A3B, False, "q5_k_m", 21.74, "https://model.aibase.com/zh/models/details/1924737621108723712"),
    (QWEN3_30B_A3B, False, "q5_k_s", 21.10, "https://model.aibase.com/zh/models/details/1924737621108723712"),
    # bartowski/deepseek-ai_DeepSeek-V3-0324-GGUF (llama.cpp b4944, split files). Made before the converter split
    # attn_kv_b into attn_k_b and attn_v_b: the same parameters, a few types apart (within 0.02% here).
    (DEEPSEEK_V3, False, "q8_0", 713.29, "https://voozh.deno.dev/url/https://huggingface.co/bartowski/deepseek-ai_DeepSeek-V3-0324-GGUF"),  # noqa: E501
    (DEEPSEEK_V3, False, "q6_k", 550.80, "https://voozh.deno.dev/url/https://huggingface.co/bartowski/deepseek-ai_DeepSeek-V3-0324-GGUF"),  # noqa: E501
    (DEEPSEEK_V3, False, "q5_k_m", 475.40, "https://voozh.deno.dev/url/https://huggingface.co/bartowski/deepseek-ai_DeepSeek-V3-0324-GGUF"),  # noqa: E501
    (DEEPSEEK_V3, False, "q4_k_m", 404.43, "https://voozh.deno.dev/url/https://huggingface.co/bartowski/deepseek-ai_DeepSeek-V3-0324-GGUF"),  # noqa: E501
    # bartowski/google_gemma-3-4b-it-GGUF (llama.cpp b4877). The file's embedding has the tokenizer's 262,144
    # rows (the converter drops the config's 64 padding rows): 0.13 MB at Q6_K, inside the rounding.
    (GEMMA3_4B, False, "bf16", 7.77, "https://mygguf.com/models/bartowski_google_gemma-3-4b-it-GGUF"),
    (GEMMA3_4B, False, "q8_0", 4.13, "https://mygguf.com/models/bartowski_google_gemma-3-4b-it-GGUF"),
    (GEMMA3_4B, False, "q6_k", 3.19, "https://mygguf.com/models/bartowski_google_gemma-3-4b-it-GGUF"),
    (GEMMA3_4B, False, "q5_k_m", 2.83, "https://mygguf.com/models/bartowski_google_gemma-3-4b-it-GGUF"),
    (GEMMA3_4B, False, "q5_k_s", 2.76, "https://mygguf.com/models/bartowski_google_gemma-3-4b-it-GGUF"),
    (GEMMA3_4B, False, "q4_k_m", 2.49, "https://mygguf.com/models/bartowski_google_gemma-3-4b-it-GGUF"),
]


@pytest.mark.parametrize("config,rope_freqs,quant,published_gb,source", PUBLISHED,
                         ids=[f"{c['model_type']}-{c['num_hidden_layers']}L-{q}" for c, _, q, _, _ in PUBLISHED])
def test_tensor_bytes_match_published_file(config, rope_freqs, quant, published_gb, source):
    cfg = from_hf_dict(config, source)
    tensors = gguf_weight_bytes(cfg, quant, rope_freqs=rope_freqs)
    published = published_gb * 1e9
    rounding = 0.05 * 10 ** (len(str(int(published_gb))) - 2) * 1e9  # half a unit of the third figure
    assert abs(tensors - published) / published < 0.01, (tensors, published, source)
    assert tensors <= published + rounding, "tensor bytes cannot exceed the whole file"


def test_headline_sizes_of_the_issue():
    # Llama-3.1-8B-Instruct Q4_K_M is 4.92 GB; Mistral-Small-24B-Instruct-2501 Q4_K_M 14.3 GB.
    assert round(gguf_weight_bytes(from_hf_dict(LLAMA31_8B, "l"), "q4_k_m", rope_freqs=True) / 1e9, 2) == 4.91
    assert round(gguf_weight_bytes(from_hf_dict(MISTRAL_SMALL_24B, "m"), "q4_k_m") / 1e9, 1) == 14.3


def _use_more_bits(i: int, n: int) -> bool:  # restated from llama-quant.cpp, for the expectation below
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2


def test_q4_k_m_per_tensor_choices_of_a_32_layer_llama():
    cfg = from_hf_dict(LLAMA31_8B, "llama")
    types = {t.name: t.ggml_type for t in gguf_tensors(cfg, "q4_k_m")}
    # llama.cpp's loader prints, for every 32-layer llama Q4_K_M: f32 65, q4_K 193, q6_K 33.
    assert type_counts(list(gguf_tensors(cfg, "q4_k_m"))) == {"F32": 65, "Q4_K": 193, "Q6_K": 33}
    bumped = [i for i in range(32) if _use_more_bits(i, 32)]
    assert bumped == [0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 28, 29, 30, 31]
    for i in range(32):
        want = "Q6_K" if i in bumped else "Q4_K"
        assert types[f"blk.{i}.attn_v.weight"] == want
        assert types[f"blk.{i}.ffn_down.weight"] == want
        assert types[f"blk.{i}.attn_q.weight"] == types[f"blk.{i}.ffn_up.weight"] == "Q4_K"
        assert types[f"blk.{i}.attn_norm.weight"] == "F32"
    assert types["output.weight"] == "Q6_K"
    assert types["token_embd.weight"] == "Q4_K"  # untied: the embedding keeps the mix's type


def test_q4_k_s_and_tied_embeddings():
    cfg = from_hf_dict(dict(LLAMA31_8B, tie_word_embeddings=True), "tied")
    types = {t.name: t.ggml_type for t in gguf_tensors(cfg, "q4_k_s")}
    assert "output.weight" not in types and types["token_embd.weight"] == "Q6_K"
    assert [types[f"blk.{i}.attn_v.weight"] for i in range(6)] == ["Q5_K"] * 4 + ["Q4_K"] * 2
    assert [types[f"blk.{i}.ffn_down.weight"] for i in range(5)] == ["Q5_K"] * 4 + ["Q4_K"]


def test_mixtral_expert_tensors_and_router():
    cfg = from_hf_dict(MIXTRAL_8X7B, "mixtral")
    tensors = {t.name: t for t in gguf_tensors(cfg, "q4_k_m")}
    down = tensors["blk.0.ffn_down_exps.weight"]
    assert down.shape == (14336, 4096, 8) and down.ggml_type == "Q6_K"
    assert tensors["blk.4.ffn_down_exps.weight"].ggml_type == "Q4_K"
    assert tensors["blk.0.ffn_gate_inp.weight"].ggml_type == "F32"
    assert tensors["blk.5.attn_v.weight"].ggml_type == tensors["blk.5.attn_k.weight"].ggml_type == "Q8_0"
    assert tensors["blk.5.attn_output.weight"].ggml_type == "Q5_K"
    assert down.nbytes == 14336 // 256 * 210 * 4096 * 8


def test_rows_that_are_not_whole_blocks_fall_back():
    # A 2-D tensor whose row (ne[0]) is not a multiple of 256: Q4_K -> Q5_0, Q6_K -> Q8_0; of 32 either: F16.
    odd = dict(LLAMA31_8B, hidden_size=4096 + 32, intermediate_size=14336 + 16)
    types = {t.name: t.ggml_type for t in gguf_tensors(from_hf_dict(odd, "odd"), "q4_k_m")}
    assert types["blk.10.attn_q.weight"] == "Q5_0"  # row 4128 = 129 x 32
    assert types["blk.0.ffn_down.weight"] == "F16"  # row 14352: 448.5 blocks of 32
    assert types["output.weight"] == "Q8_0"  # 4128 % 256 != 0


def test_qwen3_and_gemma3_norm_tensors_stay_f32():
    qwen3 = {t.name: t for t in gguf_tensors(from_hf_dict(QWEN3_8B, "qwen3"), "q4_k_m")}
    assert qwen3["blk.0.attn_q_norm.weight"].shape == qwen3["blk.0.attn_k_norm.weight"].shape == (128,)
    assert qwen3["blk.0.attn_q_norm.weight"].ggml_type == "F32" and "blk.0.attn_q.bias" not in qwen3
    assert qwen3["output.weight"].ggml_type == "Q6_K" and qwen3["token_embd.weight"].ggml_type == "Q4_K"
    gemma = {t.name: t for t in gguf_tensors(from_hf_dict(GEMMA3_4B, "gemma3"), "q4_k_m")}
    assert "output.weight" not in gemma and gemma["token_embd.weight"].ggml_type == "Q6_K"  # tied
    for norm in ("attn_q_norm", "attn_k_norm", "post_attention_norm", "post_ffw_norm"):
        assert gemma[f"blk.33.{norm}.weight"].ggml_type == "F32"
    assert gemma["blk.33.attn_k_norm.weight"].shape == (256,) and gemma["blk.33.post_ffw_norm.weight"].shape == (2560,)
    # 34 layers x (4 norms of the layer + 2 per-head norms) + output_norm; attn_v and ffn_down bumped on the
    # 17 use_more_bits layers of 34.
    bumped = sum(_use_more_bits(i, 34) for i in range(34))
    assert bumped == 17
    assert type_counts(list(gemma.values())) == {"F32": 34 * 6 + 1, "Q6_K": 1 + 2 * bumped, "Q4_K": 34 * 7 - 2 * bumped}


def test_block_sizes():
    sizes = {name: (t.block_size, t.type_size) for name, t in GGML_TYPES.items()}
    assert sizes["Q4_0"] == (32, 18) and sizes["Q8_0"] == (32, 34) and sizes["Q4_K"] == (256, 144)
    assert sizes["MXFP4"] == (32, 17)
    assert sizes["Q5_K"] == (256, 176) and sizes["Q6_K"] == (256, 210) and sizes["F16"] == (1, 2)


@pytest.mark.parametrize("model", ["mistral-3b", "mistral-3-small", "mistral-small-22b", "mixtral-8x22b",
                                   "llama-4-scout", "llama-4-maverick", "qwen3-8b", "gemma-3-4b"])
def test_every_registry_model_lays_out(registry, model):
    cfg = registry.model(model).architecture
    names = [n for n, _ in source_tensors(cfg)]
    assert len(names) == len(set(names))
    sizes = [gguf_weight_bytes(cfg, q) for q in GGUF_QUANTS]
    assert sizes == sorted(sizes, reverse=True)  # f16, bf16, q8_0, q6_k, q5_k_m, q5_k_s, q4_k_m, q4_k_s, q4_0


def test_plan_cli_gguf_without_torch():
    args = ["plan", "mistral-3b", "--quant", "q4_k_m", "--gpu", "edge-4gb", "--json"]
    probe = PROBE.format(heavy=set(HEAVY) | {"llama_cpp"})
    proc = subprocess.run([sys.executable, "-c", probe, json.dumps(args)], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)
    lines = proc.stdout.strip().splitlines()
    report = json.loads(lines[-1])
    assert report["code"] in (0, None), proc.stderr
    assert report["heavy"] == []
    plan = json.loads("\n".join(lines[:-1]))
    assert plan["quant"] == "q4_k_m"
    from bench.config.registry import load_registry
    cfg = load_registry(ROOT / "configs").model("mistral-3b").architecture
    assert plan["memory"]["weights_bytes"] == gguf_weight_bytes(cfg, "q4_k_m")
    assert plan["fits"] is True


def test_gguf_quant_refused_for_a_format_llama_cpp_does_not_have(run_bench):
    proc = run_bench("plan", "mistral-3b", "--quant", "q3_k_xl", "--gpu", "edge-4gb")
    assert proc.returncode == 2


def test_plan_from_a_bare_config_takes_a_gguf_type(run_bench, tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(QWEN25_7B))
    proc = run_bench("plan", "--config", str(path), "--quant", "q4_k_m", "--gpu", "edge-8gb", "--json")
    assert proc.returncode == 0, proc.stderr
    plan = json.loads(proc.stdout)
    assert plan["memory"]["weights_bytes"] == gguf_weight_bytes(from_hf_dict(QWEN25_7B, "q"), "q4_k_m")


def test_ministral_3_3b_q4_k_m_to_the_byte(registry):
    # mistralai/Ministral-3-3B-Instruct-2512-GGUF, Ministral-3-3B-Instruct-2512-Q4_K_M.gguf at revision
    # eb599d408350ea2bb60452cb86be7c7b2fc28227 (sha256 9ed150d4367e68df0ac8e1540f6ddc65b42d0ee26378329d1ecbca60f93fc5f8)
    # is 2,147,023,008 bytes, the LFS size that public projects pinning that file record:
    # https://huggingface.co/mistralai/Ministral-3-3B-Instruct-2512-GGUF/blob/eb599d408350ea2bb60452cb86be7c7b2fc28227/Ministral-3-3B-Instruct-2512-Q4_K_M.gguf  # noqa: E501
    # The text model only (the vision tower is the separate mmproj file); the rest is the header.
    file_bytes = 2_147_023_008
    tensors = gguf_weight_bytes(registry.model("mistral-3b").architecture, "q4_k_m")
    assert tensors == 2_138_615_808
    header = file_bytes - tensors
    assert 0 < header < 10_000_000  # metadata and a 131,072-token vocabulary with its merges: 8.4 MB


def test_mixtral_8x22b_q4_k_s_from_the_registry(registry):
    # mradermacher/Mixtral-8x22B-Instruct-v0.1-GGUF: Q4_K_S as a plain byte split, part1of2 40.8 GB + part2of2 39.7 GB
    # https://huggingface.co/mradermacher/Mixtral-8x22B-Instruct-v0.1-GGUF/tree/3b17629b4c2fb005a1efd367514a8c18482cfc79
    published, rounding = 80.5e9, 0.1e9  # two three-figure sizes
    tensors = gguf_weight_bytes(registry.model("mixtral-8x22b").architecture, "q4_k_s")
    assert abs(tensors - published) / published < 0.01
    assert tensors <= published + rounding


# Tiny architectures for llama.cpp's own quantizer: shapes that exercise use_more_bits, tied
# embeddings, 8 experts, Llama 4's shared expert with dense layers between, rows that are not
# whole 256-blocks (288, 800) so the fallbacks show, and the newer families' own tensors (Qwen3's
# q/k norms, Gemma 3's four norms per layer, Qwen3-MoE's experts, DeepSeek's latent attention with a dense
# layer first and a shared expert, gpt-oss's sinks and biased experts).
QUANTIZER_CASES = {
    "llama-16-layers": dict(model_type="llama", hidden_size=256, num_hidden_layers=16, num_attention_heads=4,
                            num_key_value_heads=2, head_dim=64, intermediate_size=512, vocab_size=1024,
                            max_position_embeddings=4096),
    "ministral3-tied": dict(model_type="ministral3", hidden_size=256, num_hidden_layers=10, num_attention_heads=4,
                            num_key_value_heads=2, head_dim=64, intermediate_size=768, vocab_size=1024,
                            max_position_embeddings=4096, tie_word_embeddings=True),
    "mixtral-8-experts": dict(model_type="mixtral", hidden_size=256, num_hidden_layers=8, num_attention_heads=4,
                              num_key_value_heads=2, intermediate_size=512, vocab_size=1024,
                              max_position_embeddings=4096, num_local_experts=8, num_experts_per_tok=2),
    "llama4-interleaved": dict(model_type="llama4_text", hidden_size=256, num_hidden_layers=8, num_attention_heads=4,
                               num_key_value_heads=2, head_dim=64, intermediate_size=256, intermediate_size_mlp=512,
                               vocab_size=1024, max_position_embeddings=4096, num_local_experts=4,
                               num_experts_per_tok=1, interleave_moe_layer_step=2),
    "odd-rows": dict(model_type="llama", hidden_size=288, num_hidden_layers=9, num_attention_heads=4,
                     num_key_value_heads=2, head_dim=72, intermediate_size=800, vocab_size=1000,
                     max_position_embeddings=4096),
    "qwen3-qk-norms": dict(model_type="qwen3", hidden_size=256, num_hidden_layers=16, num_attention_heads=4,
                           num_key_value_heads=2, head_dim=64, intermediate_size=512, vocab_size=1024,
                           max_position_embeddings=4096),
    "gemma3-tied-post-norms": dict(model_type="gemma3_text", hidden_size=256, num_hidden_layers=12,
                                   num_attention_heads=4, num_key_value_heads=2, head_dim=64, intermediate_size=768,
                                   vocab_size=1024, max_position_embeddings=4096, sliding_window=128),
    "qwen3moe-16-experts": dict(model_type="qwen3_moe", hidden_size=256, num_hidden_layers=8, num_attention_heads=4,
                                num_key_value_heads=2, head_dim=64, intermediate_size=512, moe_intermediate_size=256,
                                num_experts=16, num_experts_per_tok=2, vocab_size=1024, max_position_embeddings=4096),
    "deepseek3-mla-shared-expert": dict(model_type="deepseek_v3", hidden_size=256, num_hidden_layers=3,
                                        num_attention_heads=4, num_key_value_heads=4, intermediate_size=512,
                                        moe_intermediate_size=256, n_routed_experts=4, n_shared_experts=2,
                                        num_experts_per_tok=2, first_k_dense_replace=1, q_lora_rank=256,
                                        kv_lora_rank=256, qk_nope_head_dim=64, qk_rope_head_dim=32, v_head_dim=64,
                                        vocab_size=1024, max_position_embeddings=4096),
    "gptoss-sinks-expert-biases": dict(model_type="gpt_oss", hidden_size=256, num_hidden_layers=4,
                                       num_attention_heads=4, num_key_value_heads=2, head_dim=64,
                                       intermediate_size=256, num_local_experts=4, num_experts_per_tok=2,
                                       vocab_size=1024, max_position_embeddings=4096, sliding_window=128),
    # Phi-3's fused attn_qkv (counted as an attn_v by the quantizer) and fused gate_up; OLMo 2's post-norms and
    # projection-wide q/k norms; Granite tied; Qwen2-MoE's biases, shared expert and its gate, with an expert
    # width that is 32-blocks but not 256-blocks (Qwen1.5-MoE's 1408 is the same: Q5_0 and Q8_0 fallbacks).
    "phi3-fused-qkv": dict(model_type="phi3", hidden_size=256, num_hidden_layers=16, num_attention_heads=4,
                           num_key_value_heads=2, intermediate_size=512, vocab_size=1024,
                           max_position_embeddings=4096, sliding_window=2047),
    "olmo2-post-norms": dict(model_type="olmo2", hidden_size=256, num_hidden_layers=8, num_attention_heads=4,
                             num_key_value_heads=2, intermediate_size=768, vocab_size=1024,
                             max_position_embeddings=4096),
    "granite-tied": dict(model_type="granite", hidden_size=256, num_hidden_layers=10, num_attention_heads=4,
                         num_key_value_heads=2, intermediate_size=512, vocab_size=1024, max_position_embeddings=4096,
                         tie_word_embeddings=True),
    "qwen2moe-shared-expert": dict(model_type="qwen2_moe", hidden_size=256, num_hidden_layers=8, num_attention_heads=4,
                                   num_key_value_heads=4, intermediate_size=512, moe_intermediate_size=352,
                                   shared_expert_intermediate_size=512, num_experts=6, num_experts_per_tok=2,
                                   vocab_size=1024, max_position_embeddings=4096),
    # Experts whose down projection's rows (272) are not whole 32-blocks: MXFP4, Q8_0 and Q5_0 all fall back to F16.
    "mixtral-odd-expert-rows": dict(model_type="mixtral", hidden_size=256, num_hidden_layers=2, num_attention_heads=4,
                                    num_key_value_heads=2, intermediate_size=272, vocab_size=1024,
                                    max_position_embeddings=4096, num_local_experts=4, num_experts_per_tok=2),
}
# llama_ftype values (include/llama.h)
LLAMA_FTYPES = {"f16": 1, "q4_0": 2, "q8_0": 7, "q4_k_s": 14, "q4_k_m": 15, "q5_k_s": 16, "q5_k_m": 17, "q6_k": 18,
                "mxfp4_moe": 38}


QUANTIZER_CHECK = """
import json, shutil, sys, tempfile
from pathlib import Path
import gguf, llama_cpp
from bench.estimate.gguf import gguf_tensors
from bench.config.hfconfig import from_hf_dict
from bench.weights.synthetic_gguf import write_f16_skeleton
config, ftypes = json.loads(sys.argv[1]), json.loads(sys.argv[2])
cfg = from_hf_dict(config, "case")
work = Path(tempfile.mkdtemp())
write_f16_skeleton(cfg, work / "source.gguf", "case")
report = {}
for quant, ftype in ftypes.items():
    target = work / (quant + ".gguf")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype, params.nthread, params.allow_requantize = ftype, 2, True
    status = llama_cpp.llama_model_quantize(str(work / "source.gguf").encode(), str(target).encode(), params)
    written = {t.name: [t.tensor_type.name, int(t.n_bytes)] for t in gguf.GGUFReader(target).tensors}
    bench = {t.name: [t.ggml_type, t.nbytes] for t in gguf_tensors(cfg, quant)}
    report[quant] = {"status": status, "differ": {k: [written.get(k), bench.get(k)]
                     for k in set(written) | set(bench) if written.get(k) != bench.get(k)}}
shutil.rmtree(work)
print(json.dumps(report))
"""


@pytest.mark.parametrize("case", list(QUANTIZER_CASES))
def test_every_tensor_as_llama_cpps_quantizer_writes_it(case):
    """No mock: an F16 GGUF of the architecture goes through llama_model_quantize, and every
    tensor's ggml type and bytes in the file it writes must be the ones bench computes. In a
    child process: the quantizer's failures abort the process."""
    pytest.importorskip("llama_cpp")
    pytest.importorskip("gguf")
    proc = subprocess.run([sys.executable, "-c", QUANTIZER_CHECK, json.dumps(QUANTIZER_CASES[case]),
                           json.dumps(LLAMA_FTYPES)], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert set(report) == set(LLAMA_FTYPES)
    for quant, result in report.items():
        assert result["status"] == 0, quant
        assert result["differ"] == {}, quant


# The four families bench counted in HF form only, from their published config.json (tests/configs).
FAMILY_CONFIGS = {"phi3": "Phi-3-mini-4k-instruct", "olmo2": "OLMo-2-1124-7B", "granite": "granite-3.3-8b-instruct",
                  "qwen2_moe": "Qwen1.5-MoE-A2.7B-Chat"}


def _family(model_type: str):
    name = FAMILY_CONFIGS[model_type]
    return from_hf_dict(json.loads((ROOT / "tests" / "configs" / f"{name}.json").read_text()), name)


@pytest.mark.parametrize("model_type", FAMILY_CONFIGS)
def test_gguf_holds_every_parameter_transformers_builds(model_type):
    # count_params equals transformers' meta-device build for these configs (tests/test_architectures.py): the
    # file's tensors hold the same elements, fused, split or reshaped as llama.cpp wants them.
    from math import prod

    from bench.estimate.params import count_params

    cfg = _family(model_type)
    assert sum(prod(shape) for _, shape in source_tensors(cfg)) == count_params(cfg).total


def test_phi3_fused_projections_and_their_types():
    cfg = _family("phi3")  # 3072 hidden, 32 heads of 96, 32 KV heads, MLP 8192, 32 layers
    tensors = {t.name: t for t in gguf_tensors(cfg, "q4_k_m")}
    assert tensors["blk.0.attn_qkv.weight"].shape == (3072, 3 * 3072)
    assert tensors["blk.0.ffn_up.weight"].shape == (3072, 2 * 8192)
    assert not any(name.endswith(("attn_q.weight", "attn_v.weight", "ffn_gate.weight")) for name in tensors)
    assert not any("rope_factors" in name for name in tensors)  # the 4k model has no long/short factors
    # attn_qkv takes attn_v's place in the Q4_K_M mix: Q6_K on the use_more_bits layers, as ffn_down.
    for i in range(32):
        want = "Q6_K" if _use_more_bits(i, 32) else "Q4_K"
        assert tensors[f"blk.{i}.attn_qkv.weight"].ggml_type == tensors[f"blk.{i}.ffn_down.weight"].ggml_type == want
    q4_k_s = {t.name: t.ggml_type for t in gguf_tensors(cfg, "q4_k_s")}
    assert [q4_k_s[f"blk.{i}.attn_qkv.weight"] for i in range(6)] == ["Q5_K"] * 4 + ["Q4_K"] * 2


def test_olmo2_norms():
    cfg = _family("olmo2")  # 4096 hidden, 32 heads, 32 KV heads
    names = {name: shape for name, shape in source_tensors(cfg)}
    assert "blk.0.attn_norm.weight" not in names and "blk.0.ffn_norm.weight" not in names
    assert names["blk.0.attn_q_norm.weight"] == names["blk.0.attn_k_norm.weight"] == (4096,)
    assert names["blk.0.post_attention_norm.weight"] == names["blk.0.post_ffw_norm.weight"] == (4096,)
    assert type_counts(gguf_tensors(cfg, "q8_0")) == {"F32": 32 * 4 + 1, "Q8_0": 32 * 7 + 2}


def test_granite_is_llamas_layout_tied():
    cfg = _family("granite")
    types = {t.name: t.ggml_type for t in gguf_tensors(cfg, "q4_k_m")}
    assert "output.weight" not in types and types["token_embd.weight"] == "Q6_K"
    assert len(types) == 2 + 40 * 9


def test_qwen2_moe_shared_expert_gate_biases_and_fallbacks():
    cfg = _family("qwen2_moe")  # 60 experts of 1408, shared expert 5632, 24 layers
    tensors = {t.name: t for t in gguf_tensors(cfg, "q4_k_m")}
    gate = tensors["blk.0.ffn_gate_inp_shexp.weight"]
    assert gate.shape == (2048,) and gate.ggml_type == "F32"
    assert tensors["blk.0.ffn_gate_inp.weight"].shape == (2048, 60)
    assert tensors["blk.0.attn_q.bias"].shape == (2048,) and "blk.0.attn_output.bias" not in tensors
    assert tensors["blk.0.ffn_up_shexp.weight"].shape == (2048, 5632)
    # 1408 is 44 blocks of 32, not whole 256-blocks: Q4_K falls back to Q5_0, Q6_K (use_more_bits) to Q8_0.
    down = [tensors[f"blk.{i}.ffn_down_exps.weight"].ggml_type for i in range(24)]
    assert down == ["Q8_0" if _use_more_bits(i, 24) else "Q5_0" for i in range(24)]
    assert tensors["blk.0.ffn_down_shexp.weight"].ggml_type == "Q6_K"  # 5632 rows: whole blocks


def _gpt_oss(**changes):
    """openai/gpt-oss-20b's config.json (tests/configs/gpt-oss-20b.json), with `changes` over it."""
    config = json.loads((ROOT / "tests" / "configs" / "gpt-oss-20b.json").read_text())
    return from_hf_dict({**config, **changes}, "gpt-oss")


def test_gpt_oss_mxfp4_moe_keeps_the_experts_mxfp4_and_the_rest_q8_0():
    cfg = _gpt_oss()  # 24 layers of 32 experts, hidden and expert width 2880
    tensors = gguf_tensors(cfg, "mxfp4_moe")
    by_name = {t.name: t for t in tensors}
    # Per layer: gate, up and down experts MXFP4; q, k, v, o Q8_0; two norms, the sinks, four attention biases,
    # the router and its bias and three expert biases F32. Then token_embd and output Q8_0, output_norm F32:
    # 459 tensors, as many as the converter writes.
    assert type_counts(tensors) == {"MXFP4": 24 * 3, "Q8_0": 24 * 4 + 2, "F32": 24 * 12 + 1}
    down = by_name["blk.23.ffn_down_exps.weight"]
    assert down.ggml_type == "MXFP4" and down.nbytes == 2880 // 32 * 17 * 2880 * 32
    assert by_name["output.weight"].ggml_type == by_name["blk.0.attn_v.weight"].ggml_type == "Q8_0"
    assert by_name["blk.0.ffn_up_exps.bias"].ggml_type == "F32"
    for quant in GGUF_FTYPES:  # the fast sizes the planner reads are the tensor list's, gpt-oss's real shape too
        assert gguf_tensor_sizes(cfg, quant) == [(t.name, t.nbytes) for t in gguf_tensors(cfg, quant)], quant


def test_gpt_oss_mxfp4_moe_against_ggml_orgs_files():
    # ggml-org/gpt-oss-20b-GGUF, gpt-oss-20b-mxfp4.gguf (revision e1dc459feff949ff451ce107337a2026daa80df8, sha256
    # be37a636aca0fc1aae0d32325f82f6b4d21495f06823b5fbc1898ae0303e9935) is 12,109,566,560 bytes, the size public
    # projects pinning that file record:
    # https://huggingface.co/ggml-org/gpt-oss-20b-GGUF/blob/e1dc459feff949ff451ce107337a2026daa80df8/gpt-oss-20b-mxfp4.gguf  # noqa: E501
    tensors = gguf_weight_bytes(_gpt_oss(), "mxfp4_moe")
    assert tensors == 12_096_558_336
    header = 12_109_566_560 - tensors
    assert 12_000_000 < header < 14_000_000  # metadata and the 201,088-token vocabulary with its merges: 13.0 MB
    # ggml-org/gpt-oss-120b-GGUF, gpt-oss-120b-mxfp4-0000{1,2,3}-of-00003.gguf: 63,387,346,464 bytes in all (the
    # same records, id 42515917641). gpt-oss-120b is the 20b's widths with 36 layers of 128 experts (its config.json
    # as public code copies it, ids 71309954953, 53327688195). Its header is the 20b's to 0.2%: the same vocabulary
    # and metadata, a longer tensor table; a large tensor of another type would move it by megabytes.
    big = _gpt_oss(num_hidden_layers=36, num_local_experts=128, layer_types=None)
    header_120b = 63_387_346_464 - gguf_weight_bytes(big, "mxfp4_moe")
    assert 0 < header_120b - header < 30_000
