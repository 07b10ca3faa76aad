"""The built-in demo checkpoint: deterministic, loadable with transformers, and safe to create concurrently."""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import pathlib

import pytest

from spmd_infer.demo import DEMO_VERSION, demo_model_dir, demo_prompts_path


def _digests(folder: pathlib.Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> pathlib.Path:
    return demo_model_dir(str(tmp_path_factory.mktemp("cache_a")))


def test_layout_and_reuse(demo):
    assert demo.name == f"demo-llama-{DEMO_VERSION}"
    names = {p.name for p in demo.iterdir()}
    assert {".complete", "README.md", "config.json", "generation_config.json", "model.safetensors",
            "tokenizer.json", "tokenizer_config.json"} <= names
    assert "random" in (demo / "README.md").read_text().lower()
    # A complete folder is returned as is, not rebuilt.
    before = (demo / "model.safetensors").stat().st_mtime_ns
    assert demo_model_dir(str(demo.parent)) == demo
    assert (demo / "model.safetensors").stat().st_mtime_ns == before


def test_deterministic(demo, tmp_path):
    again = demo_model_dir(str(tmp_path))
    assert _digests(again) == _digests(demo)


def test_loads_with_transformers(demo):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(demo)
    model = AutoModelForCausalLM.from_pretrained(demo)
    cfg = model.config
    assert cfg.model_type == "llama" and model.dtype == torch.float32
    assert (cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads, cfg.num_key_value_heads) == (64, 2, 4, 2)
    assert not cfg.tie_word_embeddings
    assert cfg.vocab_size % 64 == 0 and cfg.vocab_size >= len(tok)
    assert (cfg.bos_token_id, cfg.eos_token_id, cfg.pad_token_id) == (
        tok.bos_token_id, tok.eos_token_id, tok.pad_token_id)

    ids = tok("The weather today is")["input_ids"]
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits
    assert logits.shape == (1, len(ids), cfg.vocab_size)
    assert torch.isfinite(logits).all()


def test_tokenizer(demo):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(demo)
    assert (tok.bos_token, tok.eos_token, tok.pad_token) == ("<|begin_of_text|>", "<|end_of_text|>", "<|pad|>")
    for text in ["Hello, world!", "What is the capital of France?", "  two spaces\tand a tab\nnew line",
                 "Symbols: {x: [1, 2.5e-3]} ~ @#$%^&*() zebra quixotic"]:
        ids = tok(text)["input_ids"]
        assert ids[0] == tok.bos_token_id and ids.count(tok.bos_token_id) == 1
        assert tok.decode(ids, skip_special_tokens=True) == text
    # The chat template carries its own BOS, so tokenizing it must not add a second.
    chat = [{"role": "user", "content": "Hi there"}]
    assert tok.apply_chat_template(chat, add_generation_prompt=True, tokenize=False) == (
        "<|begin_of_text|>user: Hi there\nassistant:")
    ids = tok.apply_chat_template(chat, add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"]
    assert ids.count(tok.bos_token_id) == 1 and ids[0] == tok.bos_token_id


def test_cache_root_from_env(tmp_path, monkeypatch):
    # A pre-made complete folder is found without building, which shows where each setting points.
    def complete(root: pathlib.Path) -> pathlib.Path:
        folder = root / f"demo-llama-{DEMO_VERSION}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / ".complete").write_text(DEMO_VERSION)
        return folder

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("SPMD_INFER_CACHE", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert demo_model_dir() == complete(tmp_path / "home" / ".cache" / "spmd_infer")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert demo_model_dir() == complete(tmp_path / "xdg" / "spmd_infer")
    monkeypatch.setenv("SPMD_INFER_CACHE", str(tmp_path / "explicit"))
    assert demo_model_dir() == complete(tmp_path / "explicit")


def _create(root: str, barrier, results) -> None:
    barrier.wait()  # line the processes up so their builds really overlap
    results.put(str(demo_model_dir(root)))


def test_concurrent_creation(demo, tmp_path):
    root = tmp_path / "shared"
    # Debris from an interrupted build by hand: a target without the marker must be replaced.
    (root / f"demo-llama-{DEMO_VERSION}").mkdir(parents=True)
    (root / f"demo-llama-{DEMO_VERSION}" / "junk").write_text("x")

    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(3), ctx.Queue()
    procs = [ctx.Process(target=_create, args=(str(root), barrier, results)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    paths = {results.get(timeout=5) for _ in procs}
    target = root / f"demo-llama-{DEMO_VERSION}"
    assert paths == {str(target)}
    assert [p.name for p in root.iterdir()] == [target.name]  # no temp or stale folders left
    assert _digests(target) == _digests(demo)


def test_sample_prompts(demo):
    from transformers import AutoTokenizer

    vocab = len(AutoTokenizer.from_pretrained(demo))
    rows = [json.loads(line) for line in demo_prompts_path().read_text().splitlines() if line.strip()]
    assert len(rows) >= 6 and len({r["id"] for r in rows}) == len(rows)
    kinds = {next(k for k in ("prompt", "messages", "prompt_token_ids") if k in r) for r in rows}
    assert kinds == {"prompt", "messages", "prompt_token_ids"}
    for r in rows:
        assert all(0 <= i < vocab for i in r.get("prompt_token_ids", []))
