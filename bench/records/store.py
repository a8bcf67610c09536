"""Where records live: atomic never-rewriting writes, the fallback place, and total reads.

One JSON file per run (design section 7). A record is written once, under a unique
id, through a temporary file that is hard-linked into place, so a reader never sees
half a record and an existing record is never replaced. Readers skip a corrupt file
with one warning and go on. No secret may reach a record: writing refuses any text that holds
a Hugging Face token (from the environment or `huggingface-cli login`'s file) or a secret the
writer names (`bench serve`'s API key), as is, JSON-escaped or URL-encoded.

A record's id names its file and the copies a report makes of it, so an id is a plain
file name, and a file whose id is not its own name is skipped: an id read from a file
must never become a path (`../../x`). Records of a schema this bench does not know (a
newer bench wrote them) are skipped with a warning; older schemas are read through the
reader of their version.

Reading is total: only regular files are read, never a link (a FIFO would block the reader, a link
to /dev/zero would fill its memory, and git can commit such a link into results/), no file over
`MAX_RECORD_BYTES` is read, and a record whose free-form fields hold a type readers cannot use
(`bench.records.shape`) is skipped like a corrupt one.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

from pydantic import ValidationError

from bench.config.files import read_regular_file
from bench.records.schema import RunRecord
from bench.records.shape import check_shape

# Every variable huggingface_hub reads a token from (HF_TOKEN, and the name older versions used).
TOKEN_VARIABLES = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")
# The least free space a results folder must have before a run: a record, its log's tail, headroom.
MIN_FREE_BYTES = 16 * 2**20
# The largest record file read. Most records are a few KB; the largest bench writes are serve records,
# which keep every inter-token gap of every level (about 30 bytes each as written): 64 MiB holds two
# million gaps, a minute at 30,000 tokens/s, and still parses in a second or two and about 1 GB.
MAX_RECORD_BYTES = 64 * 2**20


def results_dir(explicit: str | Path | None = None) -> Path:
    """`--results-dir`, else `BENCH_RESULTS_DIR`, else ./results."""
    return Path(explicit or os.environ.get("BENCH_RESULTS_DIR") or "results")


def existing_results_dir(explicit: str | Path | None = None) -> Path:
    """The results folder a reading command reads: an explicit `--results-dir` must exist (a mistyped
    one would read as "no results"); the default may be absent (nothing measured yet), but a file in
    its place is refused, as it too would read as "no results"."""
    from bench.errors import UserError

    directory = results_dir(explicit)
    if explicit is not None and not directory.is_dir():
        raise UserError(f"--results-dir {explicit}: no such folder")
    if directory.exists() and not directory.is_dir():
        named = "BENCH_RESULTS_DIR" if os.environ.get("BENCH_RESULTS_DIR") else "the results folder"
        raise UserError(f"{named} {directory}: a file, not a folder")
    return directory


# A secret shorter than this is refused nowhere: so short a string turns up in any record by chance.
SECRET_MIN_CHARS = 8


class SecretInRecord(ValueError):
    """A record's text holds a secret; the message names where the secret came from, never the secret."""


def _known_tokens() -> dict[str, str]:
    """Each Hugging Face token this process could use, by where it came from (said in a refusal)."""
    tokens = {f"the Hugging Face token from {name}": os.environ.get(name, "") for name in TOKEN_VARIABLES}
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    stored = Path(os.environ.get("HF_TOKEN_PATH") or Path(os.environ.get("HF_HOME") or cache / "huggingface") / "token")
    with contextlib.suppress(OSError, UnicodeDecodeError):  # no stored token: nothing to guard against
        tokens[f"the Hugging Face token from {stored}"] = stored.read_text().strip()
    return tokens


