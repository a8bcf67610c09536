"""Models named by Hub id (ORG/NAME[@REVISION]) in every command, and a checkpoint's exact weights from its
safetensors headers.

The hub is never reached: the real huggingface_hub client talks either to the standard cache layout with
HF_HUB_OFFLINE=1, or to a loopback server that answers its requests (tests/helpers/hub_server.py). The
checkpoints are real safetensors files written by the `safetensors` package.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.errors import UserError
from bench.estimate.checkpoint import parse_header, summarise, tensors_of
from bench.weights.hub_model import checkpoint_files, local_checkpoint, parse_hub_id, read_header
from tests.helpers.hub_server import FakeRepo, HubServer
from tests.helpers.imports import HEAVY, PROBE
from tests.helpers.paths import ROOT

COMMIT = "0123456789abcdef0123456789abcdef01234567"
OTHER_COMMIT = "89abcdef0123456789abcdef0123456789abcdef"


# ---------------------------------------------------------------- real safetensors files, read header by header

def _save(path: Path, tensors: dict, metadata: dict | None = None) -> Path:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata=metadata)
    return path


def _tensor_bytes(path: Path) -> int:
    """What the file holds past its header: the bytes of its tensors."""
    length = int.from_bytes(path.read_bytes()[:8], "little")
    return path.stat().st_size - 8 - length


def test_header_of_a_real_file_matches_safetensors_own_reader(tmp_path):
    import torch
    from safetensors import safe_open

    path = _save(tmp_path / "model.safetensors", {
        "embed.weight": torch.zeros(10, 4, dtype=torch.bfloat16), "norm.weight": torch.ones(4, dtype=torch.float32),
        "proj.weight": torch.zeros(3, 4, dtype=torch.float16)})
    tensors = {t.name: t for t in read_header(path)}
    with safe_open(str(path), "pt") as f:
        assert set(tensors) == set(f.keys())
        for name in f.keys():
            assert tensors[name].shape == tuple(f.get_slice(name).get_shape())
    summary = summarise(tensors.values())
    assert summary.total_bytes == _tensor_bytes(path) == 10 * 4 * 2 + 4 * 4 + 3 * 4 * 2
    assert {d: (s.tensors, s.elements, s.bytes) for d, s in summary.by_dtype.items()} == {
        "BF16": (1, 40, 80), "F32": (1, 4, 16), "F16": (1, 12, 24)}
    assert summary.format == "bf16" and summary.logical_params == 56 and summary.quant == "bf16"


def test_fp8_checkpoint_leaves_its_scales_out_of_the_count(tmp_path):
    import torch

    path = _save(tmp_path / "model.safetensors", {
        "layer.q_proj.weight": torch.zeros(8, 16).to(torch.float8_e4m3fn),
        "layer.q_proj.weight_scale_inv": torch.ones(1, 1), "layer.q_proj.input_scale": torch.ones(1),
        "embed.weight": torch.zeros(32, 16, dtype=torch.bfloat16)})
    summary = summarise(read_header(path))
    assert summary.format == "fp8" and summary.quant == "fp8"
    assert summary.logical_params == 8 * 16 + 32 * 16  # the two scales are not parameters
    assert summary.by_dtype["F8_E4M3"].bytes == 128 and summary.total_bytes == _tensor_bytes(path)


@pytest.mark.parametrize("method", ["awq", "gptq"])
def test_packed_int4_counts_eight_weights_per_int32(tmp_path, method):
    import torch

    in_f, out_f, group = 256, 64, 128
    tensors = {"mlp.down_proj.qweight": torch.zeros(in_f, out_f // 8, dtype=torch.int32),
               "mlp.down_proj.qzeros": torch.zeros(in_f // group, out_f // 8, dtype=torch.int32),
               "mlp.down_proj.scales": torch.zeros(in_f // group, out_f, dtype=torch.float16)}
    if method == "gptq":
        tensors["mlp.down_proj.g_idx"] = torch.zeros(in_f, dtype=torch.int32)
    summary = summarise(read_header(_save(tmp_path / "model.safetensors", tensors)))
    assert summary.format == method and summary.quant == "int4"
    assert summary.logical_params == in_f * out_f
    assert summary.packing == {"I32": 8}
    # with the config's own word, the same tensors read as what it says
    assert summarise(read_header(tmp_path / "model.safetensors"), {"quant_method": "awq", "bits": 4}).format == "awq"


def test_mxfp4_blocks_hold_two_weights_per_byte(tmp_path):
    """gpt-oss's layout (transformers integrations/mxfp4.py, Mxfp4GptOssExperts): `gate_up_proj` blocks are
    U8 [experts, 2 x intermediate, hidden / 32, 16], 32 FP4 values in 16 bytes, with one U8 scale per block."""
    import torch

    experts, rows, groups = 4, 8, 3
    path = _save(tmp_path / "model.safetensors", {
        "mlp.experts.gate_up_proj_blocks": torch.zeros(experts, rows, groups, 16, dtype=torch.uint8),
        "mlp.experts.gate_up_proj_scales": torch.zeros(experts, rows, groups, dtype=torch.uint8),
        "mlp.router.weight": torch.zeros(experts, 32, dtype=torch.bfloat16)})
    summary = summarise(read_header(path), {"quant_method": "mxfp4"})
    assert summary.format == "mxfp4" and summary.quant is None
    assert summary.logical_params == experts * rows * groups * 32 + experts * 32


def test_bitsandbytes_4bit_unpacks_two_codes_per_byte(tmp_path):
    import torch

    path = _save(tmp_path / "model.safetensors", {
        "q_proj.weight": torch.zeros(64 * 32 // 2, 1, dtype=torch.uint8),
        "q_proj.weight.absmax": torch.zeros(32, dtype=torch.float32),
        "q_proj.weight.quant_map": torch.zeros(16, dtype=torch.float32),
        "q_proj.weight.quant_state.bitsandbytes__nf4": torch.zeros(90, dtype=torch.uint8)})
    summary = summarise(read_header(path))
    assert summary.format == "bnb-nf4" and summary.quant == "nf4"
    assert summary.logical_params == 64 * 32


def test_sharded_folder_reads_the_index_shards_not_a_consolidated_copy(tmp_path):
    import torch

    _save(tmp_path / "model-00001-of-00002.safetensors", {"a.weight": torch.zeros(4, 4, dtype=torch.bfloat16)})
    _save(tmp_path / "model-00002-of-00002.safetensors", {"b.weight": torch.zeros(2, 4, dtype=torch.bfloat16)})
    _save(tmp_path / "consolidated.safetensors", {"a": torch.zeros(4, 4), "b": torch.zeros(2, 4)})
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {
        "a.weight": "model-00001-of-00002.safetensors", "b.weight": "model-00002-of-00002.safetensors"}}))
    assert [p.name for p in checkpoint_files(tmp_path)] == ["model-00001-of-00002.safetensors",
                                                            "model-00002-of-00002.safetensors"]
    summary = local_checkpoint(tmp_path, {})
    assert summary.files == 2 and summary.logical_params == 24 and summary.total_bytes == 48
    (tmp_path / "model-00002-of-00002.safetensors").unlink()
    assert local_checkpoint(tmp_path, {}) is None  # a shard missing: not a whole checkpoint


@pytest.mark.parametrize("data, words", [
    (b"\x01\x02", "shorter than"), ((10**12).to_bytes(8, "little"), "header length"),
    ((50).to_bytes(8, "little") + b"{}", "cut short"), ((4).to_bytes(8, "little") + b"nope", "not JSON")])
def test_bad_headers_are_one_line_errors(data, words):
    with pytest.raises(UserError, match=words):
        parse_header(data, "x.safetensors")


# ---------------------------------------------------------------- names

@pytest.mark.parametrize("name, expected", [
    ("Qwen/Qwen3-8B", ("Qwen/Qwen3-8B", "main")), ("org/name@v1.0", ("org/name", "v1.0")),
    (f"org/name@{COMMIT}", ("org/name", COMMIT)), ("tiny-llama", None), ("a/b/c", None), ("/abs/path", None)])
def test_hub_id_spelling(name, expected):
    assert parse_hub_id(name) == expected


def test_a_registry_repo_names_its_entry_case_insensitively(registry):
    assert registry.model("MISTRALAI/mistral-small-24b-instruct-2501").id == "mistral-3-small"
    assert registry.find_model("Qwen/Qwen3-8B").id == "qwen3-8b"


def test_unknown_name_says_how_to_name_a_hub_model(run_bench):
    proc = run_bench("plan", "not-a-model-at-all")
    assert proc.returncode == 2 and proc.stdout == ""
    (line,) = proc.stderr.strip().splitlines()
    assert "ORG/NAME[@REVISION]" in line and "--config PATH" in line
    proc = run_bench("run", "mistral-3-smal", "--device", "cpu")
    (line,) = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and "did you mean: mistral-3-small" in line and "ORG/NAME[@REVISION]" in line
    assert "--config" not in line  # only plan takes a config.json
    assert line.count(",") <= 4  # the closest ids, never the whole registry


# ---------------------------------------------------------------- checkpoints as a hub repository holds them

@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """tiny-llama as a repository's files: config.json, model.safetensors, tokenizer."""
    from bench.config.registry import load_registry
    from bench.weights import synthetic_hf

    built = synthetic_hf.build(load_registry(ROOT / "configs").model("tiny-llama"), with_weights=True)
    return {p.name: p.read_bytes() for p in Path(built).iterdir() if p.is_file()}


