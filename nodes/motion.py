"""Motion nodes: sample from audio, edit, take from a driving video, combine, save and load."""

from __future__ import annotations

import hashlib
from pathlib import Path

import folder_paths
import torch

from ..ditto_core.audio import load_audio
from ..ditto_core.motion import EMOTIONS, Motion, SamplerOptions, controls
from ..ditto_core.motion.conditions import parse_emotion
from ..ditto_core.motion.motion import preview_curves
from ..ditto_core.motion.sampler import num_windows
from ..ditto_core.pipeline import motion_from_video
from .common import (CATEGORY, Progress, check_interrupt, input_file_check, input_path, output_ui_entry,
                     unique_output_path)
from .memory import on_device

MOTION_EXTENSION = ".safetensors"


def with_preview(motion: Motion, *extra):
    """Node result plus the curves the front-end extension draws on the node."""
    return {"ui": {"ditto_motion": [preview_curves(motion)]}, "result": (motion, *extra)}


AS_RELEASED = "as released"
SAMPLER_WIDGETS = {
    "emotion": ([AS_RELEASED, *EMOTIONS], {"default": AS_RELEASED,
                                           "tooltip": "Emotion for the whole clip; as released: the release cfg's "
                                                      "emotion sequence."}),
    "seed": ("INT", {"default": 0, "min": 0, "max": 2**63 - 1, "control_after_generate": True,
                     "tooltip": "One seed, one motion: the diffusion noise and the blink timing."}),
    "steps": ("INT", {"default": 0, "min": 0, "max": 1000,
                      "tooltip": "Diffusion steps per window; fewer is faster. 0: as released (the release cfg's)."}),
    "overlap": ("INT", {"default": -1, "min": -1, "max": 79,
                        "tooltip": "Frames shared by consecutive 80-frame windows. -1: as released."}),
    "smoothing": ("INT", {"default": -1, "min": -1, "max": 25,
                          "tooltip": "Moving average (frames) on pose and position. -1: as released."}),
}
EMOTION_TIMELINE_WIDGET = ("STRING", {"default": "", "tooltip": "Overrides 'emotion' when set: seconds:emotion pairs, "
                                      "e.g. 0:neutral, 2.5:happy, 5:happy+surprise"})


def validate_emotion_timeline(emotion_timeline: str):
    """ComfyUI's VALIDATE_INPUTS answer for the timeline widget: True or the parser's message."""
    if emotion_timeline and emotion_timeline.strip():
        try:
            parse_emotion(emotion_timeline)
        except ValueError as exc:
            return str(exc)
    return True


def sampler_settings(emotion, seed, steps, overlap, smoothing, emotion_timeline=""):
    """The emotion (the timeline when set; None: as released) and SamplerOptions from the sampler widgets (0 steps,
    −1 overlap or smoothing: as released)."""
    if emotion_timeline.strip():
        chosen = parse_emotion(emotion_timeline)
    else:
        chosen = None if emotion == AS_RELEASED else emotion
    return chosen, SamplerOptions(steps=steps or None, overlap=None if overlap < 0 else overlap,
                                  smoothing=None if smoothing < 0 else smoothing, seed=seed)


class MotionNode:
    """A node whose one output is a DITTO_MOTION."""

    CATEGORY = CATEGORY
    RETURN_TYPES = ("DITTO_MOTION",)
    RETURN_NAMES = ("motion",)
    # its UI output (the curves the front end draws) is kept and sent again when a re-run comes from the cache
    HAS_INTERMEDIATE_OUTPUT = True