def secrets_to_refuse(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The secrets no record may hold, by where each came from: the Hugging Face tokens, and `extra`
    (a writer's own, such as the API key `bench serve` sends); values too short to be secrets left out."""
    found = {**_known_tokens(), **(extra or {})}
    return {source: secret for source, secret in found.items() if len(secret) >= SECRET_MIN_CHARS}


@functools.lru_cache(maxsize=64)
def secret_forms(secret: str) -> frozenset[str]:
    """Every way `secret` can appear in a record's JSON text: as is, JSON-escaped (a `"` or `\\` in it is
    written escaped, so the raw secret is not in the text), and URL-encoded (a server echoing a query)."""
    encoded = {quote(secret, safe=""), quote_plus(secret, safe="")}
    lower_hex = {re.sub(r"%[0-9A-F]{2}", lambda m: m.group().lower(), form) for form in encoded}
    return frozenset({secret, json.dumps(secret, ensure_ascii=False)[1:-1], json.dumps(secret)[1:-1], *encoded,
                      *lower_hex})


def secret_in(text: str, secrets: Mapping[str, str]) -> str | None:
    """Where the first of `secrets` that `text` holds, in any of its forms, came from; None when none."""
    for source, secret in secrets.items():
        if any(form in text for form in secret_forms(secret)):
            return source
    return None


def write_record(record: RunRecord, directory: Path, secrets: Mapping[str, str] | None = None) -> Path:
    """Write `<id>.json` atomically; raise FileExistsError rather than replace a record, and
    :class:`SecretInRecord` rather than write a Hugging Face token or one of `secrets` (source -> value)."""
    directory.mkdir(parents=True, exist_ok=True)
    text = record.model_dump_json(indent=2)
    if source := secret_in(text, secrets_to_refuse(secrets)):
        raise SecretInRecord(f"refusing to write a record containing {source}")
    final = directory / f"{record.id}.json"
    fd, tmp = tempfile.mkstemp(prefix=f".{record.id}.", suffix=".tmp", dir=directory)
    try:
        os.fchmod(fd, 0o644)  # mkstemp's 0600 would hide records from the rest of the team
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.link(tmp, final)  # fails if the name is taken: records are never rewritten
    finally:
        os.unlink(tmp)
    _fsync_dir(directory)  # so the new name survives a power cut too
    return final


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def check_writable(directory: Path, create: bool = True) -> None:
    """Refuse, before a run, a results folder that cannot take its record: the measurement would be lost.

    With `create=False` (the command's first check, before any download or model build) a missing
    folder is not made: its nearest existing parent must take the write, so bad input leaves nothing."""
    from bench.errors import UserError

    if directory.exists() and not directory.is_dir():
        raise UserError(f"results folder {directory} is a file, not a folder")
    probe = directory
    try:
        if create:
            directory.mkdir(parents=True, exist_ok=True)
        while not probe.exists():
            probe = probe.parent
        with tempfile.TemporaryFile(dir=probe):  # a real write: root ignores permission bits, not a ro mount
            pass
    except OSError as err:
        raise UserError(f"results folder {directory} is not writable ({err.strerror or err})") from None
    free = shutil.disk_usage(probe).free
    if free < MIN_FREE_BYTES:
        raise UserError(f"results folder {directory} has {free // 2**10} KiB free; a run needs at least "
                        f"{MIN_FREE_BYTES // 2**20} MiB") from None


def fallback_dir() -> Path:
    """Where a record goes when its results folder refuses it (full, read-only, removed meanwhile)."""
    state = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    return state / "bench" / "unsaved-records"


def write_record_or_fallback(record: RunRecord, directory: Path, secrets: Mapping[str, str] | None = None) -> Path:
    """Write the record into `directory`, else into :func:`fallback_dir` (then the temporary folder),
    saying where in one line on stderr: a finished measurement is never lost to a full disk."""
    try:
        return write_record(record, directory, secrets)
    except OSError as err:
        first = err
    for place in (fallback_dir(), Path(tempfile.gettempdir()) / "bench-unsaved-records"):
        try:
            path = write_record(record, place, secrets)
        except OSError:
            continue
        print(f"error: could not write the record into {directory} ({first.strerror or first}); "
              f"kept it at {path}", file=sys.stderr)
        return path
    raise first


def saved_path(record_id: str, directory: Path) -> Path:
    """Where the record `record_id` was written: the results folder, or a fallback place."""
    for place in (directory, fallback_dir(), Path(tempfile.gettempdir()) / "bench-unsaved-records"):
        if (place / f"{record_id}.json").is_file():
            return place / f"{record_id}.json"
    return directory / f"{record_id}.json"


# Readers of the schema versions this bench knows: each turns a parsed record of its version into
# the current fields. A new schema version adds its reader here and upgrades the older ones.
READERS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {1: lambda raw: raw}


def read_record(path: Path) -> RunRecord:
    """One record file, through the reader of its schema version; ValueError when it is none of ours
    (including a record whose free-form fields hold a type readers cannot use)."""
    raw = json.loads(read_regular_file(path, MAX_RECORD_BYTES, follow_links=False))
    if not isinstance(raw, dict):
        raise ValueError("not a JSON object")
    version = raw.get("schema_version")
    if type(version) is not int or version not in READERS:
        raise ValueError(f"schema_version {version!r} is not one this bench reads ({', '.join(map(str, READERS))})")
    current = READERS[version](raw)
    record = RunRecord.model_validate(current)
    check_shape(current)
    if record.id != path.stem:
        raise ValueError(f"its id {record.id!r} is not its file name")
    return record


def _refuse_link(path: Path) -> None:
    """ValueError for a link: only the folder's own files are records. A link can lead out of the folder
    (to /dev/zero, to a secret; git commits links as they are) or repeat a record under a second name."""
    if path.is_symlink():
        raise ValueError(f"a link to {os.readlink(path)}, not a record file of its own")


def iter_record_files(directory: Path) -> Iterator[tuple[Path, RunRecord]]:
    """Every valid record in `directory` and its subfolders (the published results/gpu/, results/cpu/),
    with its file, by path; corrupt, foreign, future-schema, mistyped and special files, oversized ones
    and links are skipped with a warning."""
    if not directory.is_dir():
        return
    for path in sorted(directory.rglob("*.json")):
        if any(part.startswith(".") for part in path.relative_to(directory).parts):
            continue  # a write in progress, or an editor's or a file system's litter
        try:
            _refuse_link(path)
            record = read_record(path)
        except (OSError, ValueError, RecursionError) as err:  # ValueError: bad JSON, bad UTF-8, invalid
            print(f"warning: skipping {path}: not a valid bench record ({_reason(err)})", file=sys.stderr)
            continue
        yield path, record


def iter_records(directory: Path) -> Iterator[RunRecord]:
    """The records of :func:`iter_record_files`, without their files."""
    for _, record in iter_record_files(directory):
        yield record


def _reason(err: Exception) -> str:
    if isinstance(err, ValidationError):
        first = err.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "top level"
        more = f" and {err.error_count() - 1} more" if err.error_count() > 1 else ""
        # pydantic names the shape's own class there ("instance of _Engine"), which means nothing to a reader
        message = "Input should be a JSON object" if first["type"] == "model_type" else first["msg"]
        return f"{where}: {message}{more}"
    if isinstance(err, json.JSONDecodeError):
        return f"not JSON: {err.msg} at line {err.lineno}"
    return f"{type(err).__name__}: {err}"


