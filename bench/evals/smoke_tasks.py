"""bench's own offline eval tasks: small, generated here, shipped with the package.

Two tasks cover lm-eval's two main request types: `bench_smoke_colors` is multiple
choice (log-likelihood of each answer), `bench_smoke_arith` is generation (exact
match on a short completion). The data is generated deterministically and written
next to task YAMLs in a directory that lm-eval's TaskManager includes, with absolute
data paths, so nothing is fetched from a hub.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import yaml

SMOKE_TASKS = ("bench_smoke_colors", "bench_smoke_arith")
VERSION = 1.0
_ANIMALS = ["cat", "dog", "bird", "fish", "horse", "cow", "frog", "bear", "lion", "mouse"]
_COLOURS = ["red", "green", "blue", "yellow"]


def colour_docs(seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    docs = []
    for animal in _ANIMALS:
        for shade in ("light", "dark", "bright", "pale"):
            answer = rng.randrange(len(_COLOURS))
            docs.append({"question": f"the {shade} {animal} is which color", "choices": _COLOURS, "answer": answer})
    return docs


def arithmetic_docs(seed: int = 0) -> list[dict]:
    rng = random.Random(seed + 1)
    docs = []
    for _ in range(20):
        a, b = rng.randrange(10), rng.randrange(10)
        docs.append({"question": f"{a} plus {b} is", "answer": str(a + b)})
    return docs


def _task_yaml(name: str, data: Path, body: str) -> str:
    return (f"task: {name}\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {json.dumps(str(data))}\n"
            f"test_split: test\n{body}metadata:\n  version: {VERSION}\n")


COLORS_BODY = """output_type: multiple_choice
doc_to_text: "{{question}}? answer:"
doc_to_choice: "{{choices}}"
doc_to_target: answer
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
"""
ARITH_BODY = """output_type: generate_until
doc_to_text: "{{question}}"
doc_to_target: "{{answer}}"
generation_kwargs:
  until: ["\\n", "."]
  max_gen_toks: 4
  do_sample: false
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
    regexes_to_ignore: ['\\s']
"""


def write_smoke_tasks(directory: Path) -> Path:
    """Write the data and task YAMLs into `directory` (an lm-eval include path) and return it."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, docs, body in (("bench_smoke_colors", colour_docs(), COLORS_BODY),
                             ("bench_smoke_arith", arithmetic_docs(), ARITH_BODY)):
        data = directory / f"{name}.jsonl"
        data.write_text("".join(json.dumps(d) + "\n" for d in docs))
        text = _task_yaml(name, data, body)
        yaml.safe_load(text)  # lm-eval skips a broken task YAML silently; fail here instead
        (directory / f"{name}.yaml").write_text(text)
    return directory
