"""Motion nodes: sample from audio, edit, take from a driving video, combine, save and load."""

from __future__ import annotations

import hashlib
from pathlib import Path

import folder_paths
import torch
from comfy_api.latest import io

from ..ditto_core.audio import load_audio
from ..ditto_core.motion import EMOTIONS, Motion, SamplerOptions, controls
from ..ditto_core.motion.conditions import parse_emotion
from ..ditto_core.motion.motion import preview_curves
from ..ditto_core.motion.sampler import num_windows
from ..ditto_core.pipeline import motion_from_video
from .common import CATEGORY, Progress, check_interrupt, input_path, output_ui_entry, unique_output_path
from .memory import on_device
from .types import DittoAudioFeatures, DittoModels, DittoMotion, DittoPortrait

MOTION_EXTENSION = ".safetensors"
AS_RELEASED = "as released"


def with_preview(motion: Motion) -> io.NodeOutput:
    """A motion node's result, with the curves the front-end extension draws on the node."""
    return io.NodeOutput(motion, ui={"ditto_motion": [preview_curves(motion)]})


def motion_schema(node_id: str, display_name: str, description: str, inputs: list, search_aliases=()) -> io.Schema:
    """The schema of a node whose one output is a DITTO_MOTION. Its UI output (the curves the front end draws) is
    kept and sent again when a re-run comes from the cache."""
    return io.Schema(node_id=node_id, display_name=display_name, category=CATEGORY, description=description,
                     search_aliases=list(search_aliases), inputs=inputs, has_intermediate_output=True,
                     outputs=[DittoMotion.Output("motion", tooltip="The motion: head pose, expression and blinks "
                                                                   "per frame, editable by the other motion nodes.")])


def sampler_inputs() -> list:
    """The motion sampler's widgets: emotion, seed, steps, overlap, smoothing."""
    return [
        io.Combo.Input("emotion", options=[AS_RELEASED, *EMOTIONS], default=AS_RELEASED,
                       tooltip="Emotion for the whole clip; as released: the release cfg's emotion sequence."),
        io.Int.Input("seed", default=0, min=0, max=2**63 - 1, control_after_generate=True,
                     tooltip="One seed, one motion: the diffusion noise and the blink timing."),
        io.Int.Input("steps", default=0, min=0, max=1000,
                     tooltip="Diffusion steps per window; fewer is faster. 0: as released (the release cfg's)."),
        io.Int.Input("overlap", default=-1, min=-1, max=79,
                     tooltip="Frames shared by consecutive 80-frame windows. -1: as released."),
        io.Int.Input("smoothing", default=-1, min=-1, max=25,
                     tooltip="Moving average (frames) on pose and position. -1: as released."),
    ]


def emotion_timeline_input() -> io.String.Input:
    return io.String.Input("emotion_timeline", default="", optional=True,
                           tooltip="Overrides 'emotion' when set: seconds:emotion pairs, e.g. 0:neutral, 2.5:happy, "
                                   "5:happy+surprise")


def validate_emotion_timeline(emotion_timeline: str | None):
    """ComfyUI's validate_inputs answer for the timeline widget: True or the parser's message (None: linked)."""
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


