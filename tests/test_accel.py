"""spacetime_nets.accel on the CPU: compiled models against eager ones, the CUDA-graph path's
fallback, bf16 autocast against float32, and the argument checks.

Compiled models are compared with the same model run eagerly (outputs and gradients of every
parameter): the compiler is the thing under test, eager PyTorch the reference. The capture is
checked with the ``aot_eager`` backend (dynamo + AOTAutograd, no code generation: it needs no
C++ compiler and is exact); one tiny model also goes through inductor, skipped only when
:func:`accel.compile_unavailable` names a missing capability (no C++ compiler). Tests marked
``cuda`` record real CUDA graphs and run only on a GPU machine (benchmarks/gpu_check.py).
"""

from __future__ import annotations

import copy
import importlib
import math
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import grids
import spacetime_nets as st
from spacetime_nets import accel

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

#: bf16 keeps 8 significant bits (unit roundoff u = 2^-8 = 3.9e-3). Every product of the small
#: models below rounds its operands once; the loss is an average of many such rounded terms,
#: so its relative error stays a small multiple of u. Stated tolerances: loss 1e-2 (2.5 u),
#: gradient (relative 2-norm over all parameters) 2e-2 (5 u).
BF16_LOSS_RTOL = 1e-2
BF16_GRAD_RTOL = 2e-2


def _scalar_model(kernel: str = "basis", checkpoint: int | None = None, n: int = 16, K: int = 4):
    sched = grids.GridSchedule.constant(n, K, T=1.0)
    return st.SpaceTimeNet(
        sched,
        n,
        3,
        kernel=kernel,
        form="outside",
        activation="tanh",
        lift="identity",
        modes=None if kernel == "nodal" else 4,  # a nodal kernel reads no modes
        seed=0,
        checkpoint=checkpoint,
    )


def _channel_model(kernel: str, checkpoint: int | None = None, n: int = 16, K: int = 2):
    sched = grids.GridSchedule.constant(n, K, T=1.0, domain=(0.0, 1.0), rule="periodic")
    return st.SpaceTimeNet(
        sched,
        None,
        1,
        kernel=kernel,
        form="inside",
        activation="gelu",
        lift="identity",
        readout="function",
        channels=3,
        modes=3,
        radius=0.15 if kernel == "conv" else None,  # the conv window; spectral has none
        seed=0,
        checkpoint=checkpoint,
    )


def _out_and_grads(model, fn, x):
    out = fn(x)
    grads = torch.autograd.grad(out.square().sum(), list(model.parameters()))
    return out.detach(), grads


def _assert_same(a, b, atol=1e-6):
    assert a.shape == b.shape and a.dtype == b.dtype
    torch.testing.assert_close(a, b, rtol=1e-5, atol=atol)


@pytest.fixture
def dynamo_reset():
    yield
    torch._dynamo.reset()  # drop compiled graphs (and their guards) after the test


# ------------------------------------------------------------------------ argument checks
@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: accel.check_precision("fp16"), "fp16.*loss scaling"),
        (lambda: accel.check_precision("half"), "precision: expected one of fp32, bf16"),
        (lambda: accel.check_precision(None), "precision"),
        (lambda: accel.check_compile_mode("fast"), "mode: expected None or one of"),
        (lambda: accel.compile_model("net"), "model: expected a torch.nn.Module, got str"),
        (lambda: accel.compile_model(torch.nn.Linear(2, 2), dynamic="yes"), "dynamic"),
        (
            lambda: accel.compile_model(torch.nn.Linear(2, 2), "cuda-graphs", backend="eager"),
            "backend: the 'cuda-graphs' mode uses no compiler",
        ),
        (
            lambda: accel.compile_model(torch.nn.Linear(2, 2), "cuda-graphs", dynamic=True),
            "dynamic: the 'cuda-graphs' mode uses no compiler",
        ),
        (
            lambda: accel.compile_model(torch.nn.Linear(2, 2), "default", max_graphs=2),
            "max_graphs: only for mode='cuda-graphs'",
        ),
        (lambda: accel.GraphedModule(torch.nn.Linear(2, 2), max_graphs=0), "max_graphs"),
        (lambda: accel.mixed_precision("bf16", "not-a-device"), "device"),
        (
            lambda: accel.mixed_precision("bf16", "cpu", torch.nn.Linear(2, 2).double()),
            "bf16.*float32 model.*float64",
        ),
        (
            lambda: accel.train_step(torch.nn.Linear(2, 2), F.mse_loss, "adam"),
            "optimizer: expected a torch.optim.Optimizer",
        ),
        (
            lambda: accel.train_step(torch.nn.Linear(2, 2), "mse", None),
            "loss_fn: expected a callable",
        ),
    ],
)
def test_bad_arguments_raise_value_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_mode_aliases_and_eager_mode_returns_the_model():
    assert accel.check_compile_mode(None) is None and accel.check_compile_mode(False) is None
    assert accel.check_compile_mode(True) == "default"
    net = torch.nn.Linear(2, 2)
    assert accel.compile_model(net, None) is net


