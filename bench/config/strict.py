"""Frozen, strict records built from plain data (a YAML file, a config.json), checked in plain Python.

Every command loads the registry and its architectures into these, `bench plan` included, which must stay a
small fraction of a torch import. As pydantic models, building their validators took a third of loading the
registry (0.060 s, now 0.039 s: fastest of 9, typer's own pydantic import already made), for a small, fixed
set of needs:

- fields are class annotations: ``bool``, ``int``, ``float``, ``str``, ``None`` in a union, ``Literal``,
  ``list[X]``, ``dict[str, X]``, ``Any`` and nested :class:`Strict` classes; a default, numeric bounds and a
  description come from :func:`field`;
- an unknown key is an error, and every problem of an input is reported at once, each as ``key.path: problem``
  (:class:`ValidationError`), so a typo in a YAML file names its file and field;
- numbers are taken as YAML and JSON give them: an ``int`` field takes an integral float (``4096.0``), a
  ``float`` field an int (kept as a float, so ``24`` dumps as ``24.0``), and either takes a number written
  as a string (YAML 1.1 reads ``4.3e9`` as one); a bool is never a number nor a string a bool, and
  infinities and NaN are refused;
- instances are frozen; what is derived from one stays true for its life;
- a method marked :func:`validator` checks the whole record once its fields are set, and raises ValueError
  with the problem.

Instances answer the same few calls as the run records (pydantic models): ``model_validate``, ``model_dump``,
``model_dump_json``, ``model_copy`` and ``model_fields``, so code that reports either kind calls one
interface.
"""

from __future__ import annotations

import contextlib
import json
import math
import operator
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, Literal, TypeVar

Record = TypeVar("Record", bound="Strict")
Location = tuple[str | int, ...]
Problems = list[tuple[Location, str]]
# A field's check: takes the value and where it is, appends what is wrong, returns the value as held.
Check = Callable[[Any, Location, Problems], Any]

_REQUIRED = object()


class ValidationError(ValueError):
    """Every problem of one input, in order, each as ``key.path: problem``."""

    def __init__(self, problems: Problems) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{_where(loc)}: {problem}" for loc, problem in problems))


def _where(loc: Location) -> str:
    return ".".join(str(part) for part in loc) or "(top level)"


class FieldInfo:
    """A field's default (or none: required), bounds and description."""

    __slots__ = ("default", "gt", "ge", "lt", "le", "max_length", "description")

    def __init__(self, default: Any = _REQUIRED, *, gt: float | None = None, ge: float | None = None,
                 lt: float | None = None, le: float | None = None, max_length: int | None = None,
                 description: str = "") -> None:
        self.default, self.description = default, description
        self.gt, self.ge, self.lt, self.le, self.max_length = gt, ge, lt, le, max_length

    @property
    def required(self) -> bool:
        return self.default is _REQUIRED

    def fresh_default(self) -> Any:
        """The default, a new list or dict each time, so no two records share one."""
        return type(self.default)(self.default) if isinstance(self.default, list | dict) else self.default

    def bound_problem(self, value: Any) -> str | None:
        if isinstance(value, int | float) and not isinstance(value, bool):
            for bound, holds, words in ((self.gt, operator.gt, "greater than"),
                                        (self.ge, operator.ge, "greater than or equal to"),
                                        (self.lt, operator.lt, "less than"),
                                        (self.le, operator.le, "less than or equal to")):
                if bound is not None and not holds(value, bound):
                    return f"Input should be {words} {bound}"
        if self.max_length is not None and isinstance(value, list) and len(value) > self.max_length:
            return f"List should have at most {self.max_length} items, not {len(value)}"
        return None


def field(default: Any = _REQUIRED, **details: Any) -> Any:
    """A field with a default (none: required), bounds (gt, ge, lt, le, max_length) and a description."""
    return FieldInfo(default, **details)


