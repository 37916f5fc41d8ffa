"""What one training step minimises, the optimisers by name, the learning-rate schedules,
and [`evaluate`][spacetime_nets.training.evaluate]."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ..objectives import empirical_risk, l2_control, loss_per_sample, relative_error, turnpike_cost
from ..validation import check_int
from .data import Data, check_data, is_class_labels, model_outputs, resolve_loss
from .distributed import model_device, model_dtype, resolve_device

__all__ = ["LR_SCHEDULES", "OPTIMIZERS", "baselines", "evaluate"]

#: The named optimisers: name -> the class's name in ``torch.optim`` (looked up when the
#: optimiser is made). ``weight_decay`` is passed to the class as its own ``weight_decay``: an
#: L2 term lam * w added to the gradient for adam, sgd and rmsprop (torch's coupled decay, the
#: benchmark's ``torch.optim.Adam(weight_decay=...)``), the decoupled decay
#: w <- w - lr * lam * w for adamw.
OPTIMIZER_CLASSES: dict[str, str] = {
    "adam": "Adam",
    "adamw": "AdamW",
    "sgd": "SGD",
    "rmsprop": "RMSprop",
}
OPTIMIZERS = tuple(OPTIMIZER_CLASSES)
"""The optimiser names [`fit`][spacetime_nets.training.fit] takes: ``adam``, ``adamw``,
``sgd``, ``rmsprop`` (the ``torch.optim`` classes ``Adam``, ``AdamW``, ``SGD``,
``RMSprop``)."""


def _cosine_factor(step: int, total: int) -> float:
    """(1 + cos(pi * step / total)) / 2: from 1 at the first step to 0 after the last."""
    return 0.5 * (1.0 + math.cos(math.pi * min(step, total) / max(total, 1)))


#: the learning-rate schedules: name -> factor(step, total) multiplying the base rates
#: (None: the rates are left as they are)
_LR_FACTORS: dict[str, Callable[[int, int], float] | None] = {
    "constant": None,
    "cosine": _cosine_factor,
}
LR_SCHEDULES = tuple(_LR_FACTORS)
"""The learning-rate schedules of [`fit`][spacetime_nets.training.fit]: ``constant``, or
``cosine`` decay to 0 over all the steps."""


class Objective(nn.Module):
    """forward(x, y) -> (J, risk, lam * penalty, weight * turnpike, outputs ``[B, m]``) with
    J = E(outputs, y) + lam * int_0^T |u|^2 dt (+ weight * int_0^T E(x(t)) dt)."""

    def __init__(
        self, model: nn.Module, loss: str, p: float | None, lam: float, turnpike: float | None
    ) -> None:
        super().__init__()
        self.model = model
        self.loss, self.p, self.lam, self.turnpike = loss, p, lam, turnpike

    def forward(self, x: torch.Tensor, y: torch.Tensor, **grids: Any):
        """``grids``: ``input_grid`` (and ``output_grid``) of a batch sampled on another grid
        than the model's first one, passed to the model call (not with a turnpike weight)."""
        model = self.model
        zero = x.new_zeros(())
        if self.turnpike is not None:
            traj = model.trajectory(x)
            out = model.readout(traj.final)
            tp = self.turnpike * turnpike_cost(model, x, y, self.loss, self.p, trajectory=traj)
        else:
            out = model(x, **grids) if grids else model(x)
            tp = zero
        risk = empirical_risk(out, y, self.loss, self.p)
        pen = self.lam * l2_control(model) if self.lam else zero
        return risk + pen + tp, risk, pen, tp, out