def _fp8_files(tiny: dict[str, bytes], tmp: Path) -> dict[str, bytes]:
    """tiny-llama with its linear layers stored as FP8 e4m3 and one scale each, as FP8 repositories ship."""
    import torch
    from safetensors.torch import load, save_file

    tensors = {}
    for name, t in load(tiny["model.safetensors"]).items():
        if name.endswith("_proj.weight"):
            tensors[name] = t.to(torch.float8_e4m3fn)
            tensors[name + "_scale_inv"] = torch.ones(1, dtype=torch.float32)
        else:
            tensors[name] = t
    save_file(tensors, str(tmp / "fp8.safetensors"))
    config = json.loads(tiny["config.json"])
    config["quantization_config"] = {"quant_method": "fp8", "weight_block_size": None}
    return {**tiny, "config.json": json.dumps(config).encode(),
            "model.safetensors": (tmp / "fp8.safetensors").read_bytes()}


def _with_extra_tensor(tiny: dict[str, bytes], tmp: Path) -> dict[str, bytes]:
    import torch
    from safetensors.torch import load, save_file

    tensors = {**load(tiny["model.safetensors"]), "model.extra_head.weight": torch.zeros(7, 3, dtype=torch.bfloat16)}
    save_file(tensors, str(tmp / "extra.safetensors"))
    return {**tiny, "model.safetensors": (tmp / "extra.safetensors").read_bytes()}


