import pytest
import torch

from ancre.kernels.attention import sdpa_attention, select_attention


def test_auto_falls_back_to_sdpa_without_a_gpu():
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    assert select_attention("auto") == ("sdpa", sdpa_attention)
    assert select_attention("sdpa")[0] == "sdpa"


def test_flash_attn_where_it_cannot_run_fails_with_the_install_hint():
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(
        ValueError, match=r"model.attention=flash_attn cannot run here.*ancre\[gpu\]"
    ):
        select_attention("flash_attn")


def test_sdpa_is_causal_attention():
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 3, 5, 4) for _ in range(3))
    scores = (q @ k.transpose(-1, -2)) / 2.0
    scores = scores.masked_fill(torch.ones(5, 5).triu(1).bool(), float("-inf"))
    torch.testing.assert_close(sdpa_attention(q, k, v), scores.softmax(-1) @ v)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_flash_attn_and_sdpa_agree_in_bf16():
    pytest.importorskip("flash_attn")
    from ancre.kernels.attention import flash_attention

    q, k, v = (torch.randn(2, 8, 256, 64, device="cuda", dtype=torch.bfloat16) for _ in range(3))
    torch.testing.assert_close(
        flash_attention(q, k, v), sdpa_attention(q, k, v), atol=2e-2, rtol=2e-2
    )
