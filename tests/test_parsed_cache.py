"""bench.config.parsed_cache: the registry's YAML kept as JSON until a file changes, indistinguishable from a parse."""

from __future__ import annotations

import datetime
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench.config.parsed_cache import parsed_files
from bench.config.registry import load_registry, read_yaml
from bench.errors import UserError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


class CountingParse:
    def __init__(self):
        self.parsed: list[str] = []

    def __call__(self, path: Path):
        self.parsed.append(path.name)
        return read_yaml(path)


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_an_unchanged_file_is_not_parsed_again_and_a_changed_one_is(tmp_path, cache):
    a, b = write(tmp_path / "a.yaml", "x: 1\nname: a\n"), write(tmp_path / "b.yaml", "y: [1.5, true, null]\n")
    first = CountingParse()
    assert parsed_files(tmp_path, [a, b], first) == {a: {"x": 1, "name": "a"}, b: {"y": [1.5, True, None]}}
    again = CountingParse()
    assert parsed_files(tmp_path, [a, b], again) == {a: {"x": 1, "name": "a"}, b: {"y": [1.5, True, None]}}
    assert (first.parsed, again.parsed) == (["a.yaml", "b.yaml"], [])
    write(a, "x: 22\nname: a\n")  # one byte longer: a new size
    edited = CountingParse()
    assert parsed_files(tmp_path, [a, b], edited)[a] == {"x": 22, "name": "a"}
    assert edited.parsed == ["a.yaml"]
    os.utime(b, ns=(0, b.stat().st_mtime_ns + 1))  # same size, touched
    touched = CountingParse()
    parsed_files(tmp_path, [a, b], touched)
    assert touched.parsed == ["b.yaml"]


def test_what_json_cannot_hold_exactly_is_parsed_every_time(tmp_path, cache):
    dated = write(tmp_path / "dated.yaml", "published: 2025-03-17\n1: numbered key\n")
    for _ in range(2):
        parse = CountingParse()
        assert parsed_files(tmp_path, [dated], parse) == {dated: {"published": datetime.date(2025, 3, 17),
                                                                  1: "numbered key"}}
        assert parse.parsed == ["dated.yaml"]


def test_a_damaged_or_unwritable_cache_only_costs_a_parse(tmp_path, cache):
    a = write(tmp_path / "a.yaml", "x: 1\n")
    parsed_files(tmp_path, [a], CountingParse())
    (stored,) = (cache / "registry").iterdir()
    stored.write_text('{"format": 1, "root": "' + str(tmp_path) + '", "files": {"a.yaml": [1, 2')
    parse = CountingParse()
    assert parsed_files(tmp_path, [a], parse) == {a: {"x": 1}} and parse.parsed == ["a.yaml"]
    assert parsed_files(tmp_path, [a], CountingParse()) == {a: {"x": 1}}  # rewritten whole

    shutil.rmtree(cache)
    cache.write_text("a file where the cache folder would be")
    for _ in range(2):
        parse = CountingParse()
        assert parsed_files(tmp_path, [a], parse) == {a: {"x": 1}} and parse.parsed == ["a.yaml"]


def test_a_parse_error_is_raised_as_before_and_nothing_is_kept(tmp_path, cache):
    bad = write(tmp_path / "bad.yaml", "x: [1, 2\n")
    for _ in range(2):
        with pytest.raises(UserError, match="not valid YAML"):
            parsed_files(tmp_path, [bad], read_yaml)
    assert not (cache / "registry").exists()


def test_the_registry_loads_the_same_from_the_copy_without_importing_yaml(tmp_path, cache):
    configs = tmp_path / "configs"
    shutil.copytree(ROOT / "configs", configs)
    parsed = load_registry.__wrapped__(configs)
    code = ("import sys; from bench.config.registry import load_registry; r = load_registry(); "
            "print('yaml' in sys.modules, r.gpu('4090').memory_gib, len(r.models))")
    env = {**os.environ, "BENCH_CONFIG_DIR": str(configs), "BENCH_CACHE_DIR": str(cache)}
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env, cwd=ROOT)
    assert run.stdout.split() == ["False", str(parsed.gpu("4090").memory_gib), str(len(parsed.models))]
    assert load_registry.__wrapped__(configs) == parsed

    card = configs / "hardware" / "rtx-4090.yaml"
    card.write_text(card.read_text().replace("\nmemory_gib: 23.988", "\nmemory_gib: 23.989"))  # the same size
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env, cwd=ROOT)
    assert run.stdout.split()[:2] == ["True", "23.989"]  # the edited file parsed again, with its new number
