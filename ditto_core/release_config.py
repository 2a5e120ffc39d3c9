"""The release's own configuration (``ditto_cfg/*.pkl``): what official Ditto does with the networks.

The reference's ``StreamSDK`` fills every setting its caller leaves out from the cfg pickle's ``default_kwargs``,
then from its code's own fallbacks (``CODE_DEFAULTS`` here). ``ReleaseConfig`` is that merged result, read as data
(``config_pickle``) and turned into the options each stage of this pack takes: registration, conditions, the
motion chain, blinks, driving and fades. ``ReleaseConfig.code_defaults()`` is the reference code without a cfg.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .config_pickle import ConfigFileError, load_data_pickle
from .motion.drive import FRAME_CONTROLS, DriveOptions
from .motion.motion import MOTION_DIM
from .motion.sampler import MAX_STEPS, ChainConfig
from .portrait.registration import RegistrationOptions
from .release import CONFIG_FILES, download_instructions, release_path

# The reference's fallbacks (StreamSDK.setup's kwargs.get defaults) for every key default_kwargs may set.
CODE_DEFAULTS: dict[str, object] = {
    "online_mode": False,
    "max_size": 1920,
    "template_n_frames": -1,
    "crop_scale": 2.3,
    "crop_vx_ratio": 0.0,
    "crop_vy_ratio": -0.125,
    "crop_flag_do_rot": True,
    "smo_k_s": 13,
    "emo": 4,
    "eye_f0_mode": False,
    "ch_info": None,
    "overlap_v2": 10,
    "fix_kp_cond": 0,
    "fix_kp_cond_dim": None,
    "sampling_timesteps": 50,
    "v_min_max_for_clip": None,
    "smo_k_d": 3,
    "N_d": -1,
    "use_d_keys": None,
    "relative_d": True,
    "drive_eye": None,
    "delta_eye_arr": None,
    "delta_eye_open_n": 0,
    "fade_type": "",
    "fade_out_keys": ("exp",),
    "flag_stitching": True,
    "overall_ctrl_info": {},
}
CONDITION_FLAGS = ("use_emo", "use_eye_open", "use_eye_ball", "use_sc")
KEYPOINT_KEYS = {"scale": 1, "pitch": 66, "yaw": 66, "roll": 66, "t": 3, "exp": 63, "kp": 63}
DRIVABLE_FIELDS = ("scale", "pitch", "yaw", "roll", "t", "exp")
BLINK_SCHEDULE_FRAMES = 3000  # the reference's schedule length when the clip's length is not known (N_d = -1)
# bounds on sizes a cfg sets, so that a damaged value is refused at load instead of allocating without end
SEQ_FRAMES, MAX_SEQ_FRAMES = 80, 10_000  # the LMDM's window (the release's 80); check_model matches the checkpoint
MAX_SCHEDULE_FRAMES = 25 * 3600 * 24  # N_d and fix_kp_cond: a day of frames at 25 fps


@dataclass(frozen=True)
class ConditionParts:
    """Which parts follow the audio in the LMDM's conditions (the cfg's ``audio2motion_cfg`` flags)."""

    emotion: bool = True
    eye_open: bool = True
    eye_ball: bool = True
    canonical_kp: bool = True

    @property
    def width(self) -> int:
        return 1024 + 8 * self.emotion + 2 * self.eye_open + 6 * self.eye_ball + 63 * self.canonical_kp


@dataclass(frozen=True)
class CanonicalSource:
    """``ch_info``: a stored source whose cues condition the motion in place of the portrait's.

    keypoints: motion-extractor fields of its frame 0, each ``[1, …]`` (scale raw); canonical_kp ``[63]``;
    eye_open ``[F, 2]``; eye_ball ``[F, 6]``.
    """

    keypoints: dict[str, torch.Tensor]
    canonical_kp: np.ndarray
    eye_open: np.ndarray
    eye_ball: np.ndarray

    @property
    def scale(self) -> float:
        return float(self.keypoints["scale"].reshape(-1)[0])


@dataclass(frozen=True)
class BlinkConfig:
    """The release's blink template and its schedule (``delta_eye_arr``, ``delta_eye_open_n``, ``N_d``).

    template: ``[n, 63]`` expression offsets of one blink (row 0: eyes open), or None (no template: the eyes
    follow the sampled motion); open_frames: frames between blinks (0: random 60-100, −1: never, a list: cycled).
    """

    template: torch.Tensor | None = None
    open_frames: int | tuple[int, ...] = 0
    schedule_frames: int = -1  # N_d: −1 means the clip's length when known, else 3000

    @property
    def enabled(self) -> bool:
        return self.template is not None


@dataclass(frozen=True)
class ReleaseConfig:
    """Every setting official Ditto runs with, for one cfg file (or the reference code's own defaults)."""

    name: str
    sha256: str | None
    settings: dict  # default_kwargs merged over CODE_DEFAULTS, audio2motion_cfg, and which keys fell back (display)
    parts: ConditionParts = field(default_factory=ConditionParts)
    emotion: object = 4  # default emotion: label index, labels, per-frame label lists or an ``[m, 8]`` array
    eye_first_frame_only: bool = False  # eye_f0_mode
    canonical: CanonicalSource | None = None  # ch_info
    chain: ChainConfig = field(default_factory=ChainConfig)
    registration: RegistrationOptions = field(default_factory=RegistrationOptions)
    drive: DriveOptions = field(default_factory=DriveOptions)
    blinks: BlinkConfig = field(default_factory=BlinkConfig)
    fade_target: str = ""  # fade_type: "d0" → toward the first frame, "s" → toward the source, "" → off
    fade_fields: tuple[str, ...] = ("exp",)
    ignored: tuple[str, ...] = ()  # keys present but without effect here (listed by `config`)

    @classmethod
    def code_defaults(cls, online: bool = False) -> "ReleaseConfig":
        """The reference code's own fallbacks; ``online``: with the online settings its maintainers state
        (overlap 70, 10 steps, short blends), which the online mode needs."""
        settings = {"online_mode": True, "overlap_v2": 70, "sampling_timesteps": 10} if online else {}
        return config_from_data({"default_kwargs": settings, "audio2motion_cfg": {}},
                                "reference code defaults" + (" (online)" if online else ""), None)

    @property
    def is_release(self) -> bool:
        return self.sha256 is not None

    def check_model(self, lmdm_config) -> None:
        """One clear error when the cfg's condition layout, motion width or window length disagree with the
        LMDM checkpoint."""
        a2m = self.settings.get("audio2motion_cfg", {})
        expected = {
            "audio_feat_dim": (a2m.get("audio_feat_dim", lmdm_config.cond_dim), lmdm_config.cond_dim),
            "motion_feat_dim": (a2m.get("motion_feat_dim", lmdm_config.motion_dim), lmdm_config.motion_dim),
            "seq_frames": (a2m.get("seq_frames", lmdm_config.seq_len), lmdm_config.seq_len),
            "condition parts (use_emo/use_eye_open/use_eye_ball/use_sc)": (self.parts.width, lmdm_config.cond_dim),
        }
        for key, (cfg_value, model_value) in expected.items():
            if _number(self.name, key, cfg_value, integer=True) != int(model_value):
                raise ConfigFileError(
                    f"{self.name}: {key} gives {cfg_value}, but the motion model (lmdm_v0.4_hubert.pth) has "
                    f"{model_value}; the cfg and the checkpoint come from different releases. Download both from "
                    f"the same commit of digital-avatar/ditto-talkinghead."
                )


# --- reading -----------------------------------------------------------------------------------------------------


def _bad(source: str, key: str, value, expected: str) -> ConfigFileError:
    """``key``: a name in default_kwargs, or ``section.name`` in another section (audio2motion_cfg.seq_frames)."""
    shown = f"array {value.shape}" if isinstance(value, np.ndarray) else repr(value)[:80]
    section, _, name = key.rpartition(".")
    return ConfigFileError(f"{source}: {section or 'default_kwargs'}[{name!r}] is {shown}; expected {expected}")


def _number(source, key, value, integer=False, minimum=None, maximum=None):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise _bad(source, key, value, "an integer" if integer else "a number")
    try:
        number = float(value)
    except OverflowError:  # an integer past float's range
        number = math.inf
    if not math.isfinite(number):
        raise _bad(source, key, value, "a finite number")
    if integer and not number.is_integer():
        raise _bad(source, key, value, "an integer")
    if (minimum is not None and number < minimum) or (maximum is not None and number > maximum):
        raise _bad(source, key, value, f"{'an integer' if integer else 'a number'} from {minimum} to {maximum}")
    return int(value) if integer else number


def _flag(source, key, value, allow_none=False):
    if value is None and allow_none:
        return None
    if not isinstance(value, (bool, np.bool_, int, np.integer)) or int(value) not in (0, 1):
        raise _bad(source, key, value, "True or False" + (" or None" if allow_none else ""))
    return bool(value)


def _array(source, key, value, shape: tuple) -> np.ndarray:
    """``value`` as float32 with ``shape`` (``None`` entries: any size ≥ 1)."""
    array = np.asarray(value) if isinstance(value, (np.ndarray, list, tuple)) else None
    if (array is None or array.ndim != len(shape) or not np.issubdtype(array.dtype, np.number)
            or any(want is not None and have != want for have, want in zip(array.shape, shape))
            or array.size == 0):
        wanted = " x ".join("n" if s is None else str(s) for s in shape)
        raise _bad(source, key, value, f"a numeric array of shape {wanted}")
    array = array.astype(np.float32)
    if not np.isfinite(array).all():
        raise _bad(source, key, value, "finite numbers")
    return array


def _emotion(source, value):
    if isinstance(value, np.ndarray):
        return _array(source, "emo", value, (None, 8))
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool) and 0 <= value < 8:
        return int(value)
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, (int, np.integer)) for v in value):
        if 0 < len(value) < 8 and all(0 <= v < 8 for v in value):
            return [int(v) for v in value]
    if isinstance(value, list) and value and all(isinstance(v, (list, tuple)) for v in value):
        if all(v and all(isinstance(i, (int, np.integer)) and 0 <= i < 8 for i in v) for v in value):
            return [[int(i) for i in v] for v in value]
    raise _bad(source, "emo", value, "an emotion index 0-7, a list of them, a list of such lists, or an m x 8 array")