def test_graphed_module_takes_positional_tensors_only():
    g = accel.GraphedModule(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="positional tensors only.*keywords"):
        g(x=torch.zeros(1, 2))
    with pytest.raises(ValueError, match="positional tensors only.*list"):
        g([0.0, 1.0])


# ------------------------------------------------------------------------ compile fallbacks
def test_compile_unavailable_names_the_missing_capability(monkeypatch):
    if not torch.cuda.is_available():
        assert "no CUDA device" in accel.compile_unavailable("inductor", "cuda")
    monkeypatch.setattr(accel.shutil, "which", lambda name: None)
    assert "C/C++ compiler" in accel.compile_unavailable("inductor", "cpu")
    assert accel.compile_unavailable("aot_eager", "cpu") is None  # needs no compiler


def test_compile_model_falls_back_to_eager_with_a_warning_or_raises_when_strict(monkeypatch):
    monkeypatch.setattr(accel, "compile_unavailable", lambda backend, device: "no compiler")
    model = _scalar_model(n=8, K=2)
    with pytest.warns(RuntimeWarning, match="running eagerly.*no compiler"):
        assert accel.compile_model(model, "reduce-overhead") is model
    with pytest.raises(RuntimeError, match="cannot run here: no compiler"):
        accel.compile_model(model, "default", strict=True)


def test_cuda_graph_path_falls_back_to_eager_on_the_cpu():
    """On the CPU the graph path runs the model itself: same outputs and gradients as the
    plain model, under .train() and .eval(), at two batch sizes, with checkpointing."""
    model = _scalar_model(checkpoint=2)
    graphed = accel.compile_model(model, "cuda-graphs")
    assert isinstance(graphed, accel.GraphedModule)
    assert list(graphed.parameters()) == list(model.parameters())  # shared, not copied
    gen = torch.Generator().manual_seed(0)
    for B in (5, 9):
        x = torch.randn(B, 16, generator=gen)
        out_g, grads_g = _out_and_grads(model, graphed, x)
        out_e, grads_e = _out_and_grads(model, model, x)
        _assert_same(out_g, out_e)
        for a, b in zip(grads_g, grads_e):
            _assert_same(a, b)
    graphed.eval()
    assert not model.training
    with torch.no_grad():
        _assert_same(graphed(x), model(x))
    assert not graphed.captured and graphed.num_graphs == 0
    assert "CUDA graphs need a CUDA device" in graphed.fallback_reason