class DittoSampleMotion(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return motion_schema(
            "DittoSampleMotion", "Sample Motion (Ditto)",
            "Samples head motion, expressions, lip movement and blinks from the audio with Ditto's motion diffusion "
            "model. Same seed, same motion. The result is editable data (DITTO_MOTION).",
            [DittoModels.Input("models"), DittoPortrait.Input("portrait"), DittoAudioFeatures.Input("audio_features"),
             *sampler_inputs(), emotion_timeline_input()],
            search_aliases=["lip sync", "audio driven", "speech to motion", "audio to motion", "head motion"],
        )

    @classmethod
    def validate_inputs(cls, emotion_timeline=""):
        return validate_emotion_timeline(emotion_timeline)

    @classmethod
    def execute(cls, models, portrait, audio_features, emotion, seed, steps, overlap, smoothing,
                emotion_timeline="") -> io.NodeOutput:
        models = on_device(models)
        chosen, options = sampler_settings(emotion, seed, steps, overlap, smoothing, emotion_timeline)
        overlap = options.apply(models.config.chain).overlap
        progress = Progress(num_windows(audio_features.num_frames, overlap))

        def on_window():
            check_interrupt()
            progress.update()

        return with_preview(models.sample(portrait, audio_features, chosen, options, on_window))


class DittoEditPose(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        def angle(name: str, tooltip: str) -> io.Float.Input:
            return io.Float.Input(name, default=0.0, min=-60.0, max=60.0, step=0.5, tooltip=tooltip)

        def keyframes(name: str) -> io.String.Input:
            return io.String.Input(name, default="", optional=True,
                                   tooltip="Keyframes seconds:degrees added on top, e.g. 0:0, 2:15, 4:0")

        return motion_schema(
            "DittoEditPose", "Edit Pose (Ditto)",
            "Head pose edits: constant offsets, keyframed curves (seconds:degrees) and movement amplitude.",
            [DittoMotion.Input("motion"),
             angle("pitch", "Degrees; positive tilts the head down."),
             angle("yaw", "Degrees; turns the head."),
             angle("roll", "Degrees; tilts the head sideways."),
             io.Float.Input("pose_amplitude", default=1.0, min=0.0, max=3.0, step=0.05,
                            tooltip="Scales head movement; 0 holds the head still."),
             keyframes("pitch_curve"), keyframes("yaw_curve"), keyframes("roll_curve")],
            search_aliases=["head pose", "head turn", "nod", "keyframe", "look at"],
        )

    @classmethod
    def execute(cls, motion, pitch, yaw, roll, pose_amplitude, pitch_curve="", yaw_curve="",
                roll_curve="") -> io.NodeOutput:
        motion = controls.scale_pose(motion, pose_amplitude)
        offsets = {
            name: value + controls.keyframe_curve(curve, len(motion), motion.fps)
            for name, value, curve in (("pitch", pitch, pitch_curve), ("yaw", yaw, yaw_curve), ("roll", roll, roll_curve))
        }
        return with_preview(controls.offset_pose(motion, **offsets))


class DittoEditExpression(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        def gaze(name: str) -> io.Float.Input:
            return io.Float.Input(name, default=0.0, min=-20.0, max=20.0, step=0.5)

        return motion_schema(
            "DittoEditExpression", "Edit Expression (Ditto)",
            "Expression edits: mouth and overall expression amplitude, blinks and gaze.",
            [DittoMotion.Input("motion"),
             io.Float.Input("mouth_amplitude", default=1.0, min=0.0, max=3.0, step=0.05,
                            tooltip="Scales lip movement; 0 keeps the source's mouth."),
             io.Float.Input("expression_amplitude", default=1.0, min=0.0, max=3.0, step=0.05,
                            tooltip="Scales every expression keypoint's movement."),
             io.Combo.Input("blinks", options=["as sampled", "off"], default="as sampled",
                            tooltip="off: eyes keep the source's state."),
             gaze("gaze_horizontal"), gaze("gaze_vertical")],
            search_aliases=["expression", "mouth", "blink", "gaze", "lip sync strength"],
        )

    @classmethod
    def execute(cls, motion, mouth_amplitude, expression_amplitude, blinks, gaze_horizontal,
                gaze_vertical) -> io.NodeOutput:
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


class DittoSmoothMotion(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return motion_schema(
            "DittoSmoothMotion", "Smooth Motion (Ditto)", "Temporal smoothing: a centred moving average over frames.",
            [DittoMotion.Input("motion"),
             io.Int.Input("window", default=5, min=1, max=51, tooltip="Frames averaged."),
             io.Combo.Input("what", options=list(SMOOTH_FIELDS), default="pose + position")],
            search_aliases=["jitter", "stabilize", "moving average"],
        )

    @classmethod
    def execute(cls, motion, window, what) -> io.NodeOutput:
        return with_preview(controls.smooth(motion, window, SMOOTH_FIELDS[what]))


class DittoRelaxOnSilence(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return motion_schema(
            "DittoRelaxOnSilence", "Relax on Silence (Ditto)",
            "Lets the face rest while the audio is silent (expression eased toward the source's).",
            [DittoMotion.Input("motion"), io.Audio.Input("audio"),
             io.Float.Input("strength", default=1.0, min=0.0, max=1.0, step=0.05),
             io.Float.Input("silence_db", default=-45.0, min=-90.0, max=0.0, step=1.0,
                            tooltip="At or below this loudness the face is fully at rest."),
             io.Float.Input("speech_db", default=-25.0, min=-90.0, max=0.0, step=1.0,
                            tooltip="At or above this loudness the motion is untouched.")],
            search_aliases=["silence", "pause", "idle", "voice activity"],
        )

    @classmethod
    def validate_inputs(cls, silence_db, speech_db):
        if silence_db is None or speech_db is None:  # linked: known when the node runs
            return True
        return True if silence_db < speech_db else "silence_db must be below speech_db"

    @classmethod
    def execute(cls, motion, audio, strength, silence_db, speech_db) -> io.NodeOutput:
        activity = controls.speech_activity(load_audio(audio), len(motion), motion.fps, silence_db, speech_db)
        return with_preview(controls.relax(motion, strength * (1 - activity)))


FADE_FIELDS = {"expression": ("exp",), "expression + pose": ("exp", "pitch", "yaw", "roll", "t")}
FADE_TARGET_TYPES = {"d0": "first frame", "s": "source"}


class DittoFadeMotion(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return motion_schema(
            "DittoFadeMotion", "Fade Motion (Ditto)",
            "Fades the motion in and out (the reference's fade schedule). As released: toward the motion's first "
            "frame and on the keys the release cfg names (fade_type d0, fade_out_keys); or toward the source's "
            "resting face.",
            [DittoModels.Input("models"), DittoMotion.Input("motion"),
             io.Int.Input("fade_in_frames", default=0, min=0, max=10000),
             io.Int.Input("fade_out_frames", default=0, min=0, max=10000),
             io.Combo.Input("what", options=[AS_RELEASED, *FADE_FIELDS], default=AS_RELEASED),
             io.Combo.Input("toward", options=[AS_RELEASED, *controls.FADE_TARGETS], default=AS_RELEASED)],
            search_aliases=["fade in", "fade out", "ease"],
        )

    @classmethod
    def execute(cls, models, motion, fade_in_frames, fade_out_frames, what, toward) -> io.NodeOutput:
        config = models.config
        fields = config.fade_fields if what == AS_RELEASED else FADE_FIELDS[what]
        target = FADE_TARGET_TYPES.get(config.fade_target, "source") if toward == AS_RELEASED else toward
        return with_preview(controls.fade(motion, fade_in_frames, fade_out_frames, fields, target))


class DittoMotionFromVideo(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return motion_schema(
            "DittoMotionFromVideo", "Motion from Video (Ditto)",
            "Reads the head motion and expressions performed in a driving video (an IMAGE batch of frames).",
            [DittoModels.Input("models"), io.Image.Input("frames"),
             io.Float.Input("fps", default=25.0, min=1.0, max=120.0, step=0.5,
                            tooltip="Frame rate of the video; resampled to 25 fps."),
             io.Int.Input("smoothing", default=1, min=1, max=25)],
            search_aliases=["driving video", "face reenactment", "LivePortrait", "motion capture", "video driven"],
        )

    @classmethod
    def execute(cls, models, frames, fps, smoothing) -> io.NodeOutput:
        models = on_device(models)
        progress = Progress(len(frames))

        def check():
            check_interrupt()
            progress.update()

        motion = motion_from_video(frames, models.networks.motion_extractor, models.face_models, fps,
                                   models.registration_options(video_smoothing=smoothing), check)
        return with_preview(motion.resample(25.0) if abs(fps - 25.0) > 1e-6 else motion)


class DittoBlendMotion(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return motion_schema(
            "DittoBlendMotion", "Blend Motion (Ditto)",
            "Mixes two motions of equal length: constant weight, or a ramp from one to the other.",
            [DittoMotion.Input("motion_a"), DittoMotion.Input("motion_b"),
             io.Float.Input("weight_b", default=0.5, min=0.0, max=1.0, step=0.05),
             io.Combo.Input("curve", options=["constant", "ramp a→b", "ramp b→a"], default="constant")],
            search_aliases=["mix motion", "crossfade", "interpolate"],
        )

    @classmethod
    def execute(cls, motion_a, motion_b, weight_b, curve) -> io.NodeOutput:
        n = len(motion_a)
        weight = {"constant": torch.tensor(weight_b), "ramp a→b": torch.linspace(0, weight_b, n),
                  "ramp b→a": torch.linspace(weight_b, 0, n)}[curve]
        return with_preview(motion_a.blend(motion_b, weight))


class DittoConcatMotion(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return motion_schema("DittoConcatMotion", "Concat Motion (Ditto)", "Joins two motions end to end.",
                             [DittoMotion.Input("first"), DittoMotion.Input("second")],
                             search_aliases=["join motion", "append motion"])

    @classmethod
    def execute(cls, first, second) -> io.NodeOutput:
        return with_preview(first.concat(second))


class DittoSliceMotion(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return motion_schema("DittoSliceMotion", "Slice Motion (Ditto)", "Keeps frames start..end (end 0 = to the end).",
                             [DittoMotion.Input("motion"), io.Int.Input("start_frame", default=0, min=0, max=10**7),
                              io.Int.Input("end_frame", default=0, min=0, max=10**7)],
                             search_aliases=["trim motion", "cut motion"])

    @classmethod
    def execute(cls, motion, start_frame, end_frame) -> io.NodeOutput:
        return with_preview(motion.slice(start_frame, end_frame or None))


class DittoSaveMotion(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="DittoSaveMotion", display_name="Save Motion (Ditto)", category=CATEGORY,
            description="Saves motion to ComfyUI's output folder as .safetensors (never overwrites).",
            search_aliases=["export motion"],
            inputs=[DittoMotion.Input("motion"), io.String.Input("filename_prefix", default="ditto/motion")],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, motion, filename_prefix) -> io.NodeOutput:
        path = unique_output_path(filename_prefix, MOTION_EXTENSION)
        motion.save(path)
        entry = output_ui_entry(path)
        return io.NodeOutput(ui={"text": [f"saved {entry['subfolder']}/{entry['filename']}".replace("//", "/")],
                                 "ditto_motion": [preview_curves(motion)]})


def input_motion_files() -> list[str]:
    root = Path(folder_paths.get_input_directory())
    return sorted(str(p.relative_to(root)) for p in root.rglob(f"*{MOTION_EXTENSION}")) if root.is_dir() else []


class DittoLoadMotion(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return motion_schema(
            "DittoLoadMotion", "Load Motion (Ditto)",
            "Loads a .safetensors motion from ComfyUI's input folder (copy saved motions there).",
            [io.Combo.Input("motion_file", options=input_motion_files() or ["(no .safetensors in input/)"])],
            search_aliases=["import motion"],
        )

    @classmethod
    def fingerprint_inputs(cls, motion_file):
        path = input_path(motion_file)
        return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else float("nan")

    @classmethod
    def validate_inputs(cls, motion_file):
        return True if input_path(motion_file).is_file() else f"motion file not found in input/: {motion_file}"

    @classmethod
    def execute(cls, motion_file) -> io.NodeOutput:
        motion = Motion.load(input_path(motion_file))
        return with_preview(motion.resample(25.0) if abs(motion.fps - 25.0) > 1e-6 else motion)
