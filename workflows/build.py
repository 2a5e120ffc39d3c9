"""Writes the example workflows (ComfyUI UI format) and their thumbnails into example_workflows/.

The JSON lives only there: ComfyUI lists the workflows of every folder it recognises (example_workflows,
workflows, examples, …), so a copy here would show each template twice in its template browser.

    python workflows/build.py

ComfyUI's templates browser shows a custom-node template by its file name only (the name is the card's title, and
the name with - and _ as spaces its description), so the files have readable names; a same-named .jpg is the
card's thumbnail.

Each workflow is described below as groups of nodes with their widget values and links, laid out in columns;
widget order comes from the node classes' INPUT_TYPES (ours) or is given (ComfyUI's built-ins). Every file the
templates load is a sample the pack copies into ComfyUI's input folder when it loads (nodes/samples.py), so each
template runs as shipped. tests/test_workflows.py checks the files are current, match the registered nodes, use
only staged inputs, and that no two nodes overlap.
"""

from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
TARGET = ROOT / "example_workflows"

# Built-in ComfyUI nodes used here: (inputs as (name, type) for links, outputs as (name, type), widget count).
BUILTINS = {
    "LoadImage": ([], [("IMAGE", "IMAGE"), ("MASK", "MASK")]),
    "LoadAudio": ([], [("AUDIO", "AUDIO")]),
    "LoadVideo": ([], [("VIDEO", "VIDEO")]),
    "GetVideoComponents": ([("video", "VIDEO")], [("images", "IMAGE"), ("audio", "AUDIO"), ("fps", "FLOAT"),
                                                  ("bit_depth", "INT"), ("color_space", "COMBO")]),
    "CheckpointLoaderSimple": ([], [("MODEL", "MODEL"), ("CLIP", "CLIP"), ("VAE", "VAE")]),
    "CLIPTextEncode": ([("clip", "CLIP")], [("CONDITIONING", "CONDITIONING")]),
    "EmptyLatentImage": ([], [("LATENT", "LATENT")]),
    "KSampler": ([("model", "MODEL"), ("positive", "CONDITIONING"), ("negative", "CONDITIONING"),
                  ("latent_image", "LATENT")], [("LATENT", "LATENT")]),
    "VAEDecode": ([("samples", "LATENT"), ("vae", "VAE")], [("IMAGE", "IMAGE")]),
    "SaveVideo": ([("video", "VIDEO")], []),
    "ImageScaleBy": ([("image", "IMAGE")], [("IMAGE", "IMAGE")]),
    "CreateVideo": ([("images", "IMAGE"), ("audio", "AUDIO")], [("VIDEO", "VIDEO")]),
    "Note": ([], []),
}
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN"}

# The sample inputs the templates load (staged into input/ by nodes/samples.py under these names).
PORTRAIT, PORTRAIT_2, SPEECH, DRIVING, NOD = (
    "ditto_portrait.jpg", "ditto_portrait_2.jpg", "ditto_speech.wav", "ditto_driving.mp4", "ditto_nod.safetensors")
BATCH_FOLDER = "ditto_batch"  # the batch template's folder in input/: both portraits and the speech
SD_CHECKPOINT = "v1-5-pruned-emaonly-fp16.safetensors"
SD_CHECKPOINT_REPO = "Comfy-Org/stable-diffusion-v1-5-archive"  # on Hugging Face

# Layout, in canvas units, as ComfyUI's front end (1.49) draws nodes: a 30-unit title bar above pos, 20 units per
# input/output row, 24 per widget. Sizes are set generously so nothing grows into a neighbour after a run (image,
# audio and video previews, the motion curves).
TITLE = 30
WIDTH = 300
NODE_GAP = 36  # between stacked nodes (title bar of the lower one included)
GROUP_GAP = 48  # between groups
GROUP_TITLE = 40  # a group's title bar
GROUP_PAD = 16
CURVES = 116  # the motion-curve preview (web/js/ditto_motion_preview.js: 112 + widget spacing)
EXTRA_HEIGHT = {  # room for what the front end adds to a node besides its widgets
    "LoadImage": 230,  # the image preview
    "LoadAudio": 60,  # the audio player
    "LoadVideo": 310,  # the video preview
    "SaveVideo": 370,  # the saved video (a 512x600 portrait's, say)
    "DittoRenderVideo": 370,  # the rendered video
    "DittoTalkingHeadVideo": 370,
    "DittoTalkingHeadBatch": 370,
    "DittoPreviewFrame": 330,  # the previewed frame
    "DittoEditFace": 60,  # the keyframes text box is taller than one widget row
}
# Nodes 2.0 (the front end's DOM renderer, setting Comfy.VueNodes.Enabled) draws nodes taller than the canvas does;
# measured on frontend 1.49.6 with measure_layout.mjs (every node of these templates, both renderers):
# one of ours is VUE_BASE + VUE_ROW per input/output row + VUE_WIDGET per widget shown (advanced ones are folded
# under a VUE_ADVANCED "Show advanced inputs" row; the canvas shows them all) + VUE_CURVES for the curve preview,
# within VUE_MARGIN; a built-in (no source badge) at most VUE_BUILTIN taller than on the canvas. Each node is sized
# for the taller of the two, so the layout holds in both.
VUE_BASE = 37  # padding and the pack's source badge
VUE_ROW = 20
VUE_WIDGET = 28
VUE_ADVANCED = 24
VUE_CURVES = 126
VUE_MARGIN = 16
VUE_BUILTIN = 28
VUE_NOTE_LABEL = 28  # Nodes 2.0 labels a Note's text box
BUILTIN_WIDGETS = {"LoadImage": 2, "LoadAudio": 2, "LoadVideo": 2, "GetVideoComponents": 0, "CheckpointLoaderSimple": 1,
                   "CLIPTextEncode": 4, "EmptyLatentImage": 3, "KSampler": 7, "VAEDecode": 0, "SaveVideo": 3,
                   "ImageScaleBy": 2, "CreateVideo": 2}
