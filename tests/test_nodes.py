"""The ComfyUI nodes, called directly as ComfyUI would call them."""

import importlib
import shutil

import pytest

from comfy_stubs import install, load_pack


@pytest.fixture
def pack(tmp_path):
    install(tmp_path / "models")
    return load_pack()


def test_pack_registers_prefixed_nodes_with_descriptions(pack):
    assert set(pack.NODE_CLASS_MAPPINGS) == set(pack.NODE_DISPLAY_NAME_MAPPINGS)
    for name, cls in pack.NODE_CLASS_MAPPINGS.items():
        assert name.startswith("Ditto")
        assert cls.DESCRIPTION and cls.CATEGORY == "Ditto"
        assert callable(getattr(cls, cls.FUNCTION))


def test_load_models_node_registers_the_folder_and_loads(pack, tmp_path, small_release):
    node_cls = pack.NODE_CLASS_MAPPINGS["DittoLoadModels"]
    ditto_dir = tmp_path / "models" / "ditto"
    releases = node_cls.INPUT_TYPES()["required"]["release"][0]
    assert releases == ["ditto_pytorch"]  # offered before anything is downloaded

    shutil.copytree(small_release / "ditto_pytorch", ditto_dir / "ditto-talkinghead" / "ditto_pytorch")
    releases = node_cls.INPUT_TYPES()["required"]["release"][0]
    assert "ditto-talkinghead/ditto_pytorch" in releases

    (models,) = node_cls().load(release="ditto-talkinghead/ditto_pytorch", device="auto")
    assert models.root == ditto_dir / "ditto-talkinghead"
    assert models.decoder.config.in_channels == 16  # the small release's width, read from the file
    assert str(models.device) == "cpu"


def test_load_models_node_explains_missing_files(pack, tmp_path):
    node_cls = pack.NODE_CLASS_MAPPINGS["DittoLoadModels"]
    checkpoint_error = importlib.import_module(pack.__name__ + ".ditto_core.models").CheckpointError
    with pytest.raises(checkpoint_error) as err:
        node_cls().load(release="ditto_pytorch", device="cpu")
    message = str(err.value)
    assert str(tmp_path / "models" / "ditto" / "ditto_pytorch" / "models" / "lmdm_v0.4_hubert.pth") in message
    assert 'huggingface-cli download digital-avatar/ditto-talkinghead' in message


def test_cuda_request_without_cuda_is_explained(pack, small_release, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    shutil.copytree(small_release / "ditto_pytorch", tmp_path / "models" / "ditto" / "ditto_pytorch")
    with pytest.raises(ValueError, match="no CUDA device; choose the cpu device"):
        pack.NODE_CLASS_MAPPINGS["DittoLoadModels"]().load(release="ditto_pytorch", device="cuda")
