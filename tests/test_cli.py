"""The program as a user runs it: `spmd-infer` on the demo, torchrun with overrides, bad rows, bad configs."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from support.launch import launch_env, torchrun
from support.tiny_models import MAX_NEW, read_output

CLI = [sys.executable, "-m", "spmd_infer"]


def run_cli(args: list[str], cwd: Path, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run(CLI + args, capture_output=True, text=True, cwd=cwd, timeout=timeout, env=launch_env())


def test_demo_job_runs_with_no_arguments(tmp_path):
    env_cache = {"SPMD_INFER_CACHE": str(tmp_path / "cache")}
    proc = subprocess.run(CLI + ["sampling.max_tokens=8"], capture_output=True, text=True, cwd=tmp_path,
                          timeout=240, env=launch_env(1, env_cache))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = read_output(tmp_path / "demo_output.jsonl")
    assert len(rows) == 8 and all(r.get("text") is not None and r["num_output_tokens"] >= 1 for r in rows)
    assert "RANDOM weights" in proc.stdout and "model.path=" in proc.stdout
    assert "requests: 8" in proc.stdout and "tok/s" in proc.stdout
    assert (tmp_path / "demo_output.jsonl.run" / ".hydra" / "config.yaml").is_file()
    assert (tmp_path / "demo_output.jsonl.run" / "rank0.log").is_file()


BAD_ROWS = [
    ('{"id": "ok1", "prompt_token_ids": [5, 6, 7]}', None),
    ('{"id": "broken", "prompt_token_ids": [5, 6', "invalid_json"),
    ('{"id": "noprompt"}', "missing_prompt"),
    ('{"id": "empty", "prompt_token_ids": []}', "empty_prompt"),
    ('{"id": "long", "prompt_token_ids": [' + ", ".join(["3"] * 70) + "]}", "prompt_too_long"),
    ('{"id": "oov", "prompt_token_ids": [5, 99999]}', "invalid_token_id"),
    ('{"id": "temp", "prompt_token_ids": [5], "sampling": {"temperature": -1}}', "invalid_sampling"),
    ('{"id": "topp", "prompt_token_ids": [5], "sampling": {"top_p": 1.5}}', "invalid_sampling"),
    ('{"id": "maxt", "prompt_token_ids": [5], "sampling": {"max_tokens": 0}}', "invalid_sampling"),
    ('{"id": "text", "prompt": "hello"}', "no_tokenizer"),
    ('{"id": "ok2", "prompt_token_ids": [9, 10]}', None),
]


def test_bad_rows_become_error_rows_in_dp2(tiny, tmp_path):
    """Each bad row yields an error row naming its line; the good rows still complete (2 DP ranks)."""
    inp = tmp_path / "bad.jsonl"
    inp.write_text("\n".join(row for row, _ in BAD_ROWS) + "\n")
    proc = torchrun(2, ["-m", "spmd_infer", f"model.path={tiny['models']['llama']}", f"data.input={inp}",
                        f"data.output={tmp_path / 'out.jsonl'}", "parallel.dp=2", "sampling.temperature=0",
                        f"sampling.max_tokens={MAX_NEW}", "model.max_model_len=64"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = read_output(tmp_path / "out.jsonl")
    assert len(rows) == len(BAD_ROWS)
    for line_no, ((_, kind), row) in enumerate(zip(BAD_ROWS, rows), start=1):
        if kind is None:
            assert row["num_output_tokens"] >= 1 and row["text"] is None, row  # no tokenizer: ids only
        else:
            assert row["error"]["type"] == kind, row
            assert f"line {line_no}" in row["error"]["message"], row


def test_bad_config_fails_before_model_work_once_for_the_job(tiny, tmp_path):
    """Under torchrun every rank reaches the same verdict before any collective; the job prints it once."""
    proc = torchrun(2, ["-m", "spmd_infer", "parallel.dp=1", "parallel.tp=1", f"data.input={tiny['inputs']['one']}",
                        f"data.output={tmp_path / 'o.jsonl'}", "sampling.max_tokens=2"], cwd=tmp_path, timeout=180)
    assert proc.returncode != 0
    assert "WORLD_SIZE=2" in proc.stderr, proc.stderr[-3000:]
    assert proc.stderr.count("configuration error") == 1, "the message should come once, from rank 0"
    assert not (tmp_path / "o.jsonl").exists()


@pytest.mark.parametrize("overrides,message", [
    (["model.path=/nonexistent/model"], "no config.json"),
    (["model.path=BADARCH"], "unknown architecture"),
    (["model.path=QUANTIZED"], "declares quantized weights (quantization_config, quant_method='awq'"),
    (["model.path=DYNAMIC_ROPE"], "rope_type='dynamic' is not supported (supported: default, linear, llama3, yarn)"),
    (["model.path=GELU"], "hidden_act='gelu' is not supported: this engine's MLPs are SiLU-gated"),
    (["model.path=MODEL3", "model.max_model_len=100000"], "max_model_len"),
    (["runtime.device=tpu"], "runtime.device"),
    (["sampling.temperature=-1"], "sampling: temperature must be >= 0"),
    (["++sampling.logit_bias={100000:5}"], "sampling.logit_bias names token ids [100000] outside the model's"),
    (["model.path=MODEL3", "sampling.stop=[END]"], "sampling.stop=['END'] needs a tokenizer"),
    (["parallel.dp=1", "parallel.tp=3"], "WORLD_SIZE=1"),
    (["parallel.all_reduce=custom"], "parallel.all_reduce='custom' must be one of auto, nccl, symmetric"),
    (["parallel.exchange=nccl"], "parallel.exchange='nccl' must be one of auto, shm, collective"),
], ids=["missing-path", "unknown-arch", "quantized", "dynamic-rope", "gelu", "max-len", "device", "temperature",
        "logit-bias", "stop-without-tokenizer", "world-mismatch", "all-reduce", "exchange"])
def test_bad_config_says_what_to_change(job, tiny, tmp_path, overrides, message):
    """The checks that run before any weight is read (in-process: the verdict is what each rank reaches)."""
    from spmd_infer.parallel.dims import ConfigError

    base = json.loads((Path(tiny["models"]["llama"]) / "config.json").read_text())

    def variant(name: str, **changes) -> Path:
        """A folder with the tiny Llama's config.json, these keys changed (no weights: the checks come first)."""
        folder = tmp_path / name
        folder.mkdir()
        (folder / "config.json").write_text(json.dumps({**base, **changes}))
        return folder

    rope = {"rope_type": "dynamic", "factor": 2.0, "rope_theta": 1e4}  # dynamic NTK scaling, which no kernel computes
    folders = {
        "MODEL3": tiny["models"]["qwen3"],
        "BADARCH": variant("badarch", architectures=["GPT2LMHeadModel"], model_type="gpt2"),
        "QUANTIZED": variant("quantized", quantization_config={"quant_method": "awq", "bits": 4, "group_size": 128}),
        "DYNAMIC_ROPE": variant("dynamic_rope", rope_scaling=rope, rope_parameters=rope),
        "GELU": variant("gelu", hidden_act="gelu"),
    }
    for placeholder, folder in folders.items():
        overrides = [o.replace(placeholder, str(folder)) for o in overrides]
    with pytest.raises(ConfigError, match=re.escape(message)):
        job(f"data.input={tiny['inputs']['one']}", *overrides)
    assert not (tmp_path / "out.jsonl").exists()
