"""The whole data set is checked once, before the first update: a bad row is named by its
index in the data set, no parameter has changed when the error comes, and bad data are never
reported as a training failure."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import Dataset

from grids import GridSchedule
from spacetime_nets import SpaceTimeNet
from spacetime_nets.training import TrainingDiverged, evaluate, fit
from spacetime_nets.validation import check_bool, check_int, check_real, first_nonfinite

N, BATCH = 48, 16


def make_model(out: int = 3) -> SpaceTimeNet:
    sched = GridSchedule.hourglass(6, 3, 2)
    return SpaceTimeNet(sched, 2, out, kernel="nodal", form="inside", activation="tanh",
                        lift="linear", seed=0)  # fmt: skip


def xy():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(N, 2, generator=g)
    return x, torch.randint(0, 3, (N,), generator=g)


def run(model, train, val=None, epochs: int = 2):
    return fit(model, train, val, epochs=epochs, batch_size=BATCH, device="cpu", progress=False)


def assert_untouched(model, train, val=None, match: str = ""):
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    with pytest.raises(ValueError, match=match):
        run(model, train, val)
    for k, v in model.named_parameters():
        assert torch.equal(v, before[k]), f"{k} changed before the error"


def test_nan_in_a_late_row_is_named_by_its_data_set_index():
    x, y = xy()
    x[40, 1] = float("nan")
    # the row is not in the first batch of the first epoch (seed 0 shuffles with seed + 0)
    first_batch = torch.randperm(N, generator=torch.Generator().manual_seed(0))[:BATCH]
    assert 40 not in first_batch.tolist()
    assert_untouched(make_model(), (x, y), match=r"train: x is not finite at row 40, column 1")


def test_bad_validation_data_are_found_before_training():
    x, y = xy()
    vx = x.clone()
    vx[5, 0] = float("inf")
    assert_untouched(make_model(), (x, y), (vx, y), match=r"val: x is not finite at row 5")


def test_nan_regression_targets_are_bad_data_not_divergence():
    x, _ = xy()
    target = torch.randn(N, 3)
    target[33, 2] = float("nan")
    try:
        assert_untouched(make_model(), (x, target), match=r"target y is not finite at row 33")
    except TrainingDiverged as exc:  # the failure this test guards against
        pytest.fail(f"bad data reported as divergence: {exc}")


@pytest.mark.parametrize("label, row", [(3, 17), (-1, 2)])
def test_labels_out_of_range_are_refused(label, row):
    x, y = xy()
    y[row] = label
    assert_untouched(make_model(out=3), (x, y), match=rf"label {label} at row {row} .*0\.\.2")


def test_class_labels_need_one_per_row():
    x, y = xy()
    assert_untouched(make_model(), (x, y[:, None]), match=r"shape \[N\]")


def test_regression_targets_need_the_output_shape():
    x, _ = xy()
    assert_untouched(make_model(out=3), (x, torch.randn(N)), match=r"\[N, 3\]")


def test_complex_inputs_are_refused():
    x, y = xy()
    assert_untouched(make_model(), (x.to(torch.complex64), y), match="complex")


def test_bool_targets_are_refused_with_the_two_ways_out():
    x, y = xy()
    assert_untouched(make_model(), (x, y > 0), match=r"y is bool.*y\.long\(\).*y\.float\(\)")


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.bool])
def test_integer_inputs_are_refused_naming_the_model_dtype(dtype):
    x, y = xy()
    assert_untouched(make_model(), (x.round().to(dtype), y), match=r"torch\.float32")


def test_float64_inputs_train_a_float32_model_as_their_float32_values():
    x, y = xy()
    a, b = make_model(), make_model()
    run(a, (x.double(), y), epochs=1)
    run(b, (x, y), epochs=1)  # x is float32 already: the same values
    for (k, va), (_, vb) in zip(a.named_parameters(), b.named_parameters()):
        assert torch.equal(va, vb), k


def test_float64_inputs_that_overflow_float32_are_refused():
    x, y = xy()
    x = x.double()
    x[9, 0] = 1e300  # finite in float64, inf in the model's float32
    assert_untouched(make_model(), (x, y), match=r"row 9.*not finite in the model's")


class Rows(Dataset):
    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], self.y[i]


def test_a_torch_dataset_is_checked_row_by_row_before_training():
    x, y = xy()
    x[45, 0] = float("nan")
    assert_untouched(make_model(), Rows(x, y), match=r"row 45, column 0")


def test_evaluate_checks_its_data_too():
    x, y = xy()
    y[7] = 9
    with pytest.raises(ValueError, match="label 9 at row 7"):
        evaluate(make_model(out=3), (x, y))


# ------------------------------------------------------------------------ the shared checks


@pytest.mark.parametrize("bad", [0, -3, 1.5, True, "2", None])
def test_check_int_refuses(bad):
    with pytest.raises(ValueError, match=r"epochs: expected an int >= 1"):
        check_int("epochs", bad)


def test_check_int_accepts_integer_scalars_of_numpy_and_torch():
    np = pytest.importorskip("numpy")
    assert check_int("n", np.int64(3)) == 3 and type(check_int("n", np.int64(3))) is int
    assert check_int("n", 0, low=0) == 0


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -1.0, True, "x", "0.3", b"1"])
def test_check_real_refuses(bad):
    with pytest.raises(ValueError, match="lr: expected"):
        check_real("lr", bad)
    with pytest.raises(ValueError, match="> 0"):
        check_real("lr", 0.0, positive=True)


def test_check_bool_takes_numpy_bools_and_refuses_truth_values():
    np = pytest.importorskip("numpy")
    for value, want in ((True, True), (False, False), (np.True_, True), (np.bool_(0), False)):
        got = check_bool("flag", value)
        assert got is want  # a Python bool
    for bad in (1, 0, None, "yes", 1.0, np.int64(1), np.array(True), torch.tensor(True)):
        with pytest.raises(ValueError, match="flag: expected True or False, got"):
            check_bool("flag", bad)


def test_first_nonfinite_finds_the_first_row_major_entry():
    t = torch.zeros(4, 3)
    assert first_nonfinite(t) is None
    t[2, 1], t[3, 0] = float("inf"), float("nan")
    assert first_nonfinite(t) == (2, 1)
    assert first_nonfinite(torch.arange(5)) is None