def validator(method: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """Marks a method that checks the whole record once its fields are set (raise ValueError to refuse)."""
    method.__checks_record__ = True  # type: ignore[attr-defined]
    return method


class Strict:
    """Base of every registry and architecture record: declare fields as annotations, see the module's doc."""

    model_fields: dict[str, FieldInfo] = {}
    _checks: dict[str, Check] | None = None  # per class, made from the annotations on first use
    _validators: tuple[Callable[[Any], Any], ...] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        fields = dict(cls.model_fields)
        for name in cls.__dict__.get("__annotations__", {}):
            declared = cls.__dict__.get(name, _REQUIRED)
            fields[name] = declared if isinstance(declared, FieldInfo) else FieldInfo(declared)
            if name in cls.__dict__:
                delattr(cls, name)  # an instance holds the value; the class keeps no stale default
        cls.model_fields, cls._checks = fields, None
        cls._validators = tuple(member for klass in reversed(cls.__mro__) for member in vars(klass).values()
                                if getattr(member, "__checks_record__", False))

    def __init__(self, **data: Any) -> None:
        problems: Problems = []
        type(self)._fill(self, data, (), problems)
        if problems:
            raise ValidationError(problems)

    @classmethod
    def model_validate(cls: type[Record], data: Any) -> Record:
        if isinstance(data, cls):
            return data
        problems: Problems = []
        record = cls._from(data, (), problems)
        if problems:
            raise ValidationError(problems)
        return record

    @classmethod
    def _from(cls: type[Record], data: Any, loc: Location, problems: Problems) -> Record:
        if not isinstance(data, Mapping):
            problems.append((loc, f"Input should be a mapping of fields, not {type(data).__name__}"))
            return None  # type: ignore[return-value]
        record = object.__new__(cls)
        cls._fill(record, data, loc, problems)
        return record

    @classmethod
    def _fill(cls, record: Strict, data: Mapping[str, Any], loc: Location, problems: Problems) -> None:
        checks, before = cls._field_checks(), len(problems)
        problems.extend((loc + (name,), "unknown field") for name in data if name not in checks)
        values = {}
        for name, info in cls.model_fields.items():
            if name in data:
                values[name] = checks[name](data[name], loc + (name,), problems)
            elif info.required:
                problems.append((loc + (name,), "Field required"))
            else:
                values[name] = info.fresh_default()
        record.__dict__.update(values)
        if len(problems) > before:
            return
        for check in cls._validators:
            try:
                check(record)
            except ValueError as err:
                problems.append((loc, str(err)))

    @classmethod
    def _field_checks(cls) -> dict[str, Check]:
        if cls._checks is None:
            hints = typing.get_type_hints(cls)
            cls._checks = {name: _bounded(_check_for(hints[name]), info) for name, info in cls.model_fields.items()}
        return cls._checks

    def model_dump(self, *, mode: Literal["python", "json"] = "python", exclude_none: bool = False) -> dict[str, Any]:
        """The fields as plain data, nested records as dicts (every value here is already JSON's: `mode` is
        accepted for the run records' interface)."""
        return {name: _plain(value, exclude_none) for name, value in self.__dict__.items()
                if not (exclude_none and value is None)}

    def model_dump_json(self) -> str:
        return json.dumps(self.model_dump(), separators=(",", ":"), ensure_ascii=False)

    def model_copy(self: Record, *, update: Mapping[str, Any] | None = None) -> Record:
        """A shallow copy with `update`'s fields replaced, as given (not checked again)."""
        copy = object.__new__(type(self))
        copy.__dict__.update({**self.__dict__, **(update or {})})
        return copy

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is frozen: {name} cannot be set")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is frozen: {name} cannot be deleted")

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.__dict__ == self.__dict__

    def __hash__(self) -> int:  # as a frozen pydantic model: a record with a list field does not hash
        return hash((type(self), *self.__dict__.values()))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.__dict__.items())})"


def _plain(value: Any, exclude_none: bool) -> Any:
    if isinstance(value, Strict):
        return value.model_dump(exclude_none=exclude_none)
    if isinstance(value, list):
        return [_plain(item, exclude_none) for item in value]
    if isinstance(value, dict):
        return {key: _plain(item, exclude_none) for key, item in value.items()}
    return value


def _bounded(check: Check, info: FieldInfo) -> Check:
    if all(bound is None for bound in (info.gt, info.ge, info.lt, info.le, info.max_length)):
        return check

    def bounded(value: Any, loc: Location, problems: Problems) -> Any:
        before = len(problems)
        held = check(value, loc, problems)
        if len(problems) == before and (problem := info.bound_problem(held)) is not None:
            problems.append((loc, problem))
        return held

    return bounded


