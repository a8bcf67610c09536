"""Weights from the Hugging Face hub: pinned revision, safetensors only, token from the environment.

A branch or tag is resolved to its commit first and the download is made at that
commit, so the record names exactly what ran. Only safetensors, JSON configs and
tokenizer files are fetched (never pickled `.bin` weights). Downloads resume, show
a progress bar, and go to the standard hub cache (`HF_HOME`). The token is read by
huggingface_hub from `HF_TOKEN` and never passed through bench's own records.
"""

from __future__ import annotations

import errno
import shutil
from dataclasses import dataclass
from pathlib import Path

from bench.errors import UserError

ALLOW_PATTERNS = ["*.safetensors", "*.safetensors.index.json", "*.json", "tokenizer*", "*.model", "*.tiktoken",
                  "*.jinja"]


class HubUnreachable(UserError):
    """The hub could not be reached (no network, or offline mode): a caller with a cache may fall back to it."""


@dataclass(frozen=True)
class Checkout:
    path: Path
    repo: str
    revision: str  # what the registry asked for
    commit: str  # what was downloaded


def offline() -> bool:
    """HF_HUB_OFFLINE: only the local cache is read, so nothing is downloaded."""
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def cache_dir() -> Path:
    """Where downloads go (HF_HUB_CACHE, else HF_HOME/hub)."""
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def cached_bytes(repo: str) -> int:
    """Bytes of `repo` already in the cache (its blobs, every revision): a resumed download skips them."""
    blobs = cache_dir() / f"models--{repo.replace('/', '--')}" / "blobs"
    return sum(f.stat().st_size for f in blobs.iterdir() if f.is_file()) if blobs.is_dir() else 0


def free_bytes() -> int:
    """Free space on the disk of the cache (its nearest existing parent when it does not exist yet)."""
    path = cache_dir()
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free


def resolve_commit(repo: str, revision: str) -> str:
    from huggingface_hub import HfApi

    return _hub_call(repo, revision, lambda: HfApi().model_info(repo, revision=revision).sha)


def download(repo: str, revision: str) -> Checkout:
    """Fetch (or reuse from the cache) the checkout at `revision`, resolved to its commit.

    With `HF_HUB_OFFLINE=1` a cached snapshot is used as is; its folder name is the commit. Otherwise the
    files are listed first, and a download the disk cannot hold is refused before any byte is fetched.
    """
    from huggingface_hub import constants, snapshot_download

    if constants.HF_HUB_OFFLINE:
        path = Path(_hub_call(repo, revision, lambda: snapshot_download(repo, revision=revision,
                                                                         allow_patterns=ALLOW_PATTERNS)))
        commit = path.name
    else:
        from huggingface_hub import HfApi

        commit = resolve_commit(repo, revision)
        sizes = _hub_call(repo, revision, lambda: {entry.path: entry.size for entry in HfApi().list_repo_tree(
            repo, revision=commit, recursive=True) if hasattr(entry, "size")})
        ignored = duplicate_weights(list(sizes))
        free_disk_needed(download_size(sizes, ignored) - cached_bytes(repo), free_bytes(), str(cache_dir()))
        path = Path(_hub_call(repo, revision, lambda: snapshot_download(
            repo, revision=commit, allow_patterns=ALLOW_PATTERNS, ignore_patterns=ignored)))
    if not any(path.glob("*.safetensors")):
        raise UserError(f"{repo}@{commit[:12]} has no safetensors weights; bench does not load pickled weights")
    return Checkout(path, repo, revision, commit)


def download_size(sizes: dict[str, int], ignored: list[str]) -> int:
    """Bytes the download fetches: the listed size of each file it picks, by the patterns and the matcher
    `snapshot_download` itself uses, so the free-disk check weighs the checkpoint's real files (an FP8 or
    AWQ repository's own bytes, its tokenizer and configs), not an estimate from the architecture."""
    from huggingface_hub.utils import filter_repo_objects

    return sum(sizes[name] for name in filter_repo_objects(list(sizes), allow_patterns=ALLOW_PATTERNS,
                                                            ignore_patterns=ignored))


