import math

import torch

from ancre.model.losses import cross_entropy, z_loss


def test_z_loss_is_the_mean_square_log_normaliser_of_the_counted_positions():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 7)
    targets = torch.tensor([[1, 2, -100], [0, -100, 6]])
    counted = [(0, 0), (0, 1), (1, 0), (1, 2)]
    want = sum(float(torch.logsumexp(logits[b, t], 0)) ** 2 for b, t in counted) / 4
    assert math.isclose(float(z_loss(logits, targets)), want, rel_tol=1e-6)
    assert float(z_loss(logits, torch.full((2, 3), -100))) == 0.0  # nothing counts


def test_both_terms_run_in_fp32_for_bf16_logits():
    logits = (torch.randn(2, 5, 11) * 30).bfloat16()
    targets = torch.randint(0, 11, (2, 5))
    assert z_loss(logits, targets).dtype == torch.float32
    assert cross_entropy(logits, targets).dtype == torch.float32
    exact = z_loss(logits.float(), targets)
    assert torch.equal(z_loss(logits, targets), exact)  # the bf16 values, summed in fp32
