"""Fake release configuration pickles (``ditto_cfg/*.pkl``) with the documented structure, key names, types and
shapes, and plausible values: emotion rows that are probability vectors, a blink template that closes and opens
the eye keypoints over 15 frames, clip bounds taken from the fake motion model's own outputs, a stored canonical
source (``ch_info``). The values are ours; the official files' numbers are not public.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch

from ..models import load_network
from ..motion.drive import EYE_KEYPOINTS
from ..release import CONFIG_FILES, NETWORK_FILES

BLINK_FRAMES = 15
UPPER_LID_KEYPOINTS = (11, 13, 15)  # these move down while the others move up a little


def fake_keypoint_info(rng: np.random.Generator, scale: float) -> dict[str, np.ndarray]:
    """One frame of motion-extractor outputs as the reference stores them (float32, ``[1, n]``)."""

    def pose(center_bin: float) -> np.ndarray:
        bins = np.arange(66, dtype=np.float32)
        return (-0.5 * ((bins - center_bin) / 2.0) ** 2 + 0.1 * rng.standard_normal(66)).astype(np.float32)[None]

    return {
        "scale": np.array([[scale]], np.float32),
        "pitch": pose(32.5 + rng.uniform(-1, 1)),
        "yaw": pose(32.5 + rng.uniform(-2, 2)),
        "roll": pose(32.5 + rng.uniform(-1, 1)),
        "t": (0.01 * rng.standard_normal((1, 3))).astype(np.float32),
        "exp": (0.02 * rng.standard_normal((1, 63))).astype(np.float32),
        "kp": (0.3 * rng.standard_normal((1, 63))).astype(np.float32),
    }


def fake_blink_template(frames: int = BLINK_FRAMES, depth: float = 0.012) -> np.ndarray:
    """``[frames, 63]``: eye keypoints close (upper lid down, lower lid up) and open again; row 0 and the last row
    are open (zeros)."""
    template = np.zeros((frames, 21, 3), np.float32)
    closure = np.sin(np.linspace(0, np.pi, frames)).astype(np.float32)
    for k in EYE_KEYPOINTS:
        template[:, k, 1] = closure * (depth if k in UPPER_LID_KEYPOINTS else -0.3 * depth)
    template[0] = template[-1] = 0
    return template.reshape(frames, 63)


def fake_emotion_rows(rng: np.random.Generator, rows: int = 600) -> np.ndarray:
    """``[rows, 8]`` probability vectors drifting slowly around neutral (index 4)."""
    logits = np.zeros((rows, 8), np.float32)
    logits[:, 4] = 3.0
    logits += np.cumsum(0.05 * rng.standard_normal((rows, 8)), axis=0).astype(np.float32)
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (probs / probs.sum(axis=1, keepdims=True)).astype(np.float32)


def motion_range(release_root: Path, samples: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Per-dim min and max ``[265]`` of the fake LMDM's clean-motion predictions on random inputs."""
    lmdm = load_network("lmdm", release_root / NETWORK_FILES["lmdm"].path)
    config = lmdm.config
    gen = torch.Generator().manual_seed(seed)
    outputs = []
    with torch.inference_mode():
        for t in np.linspace(0, 999, samples).astype(int):
            x = torch.randn(1, config.seq_len, config.motion_dim, generator=gen)
            frame = torch.randn(1, config.motion_dim, generator=gen)
            cond = torch.randn(1, config.seq_len, config.cond_dim, generator=gen)
            outputs.append(lmdm(x, frame, cond, torch.tensor([int(t)]))[1][0])
    stacked = torch.cat(outputs).numpy()
    return stacked.min(axis=0), stacked.max(axis=0)


def fake_config_data(release_root: Path, online: bool, seed: int = 0) -> dict:
    """The cfg dict: ``base_cfg`` (model paths), ``audio2motion_cfg`` and ``default_kwargs``."""
    rng = np.random.default_rng(seed + (1 if online else 0))
    low, high = motion_range(release_root, seed=seed)
    margin = 0.1 * (high - low)
    stats = np.stack([low - margin, high + margin, (low + high) / 2, (high - low) / 4]).astype(np.float32)
    canonical = fake_keypoint_info(rng, scale=1.6)
    models = f"../{NETWORK_FILES['lmdm'].path.split('/')[0]}"
    return {
        "base_cfg": {
            "insightface_det_cfg": {"model_path": f"{models}/aux_models/det_10g.onnx", "device": "cuda"},
            "landmark106_cfg": {"model_path": f"{models}/aux_models/2d106det.onnx", "device": "cuda"},
            "landmark203_cfg": {"model_path": f"{models}/aux_models/landmark203.onnx", "device": "cuda"},
            "landmark478_cfg": {"task_path": f"{models}/aux_models/face_landmarker.task"},
            **{f"{kind}_cfg": {"model_path": f"{models}/models/{kind}.pth", "device": "cuda"}
               for kind in ("appearance_extractor", "motion_extractor", "stitch_network", "warp_network", "decoder")},
            "hubert_cfg": {"model_path": f"{models}/aux_models/hubert_streaming_fix_kv.onnx", "device": "cuda"},
        },
        "audio2motion_cfg": {
            "model_path": f"{models}/models/lmdm_v0.4_hubert.pth", "device": "cuda", "motion_feat_dim": 265,
            "audio_feat_dim": 1103, "seq_frames": 80, "use_emo": True, "use_sc": True, "use_eye_open": True,
            "use_eye_ball": True, "w2f_type": "hubert",
        },
        "default_kwargs": {
            "online_mode": online,
            "max_size": 1920,
            "template_n_frames": -1,
            "crop_scale": 2.3,
            "crop_vx_ratio": 0,
            "crop_vy_ratio": -0.125,
            "crop_flag_do_rot": True,
            "smo_k_s": 13,
            "emo": fake_emotion_rows(rng),
            "eye_f0_mode": False,
            "ch_info": {
                "x_s_info_lst": [canonical],
                "sc": canonical["kp"].reshape(63).copy(),
                "eye_open_lst": [np.array([[0.55, 0.57]], np.float32)],
                "eye_ball_lst": [(0.01 * rng.standard_normal((1, 6))).astype(np.float32)],
            },
            "overlap_v2": 70 if online else 10,
            "fix_kp_cond": 1,
            "fix_kp_cond_dim": [0, 202],
            "sampling_timesteps": 10 if online else 25,
            "v_min_max_for_clip": stats,
            "smo_k_d": 3,
            "N_d": -1,
            "use_d_keys": None,
            "relative_d": True,
            "drive_eye": None,
            "delta_eye_arr": fake_blink_template(),
            "delta_eye_open_n": 0,
            "fade_type": "d0",
            "fade_out_keys": ["exp"],
            "flag_stitching": True,
            "overall_ctrl_info": {"delta_pitch": 2},
        },
    }


def write_fake_configs(release_root: str | Path, seed: int = 0) -> dict[str, Path]:
    """Write both cfg pickles under ``release_root/ditto_cfg/`` (after the networks, whose LMDM sets the clip
    bounds). Returns their paths by CONFIG_FILES name."""
    release_root = Path(release_root)
    written = {}
    for name, file in CONFIG_FILES.items():
        path = release_root / file.path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(pickle.dumps(fake_config_data(release_root, name == "online_config", seed), protocol=4))
        written[name] = path
    return written
