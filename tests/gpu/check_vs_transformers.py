"""GPU check: engine (bf16) vs transformers (bf16) greedy outputs by the first-divergence / top-k logprob rule.

At the first position where the two greedy sequences differ, each side's token must be among the
other's top-k logprobs (vLLM's rule for comparing bf16 runs, where exact equality is too strict). With
cache.dtype=fp8 among --extra, transformers reads float8-rounded keys and values (DeepSeek: latents) where the
engine's cache rounds them (tests/support/fp8_rounding.py), so that the rule compares like with like. With
--block-fp8 the engine loads the model re-saved as DeepSeek-V3's float8 release is (128 x 128 blocks,
tests/support/block_fp8.py) and transformers runs the same values dequantized (the engine keeps the routed experts
in float8 there, model.expert_dtype=auto on a GPU of compute capability 8.9+; --extra model.expert_dtype=model
dequantizes them as it loads). --dtype float32 runs both sides in float32 (the model's bf16 weights widened), where
the two should agree far more often than the rule needs: a row that fails there is the engine's, not bf16's.

usage (on a GPU machine, in the repo root):
  python tests/gpu/check_vs_transformers.py --model tiny --layouts 1x1 2x2 --out /tmp/check
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import torch

TOP_K = 5
MODELS = {
    # name: (transformers config class name, kwargs)
    "tiny": ("LlamaConfig", dict(vocab_size=1000, hidden_size=256, intermediate_size=512, num_hidden_layers=4,
                                 num_attention_heads=8, num_key_value_heads=4, max_position_embeddings=2048)),
    # ~1.1B parameters (TinyLlama's shape), random weights.
    "1b": ("LlamaConfig", dict(vocab_size=32000, hidden_size=2048, intermediate_size=5632, num_hidden_layers=22,
                               num_attention_heads=32, num_key_value_heads=4, max_position_embeddings=4096)),
    # DeepSeek-V2-Lite's config.json values (MLA, 64 routed + 2 shared experts, YaRN), 4 of its 27 layers.
    "dsv2lite": ("DeepseekV2Config", dict(
        vocab_size=102400, hidden_size=2048, intermediate_size=10944, moe_intermediate_size=1408,
        num_hidden_layers=4, num_attention_heads=16, num_key_value_heads=16, kv_lora_rank=512, q_lora_rank=None,
        qk_nope_head_dim=128, qk_rope_head_dim=64, v_head_dim=128, n_routed_experts=64, n_shared_experts=2,
        num_experts_per_tok=6, first_k_dense_replace=1, moe_layer_freq=1, topk_method="greedy", n_group=1,
        topk_group=1, routed_scaling_factor=1.0, norm_topk_prob=False, max_position_embeddings=163840,
        rms_norm_eps=1e-6, rope_parameters={"rope_type": "yarn", "rope_theta": 10000.0, "factor": 40.0,
                                            "original_max_position_embeddings": 4096, "beta_fast": 32.0,
                                            "beta_slow": 1.0, "mscale": 0.707, "mscale_all_dim": 0.707})),
    # Qwen3's attention (per-head q/k RMSNorm before rotary: one fused kernel on CUDA), Qwen3-0.6B's widths.
    "qwen3": ("Qwen3Config", dict(vocab_size=32000, hidden_size=1024, intermediate_size=3072, num_hidden_layers=8,
                                  num_attention_heads=16, num_key_value_heads=8, head_dim=128, rms_norm_eps=1e-6,
                                  max_position_embeddings=4096, rope_theta=1000000.0)),
    # Qwen3-30B-A3B's widths (128 routed experts, 8 a token, normalised top-k weights, no shared expert), 4 of its
    # 48 layers and a smaller vocabulary.
    "qwen3moe": ("Qwen3MoeConfig", dict(
        vocab_size=32000, hidden_size=2048, intermediate_size=6144, moe_intermediate_size=768, num_hidden_layers=4,
        num_attention_heads=32, num_key_value_heads=4, head_dim=128, num_experts=128, num_experts_per_tok=8,
        norm_topk_prob=True, decoder_sparse_step=1, mlp_only_layers=[], rms_norm_eps=1e-6,
        max_position_embeddings=4096, rope_theta=1000000.0)),
    # Qwen1.5-MoE-A2.7B's shape (Qwen2-MoE: q/k/v biases, 60 experts, 4 per token, a gated 5632-wide shared
    # expert), 4 of its 24 layers.
    "qwen2moe": ("Qwen2MoeConfig", dict(
        vocab_size=32000, hidden_size=2048, intermediate_size=5632, moe_intermediate_size=1408, num_hidden_layers=4,
        num_attention_heads=16, num_key_value_heads=16, num_experts=60, num_experts_per_tok=4,
        shared_expert_intermediate_size=5632, norm_topk_prob=False, decoder_sparse_step=1, mlp_only_layers=[],
        rms_norm_eps=1e-6, max_position_embeddings=4096, rope_theta=1000000.0)),
}


def build(name: str, folder: Path) -> Path:
    import transformers

    if (folder / "config.json").exists():
        return folder
    cls_name, kwargs = MODELS[name]
    config = getattr(transformers, cls_name)(**kwargs, tie_word_embeddings=False, bos_token_id=0, eos_token_id=1)
    config.architectures = [cls_name.replace("Config", "ForCausalLM")]
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    with torch.no_grad():
        # std 1/sqrt(fan_in): activations keep their scale through every layer (a wider init makes a deep
        # random net chaotic, so bf16 rounding alone flips its greedy choices), logits stay decisive.
        for p in model.parameters():
            if p.dim() > 2:  # experts stacked [E, out, in]: fan-in is the last dimension
                p.normal_(0.0, p.shape[-1] ** -0.5)
            elif p.dim() > 1:
                p.normal_(0.0, p.shape[1] ** -0.5)
            elif name == "qwen3":  # norm weights other than 1, so that the fused q/k norm's scale is checked
                p.uniform_(0.5, 1.5)
    model.save_pretrained(folder)
    print(f"built {name}: {sum(p.numel() for p in model.parameters()) / 1e9:.2f}B parameters", flush=True)
    return folder


def prompts(n: int, vocab: int) -> list[list[int]]:
    rng = random.Random(0)
    return [[rng.randrange(2, vocab) for _ in range(rng.randrange(8, 300))] for _ in range(n)]


def hf_reference(folder: Path, rows: list[list[int]], max_new: int, fp8_cache: bool = False,
                 dtype: torch.dtype = torch.bfloat16) -> list[dict]:
    from transformers import AutoModelForCausalLM

    if fp8_cache:
        import pytest

        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: its support package
        from support.fp8_rounding import fp8_rounded_attention

        patch = pytest.MonkeyPatch()
        fp8_rounded_attention(patch)  # patches eager attention: load the model with it
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype, device_map="cuda",
                                                 **({"attn_implementation": "eager"} if fp8_cache else {})).eval()
    out = []
    for ids in rows:
        with torch.no_grad():
            gen = model.generate(torch.tensor([ids], device="cuda"), do_sample=False, max_new_tokens=max_new,
                                 min_new_tokens=max_new, output_scores=True, return_dict_in_generate=True,
                                 pad_token_id=1, attention_mask=torch.ones(1, len(ids), device="cuda"))
        tokens = gen.sequences[0, len(ids):].tolist()
        best = [s[0].float().log_softmax(-1).topk(TOP_K) for s in gen.scores]
        # span: how far the TOP_K-th choice trails the first, in nats (a random model's flat logits: a row that
        # leaves a span of hundredths is a near-tie that rounding decides, not a wrong kernel)
        out.append({"tokens": tokens, "top": [set(b.indices.tolist()) for b in best],
                    "span": [float(b.values[0] - b.values[-1]) for b in best]})
    del model
    torch.cuda.empty_cache()
    if fp8_cache:
        patch.undo()
    return out


def run_engine(folder: Path, inp: Path, out: Path, dp: int, tp: int, max_new: int, extra: list[str]) -> float:
    args = ["-m", "spmd_infer", f"model.path={folder}", f"data.input={inp}", f"data.output={out}",
            f"parallel.dp={dp}", f"parallel.tp={tp}", "sampling.temperature=0", f"sampling.max_tokens={max_new}",
            f"sampling.min_tokens={max_new}", f"sampling.logprobs={TOP_K}", "runtime.progress=false",
            "data.overwrite=true", *extra]  # a fresh comparison each run, never resumed
    world = dp * tp
    cmd = ([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(world)] if world > 1
           else [sys.executable]) + args
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "NCCL_NVLS_ENABLE": "0",
                                                                    "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1"})
    if proc.returncode:
        print(proc.stdout[-4000:], proc.stderr[-8000:])
        raise SystemExit(f"engine failed in dp{dp}xtp{tp}")
    print(proc.stdout[-600:], flush=True)
    return time.perf_counter() - start


def compare(engine_rows: list[dict], ref: list[dict]) -> dict:
    exact = agree = fail = 0
    details = []
    for i, (row, r) in enumerate(zip(engine_rows, ref)):
        mine = row["token_ids"]
        pos = next((j for j, (a, b) in enumerate(zip(mine, r["tokens"])) if a != b), None)
        if pos is None and len(mine) == len(r["tokens"]):
            exact += 1
            continue
        if pos is None:
            pos = min(len(mine), len(r["tokens"]))
            fail += 1
            details.append(f"row {i}: lengths differ ({len(mine)} vs {len(r['tokens'])})")
            continue
        my_top = {int(t) for t in row["logprobs"][pos]}
        ok = mine[pos] in r["top"][pos] and r["tokens"][pos] in my_top
        agree += ok
        fail += not ok
        spans = ""
        if not ok:  # how flat both sides' top choices were there
            mine_lp = sorted(row["logprobs"][pos].values(), reverse=True)[:TOP_K]
            spans = (f"; top-{TOP_K} span {r['span'][pos]:.3f} nats in transformers, "
                     f"{mine_lp[0] - mine_lp[-1]:.3f} here")
        details.append(f"row {i}: first divergence at {pos} ({'within' if ok else 'OUTSIDE'} top-{TOP_K}{spans})")
    return {"exact": exact, "diverged_within_topk": agree, "failed": fail, "details": details}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="tiny", choices=sorted(MODELS))
    ap.add_argument("--layouts", nargs="+", default=["1x1"])
    ap.add_argument("--num-prompts", type=int, default=16)
    ap.add_argument("--max-new", type=int, default=32)
    ap.add_argument("--out", default="/tmp/spmd_check")
    ap.add_argument("--extra", nargs="*", default=[])
    ap.add_argument("--block-fp8", action="store_true", help="the engine loads a block-float8 copy")
    ap.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"], help="both sides' dtype")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    folder = engine_folder = build(args.model, out / args.model)
    if args.block_fp8:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: its support package
        from support.block_fp8 import write_block_fp8_copy

        engine_folder, folder = out / f"{args.model}-blockfp8", out / f"{args.model}-dequantized"
        write_block_fp8_copy(out / args.model, engine_folder, folder, (128, 128))
        print(f"engine: {engine_folder} (float8, 128 x 128 blocks); reference: {folder}", flush=True)
    rows = prompts(args.num_prompts, MODELS[args.model][1]["vocab_size"])
    inp = out / f"{args.model}.jsonl"
    inp.write_text("".join(json.dumps({"id": i, "prompt_token_ids": p}) + "\n" for i, p in enumerate(rows)))
    fp8_cache = "cache.dtype=fp8" in args.extra
    if fp8_cache:
        print("reference: transformers reading float8-rounded keys and values (cache.dtype=fp8)", flush=True)
    ref = hf_reference(folder, rows, args.max_new, fp8_cache, getattr(torch, args.dtype))
    extra = args.extra + ([f"model.dtype={args.dtype}"] if args.dtype != "bfloat16" else [])  # (auto: bf16 on CUDA)
    failed = 0
    for layout in args.layouts:
        dp, tp = map(int, layout.split("x"))
        result_path = out / f"{args.model}-{layout}.out.jsonl"
        secs = run_engine(engine_folder, inp, result_path, dp, tp, args.max_new, extra)
        engine_rows = [json.loads(line) for line in result_path.read_text().splitlines()]
        verdict = compare(engine_rows, ref)
        failed += verdict["failed"]
        print(f"RESULT {args.model} dp{dp}xtp{tp} {args.dtype} ({torch.cuda.get_device_name()}): "
              f"{verdict['exact']} exact, {verdict['diverged_within_topk']} diverged within top-{TOP_K}, "
              f"{verdict['failed']} failed; job {secs:.1f} s", flush=True)
        for line in verdict["details"]:
            print("   ", line)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