def test_float64_models_stay_float64_and_refuse_bf16():
    """dtype handling: the graph path and fp32 training steps keep a float64 model float64
    (same numbers as the plain model); bf16 refuses it instead of silently doing nothing."""
    model = _scalar_model(n=8, K=2).double()
    x = torch.randn(4, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(9))
    graphed = accel.compile_model(model, "cuda-graphs")
    assert graphed(x).dtype == torch.float64
    assert torch.equal(graphed(x), model(x))
    with pytest.raises(ValueError, match="x: expected dtype torch.float64"):
        graphed(x.float())  # the model's own input check still applies
    y = torch.zeros(4, 3, dtype=torch.float64)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with torch.no_grad():
        before = ((model(x) - y) ** 2).mean()  # the loss at the parameters before the step
    loss = accel.train_step(model, F.mse_loss, opt)(x, y)
    assert loss.dtype == torch.float64
    torch.testing.assert_close(loss, before, rtol=1e-12, atol=0)
    with pytest.raises(ValueError, match="bf16.*float32 model.*float64"):
        accel.train_step(model, F.mse_loss, opt, precision="bf16")


def test_cuda_graph_path_runs_eagerly_where_recording_is_refused(monkeypatch):
    """Where CUDA refuses an operation during capture, that signature runs eagerly (one
    warning, same numbers); any other error of the recording propagates. Simulated on the CPU
    by letting the wrapper try to record and making the recorder fail."""
    model = _scalar_model(n=8, K=2)
    graphed = accel.GraphedModule(model)
    monkeypatch.setattr(graphed, "_why_eager", lambda args: None)
    calls = []

    def refuse(entry, samples, **kwargs):
        calls.append(tuple(s.shape for s in samples))
        raise RuntimeError("CUDA error: operation not permitted when stream is capturing")

    monkeypatch.setattr(torch.cuda, "make_graphed_callables", refuse)
    x = torch.randn(4, 8, generator=torch.Generator().manual_seed(10))
    with pytest.warns(RuntimeWarning, match="running eagerly.*not permitted when stream"):
        out = graphed(x)
    assert torch.equal(out, model(x))
    assert torch.equal(graphed(x), model(x))  # the same signature: no second attempt
    assert calls == [((4, 8),)] and not graphed.captured
    assert "could not be recorded" in graphed.fallback_reason

    def broken(entry, samples, **kwargs):
        raise RuntimeError("deliberate failure of the model")

    monkeypatch.setattr(torch.cuda, "make_graphed_callables", broken)
    with pytest.raises(RuntimeError, match="deliberate failure"):
        graphed(torch.randn(5, 8))


def test_cuda_graph_signatures_separate_inference_mode_and_moves_record_again(monkeypatch):
    """The recording bookkeeping, with a recorder that runs the model eagerly: no_grad and
    inference_mode get separate recordings (a tensor recorded in inference mode cannot be
    written outside it), and moving the wrapper drops every recording (the parameters then
    live at new addresses, which a replay would not see)."""
    model = _scalar_model(n=8, K=2)
    graphed = accel.GraphedModule(model)
    monkeypatch.setattr(graphed, "_why_eager", lambda args: None)
    recorded = []

    def record(entry, samples, **kwargs):
        recorded.append((torch.is_inference_mode_enabled(), kwargs))
        return entry

    monkeypatch.setattr(torch.cuda, "make_graphed_callables", record)
    x = torch.randn(4, 8, generator=torch.Generator().manual_seed(11))
    with torch.no_grad():
        graphed(x)
        graphed(x)
    with torch.inference_mode():
        out = graphed(x)
    assert [r[0] for r in recorded] == [False, True] and graphed.num_graphs == 2
    assert all(r[1].get("allow_unused_input") for r in recorded)
    graphed.double()
    assert graphed.num_graphs == 0
    with torch.no_grad():
        again = graphed(x.double())
    assert len(recorded) == 3
    torch.testing.assert_close(again, out.double(), rtol=1e-6, atol=1e-6)


