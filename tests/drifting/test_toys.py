"""Fast version of benchmarks/drifting_toys.py: the field must actually train a generator."""

import importlib.util
from pathlib import Path

import torch
from torch import nn

from drifting_kedro.drifting import drifting_loss

_SPEC = importlib.util.spec_from_file_location(
    "drifting_toys", Path(__file__).parents[2] / "benchmarks" / "drifting_toys.py"
)
toys = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(toys)


def _train_2d(objective: str, steps: int = 250, batch: int = 256):
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    model = toys.Generator(width=128)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    for _ in range(steps):
        x = model(torch.randn(batch, model.noise_dim, generator=gen))
        data = toys.sample_2d("checkerboard", batch, gen)
        if objective == "drift":
            loss = drifting_loss(x[None], data[None])[0]
        else:
            loss = (x - data).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model


def test_drifting_generator_beats_mse_on_checkerboard():
    gen = torch.Generator().manual_seed(1)
    fresh = toys.sample_2d("checkerboard", 2048, gen)
    scores = {}
    for objective in ("drift", "mse"):
        model = _train_2d(objective)
        with torch.no_grad():
            pts = model(torch.randn(2048, model.noise_dim, generator=gen))
        scores[objective] = toys.energy_distance(pts, fresh)
    assert scores["drift"] < 0.05 and scores["drift"] * 20 < scores["mse"], scores


def test_conditional_drift_covers_both_modes_where_mse_averages():
    modes = toys.mode_centers(2)
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    shares = {}
    for objective in ("drift", "mse"):
        model = toys.Generator(cond_dim=2, width=64)
        opt = torch.optim.Adam(model.parameters(), lr=3e-3)
        for _ in range(150):
            cond = torch.randint(0, 2, (16,), generator=gen)
            onehot = nn.functional.one_hot(cond, 2).float()[:, None].expand(-1, 16, -1)
            x = model(torch.randn(16, 16, model.noise_dim, generator=gen), onehot)
            if objective == "drift":
                loss = drifting_loss(x, toys.sample_conditional(cond, 1, modes, gen))[0]
            else:
                loss = (x - toys.sample_conditional(cond, 1, modes, gen)).square().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        shares[objective] = float(toys.coverage(model, modes, 256, gen).min())
    assert shares["drift"] >= 0.3 and shares["mse"] < 0.1, shares