def duplicate_weights(files: list[str]) -> list[str]:
    """Patterns of weight files that repeat weights the repository also ships in Hugging Face's layout.

    Mistral's repositories carry a `consolidated.safetensors` (their own inference format)
    beside the sharded `model-*.safetensors` the engines load: the same weights twice
    (94 GB instead of 47 for Mistral Small 3). Only where both are present is one left out.
    """
    weights = [f for f in files if f.endswith(".safetensors")]
    consolidated = [f for f in weights if Path(f).name.startswith("consolidated")]
    return ["consolidated*.safetensors"] if consolidated and len(consolidated) < len(weights) else []


def _hub_call(repo: str, revision: str, call):
    """Run a hub call; turn the hub's failures into one line a user can act on."""
    from huggingface_hub.errors import (
        GatedRepoError,
        LocalEntryNotFoundError,
        RemoteEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    try:
        return call()
    except GatedRepoError:
        raise UserError(f"{repo} is gated: accept its license on huggingface.co and set HF_TOKEN") from None
    except RepositoryNotFoundError:
        raise UserError(f"{repo} not found on the hub (or private: set HF_TOKEN)") from None
    except RevisionNotFoundError:
        raise UserError(f"{repo} has no revision {revision!r}") from None
    except LocalEntryNotFoundError:
        raise UserError(f"{repo}@{revision}: not in the local hub cache and the hub is not reachable "
                        "(offline mode or no network)") from None
    except RemoteEntryNotFoundError as err:
        url = getattr(getattr(err, "response", None), "url", "")
        raise UserError(f"{repo}@{revision}: the hub has no such file or listing ({url})") from None
    except Exception as err:
        if _is_disk_full(err):
            raise UserError(f"{repo}: the disk filled up while downloading into {cache_dir()} "
                            f"({free_bytes() / 1e9:.1f} GB free now): free space or set HF_HOME to a larger disk"
                            ) from None
        if not _is_network_error(err):
            raise
        raise HubUnreachable(f"{repo}: the hub is unreachable ({type(err).__name__}: {err})") from None


def _is_disk_full(err: BaseException) -> bool:
    """ENOSPC here or in the chain of causes (a full disk is an OSError, like a dropped connection)."""
    from bench.launch.failures import exception_chain

    return any(isinstance(e, OSError) and e.errno == errno.ENOSPC for e in exception_chain(err))


def _is_network_error(err: Exception) -> bool:
    """Connection failures come as OSError (requests) or httpx transport errors, by library version; an
    answer the hub gave (an HTTP error, itself an OSError in some versions) is not one."""
    names = {cls.__name__ for cls in type(err).__mro__}
    if "HfHubHTTPError" in names:
        return False
    return isinstance(err, OSError) or bool(names & {"TransportError", "ConnectError", "TimeoutException"})


def download_file(repo: str, name: str, revision: str) -> tuple[Path, str | None]:
    """One file of `repo` at the commit `revision` (a GGUF for llama.cpp), from the cache when it is
    there, with the sha256 the hub publishes for it (None offline: the caller hashes what it has).

    The disk is checked against the file's size first, as for a checkout."""
    from huggingface_hub import HfApi, hf_hub_download, try_to_load_from_cache

    from bench.weights.hub import free_disk_needed

    expected = None
    if not offline():
        infos = _hub_call(repo, revision, lambda: HfApi().get_paths_info(repo, [name], revision=revision))
        info = next(iter(infos), None)
        if info is None or not hasattr(info, "size"):
            raise UserError(f"{repo}@{revision[:12]} has no file {name}")
        expected = info.lfs.sha256 if info.lfs else None
        if not isinstance(try_to_load_from_cache(repo, name, revision=revision), str):
            free_disk_needed(info.size, free_bytes(), str(cache_dir()))
    path = _hub_call(repo, revision, lambda: hf_hub_download(repo, name, revision=revision))
    return Path(path), expected


def free_disk_needed(download_bytes: int, free_bytes: int, where: str) -> None:
    """Refuse a download that the disk cannot hold (with 5% slack for metadata and partial files)."""
    needed = int(download_bytes * 1.05)
    if needed > free_bytes:
        raise UserError(f"the download needs {needed / 1e9:.1f} GB and {where} has {free_bytes / 1e9:.1f} GB free: "
                        "free space or set HF_HOME to a larger disk")
