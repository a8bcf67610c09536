"""Weights from the Hugging Face hub: pinned revision, safetensors only, token from the environment.

A branch or tag is resolved to its commit first and the download is made at that
commit, so the record names exactly what ran. Only safetensors, JSON configs and
tokenizer files are fetched (never pickled `.bin` weights). Downloads resume, show
a progress bar, and go to the standard hub cache (`HF_HOME`). The token is read by
huggingface_hub from `HF_TOKEN` and never passed through bench's own records.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bench.errors import UserError

ALLOW_PATTERNS = ["*.safetensors", "*.safetensors.index.json", "*.json", "tokenizer*", "*.model", "*.tiktoken",
                  "*.jinja"]


@dataclass(frozen=True)
class Checkout:
    path: Path
    repo: str
    revision: str  # what the registry asked for
    commit: str  # what was downloaded


def resolve_commit(repo: str, revision: str) -> str:
    from huggingface_hub import HfApi

    return _hub_call(repo, revision, lambda: HfApi().model_info(repo, revision=revision).sha)


def download(repo: str, revision: str) -> Checkout:
    """Fetch (or reuse from the cache) the checkout at `revision`, resolved to its commit.

    With `HF_HUB_OFFLINE=1` a cached snapshot is used as is; its folder name is the commit.
    """
    from huggingface_hub import constants, snapshot_download

    if constants.HF_HUB_OFFLINE:
        path = Path(_hub_call(repo, revision, lambda: snapshot_download(repo, revision=revision,
                                                                         allow_patterns=ALLOW_PATTERNS)))
        commit = path.name
    else:
        commit = resolve_commit(repo, revision)
        path = Path(_hub_call(repo, revision, lambda: snapshot_download(repo, revision=commit,
                                                                         allow_patterns=ALLOW_PATTERNS)))
    if not any(path.glob("*.safetensors")):
        raise UserError(f"{repo}@{commit[:12]} has no safetensors weights; bench does not load pickled weights")
    return Checkout(path, repo, revision, commit)


def _hub_call(repo: str, revision: str, call):
    """Run a hub call; turn the hub's failures into one line a user can act on."""
    from huggingface_hub.errors import (GatedRepoError, LocalEntryNotFoundError, RepositoryNotFoundError,
                                        RevisionNotFoundError)

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
    except Exception as err:
        if not _is_network_error(err):
            raise
        raise UserError(f"{repo}: the hub is unreachable ({type(err).__name__}: {err})") from None


def _is_network_error(err: Exception) -> bool:
    """Connection failures come as OSError (requests) or httpx transport errors, by library version."""
    names = {cls.__name__ for cls in type(err).__mro__}
    return isinstance(err, OSError) or bool(names & {"TransportError", "ConnectError", "TimeoutException"})