LINKABLE_BUILTIN_WIDGETS = {"CreateVideo": {"fps": "FLOAT"}}  # built-in widgets the templates link as inputs
NOTE_MIN_HEIGHT = 88  # the front end's smallest Note
CANVAS = (1920, 1080)  # the window the opening view and the fit-to-view check assume
FIT_MARGIN = 0.75  # ComfyUI's fit to view fills 75% of the canvas with the graph's bounds, plus 10 units around
FIT_PAD = 10


def ditto_classes():
    sys.path.insert(0, str(ROOT / "tests"))
    import tempfile

    from comfy_stubs import install, load_pack, register

    install(Path(tempfile.mkdtemp()))
    return register(load_pack("comfyui_ditto_workflows"))


def node_io(cls):
    """Link inputs [(name, type)], widget inputs [(name, spec)] and outputs [(name, type)] of one of our nodes."""
    spec = cls.INPUT_TYPES()
    links, widgets = [], []
    for section in ("required", "optional"):
        for name, (kind, options) in spec.get(section, {}).items():
            if kind == "COMBO":
                widgets.append((name, options["options"], options))
            elif kind in WIDGET_TYPES:
                widgets.append((name, kind, options))
            else:
                links.append((name, kind))
    names = getattr(cls, "RETURN_NAMES", None) or cls.RETURN_TYPES
    return links, widgets, list(zip(names, cls.RETURN_TYPES))


def shows_curves(kind: str, outputs) -> bool:
    return kind == "DittoSaveMotion" or any(t == "DITTO_MOTION" for _, t in outputs)


