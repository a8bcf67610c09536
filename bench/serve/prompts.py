"""Prompts of a stated length in the served model's own tokens.

Lengths are counted by the model's tokenizer: the server's tokenize endpoint (vLLM's
`/tokenize`, llama-cpp-python's `/extras/tokenize`) or a local Hugging Face tokenizer.
Each prompt is a different run of common words (seeded), so a server's prefix cache
cannot answer one request from another's prompt. Where no tokenizer is reachable
(Ollama), or the server's stops giving counts while the prompts are built, prompts hold
`prompt_len` words and their token counts come from the server's usage fields.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

from bench.errors import UserError
from bench.serve.wire import DISCOVERY_DEADLINE_S, BadAnswer, call

WORDS = ("time year people way day man thing woman life child world school state family student group country "
         "problem hand part place case week company system program question work government number night point "
         "home water room mother area money story fact month lot right study book eye job word business issue "
         "side kind head house service friend father power hour game line end member law car city community "
         "name president team minute idea kid body information back parent face others level office door health "
         "person art war history party result change morning reason research girl guy moment air teacher force "
         "education").split()
POOL = 32  # distinct prompts per measurement, used in turn
# The most tokens a text can be, per byte: a byte-fallback tokenizer writes an unknown space as the three
# byte tokens of its marker '▁' (a random vocabulary does, for every space); and a few special tokens.
TOKENS_PER_BYTE = 4
SPECIAL_TOKENS = 16

Counter = Callable[[str], int]


def server_counter(base_url: str, headers: dict[str, str], model: str,
                   deadline_s: float = DISCOVERY_DEADLINE_S) -> Counter | None:
    """A token counter through the server's tokenize endpoint, or None when it offers none (or answers
    the probe with no count, or not within `deadline_s`). The counter raises :class:`BadAnswer` for an
    answer that is no count, so the caller can fall back to counting by usage."""
    probes = (("/tokenize", lambda text: {"model": model, "prompt": text}),  # vLLM
              ("/extras/tokenize", lambda text: {"model": model, "input": text}))  # llama-cpp-python
    for path, body in probes:
        try:
            reply = call(base_url, headers, "POST", path, body("hello"), deadline_s)
        except BadAnswer:
            return None
        if reply.status == 200 and _tokens(reply.value, "hello") is not None:
            def count(text: str, path=path, body=body) -> int:
                answer = call(base_url, headers, "POST", path, body(text), deadline_s)
                if answer.status != 200:
                    raise BadAnswer(f"http-{answer.status}", f"{path} answered HTTP {answer.status}")
                if (tokens := _tokens(answer.value, text)) is None:
                    raise BadAnswer("malformed", f"{path} answered with no plausible count")
                return tokens
            return count
    return None


def _tokens(answer: object, text: str) -> int | None:
    """The token count in a tokenize answer, when it is one: a list of at least one token and at most
    ``TOKENS_PER_BYTE`` per byte of `text` plus a few special ones; None otherwise."""
    tokens = answer.get("tokens") if isinstance(answer, dict) else None
    if not isinstance(tokens, list) or not 1 <= len(tokens) <= TOKENS_PER_BYTE * len(text.encode()) + SPECIAL_TOKENS:
        return None
    return len(tokens)


def local_counter(tokenizer_dir: str) -> Counter:
    """A token counter from a local Hugging Face tokenizer (with the special tokens a prompt gets);
    a folder that holds none is bad input, said before anything runs."""
    if not Path(tokenizer_dir).is_dir():
        raise UserError(f"--tokenizer {tokenizer_dir}: no such folder")
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    except (OSError, ValueError) as err:
        raise UserError(f"--tokenizer {tokenizer_dir}: no tokenizer loads from it ({type(err).__name__})") from None
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
