"""The learning-rate schedule upstream builds: transformers' "cosine", stepped once per optimizer step."""
import math
from types import SimpleNamespace

import pytest
import torch

from uni_sign_ext.deepspeed_setup import cosine_schedule


def learning_rates(steps, **flags):
    args = SimpleNamespace(**{"lr": 1e-3, "min_lr": 1e-5, "epochs": 2, "warmup_epochs": 0.0,
                              "gradient_accumulation_steps": 2, **flags})
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=args.lr)
    schedule = cosine_schedule(optimizer, args, batches_per_epoch=10)
    rates = []
    for _ in range(steps):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    return rates


def test_warmup_from_zero_then_cosine_to_zero():
    # 10 batches / 2 accumulation = 5 optimizer steps per epoch: 10 in all, int(0.4 · 5) = 2 of warm-up.
    rates = learning_rates(12, warmup_epochs=0.4)
    expected = [0.0, 0.5e-3] + [0.5e-3 * (1 + math.cos(math.pi * (k - 2) / 8)) for k in range(2, 12)]
    assert rates == pytest.approx(expected, abs=1e-12)
    assert rates[2] == pytest.approx(1e-3) and rates[6] == pytest.approx(0.5e-3) and rates[10] == pytest.approx(0)


def test_no_warmup_starts_at_lr_and_ignores_min_lr():
    # Upstream's transformers schedule has no floor: --min-lr parses but does not change the values.
    rates = learning_rates(11)
    assert rates[0] == pytest.approx(1e-3)
    assert rates[5] == pytest.approx(0.5e-3)
    assert rates[10] == pytest.approx(0.0, abs=1e-12)
    assert learning_rates(11, min_lr=5e-4) == rates


def test_step_counts_round_down_like_upstream():
    # 3 epochs × 10 batches / 4 accumulation = 7.5 → 7 training steps, warm-up int(0.5 · 2.5) = 1.
    rates = learning_rates(8, epochs=3, warmup_epochs=0.5, gradient_accumulation_steps=4)
    assert rates[:2] == pytest.approx([0.0, 1e-3])
    assert rates[7] == pytest.approx(0.0, abs=1e-12)
    assert rates[4] == pytest.approx(0.5e-3 * (1 + math.cos(math.pi * 3 / 6)))


def test_lr_schedule_is_upstreams_cosine_over_truncated_optimizer_steps():
    # 10 batches, accumulation 3, 2 epochs: upstream plans int(2 * 10 / 3) = 6 optimizer steps.
    lrs = learning_rates(7, lr=1.0, gradient_accumulation_steps=3, epochs=2)
    assert lrs[0] == 1.0 and lrs[3] == pytest.approx(0.5) and lrs[6] == 0.0  # to 0, not --min-lr
    # warm-up: int(1 * 10 / 2) = 5 steps rising linearly from 0, then the cosine over the other 5
    warm = learning_rates(11, lr=1.0, gradient_accumulation_steps=2, epochs=2, warmup_epochs=1)
    assert warm[:6] == pytest.approx([0.0, 0.2, 0.4, 0.6, 0.8, 1.0])
    assert warm[10] == 0.0
