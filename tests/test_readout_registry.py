"""Readouts and lifts are entries: a readout registered here (not in the library's source),
the root mean square of each channel, is taken by the model, the size check, export, the
cost model, channel compression, ``ModelOptions`` and the command line."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.integrate import trapezoid
from torch import nn

from grids import GridSchedule
from spacetime_nets import SpaceTimeNet, adapt, to_resnet
from spacetime_nets.cli import load_run, main
from spacetime_nets.export import ChannelHead
from spacetime_nets.models import (
    LIFT_REGISTRY,
    LIFTS,
    READOUT_REGISTRY,
    READOUTS,
    Readout,
    ReadoutRequest,
    register_readout,
)
from spacetime_nets.runs import ModelOptions

TINY = ["--samples", "80", "--steps", "2", "--epochs", "1", "--batch-size", "16", "--quiet"]
SCHED = GridSchedule.from_widths([33, 33, 17, 17])
EPS = 1e-6


def rms_build(req: ReadoutRequest) -> dict[str, nn.Parameter]:
    g, c, out = req.generator, req.channels, req.out_features
    return {
        "readout_weight": nn.Parameter(torch.randn(out, c, generator=g) / math.sqrt(c)),
        "readout_bias": nn.Parameter(torch.zeros(out)),
    }


def rms_apply(model, state: torch.Tensor, k: int) -> torch.Tensor:
    """y = W r + b, r_c = sqrt((1/|Omega|) int x_c^2 + eps)."""
    _, w = model.disc.grid(k)
    r = torch.sqrt((state.square() * w).sum(-1) / model.domain.volume + EPS)
    return nn.functional.linear(r, model.readout_weight, model.readout_bias)


class RmsHead(nn.Module):
    def __init__(self, weights: torch.Tensor, linear: nn.Linear) -> None:
        super().__init__()
        self.register_buffer("weights", weights.clone())
        self.linear = linear

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.linear(torch.sqrt(h.square() @ self.weights + EPS))


def rms_export(model) -> nn.Module:
    W = model.readout_weight.detach()
    lin = nn.Linear(W.shape[1], W.shape[0], dtype=W.dtype)
    with torch.no_grad():
        lin.weight.copy_(W)
        lin.bias.copy_(model.readout_bias)
    _, w = model.disc.grid(model.schedule.num_steps)
    return RmsHead(w / model.domain.volume, lin)


def rms_macs(model) -> int:
    c, n = model.schedule.channels[-1], model.schedule.widths[-1]
    return 2 * c * n + c * model.out_features


def rms_parameters(req: ReadoutRequest) -> list[tuple[str, int, str]]:
    return [("out_features", req.out_features * (req.channels + 1), "the rms readout's weights")]


RMS = Readout("rms", rms_build, rms_apply, rms_export, rms_macs, rms_parameters)


@pytest.fixture()
def rms():
    assert "rms" not in READOUT_REGISTRY
    register_readout(RMS)
    yield "rms"
    del READOUT_REGISTRY["rms"]


def model(readout: str, out: int = 3, **kw) -> SpaceTimeNet:
    return SpaceTimeNet(SCHED, None, out, kernel="conv", form="inside", activation="tanh",
                        lift="identity", readout=readout, channels=4, seed=0, **kw)  # fmt: skip


def test_the_built_in_readouts_and_lifts_are_entries():
    assert tuple(READOUTS) == ("quadrature", "mean", "pool", "function")
    assert tuple(LIFTS) == ("cells", "linear", "identity")
    assert [n for n, r in READOUT_REGISTRY.items() if r.scalar] == ["quadrature"]
    assert [n for n, r in READOUT_REGISTRY.items() if r.head] == ["mean", "pool"]
    assert [n for n, r in READOUT_REGISTRY.items() if not r.channel_linear] == ["pool"]
    assert [n for n, e in LIFT_REGISTRY.items() if not e.channels] == ["linear"]
    with pytest.raises(ValueError, match="readout: expected a Readout, got str"):
        register_readout("rms")  # type: ignore[arg-type]
    bad = Readout("bad", rms_build, rms_apply, rms_export, 3, rms_parameters)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="readout 'bad': multiply_adds must be callable, got 3"):
        register_readout(bad)
    assert "bad" not in READOUT_REGISTRY


def test_a_registered_readout_builds_answers_exports_and_counts(rms):
    assert rms in READOUTS
    net = model(rms).double()
    assert set(dict(net.named_parameters())) >= {"readout_weight", "readout_bias"}
    g = torch.Generator().manual_seed(0)
    xi = np.linspace(0.0, 1.0, 33)
    # a rough input: a smooth field plus white noise at every node
    x = torch.sin(2 * math.pi * torch.tensor(xi))[None] + 0.5 * torch.randn(5, 33, generator=g)
    x = x.double()
    with torch.no_grad():
        y = net(x)
        # reference: the final state's channel RMS by scipy's trapezoid rule on G_K
        xK = net.trajectory(x).states[-1].numpy()
        nodes = np.linspace(0.0, 1.0, xK.shape[-1])
        r = np.sqrt(trapezoid(xK**2, nodes, axis=-1) + EPS)
        ref = r @ net.readout_weight.numpy().T + net.readout_bias.numpy()
        np.testing.assert_allclose(y.numpy(), ref, rtol=1e-12, atol=1e-12)
        # export: the entry's head in the ResNet gives the same outputs
        res = to_resnet(net)
        assert isinstance(res.head, RmsHead) and not isinstance(res.head, ChannelHead)
        torch.testing.assert_close(res(x), y, rtol=1e-10, atol=1e-10)
        # the same continuous model at 2x and 4x on the same (noisy) samples, interpolated:
        # the readout integrates over Omega, so it answers as at 1x up to the discretisation
        for n in (65, 129):
            xn = torch.from_numpy(
                np.stack([np.interp(np.linspace(0, 1, n), xi, row) for row in x.numpy()])
            )
            assert (net.at_resolution(n)(xn) - y).abs().max() < 0.05 * y.abs().max(), n
        # a smooth input sampled at 0.5x, 2x and 4x answers as at 1x
        smooth = lambda m: torch.sin(2 * math.pi * torch.linspace(0, 1, m, dtype=torch.float64))  # noqa: E731
        phase = torch.linspace(0.5, 1.5, 5, dtype=torch.float64)[:, None]
        y1 = net(phase * smooth(33)[None])
        for n in (17, 65, 129):
            yn = net.at_resolution(n)(phase * smooth(n)[None])
            assert (yn - y1).abs().max() < 0.05 * y1.abs().max(), n
    # cost model: the rms readout costs c n_K more than the mean readout (squares)
    mean = model("mean").double()
    c, nK = 4, SCHED.widths[-1]
    assert adapt.model_macs(net) - adapt.model_macs(mean) == c * nK
    # the size check counts the entry's parameters before anything is allocated
    with pytest.raises(ValueError, match=r"^out_features: .* for the rms readout's weights"):
        model(rms, out=10**11)


def test_a_registered_readout_meets_the_option_checks(rms):
    with pytest.raises(ValueError, match=r"^head_hidden: applies to readout='mean' or 'pool' "):
        model(rms, head_hidden=8)
    with pytest.raises(ValueError, match="readout: 'rms' needs a state with channels"):
        SpaceTimeNet(SCHED, None, 3, kernel="basis", lift="identity", readout=rms)
    # channel compression keeps the channels of a readout without map_channels, and says why
    net = model(rms)
    x = torch.randn(64, 33, generator=torch.Generator().manual_seed(1))
    with pytest.raises(ValueError, match="cannot map the weights of the 'rms' readout"):
        adapt.rank_channels(net, x)
    _, summary = adapt.compress(net, x, tol=1e-3, metric="output", channels=True)
    assert any("channels kept" in m and "'rms' readout" in m for m in summary.moves)


def test_a_registered_readout_is_taken_by_the_options_and_the_cli(rms, tmp_path, capsys):
    opts = ModelOptions(kernel="conv", channels=4, lift="identity", readout=rms).check()
    assert opts.readout == rms
    with pytest.raises(SystemExit) as info:
        main(["train", "--help"])
    assert info.value.code == 0
    assert rms in capsys.readouterr().out
    out = tmp_path / "run"
    argv = ["train", "--dataset", "signals", "--schedule", "pyramid", "--widths", "65,17",
            "--kernel", "conv", "--channels", "4", "--readout", rms, "--out", str(out),
            *TINY]  # fmt: skip
    assert main(argv) == 0
    assert main(["evaluate", str(out)]) == 0
    run = load_run(out)
    assert run.model.readout_kind == rms and run.model.readout_entry is RMS


def test_the_readout_is_gone_after_the_fixture():
    assert "rms" not in READOUTS
    with pytest.raises(ValueError, match="readout: expected one of quadrature, mean, pool, "
                       "function; got 'rms'"):  # fmt: skip
        model("rms")


def test_pooled_heads_count_their_hidden_layer():
    """mean / pool with head_hidden H: c n_K for the means, then c H + H out (the two Linear
    layers of the exported head, counted from their weight shapes)."""
    for readout in ("mean", "pool"):
        plain, head = model(readout), model(readout, head_hidden=7)
        mlp = to_resnet(head).head.linear
        counted = sum(m.weight.numel() for m in mlp if isinstance(m, nn.Linear))
        plain_counted = to_resnet(plain).head.linear.weight.numel()
        assert adapt.model_macs(head) - adapt.model_macs(plain) == counted - plain_counted
