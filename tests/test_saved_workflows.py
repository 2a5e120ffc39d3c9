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


WIDGET_TYPES = ("INT", "FLOAT", "STRING", "BOOLEAN", "COMBO")
REPAIR_HARNESS = """
import { readFileSync } from "node:fs";
const cases = JSON.parse(readFileSync(process.argv[2], "utf8"));
const { comboChoices } = await import("./saved.mjs");
const extension = globalThis.registered;
console.log(JSON.stringify(cases.map(({ nodeData, widgets }) => {
  function NodeType() {}
  extension.beforeRegisterNodeDef(NodeType, nodeData);
  const node = new NodeType();
  node.widgets = widgets.map(([name, value]) => ({ name, value }));
  node.onConfigure({});
  return { choices: Object.keys(comboChoices(nodeData)), values: node.widgets.map((w) => [w.name, w.value]) };
})));
"""


def test_saved_ui_workflows_get_their_choices_back_in_the_front_end(nodes, tmp_path):
    """A saved UI workflow's values, handed to today's widgets in order as the front end does when the counts
    match, and web/js/ditto_saved_workflows.js's repair after it: every choice is one of its options. Talking Head
    Batch's saved names ("", "") land on encoder and preset, which get their default (a real ComfyUI 0.33 refused
    the run before the repair)."""
    import shutil
    import subprocess

    node = shutil.which("node")
    if node is None:
        pytest.skip("Node.js is not installed")
    script = (Path(__file__).resolve().parents[1] / "web" / "js" / "ditto_saved_workflows.js").read_text()
    app_import = 'import { app } from "../../../scripts/app.js";'
    assert app_import in script
    (tmp_path / "saved.mjs").write_text(script.replace(
        app_import, "const app = { registerExtension(e) { globalThis.registered = e; } };"))
    (tmp_path / "harness.mjs").write_text(REPAIR_HARNESS)
    cases, options = [], []
    for path in sorted((SAVED / "ui").glob("*.json")):
        for saved in json.loads(path.read_text())["nodes"]:
            if not saved["type"].startswith("Ditto"):
                continue
            spec = nodes[saved["type"]].INPUT_TYPES()
            inputs = {**spec["required"], **spec.get("optional", {})}
            widgets = []
            for name, (kind, *rest) in inputs.items():
                options_of = rest[0] if rest else {}
                if kind in WIDGET_TYPES and not options_of.get("forceInput"):
                    widgets.append(name)
                    if options_of.get("control_after_generate"):  # the front end's widget beside a seed
                        widgets.append("control_after_generate")
            if len(widgets) != len(saved["widgets_values"]):
                continue  # the front end sorts these out itself (migrateWidgetsValues)
            cases.append({"nodeData": json.loads(json.dumps({"name": saved["type"], "input": spec}, default=list)),
                          "widgets": list(zip(widgets, saved["widgets_values"]))})
            options.append({name: inputs[name][1]["options"] for name in widgets
                            if name in inputs and inputs[name][0] == "COMBO"})
    (tmp_path / "cases.json").write_text(json.dumps(cases))
    done = subprocess.run([node, str(tmp_path / "harness.mjs"), str(tmp_path / "cases.json")], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout)
    assert len(results) == len(cases) >= 20
    for case, result, combos in zip(cases, results, options):
        assert set(result["choices"]) == set(combos)
        for name, value in result["values"]:
            assert name not in combos or value in combos[name], (case["nodeData"]["name"], name, value)
    batch = next(dict(r["values"]) for c, r in zip(cases, results) if c["nodeData"]["name"] == "DittoTalkingHeadBatch")
    assert batch["encoder"] == batch["preset"] == "auto"