def _keypoint_dict(source, key, value) -> dict[str, torch.Tensor]:
    if not isinstance(value, dict) or set(KEYPOINT_KEYS) - set(value):
        raise _bad(source, key, value, f"a dict with {', '.join(KEYPOINT_KEYS)}")
    return {name: torch.from_numpy(_array(source, f"{key}.{name}", np.asarray(value[name]).reshape(1, -1),
                                          (1, width)))
            for name, width in KEYPOINT_KEYS.items()}


def _rows(source, key, value, width) -> np.ndarray:
    """A list of ``[1, width]`` arrays (the reference's per-frame lists) or one ``[F, width]`` array."""
    items = value if isinstance(value, (list, tuple)) else [value]
    try:
        rows = np.concatenate([np.asarray(v, dtype=np.float32).reshape(-1, width) for v in items])
    except (ValueError, TypeError):
        rows = None
    return _array(source, key, rows, (None, width))


def _canonical(source, value) -> CanonicalSource | None:
    if value is None:
        return None
    if not isinstance(value, dict) or not {"x_s_info_lst", "sc", "eye_open_lst", "eye_ball_lst"} <= set(value):
        raise _bad(source, "ch_info", value, "a dict with x_s_info_lst, sc, eye_open_lst and eye_ball_lst")
    frames = value["x_s_info_lst"]
    if not isinstance(frames, (list, tuple)) or not frames:
        raise _bad(source, "ch_info.x_s_info_lst", frames, "a non-empty list of keypoint dicts")
    return CanonicalSource(
        keypoints=_keypoint_dict(source, "ch_info.x_s_info_lst[0]", frames[0]),
        canonical_kp=_array(source, "ch_info.sc", np.asarray(value["sc"]).reshape(-1), (63,)),
        eye_open=_rows(source, "ch_info.eye_open_lst", value["eye_open_lst"], 2),
        eye_ball=_rows(source, "ch_info.eye_ball_lst", value["eye_ball_lst"], 6),
    )


