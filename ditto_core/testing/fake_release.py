"""Write a fake Ditto release: the official layout, containers, key names and dtypes, with seeded random weights.

    python -m ditto_core.testing.fake_release OUT_DIR [--small] [--seed N]

Used by the tests and demos in place of the real download (which cannot be shipped). ``--small`` shrinks every
width and depth the loader reads from the tensors, for fast tests; without it every tensor has the release's
shape. The weights are random but well-conditioned: BatchNorm statistics are plausible and the spectral-norm
vectors are converged power-iteration vectors, as in a trained file.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import torch
from torch import nn

from ..models.appearance import AppearanceConfig, AppearanceFeatureExtractor
from ..models.decoder import DecoderConfig, SPADEDecoder
from ..models.lmdm import LMDMConfig, MotionDenoiser
from ..models.motion_extractor import MotionExtractor, MotionExtractorConfig
from ..models.stitching import StitchingConfig, StitchingNetwork
from ..models.warping import WarpingConfig, WarpingNetwork
from ..release import AUX_FILES, CONFIG_DIR, NETWORK_FILES, PYTORCH_DIR
from .fake_aux import (
    write_fake_face_detector,
    write_fake_face_landmarker,
    write_fake_hubert_onnx,
    write_fake_landmark106,
    write_fake_landmark203,
)
from .fake_config import write_fake_configs

OFFICIAL_CONFIGS = {
    "appearance_extractor": AppearanceConfig(),
    "motion_extractor": MotionExtractorConfig(),
    "warp_network": WarpingConfig(),
    "decoder": DecoderConfig(),
    "stitch_network": StitchingConfig(),
    "lmdm": LMDMConfig(),
}

# Every width shrunk, the interfaces between networks kept consistent (F's volume feeds W, W's output feeds G) and
# the data interfaces kept as released: 21 keypoints, 66 pose bins, 265-d motion, 1103-d conditions, 80 frames.
SMALL_CONFIGS = {
    "appearance_extractor": AppearanceConfig(block_expansion=8, max_features=64, reshape_channels=32, num_resblocks=2),
    "motion_extractor": MotionExtractorConfig(dims=(8, 16, 32, 64), depths=(1, 1, 2, 1)),
    "warp_network": WarpingConfig(
        feature_channels=32,
        feature_depth=2,
        compress_channels=1,
        hourglass_expansion=4,
        hourglass_blocks=2,
        hourglass_max_features=8,
        out_channels=16,
    ),
    "decoder": DecoderConfig(in_channels=16, out_channels=8, num_middle_blocks=2, spade_hidden=16),
    "stitch_network": StitchingConfig(),
    "lmdm": LMDMConfig(latent_dim=64, ff_dim=128, num_layers=2),
}

BUILDERS = {
    "appearance_extractor": AppearanceFeatureExtractor,
    "motion_extractor": MotionExtractor,
    "warp_network": WarpingNetwork,
    "decoder": SPADEDecoder,
    "stitch_network": StitchingNetwork,
    "lmdm": MotionDenoiser,
}

# LivePortrait's stitching file also carries the lip and eye retargeting MLPs (Ditto ignores them).
RETARGETING_SIBLINGS = {"retarget_mouth": (65, 128, 128, 64, 63), "retarget_eye": (66, 256, 256, 128, 128, 64, 63)}


def _power_iteration_vectors(weight: torch.Tensor, gen: torch.Generator, steps: int = 30):
    matrix = weight.flatten(1)
    v = torch.randn(matrix.shape[1], generator=gen)
    for _ in range(steps):
        u = nn.functional.normalize(matrix @ v, dim=0, eps=1e-12)
        v = nn.functional.normalize(matrix.t() @ u, dim=0, eps=1e-12)
    return u, v


def randomize(module: nn.Module, gen: torch.Generator) -> dict[str, torch.Tensor]:
    """The module's state dict with every trained-looking tensor drawn at random.

    Constant-initialised vectors (norm scales, biases, BN statistics, GRN γ/β) get random values around their
    defaults, so that no parameter is exercised only at its neutral value.
    """
    state = module.state_dict()
    for name, tensor in state.items():
        if not tensor.is_floating_point() or name.endswith("rotary.freqs") or name.endswith(("weight_u", "weight_v")):
            continue
        if name.endswith("running_var"):
            tensor.uniform_(0.5, 1.5, generator=gen)
        elif tensor.dim() <= 1 or name.endswith((".gamma", ".beta")):
            base = 1.0 if bool((tensor == 1).all()) else 0.0
            if base or bool((tensor == 0).all()):
                tensor.copy_(base + 0.1 * torch.randn(tensor.shape, generator=gen))
        if name.endswith("weight_orig"):
            prefix = name[: -len("weight_orig")]
            u, v = _power_iteration_vectors(tensor, gen)
            state[prefix + "weight_u"].copy_(u)
            state[prefix + "weight_v"].copy_(v)
    return state


def _mlp_state_dict(widths: tuple[int, ...], gen: torch.Generator) -> dict[str, torch.Tensor]:
    return {f"module.{k}": v for k, v in randomize(StitchingNetwork(StitchingConfig(widths)), gen).items()}


def release_container(kind: str, state_dict: dict[str, torch.Tensor], gen: torch.Generator) -> dict:
    """Wrap a state dict the way the release file does."""
    if kind == "lmdm":
        return {"model_state_dict": state_dict}
    if kind == "stitch_network":
        container = {"retarget_shoulder": {f"module.{k}": v for k, v in state_dict.items()}}
        container.update({name: _mlp_state_dict(widths, gen) for name, widths in RETARGETING_SIBLINGS.items()})
        return container
    return state_dict


def write_fake_release(out_dir: str | Path, small: bool = False, seed: int = 0) -> Path:
    """Write ``ditto_pytorch/models/*.pth`` and the auxiliary models faked so far under ``out_dir``.

    Aux stand-ins (see fake_aux): ``hubert_streaming_fix_kv.onnx`` is a one-conv model with HuBERT's windowing;
    ``det_10g.onnx`` reports one face (none on a black image); the landmark models answer a fixed face; and
    ``face_landmarker.task``, which cannot be faked, is a placeholder the loader answers with a fixed face mesh.
    Both ``ditto_cfg`` pickles are written too (see fake_config). Returns ``out_dir`` as a Path.
    """
    out_dir = Path(out_dir)
    configs = SMALL_CONFIGS if small else OFFICIAL_CONFIGS
    for index, (kind, config) in enumerate(configs.items()):
        gen = torch.Generator().manual_seed(seed * 1000 + index)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed * 1000 + index)
            module = BUILDERS[kind](config)
        path = out_dir / NETWORK_FILES[kind].path
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(release_container(kind, randomize(module, gen), gen), path)
    write_fake_hubert_onnx(out_dir / AUX_FILES["hubert"].path, seed=seed)
    write_fake_face_detector(out_dir / AUX_FILES["face_detector"].path)
    write_fake_landmark106(out_dir / AUX_FILES["landmark106"].path)
    write_fake_landmark203(out_dir / AUX_FILES["landmark203"].path)
    write_fake_face_landmarker(out_dir / AUX_FILES["face_landmarker"].path)
    write_fake_configs(out_dir, seed=seed)
    return out_dir


def copy_release(source_root: str | Path, target_root: str | Path) -> Path:
    """Copy a release's ``ditto_pytorch/`` and ``ditto_cfg/`` folders from one root into another."""
    target_root = Path(target_root)
    for folder in (PYTORCH_DIR, CONFIG_DIR):
        shutil.copytree(Path(source_root) / folder, target_root / folder)
    return target_root


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--small", action="store_true", help="shrink the networks for fast tests")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    write_fake_release(args.out_dir, small=args.small, seed=args.seed)
    print(f"wrote a {'small ' if args.small else ''}fake Ditto release to {args.out_dir}")


if __name__ == "__main__":
    main()
