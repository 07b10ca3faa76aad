"""L2 prefetch of the next kernel's weights (kernels/l2_prefetch.py): its slicing covers exactly the bytes asked for,
it turns itself off where it cannot run, and decode attention's output is the same with it on (CUDA)."""

import pytest
import torch

from spmd_kernels import decode_settings, paged_decode_attention, paged_decode_attention_ref
from spmd_kernels.l2_prefetch import prefetch_plan, prefetch_sizes

requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="bulk L2 prefetch is PTX: CUDA only")


def thread_slices(nbytes: int, per_thread: int, programs: int, threads: int) -> list[tuple[int, int]]:
    """What prefetch_l2's asm asks for, thread by thread: (offset, size) where any bytes are left."""
    slices = []
    for program in range(programs):
        start = program * threads * per_thread
        for t in range(threads):
            off = start + t * per_thread
            if nbytes - off > 0:
                slices.append((off, min(per_thread, nbytes - off)))
    return slices


@pytest.mark.parametrize("weight_bytes,programs,threads,max_bytes", [
    (4096 * 4096 * 2, 64, 128, 32 << 20),  # Llama-3-8B's o_proj at bs1, 8 splits x 8 KV heads: all of it
    (4096 * 4096 * 2, 64, 128, 16 << 20),  # cut at max_bytes
    (2048 * 1024 * 2, 24, 128, 32 << 20),  # Qwen3-0.6B's o_proj
    (1000 * 6, 7, 64, 32 << 20),  # fewer bytes than threads' units, a size not of whole units
    (48, 3, 32, 1 << 20),
])
def test_slices_cover_the_bytes_asked_for_once(weight_bytes, programs, threads, max_bytes):
    nbytes, per_thread = prefetch_sizes(weight_bytes, programs, threads, max_bytes)
    assert nbytes == min(weight_bytes, max_bytes) // 16 * 16 and per_thread % 16 == 0 and per_thread > 0
    slices = thread_slices(nbytes, per_thread, programs, threads)
    covered = 0
    for off, size in slices:  # in order, back to back, each 16-byte aligned and sized
        assert off == covered and off % 16 == 0 and size % 16 == 0 and size > 0
        covered += size
    assert covered == nbytes


def test_the_plan_is_off_where_it_cannot_run():
    placeholder = torch.zeros(1, dtype=torch.int32)
    weight = torch.zeros(64, 64, dtype=torch.bfloat16)
    for args in ((None, 8, 128, 1 << 20), (weight, 8, 128, 1 << 20), (weight, 0, 128, 1 << 20),
                 (weight, 8, 128, 8)):
        ptr, nbytes, per_thread, on = prefetch_plan(*args, placeholder)
        assert (ptr is placeholder, nbytes, per_thread, on) == (True, 0, 0, False), args[1:]


@requires_cuda
def test_the_plan_is_off_for_a_weight_not_in_one_block():
    placeholder = torch.zeros(1, dtype=torch.int32, device="cuda")
    weight = torch.zeros(64, 64, dtype=torch.bfloat16, device="cuda")
    assert prefetch_plan(weight.t(), 8, 128, 1 << 20, placeholder)[3] is False
    assert prefetch_plan(weight.view(-1)[1:], 8, 128, 1 << 20, placeholder)[3] is False  # 2-byte aligned
    ptr, nbytes, per_thread, on = prefetch_plan(weight, 8, 128, 1 << 20, placeholder)
    assert ptr is weight and nbytes == 64 * 64 * 2 and on


@requires_cuda
@pytest.mark.parametrize("num_splits", [1, 4])
def test_decode_attention_asking_l2_for_a_weight_gives_the_same_output(num_splits, dtype, paged_kv, monkeypatch):
    # The prefetch is a hint with no result: the output is bit for bit the one without it, over a weight larger than
    # the slices of every program and one smaller than a thread's unit count.
    monkeypatch.setattr(decode_settings, "L2_PREFETCH_MAX_BATCH", 256)
    context_lens = [1, 17, 300, 45]
    k_cache, v_cache, block_tables = paged_kv(context_lens, 2, 128, dtype, "cuda")
    q = torch.randn(len(context_lens), 8, 128, dtype=dtype, device="cuda")
    ctx = torch.tensor(context_lens, dtype=torch.int32, device="cuda")
    plain = paged_decode_attention(q, k_cache, v_cache, block_tables, ctx, 0.1, num_splits=num_splits)
    for weight in (torch.randn(4096, 4096, dtype=torch.bfloat16, device="cuda"),
                   torch.randn(3, 8, dtype=torch.bfloat16, device="cuda")):
        out = paged_decode_attention(q, k_cache, v_cache, block_tables, ctx, 0.1, num_splits=num_splits,
                                     prefetch=weight)
        torch.testing.assert_close(out, plain, atol=0, rtol=0)
    torch.testing.assert_close(plain.float(), paged_decode_attention_ref(q, k_cache, v_cache, block_tables, ctx,
                                                                         0.1).float(), atol=2e-2, rtol=2e-2)