def _header_tensor_bytes(data: bytes) -> int:
    return len(data) - 8 - int.from_bytes(data[:8], "little")


def _cache(root: Path, repo: str, files: dict[str, bytes], commit: str = COMMIT) -> None:
    """The standard hub cache layout: blobs by hash, a snapshot of links per commit, refs/main."""
    folder = root / f"models--{repo.replace('/', '--')}"
    (folder / "blobs").mkdir(parents=True, exist_ok=True)
    (folder / "snapshots" / commit).mkdir(parents=True)
    (folder / "refs").mkdir(exist_ok=True)
    for name, data in files.items():
        blob = hashlib.sha256(data).hexdigest()
        (folder / "blobs" / blob).write_bytes(data)
        (folder / "snapshots" / commit / name).symlink_to(Path("..", "..", "blobs", blob))
    (folder / "refs" / "main").write_text(commit)


def _offline(tmp_path: Path) -> dict[str, str]:
    return {"HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"}


def _plan_json(run_bench, name: str, env: dict[str, str], *args: str) -> dict:
    proc = run_bench("plan", name, "--json", *args, env=env)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_plan_from_the_offline_cache(run_bench, tiny, tmp_path):
    files = {k: tiny[k] for k in ("config.json", "model.safetensors")}
    _cache(tmp_path / "hub", "org/tiny", files)
    plan = _plan_json(run_bench, "org/tiny", _offline(tmp_path), "--gpu", "4090")
    assert plan["model"] == "org/tiny"
    assert plan["source"]["commit"] == COMMIT and plan["source"]["revision"] == "main"
    assert plan["source"]["license"] == "unknown"  # offline: no model card was read
    real = _header_tensor_bytes(tiny["model.safetensors"])
    assert plan["checkpoint"]["total_bytes"] == real and plan["memory"]["weights_bytes"] == real
    assert plan["checkpoint"]["weights_from_checkpoint"] is True
    assert plan["params_check"]["matches"] is True
    assert plan["params_check"]["checkpoint"] == plan["params"]["total"]
    # pinned by commit, the same snapshot; another quant is the architecture's arithmetic
    pinned = _plan_json(run_bench, f"org/tiny@{COMMIT}", _offline(tmp_path), "--quant", "nf4")
    assert pinned["source"]["commit"] == COMMIT and pinned["checkpoint"]["weights_from_checkpoint"] is False
    assert pinned["memory"]["weights_bytes"] < real


