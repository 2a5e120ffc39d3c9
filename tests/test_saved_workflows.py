"""Workflows saved with the pack before its nodes moved to ComfyUI's V3 API (tests/fixtures/saved_workflows: the
templates of commit 76ef0b3 in UI format, and as the real front end (1.49.6, on ComfyUI 0.33.0 with that pack)
turned them into API prompts) still load and pass ComfyUI's checks against today's nodes."""

import json
from pathlib import Path

import pytest
from comfy_stubs import install, load_pack, register, validate_prompt_node

SAVED = Path(__file__).resolve().parent / "fixtures" / "saved_workflows"
API = sorted((SAVED / "api").glob("*.json"))


@pytest.fixture(scope="module")
def nodes(tmp_path_factory):
    install(tmp_path_factory.mktemp("comfy"))
    return register(load_pack())  # its on_load stages the sample files the prompts name


def test_every_saved_template_has_both_formats():
    assert len(API) == 11 and [p.name for p in API] == sorted(p.name for p in (SAVED / "ui").glob("*.json"))


@pytest.mark.parametrize("path", API, ids=lambda p: p.stem)
def test_saved_api_prompt_passes_comfyuis_checks(nodes, path):
    prompt = json.loads(path.read_text())
    ours = [node_id for node_id, entry in prompt.items() if entry["class_type"].startswith("Ditto")]
    assert ours
    for node_id in ours:
        assert validate_prompt_node(nodes, prompt, node_id) == [], (path.stem, prompt[node_id]["class_type"])


def test_the_checks_catch_what_would_break_a_saved_prompt(nodes):
    prompt = json.loads((SAVED / "api" / "Ditto speech to video in one pass.json").read_text())
    register_id = next(i for i, e in prompt.items() if e["class_type"] == "DittoRegisterPortrait")
    inputs = prompt[register_id]["inputs"]
    inputs["crop_zoom"] = inputs.pop("crop_scale")  # a renamed input: ComfyUI would drop the value silently
    inputs["batch_mode"] = "every frame"
    inputs["face_index"] = 99
    del inputs["max_size"]
    inputs["image"] = [next(i for i, e in prompt.items() if e["class_type"] == "DittoLoadModels"), 0]
    assert validate_prompt_node(nodes, prompt, register_id) == [
        "crop_zoom: not an input of DittoRegisterPortrait",
        "image: linked to a DITTO_MODELS output, needs IMAGE",
        "batch_mode: 'every frame' not among ['first image', 'video source']",
        "face_index: 99 outside 0..31",
        "crop_scale: required input missing",
        "max_size: required input missing",
    ]
