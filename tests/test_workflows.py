"""The shipped example workflows: current, consistent with the registered nodes, runnable as shipped (they load only
the samples the pack stages), and readable (thumbnails, names, no overlapping nodes, legible at fit to view)."""

import importlib.util
import itertools
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflows"))

import build  # noqa: E402

FILES = sorted((ROOT / "example_workflows").glob("*.json"))
# the templates as saved before the nodes moved to ComfyUI's V3 API: they must still load into today's nodes
SAVED = sorted((ROOT / "tests" / "fixtures" / "saved_workflows" / "ui").glob("*.json"))
TITLE = 30  # ComfyUI's node title bar, drawn above a node's pos
GAP = 20  # the least space between two nodes' boxes
FILE_INPUTS = {"LoadImage": 0, "LoadAudio": 0, "LoadVideo": 0, "DittoLoadMotion": 0}  # node → its file widget
FOLDER_INPUTS = {"DittoLoadPortraits": 0, "DittoLoadSpeechClips": 0}  # node → its folder widget


def _staged_names() -> set[str]:
    spec = importlib.util.spec_from_file_location("ditto_samples_names", ROOT / "nodes" / "samples.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return set(module.SAMPLE_INPUTS)


def _load(path):
    return json.loads(path.read_text())


def test_every_workflow_is_shipped_and_current():
    built = build.build()
    assert {f.stem for f in FILES} == set(built) and len(built) >= 6
    for name, workflow in built.items():
        assert json.loads((ROOT / "example_workflows" / f"{name}.json").read_text()) == workflow, name
    assert not list((ROOT / "workflows").glob("*.json"))  # ComfyUI would list a second copy
    assert {p.stem for p in (ROOT / "example_workflows").glob("*.jpg")} == set(built)  # one thumbnail each


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_thumbnail_and_readable_name(path):
    from PIL import Image

    with Image.open(path.with_suffix(".jpg")) as image:
        assert image.format == "JPEG" and image.size == (512, 512)
    # the templates browser shows the file name as the title and, with - and _ as spaces, as the description
    assert "_" not in path.stem and "-" not in path.stem and len(path.stem) <= 40 and path.stem.startswith("Ditto ")


@pytest.mark.parametrize("path", FILES + SAVED, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_workflow_matches_the_nodes(path):
    classes = build.ditto_classes()
    workflow = _load(path)
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
        widget_kinds = {name: spec_kind for name, spec_kind, _ in widgets}
        saved_links = [(i["name"], i["type"]) for i in node["inputs"] if "widget" not in i]
        optional = set(classes[kind].INPUT_TYPES().get("optional", {}))
        # a workflow saved before an optional socket was appended lacks it; the front end adds it on load
        assert saved_links == links or (path in SAVED and saved_links == links[:len(saved_links)]
                                        and {name for name, _ in links[len(saved_links):]} <= optional), kind
        for entry in (i for i in node["inputs"] if "widget" in i):  # a widget converted to an input: linked
            assert entry["widget"] == {"name": entry["name"]} and entry["link"] is not None
            assert widget_kinds[entry["name"]] == entry["type"], (kind, entry["name"])
        assert [(o["name"], o["type"]) for o in node["outputs"]] == outputs
        values = list(node["widgets_values"])
        for name, spec_kind, options in widgets:
            if not values:  # saved before this widget was appended: the front end gives it its default
                assert name in optional and path in SAVED, (kind, name)
                continue
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


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_templates_load_only_staged_samples_or_other_nodes_outputs(path):
    """Every file a template opens is one the pack copies into input/ (the image-generation template's checkpoint
    aside, which its note names); everything else comes through links."""
    staged = _staged_names()
    staged_folders = {name.rsplit("/", 1)[0] for name in staged if "/" in name}
    workflow = _load(path)
    for node in workflow["nodes"]:
        if node["type"] in FILE_INPUTS:
            assert node["widgets_values"][FILE_INPUTS[node["type"]]] in staged, (path.stem, node["type"])
        if node["type"] in FOLDER_INPUTS:
            assert node["widgets_values"][FOLDER_INPUTS[node["type"]]] in staged_folders, (path.stem, node["type"])
        if node["type"] == "CheckpointLoaderSimple":
            notes = " ".join(n["widgets_values"][0] for n in workflow["nodes"] if n["type"] == "Note")
            assert node["widgets_values"][0] in notes, "the image-generation template must name its checkpoint"
        if node["type"] in build.BUILTINS:  # (ours: every required input is linked, test_workflow_matches_the_nodes)
            assert all(entry["link"] is not None for entry in node["inputs"]), (path.stem, node["type"])


def _box(node):
    (x, y), (w, h) = node["pos"], node["size"]
    return x, y - TITLE, x + w, y + h


def _apart(a, b, gap):
    return a[2] + gap <= b[0] or b[2] + gap <= a[0] or a[3] + gap <= b[1] or b[3] + gap <= a[1]


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_no_two_nodes_overlap_or_touch(path):
    nodes = _load(path)["nodes"]
    for a, b in itertools.combinations(nodes, 2):
        assert _apart(_box(a), _box(b), GAP), f"{path.stem}: {a['type']} #{a['id']} and {b['type']} #{b['id']}"


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_every_node_sits_in_one_group_and_groups_are_apart(path):
    workflow = _load(path)
    groups = [(g["title"], (g["bounding"][0], g["bounding"][1], g["bounding"][0] + g["bounding"][2],
                            g["bounding"][1] + g["bounding"][3])) for g in workflow["groups"]]
    assert groups and all(title for title, _ in groups)
    for node in workflow["nodes"]:
        box = _box(node)
        inside = [title for title, g in groups
                  if g[0] + 8 <= box[0] and box[2] <= g[2] - 8 and g[1] + 34 <= box[1] and box[3] <= g[3] - 8]
        assert len(inside) == 1, f"{path.stem}: {node['type']} #{node['id']} is in groups {inside}"
    for (a_title, a), (b_title, b) in itertools.combinations(groups, 2):
        assert _apart(a, b, GAP), f"{path.stem}: groups {a_title!r} and {b_title!r}"
    assert sum(n["type"] == "Note" for n in workflow["nodes"]) >= len(groups) - 1  # short notes on what each does


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_fit_to_view_stays_readable(path):
    """ComfyUI's fit to view (frontend 1.49: the bounds plus 10 units around, filling 75% of the window) on a
    1920x1080 window keeps at least 65% zoom, above the zoom where nodes are drawn simplified (8 px text)."""
    workflow = _load(path)
    boxes = [_box(n) for n in workflow["nodes"]] + [
        (g["bounding"][0], g["bounding"][1], g["bounding"][0] + g["bounding"][2], g["bounding"][1] + g["bounding"][3])
        for g in workflow["groups"]]
    width = max(b[2] for b in boxes) - min(b[0] for b in boxes) + 20
    height = max(b[3] for b in boxes) - min(b[1] for b in boxes) + 20
    assert min(0.75 * 1920 / width, 0.75 * 1080 / height) >= 0.65


def test_the_templates_do_what_their_names_say():
    workflows = {p.stem: _load(p) for p in FILES}
    by_type = {name: {n["type"]: n for n in w["nodes"]} for name, w in workflows.items()}
    # another portrait: not the one the other templates use
    replay = by_type["Ditto nod motion on another portrait"]
    assert replay["LoadImage"]["widgets_values"][0] == build.PORTRAIT_2
    assert replay["DittoLoadMotion"]["widgets_values"][0] == build.NOD
    # the driving video's own frame rate drives Motion from Video
    splice = workflows["Ditto speech then driving video motion"]
    nodes = {n["id"]: n for n in splice["nodes"]}
    motion_from_video = next(n for n in splice["nodes"] if n["type"] == "DittoMotionFromVideo")
    fps = next(i for i in motion_from_video["inputs"] if i["name"] == "fps")
    link = next(link for link in splice["links"] if link[0] == fps["link"])
    assert nodes[link[1]]["type"] == "GetVideoComponents" and nodes[link[1]]["outputs"][link[2]]["name"] == "fps"
    # the restorer's stand-in sits between Render's face crops and Paste Back, which gets Render's placement
    restore = workflows["Ditto restore the face then paste back"]
    nodes = {n["id"]: n for n in restore["nodes"]}
    sources = {(nodes[dst]["type"], nodes[dst]["inputs"][slot]["name"]): (nodes[src]["type"], nodes[src]["outputs"][s]["name"])
               for _, src, s, dst, slot, _ in restore["links"]}
    assert sources[("ImageScaleBy", "image")] == ("DittoRender", "face_crops")
    assert sources[("DittoPasteBack", "face_crops")] == ("ImageScaleBy", "IMAGE")
    assert sources[("DittoPasteBack", "placement")] == ("DittoRender", "placement")
    assert sources[("CreateVideo", "images")] == ("DittoPasteBack", "frames")
    assert any("stand-in for a face restorer" in n["widgets_values"][0] for n in restore["nodes"] if n["type"] == "Note")
    # the batch: both sample portraits with the speech, named after the files the loaders read
    batch = workflows["Ditto many portraits and clips at once"]
    nodes = {n["id"]: n for n in batch["nodes"]}
    sources = {(nodes[dst]["type"], nodes[dst]["inputs"][dst_slot]["name"]): (nodes[src]["type"],
                                                                            nodes[src]["outputs"][src_slot]["name"])
               for _, src, src_slot, dst, dst_slot, _ in batch["links"]}
    assert sources[("DittoTalkingHeadBatch", "portrait_names")] == ("DittoLoadPortraits", "names")
    assert sources[("DittoTalkingHeadBatch", "clip_names")] == ("DittoLoadSpeechClips", "names")
    assert sources[("DittoRegisterPortrait", "image")] == ("DittoLoadPortraits", "images")
    staged = sorted(name for name in _staged_names() if name.startswith(build.BATCH_FOLDER + "/"))
    assert staged == [f"{build.BATCH_FOLDER}/{name}" for name in ("portrait.jpg", "portrait_2.jpg", "speech.wav")]


# ComfyUI 0.33's widget names of the built-in loaders an App form offers (nodes.py LoadImage, comfy_extras
# nodes_audio.py LoadAudio, nodes_video.py LoadVideo)
BUILTIN_FORM_WIDGETS = {"LoadImage": {"image"}, "LoadAudio": {"audio"}, "LoadVideo": {"file"}}
APPS = {  # the simple templates: what their App form asks for, and the video it shows
    "Ditto portrait and speech to video": (["image", "audio", "emotion", "seed"], "DittoRenderVideo"),
    "Ditto speech to video in one pass": (["image", "audio", "emotion", "seed"], "DittoTalkingHeadVideo"),
    "Ditto speech to video at 30 fps": (["image", "audio", "emotion", "seed"], "DittoTalkingHeadVideo"),
    "Ditto dub a video with new speech": (["file", "audio", "emotion", "seed"], "DittoRenderVideo"),
}


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_app_forms_name_widgets_the_workflow_has(path):
    """extra.linearData (the front end's App mode): each [node_id, widget_name] is a widget of that node, each
    output a node that shows the video; exactly the simple templates carry one."""
    workflow = _load(path)
    form = workflow["extra"].get("linearData")
    assert (form is not None) == (path.stem in APPS)
    if form is None:
        assert "linearMode" not in workflow["extra"]
        return
    assert workflow["extra"]["linearMode"] is True  # opens as the App, the graph one click away
    classes = build.ditto_classes()
    nodes = {n["id"]: n for n in workflow["nodes"]}
    for node_id, widget in form["inputs"]:
        kind = nodes[node_id]["type"]
        names = ({name for name, _, _ in build.node_io(classes[kind])[1]} if kind in classes
                 else BUILTIN_FORM_WIDGETS[kind])
        assert widget in names, (path.stem, kind, widget)
    asked, shown = APPS[path.stem]
    assert [widget for _, widget in form["inputs"]] == asked
    assert [nodes[node_id]["type"] for node_id in form["outputs"]] == [shown]
