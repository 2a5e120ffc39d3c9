"""The loader's contract: containers, formats, dtypes, and one clear error for every bad file."""

import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from ditto_core.models import CheckpointError, load_network
from ditto_core.models.examples import example_inputs
from ditto_core.release import NETWORK_FILES


def _path(root: Path, kind: str) -> Path:
    return root / NETWORK_FILES[kind].path


def _state_dict(root: Path, kind: str) -> dict:
    """The plain state dict inside the release file of ``kind``."""
    content = torch.load(_path(root, kind), weights_only=True)
    if kind == "lmdm":
        return content["model_state_dict"]
    if kind == "stitch_network":
        return {k.removeprefix("module."): v for k, v in content["retarget_shoulder"].items()}
    return content


def _outputs(net, kind):
    with torch.inference_mode():
        out = net(*example_inputs(kind, net, image_size=64))
    return out if isinstance(out, tuple) else (out,)


def test_release_containers_are_the_official_ones(small_release):
    lmdm = torch.load(_path(small_release, "lmdm"), weights_only=True)
    assert list(lmdm) == ["model_state_dict"]
    stitch = torch.load(_path(small_release, "stitch_network"), weights_only=True)
    assert set(stitch) == {"retarget_shoulder", "retarget_mouth", "retarget_eye"}
    assert all(k.startswith("module.mlp.") for k in stitch["retarget_shoulder"])
    decoder = torch.load(_path(small_release, "decoder"), weights_only=True)
    assert "fc.weight" in decoder and "G_middle_0.conv_0.weight_orig" in decoder
    assert not any(k.endswith("conv_0.weight") for k in decoder)
    motion = torch.load(_path(small_release, "motion_extractor"), weights_only=True)
    assert all(k.startswith("detector.") for k in motion)


@pytest.mark.parametrize("kind", ["appearance_extractor", "decoder", "lmdm", "stitch_network"])
def test_safetensors_copy_gives_the_same_outputs(small_release, tmp_path, kind):
    sd = _state_dict(small_release, kind)
    target = tmp_path / f"{kind}.safetensors"
    save_file({k: v.clone() for k, v in sd.items()}, str(target))  # safetensors stores no shared tensors
    for a, b in zip(_outputs(load_network(kind, target), kind), _outputs(load_network(kind, _path(small_release, kind)), kind)):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_missing_batchnorm_counters_and_ddp_prefixes_are_accepted(small_release, tmp_path):
    sd = _state_dict(small_release, "warp_network")
    stripped = {f"module.{k}": v for k, v in sd.items() if not k.endswith("num_batches_tracked")}
    assert len(stripped) < len(sd)
    target = tmp_path / "warp.pth"
    torch.save(stripped, target)
    for a, b in zip(_outputs(load_network("warp_network", target), "warp_network"),
                    _outputs(load_network("warp_network", _path(small_release, "warp_network")), "warp_network")):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_fp16_file_loads_as_float32_with_close_outputs(small_release, tmp_path):
    sd = _state_dict(small_release, "appearance_extractor")
    target = tmp_path / "half.pth"
    torch.save({k: v.half() if v.is_floating_point() else v for k, v in sd.items()}, target)
    net = load_network("appearance_extractor", target)
    assert all(p.dtype == torch.float32 for p in net.parameters())
    reference = load_network("appearance_extractor", _path(small_release, "appearance_extractor"))
    (a,), (b,) = _outputs(net, "appearance_extractor"), _outputs(reference, "appearance_extractor")
    torch.testing.assert_close(a, b, rtol=0.05, atol=0.05 * b.abs().max().item())


def test_truncated_file(small_release, tmp_path):
    data = _path(small_release, "decoder").read_bytes()
    target = tmp_path / "decoder.pth"
    target.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError) as err:
        load_network("decoder", target)
    message = str(err.value)
    assert str(target) in message and "decoder" in message and "damaged or incomplete" in message
    assert "ditto_pytorch/models/decoder.pth" in message