def _driven_fields(source, value):
    """use_d_keys → (fields, gains): None, a list of field names, or a dict name → gain."""
    if value is None:
        return None, None
    names = list(value) if isinstance(value, (list, tuple, dict)) else None
    if not names or any(name not in DRIVABLE_FIELDS for name in names):
        raise _bad(source, "use_d_keys", value, f"None, a list of {', '.join(DRIVABLE_FIELDS)}, or a dict of gains")
    if isinstance(value, dict):
        return tuple(names), {name: _number(source, f"use_d_keys[{name!r}]", gain) for name, gain in value.items()}
    return tuple(names), None


def _frame_controls(source, value) -> tuple[dict, tuple[str, ...]]:
    if not isinstance(value, dict):
        raise _bad(source, "overall_ctrl_info", value, "a dict")
    controls, ignored = {}, []
    for key, item in value.items():
        if key == "delta_exp":
            controls[key] = _array(source, "overall_ctrl_info.delta_exp", np.asarray(item).reshape(-1), (63,))
        elif key in FRAME_CONTROLS:
            controls[key] = _number(source, f"overall_ctrl_info.{key}", item)
        else:
            ignored.append(f"overall_ctrl_info.{key}")
    return controls, tuple(ignored)


def _open_frames(source, value):
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= -1:
        return int(value)
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, (int, np.integer)) and v > 0 for v in value):
        return tuple(int(v) for v in value)
    raise _bad(source, "delta_eye_open_n", value, "-1, 0, a positive frame count, or a list of them")