class DittoSampleMotion(MotionNode):
    DESCRIPTION = (
        "Samples head motion, expressions, lip movement and blinks from the audio with Ditto's motion diffusion "
        "model. Same seed, same motion. The result is editable data (DITTO_MOTION)."
    )
    FUNCTION = "sample"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "models": ("DITTO_MODELS",),
                "portrait": ("DITTO_PORTRAIT",),
                "audio_features": ("DITTO_AUDIO_FEATURES",),
                **SAMPLER_WIDGETS,
            },
            "optional": {"emotion_timeline": EMOTION_TIMELINE_WIDGET},
        }

    @classmethod
    def VALIDATE_INPUTS(cls, emotion_timeline=""):
        return validate_emotion_timeline(emotion_timeline)

    def sample(self, models, portrait, audio_features, emotion, seed, steps, overlap, smoothing, emotion_timeline=""):
        models = on_device(models)
        chosen, options = sampler_settings(emotion, seed, steps, overlap, smoothing, emotion_timeline)
        overlap = options.apply(models.config.chain).overlap
        progress = Progress(num_windows(audio_features.num_frames, overlap))

        def on_window():
            check_interrupt()
            progress.update()

        return with_preview(models.sample(portrait, audio_features, chosen, options, on_window))


class DittoEditPose(MotionNode):
    DESCRIPTION = "Head pose edits: constant offsets, keyframed curves (seconds:degrees) and movement amplitude."
    FUNCTION = "edit"

    @classmethod
    def INPUT_TYPES(cls):
        angle = {"default": 0.0, "min": -60.0, "max": 60.0, "step": 0.5}
        curve = {"default": "", "tooltip": "Keyframes seconds:degrees added on top, e.g. 0:0, 2:15, 4:0"}
        return {
            "required": {
                "motion": ("DITTO_MOTION",),
                "pitch": ("FLOAT", {**angle, "tooltip": "Degrees; positive tilts the head down."}),
                "yaw": ("FLOAT", {**angle, "tooltip": "Degrees; turns the head."}),
                "roll": ("FLOAT", {**angle, "tooltip": "Degrees; tilts the head sideways."}),
                "pose_amplitude": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 3.0, "step": 0.05,
                                             "tooltip": "Scales head movement; 0 holds the head still."}),
            },
            "optional": {"pitch_curve": ("STRING", curve), "yaw_curve": ("STRING", curve), "roll_curve": ("STRING", curve)},
        }

    def edit(self, motion, pitch, yaw, roll, pose_amplitude, pitch_curve="", yaw_curve="", roll_curve=""):
        motion = controls.scale_pose(motion, pose_amplitude)
        offsets = {
            name: value + controls.keyframe_curve(curve, len(motion), motion.fps)
            for name, value, curve in (("pitch", pitch, pitch_curve), ("yaw", yaw, yaw_curve), ("roll", roll, roll_curve))
        }
        return with_preview(controls.offset_pose(motion, **offsets))


class DittoEditExpression(MotionNode):
    DESCRIPTION = "Expression edits: mouth and overall expression amplitude, blinks and gaze."
    FUNCTION = "edit"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "motion": ("DITTO_MOTION",),
                "mouth_amplitude": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 3.0, "step": 0.05,
                                              "tooltip": "Scales lip movement; 0 keeps the source's mouth."}),
                "expression_amplitude": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 3.0, "step": 0.05,
                                                   "tooltip": "Scales every expression keypoint's movement."}),
                "blinks": (["as sampled", "off"], {"default": "as sampled", "tooltip": "off: eyes keep the source's state."}),
                "gaze_horizontal": ("FLOAT", {"default": 0.0, "min": -20.0, "max": 20.0, "step": 0.5}),
                "gaze_vertical": ("FLOAT", {"default": 0.0, "min": -20.0, "max": 20.0, "step": 0.5}),
            }
        }

    def edit(self, motion, mouth_amplitude, expression_amplitude, blinks, gaze_horizontal, gaze_vertical):
        motion = controls.scale_expression(motion, expression_amplitude)
        motion = controls.scale_mouth(motion, mouth_amplitude)
        if blinks == "off":
            motion = controls.freeze_eyes(motion)
        return with_preview(controls.offset_gaze(motion, gaze_horizontal, gaze_vertical))


