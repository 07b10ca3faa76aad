import pytest
import torch

from spmd_kernels import decode_attention, decode_settings
from spmd_kernels import choose_num_splits, paged_decode_attention, paged_decode_attention_ref


@pytest.mark.parametrize("D", [8, 64, 128])  # 8: tiny test models' heads, below tl.dot's minimum of 16 on CUDA
@pytest.mark.parametrize("Hq,Hkv", [(2, 2), (4, 2), (8, 2)])
@pytest.mark.parametrize("num_splits", [1, 3, None])
def test_paged_decode_attention(D, Hq, Hkv, num_splits, dtype, device, assert_close, paged_kv):
    context_lens = [1, 17, 45]
    k_cache, v_cache, block_tables = paged_kv(context_lens, Hkv, D, dtype, device)
    q = torch.randn(len(context_lens), Hq, D, dtype=dtype, device=device)
    ctx = torch.tensor(context_lens, dtype=torch.int32, device=device)
    scale = D**-0.5
    out = paged_decode_attention(q, k_cache, v_cache, block_tables, ctx, scale, num_splits=num_splits)
    ref = paged_decode_attention_ref(q, k_cache, v_cache, block_tables, ctx, scale)
    assert out.shape == q.shape and out.dtype == dtype
    assert_close(out, ref)


@pytest.mark.parametrize("num_splits", [2, 8])
def test_paged_decode_attention_many_splits(num_splits, dtype, device, assert_close, paged_kv):
    # More splits than tiles for the short sequences: empty splits must not poison the reduction.
    context_lens = [3, 70, 33, 16]
    k_cache, v_cache, block_tables = paged_kv(context_lens, 1, 64, dtype, device)
    q = torch.randn(len(context_lens), 4, 64, dtype=dtype, device=device)
    ctx = torch.tensor(context_lens, dtype=torch.int32, device=device)
    out = paged_decode_attention(q, k_cache, v_cache, block_tables, ctx, 0.125, num_splits=num_splits)
    assert_close(out, paged_decode_attention_ref(q, k_cache, v_cache, block_tables, ctx, 0.125))


@pytest.mark.parametrize("block_size", [8, 32])
def test_paged_decode_attention_other_block_sizes(block_size, dtype, device, assert_close, paged_kv):
    context_lens = [7, 41]
    k_cache, v_cache, block_tables = paged_kv(context_lens, 2, 64, dtype, device, block_size=block_size)
    q = torch.randn(2, 4, 64, dtype=dtype, device=device)
    ctx = torch.tensor(context_lens, dtype=torch.int32, device=device)
    for splits in (1, 2):
        out = paged_decode_attention(q, k_cache, v_cache, block_tables, ctx, 0.125, num_splits=splits)
        assert_close(out, paged_decode_attention_ref(q, k_cache, v_cache, block_tables, ctx, 0.125))


def test_paged_decode_attention_empty_batch(dtype, device, paged_kv):
    k_cache, v_cache, _ = paged_kv([5], 2, 64, dtype, device)
    q = torch.empty(0, 4, 64, dtype=dtype, device=device)
    bt = torch.empty(0, 4, dtype=torch.int32, device=device)
    ctx = torch.empty(0, dtype=torch.int32, device=device)
    out = paged_decode_attention(q, k_cache, v_cache, bt, ctx, 0.125)
    assert out.shape == (0, 4, 64)


