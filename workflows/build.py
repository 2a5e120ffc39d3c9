"""Writes the example workflows (ComfyUI UI format) into example_workflows/.

The JSON lives only there: ComfyUI lists the workflows of every folder it recognises (example_workflows,
workflows, examples, …), so a copy here would show each template twice in its template browser.

    python workflows/build.py

Each workflow is described below as nodes with their widget values and links; widget order comes from the node
classes' INPUT_TYPES (ours) or is given (ComfyUI's built-ins). tests/test_workflows.py checks the files are
current and that every node, input, type and widget matches the registered nodes.
"""

from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
TARGET = HERE.parent / "example_workflows"

# Built-in ComfyUI nodes used here: (inputs as (name, type) for links, outputs as (name, type), widget count).
BUILTINS = {
    "LoadImage": ([], [("IMAGE", "IMAGE"), ("MASK", "MASK")]),
    "LoadAudio": ([], [("AUDIO", "AUDIO")]),
    "LoadVideo": ([], [("VIDEO", "VIDEO")]),
    "GetVideoComponents": ([("video", "VIDEO")], [("images", "IMAGE"), ("audio", "AUDIO"), ("fps", "FLOAT")]),
    "CheckpointLoaderSimple": ([], [("MODEL", "MODEL"), ("CLIP", "CLIP"), ("VAE", "VAE")]),
    "CLIPTextEncode": ([("clip", "CLIP")], [("CONDITIONING", "CONDITIONING")]),
    "EmptyLatentImage": ([], [("LATENT", "LATENT")]),
    "KSampler": ([("model", "MODEL"), ("positive", "CONDITIONING"), ("negative", "CONDITIONING"),
                  ("latent_image", "LATENT")], [("LATENT", "LATENT")]),
    "VAEDecode": ([("samples", "LATENT"), ("vae", "VAE")], [("IMAGE", "IMAGE")]),
    "PreviewImage": ([("images", "IMAGE")], []),
    "SaveVideo": ([("video", "VIDEO")], []),
}
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN"}


def ditto_classes():
    sys.path.insert(0, str(HERE.parent / "tests"))
    import tempfile

    from comfy_stubs import install, load_pack

    install(Path(tempfile.mkdtemp()))
    return load_pack("comfyui_ditto_workflows").NODE_CLASS_MAPPINGS


def node_io(cls):
    """Link inputs [(name, type)], widget inputs [(name, spec)] and outputs [(name, type)] of one of our nodes."""
    spec = cls.INPUT_TYPES()
    links, widgets = [], []
    for section in ("required", "optional"):
        for name, (kind, *options) in spec.get(section, {}).items():
            if isinstance(kind, list) or kind in WIDGET_TYPES:
                widgets.append((name, kind, options[0] if options else {}))
            else:
                links.append((name, kind))
    names = getattr(cls, "RETURN_NAMES", None) or cls.RETURN_TYPES
    return links, widgets, list(zip(names, cls.RETURN_TYPES))


class Workflow:
    def __init__(self, classes):
        self.classes = classes
        self.nodes, self.links = [], []

    def add(self, kind: str, pos, widgets=None, title=None, **links):
        """Add a node; ``widgets``: widget values by name (ours; defaults fill the rest) or a list (built-ins);
        ``links``: input name → (node, output name)."""
        node_id = len(self.nodes) + 1
        if kind in self.classes:
            link_inputs, widget_inputs, outputs = node_io(self.classes[kind])
            values = []
            for name, kind_, options in widget_inputs:
                value = (widgets or {}).get(name, options.get("default", kind_[0] if isinstance(kind_, list) else None))
                values.append(value)
                if options.get("control_after_generate"):
                    values.append("fixed")
        else:
            link_inputs, outputs = BUILTINS[kind]
            values = list(widgets or [])
        inputs = []
        for name, type_ in link_inputs:
            entry = {"name": name, "type": type_, "link": None}
            if name in links:
                source, output_name = links[name]
                slot = [o[0] for o in source["outputs_spec"]].index(output_name)
                link_id = len(self.links) + 1
                self.links.append([link_id, source["id"], slot, node_id, len(inputs), type_])
                source["outputs"][slot]["links"].append(link_id)
                entry["link"] = link_id
            inputs.append(entry)
        node = {
            "id": node_id, "type": kind, "pos": list(pos), "size": [320, 60 + 26 * (len(values) + len(inputs))],
            "flags": {}, "order": node_id - 1, "mode": 0, "inputs": inputs,
            "outputs": [{"name": n, "type": t, "links": [], "slot_index": i} for i, (n, t) in enumerate(outputs)],
            "properties": {"Node name for S&R": kind}, "widgets_values": values,
            "outputs_spec": outputs,
        }
        if title:
            node["title"] = title
        self.nodes.append(node)
        return node

    def to_json(self) -> dict:
        nodes = [{k: v for k, v in n.items() if k != "outputs_spec"} for n in self.nodes]
        return {
            "id": str(uuid.UUID(int=len(self.nodes) * 7919 + len(self.links))), "revision": 0,
            "last_node_id": len(nodes), "last_link_id": len(self.links), "nodes": nodes, "links": self.links,
            "groups": [], "config": {}, "extra": {"ds": {"scale": 0.8, "offset": [0, 0]}}, "version": 0.4,
        }