def test_renamed_key(small_release, tmp_path):
    sd = _state_dict(small_release, "appearance_extractor")
    sd["second.weight_renamed"] = sd.pop("second.weight")
    target = tmp_path / "appearance.pth"
    torch.save(sd, target)
    with pytest.raises(CheckpointError) as err:
        load_network("appearance_extractor", target)
    message = str(err.value)
    assert str(target) in message and "appearance_extractor" in message
    assert "second.weight" in message


def test_renamed_key_not_used_for_sizes(small_release, tmp_path):
    sd = _state_dict(small_release, "motion_extractor")
    sd["detector.fc_t.bias_x"] = sd.pop("detector.fc_t.bias")
    target = tmp_path / "motion.pth"
    torch.save(sd, target)
    with pytest.raises(CheckpointError, match=r"missing keys: detector\.fc_t\.bias.*unexpected keys: detector\.fc_t\.bias_x"):
        load_network("motion_extractor", target)


@pytest.mark.parametrize("kind, key, damage, message", [
    ("motion_extractor", "detector.fc_t.weight", lambda t: torch.zeros(4, t.shape[1]),
     r"shape mismatches: detector\.fc_t\.weight: file \(4, 64\), network \(3, 64\)"),
    # stitching reads 6K values and gives 3K + 2 (found by the independent check: a 127-wide input loaded, then
    # the first render failed in a matrix product)
    ("stitch_network", "mlp.0.weight", lambda t: torch.zeros(t.shape[0], 127), r"the MLP maps 127 values to 65"),
    # no release tensor is empty; widths read off one asked for 160 GB before they were refused
    ("stitch_network", "mlp.0.weight", lambda t: torch.empty(200_000, 0),
     r"1 tensor\(s\) hold no values, e\.g\. mlp\.0\.weight"),
])
def test_a_tensor_of_the_wrong_shape_is_one_error(small_release, tmp_path, kind, key, damage, message):
    sd = _state_dict(small_release, kind)
    sd[key] = damage(sd[key])
    target = tmp_path / f"{kind}.pth"
    torch.save(sd, target)
    with pytest.raises(CheckpointError, match=rf"{kind}\.pth does not match the Ditto {kind} network: {message}"):
        load_network(kind, target)


def test_a_network_far_larger_than_its_file_is_planned_without_memory_and_refused():
    from ditto_core.models.loading import check_planned_size
    from ditto_core.models.state_dict import CheckpointMismatch

    with pytest.raises(CheckpointMismatch, match=r"a network of 10000100000 values, but it holds 10"):
        check_planned_size(lambda width: torch.nn.Linear(width, 100_000), 100_000, {"weight": torch.zeros(10)})


def test_wrong_kind_of_file(small_release):
    with pytest.raises(CheckpointError, match="does not match the Ditto warp_network network: missing key"):
        load_network("warp_network", _path(small_release, "decoder"))


def test_missing_file_says_where_to_get_it(tmp_path):
    with pytest.raises(CheckpointError) as err:
        load_network("lmdm", tmp_path / "nope.pth")
    message = str(err.value)
    assert "not found" in message and "ditto_pytorch/models/lmdm_v0.4_hubert.pth" in message
    assert "digital-avatar/ditto-talkinghead" in message


def test_unknown_kind(small_release):
    with pytest.raises(ValueError, match="unknown network kind 'vae'"):
        load_network("vae", _path(small_release, "decoder"))


class _RunsCode:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_that_would_run_code_is_refused_unrun(tmp_path):
    marker = tmp_path / "pwned"
    target = tmp_path / "decoder.pth"
    torch.save({"fc.weight": torch.zeros(1), "payload": _RunsCode(marker)}, target)
    with pytest.raises(CheckpointError, match="refused without being run") as err:
        load_network("decoder", target)
    assert str(target) in str(err.value)
    assert not marker.exists()


def test_non_tensor_entries_are_reported(small_release, tmp_path):
    sd = _state_dict(small_release, "stitch_network")
    sd["note"] = "hello"
    target = tmp_path / "stitch.pth"
    torch.save(sd, target)
    with pytest.raises(CheckpointError, match="entries that are not tensors: note"):
        load_network("stitch_network", target)
