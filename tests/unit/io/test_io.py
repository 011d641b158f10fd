import pytest
import torch

from vfbench.errors import VfbenchError
from vfbench.io import atomic_path, load_checkpoint, read_json, save_checkpoint, write_json
from vfbench.models import GraftedReLU, build_model, set_site, site_shapes

MNIST = {"input_shape": [1, 28, 28], "num_classes": 10, "mean": [0.13], "std": [0.31]}


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.txt"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


def test_json_roundtrip_and_errors(tmp_path):
    write_json(tmp_path / "a.json", {"x": 1})
    assert read_json(tmp_path / "a.json") == {"x": 1}
    sites = {"body.2": 1, "body.9": 2, "body.10": 3}  # network order, not lexical
    write_json(tmp_path / "sites.json", {"sites": sites})
    assert list(read_json(tmp_path / "sites.json")["sites"]) == list(sites)
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(VfbenchError, match="bad.json"):
        read_json(tmp_path / "bad.json")


def test_checkpoint_roundtrip_with_graft(tmp_path):
    model = build_model("net1", **MNIST).eval()
    name = "body.3"
    shape = site_shapes(model)[name]
    set_site(model, name, GraftedReLU(shape, torch.ones(shape), slope=0.3))
    save_checkpoint(tmp_path / "m.pt", model=model, arch="net1", arch_kwargs=MNIST,
                    config={"train": {"epochs": 1}}, metrics={"sa": 0.5})
    loaded, ckpt = load_checkpoint(tmp_path / "m.pt")
    x = torch.rand(4, 1, 28, 28)
    assert torch.allclose(loaded.eval()(x), model(x))
    assert ckpt["provenance"]["versions"]["torch"]
    assert ckpt["sites"][0]["name"] == "body.3" and ckpt["sites"][0]["size"] == 64


def test_bad_checkpoints_name_the_file(tmp_path):
    with pytest.raises(VfbenchError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(VfbenchError, match="junk.pt"):
        load_checkpoint(tmp_path / "junk.pt")
    torch.save({"arch": "net1"}, tmp_path / "partial.pt")
    with pytest.raises(VfbenchError, match="missing"):
        load_checkpoint(tmp_path / "partial.pt")