def config_from_data(data: object, name: str, sha256: str | None) -> ReleaseConfig:
    """A ReleaseConfig from an unpickled cfg (``{"base_cfg", "audio2motion_cfg", "default_kwargs"}``)."""
    if not isinstance(data, dict) or not isinstance(data.get("default_kwargs"), dict):
        raise ConfigFileError(f"{name} is not a Ditto configuration (no default_kwargs dict at its top level)")
    a2m = data.get("audio2motion_cfg", {})
    if not isinstance(a2m, dict):
        raise ConfigFileError(f"{name}: audio2motion_cfg is not a dict")
    kw = {**CODE_DEFAULTS, **data["default_kwargs"]}
    parts = ConditionParts(*(_flag(name, f"audio2motion_cfg.{flag}", a2m.get(flag, True)) for flag in CONDITION_FLAGS))

    clip_min = clip_max = None
    if kw["v_min_max_for_clip"] is not None:
        bounds = _array(name, "v_min_max_for_clip", kw["v_min_max_for_clip"], (None, MOTION_DIM))
        if len(bounds) < 2 or (bounds[0] > bounds[1]).any():
            raise _bad(name, "v_min_max_for_clip", bounds, "rows 0 and 1 holding per-dim minimum ≤ maximum")
        clip_min, clip_max = torch.from_numpy(bounds[0].copy()), torch.from_numpy(bounds[1].copy())
    reset_keep = kw["fix_kp_cond_dim"]
    if reset_keep is not None:
        if not (isinstance(reset_keep, (list, tuple)) and len(reset_keep) == 2
                and all(isinstance(v, (int, np.integer)) for v in reset_keep)
                and 0 <= reset_keep[0] <= reset_keep[1] <= MOTION_DIM):
            raise _bad(name, "fix_kp_cond_dim", reset_keep, f"None or [start, end] within 0..{MOTION_DIM}")
        reset_keep = (int(reset_keep[0]), int(reset_keep[1]))
    window = _number(name, "audio2motion_cfg.seq_frames", a2m.get("seq_frames", SEQ_FRAMES), integer=True,
                     minimum=1, maximum=MAX_SEQ_FRAMES)
    chain = ChainConfig(
        steps=_number(name, "sampling_timesteps", kw["sampling_timesteps"], integer=True, minimum=1,
                      maximum=MAX_STEPS),
        overlap=_number(name, "overlap_v2", kw["overlap_v2"], integer=True, minimum=0, maximum=window - 1),
        smoothing=_number(name, "smo_k_d", kw["smo_k_d"], integer=True, minimum=0, maximum=window),
        short_blend=_flag(name, "online_mode", kw["online_mode"]),
        reset_every=_number(name, "fix_kp_cond", kw["fix_kp_cond"], integer=True, minimum=0,
                            maximum=MAX_SCHEDULE_FRAMES),
        reset_keep=reset_keep,
        clip_min=clip_min,
        clip_max=clip_max,
    )

    template = None
    if kw["delta_eye_arr"] is not None:
        template = torch.from_numpy(_array(name, "delta_eye_arr", kw["delta_eye_arr"], (None, 63)))
    blinks = BlinkConfig(template, _open_frames(name, kw["delta_eye_open_n"]),
                         _number(name, "N_d", kw["N_d"], integer=True, minimum=-1, maximum=MAX_SCHEDULE_FRAMES))

    canonical = _canonical(name, kw["ch_info"])
    fields, gains = _driven_fields(name, kw["use_d_keys"])
    controls, ignored = _frame_controls(name, kw["overall_ctrl_info"])
    drive = DriveOptions(
        relative=_flag(name, "relative_d", kw["relative_d"]),
        driven_fields=fields,
        field_gains=gains,
        drive_eyes=_flag(name, "drive_eye", kw["drive_eye"], allow_none=True),
        eye_template=template is not None,
        canonical_scale=canonical.scale if canonical is not None else None,
        frame_controls=controls,
        stitching=_flag(name, "flag_stitching", kw["flag_stitching"]),
    )
    template_frames = _number(name, "template_n_frames", kw["template_n_frames"], integer=True)
    registration = RegistrationOptions(
        max_size=max(_number(name, "max_size", kw["max_size"], integer=True), 0),
        crop_scale=_number(name, "crop_scale", kw["crop_scale"]),
        crop_vx_ratio=_number(name, "crop_vx_ratio", kw["crop_vx_ratio"]),
        crop_vy_ratio=_number(name, "crop_vy_ratio", kw["crop_vy_ratio"]),
        crop_rotate=_flag(name, "crop_flag_do_rot", kw["crop_flag_do_rot"]),
        video_smoothing=_number(name, "smo_k_s", kw["smo_k_s"], integer=True),
        max_frames=template_frames if template_frames > 0 else blinks.schedule_frames,
    )
    fade_target = kw["fade_type"]
    if not isinstance(fade_target, str) or fade_target not in ("", "d0", "s"):
        raise _bad(name, "fade_type", fade_target, '"", "d0" or "s"')
    fade_fields = tuple(kw["fade_out_keys"]) if isinstance(kw["fade_out_keys"], (list, tuple)) else None
    if not fade_fields or any(f not in DRIVABLE_FIELDS for f in fade_fields):
        raise _bad(name, "fade_out_keys", kw["fade_out_keys"], f"a list of {', '.join(DRIVABLE_FIELDS)}")
    known = set(CODE_DEFAULTS) | {"ctrl_info"}
    ignored += tuple(sorted(k for k in data["default_kwargs"] if k not in known))
    return ReleaseConfig(
        name=name,
        sha256=sha256,
        settings={"default_kwargs": kw, "audio2motion_cfg": dict(a2m),
                  "code_defaults_used": sorted(set(CODE_DEFAULTS) - set(data["default_kwargs"]))},
        parts=parts,
        emotion=_emotion(name, kw["emo"]),
        eye_first_frame_only=_flag(name, "eye_f0_mode", kw["eye_f0_mode"]),
        canonical=canonical,
        chain=chain,
        registration=registration,
        drive=drive,
        blinks=blinks,
        fade_target=fade_target,
        fade_fields=fade_fields,
        ignored=ignored,
    )


