"""A kernel kind registered from outside the library, as one ``KernelKind`` entry, is taken by
the model, its option checks and size estimate, the export, the multiply-add count,
``runs.ModelOptions`` and the command line."""

from __future__ import annotations

import pytest
import torch

from grids import GridSchedule
from spacetime_nets import SpaceTimeNet, adapt, to_resnet
from spacetime_nets.cli import load_run, main
from spacetime_nets.kernels import ConvKernel
from spacetime_nets.models import (
    KERNEL_CHANNELS,
    KERNEL_OPTIONS,
    KERNEL_REGISTRY,
    KERNELS,
    KernelKind,
    KernelRequest,
    SizeRequest,
    register_kernel_kind,
)
from spacetime_nets.runs import ModelOptions

TINY = ["--samples", "80", "--steps", "2", "--epochs", "1", "--batch-size", "16", "--quiet"]


class GaussKernel(ConvKernel):
    """A continuous convolution with a Gaussian envelope: the conv kernel's windowed Legendre
    profile times exp(-4 |delta / r|^2), taps sampled (its own profile, not the hat averages
    of the conv kernel's Galerkin taps)."""

    def profile(self, delta: torch.Tensor, r: tuple[float, ...]) -> torch.Tensor:
        u2 = sum((delta[..., a] / r[a]) ** 2 for a in range(len(r)))
        return super().profile(delta, r) * torch.exp(-4.0 * u2)[..., None]


def build_gauss(req: KernelRequest) -> GaussKernel:
    opts = {"init_scale": req.init_scale, "generator": req.generator, "modes": req.modes}
    if req.pointwise is not None:
        opts["pointwise"] = req.pointwise
    return GaussKernel.for_schedule(req.schedule, radius=req.radius, taps="sampled", **opts)


def gauss_size(req: SizeRequest) -> tuple[int, str, str]:
    per = req.modes**req.schedule.dim
    pw = 1 if req.pointwise else 0
    size = sum(c * c * (per + pw) + c for c in req.channels[:-1])
    return req.by_modes(size, per, "the gauss kernel's coefficients")


GAUSS = KernelKind(
    "gauss",
    build_gauss,
    ("modes", "radius", "radius_spacings", "pointwise"),
    stationary=True,
    channels="required",
    default_modes=3,
    parameters=gauss_size,
)
SCHED = GridSchedule.hourglass(33, 17, 3)


@pytest.fixture()
def gauss():
    assert "gauss" not in KERNEL_REGISTRY
    register_kernel_kind(GAUSS)
    yield "gauss"
    del KERNEL_REGISTRY["gauss"]


def model(kernel, **kw) -> SpaceTimeNet:
    return SpaceTimeNet(SCHED, None, 3, kernel=kernel, form="inside", activation="tanh",
                        lift="identity", readout="mean", channels=4, seed=0, **kw)  # fmt: skip


def test_the_built_in_kinds_are_entries():
    assert tuple(KERNELS) == ("nodal", "basis", "neural", "conv", "spectral")
    assert not KERNEL_REGISTRY["nodal"].continuous and KERNEL_REGISTRY["conv"].stationary
    assert [KERNEL_REGISTRY[k].default_modes for k in ("conv", "basis")] == [3, 8]
    with pytest.raises(ValueError, match="options must be a tuple of modes"):
        register_kernel_kind(KernelKind("bad", build_gauss, ("width",)))
    with pytest.raises(ValueError, match="channels must be one of optional, required, any"):
        register_kernel_kind(KernelKind("bad", build_gauss, channels="some"))
    assert "bad" not in KERNEL_REGISTRY