def test_offline_without_the_repo_in_the_cache_is_one_line(run_bench, tmp_path):
    proc = run_bench("plan", "org/absent", env=_offline(tmp_path))
    assert proc.returncode == 2 and proc.stdout == ""
    (line,) = proc.stderr.strip().splitlines()
    assert "org/absent@main" in line and "not in the local hub cache" in line


def test_checkpoint_and_architecture_disagreeing_is_a_note(run_bench, tiny, tmp_path):
    files = _with_extra_tensor({k: tiny[k] for k in ("config.json", "model.safetensors")}, tmp_path)
    _cache(tmp_path / "hub", "org/extra", files)
    plan = _plan_json(run_bench, "org/extra", _offline(tmp_path))
    check = plan["params_check"]
    assert check["matches"] is False and check["difference"] == 21
    assert check["checkpoint"] == check["architecture"] + 21 == plan["params"]["total"] + 21
    assert any("parameter counts disagree" in n and "+21" in n for n in plan["notes"])


def test_fp8_checkpoint_plans_its_real_bytes_first(run_bench, tiny, tmp_path):
    files = _fp8_files({k: tiny[k] for k in ("config.json", "model.safetensors")}, tmp_path)
    _cache(tmp_path / "hub", "org/tiny-fp8", files)
    plan = _plan_json(run_bench, "org/tiny-fp8", _offline(tmp_path))
    assert plan["quant"] == "fp8" and plan["checkpoint"]["format"] == "fp8"
    assert plan["memory"]["weights_bytes"] == _header_tensor_bytes(files["model.safetensors"])
    assert plan["params_check"]["matches"] is True  # the scales are not parameters
    assert plan["checkpoint"]["by_dtype"]["F8_E4M3"]["elements"] == plan["params"]["by_part"]["attention"] + \
        plan["params"]["by_part"]["dense_mlp"]

    on_h100 = _plan_json(run_bench, "org/tiny-fp8", _offline(tmp_path), "--gpu", "h100", "--context", "64",
                         "--batch", "1")
    _, header = parse_header(files["model.safetensors"], "fp8")
    embedding = sum(t.nbytes for t in tensors_of(header, "fp8") if "embed_tokens." in t.name)
    read = on_h100["memory"]["weights_bytes"] - embedding + on_h100["memory"]["kv_cache_bytes"]  # untied
    assert on_h100["roofline"]["decode_tokens_per_s"] == pytest.approx(3350e9 / read, rel=1e-12)
    assert any("the roofline reads its bytes too" in n for n in on_h100["notes"])


