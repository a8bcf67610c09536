"""Fine-tune datasets: bench's built-in learnable tasks, local JSONL, hub datasets; and the
formatting checks the toolkits sell as "dataset formatting utilities".

Built-ins make a task a small model can learn in a few dozen steps (each animal has
one colour), so "the loss went down" is a real signal, not noise. Rows use trl's
conversational shapes: SFT rows are `prompt` + `completion` message lists, preference
rows are `prompt` + `chosen` + `rejected`. Conversations are rendered with the
model's own chat template by trl.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from bench.errors import UserError

ANIMALS = {"cat": "red", "dog": "green", "bird": "blue", "fish": "yellow"}
COLOURS = sorted(set(ANIMALS.values()))
BUILTIN_ROWS = 64


def builtin_rows(name: str, seed: int = 0) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    rows = []
    for _ in range(BUILTIN_ROWS):
        animal = rng.choice(sorted(ANIMALS))
        prompt = [{"role": "user", "content": f"what color is the {animal}"}]
        right = [{"role": "assistant", "content": f"the {animal} is {ANIMALS[animal]}"}]
        if name == "chat-sft":
            rows.append({"prompt": prompt, "completion": right})
        elif name == "preference-pairs":
            wrong_colour = rng.choice([c for c in COLOURS if c != ANIMALS[animal]])
            wrong = [{"role": "assistant", "content": f"the {animal} is {wrong_colour}"}]
            rows.append({"prompt": prompt, "chosen": right, "rejected": wrong})
        else:
            raise UserError(f"unknown built-in dataset {name!r}; built-ins: chat-sft, preference-pairs")
    return rows


def load_rows(dataset: str, seed: int = 0) -> list[dict[str, Any]]:
    """`builtin:<name>`, a local `.jsonl` file, or a hub dataset id (its `train` split)."""
    if dataset.startswith("builtin:"):
        return builtin_rows(dataset.removeprefix("builtin:"), seed)
    path = Path(dataset)
    if path.suffix == ".jsonl":
        if not path.exists():
            raise UserError(f"{path}: no such file")
        rows = []
        for number, raw in enumerate(path.read_bytes().splitlines(), 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise UserError(f"{path}:{number}: not UTF-8 (byte 0x{raw[err.start]:02x} at column "
                                f"{err.start + 1})") from None
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as err:
                    raise UserError(f"{path}:{number}: not a JSON line ({err.msg})") from None
                if not isinstance(rows[-1], dict):
                    raise UserError(f"{path}:{number}: a row must be a JSON object")
        return rows
    from datasets import load_dataset

    try:
        return list(load_dataset(dataset, split="train"))
    except Exception as err:  # the hub's failures vary by version; one line is what the user needs
        raise UserError(f"dataset {dataset!r} could not be loaded: {type(err).__name__}: {err}") from None


def check_rows(rows: list[dict[str, Any]], method: str, origin: str) -> None:
    """Every row has the fields its method needs, before any model is loaded."""
    needed = {"prompt", "chosen", "rejected"} if method in ("dpo", "reward") else {"prompt", "completion"}
    if not rows:
        raise UserError(f"{origin}: no rows")
    for i, row in enumerate(rows):
        missing = needed - set(row)
        if missing:
            raise UserError(f"{origin}: row {i} lacks {', '.join(sorted(missing))} (method {method} needs "
                            f"{', '.join(sorted(needed))})")


def formatting_report(tokenizer: Any, collator: Any, row: dict[str, Any], example: dict[str, Any]) -> dict[str, Any]:
    """What the trainer will see for one SFT example, checked against the chat template.

    `row` is the conversation; `example` the trainer's tokenised version of it. Checks:
    every prompt token (the template's rendering up to the assistant's turn) is masked
    from the loss while completion tokens are not, and the rendered text and the
    trainer's token ids map onto each other exactly (encode and decode round-trip).
    """
    prompt_text = tokenizer.apply_chat_template(row["prompt"], tokenize=False, add_generation_prompt=True)
    full_text = tokenizer.apply_chat_template(row["prompt"] + row["completion"], tokenize=False)
    prompt_tokens = len(tokenizer(prompt_text, add_special_tokens=False)["input_ids"])
    labels = collator([example])["labels"][0].tolist()
    ids = list(example["input_ids"])
    return {
        "tokens": len(ids),
        "prompt_tokens": prompt_tokens,
        "masked_tokens": sum(1 for label in labels if label == -100),
        "prompt_masked": all(label == -100 for label in labels[:prompt_tokens])
        and any(label != -100 for label in labels[prompt_tokens:]),
        "round_trip": tokenizer(full_text, add_special_tokens=False)["input_ids"] == ids
        and tokenizer.decode(ids) == full_text,
    }
