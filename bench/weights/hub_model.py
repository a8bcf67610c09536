"""A model named by its Hub id (`ORG/NAME[@REVISION]`): its config.json and its checkpoint's tensor headers.

Any repository a user names can be planned and run, not only the registry's: the revision is
resolved to a commit (recorded), config.json is fetched through huggingface_hub (from the standard
cache when HF_HUB_OFFLINE=1 or the hub is unreachable), and the checkpoint's exact bytes come from
its safetensors headers, read with HTTP range requests or from the cached files, never by
downloading weights. The token is huggingface_hub's own (HF_TOKEN or its token file); bench never
reads, passes or writes it.
"""

from __future__ import annotations

import contextlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.config.files import read_regular_file
from bench.config.hfconfig import MAX_CONFIG_BYTES
from bench.errors import UserError
from bench.estimate.checkpoint import MAX_HEADER_BYTES, CheckpointWeights, Tensor, parse_header, summarise, tensors_of
from bench.weights.hub import HubUnreachable, _hub_call, offline

# ORG/NAME as the Hub spells repository ids, optionally @REVISION (a branch, tag or commit).
HUB_ID = re.compile(r"^(?P<repo>[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*)(?:@(?P<rev>[^@\s]+))?$")
HOW_TO_NAME = "name a Hub model as ORG/NAME[@REVISION] or a local folder with a config.json"
SINGLE_FILE, INDEX_FILE = "model.safetensors", "model.safetensors.index.json"


@dataclass(frozen=True)
class HubModel:
    """What the hub (or its cache) says about a repository at one commit."""

    repo: str
    revision: str  # as asked
    commit: str  # what it resolved to
    raw_config: dict[str, Any]  # the whole config.json: multimodal parts are counted from it
    license: str
    checkpoint: CheckpointWeights | None
    checkpoint_note: str | None  # why there is no checkpoint summary
    has_safetensors: bool | None  # False: the repository has none; None: not known (offline, headers uncached)


def parse_hub_id(name: str) -> tuple[str, str] | None:
    """(repo, revision) when `name` is spelled as a Hub id, else None."""
    match = HUB_ID.match(name)
    return (match["repo"], match["rev"] or "main") if match else None


def fetch(repo: str, revision: str) -> HubModel:
    """config.json and the checkpoint's headers at `revision`, resolved to its commit."""
    with _hub_warnings_muted():
        return _fetch(repo, revision)


@contextlib.contextmanager
def _hub_warnings_muted():
    """huggingface_hub logs each retry of an unreachable hub; the outcome is said in one line instead."""
    from huggingface_hub.utils import logging as hub_logging  # its import sets the library's level: first

    level = hub_logging.get_verbosity()
    hub_logging.set_verbosity_error()
    try:
        yield
    finally:
        hub_logging.set_verbosity(level)


def _fetch(repo: str, revision: str) -> HubModel:
    from huggingface_hub import HfApi

    # At the revision as asked, so the cache learns what it points to (refs/), for a later offline call.
    config_path = _config_file(repo, revision)
    commit = config_path.parent.name  # the cache's snapshot folder is named by the commit
    raw = read_config(config_path, f"{repo}@{commit[:12]}: config.json")
    info = None
    if not offline():
        try:
            info = _hub_call(repo, commit, lambda: HfApi().model_info(repo, revision=commit))
        except HubUnreachable:
            info = None  # answered from the cache: the license is not known, the headers are read locally
    checkpoint, note, has = _checkpoint(repo, commit, config_path.parent, raw, online=info is not None)
    return HubModel(repo, revision, commit, raw, _license(info), checkpoint, note, has)


def _config_file(repo: str, revision: str) -> Path:
    from huggingface_hub import HfApi, hf_hub_download, try_to_load_from_cache
    from huggingface_hub.errors import RemoteEntryNotFoundError

    if not offline() and not isinstance(try_to_load_from_cache(repo, "config.json", revision=revision), str):
        # With nothing cached to fall back on, huggingface_hub retries an unreachable hub for about 25 s;
        # one request without retries says it at once.
        _hub_call(repo, revision, lambda: HfApi().file_exists(repo, "config.json", revision=revision))

    def download() -> str:
        try:
            return hf_hub_download(repo, "config.json", revision=revision)
        except RemoteEntryNotFoundError:
            raise UserError(f"{repo}@{revision}: the repository has no config.json (not a transformers "
                            "model; `bench plan --config PATH` takes a config.json you have)") from None

    return Path(_hub_call(repo, revision, download))


