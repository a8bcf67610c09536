"""The fine-tune smoke test: the recipe starts, fits, lowers the loss, and leaves an adapter that loads.

Runs inside the isolated child process (`measure` is the entry point): peft adapters
through trl's trainers (SFT, DPO, reward), or every weight (method full, SFT), with the
recipe's hyperparameters. After training the adapter (a full fine-tune: the whole model)
is saved, loaded back onto a freshly loaded base, and run once; its output is compared
with the bare base's, so "the adapter reloads" means it loads *and* changes the model.

QLoRA runs as trl's users run it: the base loaded in 4 bits (bf16 for what bitsandbytes
leaves unquantized) and the LoRA config handed to the trainer, nothing else. The trainer
wraps the model with peft and casts the adapters to bf16; bench records what it holds
then (`state_census`), the numbers the training estimate must reproduce. With synthetic
weights the 4-bit base is random, made layer by layer (`bench.weights.synthetic_nf4`), so a
real shape needs no checkpoint.
"""

from __future__ import annotations

import gc
import time
import weakref
from pathlib import Path
from typing import Any

import torch

from bench.launch.emulation import memory_cap
from bench.launch.environment import observed_hardware, software_versions
from bench.launch.progress import counted, phase
from bench.records import stats
from bench.scenarios.finetune_data import check_rows, formatting_report, load_rows
from bench.scenarios.finetune_settings import OPTIMIZERS, FinetuneSettings
from bench.scenarios.inference import metric
from bench.trackers.memory import PeakMemoryTracker
from bench.weights.synthetic_nf4 import nf4_config, random_model

ROUTER_NAMES = ("router", "block_sparse_moe.gate", "mlp.gate.")


def base_dtype(recipe: dict[str, Any], device: str, cpu_dtype: str) -> torch.dtype:
    """The dtype `load_base` holds the model in, which `bench trace` builds its model in too.

    A full fine-tune holds the trained weights themselves: fp32 masters (mixed) or pure bf16. A 4-bit base is
    bf16 wherever bitsandbytes does not quantize, on a CPU too: the dtype a QLoRA user loads in, and the one
    its compute dtype expects.
    """
    if recipe["method"] == "full":
        return torch.float32 if recipe["full_precision"] == "mixed" else torch.bfloat16
    if recipe["quant"] == "nf4" or device == "cuda":
        return torch.bfloat16
    return getattr(torch, cpu_dtype)


