"""Build a model directory from an architecture alone: config, random weights, a tokenizer.

Tiny registry models (``synthetic: true``) get everything: random weights in
safetensors and a byte-level BPE tokenizer trained on the spot, so transformers,
vLLM, peft, trl and lm-eval all load them from disk like a hub checkout. Real
architectures measured with ``--weights synthetic`` get a config and tokenizer
only: the engines make random weights themselves (vLLM's dummy load format,
transformers from the config), so a 100B-parameter shape costs no download and no
disk.

Heavy imports (torch, transformers, tokenizers) happen inside the functions: the
CLI imports this module only for commands that load a model.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

from bench.config.parsed_cache import cache_dir
from bench.config.specs import ModelSpec

# A tokenizer needs text to learn merges from; a fixed, varied corpus keeps it deterministic.
_WORDS = ("the model card says it fits on one card with room for a long context and a small batch "
          "memory bandwidth decides decode speed while compute decides prefill "
          "question answer true false yes no because therefore however first second third "
          "zero one two three four five six seven eight nine ten red green blue cat dog bird "
          "user assistant system hello please thanks sure here is the result of the sum").split()
SPECIAL_TOKENS = ["<unk>", "<s>", "</s>", "<pad>"]
# A minimal chat template in the ChatML shape; tiny models have no template of their own.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<s>' + message['role'] + '\n' + message['content'] + '</s>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<s>assistant\n' }}{% endif %}"
)


def cache_root() -> Path:
    return cache_dir() / "synthetic"


def architecture_key(spec: ModelSpec) -> str:
    """Changes whenever the architecture does, so a stale build is never reused."""
    blob = json.dumps(spec.architecture.model_dump(), sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def hf_config_dict(spec: ModelSpec) -> dict:
    """The config.json transformers and vLLM read for this architecture."""
    fields = spec.architecture.model_dump(exclude_none=True)
    fields.update(bos_token_id=1, eos_token_id=2, pad_token_id=3, torch_dtype="bfloat16")
    return fields


def build_tokenizer(vocab_size: int, target: Path) -> None:
    """Train a byte-level BPE tokenizer of at most `vocab_size` tokens and save it to `target`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=min(vocab_size, 4096), special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    corpus = [" ".join(_WORDS[i:] + _WORDS[:i]) for i in range(len(_WORDS))]
    tokenizer.train_from_iterator(corpus, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>",
                                   unk_token="<unk>", pad_token="<pad>")
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(target)


def build(spec: ModelSpec, with_weights: bool, seed: int = 0) -> Path:
    """Return a directory holding the model; built once per architecture and cached.

    The directory appears atomically (built under a temporary name, then renamed), so
    two processes racing to build it never see half a model.
    """
    kind = "weights" if with_weights else "config"
    target = cache_root() / f"{spec.id}-{architecture_key(spec)}-{kind}"
    if (target / "config.json").exists():
        return target
    tmp = target.with_name(f"{target.name}.tmp-{os.getpid()}")
    tmp.mkdir(parents=True, exist_ok=True)
    build_tokenizer(spec.architecture.vocab_size, tmp)
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    config = AutoConfig.for_model(**hf_config_dict(spec))
    config.architectures = [MODEL_FOR_CAUSAL_LM_MAPPING_NAMES[spec.architecture.model_type]]
    if with_weights:
        import torch
        from transformers import AutoModelForCausalLM

        from transformers.utils import logging as hf_logging

        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
        # The build runs in the command's own process, whose stderr is the user's: transformers' "Writing
        # model shards" bar would sit above a one-line error or a run's table.
        shown = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()
        try:
            model.save_pretrained(tmp)
        finally:
            if shown:
                hf_logging.enable_progress_bar()
    else:
        config.save_pretrained(tmp)
    try:
        tmp.rename(target)
    except OSError:  # another process won the race; use its build
        shutil.rmtree(tmp, ignore_errors=True)
    return target