SMOOTH_FIELDS = {
    "pose": ("pitch", "yaw", "roll"),
    "pose + position": ("scale", "pitch", "yaw", "roll", "t"),
    "expression": ("exp",),
    "everything": ("scale", "pitch", "yaw", "roll", "t", "exp"),
}


class DittoSmoothMotion(MotionNode):
    DESCRIPTION = "Temporal smoothing: a centred moving average over frames."
    FUNCTION = "edit"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"motion": ("DITTO_MOTION",),
                             "window": ("INT", {"default": 5, "min": 1, "max": 51, "tooltip": "Frames averaged."}),
                             "what": (list(SMOOTH_FIELDS), {"default": "pose + position"})}}

    def edit(self, motion, window, what):
        return with_preview(controls.smooth(motion, window, SMOOTH_FIELDS[what]))


class DittoRelaxOnSilence(MotionNode):
    DESCRIPTION = "Lets the face rest while the audio is silent (expression eased toward the source's)."
    FUNCTION = "edit"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"motion": ("DITTO_MOTION",), "audio": ("AUDIO",),
                             "strength": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.05}),
                             "silence_db": ("FLOAT", {"default": -45.0, "min": -90.0, "max": 0.0, "step": 1.0,
                                                      "tooltip": "At or below this loudness the face is fully at rest."}),
                             "speech_db": ("FLOAT", {"default": -25.0, "min": -90.0, "max": 0.0, "step": 1.0,
                                                     "tooltip": "At or above this loudness the motion is untouched."})}}

    @classmethod
    def VALIDATE_INPUTS(cls, silence_db, speech_db):
        return True if silence_db < speech_db else "silence_db must be below speech_db"

    def edit(self, motion, audio, strength, silence_db, speech_db):
        activity = controls.speech_activity(load_audio(audio), len(motion), motion.fps, silence_db, speech_db)
        return with_preview(controls.relax(motion, strength * (1 - activity)))


FADE_FIELDS = {"expression": ("exp",), "expression + pose": ("exp", "pitch", "yaw", "roll", "t")}
FADE_TARGET_TYPES = {"d0": "first frame", "s": "source"}


class DittoFadeMotion(MotionNode):
    DESCRIPTION = (
        "Fades the motion in and out (the reference's fade schedule). As released: toward the motion's first "
        "frame and on the keys the release cfg names (fade_type d0, fade_out_keys); or toward the source's "
        "resting face."
    )
    FUNCTION = "edit"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"models": ("DITTO_MODELS",), "motion": ("DITTO_MOTION",),
                             "fade_in_frames": ("INT", {"default": 0, "min": 0, "max": 10000}),
                             "fade_out_frames": ("INT", {"default": 0, "min": 0, "max": 10000}),
                             "what": ([AS_RELEASED, *FADE_FIELDS], {"default": AS_RELEASED}),
                             "toward": ([AS_RELEASED, *controls.FADE_TARGETS], {"default": AS_RELEASED})}}

    def edit(self, models, motion, fade_in_frames, fade_out_frames, what, toward):
        config = models.config
        fields = config.fade_fields if what == AS_RELEASED else FADE_FIELDS[what]
        target = FADE_TARGET_TYPES.get(config.fade_target, "source") if toward == AS_RELEASED else toward
        return with_preview(controls.fade(motion, fade_in_frames, fade_out_frames, fields, target))