def load_release_config(path: str | Path) -> ReleaseConfig:
    """Read a release cfg pickle as data and interpret it; ConfigFileError names the file and what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise ConfigFileError(f"configuration file not found: {path}")
    sha256 = hashlib.sha256(path.read_bytes()).hexdigest()
    return config_from_data(load_data_pickle(path), str(path), sha256)


def describe(config: ReleaseConfig) -> dict:
    """The settings as JSON-friendly data: scalars as they are, arrays as their shape, dicts key by key."""

    def show(value):
        if isinstance(value, np.ndarray):
            return {"array": list(value.shape), "dtype": str(value.dtype)}
        if isinstance(value, dict):
            return {str(k): show(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [show(v) for v in value] if len(value) <= 16 else {"list": len(value)}
        if isinstance(value, np.generic):
            return value.item()
        return value if isinstance(value, (str, int, float, bool, type(None))) else repr(value)

    return {"file": config.name, "sha256": config.sha256, **{k: show(v) for k, v in config.settings.items()},
            "ignored": list(config.ignored)}


def missing_config_message(root: str | Path, name: str = "config") -> str:
    """What to do when release configuration file ``name`` (a key of CONFIG_FILES) is not under ``root``."""
    path = release_path(root, name)
    return (
        f"the release configuration {CONFIG_FILES[name].path} is missing (expected at {path}). It holds how official "
        f"Ditto runs the networks (blinks, emotion, steps, clipping, …).\n"
        f"{download_instructions(root, [CONFIG_FILES[name]])}\n"
        f"Or run with the reference code's built-in defaults instead (not what official Ditto does): "
        f"--code-defaults on the command line, code_defaults=True in Python, 'reference code defaults' on the "
        f"Load Ditto Models node."
    )


def load_configs(root: str | Path, code_defaults: bool = False) -> tuple[ReleaseConfig, ReleaseConfig | None]:
    """The offline and online configurations under release folder ``root`` (the online one None when its file is
    absent), or the reference code's defaults for both."""
    if code_defaults:
        return ReleaseConfig.code_defaults(), ReleaseConfig.code_defaults(online=True)
    path = release_path(root, "config")
    if not path.is_file():
        raise ConfigFileError(missing_config_message(root))
    online_path = release_path(root, "online_config")
    return load_release_config(path), load_release_config(online_path) if online_path.is_file() else None