def _check_for(hint: Any) -> Check:
    """The check of one annotation, made once per class and field."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return lambda value, loc, problems: value
    if isinstance(hint, type) and issubclass(hint, Strict):
        return lambda value, loc, problems: value if isinstance(value, hint) else hint._from(value, loc, problems)
    if hint in _SCALARS:
        return _SCALARS[hint]
    if origin is Literal:
        return _literal(args)
    if origin in (types.UnionType, typing.Union):
        return _union(args)
    if origin is list:
        return _list(_check_for(args[0]))
    if origin is dict and args[0] is str:
        return _dict(_check_for(args[1]))
    raise TypeError(f"no check for the annotation {hint!r}")


def _bool(value: Any, loc: Location, problems: Problems) -> Any:
    if not isinstance(value, bool):
        problems.append((loc, f"Input should be a valid boolean, not {type(value).__name__}"))
    return value


def _int(value: Any, loc: Location, problems: Problems) -> Any:
    number = _number(value)
    if isinstance(number, int):
        return number
    if isinstance(number, float) and number.is_integer():
        return int(number)
    problems.append((loc, "Input should be a valid integer" + (", got a number with a fractional part"
                                                               if isinstance(number, float) and math.isfinite(number)
                                                               else f", not {_shown(value)}")))
    return value


def _float(value: Any, loc: Location, problems: Problems) -> Any:
    number = _number(value)
    if number is None:
        problems.append((loc, f"Input should be a valid number, not {_shown(value)}"))
    elif not math.isfinite(number):
        problems.append((loc, f"Input should be a finite number, not {value}"))
    else:
        return float(number)
    return value


def _number(value: Any) -> int | float | None:
    """An int or float as given, or read from a string: YAML 1.1 reads `4.3e9` (no dot before the exponent's
    sign) as a string, and a registry file writes counts that way."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            return int(value.strip())
        with contextlib.suppress(ValueError):
            return float(value.strip())
    return None


def _str(value: Any, loc: Location, problems: Problems) -> Any:
    if not isinstance(value, str):
        problems.append((loc, f"Input should be a valid string, not {type(value).__name__}"))
    return value


def _none(value: Any, loc: Location, problems: Problems) -> Any:
    if value is not None:
        problems.append((loc, f"Input should be None, not {type(value).__name__}"))
    return value


_SCALARS: dict[Any, Check] = {bool: _bool, int: _int, float: _float, str: _str, type(None): _none}


def _shown(value: Any) -> str:
    return repr(value) if isinstance(value, str | bool | float) else type(value).__name__


def _literal(allowed: tuple[Any, ...]) -> Check:
    words = ", ".join(repr(a) for a in allowed[:-1]) + (" or " if len(allowed) > 1 else "") + repr(allowed[-1])

    def literal(value: Any, loc: Location, problems: Problems) -> Any:
        if not any(value == a and type(value) is type(a) for a in allowed):
            problems.append((loc, f"Input should be {words}, not {_shown(value)}"))
        return value

    return literal


def _union(members: tuple[Any, ...]) -> Check:
    """None where a member is None; else the first other member that takes the value, or the first's problem."""
    optional = type(None) in members
    checks = [_check_for(m) for m in members if m is not type(None)]

    def union(value: Any, loc: Location, problems: Problems) -> Any:
        if value is None and optional:
            return None
        first: Problems = []
        for check in checks:
            tried: Problems = []
            held = check(value, loc, tried)
            if not tried:
                return held
            first = first or tried
        problems.extend(first)
        return value

    return union


def _list(item: Check) -> Check:
    def checked_list(value: Any, loc: Location, problems: Problems) -> Any:
        if not isinstance(value, list | tuple):
            problems.append((loc, f"Input should be a valid list, not {type(value).__name__}"))
            return value
        return [item(element, loc + (i,), problems) for i, element in enumerate(value)]

    return checked_list


def _dict(item: Check) -> Check:
    def checked_dict(value: Any, loc: Location, problems: Problems) -> Any:
        if not isinstance(value, Mapping):
            problems.append((loc, f"Input should be a valid dictionary, not {type(value).__name__}"))
            return value
        held = {}
        for key, element in value.items():
            if not isinstance(key, str):
                problems.append((loc + (str(key),), "Input should be a valid string key"))
            held[key] = item(element, loc + (str(key),), problems)
        return held

    return checked_dict
