"""The types inside a record's free-form fields that readers compute with, checked once, on read.

The schema (`bench.records.schema`) leaves `config`, `hardware`, `software`, `details` and a metric's
value open, because each engine and scenario reports its own things there. Readers still rely on some
of those things having a type: `details.engine` is an object, a serve level's figures are numbers, an
eval's scores are `{task: {metric: number}}`. One record that breaks that (a hand edit, a foreign
tool, a truncated merge) must not crash every command over the whole folder, so the reader checks the
shapes here and skips a record that breaks them, with one warning naming the field; readers then
trust what they get instead of re-checking types everywhere.

Only what a reader uses is described, each field as optional as its writers make it; everything else
stays free-form (unknown keys are ignored). Strict: a number written as text is a wrong type, since a
reader would compare or format it as a number and fail.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Text = str | None
Count = int | None
Number = float | None  # strict float takes an int too, never a bool or text


class _Shape(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")


class _MemoryAccounting(_Shape):
    """vLLM's own accounting of what a run needed (the memory verdict sums these)."""

    weights_bytes: Number = None
    activation_peak_bytes: Number = None
    cudagraph_estimate_bytes: Number = None
    kv_cache_needed_bytes: Number = None
    kv_cache_reserved_bytes: Number = None


class _Engine(_Shape):
    """`details.engine`: what the engine or server reported of itself."""

    engine: Text = None
    kind: Text = None
    version: Text = None
    weights_format: Text = None
    n_ctx: Count = None
    repack: bool | None = None
    memory_accounting: _MemoryAccounting | None = None
    model_buffer_bytes: Number = None
    kv_buffer_bytes: Number = None
    rs_buffer_bytes: Number = None
    compute_buffer_bytes: Number = None
    output_buffer_bytes: Number = None


class _Level(_Shape):
    """One load level of a serve record (`details.levels`): its label and its figures."""

    level: str
    concurrency: Count = None
    requests: Count = None
    completed: Count = None
    errors: Count = None
    ttft_p50_s: Number = None
    ttft_p90_s: Number = None
    ttft_p99_s: Number = None
    itl_p50_s: Number = None
    tpot_p50_s: Number = None
    tpot_p90_s: Number = None
    e2e_p50_s: Number = None
    output_tokens_per_s: Number = None
    requests_per_s: Number = None
    goodput_requests_per_s: Number = None


class _Memory(_Shape):
    """`details.memory`: the memory tracker's report."""

    peak_memory_bytes: Number = None
    peak_allocated_bytes: Number = None
    peak_memory_source: Text = None


class _Labels(_Shape):
    sweep_cell: Text = None  # a sweep's key of the cell, collected into a set


class _Details(_Shape):
    engine: _Engine | None = None
    levels: list[_Level] = []
    memory: _Memory | None = None
    labels: _Labels = _Labels()
    quant: Text = None
    log: Text = None


class _ScenarioEngine(_Shape):
    quant: Text = None
    max_model_len: Count = None


class _Scenario(_Shape):
    """`config.scenario` of an inference or serve run: the shape it ran at."""

    backend: Text = None
    api: Text = None
    engine: _ScenarioEngine = _ScenarioEngine()
    batch: int = 0  # compared with a claim's batch: never null where given
    prompt_len: Count = None
    output_len: Count = None
    context: Count = None


class _Recipe(_Shape):
    id: Text = None
    method: Text = None
    quant: Text = None
    steps: Count = None


class _Eval(_Shape):
    tasks: list[str] | None = None
    limit: Count = None


class _Config(_Shape):
    scenario: _Scenario = _Scenario()
    recipe: _Recipe = _Recipe()
    eval: _Eval = _Eval()


class _Hardware(_Shape):
    """What ran the record and what it was judged against; names are grouped and sorted on."""

    device: Text = None
    device_name: Text = None
    cpu_model: Text = None
    target: Text = None
    emulated: bool | None = None

    @model_validator(mode="after")
    def _capped_to_a_card(self) -> _Hardware:
        if self.emulated and self.target is None:
            raise ValueError("an emulated run must name its target card")
        return self


class _Software(_Shape):
    bench: Text = None
    bench_commit: Text = None


class _Metric(_Shape):
    """Any metric: a number, a flag, or none (`scores` alone holds an object)."""

    value: Any

    @field_validator("value")
    @classmethod
    def _number_or_flag(cls, value: Any) -> Any:
        if value is not None and not isinstance(value, int | float):  # a flag is an int
            raise ValueError("should be a number, true/false or null")
        return value


class _Figure(_Shape):
    """A figure readers compute with directly (scale, compare): a number, never none."""

    value: float


class _Scores(_Shape):
    """`metrics.scores`: {task: {metric: value}}, a standard error none where lm-eval gave none."""

    value: dict[str, dict[str, Number]] | None


class _Metrics(_Shape):
    model_config = ConfigDict(extra="allow")
    __pydantic_extra__: dict[str, _Metric]  # every other metric is checked as `_Metric`

    scores: _Scores | None = None
    ttft_s: _Figure | None = None
    itl_p50_s: _Figure | None = None
    decode_tokens_per_s: _Figure | None = None
    throughput_tokens_per_s: _Figure | None = None
    # A serve record's one-user level, which the responsiveness verdict compares with a claim.
    one_user_ttft: _Figure | None = Field(None, alias="ttft_p90_s@c1")
    one_user_tpot: _Figure | None = Field(None, alias="tpot_p90_s@c1")


class _Record(_Shape):
    config: _Config
    hardware: _Hardware
    software: _Software
    metrics: _Metrics
    details: _Details = _Details()


def check_shape(raw: dict[str, Any]) -> None:
    """Raise pydantic's ValidationError (a ValueError) naming the first field of a wrong type."""
    _Record.model_validate(raw)
