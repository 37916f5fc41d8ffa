"""Nothing lost, nothing silent: writes are all-or-nothing under a full disk or a read-only
folder, an interrupt never leaves the history ahead of the checkpoint, the checkpoint digest
covers everything the run resumes from, and inputs a generator or a builder would quietly
change are refused."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from grids import GridSchedule
from spacetime_nets import SpaceTimeNet, datasets
from spacetime_nets.cli import main
from spacetime_nets.training import _io, fit, load_checkpoint
from spacetime_nets.training.loop import _Trainer


def one_error_line(err: str) -> str:
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


# ------------------------------------------------------------------------------ writes


def test_several_files_are_written_all_or_none(tmp_path, monkeypatch):
    a, b = tmp_path / "a.json", tmp_path / "b.bin"
    a.write_text("old a")
    b.write_bytes(b"old b")
    real, calls = _io._temp_beside, []

    def full_on_the_second(path, *args, **kwargs):
        calls.append(path)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, *args, **kwargs)

    monkeypatch.setattr(_io, "_temp_beside", full_on_the_second)
    with pytest.raises(OSError) as info:
        _io.atomic_write_files({a: b"new a", b: b"new b"})
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(b)
    # the first file was written in full, but is not put in place without the second
    assert a.read_text() == "old a" and b.read_bytes() == b"old b"
    assert leftovers(tmp_path) == []
    monkeypatch.setattr(_io, "_temp_beside", real)
    _io.atomic_write_files({a: b"new a", b: b"new b"})
    assert a.read_bytes() == b"new a" and b.read_bytes() == b"new b"


def test_a_read_only_folder_keeps_the_previous_file(tmp_path, monkeypatch, capsys):
    target = tmp_path / "s.json"
    target.write_text("a good file")

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(_io.tempfile, "mkstemp", read_only)
    with pytest.raises(OSError) as info:
        _io.atomic_write_text(target, "new")
    assert info.value.errno == errno.EROFS and info.value.filename == str(target)
    assert "previous file is kept" in str(info.value)
    # the command line: one error line naming the file, the good file as it was
    assert main(["schedule", "hourglass", "--widths", "8,4", "--json", str(target)]) == 2
    assert str(target) in one_error_line(capsys.readouterr().err)
    assert target.read_text() == "a good file" and leftovers(tmp_path) == []


FULL_DISK = textwrap.dedent(
    """
    import resource, signal, sys
    from spacetime_nets import SpaceTimeNet
    from spacetime_nets.training import save_checkpoint
    from grids import GridSchedule
    model = SpaceTimeNet(GridSchedule.hourglass(16, 8, 2), 2, 2)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (512, resource.RLIM_INFINITY))
    try:
        save_checkpoint(sys.argv[1], model)
    except OSError as exc:
        print("OSError", exc.errno, exc.filename)
    """
)


def test_a_full_disk_is_an_os_error_and_keeps_the_previous_checkpoint(tmp_path):
    # a real full disk: the child may write no file past 512 bytes (a checkpoint is larger)
    target = tmp_path / "last.pt"
    target.write_bytes(b"the previous checkpoint")
    proc = subprocess.run(
        [sys.executable, "-c", FULL_DISK, str(target)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["OSError", str(errno.EFBIG), str(target)]
    assert target.read_bytes() == b"the previous checkpoint" and leftovers(tmp_path) == []


def test_written_files_get_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        path = _io.atomic_write_text(tmp_path / "f.json", "{}")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o640


# ------------------------------------------------------------------------------ interrupts


def test_ctrl_c_while_the_command_line_is_imported_is_one_line(monkeypatch, capsys):
    import types

    from spacetime_nets import __main__ as entry

    class Importing(types.ModuleType):
        def __getattr__(self, name):
            raise KeyboardInterrupt

    monkeypatch.setitem(sys.modules, "spacetime_nets.cli", Importing("spacetime_nets.cli"))
    assert entry._run() == 130
    assert one_error_line(capsys.readouterr().err) == "spacetime-nets: interrupted"


def test_ctrl_c_while_the_checkpoint_is_written_leaves_it_and_the_history_agreeing(
    tmp_path, monkeypatch
):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(32, 2, generator=g)
    y = (x[:, 0] > 0).long()
    model = SpaceTimeNet(GridSchedule.hourglass(6, 3, 2), 2, 2)
    real = _Trainer._snapshot

    def interrupted_snapshot(self, path):
        if path.name == "last.pt":
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C as the checkpoint is being written
        return real(self, path)

    monkeypatch.setattr(_Trainer, "_snapshot", interrupted_snapshot)
    with pytest.raises(KeyboardInterrupt):
        fit(model, (x, y), epochs=3, batch_size=16, progress=False, out_dir=tmp_path)
    records = json.loads((tmp_path / "history.json").read_text())["records"]
    ckpt = load_checkpoint(tmp_path / "last.pt")
    assert ckpt["epoch"] == 1 and len(ckpt["history"]) == len(records) == 1


# ------------------------------------------------------------------------------ checkpoints


@pytest.fixture()
def trained(tmp_path):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(32, 2, generator=g)
    model = SpaceTimeNet(GridSchedule.hourglass(6, 3, 2), 2, 2)
    fit(model, (x, (x[:, 0] > 0).long()), epochs=1, batch_size=16, progress=False,
        out_dir=tmp_path)  # fmt: skip
    return tmp_path / "last.pt"


@pytest.mark.parametrize(
    "what",
    ["optimizer", "history", "meta"],
)
def test_the_digest_covers_the_optimiser_state_and_the_history(trained, what):
    doc = torch.load(trained, weights_only=True)
    if what == "optimizer":
        state = next(iter(doc["optimizer"]["state"].values()))
        state["exp_avg"].mul_(2.0)  # a finite, plausible, wrong moment estimate
    elif what == "history":
        doc["history"][0]["train_loss"] = 0.001  # a falsified past loss
    else:
        doc["meta"]["edited"] = True
    torch.save(doc, trained)
    with pytest.raises(ValueError, match="digest"):
        load_checkpoint(trained)
    # trust does not override a digest that does not match
    with pytest.raises(ValueError, match="digest"):
        load_checkpoint(trained, trust=True)


# ------------------------------------------------------------------------------ quiet changes


def test_a_relative_loss_on_class_labels_is_refused():
    x = torch.randn(20, 2)
    model = SpaceTimeNet(GridSchedule.hourglass(6, 3, 2), 2, 2)
    with pytest.raises(ValueError, match=r"loss: rel_l2 is a relative error of function"):
        fit(
            model, (x, (x[:, 0] > 0).long()), epochs=1, batch_size=10, loss="rel_l2", progress=False
        )


def test_given_widths_are_kept_exactly_or_refused():
    with pytest.raises(ValueError, match=r"n_outer: .* simpson rule .* nearest is 9\), got 8"):
        GridSchedule.hourglass(8, 4, 2, rule="simpson")
    # widths the rule takes are kept, widths in between snap to ones it takes
    sched = GridSchedule.ramp(9, 3, 3, rule="simpson")
    assert sched.widths[0] == 9 and sched.widths[-1] == 3
    assert all(n % 2 == 1 for n in sched.widths)


def test_a_schedule_file_without_its_transfer_or_format_is_refused(tmp_path):
    doc = json.loads(GridSchedule.hourglass(8, 4, 2).to_json())
    for key in ("transfer", "format"):
        broken = {k: v for k, v in doc.items() if k != key}
        with pytest.raises(ValueError, match=f"missing key '{key}'"):
            GridSchedule.from_json(json.dumps(broken))


def test_heat_refuses_a_time_past_the_precision_of_its_dtype():
    # u(t) decays as exp(-pi^2 t): below float32's eps = 2^-23 after 23 ln 2 / pi^2 = 1.615
    with pytest.raises(ValueError, match=r"time: expected at most 1.62 .* got 1.7"):
        datasets.heat(n=60, grid_size=16, time=1.7)
    with pytest.raises(ValueError, match="time"):
        datasets.heat(n=60, grid_size=16, time=1.62)
    ok = datasets.heat(n=60, grid_size=16, time=1.61)
    assert float(ok.train.y.abs().max()) > 0
    # float64 resolves the decay longer
    datasets.heat(n=60, grid_size=16, time=3.0, dtype=torch.float64)


def test_two_width_schedules_refuse_one_width(tmp_path, capsys):
    base = ["train", "--samples", "60", "--epochs", "1", "--quiet", "--out", str(tmp_path / "r")]
    assert main([*base, "--widths", "8"]) == 2
    assert "--widths: the hourglass schedule goes between two widths" in one_error_line(
        capsys.readouterr().err
    )
    assert main([*base, "--schedule", "constant", "--widths", "8"]) == 0


def test_data_set_errors_name_the_command_line_option(tmp_path, capsys):
    argv = ["train", "--dataset", "signals", "--samples", "80", "--kernel", "conv",
            "--channels", "2", "--grid-size", "1", "--out", str(tmp_path / "r")]  # fmt: skip
    assert main(argv) == 2
    assert one_error_line(capsys.readouterr().err).startswith("spacetime-nets: error: --grid-size:")


# ------------------------------------------------------------------------------ the command line


def test_ctrl_c_during_any_command_exits_130_with_one_line(monkeypatch, capsys):
    from spacetime_nets.cli import commands

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(commands, "make_schedule", interrupted)
    assert main(["schedule", "hourglass", "--widths", "8,4"]) == 130
    assert one_error_line(capsys.readouterr().err) == "spacetime-nets: interrupted"


def test_a_resume_into_a_new_out_still_refuses_changed_settings(tmp_path, capsys):
    base = ["train", "--samples", "60", "--steps", "2", "--widths", "8,4", "--quiet"]
    assert main([*base, "--epochs", "1", "--out", str(tmp_path / "a")]) == 0
    capsys.readouterr()
    new = tmp_path / "b"
    resume = ["--resume", str(tmp_path / "a" / "last.pt"), "--out", str(new)]
    assert main([*base, "--epochs", "2", "--lam", "0.5", *resume]) == 2
    assert "--lam 0 -> 0.5" in one_error_line(capsys.readouterr().err)
    assert not new.exists()
    # with the run's own settings it continues into the new folder
    assert main([*base, "--epochs", "2", *resume]) == 0
    assert load_checkpoint(new / "last.pt")["epoch"] == 2