def make_optimizer(
    optimizer: Any, model: nn.Module, lr: float, weight_decay: float = 0.0
) -> torch.optim.Optimizer:
    """An optimiser over the trainable parameters: a name of
    [`OPTIMIZERS`][spacetime_nets.training.OPTIMIZERS] (with ``lr`` and ``weight_decay``, see
    ``OPTIMIZER_CLASSES``), an Optimizer as it is, or a callable params -> Optimizer
    (``weight_decay`` must then be 0: set it on the optimiser)."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("model: it has no trainable parameters")
    if weight_decay and not isinstance(optimizer, str):
        raise ValueError(
            f"weight_decay: applies to a named optimiser ({', '.join(OPTIMIZERS)}); got "
            f"weight_decay={weight_decay:g} with {type(optimizer).__name__}: set the decay "
            "on that optimiser instead"
        )
    if isinstance(optimizer, torch.optim.Optimizer):
        return optimizer
    if isinstance(optimizer, str):
        cls = OPTIMIZER_CLASSES.get(optimizer)
        if cls is not None:
            return getattr(torch.optim, cls)(params, lr=lr, weight_decay=weight_decay)
        raise ValueError(
            f"optimizer: expected one of {', '.join(OPTIMIZERS)}, a torch.optim.Optimizer or "
            f"a callable params -> optimizer; got {optimizer!r}"
        )
    if callable(optimizer):
        opt = optimizer(params)
        if not isinstance(opt, torch.optim.Optimizer):
            raise ValueError(
                f"optimizer: the callable must return a torch.optim.Optimizer, got "
                f"{type(opt).__name__}"
            )
        return opt
    raise ValueError(f"optimizer: expected a name, an Optimizer or a callable, got {optimizer!r}")


def set_lr(opt: torch.optim.Optimizer, base: list[float], kind: str, step: int, total: int) -> None:
    """Learning rate of the step with index ``step`` (0-based) of ``total``: the base rate
    (constant), or cosine decay base * (1 + cos(pi * step / total)) / 2. A function of the step
    count only, so a resumed run uses the same rates."""
    factor_at = _LR_FACTORS[kind]
    if factor_at is None:
        return
    factor = factor_at(step, total)
    for group, b in zip(opt.param_groups, base):
        group["lr"] = b * factor


@torch.no_grad()
def evaluate(
    model: nn.Module,
    data: Any,
    loss: str | None = None,
    batch_size: int = 1024,
    device: str | torch.device | None = None,
    p: float | None = None,
) -> dict:
    """Mean loss and accuracy of ``model`` on ``data`` (x ``[N, in]``, y ``[N]`` labels or
    ``[N, m]`` targets; a pair, a Split or a Dataset), in batches, without gradients.

    The whole data set is checked first (finite inputs and targets, labels in range).

    Args:
        model: the model; its mode is restored afterwards.
        data: the data.
        loss: a name of ``objectives.LOSSES``; default cross_entropy for integer labels and
            mse otherwise.
        batch_size: rows per forward pass.
        device: where to compute (default the model's device).
        p: the exponent of the ``lp`` loss.

    Returns:
        ``{"loss": float, "accuracy": float | None, "rel_l2": float | None, "n": N}``;
            accuracy is the fraction of argmax predictions equal to the label (None for
            regression targets); rel_l2 the mean relative error
            (1/N) sum_i |z_i - y_i|_2 / |y_i|_2 over all entries of each sample, for regression
            targets of the outputs' shape (None otherwise).
    """
    data = data if isinstance(data, Data) else Data(data, "data")
    batch_size = check_int("batch_size", batch_size, 1)
    if device is not None:
        device = resolve_device(device)
    loss, p = resolve_loss(loss, data.peek_targets(), p)
    dtype = model_dtype(model)
    check_data(data, dtype, model_outputs(model), loss)
    return evaluate_checked(model, data, loss, batch_size, device, p)


@torch.no_grad()
def evaluate_checked(
    model: nn.Module,
    data: Data,
    loss: str,
    batch_size: int,
    device: str | torch.device | None,
    p: float | None,
) -> dict:
    """[`evaluate`][spacetime_nets.training.evaluate] on data already checked (the training loop's
    validation pass)."""
    device = torch.device(device) if device is not None else model_device(model)
    dtype = model_dtype(model)
    was_training = model.training
    model.eval()
    total, correct, classes, rel = 0.0, 0, None, 0.0
    try:
        for s in range(0, len(data), batch_size):
            idx = torch.arange(s, min(s + batch_size, len(data)))
            x, y = data.batch(idx, device, dtype)
            out = model(x)
            total += float(empirical_risk(out, y, loss, p)) * len(idx)
            if classes is None:
                classes = is_class_labels(y) and out.dim() == 2
            if classes:
                correct += int((out.argmax(-1) == y).sum())
            elif rel is not None and out.shape == y.shape and y.is_floating_point():
                rel += float(relative_error(out.double(), y.double()).sum())
            else:
                rel = None
    finally:
        model.train(was_training)
    n = len(data)
    return {
        "loss": total / n,
        "accuracy": correct / n if classes else None,
        "rel_l2": None if classes or rel is None else rel / n,
        "n": n,
    }


@torch.no_grad()
def baselines(train: Any, data: Any, loss: str | None = None, p: float | None = None) -> dict:
    """What two trivial predictors score on ``data`` (regression targets), the yardsticks of a
    trained model's numbers: the all-zeros prediction and the training mean
    ybar = (1/N_train) sum_i y_i (per entry, over the training targets).

    The relative L2 error of the zeros is 1 by definition, so what it says is its ``loss``
    (``zero_loss``); the training mean gives both its loss and its relative L2 error
    (1/N) sum_i |ybar - y_i|_2 / |y_i|_2 (``mean_rel_l2``): an operator model is worth its
    name when it is well below that. Two passes over the targets, no model.

    Args:
        train: the training data (a pair, a Split or a Dataset): its targets give ybar.
        data: the data to score (targets of ybar's shape).
        loss: a name of ``objectives.LOSSES`` (None: mse, as ``fit`` chooses for regression).
        p: the exponent of the ``lp`` / ``rel_lp`` loss.

    Returns:
        ``{"zero_loss", "mean_loss", "mean_rel_l2", "n"}``, or an empty dict when the
            targets are class labels or ybar's shape differs from ``data``'s targets.
    """
    train = train if isinstance(train, Data) else Data(train, "train")
    data = data if isinstance(data, Data) else Data(data, "data")
    loss, p = resolve_loss(loss, data.peek_targets(), p)
    if is_class_labels(train.peek_targets()) or is_class_labels(data.peek_targets()):
        return {}
    total, count = None, 0
    for _, _, y in train.chunks():
        s = y.double().sum(0)
        total = s if total is None else total + s
        count += y.shape[0]
    ybar = total / count
    zero = mean = rel = 0.0
    for _, _, y in data.chunks():
        y = y.double()
        if y.shape[1:] != ybar.shape:
            return {}
        z = ybar.to(y.device).expand_as(y)
        zero += float(loss_per_sample(torch.zeros_like(y), y, loss, p).sum())
        mean += float(loss_per_sample(z, y, loss, p).sum())
        rel += float(relative_error(z, y).sum())
    n = len(data)
    return {"zero_loss": zero / n, "mean_loss": mean / n, "mean_rel_l2": rel / n, "n": n}