class Workflow:
    def __init__(self, classes):
        self.classes = classes
        self.nodes, self.links, self.groups = [], [], []
        self.app = None  # the App form (extra.linearData), if the template offers one

    def app_form(self, inputs, outputs):
        """Offer the workflow as an App (the front end's App mode: a form of these widgets, a Run button and the
        outputs' results): ``inputs`` as (node, widget name), ``outputs`` as nodes."""
        self.app = {"inputs": [[node["id"], name] for node, name in inputs], "outputs": [node["id"] for node in outputs]}

    def add(self, kind: str, widgets=None, title=None, height=None, **links):
        """Add a node (placed later by ``column``); ``widgets``: widget values by name (ours; defaults fill the rest)
        or a list (built-ins); ``links``: input name → (node, output name); a widget's name links that widget as an
        input (as ComfyUI does when a widget is converted to an input)."""
        node_id = len(self.nodes) + 1
        if kind in self.classes:
            link_inputs, widget_inputs, outputs = node_io(self.classes[kind])
            values = []
            for name, kind_, options in widget_inputs:
                value = (widgets or {}).get(name, options.get("default", kind_[0] if isinstance(kind_, list) else None))
                values.append(value)
                if options.get("control_after_generate"):
                    values.append("fixed")
            widget_specs = {name: kind_ for name, kind_, _ in widget_inputs}
            rows = max(len(link_inputs), len(outputs))
            widget_count = len(values)
            extra = EXTRA_HEIGHT.get(kind, 0) + (CURVES if shows_curves(kind, outputs) else 0)
            linked_widgets = len([name for name in links if name in widget_specs])
            advanced = len([name for name, _, options in widget_inputs if options.get("advanced")])
            shown = len(widget_inputs) - linked_widgets - advanced
            vue = (VUE_BASE + VUE_ROW * max(len(link_inputs) + linked_widgets, len(outputs)) + VUE_WIDGET * shown
                   + (VUE_ADVANCED if advanced else 0) + EXTRA_HEIGHT.get(kind, 0)
                   + (VUE_CURVES if shows_curves(kind, outputs) else 0) + VUE_MARGIN)
        else:
            link_inputs, outputs = BUILTINS[kind]
            values = list(widgets or [])
            widget_specs = LINKABLE_BUILTIN_WIDGETS.get(kind, {})
            rows = max(len(link_inputs), len(outputs))
            widget_count = BUILTIN_WIDGETS.get(kind, len(values))
            extra = EXTRA_HEIGHT.get(kind, 0)
            vue = 0  # VUE_BUILTIN over the canvas height, below
        inputs = []

        def connect(entry, name, type_):
            source, output_name = links[name]
            slot = [o[0] for o in source["outputs_spec"]].index(output_name)
            link_id = len(self.links) + 1
            self.links.append([link_id, source["id"], slot, node_id, len(inputs), type_])
            source["outputs"][slot]["links"].append(link_id)
            entry["link"] = link_id

        for name, type_ in link_inputs:
            entry = {"name": name, "type": type_, "link": None}
            if name in links:
                connect(entry, name, type_)
            inputs.append(entry)
        for name in links:
            if name in widget_specs:
                type_ = widget_specs[name]
                entry = {"name": name, "type": type_, "widget": {"name": name}, "link": None}
                connect(entry, name, type_)
                inputs.append(entry)
        if height is None:
            canvas = rows * 20 + 6 + (24 * widget_count + 8 if widget_count or shows_curves(kind, outputs) else 0) + extra
            height = max(canvas, vue) if kind in self.classes else canvas + VUE_BUILTIN
        node = {
            "id": node_id, "type": kind, "pos": [0, 0], "size": [WIDTH, height],
            "flags": {}, "order": node_id - 1, "mode": 0, "inputs": inputs,
            "outputs": [{"name": n, "type": t, "links": [], "slot_index": i} for i, (n, t) in enumerate(outputs)],
            "properties": {"Node name for S&R": kind}, "widgets_values": values,
            "outputs_spec": outputs,
        }
        if title:
            node["title"] = title
        self.nodes.append(node)
        return node

    def note(self, text: str, lines: int | None = None):
        """A Note node (ComfyUI's front-end-only text box; never sent to the server)."""
        lines = lines or max(2, -(-len(text) // 44))
        node = self.add("Note", [text], height=max(NOTE_MIN_HEIGHT, 40 + 14 * lines) + VUE_NOTE_LABEL)
        node["properties"] = {"text": ""}
        node["color"], node["bgcolor"] = "#432", "#653"
        return node

    def column(self, x: float, y: float, nodes, width: int = WIDTH) -> float:
        """Stack ``nodes`` from (x, y) (the top of the first title bar); returns the bottom of the last."""
        for node in nodes:
            node["pos"] = [x, y + TITLE]
            node["size"][0] = width
            y += TITLE + node["size"][1] + NODE_GAP
        return y - NODE_GAP

    def group(self, title: str, x: float, y: float, columns, color: str = "#3f789e", width: int = WIDTH) -> float:
        """A group at (x, y) holding ``columns`` (lists of nodes) side by side; returns where the next group to
        its right starts."""
        inner_x, inner_y = x + GROUP_PAD, y + GROUP_TITLE
        bottom = inner_y
        for index, nodes in enumerate(columns):
            bottom = max(bottom, self.column(inner_x + index * (width + GROUP_GAP), inner_y, nodes, width))
        box = [x, y, 2 * GROUP_PAD + len(columns) * width + (len(columns) - 1) * GROUP_GAP,
               bottom + GROUP_PAD - y]
        self.groups.append({"id": len(self.groups) + 1, "title": title, "bounding": box, "color": color,
                            "font_size": 20, "flags": {}})
        return x + box[2] + GROUP_GAP

    def to_json(self) -> dict:
        nodes = [{k: v for k, v in n.items() if k != "outputs_spec"} for n in self.nodes]
        left, top, right, bottom = bounds(nodes, self.groups)
        scale = min(1.0, fit_scale(nodes, self.groups))  # the view it opens with: fitted, at most 100%
        offset = [round((CANVAS[0] / scale - (right - left)) / 2 - left, 1),
                  round((CANVAS[1] / scale - (bottom - top)) / 2 - top, 1)]
        extra = {"ds": {"scale": round(scale, 3), "offset": offset}}
        if self.app:  # opened in App mode (the front end reads extra.linearMode when it loads a workflow)
            extra["linearData"] = self.app
            extra["linearMode"] = True
        return {
            "id": str(uuid.UUID(int=len(self.nodes) * 7919 + len(self.links))), "revision": 0,
            "last_node_id": len(nodes), "last_link_id": len(self.links), "nodes": nodes, "links": self.links,
            "groups": self.groups, "config": {}, "extra": extra, "version": 0.4,
        }


def node_box(node) -> tuple[float, float, float, float]:
    """(left, top, right, bottom) of a node as drawn: its title bar sits above pos."""
    (x, y), (w, h) = node["pos"], node["size"]
    return x, y - TITLE, x + w, y + h


def bounds(nodes, groups) -> tuple[float, float, float, float]:
    boxes = [node_box(n) for n in nodes] + [(g["bounding"][0], g["bounding"][1], g["bounding"][0] + g["bounding"][2],
                                             g["bounding"][1] + g["bounding"][3]) for g in groups]
    return (min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes))


def fit_scale(nodes, groups) -> float:
    """The zoom ComfyUI's fit to view gives on a CANVAS-sized window."""
    left, top, right, bottom = bounds(nodes, groups)
    return min(FIT_MARGIN * CANVAS[0] / (right - left + 2 * FIT_PAD), FIT_MARGIN * CANVAS[1] / (bottom - top + 2 * FIT_PAD))


# --- the parts the templates share -------------------------------------------------------------------------------
INPUTS_NOTE = ("The pack copied its sample portrait and speech into ComfyUI's input folder; choose your own "
               "files here. Load Ditto Models reads the release in models/ditto.")
PREPARE_NOTE = "Register Portrait finds and crops the face once; Encode Audio turns the speech into Ditto's features."
COLORS = {"inputs": "#3f789e", "prepare": "#4a7a4a", "motion": "#8a6a2e", "output": "#7a4a7a", "sd": "#5a5a8a"}


def loaders(w: Workflow, image=PORTRAIT, audio=True):
    models = w.add("DittoLoadModels")
    portrait_image = w.add("LoadImage", [image, "image"]) if image else None
    speech = w.add("LoadAudio", [SPEECH, None, None]) if audio else None
    return models, portrait_image, speech


def inputs_group(w: Workflow):
    """The Inputs group (models, the sample portrait and speech, and a note): its nodes and where the next group
    starts."""
    models, image, speech = loaders(w)
    x = w.group("Inputs", 0, 0, [[w.note(INPUTS_NOTE), models, image, speech]], COLORS["inputs"])
    return models, image, speech, x


def register(w: Workflow, models, image_node, output="IMAGE"):
    return w.add("DittoRegisterPortrait", models=(models, "models"), image=(image_node, output))


def encode(w: Workflow, models, speech):
    return w.add("DittoEncodeAudio", models=(models, "models"), audio=(speech, "AUDIO"))


def sample(w: Workflow, models, portrait, encoded, widgets=None):
    return w.add("DittoSampleMotion", widgets, models=(models, "models"), portrait=(portrait, "portrait"),
                 audio_features=(encoded, "audio_features"))


# --- the templates --------------------------------------------------------------------------------------------------
# Each template is a row of groups, left to right in the order things happen; ``x`` is where the next group starts.
def portrait_audio_to_video(classes):
    w = Workflow(classes)
    models, image, speech, x = inputs_group(w)
    portrait, encoded = register(w, models, image), encode(w, models, speech)
    x = w.group("Face and speech", x, 0, [[w.note(PREPARE_NOTE), portrait, encoded]], COLORS["prepare"])
    motion = sample(w, models, portrait, encoded)
    x = w.group("Motion from the speech", x, 0, [[
        w.note("Samples head motion, lips, expressions and blinks from the speech; the curves show head pose (from "
               "the first frame) and mouth opening. One seed, one motion."), motion]], COLORS["motion"])
    video = w.add("DittoRenderVideo", {"filename_prefix": "ditto/talking_head"}, models=(models, "models"),
                  portrait=(portrait, "portrait"), motion=(motion, "motion"), audio=(encoded, "audio"))
    w.group("Video", x, 0, [[w.note("Renders the motion on the portrait into an mp4 with the speech, in "
                                    "output/ditto/."), video]], COLORS["output"])
    w.app_form([(image, "image"), (speech, "audio"), (motion, "emotion"), (motion, "seed")], [video])
    return w


def inputs_and_face(w: Workflow):
    """The Inputs and Face groups: models, the sample portrait's image, speech and its registered portrait, and
    where the next group starts."""
    models, image, speech, x = inputs_group(w)
    portrait = register(w, models, image)
    x = w.group("Face", x, 0, [[w.note("Register Portrait finds and crops the face once."), portrait]],
                COLORS["prepare"])
    return models, image, speech, portrait, x


def talking_head_app(w: Workflow, image, speech, talking):
    """The App form of a Talking Head Video template: portrait, speech, emotion and seed in, the video out."""
    w.app_form([(image, "image"), (speech, "audio"), (talking, "emotion"), (talking, "seed")], [talking])


def streamed_talking_head(classes):
    w = Workflow(classes)
    models, image, speech, portrait, x = inputs_and_face(w)
    talking = w.add("DittoTalkingHeadVideo", {"filename_prefix": "ditto/streamed"}, models=(models, "models"),
                    portrait=(portrait, "portrait"), audio=(speech, "AUDIO"))
    saved = w.add("DittoSaveMotion", {"filename_prefix": "ditto/streamed_motion"}, motion=(talking, "motion"))
    w.group("Speech to video in one pass", x, 0, [[
        w.note("Encodes the speech, samples the motion and renders the frames as each part is ready: the fastest "
               "way to a video, in flat memory. Its motion is saved too (output/ditto/)."), talking], [saved]],
        COLORS["output"])
    talking_head_app(w, image, speech, talking)
    return w


def sample_edit_render(classes):
    w = Workflow(classes)
    models, image, speech, x = inputs_group(w)
    portrait, encoded = register(w, models, image), encode(w, models, speech)
    motion = sample(w, models, portrait, encoded, {"emotion_timeline": "0:neutral, 1.5:happy, 3:happy+surprise"})
    x = w.group("Face, speech and motion", x, 0, [[
        w.note("The emotion timeline (seconds:emotion) overrides the emotion widget: neutral, then happy, then "
               "happy+surprise.", 3), portrait, encoded, motion]], COLORS["prepare"])
    pose = w.add("DittoEditPose", {"pitch": 2.0, "pose_amplitude": 1.2, "yaw_curve": "0:0, 1.5:8, 3:-8"},
                 motion=(motion, "motion"))
    expression = w.add("DittoEditExpression", {"mouth_amplitude": 1.2}, motion=(pose, "motion"))
    relaxed = w.add("DittoRelaxOnSilence", {}, motion=(expression, "motion"), audio=(speech, "AUDIO"))
    faded = w.add("DittoFadeMotion", {"fade_in_frames": 5, "fade_out_frames": 10}, models=(models, "models"),
                  motion=(relaxed, "motion"))
    x = w.group("Edit the motion", x, 0, [[
        w.note("Head 2° down, more movement, a yaw curve (seconds:degrees), a wider mouth.", 2), pose, expression],
        [w.note("Rest while the speech is silent, and fade in and out.", 2), relaxed, faded]], COLORS["motion"])
    render = w.add("DittoRender", models=(models, "models"), portrait=(portrait, "portrait"),
                   motion=(faded, "motion"), audio=(encoded, "audio"))
    save = w.add("SaveVideo", ["ditto/edited", "auto", "auto"], video=(render, "video"))
    w.group("Video", x, 0, [[
        w.note("Render gives IMAGE frames, the audio and a VIDEO; Save Video writes the mp4 to output/ditto/."),
        render, save]], COLORS["output"])
    return w


def driving_video_splice(classes):
    w = Workflow(classes)
    models, image, speech = loaders(w)
    video = w.add("LoadVideo", [DRIVING, "image"])
    parts = w.add("GetVideoComponents", video=(video, "VIDEO"))
    x = w.group("Inputs", 0, 0, [[w.note(INPUTS_NOTE), models, image, speech]], COLORS["inputs"])
    x = w.group("Driving video", x, 0, [[
        w.note("A 3-second clip of a gently nodding head (made from the sample portrait); its frames and its own "
               "frame rate go to Motion from Video.", 3), video, parts]], COLORS["inputs"])
    portrait, encoded = register(w, models, image), encode(w, models, speech)
    motion = sample(w, models, portrait, encoded)
    driven = w.add("DittoMotionFromVideo", {"smoothing": 3}, models=(models, "models"), frames=(parts, "images"),
                   fps=(parts, "fps"))
    joined = w.add("DittoConcatMotion", first=(motion, "motion"), second=(driven, "motion"))
    x = w.group("Motion: the speech, then the driving video", x, 0, [[
        w.note("Motion sampled from the speech, then the motion read from the driving video.", 2), portrait,
        encoded, motion], [driven, joined]], COLORS["motion"])
    rendered = w.add("DittoRenderVideo", {"filename_prefix": "ditto/spliced"}, models=(models, "models"),
                     portrait=(portrait, "portrait"), motion=(joined, "motion"), audio=(encoded, "audio"))
    w.group("Video", x, 0, [[
        w.note("The speech plays over the first part; the driving video's part is silent.", 2), rendered]],
        COLORS["output"])
    return w


def dub_video(classes):
    w = Workflow(classes)
    models, _, speech = loaders(w, image=None)
    video = w.add("LoadVideo", [DRIVING, "image"])
    parts = w.add("GetVideoComponents", video=(video, "VIDEO"))
    x = w.group("Inputs", 0, 0, [[w.note(INPUTS_NOTE), models, speech], [
        w.note("The video to dub: a 3-second clip of a gently nodding head (made from the sample portrait). Its "
               "frames and its frame rate go to Register Portrait.", 3), video, parts]], COLORS["inputs"])
    portrait = w.add("DittoRegisterPortrait", {"batch_mode": "video source", "loop": "ping-pong"},
                     models=(models, "models"), image=(parts, "images"), source_fps=(parts, "fps"))
    encoded = encode(w, models, speech)
    x = w.group("The video's face and the new speech", x, 0, [[
        w.note("'video source' registers every frame: the head, body and background will move as filmed. Frames "
               "without a face (a cut, a hand over the face) pass through unchanged. loop: what happens when the "
               "speech outlasts the video (ping-pong, once then hold, or stop at the shorter).", 5), portrait,
        encoded]], COLORS["prepare"])
    motion = sample(w, models, portrait, encoded)
    x = w.group("Mouth and expression from the speech", x, 0, [[
        w.note("The motion's mouth and expression drive the video's face; its head pose stays the video's.", 2),
        motion]], COLORS["motion"])
    rendered = w.add("DittoRenderVideo", {"filename_prefix": "ditto/dubbed"}, models=(models, "models"),
                     portrait=(portrait, "portrait"), motion=(motion, "motion"), audio=(encoded, "audio"))
    w.group("Dubbed video", x, 0, [[
        w.note("fps 0 keeps the video's own frame rate; the mp4 with the new speech goes to output/ditto/.", 2),
        rendered]], COLORS["output"])
    w.app_form([(video, "file"), (speech, "audio"), (motion, "emotion"), (motion, "seed")], [rendered])
    return w


def talking_head_30_fps(classes):
    w = Workflow(classes)
    models, image, speech, portrait, x = inputs_and_face(w)
    talking = w.add("DittoTalkingHeadVideo", {"filename_prefix": "ditto/talking_head_30fps", "fps": 30.0},
                    models=(models, "models"), portrait=(portrait, "portrait"), audio=(speech, "AUDIO"))
    w.group("Video at 30 fps", x, 0, [[
        w.note("fps 30: the motion, sampled at 25 fps, is resampled in keypoint space (head pose through its "
               "angles), so every frame is new, not a repeat; ⌈seconds × 30⌉ frames with the speech untouched. "
               "Any rate from 10 to 60 works.", 4), talking]], COLORS["output"])
    talking_head_app(w, image, speech, talking)
    return w


def save_motion(classes):
    w = Workflow(classes)
    models, image, speech, x = inputs_group(w)
    portrait, encoded = register(w, models, image), encode(w, models, speech)
    x = w.group("Face and speech", x, 0, [[w.note(PREPARE_NOTE), portrait, encoded]], COLORS["prepare"])
    motion = sample(w, models, portrait, encoded)
    saved = w.add("DittoSaveMotion", {"filename_prefix": "ditto/motion"}, motion=(motion, "motion"))
    w.group("Motion to a file", x, 0, [[
        w.note("Saves the sampled motion to output/ditto/ as .safetensors: editable data to replay on any "
               "portrait (copy it into input/ for Load Motion)."), motion, saved]], COLORS["motion"])
    return w


def load_motion_render(classes):
    w = Workflow(classes)
    models = w.add("DittoLoadModels")
    image = w.add("LoadImage", [PORTRAIT_2, "image"])
    x = w.group("Another portrait", 0, 0, [[
        w.note("A second sample portrait (Grace Hopper, US Navy, public domain); choose any face here."),
        models, image]], COLORS["inputs"])
    portrait = register(w, models, image)
    motion = w.add("DittoLoadMotion", {"motion_file": NOD})
    x = w.group("Motion from a file", x, 0, [[
        w.note("ditto_nod.safetensors, a gentle nod that ships with the pack. Motions saved by Save Motion can be "
               "replayed too: copy them into input/.", 3), portrait, motion]], COLORS["motion"])
    video = w.add("DittoRenderVideo", {"filename_prefix": "ditto/replayed"}, models=(models, "models"),
                  portrait=(portrait, "portrait"), motion=(motion, "motion"))
    w.group("Video", x, 0, [[w.note("The motion on this portrait, as an mp4 (no audio) in output/ditto/.", 2),
                             video]], COLORS["output"])
    return w


def generated_portrait_talking_head(classes):
    w = Workflow(classes)
    checkpoint = w.add("CheckpointLoaderSimple", [SD_CHECKPOINT])
    # where the file comes from: ComfyUI's front end offers to download a missing model listed here
    checkpoint["properties"]["models"] = [{
        "name": SD_CHECKPOINT, "directory": "checkpoints",
        "url": f"https://huggingface.co/{SD_CHECKPOINT_REPO}/resolve/main/{SD_CHECKPOINT}"}]
    latent = w.add("EmptyLatentImage", [512, 512, 1])
    positive = w.add("CLIPTextEncode", ["studio portrait photo of a smiling woman, looking at the camera, head and "
                                        "shoulders, soft light, sharp focus"], clip=(checkpoint, "CLIP"),
                     height=150)
    negative = w.add("CLIPTextEncode", ["blurry, profile, sunglasses, hands, text"], clip=(checkpoint, "CLIP"),
                     height=110)
    sampled = w.add("KSampler", [42, "fixed", 25, 7.0, "euler", "normal", 1.0], model=(checkpoint, "MODEL"),
                    positive=(positive, "CONDITIONING"), negative=(negative, "CONDITIONING"),
                    latent_image=(latent, "LATENT"))
    image = w.add("VAEDecode", samples=(sampled, "LATENT"), vae=(checkpoint, "VAE"))
    positive["title"], negative["title"] = "Prompt", "Negative prompt"
    x = w.group("Portrait from Stable Diffusion 1.5", 0, 0, [[
        w.note(f"Needs a Stable Diffusion 1.5 checkpoint in models/checkpoints: {SD_CHECKPOINT} (from the "
               f"Hugging Face repo {SD_CHECKPOINT_REPO}), or choose another.", 4),
        checkpoint, latent, positive], [negative, sampled, image]], COLORS["sd"])
    models = w.add("DittoLoadModels")
    speech = w.add("LoadAudio", [SPEECH, None, None])
    portrait, encoded = register(w, models, image), encode(w, models, speech)
    motion = sample(w, models, portrait, encoded, {"emotion": "happy"})
    video = w.add("DittoRenderVideo", {"filename_prefix": "ditto/generated_talking_head"}, models=(models, "models"),
                  portrait=(portrait, "portrait"), motion=(motion, "motion"), audio=(encoded, "audio"))
    w.group("Ditto: the generated portrait speaks", x, 0, [[
        w.note("The generated image is the portrait; the sample speech is the voice.", 2), models, speech],
        [portrait, encoded], [motion, video]], COLORS["prepare"])
    return w


def face_speech_motion(w: Workflow):
    """The Inputs group, then one group with the registered portrait, the encoded speech and the sampled motion:
    models, portrait, encoded speech, motion, and where the next group starts."""
    models, image, speech, x = inputs_group(w)
    portrait, encoded = register(w, models, image), encode(w, models, speech)
    motion = sample(w, models, portrait, encoded)
    x = w.group("Face, speech and motion", x, 0, [[w.note(PREPARE_NOTE), portrait, encoded, motion]],
                COLORS["prepare"])
    return models, portrait, encoded, motion, x


def restore_then_paste_back(classes):
    w = Workflow(classes)
    models, portrait, encoded, motion, x = face_speech_motion(w)
    render = w.add("DittoRender", models=(models, "models"), portrait=(portrait, "portrait"),
                   motion=(motion, "motion"), audio=(encoded, "audio"))
    restored = w.add("ImageScaleBy", ["lanczos", 2.0], image=(render, "face_crops"))
    x = w.group("Render, then restore the face", x, 0, [
        [w.note("Besides the frames, Render outputs the rendered 512x512 faces (face_crops) and where each goes "
                "(placement)."), render],
        [w.note("A stand-in for a face restorer or upscaler (e.g. a GFPGAN or CodeFormer node pack): here a 2x "
                "lanczos upscale to 1024x1024. Put yours in its place; any crop size works."), restored]],
        COLORS["motion"])
    pasted = w.add("DittoPasteBack", face_crops=(restored, "IMAGE"), placement=(render, "placement"))
    video = w.add("CreateVideo", [25.0, 8], images=(pasted, "frames"), audio=(render, "audio"),
                  fps=(render, "fps"))
    save = w.add("SaveVideo", ["ditto/restored", "auto", "auto"], video=(video, "VIDEO"))
    w.group("Paste back and save", x, 0, [[
        w.note("Paste Back blends the restored faces into the portrait's frames with Ditto's soft edge; the "
               "speech is added and the mp4 written to output/ditto/."), pasted, video, save]], COLORS["output"])
    return w


def many_portraits_and_clips(classes):
    w = Workflow(classes)
    models = w.add("DittoLoadModels")
    faces = w.add("DittoLoadPortraits", {"folder": BATCH_FOLDER})
    speech = w.add("DittoLoadSpeechClips", {"folder": BATCH_FOLDER})
    x = w.group("Folders of portraits and speech", 0, 0, [[
        w.note(f"Every image and every audio file of input/{BATCH_FOLDER}/ (the pack put two portraits and the "
               f"speech there), as lists with their file names; choose any folder in input/."),
        models, faces, speech]], COLORS["inputs"])
    portraits = register(w, models, faces, "images")
    x = w.group("Faces", x, 0, [[w.note("Register Portrait runs once per image of the list."), portraits]],
                COLORS["prepare"])
    batch = w.add("DittoTalkingHeadBatch", {"pairing": "every portrait × every clip", "filename_prefix": "ditto/batch"},
                  models=(models, "models"), portraits=(portraits, "portrait"), clips=(speech, "clips"),
                  portrait_names=(faces, "names"), clip_names=(speech, "names"))
    w.group("One video per portrait and clip", x, 0, [[
        w.note("Each portrait speaks each clip: output/ditto/batch_<portrait>_<clip>_00001.mp4, named after the "
               "files. 'pairs' takes the i-th portrait with the i-th clip instead. One progress bar for all."),
        batch]], COLORS["output"])
    return w


FACE_KEYFRAMES = "smile = 0.6:0, 1.2:1, 2.2:1, 2.7:0\neyebrows = 2.6:0, 3.2:1.2"


def face_edits_and_preview(classes):
    w = Workflow(classes)
    models, portrait, encoded, motion, x = face_speech_motion(w)
    edited = w.add("DittoEditFace", {"keyframes": FACE_KEYFRAMES}, motion=(motion, "motion"))
    x = w.group("Smile, then raise the eyebrows", x, 0, [[
        w.note("Edit Face: a smile comes in at 0.6 s, holds, and goes by 2.7 s; the eyebrows rise from 2.6 s to the "
               "end. The sliders hold an amount for the whole clip (1: clear, natural); a keyframes line "
               "(seconds:value) replaces its slider. The curves show the amounts over time.", 5), edited]],
        COLORS["motion"])
    preview = w.add("DittoPreviewFrame", {"seconds": 1.5}, models=(models, "models"), portrait=(portrait, "portrait"),
                    motion=(edited, "motion"))
    video = w.add("DittoRenderVideo", {"filename_prefix": "ditto/face_edits"}, models=(models, "models"),
                  portrait=(portrait, "portrait"), motion=(edited, "motion"), audio=(encoded, "audio"))
    w.group("Preview one frame, then the video", x, 0, [
        [w.note("Preview Frame renders the frame at 1.5 s (the smile) exactly as Render makes it, in the time of "
                "one batch: dial in the edits here, then render the clip.", 3), preview],
        [w.note("The whole clip with the speech, as an mp4 in output/ditto/.", 2), video]], COLORS["output"])
    return w


# file name (the templates browser's title) → (builder, thumbnail: portrait(s), what it shows)
WORKFLOWS = {
    "Ditto portrait and speech to video": portrait_audio_to_video,
    "Ditto speech to video in one pass": streamed_talking_head,
    "Ditto emotion timeline and motion edits": sample_edit_render,
    "Ditto speech then driving video motion": driving_video_splice,
    "Ditto dub a video with new speech": dub_video,
    "Ditto speech to video at 30 fps": talking_head_30_fps,
    "Ditto save motion to a file": save_motion,
    "Ditto nod motion on another portrait": load_motion_render,
    "Ditto portrait from Stable Diffusion": generated_portrait_talking_head,
    "Ditto restore the face then paste back": restore_then_paste_back,
    "Ditto many portraits and clips at once": many_portraits_and_clips,
    "Ditto face edits with a frame preview": face_edits_and_preview,
}
THUMBNAILS = {
    "Ditto portrait and speech to video": ([PORTRAIT], "speech", "portrait + speech", "talking-head video"),
    "Ditto speech to video in one pass": ([PORTRAIT], "speech", "portrait + speech", "video in one pass"),
    "Ditto emotion timeline and motion edits": ([PORTRAIT], "curves", "emotion timeline", "pose and mouth edits"),
    "Ditto speech then driving video motion": ([PORTRAIT], "film", "speech, then", "a driving video"),
    "Ditto dub a video with new speech": ([PORTRAIT], "film", "a filmed face +", "new speech: dubbed"),
    "Ditto speech to video at 30 fps": ([PORTRAIT], "speech", "portrait + speech", "video at 30 fps"),
    "Ditto save motion to a file": ([PORTRAIT], "curves", "speech to motion", "saved as a file"),
    "Ditto nod motion on another portrait": ([PORTRAIT_2], "nod", "a saved nod", "on another portrait"),
    "Ditto portrait from Stable Diffusion": ([], "speech", "SD 1.5 portrait", "+ speech to video"),
    "Ditto restore the face then paste back": ([PORTRAIT], "film", "face crops restored,", "then pasted back"),
    "Ditto many portraits and clips at once": ([PORTRAIT, PORTRAIT_2], "speech", "many portraits + clips",
                                               "one video each"),
    "Ditto face edits with a frame preview": ([PORTRAIT], "face", "talks, smiles, raises",
                                                          "the eyebrows; a preview"),
}
SAMPLE_FILES = {PORTRAIT: "portrait.jpg", PORTRAIT_2: "portrait_2.jpg"}


def build() -> dict[str, dict]:
    classes = ditto_classes()
    return {name: make(classes).to_json() for name, make in WORKFLOWS.items()}


def thumbnail(name: str):
    """A 512x512 picture of what the template takes and does: its portrait, a sketch of its other input or of the
    motion, and a label. (Not an output frame: the templates' real output needs the real weights.)"""
    import math

    from PIL import Image, ImageDraw, ImageFont, ImageOps

    portraits, sketch, line1, line2 = THUMBNAILS[name]
    size = 512
    image = Image.new("RGB", (size, size), (24, 26, 30))
    draw = ImageDraw.Draw(image)
    if portraits:  # side by side
        width = size // len(portraits)
        for index, portrait in enumerate(portraits):
            face = Image.open(ROOT / "assets" / SAMPLE_FILES[portrait]).convert("RGB")
            image.paste(ImageOps.fit(face, (width, 344), centering=(0.5, 0.15)), (index * width, 0))
    else:  # the image-generation template: no picture of ours to show
        draw.rectangle((0, 0, size, 344), fill=(52, 54, 84))
        font = ImageFont.load_default(size=40)
        draw.text((size / 2, 150), "Stable Diffusion 1.5", font=font, fill=(220, 220, 240), anchor="mm")
        draw.text((size / 2, 200), "makes the portrait", font=font, fill=(220, 220, 240), anchor="mm")
    # a strip with a sketch of the second input or of the motion
    top = 344
    draw.rectangle((0, top, size, top + 56), fill=(34, 36, 42))
    mid = top + 28
    if sketch == "speech":
        for x in range(16, size - 16, 6):
            amp = 18 * abs(math.sin(x / 23.0)) * (0.4 + 0.6 * abs(math.sin(x / 71.0)))
            draw.line((x, mid - amp, x, mid + amp), fill=(240, 96, 112), width=3)
    elif sketch == "film":
        face = Image.open(ROOT / "assets" / "portrait.jpg").convert("RGB").crop((145, 20, 305, 180))
        tile = face.resize((48, 48))
        for i, x in enumerate(range(16, size - 48, 60)):
            draw.rectangle((x - 3, top + 1, x + 51, top + 55), fill=(10, 10, 10))
            image.paste(tile.rotate((-1) ** i * 4 * (i % 3) / 2, fillcolor=(10, 10, 10)), (x, top + 4))
    elif sketch == "face":  # the template's smile and eyebrow amounts over the clip, coloured as the node draws them
        for (low, high), colour in (((0.18, 0.8), (96, 208, 144)), ((0.78, 1.0), (224, 224, 112))):
            points = []
            for x in range(16, size - 16, 4):
                t = (x - 16) / (size - 32)
                rise = min(1.0, max(0.0, (t - low) / 0.12))
                fall = 1.0 if high >= 1.0 else min(1.0, max(0.0, (high - t) / 0.12))
                points.append((x, top + 46 - 36 * rise * fall))
            draw.line(points, fill=colour, width=3)
    else:  # curves: pitch/yaw (and the mouth), or a nod
        colours = [(240, 176, 64), (80, 176, 240), (240, 96, 112)]
        for k, colour in enumerate(colours[: 2 if sketch == "nod" else 3]):
            points = []
            for x in range(16, size - 16, 4):
                t = (x - 16) / (size - 32)
                value = (math.sin(t * math.pi * 4) if k == 0 else math.sin(t * math.pi * 2 + k)) * (
                    0.9 if sketch == "nod" else 0.5 + 0.5 * math.sin(t * 9 + k))
                points.append((x, mid - 20 * value))
            draw.line(points, fill=colour, width=3)
    font = ImageFont.load_default(size=34)
    draw.text((size / 2, 432), line1, font=font, fill=(236, 236, 236), anchor="mm")
    draw.text((size / 2, 476), line2, font=font, fill=(236, 236, 236), anchor="mm")
    return image


def main() -> None:
    TARGET.mkdir(exist_ok=True)
    for stale in list(TARGET.glob("*.json")) + list(TARGET.glob("*.jpg")):
        if stale.stem not in WORKFLOWS:
            stale.unlink()
    for name, workflow in build().items():
        (TARGET / f"{name}.json").write_text(json.dumps(workflow, indent=2) + "\n")
        thumbnail(name).save(TARGET / f"{name}.jpg", quality=88)
    print(f"wrote {len(WORKFLOWS)} workflows and their thumbnails to {TARGET}")


if __name__ == "__main__":
    main()