def portrait_inputs(w: Workflow, portrait_node=None, image_name="portrait.jpg"):
    """Load Models and a registered portrait (from Load Image unless ``portrait_node`` gives the IMAGE)."""
    models = w.add("DittoLoadModels", (20, 20))
    if portrait_node is None:
        portrait_node = w.add("LoadImage", (20, 180), [image_name, "image"])
    portrait = w.add("DittoRegisterPortrait", (380, 20), {}, models=(models, "models"), image=(portrait_node, "IMAGE"))
    return models, portrait


def common_inputs(w: Workflow, portrait_node=None, image_name="portrait.jpg"):
    models, portrait = portrait_inputs(w, portrait_node, image_name)
    audio = w.add("LoadAudio", (20, 520), ["speech.wav", None, None])
    encoded = w.add("DittoEncodeAudio", (380, 400), models=(models, "models"), audio=(audio, "AUDIO"))
    return models, portrait, encoded


def sample_motion(w: Workflow, models, portrait, encoded, widgets=None):
    return w.add("DittoSampleMotion", (760, 20), widgets, models=(models, "models"), portrait=(portrait, "portrait"),
                 audio_features=(encoded, "audio_features"))


def portrait_audio_to_video(classes):
    w = Workflow(classes)
    models, portrait, encoded = common_inputs(w)
    motion = sample_motion(w, models, portrait, encoded)
    w.add("DittoRenderVideo", (1120, 20), {"filename_prefix": "ditto/talking_head"}, models=(models, "models"),
          portrait=(portrait, "portrait"), motion=(motion, "motion"), audio=(encoded, "audio"))
    return w


def generated_portrait_talking_head(classes):
    w = Workflow(classes)
    checkpoint = w.add("CheckpointLoaderSimple", (-760, 20), ["v1-5-pruned-emaonly.safetensors"])
    positive = w.add("CLIPTextEncode", (-380, 20), ["studio portrait photo of a smiling woman, looking at the camera, "
                                                    "head and shoulders, soft light, sharp focus"], clip=(checkpoint, "CLIP"))
    negative = w.add("CLIPTextEncode", (-380, 240), ["blurry, profile, sunglasses, hands, text"], clip=(checkpoint, "CLIP"))
    latent = w.add("EmptyLatentImage", (-380, 460), [512, 512, 1])
    sampled = w.add("KSampler", (0, 200), [42, "fixed", 25, 7.0, "euler", "normal", 1.0], model=(checkpoint, "MODEL"),
                    positive=(positive, "CONDITIONING"), negative=(negative, "CONDITIONING"),
                    latent_image=(latent, "LATENT"))
    image = w.add("VAEDecode", (0, 520), samples=(sampled, "LATENT"), vae=(checkpoint, "VAE"))
    models, portrait, encoded = common_inputs(w, portrait_node=image)
    motion = sample_motion(w, models, portrait, encoded, {"emotion": "happy"})
    w.add("DittoRenderVideo", (1120, 20), {"filename_prefix": "ditto/generated_talking_head"}, models=(models, "models"),
          portrait=(portrait, "portrait"), motion=(motion, "motion"), audio=(encoded, "audio"))
    return w