# ------------------------------------------------------------------------ torch.compile
@pytest.mark.slow
def test_compiled_channel_model_matches_eager(dynamo_reset):
    """A conv channel model with checkpoint=1 traced by dynamo + AOTAutograd: outputs and
    parameter gradients equal eager ones at batch 4, then at batch 6 (a re-trace with a
    symbolic batch), then in eval mode without grad."""
    if accel.compile_unavailable("aot_eager", "cpu") is not None:  # pragma: no cover
        pytest.skip(accel.compile_unavailable("aot_eager", "cpu"))
    model = _channel_model("conv", checkpoint=1)
    compiled = accel.compile_model(model, "reduce-overhead", backend="aot_eager")
    assert compiled is not model
    gen = torch.Generator().manual_seed(1)
    for B in (4, 6):
        x = torch.randn(B, 16, generator=gen)
        out_c, grads_c = _out_and_grads(model, compiled, x)
        out_e, grads_e = _out_and_grads(model, model, x)
        assert out_c.shape == (B, 16)
        _assert_same(out_c, out_e)
        for a, b in zip(grads_c, grads_e):
            _assert_same(a, b)
    compiled.eval()
    assert not model.training
    with torch.no_grad():
        _assert_same(compiled(x), model(x))
    compiled.train()
    assert model.training


@pytest.mark.slow
def test_inductor_forward_matches_eager(dynamo_reset):
    """Generated code (inductor, C++ on the CPU) for the smallest model: one nodal step."""
    why = accel.compile_unavailable("inductor", "cpu")
    if why is not None:
        pytest.skip(why)
    model = _scalar_model("nodal", n=4, K=1)
    compiled = accel.compile_model(model, "default", strict=True)
    x = torch.randn(3, 4, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), model(x), rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------------ mixed precision
@pytest.mark.parametrize(
    "make",
    [
        lambda: _scalar_model("nodal"),
        lambda: _scalar_model("basis"),
        lambda: _channel_model("conv", K=4),
        lambda: _channel_model("spectral", K=4),
    ],
    ids=["nodal", "basis", "conv", "spectral"],
)
def test_bf16_loss_and_gradient_match_float32(make):
    model = make()
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(32, 16, generator=gen)
    y = torch.randn(model(x).shape, generator=gen)
    params = list(model.parameters())
    loss = F.mse_loss(model(x), y)
    grad = torch.cat([g.flatten() for g in torch.autograd.grad(loss, params)])
    with accel.mixed_precision("bf16", model, model) as mp:
        assert mp.enabled and torch.is_autocast_enabled("cpu")
        out = model(x)
    assert not torch.is_autocast_enabled("cpu")
    loss_b = F.mse_loss(out.float(), y)
    grad_b = torch.cat([g.flatten() for g in torch.autograd.grad(loss_b, params)])
    assert loss_b.item() != loss.item()  # the products did run in bf16
    assert abs(loss_b.item() - loss.item()) <= BF16_LOSS_RTOL * abs(loss.item())
    assert grad_b.dtype == torch.float32
    assert (grad_b - grad).norm() <= BF16_GRAD_RTOL * grad.norm()


def test_fp32_precision_changes_nothing():
    model = _scalar_model()
    x = torch.randn(4, 16, generator=torch.Generator().manual_seed(4))
    with accel.mixed_precision("fp32", model) as mp:
        assert not mp.enabled and not torch.is_autocast_enabled("cpu")
        out = model(x)
    assert torch.equal(out, model(x))


def test_precision_is_a_checked_name():
    """``PRECISIONS`` lists the accepted names; a context keeps its precision as a name, and
    setting another checks it with the messages of ``check_precision``."""
    assert accel.PRECISIONS == ("fp32", "bf16")
    assert accel.check_precision("bf16") == "bf16"
    mp = accel.mixed_precision("bf16")
    assert mp.precision == "bf16" and mp.enabled
    assert repr(mp) == "mixed_precision('bf16', device='cpu')"
    mp.precision = "fp32"
    assert mp.precision == "fp32" and not mp.enabled
    with pytest.raises(ValueError, match="'fp16' is not supported.*loss scaling"):
        mp.precision = "fp16"
    with pytest.raises(ValueError, match=r"expected one of fp32, bf16; got \['bf16'\]"):
        accel.check_precision(["bf16"])
    assert mp.precision == "fp32"