def read_config(path: Path, origin: str) -> dict[str, Any]:
    """A config.json as a dict: a regular file of bounded size (see `bench.config.files`), a JSON object."""
    try:
        raw = json.loads(read_regular_file(path, MAX_CONFIG_BYTES))
    except (OSError, ValueError, RecursionError) as err:
        raise UserError(f"{origin}: not a readable JSON config ({err})") from None
    if not isinstance(raw, dict):
        raise UserError(f"{origin}: a config.json must be a JSON object")
    return raw


def _license(info) -> str:
    card = getattr(info, "card_data", None) if info is not None else None
    value = getattr(card, "license", None) if card is not None else None
    return value if isinstance(value, str) and value else "unknown"


def quantization_config(raw: dict[str, Any]) -> dict[str, Any]:
    """The config's quantization_config (top level, or a multimodal config's text_config)."""
    found = raw.get("quantization_config") or (raw.get("text_config") or {}).get("quantization_config")
    return found if isinstance(found, dict) else {}


def _checkpoint(repo: str, commit: str, snapshot: Path, raw: dict[str, Any], online: bool
                ) -> tuple[CheckpointWeights | None, str | None, bool | None]:
    """The checkpoint's summary from cached files when they are all there, else from the hub's headers."""
    local = local_checkpoint(snapshot, raw)
    if local is not None:
        return local, None, True
    if not online:
        return None, "no safetensors headers: the weights are not in the local hub cache, and the hub was not asked", \
            None
    from huggingface_hub import HfApi
    from huggingface_hub.errors import NotASafetensorsRepoError, SafetensorsParsingError

    def headers():
        try:
            return HfApi().get_safetensors_metadata(repo, revision=commit)
        except NotASafetensorsRepoError:
            return None
        except SafetensorsParsingError as err:
            raise UserError(f"{repo}@{commit[:12]}: a safetensors header does not parse ({err})") from None

    try:
        meta = _hub_call(repo, commit, headers)
    except HubUnreachable as err:
        return None, f"no safetensors headers: {err}", None
    if meta is None:
        return None, f"no safetensors headers: {repo} has neither {SINGLE_FILE} nor {INDEX_FILE}", False
    tensors = [Tensor(name, info.dtype, tuple(info.shape), info.data_offsets[1] - info.data_offsets[0])
               for file in meta.files_metadata.values() for name, info in file.tensors.items()]
    return summarise(tensors, quantization_config(raw), len(meta.files_metadata)), None, True


def local_checkpoint(folder: Path, raw: dict[str, Any]) -> CheckpointWeights | None:
    """The headers of a folder's checkpoint (a cached snapshot or a user's folder): the shards its index
    names, or model.safetensors; None unless every file is there."""
    files = checkpoint_files(folder)
    if not files or not all(f.is_file() for f in files):
        return None
    tensors = [t for f in files for t in read_header(f)]
    return summarise(tensors, quantization_config(raw), len(files))


def checkpoint_files(folder: Path) -> list[Path]:
    """The files transformers loads, as the hub's own metadata call picks them: the index's shards, else the
    single file (a Mistral `consolidated.safetensors` beside them is the same weights again)."""
    index = folder / INDEX_FILE
    if index.is_file():
        try:
            weight_map = json.loads(read_regular_file(index, MAX_CONFIG_BYTES)).get("weight_map", {})
        except (OSError, ValueError, AttributeError) as err:
            raise UserError(f"{index}: not a readable safetensors index ({err})") from None
        return [folder / name for name in sorted(set(weight_map.values()))]
    return [folder / SINGLE_FILE] if (folder / SINGLE_FILE).exists() else []


def read_header(path: Path) -> list[Tensor]:
    """A local safetensors file's tensors from its header: the first 8 bytes, then that many bytes of JSON."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(8)
            length = int.from_bytes(head, "little") if len(head) == 8 else 0
            prefix = head + handle.read(min(length, MAX_HEADER_BYTES))
    except OSError as err:
        raise UserError(f"{path}: cannot read its safetensors header ({err.strerror})") from None
    _, header = parse_header(prefix, str(path))
    return tensors_of(header, str(path))
