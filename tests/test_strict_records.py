"""bench.config.strict: the registry's records, checked in plain Python (no validation library on the quick path)."""

from __future__ import annotations

import copy
import pickle
import subprocess
import sys
from typing import Literal

import pytest

from bench.config.strict import Strict, ValidationError, field, validator


class Part(Strict):
    name: str
    weight: float = field(1.0, gt=0)


class Thing(Strict):
    id: str
    count: int = field(gt=0, le=10)
    kind: Literal["a", "b"] = "a"
    ratio: float | None = None
    enabled: bool = False
    tags: list[str] = []
    parts: list[Part] = []
    table: dict[str, float] = {}
    layers: list[int] | None = field(None, max_length=3)

    @validator
    def _tags_need_a_kind_b(self) -> Thing:
        if self.tags and self.kind != "b":
            raise ValueError("tags are for kind b")
        return self


def problems_of(data: dict) -> str:
    with pytest.raises(ValidationError) as caught:
        Thing.model_validate(data)
    return str(caught.value)


def test_values_are_held_as_declared_and_numbers_as_yaml_and_json_give_them():
    thing = Thing.model_validate({"id": "x", "count": 4.0, "ratio": 2, "table": {"total": "4.3e9"},
                                  "parts": [{"name": "p", "weight": 3}]})
    assert thing.count == 4 and type(thing.count) is int
    assert thing.ratio == 2.0 and type(thing.ratio) is float
    assert thing.table == {"total": 4.3e9}  # YAML 1.1 reads 4.3e9 as a string
    assert thing.parts == [Part(name="p", weight=3.0)]
    assert thing.model_dump() == {"id": "x", "count": 4, "kind": "a", "ratio": 2.0, "enabled": False, "tags": [],
                                  "parts": [{"name": "p", "weight": 3.0}], "table": {"total": 4.3e9},
                                  "layers": None}
    assert thing.model_dump_json().startswith('{"id":"x","count":4,"kind":"a","ratio":2.0,')
    assert "layers" not in thing.model_dump(exclude_none=True)


def test_every_problem_is_reported_at_once_with_its_path():
    said = problems_of({"id": 3, "count": 0, "kind": "c", "enabled": 1, "colour": "red",
                        "parts": [{"name": "p", "weight": -1}, {"weight": 1}], "layers": [1, 2, 3, 4]})
    assert said.split("; ") == [
        "colour: unknown field",
        "id: Input should be a valid string, not int",
        "count: Input should be greater than 0",
        "kind: Input should be 'a' or 'b', not 'c'",
        "enabled: Input should be a valid boolean, not int",
        "parts.0.weight: Input should be greater than 0",
        "parts.1.name: Field required",
        "layers: List should have at most 3 items, not 4",
    ]


@pytest.mark.parametrize(("value", "words"), [
    (True, "valid integer, not True"),  # a bool is never a number
    (2.5, "fractional part"),
    ("many", "valid integer, not 'many'"),
    (float("inf"), "valid integer"),
    (11, "less than or equal to 10"),
])
def test_an_int_field_refuses_what_is_no_whole_number_in_range(value, words):
    assert words in problems_of({"id": "x", "count": value})


def test_a_bound_compares_across_int_and_float():
    class Mixed(Strict):
        whole: int = field(1, gt=0.5)
        part: float = field(0.5, lt=1)

    assert (Mixed(whole=1, part=0).whole, Mixed(whole=1, part=0).part) == (1, 0.0)
    with pytest.raises(ValidationError, match="whole: Input should be greater than 0.5"):
        Mixed(whole=0)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), ".inf"])
def test_a_float_field_refuses_infinities_and_nan(value):
    assert "ratio: Input should be a" in problems_of({"id": "x", "count": 1, "ratio": value})


def test_the_whole_record_check_runs_once_the_fields_hold_and_says_its_words():
    assert problems_of({"id": "x", "count": 1, "tags": ["t"]}) == "(top level): tags are for kind b"
    assert Thing(id="x", count=1, kind="b", tags=["t"]).tags == ["t"]
    # a field's own problem stops the record check, which would only repeat it
    assert problems_of({"id": "x", "count": 0, "tags": ["t"]}) == "count: Input should be greater than 0"


def test_a_record_is_frozen_copies_with_updates_and_survives_pickle_and_deepcopy():
    thing = Thing(id="x", count=2, parts=[{"name": "p"}])
    with pytest.raises(AttributeError, match="frozen"):
        thing.count = 3
    moved = thing.model_copy(update={"count": 5})
    assert (moved.count, thing.count, moved.parts) == (5, 2, thing.parts)
    assert pickle.loads(pickle.dumps(thing)) == thing == copy.deepcopy(thing)
    assert Thing.model_validate(thing) is thing


def test_defaults_are_not_shared_between_records():
    first, second = Thing(id="a", count=1), Thing(id="b", count=1)
    assert first.tags == [] and first.tags is not second.tags


def test_the_registry_and_its_architectures_load_without_a_validation_library():
    """What `bench plan` loads is checked in plain Python; only the run records (bench.records) use pydantic."""
    code = ("import sys; from bench.config.registry import load_registry; from bench.config.hfconfig import "
            "TextConfig; load_registry(); print(sorted(m for m in sys.modules if m.split('.')[0] == 'pydantic'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