@pytest.mark.slow
def test_compiled_bf16_train_step_matches_eager(dynamo_reset):
    """The bf16 autocast of a training step traced by dynamo + AOTAutograd (aot_eager) gives
    the losses and parameters of the same step run eagerly."""
    if accel.compile_unavailable("aot_eager", "cpu") is not None:  # pragma: no cover
        pytest.skip(accel.compile_unavailable("aot_eager", "cpu"))
    model = _scalar_model("basis", n=8, K=2)
    ref = copy.deepcopy(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    ref_opt = torch.optim.SGD(ref.parameters(), lr=0.1)
    step = accel.train_step(
        model, F.mse_loss, opt, precision="bf16", compile="default", backend="aot_eager"
    )
    ref_step = accel.train_step(ref, F.mse_loss, ref_opt, precision="bf16")
    gen = torch.Generator().manual_seed(7)
    for _ in range(2):
        x = torch.randn(4, 8, generator=gen)
        y = torch.randn(4, 3, generator=gen)
        torch.testing.assert_close(step(x, y), ref_step(x, y), rtol=1e-6, atol=0)
    for p, q in zip(model.parameters(), ref.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7)


def test_bf16_training_keeps_parameters_and_grid_buffers_float32():
    """Training steps under bf16 (with checkpointing, whose backward recomputes under the
    same autocast) leave every parameter, gradient and grid buffer float32, and match a
    training loop written here with torch.autocast directly."""
    model = _scalar_model("basis", checkpoint=2)
    ref = copy.deepcopy(model)
    buffers_before = {k: v.clone() for k, v in model.named_buffers()}
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    ref_opt = torch.optim.SGD(ref.parameters(), lr=0.1)
    step = accel.train_step(model, F.mse_loss, opt, precision="bf16", compile="cuda-graphs")
    gen = torch.Generator().manual_seed(5)
    for B in (8, 8, 5):
        x = torch.randn(B, 16, generator=gen)
        y = torch.randn(B, 3, generator=gen)
        loss = step(x, y)
        ref_opt.zero_grad()
        with torch.autocast("cpu", torch.bfloat16):
            out = ref(x)
        ref_loss = F.mse_loss(out.float(), y)
        ref_loss.backward()
        ref_opt.step()
        assert loss.dtype == torch.float32 and not loss.requires_grad
        torch.testing.assert_close(loss, ref_loss.detach(), rtol=1e-6, atol=0)
    for p, q in zip(model.parameters(), ref.parameters()):
        assert p.dtype == torch.float32 and p.grad.dtype == torch.float32
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7)
    assert buffers_before
    for name, buf in model.named_buffers():
        assert buf.dtype == buffers_before[name].dtype
        if buf.is_floating_point():
            assert buf.dtype == torch.float32, name
        assert torch.equal(buf, buffers_before[name]), name  # grids are not trained


def test_train_step_fp32_matches_a_hand_written_loop():
    model = _channel_model("spectral")
    ref = copy.deepcopy(model)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    ref_opt = torch.optim.Adam(ref.parameters(), lr=1e-2)
    step = accel.train_step(model, F.mse_loss, opt, grad_clip=0.5)
    gen = torch.Generator().manual_seed(6)
    for _ in range(3):
        x = torch.randn(6, 16, generator=gen)
        y = torch.randn(6, 16, generator=gen)
        loss = step(x, y)
        ref_opt.zero_grad()
        ref_loss = F.mse_loss(ref(x), y)
        ref_loss.backward()
        torch.nn.utils.clip_grad_norm_(ref.parameters(), 0.5)
        ref_opt.step()
        torch.testing.assert_close(loss, ref_loss.detach(), rtol=1e-6, atol=0)
    for p, q in zip(model.parameters(), ref.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7)


