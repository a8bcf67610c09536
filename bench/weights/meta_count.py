"""Parameters of an architecture bench has no arithmetic for, counted by transformers on the meta device.

A Hub repository of a family `bench.config.hfconfig` does not know can still be planned: transformers
builds the model from its config on the meta device (shapes only, no memory, no download, remote code
off) and every parameter is counted and sorted into the parts a quantiser treats differently. The KV
cache comes from the standard attention fields, read as full attention in every layer. This is the only
path of `bench plan` that imports torch; a known family never reaches it.
"""

from __future__ import annotations

from typing import Any

from bench.config.hfconfig import TextConfig, validate_text_config
from bench.errors import UserError
from bench.estimate.params import ParamCounts

COUNTED_BY = "counted by transformers on the meta device"
# What the arithmetic beyond the parameter count needs: the KV cache, activations, logits, context.
NEEDED = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "vocab_size",
          "max_position_embeddings")


def attention_shape(raw: dict[str, Any], origin: str) -> TextConfig:
    """The standard fields as a dense decoder with full attention in every layer (the KV cache's shape),
    or one line naming the fields the config lacks."""
    text = raw.get("text_config") if isinstance(raw.get("text_config"), dict) else raw
    missing = [f for f in NEEDED if not isinstance(text.get(f), int)]
    if missing:
        raise UserError(f"{origin}: model_type {raw.get('model_type')!r} has no arithmetic in bench, and its config "
                        f"lacks {', '.join(missing)} for the KV cache and activations")
    fields = {f: text[f] for f in NEEDED}
    for optional in ("num_key_value_heads", "head_dim"):
        if isinstance(text.get(optional), int):
            fields[optional] = text[optional]
    return validate_text_config({"model_type": "llama", **fields}, origin)


def count_on_meta(raw: dict[str, Any], origin: str) -> ParamCounts:
    """Every parameter of the model transformers builds from `raw`, by part."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM
    from transformers.utils import logging as transformers_logging

    transformers_logging.set_verbosity_error()  # its warnings on a config's token ids are not the plan's
    model_type = raw.get("model_type")
    fields = {k: v for k, v in raw.items() if k not in ("model_type", "auto_map", "quantization_config")}
    try:
        config = AutoConfig.for_model(model_type, **fields)
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config, trust_remote_code=False)
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"{origin}: model_type {model_type!r} has no arithmetic in bench and transformers cannot "
                        f"build it without the repository's own code ({first})") from None
    return _by_part(model, raw)


def _by_part(model, raw: dict[str, Any]) -> ParamCounts:
    """Embeddings, lm_head, norms, routers and biases (kept in 16 bits by every format) apart from the
    linear weights a format packs; 3-D parameters are fused experts. Tied weights count once."""
    import torch.nn as nn

    parts = dict.fromkeys(("embedding", "lm_head", "norms", "attention", "dense_mlp", "experts", "router",
                           "biases"), 0)
    output = model.get_output_embeddings()
    seen: set[int] = set()
    for module_name, module in model.named_modules():
        for param_name, param in module.named_parameters(recurse=False):
            if id(param) in seen:
                continue
            seen.add(id(param))
            parts[_part(module_name, module, param_name, param, module is output, nn)] += param.numel()
    experts = parts["experts"]
    routed = raw.get("num_local_experts") or raw.get("num_experts") or raw.get("n_routed_experts")
    per_token = raw.get("num_experts_per_tok")
    active = experts * per_token // routed if isinstance(routed, int) and isinstance(per_token, int) and routed \
        else experts
    return ParamCounts(active_experts=active, **parts)


def _part(module_name: str, module, param_name: str, param, is_output: bool, nn) -> str:
    if is_output:
        return "lm_head"
    if isinstance(module, nn.Embedding):
        return "embedding"
    if param.ndim >= 3:
        return "experts"
    if param.ndim <= 1:
        return "norms" if "norm" in module_name.lower() or "norm" in param_name.lower() else "biases"
    leaf = module_name.rsplit(".", 1)[-1].lower()
    if leaf in ("gate", "router") or "router" in leaf:
        return "router"
    path = module_name.lower()
    return "attention" if "attn" in path or "attention" in path else "dense_mlp"
