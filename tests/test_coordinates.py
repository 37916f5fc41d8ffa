"""A lift that sees the coordinates: X^0(xi) = L x(xi) + L_xi xi + l, checked against NumPy,
across resolutions and through export."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from grids import GridSchedule
from spacetime_nets import SpaceTimeNet, to_resnet
from spacetime_nets.runs import ModelOptions

BOX2 = ((0.0, 1.0), (0.0, 2.0))


def model(shape=(9, 13), kernel="spectral", **kw) -> SpaceTimeNet:
    sched = GridSchedule.constant(shape, 2, domain=BOX2 if len(shape) == 2 else (0.0, 1.0))
    opts = {"modes": 3} if kernel == "spectral" else {"radius_spacings": 2}
    return SpaceTimeNet(sched, None, 1, kernel=kernel, form="inside", activation="gelu",
                        lift="identity", readout="function", channels=4, in_channels=2,
                        coordinates=True, seed=0, **opts, **kw)  # fmt: skip


def test_lift_adds_an_affine_field_of_the_coordinates():
    m = model().double()
    assert m.lift_weight.shape == (4, 2 + 2)
    x = torch.randn(3, 2, 9 * 13, dtype=torch.float64)
    nodes = m.schedule.grids[0].nodes.double().numpy()  # [n, 2]
    W, b = m.lift_weight.detach().numpy(), m.lift_bias.detach().numpy()
    ref = (
        np.einsum("oc,bcn->bon", W[:, :2], x.numpy())
        + (W[:, 2:] @ nodes.T)[None]
        + b[None, :, None]
    )
    np.testing.assert_allclose(m.lift(x).detach().numpy(), ref, rtol=1e-12, atol=1e-12)


def test_the_coordinate_field_is_the_same_function_at_every_resolution():
    m = model().double()
    fine = m.at_resolution((17, 25))
    x = torch.randn(2, 2, 17, 25, dtype=torch.float64)
    coarse_x = x[..., ::2, ::2].reshape(2, 2, -1)
    lifted_fine = fine.lift(x.reshape(2, 2, -1)).reshape(2, 4, 17, 25)
    lifted = m.lift(coarse_x).reshape(2, 4, 9, 13)
    torch.testing.assert_close(lifted_fine[..., ::2, ::2], lifted, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kernel, shape", [("spectral", (9, 13)), ("conv", (33,))])
def test_export_carries_the_coordinate_field(kernel, shape):
    m = model(shape, kernel)
    for net in (m, m.at_resolution(tuple(2 * (s - 1) + 1 for s in shape))):
        x = torch.randn(2, 2, *net.schedule.grids[0].shape)
        r = to_resnet(net)
        torch.testing.assert_close(r(x), net(x), rtol=1e-5, atol=1e-5)
    # without the field the export differs: the test sees it
    r = to_resnet(m)
    r.lift.field = None
    x = torch.randn(2, 2, *m.schedule.grids[0].shape)
    assert (r(x) - m(x)).abs().max() > 1e-3


def test_coordinates_need_a_channel_function_input():
    sched = GridSchedule.constant(9, 2)
    with pytest.raises(ValueError, match="coordinates: .* need channels=... and lift='identity'"):
        SpaceTimeNet(sched, 9, 1, kernel="conv", channels=2, lift="cells", coordinates=True)
    with pytest.raises(ValueError, match="without channels"):
        SpaceTimeNet(sched, None, 1, kernel="basis", lift="identity", coordinates=True)
    with pytest.raises(ValueError, match="coordinates: expected True or False, got 'yes'"):
        SpaceTimeNet(sched, None, 1, kernel="conv", channels=2, lift="identity",
                     coordinates="yes")  # fmt: skip
    with pytest.raises(ValueError, match="coordinates: expected True or False, got 1"):
        ModelOptions(kernel="conv", channels=2, coordinates=1).check()