# ------------------------------------------------------------------------ benchmark plumbing
def test_throughput_benchmark_roofline_and_compiled_columns(dynamo_reset, capsys):
    """bench_throughput's roofline (a measured matmul peak) and its --compile column, traced
    with aot_eager on one tiny case: the compiled loop is checked against eager there."""
    bench = Path(__file__).resolve().parents[1] / "benchmarks"
    sys.path.insert(0, str(bench))
    try:
        mod = importlib.import_module("bench_throughput")
        args = "--threads 1 --widths 16 --batches 8 --steps 2 --repeats 1 --inner 1"
        args += " --peak-size 64 --compile --backend aot_eager"
        rows = mod.main(args.split())
    finally:
        sys.path.remove(str(bench))
    (row,) = rows
    assert row["same"], row
    for key in ("peak_gflops", "roofline", "compiled_s", "compiled_ratio", "compiled_roofline"):
        assert math.isfinite(row[key]) and row[key] > 0, (key, row)
    # the roofline column is the step's rate over the peak printed in the same run
    assert row["roofline"] == pytest.approx(row["gflops"] / row["peak_gflops"])
    out = capsys.readouterr().out
    assert "peak (roofline)" in out and "% of peak" in out and "compiled/eager" in out


# ------------------------------------------------------------------------ on a GPU
@pytest.mark.cuda
@cuda
def test_cuda_graphs_match_eager_on_cuda():
    """Recorded forward and backward graphs replay the eager results: two batch sizes (two
    recordings), .train() and .eval(), checkpointing, channels."""
    for make in (lambda: _scalar_model(checkpoint=2), lambda: _channel_model("conv")):
        model = make().cuda()
        graphed = accel.compile_model(model, "cuda-graphs")
        gen = torch.Generator().manual_seed(7)
        for B in (8, 5, 8):
            x = torch.randn(B, 16, generator=gen).cuda()
            out_g, grads_g = _out_and_grads(model, graphed, x)
            out_e, grads_e = _out_and_grads(model, model, x)
            torch.testing.assert_close(out_g, out_e, rtol=1e-5, atol=1e-5)
            for a, b in zip(grads_g, grads_e):
                torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
        assert graphed.captured and graphed.num_graphs == 2
        graphed.eval()
        with torch.no_grad():
            torch.testing.assert_close(graphed(x), model(x), rtol=1e-5, atol=1e-5)
        assert graphed.num_graphs == 3


