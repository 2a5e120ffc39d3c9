"""The shipped example workflows: current, and consistent with the registered nodes."""

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflows"))

import build  # noqa: E402

FILES = sorted((ROOT / "example_workflows").glob("*.json"))


def test_every_workflow_is_shipped_and_current():
    built = build.build()
    assert {f.stem for f in FILES} == set(built) and len(built) >= 6
    for name, workflow in built.items():
        assert json.loads((ROOT / "example_workflows" / f"{name}.json").read_text()) == workflow, name
    assert not list((ROOT / "workflows").glob("*.json"))  # ComfyUI would list a second copy


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_workflow_matches_the_nodes(path):
    classes = build.ditto_classes()
    workflow = json.loads(path.read_text())
    nodes = {n["id"]: n for n in workflow["nodes"]}
    assert workflow["version"] == 0.4 and workflow["last_node_id"] == max(nodes)
    for link_id, src, src_slot, dst, dst_slot, kind in workflow["links"]:
        assert nodes[src]["outputs"][src_slot]["type"] == kind
        assert link_id in nodes[src]["outputs"][src_slot]["links"]
        target = nodes[dst]["inputs"][dst_slot]
        assert target["type"] == kind and target["link"] == link_id
    for node in workflow["nodes"]:
        kind = node["type"]
        assert kind in classes or kind in build.BUILTINS, f"unknown node {kind}"
        if kind not in classes:
            continue
        links, widgets, outputs = build.node_io(classes[kind])
        assert [(i["name"], i["type"]) for i in node["inputs"]] == links
        assert [(o["name"], o["type"]) for o in node["outputs"]] == outputs
        values = list(node["widgets_values"])
        for name, spec_kind, options in widgets:
            value = values.pop(0)
            if isinstance(spec_kind, list):
                assert value in spec_kind or kind == "DittoLoadMotion", (kind, name, value)
            elif spec_kind in ("INT", "FLOAT"):
                assert options.get("min", value) <= value <= options.get("max", value), (kind, name, value)
            if options.get("control_after_generate"):
                assert values.pop(0) in ("fixed", "randomize", "increment", "decrement")
        assert values == [], f"{kind} has extra widget values {values}"
        required = classes[kind].INPUT_TYPES()["required"]
        for entry in node["inputs"]:
            if entry["name"] in required:
                assert entry["link"] is not None, f"{kind}.{entry['name']} is not connected"
