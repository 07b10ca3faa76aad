"""How long a job's sequences may be. Sliding-window attention: the engine attends over whole contexts, which equals a
window of W tokens while sequences stay within W, so jobs on a sliding-window model are held to W
(models/attention_window.py); Mistral's decoder is Llama's, checked against transformers. YaRN added for a longer
context: sequences reach the original context x factor (layers/rotary.max_positions), as in transformers."""

from __future__ import annotations

import json
import logging

import pytest

from spmd_infer.layers.rotary import max_positions
from spmd_infer.models.attention_window import hold_to_window, sliding_window
from spmd_infer.parallel.dims import ConfigError
from support.tiny_models import JOB_MAX_TOKENS, build_model, greedy_reference, read_output

# The oracle is transformers in float32 on the CPU (DESIGN.md): on a GPU host too, the jobs here run there.
CPU = "runtime.device=cpu"


def _configs():
    from transformers import LlamaConfig, MistralConfig, MixtralConfig, Qwen2Config, Qwen3Config, Qwen3MoeConfig

    layers = dict(num_hidden_layers=4)
    return {
        "llama": (LlamaConfig(**layers), None),
        "mistral v0.1": (MistralConfig(**layers, sliding_window=4096), 4096),
        "mistral v0.3": (MistralConfig(**layers, sliding_window=None), None),
        "mixtral": (MixtralConfig(**layers, sliding_window=None), None),
        "mixtral with a window": (MixtralConfig(**layers, sliding_window=4096), 4096),
        "qwen2": (Qwen2Config(**layers, sliding_window=32768, use_sliding_window=False), None),
        # The upper layers slide (transformers' layer_types from max_window_layers).
        "qwen2 sliding": (Qwen2Config(**layers, sliding_window=64, use_sliding_window=True, max_window_layers=2), 64),
        "qwen2 window past every layer": (Qwen2Config(**layers, sliding_window=64, use_sliding_window=True,
                                                      max_window_layers=4), None),
        "qwen3": (Qwen3Config(**layers, sliding_window=4096, use_sliding_window=False), None),
        "qwen3-moe": (Qwen3MoeConfig(**layers, sliding_window=4096, use_sliding_window=False), None),
        "qwen3-moe sliding": (Qwen3MoeConfig(**layers, sliding_window=4096, use_sliding_window=True), 4096),
    }


@pytest.mark.parametrize("name", list(_configs()))
def test_which_models_attend_over_a_sliding_window(name):
    config, window = _configs()[name]
    assert sliding_window(config) == window


def test_a_job_is_held_to_the_window_or_refused_past_it(caplog):
    config, _ = _configs()["mistral v0.1"]
    assert hold_to_window(config, 4096, requested=True) == 4096
    assert hold_to_window(config, 1000, requested=True) == 1000
    with caplog.at_level(logging.WARNING):
        assert hold_to_window(config, 32768, requested=False) == 4096  # from max_position_embeddings: lowered
    assert "sliding window of 4096 tokens" in caplog.text
    with pytest.raises(ConfigError, match="set model.max_model_len <= 4096"):
        hold_to_window(config, 8192, requested=True)
    llama, _ = _configs()["llama"]
    assert hold_to_window(llama, 131072, requested=True) == 131072


@pytest.mark.parametrize("name", ["mistral", "mistral_window"])
def test_mistral_jobs_match_transformers(name, job, tmp_path, caplog):
    """The greedy tokens equal transformers' in float32; with a 24-token window the job is held to 24 tokens, within
    which transformers' sliding attention is full attention, and it says so."""
    model = build_model(name, tmp_path / name)
    prompts = [[5, 17, 42, 8, 99, 3, 250, 12], [7, 7, 31], list(range(20, 38))]  # the last fills 24 tokens
    rows = tmp_path / "in.jsonl"
    rows.write_text("".join(json.dumps({"id": i, "prompt_token_ids": p}) + "\n" for i, p in enumerate(prompts)))
    with caplog.at_level(logging.WARNING):
        job(f"model.path={model}", f"data.input={rows}", CPU)
    assert ("held to 24 tokens" in caplog.text) == (name == "mistral_window")
    out = read_output(tmp_path / "out.jsonl")
    assert [r["token_ids"] for r in out] == greedy_reference(model, prompts, JOB_MAX_TOKENS)
    if name == "mistral_window":
        with pytest.raises(ConfigError, match="sliding attention window"):
            job(f"model.path={model}", f"data.input={rows}", CPU, "model.max_model_len=64",
                f"data.output={tmp_path / 'refused.jsonl'}")


def test_yarn_extends_the_context_past_max_position_embeddings(job, tmp_path):
    """A Qwen3 with YaRN added (64 positions trained, factor 4) runs a 150-token prompt, past its
    max_position_embeddings, with transformers' tokens; past original x factor a job is refused."""
    model = build_model("qwen3_yarn", tmp_path / "qwen3_yarn")
    from transformers import AutoConfig

    assert max_positions(AutoConfig.from_pretrained(model)) == 256
    prompts = [[(7 * i) % 290 + 3 for i in range(150)], [5, 17, 42]]
    rows = tmp_path / "in.jsonl"
    rows.write_text("".join(json.dumps({"id": i, "prompt_token_ids": p}) + "\n" for i, p in enumerate(prompts)))
    job(f"model.path={model}", f"data.input={rows}", CPU)
    out = read_output(tmp_path / "out.jsonl")
    assert [r["token_ids"] for r in out] == greedy_reference(model, prompts, JOB_MAX_TOKENS)
    with pytest.raises(ConfigError, match=r"must be in \[2, 256\]"):
        job(f"model.path={model}", f"data.input={rows}", CPU, "model.max_model_len=300",
            f"data.output={tmp_path / 'refused.jsonl'}")
