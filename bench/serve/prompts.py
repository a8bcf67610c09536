"""Prompts of a stated length in the served model's own tokens.

Lengths are counted by the model's tokenizer: the server's tokenize endpoint (vLLM's
`/tokenize`, llama-cpp-python's `/extras/tokenize`) or a local Hugging Face tokenizer.
Each prompt is a different run of common words (seeded), so a server's prefix cache
cannot answer one request from another's prompt. Where no tokenizer is reachable
(Ollama), prompts hold `prompt_len` words and their token counts come from the
server's usage fields.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import httpx

WORDS = ("time year people way day man thing woman life child world school state family student group country "
         "problem hand part place case week company system program question work government number night point "
         "home water room mother area money story fact month lot right study book eye job word business issue "
         "side kind head house service friend father power hour game line end member law car city community "
         "name president team minute idea kid body information back parent face others level office door health "
         "person art war history party result change morning reason research girl guy moment air teacher force "
         "education").split()
POOL = 32  # distinct prompts per measurement, used in turn

Counter = Callable[[str], int]


def server_counter(client: httpx.Client, model: str) -> Counter | None:
    """A token counter through the server's tokenize endpoint, or None when it offers none."""
    probes = (("/tokenize", lambda text: {"model": model, "prompt": text}),  # vLLM
              ("/extras/tokenize", lambda text: {"model": model, "input": text}))  # llama-cpp-python
    for path, body in probes:
        try:
            response = client.post(path, json=body("hello"))
        except httpx.HTTPError:
            return None
        if response.status_code == 200 and "tokens" in response.json():
            def count(text: str, path=path, body=body) -> int:
                answer = client.post(path, json=body(text))
                answer.raise_for_status()
                return len(answer.json()["tokens"])
            return count
    return None


def local_counter(tokenizer_dir: str) -> Counter:
    """A token counter from a local Hugging Face tokenizer (with the special tokens a prompt gets)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    return lambda text: len(tokenizer(text)["input_ids"])


def build(prompt_len: int, count: Counter | None, seed: int = 0, pool: int = POOL) -> list[tuple[str, int | None]]:
    """`pool` prompts as (text, tokens): the longest run of words whose count is at most `prompt_len`."""
    rng = random.Random(seed)
    prompts = []
    for _ in range(pool):
        words = [rng.choice(WORDS) for _ in range(prompt_len)]
        if count is None:
            prompts.append((" ".join(words), None))
            continue
        low, high = 1, prompt_len  # a word is at least one token: prompt_len words are enough
        while low < high:  # the largest k with count(k words) <= prompt_len
            mid = (low + high + 1) // 2
            if count(" ".join(words[:mid])) <= prompt_len:
                low = mid
            else:
                high = mid - 1
        text = " ".join(words[:low])
        prompts.append((text, count(text)))
    return prompts
