"""The registry's YAML files as they parsed, kept as JSON until a file changes.

Every command reads the registry's forty-odd YAML files. PyYAML's import and its object constructor took
0.03 s of `bench plan --claims` (0.3 s in all); the same data loads from one JSON file in 1 ms. Each entry is
keyed by its file's size and modification time in nanoseconds, as Python keys bytecode to its source, so an
edited file is parsed again. Only data that JSON holds exactly is kept (a YAML date or a non-string key
is not: such a file is parsed every time), so a load from the copy and a parse are indistinguishable; the
records are validated either way. Where the cache folder cannot be written, every load parses.

The copy lives under ``BENCH_CACHE_DIR`` (default ``~/.cache/bench``) in ``registry/``, one file per configs
folder, named by a checksum of its path (the path is kept inside and checked, so a clash only parses again).
"""

from __future__ import annotations

import contextlib
import json
import os
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

CACHE_FORMAT = 1


def cache_dir() -> Path:
    """bench's cache folder: built weights (bench.weights) and the parsed registry live under it."""
    return Path(os.environ.get("BENCH_CACHE_DIR") or Path.home() / ".cache" / "bench")


def parsed_files(root: Path, paths: Sequence[Path], parse: Callable[[Path], Any]) -> dict[Path, Any]:
    """What `parse` gives for each of `paths` (files under `root`): kept from an earlier parse while a file's
    size and modification time stay the same, parsed otherwise; parse errors propagate as `parse` raises
    them, and then nothing is kept."""
    store = cache_dir() / "registry" / f"{zlib.crc32(str(root).encode()):08x}.json"
    kept = _read(store, root)
    entries, found, changed = {}, {}, False
    for path in paths:
        info = path.stat()
        key, stamp = str(path.relative_to(root)), [info.st_size, info.st_mtime_ns]
        entry = kept.get(key)
        if isinstance(entry, list) and len(entry) == 3 and entry[:2] == stamp:
            found[path] = entry[2]
            entries[key] = entry
            continue
        found[path], changed = parse(path), True
        if _json_exact(found[path]):
            entries[key] = [*stamp, found[path]]
    if changed or entries.keys() != kept.keys():
        _write(store, {"format": CACHE_FORMAT, "root": str(root), "files": entries})
    return found


def _read(store: Path, root: Path) -> dict[str, list[Any]]:
    try:
        cached = json.loads(store.read_bytes())
    except (OSError, ValueError):
        return {}
    if not isinstance(cached, dict) or cached.get("format") != CACHE_FORMAT or cached.get("root") != str(root):
        return {}
    files = cached.get("files")
    return files if isinstance(files, dict) else {}


def _json_exact(data: Any) -> bool:
    try:
        return json.loads(json.dumps(data)) == data
    except (TypeError, ValueError):  # a date, a set, a value JSON has no form for
        return False


def _write(store: Path, content: dict[str, Any]) -> None:
    """Written whole, then moved into place: a reader sees the old copy or the new one, never a part."""
    partial = store.with_name(f"{store.name}.{os.getpid()}.partial")
    try:
        store.parent.mkdir(parents=True, exist_ok=True)
        partial.write_text(json.dumps(content))
        os.replace(partial, store)
    except OSError:  # a read-only or full disk: the next load parses again
        with contextlib.suppress(OSError):
            partial.unlink(missing_ok=True)