def test_the_channel_rules_say_what_a_kind_takes():
    kinds = {rule: KernelKind("x", build_gauss, channels=rule) for rule in KERNEL_CHANNELS}
    facts = {rule: (k.needs_channels, k.one_channel_count) for rule, k in kinds.items()}
    assert KERNEL_CHANNELS == ("optional", "required", "any")
    assert facts == {"optional": (False, True), "required": (True, False), "any": (False, False)}
    rules = [KERNEL_REGISTRY[k].channels for k in KERNELS]
    assert rules == ["any", "optional", "optional", "required", "required"]
    for bad in (None, ["any"], "Any"):
        with pytest.raises(ValueError, match=r"kernel kind 'bad': channels must be one of"):
            register_kernel_kind(KernelKind("bad", build_gauss, channels=bad))
    assert "bad" not in KERNEL_REGISTRY


def test_a_registered_kind_builds_steps_exports_and_counts(gauss):
    assert gauss in KERNELS and "gauss" in KERNEL_OPTIONS["radius"]
    assert "gauss" not in KERNEL_OPTIONS["basis"]
    net = model(gauss, radius=0.2, modes=4).double()
    assert type(net.kernel) is GaussKernel and net.kernel_stationary and net.continuous
    assert net.kernel.modes == 4 and net.kernel.taps == "sampled"
    # the reference: a GaussKernel built here, passed as a Kernel instance, same parameters
    sched = SCHED.with_channels(4)
    built = GaussKernel.for_schedule(sched, radius=0.2, modes=4, taps="sampled")
    ref = model(built).double()
    ref.load_state_dict(net.state_dict())
    x = torch.randn(5, 33, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    with torch.no_grad():
        y = net(x)
        torch.testing.assert_close(y, ref(x), rtol=0, atol=0)
        # the Gaussian envelope matters: the conv kernel with these coefficients differs
        conv = model("conv", radius=0.2, modes=4).double()
        conv.load_state_dict(net.state_dict())
        assert (conv(x) - y).abs().max() > 1e-6
        torch.testing.assert_close(to_resnet(net)(x), y, rtol=1e-5, atol=1e-5)
    assert adapt.model_macs(net) > 0
    # the size estimate counts the kind's coefficients, before anything is allocated
    with pytest.raises(ValueError, match=r"^modes: .* of them for the gauss kernel's coeff"):
        model(gauss, modes=10**9)


def test_a_registered_kind_refuses_options_it_does_not_read(gauss):
    with pytest.raises(ValueError, match=r"^basis: applies to basis kernels only, got "
                       r"basis='fourier' with kernel='gauss'"):  # fmt: skip
        model(gauss, basis="fourier")
    with pytest.raises(ValueError, match="a gauss kernel needs channels"):
        SpaceTimeNet(SCHED, None, 3, kernel=gauss, lift="identity")
    with pytest.raises(ValueError, match=r"^basis: applies to basis kernels only"):
        ModelOptions(kernel=gauss, channels=4, basis="legendre").check()
    with pytest.raises(ValueError, match="channels: a gauss kernel needs --channels"):
        ModelOptions(kernel=gauss).check()


def test_a_registered_kind_is_taken_by_the_options_and_the_cli(gauss, tmp_path, capsys):
    opts = ModelOptions(kernel=gauss, channels=4, radius=0.2, lift="identity").check()
    assert opts.kernel == gauss and opts.basis is None
    with pytest.raises(SystemExit) as info:
        main(["train", "--help"])
    assert info.value.code == 0
    assert gauss in capsys.readouterr().out
    out = tmp_path / "run"
    argv = ["train", "--dataset", "signals", "--schedule", "pyramid", "--widths", "65,17",
            "--kernel", gauss, "--channels", "4", "--radius", "0.2", "--out", str(out),
            *TINY]  # fmt: skip
    assert main(argv) == 0
    assert main(["evaluate", str(out)]) == 0
    assert type(load_run(out).model.kernel) is GaussKernel


def test_the_kind_is_gone_after_the_fixture():
    assert "gauss" not in KERNELS and "gauss" not in KERNEL_OPTIONS["radius"]
    with pytest.raises(ValueError, match="kernel: expected one of nodal, basis, neural, conv, "
                       "spectral or a Kernel instance; got 'gauss'"):  # fmt: skip
        model("gauss")