def base_parts(model_path: str, reward: bool):
    """The tokenizer, the config and the auto class of the model `load_base` loads (and `bench trace` builds):
    a causal LM, or for a reward model a sequence classifier with one output."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    config = AutoConfig.from_pretrained(model_path, **({"num_labels": 1} if reward else {}))
    return tokenizer, config, AutoModelForSequenceClassification if reward else AutoModelForCausalLM


def load_base(s: FinetuneSettings, reward: bool):
    """The tokenizer and the base model, from the checkpoint or random (synthetic weights), in `base_dtype`."""
    recipe = s.recipe
    four_bit = recipe["quant"] == "nf4"
    dtype = base_dtype(recipe, s.device, s.cpu_dtype)
    quantization = nf4_config(double_quant=recipe["double_quant"]) if four_bit else None
    device = torch.device("cuda", torch.cuda.current_device()) if s.device == "cuda" else torch.device("cpu")
    device_map = {"": device.index} if s.device == "cuda" else None
    tokenizer, config, auto_class = base_parts(s.model_path, reward)
    if s.synthetic_weights:
        model = random_model(config, auto_class=auto_class, dtype=dtype, device=device, device_map=device_map,
                             quantization_config=quantization, seed=s.seed)
    else:
        model = auto_class.from_pretrained(s.model_path, config=config, use_safetensors=True, dtype=dtype,
                                           quantization_config=quantization, device_map=device_map)
    if reward:
        model.config.pad_token_id = tokenizer.pad_token_id
    return tokenizer, model


ATTENTION_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj")


def _moe_target_wanted(name: str, leaf: str, moe_targets: list[str]) -> bool:
    """Whether a module of an MoE model is adapted under `moe_targets`, as the estimate counts it:
    attention projections with `attention`, the shared expert's with `shared_experts`, a dense layer's
    MLP always. Routed experts are fused 3-D parameters that no module name reaches."""
    if leaf in ATTENTION_PROJECTIONS:
        return "attention" in moe_targets
    if "shared_expert" in name:
        return "shared_experts" in moe_targets
    return True


def lora_config(recipe: dict[str, Any], model: Any, reward: bool):
    """The recipe's target modules that exist in this model, and in an MoE model only those `moe_targets`
    asks for (named in full, since a suffix like gate_proj names a shared expert and a dense MLP alike);
    routers are never targeted. Returns the config and the targeted module kinds; a full fine-tune has
    no adapter: (None, [])."""
    from peft import LoraConfig

    if recipe["method"] == "full":
        return None, []
    text = model.config.get_text_config()
    moe = bool(getattr(text, "num_local_experts", None) or getattr(text, "num_experts", None))
    chosen = [name for name, _ in model.named_modules() if name.rsplit(".", 1)[-1] in recipe["target_modules"]
              and (not moe or _moe_target_wanted(name, name.rsplit(".", 1)[-1], recipe["moe_targets"]))]
    kinds = {name.rsplit(".", 1)[-1] for name in chosen}
    targets = [t for t in recipe["target_modules"] if t in kinds]
    return LoraConfig(r=recipe["rank"], lora_alpha=recipe["alpha"], lora_dropout=recipe["dropout"],
                      target_modules=chosen if moe else targets,
                      task_type="SEQ_CLS" if reward else "CAUSAL_LM"), targets


def quant_state_tensors(model: Any) -> list[torch.Tensor]:
    """The tensors of every 4-bit weight's quantization state (absmax, its code, and with double quantization
    the offset and the nested absmax and code), each once: weights the device holds that bitsandbytes keeps
    beside the parameter, neither a parameter nor a buffer."""
    found: dict[int, torch.Tensor] = {}
    for param in model.parameters():
        state = getattr(param, "quant_state", None)
        while state is not None:
            for value in (state.absmax, state.code, getattr(state, "offset", None)):
                if isinstance(value, torch.Tensor):
                    found[id(value)] = value
            state = getattr(state, "state2", None)
    return list(found.values())


def state_census(model: Any) -> dict[str, dict[str, int]]:
    """Bytes the model holds, by role and dtype, each tensor once: 4-bit frozen weights (their packed codes and
    quantization state, `quant_state_tensors`), other frozen parameters, trainable parameters."""
    census: dict[str, dict[str, int]] = {"frozen_4bit": {}, "frozen": {}, "trainable": {}}
    seen: set[int] = set()

    def add(role: str, tensor: torch.Tensor) -> None:
        if id(tensor) in seen:  # a tied weight is one parameter; a state tensor is its own
            return
        seen.add(id(tensor))
        dtype = str(tensor.dtype).removeprefix("torch.")
        census[role][dtype] = census[role].get(dtype, 0) + tensor.numel() * tensor.element_size()

    for param in model.parameters():
        four_bit = getattr(param, "quant_state", None) is not None
        add("trainable" if param.requires_grad else "frozen_4bit" if four_bit else "frozen", param)
    for tensor in quant_state_tensors(model):
        add("frozen_4bit", tensor)
    return census


class StepLog:
    """Trainer callback: loss per logged step, wall time per optimizer step, tokens seen."""

    def __init__(self) -> None:
        from transformers import TrainerCallback

        log = self

        class Callback(TrainerCallback):
            def on_step_begin(self, args, state, control, **kw):
                phase(counted("training step", state.global_step + 1, state.max_steps))
                log._started = time.perf_counter()

            def on_step_end(self, args, state, control, **kw):
                log.step_times.append(time.perf_counter() - log._started)

            def on_log(self, args, state, control, logs=None, **kw):
                if logs and "loss" in logs:
                    log.losses.append(float(logs["loss"]))
                if logs and "num_tokens" in logs:
                    log.tokens = float(logs["num_tokens"])

        self.callback = Callback()
        self.losses: list[float] = []
        self.step_times: list[float] = []
        self.tokens: float | None = None
        self._started = 0.0


def _adapter_dtype(trainer: Any, recipe: dict[str, Any]) -> None:
    """Hold the adapters in the recipe's `adapter_dtype`, where it names one (trl leaves them fp32 over a
    16-bit base and casts them to bf16 over a bitsandbytes one). The optimizer is made later, in train()."""
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}.get(recipe.get("adapter_dtype") or "")
    if dtype is None:
        return
    for param in trainer.model.parameters():
        if param.requires_grad:
            param.data = param.data.to(dtype)


def trl_compatible(model: Any) -> None:
    """Two names trl 1.16's trainers read that transformers 5.19's Llama 4 text model lacks, given on the instance
    (after loading, which read the checkpoint's names already); without them every Llama 4 step failed:

    * `model.base_model`, through which trl's fused LM head reaches the decoder: Llama4ForCausalLM's
      `base_model_prefix` names "language_model" but it holds its decoder as `model`, so the lookup returned the
      whole model (`MoeCausalLMOutputWithPast` has no `last_hidden_state`);
    * the text config's `num_experts`, which trl's load-balancing loss reads (Llama 4 names it
      `num_local_experts`; Mixtral's config maps one name to the other), once trl turns the router's logits on
      for the config's `router_aux_loss_coef`.
    """
    if getattr(model, "base_model", model) is model and isinstance(getattr(model, "model", None), torch.nn.Module):
        model.base_model_prefix = "model"
    text = model.config.get_text_config()
    if hasattr(text, "num_local_experts") and not hasattr(text, "num_experts"):
        text.num_experts = text.num_local_experts


def make_trainer(s: FinetuneSettings, model: Any, tokenizer: Any, rows: list[dict[str, Any]], peft_config: Any,
             log: StepLog):
    from datasets import Dataset

    trl_compatible(model)
    recipe = s.recipe
    common = dict(
        output_dir=str(Path(s.adapter_dir).parent / "trainer"), max_steps=s.steps,
        per_device_train_batch_size=recipe["micro_batch"],
        gradient_accumulation_steps=recipe["gradient_accumulation"],
        gradient_checkpointing=recipe["gradient_checkpointing"], optim=OPTIMIZERS[recipe["optimizer"]],
        learning_rate=recipe["learning_rate"], logging_steps=1, save_strategy="no", report_to=[],
        max_length=recipe["sequence_length"], seed=s.seed, data_seed=s.seed, use_cpu=s.device == "cpu",
        bf16=s.device == "cuda", disable_tqdm=True)
    data = Dataset.from_list(rows)
    method = recipe["method"]
    if method == "dpo":
        from trl import DPOConfig, DPOTrainer

        args = DPOConfig(beta=recipe["beta"] or 0.1, precompute_ref_log_probs=recipe["dpo_reference"] == "precomputed",
                         **common)
        trainer = DPOTrainer(model=model, args=args, train_dataset=data, processing_class=tokenizer,
                             peft_config=peft_config, callbacks=[log.callback])
    elif method == "reward":
        from trl import RewardConfig, RewardTrainer

        trainer = RewardTrainer(model=model, args=RewardConfig(**common), train_dataset=data,
                                processing_class=tokenizer, peft_config=peft_config, callbacks=[log.callback])
    else:
        from trl import SFTConfig, SFTTrainer

        args = SFTConfig(completion_only_loss=True, packing=recipe["packing"], **common)
        trainer = SFTTrainer(model=model, args=args, train_dataset=data, processing_class=tokenizer,
                             peft_config=peft_config, callbacks=[log.callback])
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)  # the record keeps every loss; no log lines on stdout
    _adapter_dtype(trainer, recipe)
    return trainer


def _probe_output(model: Any, tokenizer: Any, row: dict[str, Any], reward: bool) -> torch.Tensor:
    """One forward on a fixed prompt: the scores (reward) or next-token logits (causal), on the CPU."""
    text = tokenizer.apply_chat_template(row["prompt"], tokenize=False, add_generation_prompt=True)
    ids = tokenizer(text, add_special_tokens=False, return_tensors="pt").to(model.device)
    with torch.no_grad():
        out = model(**ids)
    return out.logits[0].float().cpu() if reward else out.logits[0, -1].float().cpu()


def _reload_and_compare(s: FinetuneSettings, row: dict[str, Any], reward: bool) -> dict[str, Any]:
    """Load what training saved (the adapter onto a fresh base; a full fine-tune's whole model) and compare
    its output with the base's."""
    from peft import PeftModel

    tokenizer, base = load_base(s, reward)
    before = _probe_output(base, tokenizer, row, reward)
    if s.recipe["method"] == "full":
        adapted = type(base).from_pretrained(s.adapter_dir, use_safetensors=True, dtype=base.dtype)
    else:
        adapted = PeftModel.from_pretrained(base, s.adapter_dir)
    after = _probe_output(adapted, tokenizer, row, reward)
    generated = None
    if not reward:
        ids = tokenizer(tokenizer.apply_chat_template(row["prompt"], tokenize=False, add_generation_prompt=True),
                        add_special_tokens=False, return_tensors="pt").to(adapted.device)
        with torch.no_grad():
            out = adapted.generate(**ids, max_new_tokens=8, do_sample=False, pad_token_id=tokenizer.pad_token_id)
        generated = tokenizer.decode(out[0, ids["input_ids"].shape[1]:])
    return {"max_output_change": float((after - before).abs().max()), "generated": generated}


def release_trained(model_ref: weakref.ref) -> bool:
    """Free the trained model before the reload loads a second base under the same cap; True when it is gone.

    Deleting the names is not enough: with mixed precision accelerate stores bound methods of the model on the
    model itself (`_original_forward`, the autocast `forward`: accelerate 1.16 accelerator.py, `prepare_model`),
    a reference cycle that only the cycle collector frees, and transformers collects only when `train` starts.
    Left alone, the trained 4-bit base would still hold its card memory while the reload asks for as much
    again, and a recipe that fits would be recorded out of memory. The allocator's cached blocks go back too,
    so the reload starts from what a fresh process would hold.
    """
    gc.collect()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()
    return model_ref() is None


# trl's DPO trainer logs, per step, the implicit rewards (beta times the policy's log-ratio to the reference) of the
# chosen and rejected answers, their margin, and the share of pairs ranked right: record metric -> logged key, unit.
DPO_REWARDS = {"reward_chosen": ("rewards/chosen", "reward"), "reward_rejected": ("rewards/rejected", "reward"),
               "reward_margin": ("rewards/margins", "reward"), "reward_accuracy": ("rewards/accuracies", "ratio")}


def reward_metrics(log_history: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """A DPO run's rewards from the trainer's log history: the last step's value, every step's as samples, so
    "the model learned to prefer the chosen answer" is read from the record ({} for a trainer that logs none)."""
    out = {}
    for name, (key, unit) in DPO_REWARDS.items():
        steps = [float(entry[key]) for entry in log_history if key in entry]
        if steps:
            out[name] = metric(steps[-1], unit, steps)
    return out


def measure(settings: dict[str, Any]) -> dict[str, Any]:
    """Child-process entry point: train, save, reload; return metrics and reports."""
    s = FinetuneSettings(**settings)
    recipe, reward = s.recipe, s.recipe["method"] == "reward"
    torch.manual_seed(s.seed)
    fraction, emulation = memory_cap(s.device, s.target_budget_bytes)
    if fraction is not None:
        torch.cuda.set_per_process_memory_fraction(fraction)
    rows = load_rows(s.dataset, s.seed)
    check_rows(rows, recipe["method"], s.dataset)
    log = StepLog()
    with PeakMemoryTracker(device=s.device) as tracker:
        phase("loading the model")
        tokenizer, model = load_base(s, reward)
        peft_config, targets = lora_config(recipe, model, reward)
        trainer = make_trainer(s, model, tokenizer, rows, peft_config, log)
        census = state_census(trainer.model)
        formatting = (formatting_report(tokenizer, trainer.data_collator, rows[0], trainer.train_dataset[0])
                      if recipe["method"] in ("lora", "qlora") else None)
        start = time.perf_counter()
        trainer.train()
        train_s = time.perf_counter() - start
        trainable = {n: p.numel() for n, p in trainer.model.named_parameters() if p.requires_grad}
        trainer_name = type(trainer).__name__
        log_history = list(trainer.state.log_history)
        phase("saving the adapter")
        trainer.model.save_pretrained(s.adapter_dir)
    memory = tracker.result()
    trained = weakref.ref(model)
    del trainer, model
    freed = release_trained(trained)
    adapter_bytes = sum(f.stat().st_size for f in Path(s.adapter_dir).glob("*.safetensors"))
    phase("reloading the adapter onto a fresh base")
    reload = _reload_and_compare(s, rows[0], reward)

    metrics = {
        "loss_first": metric(log.losses[0], "loss"),
        "loss_last": metric(log.losses[-1], "loss", log.losses),
        "steps": metric(len(log.step_times), "count"),
        "step_time_s": metric(stats.median(log.step_times), "s", log.step_times),
        "train_s": metric(train_s, "s"),
        "tokens_per_s": metric(log.tokens / train_s if log.tokens else None, "tokens/s"),
        "peak_memory_bytes": metric(memory["peak_memory_bytes"], "bytes"),
        "adapter_bytes": metric(adapter_bytes, "bytes"),
        "adapter_reloaded": metric(True, "bool"),
        "adapter_changes_output": metric(reload["max_output_change"] > 0, "bool"),
        "trainable_params": metric(sum(trainable.values()), "params"),
    }
    if memory.get("peak_allocated_bytes") is not None:
        metrics["peak_allocated_bytes"] = metric(memory["peak_allocated_bytes"], "bytes")
    metrics.update(reward_metrics(log_history))
    return {
        "metrics": metrics,
        "memory": memory,
        "engine": {"engine": "trl+peft", "trainer": trainer_name,
                   "lora_targets": targets, "moe_targets": recipe["moe_targets"],
                   "router_trainable": any(r in n for n in trainable for r in ROUTER_NAMES),
                   "formatting": formatting, "reload": {**reload, "trained_model_freed_first": freed},
                   "state_census": census},
        "emulation": emulation,
        "hardware": observed_hardware(s.device),
        "software": software_versions(),
    }
