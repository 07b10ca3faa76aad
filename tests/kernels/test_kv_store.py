import pytest
import torch

from spmd_kernels import store_kv, store_kv_ref, store_latent, store_latent_ref


@pytest.mark.parametrize("T", [0, 1, 3, 17])
@pytest.mark.parametrize("Hkv,D", [(1, 64), (2, 128), (4, 64)])
def test_store_kv(T, Hkv, D, dtype, device):
    num_blocks, block_size = 7, 16
    # k and v as strided views of a fused qkv projection output.
    qkv = torch.randn(T, (2 + 2) * Hkv, D, dtype=dtype, device=device)
    k, v = qkv[:, 2 * Hkv : 3 * Hkv], qkv[:, 3 * Hkv :]
    slots = torch.randperm(num_blocks * block_size, device=device)[:T]
    if T > 1:
        slots[torch.rand(T, device=device) < 0.3] = -1  # padding tokens are skipped
        slots[0] = -1
    k_cache = torch.randn(num_blocks, block_size, Hkv, D, dtype=dtype, device=device)
    v_cache = torch.randn_like(k_cache)
    k_ref, v_ref = k_cache.clone(), v_cache.clone()
    store_kv(k, v, k_cache, v_cache, slots)
    store_kv_ref(k, v, k_ref, v_ref, slots)
    assert torch.equal(k_cache, k_ref)  # a copy: bit-exact, untouched slots included
    assert torch.equal(v_cache, v_ref)


def test_store_kv_ref_semantics(device):
    k = torch.arange(3 * 2 * 4, dtype=torch.float32, device=device).view(3, 2, 4)
    v = -k
    k_cache = torch.zeros(2, 4, 2, 4, device=device)
    v_cache = torch.zeros_like(k_cache)
    store_kv_ref(k, v, k_cache, v_cache, torch.tensor([5, -1, 0], device=device))
    assert torch.equal(k_cache[1, 1], k[0]) and torch.equal(k_cache[0, 0], k[2])
    assert torch.equal(v_cache[1, 1], v[0])
    assert int((k_cache != 0).any(-1).any(-1).sum()) == 2


@pytest.mark.parametrize("T", [0, 1, 5, 17])
@pytest.mark.parametrize("E", [16, 36, 576])
def test_store_latent(T, E, dtype, device):
    num_blocks, block_size = 5, 4
    # MLA's entries: c_kv ++ k_pe as a strided view (a slice of a wider row), last dim contiguous.
    wide = torch.randn(T, 1, E + 8, dtype=dtype, device=device)
    entries = wide[..., 8:]
    slots = torch.randperm(num_blocks * block_size, device=device)[:T]
    if T > 1:
        slots[torch.rand(T, device=device) < 0.3] = -1  # padding tokens are skipped
        slots[-1] = -1
    cache = torch.randn(num_blocks, block_size, 1, E, dtype=dtype, device=device)
    ref = cache.clone()
    store_latent(entries, cache, slots)
    store_latent_ref(entries, ref, slots)
    assert torch.equal(cache, ref)  # a copy: bit-exact, untouched slots included


@pytest.mark.parametrize("T", [1, 7])
@pytest.mark.parametrize("E_x,E_rope", [(16, 8), (512, 64), (20, 12)])
def test_store_latent_takes_k_pe_from_its_own_tensor(T, E_x, E_rope, dtype, device):
    """MLA's c_kv and k_pe as two views of kv_a's output (k_pe a strided slice), stored as one entry: the bits of
    their concatenation stored, untouched and skipped slots included."""
    num_blocks, block_size = 4, 4
    kv_a = torch.randn(T, E_x + E_rope, dtype=dtype, device=device)
    latent, k_pe = kv_a.split([E_x, E_rope], dim=-1)
    latent = latent.contiguous()  # (the layer norms it into a new tensor)
    slots = torch.randperm(num_blocks * block_size, device=device)[:T]
    if T > 1:
        slots[1] = -1
    cache = torch.randn(num_blocks, block_size, 1, E_x + E_rope, dtype=dtype, device=device)
    ref = cache.clone()
    store_latent(latent.unsqueeze(1), cache, slots, rope=k_pe.unsqueeze(1))
    store_latent(torch.cat([latent, k_pe], dim=-1).unsqueeze(1), ref, slots)
    assert torch.equal(cache, ref)
    again = cache.clone()
    store_latent_ref(latent.unsqueeze(1), again, slots, rope=k_pe.unsqueeze(1))
    assert torch.equal(cache, again)


def test_store_latent_ref_semantics(device):
    entries = torch.arange(3 * 6, dtype=torch.float32, device=device).view(3, 1, 6) + 1
    cache = torch.zeros(2, 4, 1, 6, device=device)
    store_latent_ref(entries, cache, torch.tensor([6, -1, 1], device=device))
    assert torch.equal(cache[1, 2], entries[0]) and torch.equal(cache[0, 1], entries[2])
    assert int((cache != 0).any(-1).sum()) == 2


def test_store_latent_converts_dtype(device):
    entries = torch.randn(3, 1, 20, device=device)
    cache = torch.zeros(2, 4, 1, 20, dtype=torch.float16, device=device)
    store_latent(entries, cache, torch.tensor([0, 7, -1], device=device))
    assert torch.equal(cache[0, 0], entries[0].half()) and torch.equal(cache[1, 3], entries[1].half())
