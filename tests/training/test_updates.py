"""Updates lost to rounding (training/updates.py): the share is 0 where the recipe keeps every update, near 1 where
steps are below half the weights' spacing, measured over the window since the last take; and the figure the notes
quote for SmolLM2-135M is recounted from the embedded model."""

import pytest
import torch

from lisa_bench.methods import OptimConfig, build_method
from lisa_bench.precision import prepare_optimizer, resolve_precision
from lisa_bench.training.updates import SMOLLM2_LOST_AT_2E5, LostUpdates


def _tracked(precision: str, lr: float, steps: int, seed=0):
    prec = resolve_precision(precision)
    gen = torch.Generator().manual_seed(seed)
    p = torch.nn.Parameter((torch.randn(64, 64, generator=gen) * 0.02).to(prec.weights))
    opt = prepare_optimizer(prec, build_method("full", None), OptimConfig(lr=lr, kahan=prec.kahan).adamw([p]))
    lost = LostUpdates(opt, per_tensor=256)
    for _ in range(steps):
        p.grad = (torch.randn(64, 64, generator=gen) * 0.01).to(p.dtype)
        opt.step()
        opt.zero_grad(set_to_none=True)
    return lost


@pytest.mark.parametrize("precision, low, high", [("fp32", -1e-3, 1e-3), ("bf16-master", -1e-3, 1e-3),
                                                  ("bf16-kahan", -0.02, 0.02), ("bf16", 0.6, 1.01)])
def test_share_lost_by_each_recipe_at_a_small_rate(precision, low, high):
    window = _tracked(precision, 2e-5, 10).take()
    assert window["lost_update_sampled"] == 256 and window["lost_update_steps"] == 10
    assert low < window["lost_update_share"] < high, window


def test_a_take_starts_a_new_window():
    lost = _tracked("bf16", 2e-5, 3)
    assert lost.take()["lost_update_steps"] == 3
    assert lost.take() == {"lost_update_share": None, "lost_update_sampled": 0, "lost_update_steps": 0}


def test_a_large_rate_keeps_most_of_the_update_even_in_bf16():
    assert _tracked("bf16", 3e-3, 5).take()["lost_update_share"] < 0.2


@pytest.mark.slow
def test_the_quoted_share_of_smollm2_weights_that_lr_2e5_cannot_move():
    """An AdamW step of about lr leaves a bf16 weight unchanged when lr is below half its spacing,
    2^(floor(log2|w|) - 7) / 2."""
    from lisa_bench.models import load_model

    model = load_model("smollm2-135m").model
    below = total = 0
    for p in model.parameters():
        w = p.detach().float().abs()
        half_spacing = torch.exp2(torch.floor(torch.log2(w.clamp_min(1e-30))) - 8)
        below += int((2e-5 < half_spacing).sum())
        total += w.numel()
    assert f"{round(100 * below / total)}%" == SMOLLM2_LOST_AT_2E5
