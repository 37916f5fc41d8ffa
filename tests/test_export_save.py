"""``save_resnet`` / ``load_resnet``: the exported ResNet as a self-contained program that
computes what the space-time net computes, keeps its input checks, and is written
all-or-nothing."""

from __future__ import annotations

import errno

import pytest
import torch

from grids import GridSchedule
from spacetime_nets import SpaceTimeNet, to_resnet
from spacetime_nets.export import load_resnet, resnet_bytes, resnet_from_bytes, save_resnet
from spacetime_nets.training import _io


@pytest.fixture(scope="module")
def conv():
    sched = GridSchedule.constant(16, 2, rule="periodic")
    net = SpaceTimeNet(sched, 16, 3, kernel="conv", channels=4, lift="identity", readout="mean")
    return net.eval(), to_resnet(net).eval()


@pytest.mark.parametrize("fmt", ["export", "torchscript"])
def test_the_saved_program_computes_the_space_time_net(conv, tmp_path, fmt):
    net, resnet = conv
    x = torch.randn(7, 16)
    path = save_resnet(resnet, tmp_path / f"net.{fmt}", x[:4], format=fmt)
    served = load_resnet(path)
    with torch.no_grad():
        # the reference is the space-time net itself, stepped by the library's own integrator
        torch.testing.assert_close(served(x), net(x), atol=1e-5, rtol=1e-5)
        assert served(x[:0]).shape == (0, 3)


def test_the_saved_program_checks_its_inputs_like_the_network(conv, tmp_path):
    _, resnet = conv
    served = load_resnet(save_resnet(resnet, tmp_path / "net.pt2", torch.randn(2, 16)))
    for bad, named in [
        (torch.randn(3, 32), r"x: expected \[batch, 16\] or \[batch, 1, 16\]"),
        (torch.randn(3, 16, dtype=torch.float64), "x: expected dtype torch.float32"),
        ("a", "x: expected a torch.Tensor"),
    ]:
        for model in (resnet, served):
            with pytest.raises(ValueError, match=named):
                model(bad)


def test_a_failed_write_keeps_the_previous_file(conv, tmp_path, monkeypatch):
    _, resnet = conv
    target = tmp_path / "net.pt2"
    target.write_bytes(b"the previous program")

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(_io, "_temp_beside", full)
    with pytest.raises(OSError) as info:
        save_resnet(resnet, target, torch.randn(2, 16))
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(target)
    assert target.read_bytes() == b"the previous program"
    assert [p.name for p in tmp_path.iterdir()] == ["net.pt2"]


def test_bad_arguments_and_files_are_refused(conv, tmp_path):
    _, resnet = conv
    x = torch.randn(2, 16)
    with pytest.raises(ValueError, match="format: expected one of export, torchscript"):
        resnet_bytes(resnet, x, format="onnx")
    with pytest.raises(ValueError, match="example: expected a batch of at least 1 sample"):
        resnet_bytes(resnet, x[:0])
    with pytest.raises(ValueError, match="resnet: expected a VariableWidthResNet"):
        resnet_bytes(torch.nn.Linear(16, 3), x)
    with pytest.raises(ValueError, match="path: the folder .* does not exist"):
        save_resnet(resnet, tmp_path / "missing" / "net.pt2", x)
    with pytest.raises(ValueError, match="not a saved network"):
        resnet_from_bytes(b"not a zip archive")
    with pytest.raises(FileNotFoundError, match="path: no such file"):
        load_resnet(tmp_path / "nope.pt2")


def test_each_save_format_is_an_entry_with_its_file_suffix():
    from spacetime_nets.export import SAVE_FORMATS, SaveFormat, get_save_format

    assert SAVE_FORMATS == ("export", "torchscript") and isinstance(SAVE_FORMATS, tuple)
    assert [get_save_format(n).suffix for n in SAVE_FORMATS] == [".pt2", ".ts.pt"]
    assert all(isinstance(get_save_format(n), SaveFormat) for n in SAVE_FORMATS)
    with pytest.raises(
        ValueError, match=r"^format: expected one of export, torchscript; got 'onnx'"
    ):
        get_save_format("onnx")
    with pytest.raises(ValueError, match=r"^--format: expected one of export, torchscript; got 3"):
        get_save_format(3, "--format")  # type: ignore[arg-type]


def test_the_program_formats_record_their_name_and_read_back(conv):
    import json
    import zipfile
    from io import BytesIO

    _, resnet = conv
    x = torch.randn(2, 16)
    for fmt in ("export", "torchscript"):
        data = resnet_bytes(resnet, x, format=fmt)
        served = resnet_from_bytes(data)
        assert served.spec["format"] == fmt
        names = zipfile.ZipFile(BytesIO(data)).namelist()
        spec = next(n for n in names if n.endswith("spacetime_nets_input.json"))
        assert json.loads(zipfile.ZipFile(BytesIO(data)).read(spec))["format"] == fmt