class DittoMotionFromVideo(MotionNode):
    DESCRIPTION = "Reads the head motion and expressions performed in a driving video (an IMAGE batch of frames)."
    FUNCTION = "extract"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"models": ("DITTO_MODELS",), "frames": ("IMAGE",),
                             "fps": ("FLOAT", {"default": 25.0, "min": 1.0, "max": 120.0, "step": 0.5,
                                               "tooltip": "Frame rate of the video; resampled to 25 fps."}),
                             "smoothing": ("INT", {"default": 1, "min": 1, "max": 25})}}

    def extract(self, models, frames, fps, smoothing):
        models = on_device(models)
        progress = Progress(len(frames))

        def check():
            check_interrupt()
            progress.update()

        motion = motion_from_video(frames, models.networks.motion_extractor, models.face_models, fps,
                                   models.registration_options(video_smoothing=smoothing), check)
        return with_preview(motion.resample(25.0) if abs(fps - 25.0) > 1e-6 else motion)


class DittoBlendMotion(MotionNode):
    DESCRIPTION = "Mixes two motions of equal length: constant weight, or a ramp from one to the other."
    FUNCTION = "blend"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"motion_a": ("DITTO_MOTION",), "motion_b": ("DITTO_MOTION",),
                             "weight_b": ("FLOAT", {"default": 0.5, "min": 0.0, "max": 1.0, "step": 0.05}),
                             "curve": (["constant", "ramp a→b", "ramp b→a"], {"default": "constant"})}}

    def blend(self, motion_a, motion_b, weight_b, curve):
        n = len(motion_a)
        weight = {"constant": torch.tensor(weight_b), "ramp a→b": torch.linspace(0, weight_b, n),
                  "ramp b→a": torch.linspace(weight_b, 0, n)}[curve]
        return with_preview(motion_a.blend(motion_b, weight))


class DittoConcatMotion(MotionNode):
    DESCRIPTION = "Joins two motions end to end."
    FUNCTION = "concat"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"first": ("DITTO_MOTION",), "second": ("DITTO_MOTION",)}}

    def concat(self, first, second):
        return with_preview(first.concat(second))


class DittoSliceMotion(MotionNode):
    DESCRIPTION = "Keeps frames start..end (end 0 = to the end)."
    FUNCTION = "slice"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"motion": ("DITTO_MOTION",), "start_frame": ("INT", {"default": 0, "min": 0, "max": 10**7}),
                             "end_frame": ("INT", {"default": 0, "min": 0, "max": 10**7})}}

    def slice(self, motion, start_frame, end_frame):
        return with_preview(motion.slice(start_frame, end_frame or None))


class DittoSaveMotion:
    DESCRIPTION = "Saves motion to ComfyUI's output folder as .safetensors (never overwrites)."
    CATEGORY = CATEGORY
    FUNCTION = "save"
    RETURN_TYPES = ()
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"motion": ("DITTO_MOTION",), "filename_prefix": ("STRING", {"default": "ditto/motion"})}}

    def save(self, motion, filename_prefix):
        path = unique_output_path(filename_prefix, MOTION_EXTENSION)
        motion.save(path)
        entry = output_ui_entry(path)
        return {"ui": {"text": [f"saved {entry['subfolder']}/{entry['filename']}".replace("//", "/")],
                       "ditto_motion": [preview_curves(motion)]}}


def input_motion_files() -> list[str]:
    root = Path(folder_paths.get_input_directory())
    return sorted(str(p.relative_to(root)) for p in root.rglob(f"*{MOTION_EXTENSION}")) if root.is_dir() else []


class DittoLoadMotion(MotionNode):
    DESCRIPTION = "Loads a .safetensors motion from ComfyUI's input folder (copy saved motions there)."
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"motion_file": (input_motion_files() or ["(no .safetensors in input/)"],)}}

    @classmethod
    def _path(cls, motion_file: str) -> Path:
        return input_path(motion_file)

    @classmethod
    def IS_CHANGED(cls, motion_file):
        path = cls._path(motion_file)
        return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else float("nan")

    @classmethod
    def VALIDATE_INPUTS(cls, motion_file):
        return input_file_check(motion_file, "motion file")

    def load(self, motion_file):
        motion = Motion.load(self._path(motion_file))
        return with_preview(motion.resample(25.0) if abs(motion.fps - 25.0) > 1e-6 else motion)