@pytest.mark.cuda
@cuda
def test_bf16_train_step_with_cuda_graphs_on_cuda():
    model = _scalar_model("basis").cuda()
    ref = copy.deepcopy(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    ref_opt = torch.optim.SGD(ref.parameters(), lr=0.1)
    step = accel.train_step(model, F.mse_loss, opt, precision="bf16", compile="cuda-graphs")
    gen = torch.Generator().manual_seed(8)
    for _ in range(3):
        x = torch.randn(16, 16, generator=gen).cuda()
        y = torch.randn(16, 3, generator=gen).cuda()
        loss = step(x, y)
        ref_opt.zero_grad()
        with torch.autocast("cuda", torch.bfloat16):
            out = ref(x)
        ref_loss = F.mse_loss(out.float(), y)
        ref_loss.backward()
        ref_opt.step()
        torch.testing.assert_close(loss, ref_loss.detach(), rtol=1e-3, atol=1e-5)
    assert all(p.dtype == torch.float32 for p in model.parameters())


@pytest.mark.parametrize("kernel", ["basis", "neural"])
def test_step_operators_stay_float32_under_bf16(kernel):
    """The controls W^k are assembled in the parameters' precision even under autocast."""
    from spacetime_nets.ops import op_tensors

    model = st.SpaceTimeNet(
        grids.GridSchedule.constant(9, 2),
        9,
        2,
        kernel=kernel,
        form="inside",
        activation="tanh",
        lift="identity",
        modes=4,
        seed=0,
    )
    with accel.mixed_precision("bf16", model, model):
        for sm in model.controls():
            for op in sm.layers:
                assert all(t.dtype == torch.float32 for t in op_tensors(op))


@pytest.mark.parametrize("kernel", ["basis", "conv", "nodal"])
def test_control_cost_is_float32_under_bf16(kernel):
    """The L2 control penalty (Gram products of factored basis operators, a convolution of
    the weights for conv kernels) is the float32 value also inside bf16 autocast."""
    from spacetime_nets.objectives import l2_control

    sched = grids.GridSchedule.constant(40, 3)
    extra = {"channels": 4, "radius": 0.2} if kernel == "conv" else {"lift": "identity"}
    if kernel == "conv":
        sched = sched.with_channels(4)
    model = st.SpaceTimeNet(sched, 40, 2, kernel=kernel, seed=0, **extra)
    if kernel == "basis":
        assert type(model.controls()[0].layers[0]).__name__ == "LowRankOp"
    ref = l2_control(model).detach()
    with accel.mixed_precision("bf16", model, model):
        got = l2_control(model).detach()
    assert got.dtype == torch.float32
    assert torch.equal(got, ref)


@pytest.mark.parametrize("n", [32, 300])
def test_states_stay_float32_under_bf16(n):
    """Narrow changing layers (the shortcut as a dense product) and wide ones (the stencil)
    both keep the state, a residual sum, in float32 under bf16 autocast, with the same
    shortcut values as without autocast."""
    sched = grids.GridSchedule.hourglass(n, n // 2, 4)
    model = st.SpaceTimeNet(sched, n, 2, kernel="nodal", lift="identity", seed=0)
    x = torch.randn(3, n)
    with accel.mixed_precision("bf16", model, model):
        traj = model.trajectory(x)
    assert [s.dtype for s in traj.states] == [torch.float32] * 5
    disc = model.disc
    with accel.mixed_precision("bf16", model, model):
        got = disc.grid_transfer(0, x)
    torch.testing.assert_close(got, x @ disc.transfer_matrix(0).T, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("kind", ["linear-lift", "conv-channels"])
def test_states_after_a_lift_stay_float32_under_bf16(kind):
    """A lift's product hands the first state over in bf16; the step loop keeps the residual
    sums in float32 from there on (constant grids: no shortcut would promote them)."""
    sched = grids.GridSchedule.constant(16, 3)
    if kind == "linear-lift":
        model = st.SpaceTimeNet(sched, 5, 2, kernel="nodal", lift="linear", seed=0)
        x = torch.randn(3, 5)
    else:
        sched = sched.with_channels(4)
        model = st.SpaceTimeNet(sched, 16, 2, kernel="conv", channels=4, radius=0.2, seed=0)
        x = torch.randn(3, 16)
    with accel.mixed_precision("bf16", model, model):
        traj = model.trajectory(x)
        y = model(x)
    assert [s.dtype for s in traj.states] == [torch.float32] * 4
    torch.testing.assert_close(y.float(), model(x), rtol=2e-2, atol=2e-2)


def test_fit_in_bf16_matches_float32_within_the_stated_tolerance():
    """fit(..., precision="bf16"): each epoch's training loss within BF16_LOSS_RTOL (relative) of
    the float32 run, and the parameters stay float32."""
    from spacetime_nets import datasets
    from spacetime_nets.training import fit

    data = datasets.load("circles", seed=0)
    losses = {}
    for prec in ("fp32", "bf16"):
        model = st.SpaceTimeNet(
            grids.GridSchedule.constant(16, 4),
            2,
            2,
            kernel="basis",
            form="inside",
            activation="tanh",
            lift="linear",
            modes=4,
            seed=0,
        )
        hist = fit(model, data.train, epochs=2, batch_size=64, precision=prec, progress=False)
        losses[prec] = hist.column("loss")
        assert all(p.dtype == torch.float32 for p in model.parameters())
    for a, b in zip(losses["fp32"], losses["bf16"]):
        assert abs(a - b) <= BF16_LOSS_RTOL * abs(a)
    assert losses["fp32"] != losses["bf16"]  # autocast did run
    with pytest.raises(ValueError, match="precision"):
        fit(model, data.train, epochs=1, batch_size=64, precision="fp16", progress=False)
    with pytest.raises(ValueError, match="compile"):
        fit(model, data.train, epochs=1, batch_size=64, compile="fastest", progress=False)
