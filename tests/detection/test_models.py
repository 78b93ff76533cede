"""Strict loading of state dicts shaped like the lab's files, bad weight files, layering."""
from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
import torch

from mck.detection import ConvNet, HRNet, load_centernet, load_hrnet
from mck.errors import InputError

DATA = Path(__file__).parent / "data" / "seed_weight_keys.tsv"
SHARED = Path(__file__).parents[2] / "../shared/reference/seed_weight_keys.tsv"


def parse_table(path: Path) -> dict[str, dict[str, tuple[tuple[int, ...], str]]]:
    """{'centernet.pth': {key: (shape, dtype)}, 'hrnet_*.pth': {...}} from the key/shape table."""
    tables: dict = {}
    current = None
    for line in path.read_text().splitlines():
        if line.startswith("## "):
            current = line[3:].split(":")[0].strip()
            tables[current] = {}
        elif current and "\t" in line and not line.startswith("#"):
            key, shape, dtype = line.rstrip().split("\t")[:3]
            tables[current][key.strip()] = (tuple(ast.literal_eval(shape.strip())), dtype.strip())
    return tables


@pytest.fixture(scope="module")
def table():
    t = parse_table(DATA)
    if SHARED.exists():  # the local copy must stay in sync with the reference
        assert parse_table(SHARED) == t
    return t


def random_state_dict(spec: dict, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for key, (shape, dtype) in spec.items():
        if dtype == "int64":
            sd[key] = torch.randint(0, 100, shape, generator=g, dtype=torch.int64)
        elif key.endswith("running_var"):
            sd[key] = torch.rand(shape, generator=g) + 0.5
        else:
            sd[key] = torch.randn(shape, generator=g) * 0.1
    return sd


def test_table_counts(table):
    assert len(table["centernet.pth"]) == 30
    assert len(table["hrnet_*.pth"]) == 1754
    assert sum(int(np.prod(s)) for s, _ in table["hrnet_*.pth"].values()) == 28589523


def test_architectures_match_table_exactly(table):
    for spec, model in ((table["centernet.pth"], ConvNet(32)), (table["hrnet_*.pth"], HRNet(32, 15, 1))):
        got = {k: (tuple(v.shape), str(v.dtype).replace("torch.", "")) for k, v in model.state_dict().items()}
        assert got == spec


def test_strict_load_lab_shaped_files(table, tmp_path):
    sd = random_state_dict(table["centernet.pth"])
    torch.save(sd, tmp_path / "centernet.pth")
    net = load_centernet(tmp_path / "centernet.pth", device="cpu")
    assert not net.training and net.initial_channels == 32
    assert torch.equal(net.state_dict()["conv2.weight"], sd["conv2.weight"])
    with torch.inference_mode():
        assert net(torch.rand(1, 1, 64, 80)).shape == (1, 1, 4, 5)

    sd = random_state_dict(table["hrnet_*.pth"], seed=1)
    torch.save(sd, tmp_path / "hrnet_top.pth")
    net = load_hrnet(tmp_path / "hrnet_top.pth", device="cpu")
    assert (net.c, net.nof_joints, net.in_channels, net.stem_width) == (32, 15, 1, 64)
    assert torch.equal(net.state_dict()["final_layer.weight"], sd["final_layer.weight"])
    with torch.inference_mode():
        assert net(torch.rand(1, 1, 64, 64)).shape == (1, 15, 32, 32)


def test_small_nets_load_the_same_way(tmp_path):
    torch.save(HRNet(c=8, nof_joints=5, stem_width=16).state_dict(), tmp_path / "h.pth")
    net = load_hrnet(tmp_path / "h.pth", device="cpu")
    assert (net.c, net.nof_joints, net.stem_width) == (8, 5, 16)
    torch.save(ConvNet(4).state_dict(), tmp_path / "c.pth")
    assert load_centernet(tmp_path / "c.pth", device="cpu").initial_channels == 4


def test_bad_weights_files(tmp_path):
    torch.save(ConvNet(8).state_dict(), tmp_path / "centernet.pth")
    with pytest.raises(InputError) as err:
        load_hrnet(tmp_path / "centernet.pth", device="cpu")
    assert "centernet.pth" in err.value.one_line() and "final_layer.weight" in err.value.one_line()

    sd = HRNet(8, stem_width=16).state_dict()
    sd["stage3.1.branches.2.0.conv1.weight"] = torch.zeros(3, 3, 3, 3)
    torch.save(sd, tmp_path / "bad.pth")
    with pytest.raises(InputError, match=r"stage3\.1\.branches\.2\.0\.conv1\.weight"):
        load_hrnet(tmp_path / "bad.pth", device="cpu")

    sd = ConvNet(8).state_dict()
    del sd["bn3.running_mean"]
    torch.save(sd, tmp_path / "missing.pth")
    with pytest.raises(InputError, match=r"bn3\.running_mean"):
        load_centernet(tmp_path / "missing.pth", device="cpu")

    sd = ConvNet(8).state_dict()
    sd["extra.weight"] = torch.zeros(1)
    torch.save(sd, tmp_path / "extra.pth")
    with pytest.raises(InputError, match=r"extra\.weight"):
        load_centernet(tmp_path / "extra.pth", device="cpu")

    (tmp_path / "garbage.pth").write_bytes(b"not a torch file")
    with pytest.raises(InputError, match="garbage.pth|cannot read"):
        load_centernet(tmp_path / "garbage.pth", device="cpu")
    with pytest.raises(InputError, match="not found"):
        load_centernet(tmp_path / "nope.pth", device="cpu")


def test_detection_core_does_not_import_io_frameworks():
    root = Path(__file__).parents[2] / "mck" / "detection"
    for path in root.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] not in {"hydra", "omegaconf", "h5py"}, f"{path.name} imports {name}"
