"""A real GGUF file for llama.cpp: a local path, or one file of a hub repository at a pinned commit.

`--gguf owner/repo:file.gguf@<40-hex commit>` downloads exactly that file (a branch name would
let the bytes change under the same record), checks the disk first, and holds the download to
the sha256 the hub publishes for it. A local path is taken as it is. Either way the parent reads
the file's header before any run: a file that is not GGUF, or whose shapes are not the registry
model's (another model, or another size of it), is one line and exit 2, not a run that measures
the wrong thing. The record carries the source, the revision, the byte count and the sha256.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from bench.config.hfconfig import TextConfig
from bench.errors import UserError

HUB_SOURCE = re.compile(r"^(?P<repo>[\w.-]+/[\w.-]+):(?P<file>[^@]+\.gguf)@(?P<revision>[0-9a-f]{40})$")
_HASH_CHUNK = 1 << 24


@dataclass(frozen=True)
class GgufFile:
    """Where the file came from and what it is: recorded with the run."""

    path: str
    source: str  # "local" or "hub"
    repo: str | None
    file: str
    revision: str | None
    sha256: str
    bytes: int
    architecture: str
    quant: str | None  # general.file_type as bench names it (q4_k_m, ...)
    shape: dict[str, int | None]  # layers, hidden size and vocabulary, as the header gives them

    def to_dict(self) -> dict:
        return asdict(self)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def resolve(source: str, cfg: TextConfig, model_id: str, quant: str) -> GgufFile:
    """Fetch (hub) or find (local) the file, hold its header to the model and quant it is run as, then
    hash it: a wrong file is refused before its gigabytes are read."""
    match = HUB_SOURCE.match(source)
    if match:
        from bench.weights import hub

        path, expected = hub.download_file(match["repo"], match["file"], match["revision"])
        origin, repo, name, revision = "hub", match["repo"], match["file"], match["revision"]
    else:
        if "@" in source and ":" in source and not Path(source).exists():
            raise UserError(f"--gguf {source}: a hub file is owner/repo:file.gguf@<40-hex commit> "
                            "(a branch or tag would not pin the bytes)")
        path, expected = Path(source).expanduser(), None
        if not path.is_file():
            raise UserError(f"--gguf {source}: no such file")
        origin, repo, name, revision = "local", None, path.name, None
    architecture, file_quant, shape = _header(path)
    if file_quant != quant:
        raise UserError(f"{name} is {file_quant}, not {quant}: pass --quant {file_quant}")
    _check_shape(name, shape, cfg, model_id)
    digest = sha256_of(path)
    if expected is not None and digest != expected:
        raise UserError(f"{repo}:{name}@{revision[:12]}: the downloaded file's sha256 {digest[:16]}... is not the "
                        f"hub's {expected[:16]}...; delete it from the hub cache and run again")
    return GgufFile(str(path), origin, repo, name, revision, digest, path.stat().st_size, architecture, file_quant,
                    shape)


def _check_shape(name: str, shape: dict[str, int | None], cfg: TextConfig, model_id: str) -> None:
    """The file must be the model it is run as: same depth, width and vocabulary."""
    wanted = {"layers": cfg.num_hidden_layers, "hidden size": cfg.hidden_size, "vocabulary": cfg.vocab_size}
    wrong = [f"{key} {shape[key]} (not {wanted[key]})" for key in wanted
             if shape[key] is not None and shape[key] != wanted[key]]
    if wrong:
        raise UserError(f"{name} is not {model_id}: its {', '.join(wrong)}")


def _header(path: Path) -> tuple[str, str | None, dict[str, int | None]]:
    """Architecture, quant and shape, from one read of the header."""
    import gguf

    from bench.weights.synthetic_gguf import reader_file_type

    try:
        reader = gguf.GGUFReader(path)
        arch = str(_field(reader, gguf.Keys.General.ARCHITECTURE))
        layers, hidden = _field(reader, f"{arch}.block_count"), _field(reader, f"{arch}.embedding_length")
        tokens = reader.get_field(gguf.Keys.Tokenizer.LIST)
        shape = {"layers": None if layers is None else int(layers), "hidden size": None if hidden is None else
                 int(hidden), "vocabulary": len(tokens.data) if tokens is not None else None}
        return arch, reader_file_type(reader), shape
    except (ValueError, KeyError, IndexError, OSError) as err:
        raise UserError(f"{path.name} is not a readable GGUF file ({type(err).__name__}: {err})") from None


def _field(reader, key: str):
    field = reader.get_field(key)
    return None if field is None else field.contents()