def test_paged_decode_attention_out_arg(device, paged_kv):
    dtype = torch.float32
    context_lens = [20, 9]
    k_cache, v_cache, block_tables = paged_kv(context_lens, 2, 64, dtype, device)
    q = torch.randn(2, 4, 64, device=device)
    ctx = torch.tensor(context_lens, dtype=torch.int32, device=device)
    out = torch.full_like(q, float("nan"))
    res = paged_decode_attention(q, k_cache, v_cache, block_tables, ctx, 0.125, num_splits=2, out=out)
    assert res is out
    torch.testing.assert_close(out, paged_decode_attention_ref(q, k_cache, v_cache, block_tables, ctx, 0.125),
                               atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("num_splits", [1, 3])
def test_paged_decode_attention_in_a_given_program_order(num_splits, dtype, device, assert_close, paged_kv):
    # The programs of a one-split launch start in `order` (longest context first); each row's output is its own
    # whatever the order, and launches of more splits ignore it.
    context_lens = [5, 70, 33, 16, 70]
    k_cache, v_cache, block_tables = paged_kv(context_lens, 2, 64, dtype, device)
    q = torch.randn(len(context_lens), 4, 64, dtype=dtype, device=device)
    ctx = torch.tensor(context_lens, dtype=torch.int32, device=device)
    order = torch.argsort(ctx, descending=True, stable=True).int()
    assert order.tolist() == [1, 4, 2, 3, 0]
    out = paged_decode_attention(q, k_cache, v_cache, block_tables, ctx, 0.125, num_splits=num_splits, order=order)
    assert_close(out, paged_decode_attention_ref(q, k_cache, v_cache, block_tables, ctx, 0.125))


def test_choose_num_splits():
    cpu = torch.device("cpu")
    assert choose_num_splits(1, 8, 10, cpu) == 1  # short context: one split
    # CPU counts as one SM: one sequence with a long context gets SPLIT_WAVES splits.
    assert choose_num_splits(1, 1, 100_000, cpu) == decode_settings.SPLIT_WAVES
    assert choose_num_splits(1024, 8, 100_000, cpu) == 1  # plenty of programs already


def test_choose_num_splits_shortens_splits_that_leave_sms_idle(monkeypatch):
    # On a 132-SM card: one sequence of 1k tokens over one KV head is 8 splits of MIN_SPLIT_TOKENS (128), 8 programs
    # for 132 SMs, so splits go down to SHORT_SPLIT_TOKENS (64): 16. Sixty-four sequences already give 512 programs.
    monkeypatch.setattr(decode_attention, "_num_sms", lambda device: 132)
    monkeypatch.setattr(decode_settings, "MIN_SPLIT_TOKENS", 128)
    monkeypatch.setattr(decode_settings, "SHORT_SPLIT_TOKENS", 64)
    cuda = torch.device("cuda")  # only passed along, never allocated on
    assert choose_num_splits(1, 1, 1024, cuda) == 16
    assert choose_num_splits(1, 8, 1024, cuda) == 16  # 64 programs at 128 tokens a split: still short of 132
    assert choose_num_splits(64, 1, 1024, cuda) == 8  # 64 x 8 = 512 programs at 128 tokens a split: enough
    assert choose_num_splits(16, 1, 1100, cuda) == 9  # 16 x 9 = 144 programs at 128 tokens: enough
    monkeypatch.setattr(decode_settings, "SHORT_SPLIT_TOKENS", 128)  # the rule off
    assert choose_num_splits(1, 1, 1024, cuda) == 8


def test_float8_launches_take_their_own_tile_by_split_count(monkeypatch):
    # The rule alone (on CUDA): a float8 tile is half the bytes, so launches of one split, two, ... take
    # FP8_SPLIT_CONFIGS' tiles in turn, the last one listed for any more; a bf16 cache keeps CUDA_CONFIG.
    cuda = torch.device("cuda")  # only compared against, never allocated on
    one, two, more, default = (128, 4, 3), (32, 1, 6), (64, 4, 3), (64, 8, 2)
    monkeypatch.setattr(decode_settings, "FP8_SPLIT_CONFIGS", (one, two, more))
    monkeypatch.setattr(decode_settings, "CUDA_CONFIG", default)
    assert decode_attention._launch_config(128, 16, 2, 1, 1, cuda) == one
    assert decode_attention._launch_config(128, 16, 2, 1, 2, cuda) == two
    assert decode_attention._launch_config(128, 16, 2, 1, 3, cuda) == more
    assert decode_attention._launch_config(128, 16, 2, 1, 32, cuda) == more
    assert decode_attention._launch_config(128, 16, 2, 2, 1, cuda) == default
    assert decode_attention._launch_config(128, 64, 2, 1, 2, cuda) == (64, 1, 6)  # a tile spans at least a page
    monkeypatch.setattr(decode_settings, "FP8_SPLIT_CONFIGS", (one,))
    assert decode_attention._launch_config(128, 16, 2, 1, 5, cuda) == one


def test_tile_settings_from_the_environment_are_checked_at_import(monkeypatch):
    name = "SPMD_TEST_TILES"
    monkeypatch.setenv(name, "64,2,6 32,1,6")
    assert decode_settings.tile_configs_from_env(name, "128,4,3") == ((64, 2, 6), (32, 1, 6))
    monkeypatch.delenv(name)
    assert decode_settings.tile_configs_from_env(name, "128,4,3", one=True) == ((128, 4, 3),)
    for bad, message in [("64,2", "three integers"), ("64,2,x", "three integers"), ("48,2,3", "power of two"),
                         ("64,3,3", "warps one of"), ("64,2,0", "stages >= 1"), ("", "at least one")]:
        monkeypatch.setenv(name, bad)
        with pytest.raises(ValueError, match=f"{name}=.*{message}"):
            decode_settings.tile_configs_from_env(name, "128,4,3")
    monkeypatch.setenv(name, "64,2,6 32,1,6")
    with pytest.raises(ValueError, match="give one BLOCK_N,warps,stages tile"):
        decode_settings.tile_configs_from_env(name, "128,4,3", one=True)

    widen = "SPMD_TEST_ASM_WIDEN"
    for text, min_warps in [("3", 3), ("all", 1), ("wide", 4), ("none", None)]:
        monkeypatch.setenv(widen, text)
        assert decode_settings.asm_widen_min_warps_from_env(widen, "2") == min_warps
    monkeypatch.delenv(widen)
    assert decode_settings.asm_widen_min_warps_from_env(widen, "2") == 2
    for bad in ("0", "some", "-1"):
        monkeypatch.setenv(widen, bad)
        with pytest.raises(ValueError, match=f"{widen}=.*give a number of warps"):
            decode_settings.asm_widen_min_warps_from_env(widen, "2")


def test_ref_matches_sdpa(device, paged_kv):
    # The reference agrees with torch's attention on a contiguous (unpaged) layout.
    n, Hq, Hkv, D = 37, 4, 2, 64
    k_cache, v_cache, bt = paged_kv([n], Hkv, D, torch.float32, device)
    q = torch.randn(1, Hq, D, device=device)
    ctx = torch.tensor([n], dtype=torch.int32, device=device)
    ref = paged_decode_attention_ref(q, k_cache, v_cache, bt, ctx, D**-0.5)
    k = k_cache[bt[0, :3].long()].flatten(0, 1)[:n].repeat_interleave(2, 1).transpose(0, 1)
    v = v_cache[bt[0, :3].long()].flatten(0, 1)[:n].repeat_interleave(2, 1).transpose(0, 1)
    sdpa = torch.nn.functional.scaled_dot_product_attention(q[0][:, None], k, v)[:, 0]
    torch.testing.assert_close(ref[0], sdpa, atol=1e-5, rtol=1e-5)
