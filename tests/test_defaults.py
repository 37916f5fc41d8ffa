"""One source of defaults: SpaceTimeNet's signature. NeuralODE, integrate, the run file's
ModelOptions and the command line's train flags give the same model when nothing is said."""

from __future__ import annotations

import dataclasses
import inspect
import json

import pytest
import torch

from grids import GridSchedule
from spacetime_nets import NeuralODE, SpaceTimeNet
from spacetime_nets.cli import build_parser
from spacetime_nets.integrate import integrate
from spacetime_nets.runs import ModelOptions, RunConfig, build_model

SCHED = GridSchedule.from_widths([6, 6, 6, 6])


def keyword_defaults(fn) -> dict:
    return {
        n: p.default
        for n, p in inspect.signature(fn).parameters.items()
        if p.default is not inspect.Parameter.empty
    }


def test_every_entry_point_has_the_models_defaults():
    model = keyword_defaults(SpaceTimeNet.__init__)
    assert (model["form"], model["activation"], model["lift"]) == ("inside", "tanh", "cells")
    for fn in (NeuralODE.__init__, integrate):
        theirs = keyword_defaults(fn)
        assert (theirs["form"], theirs["activation"]) == (model["form"], model["activation"])
    options = {f.name: f.default for f in dataclasses.fields(ModelOptions)}
    shared = set(options) & set(model) - {"seed"}  # a run is seeded (0), the model need not be
    assert shared >= {"kernel", "form", "activation", "lift", "method", "readout", "init_scale"}
    for name in shared:
        assert options[name] == model[name], name
    args = build_parser().parse_args(["train", "--dataset", "circles"])
    for name in ("kernel", "form", "activation", "method", "init_scale"):
        assert getattr(args, name) == model[name], name


def test_the_default_model_is_the_inside_tanh_resnet():
    """Built with nothing said: X^{k+1} = X^k + dt (W^k tanh(X^k) + b^k), by hand."""
    net = SpaceTimeNet(SCHED, 6, 2, seed=0).double()
    x = torch.randn(4, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    h = x.clone()  # the cells lift of 6 features onto 6 nodes: the identity gather
    dt = 1.0 / 3
    with torch.no_grad():
        for sm in net.controls():
            (W, b), = sm.layers  # fmt: skip
            h = h + dt * (torch.tanh(h) @ W.T + b)  # W: quadrature weights folded in
        ref = h @ net.readout_matrix().T + net.readout_bias
        torch.testing.assert_close(net(x), ref, rtol=1e-12, atol=1e-12)


def test_a_version_1_run_file_keeps_the_defaults_it_was_written_with():
    config = RunConfig(6, 2, json.loads(SCHED.to_json()), ModelOptions().check())
    doc = config.to_dict()
    assert doc["version"] == 2 and doc["kwargs"]["lift"] == "cells"
    for key in ("form", "activation", "lift"):
        del doc["kwargs"][key]
    assert RunConfig.from_dict(doc).model.lift == "cells"
    old = RunConfig.from_dict({**doc, "version": 1}).model
    assert (old.form, old.activation, old.lift) == ("inside", "tanh", "linear")
    assert build_model(RunConfig.from_dict({**doc, "version": 1})).lift_kind == "linear"
    with pytest.raises(ValueError, match="version 3 is not supported"):
        RunConfig.from_dict({**doc, "version": 3})


def test_an_old_run_file_drops_the_kernel_options_its_kernel_never_read():
    """model.json once held modes=8 and basis='legendre' for every kernel: a kernel that does
    not read them gets them dropped; one that reads them keeps them."""
    doc = RunConfig(6, 2, json.loads(SCHED.to_json()), ModelOptions().check()).to_dict()
    doc["kwargs"].update(modes=8, basis="legendre")
    nodal = RunConfig.from_dict(doc).model
    assert (nodal.modes, nodal.basis) == (None, None)
    doc["kwargs"]["kernel"] = "neural"  # reads modes, not basis
    neural = RunConfig.from_dict(doc).model
    assert (neural.modes, neural.basis) == (8, None)
    doc["kwargs"]["kernel"] = "basis"
    basis = RunConfig.from_dict(doc).model
    assert (basis.modes, basis.basis) == (8, "legendre")
    doc["kwargs"].update(kernel="nodal", modes=6)  # not the old default: refused, not dropped
    with pytest.raises(ValueError, match="modes: applies to"):
        RunConfig.from_dict(doc)