def test_a_decode_step_reads_a_checkpoints_experts_at_their_share_and_no_vision(registry):
    """With the weights held as stored, the roofline reads the checkpoint's bytes: the routed experts at the
    share a token visits (2 of 4), shared experts, attention and lm_head whole, the embedding's one row and the
    vision tower not at all."""
    from bench.estimate.checkpoint import Tensor
    from bench.estimate.memory import kv_cache_bytes
    from bench.estimate.params import count_params
    from bench.estimate.quant import weight_format
    from bench.estimate.roofline import decode_bytes_per_step

    sizes = {"model.embed_tokens.weight": 1000, "model.layers.0.block_sparse_moe.experts.0.w1.weight": 500,
             "model.layers.0.mlp.experts.gate_up_proj_blocks": 300, "model.layers.0.self_attn.q_proj.weight": 300,
             "model.layers.0.mlp.shared_experts.gate_proj.weight": 200, "lm_head.weight": 1000,
             "vision_tower.patch_conv.weight": 400, "multi_modal_projector.linear_1.weight": 100}
    summary = summarise(Tensor(name, "BF16", (n // 2,), n) for name, n in sizes.items())
    assert (summary.expert_bytes, summary.embedding_bytes, summary.vision_bytes) == (800, 1000, 500)
    cfg = registry.model("tiny-mixtral").architecture  # 2 of 4 experts per token, untied embeddings
    read = decode_bytes_per_step(cfg, count_params(cfg), weight_format("bf16"), 64, 1, stored=summary)
    assert read == 300 + 200 + 1000 + 800 * 2 / 4 + kv_cache_bytes(cfg, 64, 1)


# ---------------------------------------------------------------- through a loopback hub

@pytest.fixture
def hub(tiny, tmp_path):
    core = {k: tiny[k] for k in ("config.json", "model.safetensors")}
    repos = {
        "org/tiny": FakeRepo(COMMIT, dict(tiny), branches={"v1": OTHER_COMMIT}),
        "org/gated": FakeRepo(COMMIT, core, gated_token="hf_test_secret_token"),
        "org/no-config": FakeRepo(COMMIT, {"model.safetensors": tiny["model.safetensors"]}),
        "org/no-weights": FakeRepo(COMMIT, {"config.json": tiny["config.json"]}),
    }
    with HubServer(repos) as server:
        yield server


def _online(hub: HubServer, tmp_path: Path) -> dict[str, str]:
    return {"HF_ENDPOINT": hub.endpoint, "HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HOME": str(tmp_path / "hf"),
            "HF_HUB_OFFLINE": "0", "HF_HUB_DISABLE_TELEMETRY": "1", "HF_TOKEN": ""}


def test_plan_a_hub_id_end_to_end(run_bench, hub, tiny, tmp_path):
    env = _online(hub, tmp_path)
    proc = run_bench("plan", "org/tiny", env=env)
    assert proc.returncode == 0, proc.stderr
    real = _header_tensor_bytes(tiny["model.safetensors"])
    assert f"config: org/tiny@{COMMIT} (asked main, license apache-2.0)" in proc.stdout
    assert f"checkpoint: bf16, {real:,} bytes in 1 safetensors file(s)" in proc.stdout
    assert f"weights_bytes is the checkpoint's own: {real:,} bytes" in proc.stdout
    # the weights were never downloaded: only the header's first bytes were asked for
    assert hub.bytes_sent("model.safetensors") == ["bytes=0-100000"]
    plan = _plan_json(run_bench, "org/tiny", env)
    assert plan["memory"]["weights_bytes"] == real and plan["source"]["commit"] == COMMIT


def test_a_branch_resolves_to_its_commit(run_bench, hub, tmp_path):
    plan = _plan_json(run_bench, "org/tiny@v1", _online(hub, tmp_path))
    assert plan["source"] == {"repo": "org/tiny", "revision": "v1", "commit": OTHER_COMMIT, "license": "apache-2.0"}


@pytest.mark.parametrize("name, words", [
    ("org/tiny@no-such-branch", "org/tiny has no revision 'no-such-branch'"),
    ("org/nobody", "org/nobody not found on the hub"),
    ("org/gated", "org/gated is gated: accept its license on huggingface.co and set HF_TOKEN"),
    ("org/no-config", "has no config.json"),
])
def test_hub_failures_are_one_line(run_bench, hub, tmp_path, name, words):
    proc = run_bench("plan", name, env=_online(hub, tmp_path))
    assert proc.returncode == 2 and proc.stdout == ""
    (line,) = proc.stderr.strip().splitlines()
    assert words in line


def test_a_gated_repo_opens_with_the_token_which_is_never_shown(run_bench, hub, tmp_path):
    env = {**_online(hub, tmp_path), "HF_TOKEN": "hf_test_secret_token"}
    proc = run_bench("plan", "org/gated", "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["source"]["commit"] == COMMIT
    assert "hf_test_secret_token" not in proc.stdout + proc.stderr
    assert all(r.authorization for r in hub.requests)


def test_without_safetensors_plan_says_so_and_run_refuses(run_bench, hub, tmp_path):
    env = _online(hub, tmp_path)
    plan = _plan_json(run_bench, "org/no-weights", env)
    assert plan["checkpoint"] is None and plan["params_check"] is None
    assert any("no safetensors headers" in n and "architecture's arithmetic" in n for n in plan["notes"])
    proc = run_bench("run", "org/no-weights", "--device", "cpu", "--backend", "transformers",
                     "--results-dir", str(tmp_path / "results"), env=env)
    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()
    assert "has no safetensors weights" in line
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize("command", [["finetune", "org/no-weights", "--recipe", "lora-sft"],
                                     ["eval", "org/no-weights", "--tasks", "smoke"],
                                     ["serve", "org/no-weights"]])
def test_every_command_resolves_hub_ids_the_same_way(run_bench, hub, tmp_path, command):
    proc = run_bench(*command, "--device", "cpu", "--results-dir", str(tmp_path / "results"),
                     env=_online(hub, tmp_path))
    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()
    assert f"org/no-weights@{COMMIT[:12]} has no safetensors weights" in line


def test_an_unreachable_hub_falls_back_to_the_cache(run_bench, hub, tmp_path):
    env = _online(hub, tmp_path)
    assert run_bench("plan", "org/tiny", env=env).returncode == 0  # fills the cache (config and refs)
    _cache_weights = hub.bytes_sent("model.safetensors")
    unreachable = {**env, "HF_ENDPOINT": "http://127.0.0.1:9"}  # nothing listens on the discard port
    plan = _plan_json(run_bench, "org/tiny", unreachable)
    assert plan["source"]["commit"] == COMMIT and plan["source"]["license"] == "unknown"
    assert plan["checkpoint"] is None  # the weights were never cached, and the hub cannot be asked
    assert any("no safetensors headers" in n for n in plan["notes"])
    assert hub.bytes_sent("model.safetensors") == _cache_weights


def test_plan_with_a_hub_id_imports_no_engine(hub, tmp_path):
    import os

    probe = PROBE.format(heavy=set(HEAVY))
    proc = subprocess.run([sys.executable, "-c", probe, json.dumps(["plan", "org/tiny", "--gpu", "4090"])],
                          capture_output=True, text=True, cwd=ROOT, timeout=120,
                          env={**os.environ, **_online(hub, tmp_path)})
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["code"] in (0, None), proc.stderr
    assert report["heavy"] == []


def test_run_a_hub_id_records_its_commit(run_bench, hub, tmp_path):
    from bench.records.store import iter_records

    proc = run_bench("run", "org/tiny", "--device", "cpu", "--backend", "transformers", "--iterations", "2",
                     "--min-duration", "0.1", "--batch", "2", "--prompt-len", "8", "--output-len", "4",
                     "--results-dir", str(tmp_path / "results"), env=_online(hub, tmp_path))
    assert proc.returncode == 0, proc.stderr
    (record,) = list(iter_records(tmp_path / "results"))
    assert record.status == "ok" and record.model.id == "org/tiny" and record.model.repo == "org/tiny"
    assert record.model.resolved_revision == COMMIT and record.model.path.endswith(COMMIT)


def test_a_download_is_weighed_by_the_files_it_fetches():
    """The free-disk check sums the listed files `snapshot_download` would pick: safetensors, configs and
    tokenizer, not pickled weights nor a consolidated copy beside the shards."""
    from bench.weights.hub import download_size, duplicate_weights

    sizes = {"config.json": 700, "tokenizer.json": 9_000, "model-00001-of-00002.safetensors": 5 * 10**9,
             "model-00002-of-00002.safetensors": 4 * 10**9, "model.safetensors.index.json": 30_000,
             "consolidated.safetensors": 9 * 10**9, "pytorch_model.bin": 9 * 10**9, "README.md": 4_000}
    assert download_size(sizes, duplicate_weights(list(sizes))) == 9 * 10**9 + 39_700


def test_a_download_the_disk_cannot_hold_is_refused_before_any_weight_byte(run_bench, tiny, tmp_path):
    huge = FakeRepo(COMMIT, dict(tiny), listed_sizes={"model.safetensors": 10**18})  # an exabyte, by its listing
    with HubServer({"org/huge": huge}) as server:
        proc = run_bench("run", "org/huge", "--device", "cpu", "--backend", "transformers",
                         "--results-dir", str(tmp_path / "results"), env=_online(server, tmp_path))
        fetched = server.bytes_sent("model.safetensors")
    assert proc.returncode == 2 and "the download needs 1050000000.0 GB" in proc.stderr, proc.stderr
    assert fetched == [] or all(r is not None for r in fetched)  # at most the header's range reads


def test_a_local_folder_plans_with_its_checkpoint(run_bench, tiny, tmp_path):
    folder = tmp_path / "my-model"
    folder.mkdir()
    for name in ("config.json", "model.safetensors"):
        (folder / name).write_bytes(tiny[name])
    plan = _plan_json(run_bench, str(folder), {})
    assert plan["model"] == "my-model" and plan["source"] == {"path": str(folder)}
    assert plan["memory"]["weights_bytes"] == _header_tensor_bytes(tiny["model.safetensors"])


# ---------------------------------------------------------------- an architecture bench has no arithmetic for

STARCODER2 = {"model_type": "starcoder2", "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
              "num_key_value_heads": 2, "intermediate_size": 128, "vocab_size": 1000,
              "max_position_embeddings": 2048, "tie_word_embeddings": True}


def _transformers_count(config: dict) -> int:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.for_model(**config))
    return sum(p.numel() for p in model.parameters())


def test_an_unknown_family_is_counted_by_transformers_on_the_meta_device(run_bench, tmp_path):
    from bench.config.hfconfig import SUPPORTED_MODEL_TYPES

    assert "starcoder2" not in SUPPORTED_MODEL_TYPES  # the fallback, not bench's arithmetic, is what is tested
    (tmp_path / "sc2").mkdir()
    (tmp_path / "sc2" / "config.json").write_text(json.dumps(STARCODER2))
    plan = _plan_json(run_bench, str(tmp_path / "sc2"), {}, "--gpu", "4090")
    assert plan["params"]["total"] == _transformers_count(STARCODER2)
    assert plan["params_counted_by"] == "counted by transformers on the meta device"
    # KV from the standard fields: 2 (K, V) x layers x KV heads x head dim (64 / 4) x 2 bytes
    assert plan["memory"]["kv_bytes_per_token"] == 2 * 2 * 2 * 16 * 2
    assert any("counted by transformers on the meta device" in n for n in plan["notes"])
    rows = {r["engine"]: r for r in plan["fits_by_engine"]}
    assert rows["llama.cpp"]["considered"] == []  # no GGUF arithmetic for a family bench does not know
    assert rows["vllm"]["quant"] == "bf16"


def test_a_config_file_of_an_unknown_family_is_counted_the_same_way(run_bench, tmp_path):
    """`bench plan --config FILE` takes the path a folder or Hub id takes for a family bench does not know."""
    (tmp_path / "config.json").write_text(json.dumps(STARCODER2))
    proc = run_bench("plan", "--config", str(tmp_path / "config.json"), "--json")
    assert proc.returncode == 0, proc.stderr
    plan = json.loads(proc.stdout)
    assert plan["params"]["total"] == _transformers_count(STARCODER2)
    assert plan["params_counted_by"] == "counted by transformers on the meta device"


@pytest.mark.parametrize("change, words", [
    ({"intermediate_size": None}, "lacks intermediate_size"),
    ({"model_type": "no-such-family"}, "transformers cannot build it"),
])
def test_an_unknown_family_without_what_the_plan_needs_is_one_line(run_bench, tmp_path, change, words):
    config = {k: v for k, v in {**STARCODER2, **change}.items() if v is not None}
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text(json.dumps(config))
    proc = run_bench("plan", str(tmp_path / "m"))
    assert proc.returncode == 2 and proc.stdout == ""
    (line,) = proc.stderr.strip().splitlines()
    assert words in line


def test_a_sharded_repo_is_read_shard_by_shard_through_the_hub(run_bench, tmp_path):
    import torch
    from safetensors.torch import save

    config = {**STARCODER2, "model_type": "llama", "tie_word_embeddings": False, "hidden_size": 32,
              "num_attention_heads": 2, "num_key_value_heads": 2, "intermediate_size": 64, "vocab_size": 100}
    from bench.config.hfconfig import from_hf_dict
    from bench.estimate.params import count_params

    total = count_params(from_hf_dict(config, "test")).total
    first = {"model.embed_tokens.weight": torch.zeros(100, 32, dtype=torch.bfloat16)}
    second = {"lm_head.weight": torch.zeros(100, 32, dtype=torch.bfloat16),
              "model.rest": torch.zeros(total - 2 * 100 * 32, dtype=torch.bfloat16)}
    shards = {"model-00001-of-00002.safetensors": save(first), "model-00002-of-00002.safetensors": save(second)}
    index = {"metadata": {}, "weight_map": {**dict.fromkeys(first, "model-00001-of-00002.safetensors"),
                                            **dict.fromkeys(second, "model-00002-of-00002.safetensors")}}
    files = {"config.json": json.dumps(config).encode(), "model.safetensors.index.json": json.dumps(index).encode(),
             "consolidated.safetensors": save({**first, **second}), **shards}
    with HubServer({"org/sharded": FakeRepo(COMMIT, files)}) as hub:
        plan = _plan_json(run_bench, "org/sharded", _online(hub, tmp_path))
        assert hub.bytes_sent("consolidated.safetensors") == []  # the same weights again: never read
    assert plan["checkpoint"]["files"] == 2 and plan["checkpoint"]["tensors"] == 3
    assert plan["memory"]["weights_bytes"] == sum(_header_tensor_bytes(d) for d in shards.values()) == 2 * total
    assert plan["params_check"] == {"checkpoint": total, "architecture": total, "difference": 0, "matches": True}


def test_a_registry_repo_with_a_revision_is_the_registry_model_at_that_revision(registry):
    from bench.weights.named_model import find_model

    found = find_model(registry, "mistralai/Mistral-Small-24B-Instruct-2501@refs/pr/7")
    assert found.hub is None and found.spec.id == "mistral-3-small" and found.spec.revision == "refs/pr/7"
    assert found.spec.variants == registry.model("mistral-3-small").variants


def test_an_unreachable_hub_with_nothing_cached_is_one_line(run_bench, tmp_path):
    env = {"HF_ENDPOINT": "http://127.0.0.1:9", "HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HOME": str(tmp_path / "hf"),
           "HF_HUB_OFFLINE": "0"}
    proc = run_bench("plan", "org/tiny", env=env)
    assert proc.returncode == 2 and proc.stdout == ""
    (line,) = proc.stderr.strip().splitlines()  # huggingface_hub's retry warnings are not shown
    assert line.startswith("error: org/tiny: the hub is unreachable")