def sample_edit_render(classes):
    w = Workflow(classes)
    models, portrait, encoded = common_inputs(w)
    audio_node = next(n for n in w.nodes if n["type"] == "LoadAudio")
    motion = sample_motion(w, models, portrait, encoded, {"emotion_timeline": "0:neutral, 1.5:happy, 3:happy+surprise"})
    pose = w.add("DittoEditPose", (1120, 20), {"pitch": 2.0, "pose_amplitude": 1.2, "yaw_curve": "0:0, 1.5:8, 3:-8"},
                 motion=(motion, "motion"))
    expression = w.add("DittoEditExpression", (1480, 20), {"mouth_amplitude": 1.2}, motion=(pose, "motion"))
    relaxed = w.add("DittoRelaxOnSilence", (1120, 400), {}, motion=(expression, "motion"), audio=(audio_node, "AUDIO"))
    faded = w.add("DittoFadeMotion", (1480, 400), {"fade_in_frames": 5, "fade_out_frames": 10}, models=(models, "models"),
                  motion=(relaxed, "motion"))
    render = w.add("DittoRender", (1840, 20), models=(models, "models"), portrait=(portrait, "portrait"),
                   motion=(faded, "motion"), audio=(encoded, "audio"))
    w.add("SaveVideo", (2200, 20), ["ditto/edited", "auto", "auto"], video=(render, "video"))
    return w


def driving_video_splice(classes):
    w = Workflow(classes)
    models, portrait, encoded = common_inputs(w)
    motion = sample_motion(w, models, portrait, encoded)
    video = w.add("LoadVideo", (20, 760), ["driving.mp4", "video"])
    parts = w.add("GetVideoComponents", (380, 760), video=(video, "VIDEO"))
    driven = w.add("DittoMotionFromVideo", (760, 500), {"smoothing": 3}, models=(models, "models"),
                   frames=(parts, "images"))
    joined = w.add("DittoConcatMotion", (1120, 200), first=(motion, "motion"), second=(driven, "motion"))
    w.add("DittoRenderVideo", (1480, 20), {"filename_prefix": "ditto/spliced"}, models=(models, "models"),
          portrait=(portrait, "portrait"), motion=(joined, "motion"), audio=(encoded, "audio"))
    return w


def save_motion(classes):
    w = Workflow(classes)
    models, portrait, encoded = common_inputs(w)
    motion = sample_motion(w, models, portrait, encoded)
    w.add("DittoSaveMotion", (1120, 20), {"filename_prefix": "ditto/motion"}, motion=(motion, "motion"))
    return w


def load_motion_render(classes):
    w = Workflow(classes)
    models, portrait = portrait_inputs(w)
    motion = w.add("DittoLoadMotion", (380, 400), {"motion_file": "ditto_motion.safetensors"})
    w.add("DittoRenderVideo", (760, 20), {"filename_prefix": "ditto/replayed"}, models=(models, "models"),
          portrait=(portrait, "portrait"), motion=(motion, "motion"))
    return w


def streamed_talking_head(classes):
    w = Workflow(classes)
    models, portrait = portrait_inputs(w)
    audio = w.add("LoadAudio", (20, 520), ["speech.wav", None, None])
    talking = w.add("DittoTalkingHeadVideo", (760, 20), {"filename_prefix": "ditto/streamed"}, models=(models, "models"),
                    portrait=(portrait, "portrait"), audio=(audio, "AUDIO"))
    w.add("DittoSaveMotion", (1180, 20), {"filename_prefix": "ditto/streamed_motion"}, motion=(talking, "motion"))
    return w


WORKFLOWS = {
    "ditto_portrait_audio_to_video": portrait_audio_to_video,
    "ditto_generated_portrait_talking_head": generated_portrait_talking_head,
    "ditto_sample_edit_render_emotion_timeline": sample_edit_render,
    "ditto_driving_video_spliced_with_audio_motion": driving_video_splice,
    "ditto_save_motion": save_motion,
    "ditto_load_motion_render_on_another_portrait": load_motion_render,
    "ditto_streamed_talking_head": streamed_talking_head,
}


def build() -> dict[str, dict]:
    classes = ditto_classes()
    return {name: make(classes).to_json() for name, make in WORKFLOWS.items()}


def main() -> None:
    TARGET.mkdir(exist_ok=True)
    for name, workflow in build().items():
        (TARGET / f"{name}.json").write_text(json.dumps(workflow, indent=2) + "\n")
    print(f"wrote {len(WORKFLOWS)} workflows to {TARGET}")


if __name__ == "__main__":
    main()
