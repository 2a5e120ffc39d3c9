"""The precision policy, fp32 rendering against the networks called directly, and reduced precision within its
bound on the small fake networks."""

import platform
from pathlib import Path

import numpy as np
import pytest
import torch

from ditto_core.keypoints import bins_to_degrees
from ditto_core.motion import Motion
from ditto_core.motion.drive import driving_keypoints
from ditto_core.networks import load_networks
from ditto_core.portrait import load_face_models, register_portrait
from ditto_core.precision import (
    MAX_MEAN_LEVELS,
    MAX_P999_LEVELS,
    DeviceDescription,
    ImageDifference,
    PrecisionPlan,
    fast_precisions,
    precision_plan,
)
from ditto_core.render import RenderOptions, render_frames

ALL_NETWORKS = ("appearance_extractor", "motion_extractor", "warp_network", "decoder", "stitch_network", "lmdm")
FP32 = torch.float32


def dtypes(plan: PrecisionPlan) -> dict[str, torch.dtype]:
    return {network: plan.dtype(network) for network in ALL_NETWORKS}


def only_renderer(dtype: torch.dtype) -> dict[str, torch.dtype]:
    return {network: dtype if network in ("warp_network", "decoder") else FP32 for network in ALL_NETWORKS}


@pytest.mark.parametrize("device, expected, fast", [
    (DeviceDescription("cpu", native_bf16=True), torch.bfloat16, ["bf16"]),
    (DeviceDescription("cpu"), FP32, []),  # no native bf16: never emulated
    (DeviceDescription("cuda", native_bf16=True, fast_fp16=True), torch.float16, ["fp16", "bf16"]),
    (DeviceDescription("cuda", fast_fp16=True), torch.float16, ["fp16"]),
    (DeviceDescription("cuda"), FP32, []),  # before tensor cores
    (DeviceDescription("mps"), torch.float16, ["fp16"]),
    (DeviceDescription("xpu"), FP32, []),
])
def test_auto_reduces_only_the_warp_network_and_decoder_per_device(device, expected, fast):
    assert dtypes(precision_plan(device)) == only_renderer(expected)
    assert fast_precisions(device) == fast


@pytest.mark.parametrize("precision, dtype", [("fp32", FP32), ("bf16", torch.bfloat16), ("fp16", torch.float16)])
@pytest.mark.parametrize("device", [DeviceDescription("cpu"), DeviceDescription("cpu", native_bf16=True),
                                    DeviceDescription("cuda", native_bf16=True, fast_fp16=True),
                                    DeviceDescription("mps")])
def test_an_explicit_precision_wins_on_every_device(device, precision, dtype):
    if precision == "fp16" and device.type == "cpu":
        with pytest.raises(ValueError, match="on a CPU choose auto, bf16 or fp32"):
            precision_plan(device, precision)
    else:
        assert dtypes(precision_plan(device, precision)) == only_renderer(dtype)


def test_unknown_precisions_are_refused_early():
    with pytest.raises(ValueError, match="auto, fp32, bf16, fp16"):
        precision_plan(DeviceDescription("cpu"), "half")
    with pytest.raises(ValueError, match="got 'fp64'"):
        RenderOptions(precision="fp64")


@pytest.mark.skipif(not (Path("/proc/cpuinfo").is_file() and platform.machine() in ("x86_64", "AMD64")),
                    reason="reads x86 CPU flags from /proc/cpuinfo")
def test_native_bf16_is_read_from_the_cpu_flags():
    flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    native = bool({"avx512_bf16", "amx_bf16"} & set(flags.split(":", 1)[1].split()))
    assert DeviceDescription.of("cpu") == DeviceDescription("cpu", native_bf16=native)


def test_image_difference_in_levels_and_psnr():
    reference = np.full((2, 4, 5, 3), 100, np.uint8)
    frames = reference.copy()
    frames[0, 0, 0, 0] = 110  # one channel 10 levels off, every other one equal
    frames[1] += 1  # a whole frame one level off
    diff = ImageDifference.between(frames, reference)
    n = reference.size
    assert diff.max == 10 and diff.mean == pytest.approx((10 + n / 2) / n)
    assert diff.psnr == pytest.approx(10 * np.log10(255**2 / ((100 + n / 2) / n)))
    assert diff.p999 == pytest.approx(np.percentile(np.r_[10, np.ones(n // 2), np.zeros(n // 2 - 1)], 99.9))
    where = np.zeros((2, 4, 5), bool)
    where[0] = True
    first = ImageDifference.between(frames, reference, where)
    assert first.max == 10 and first.mean == pytest.approx(10 / (n / 2))
    assert ImageDifference.between(reference, reference).psnr == float("inf")
    assert ImageDifference(MAX_MEAN_LEVELS - 0.01, MAX_P999_LEVELS, 9.0, 40.0).within_bound
    assert not ImageDifference(MAX_MEAN_LEVELS, 1.0, 2.0, 40.0).within_bound
    assert not ImageDifference(0.1, MAX_P999_LEVELS + 0.5, 9.0, 40.0).within_bound


@pytest.fixture(scope="module")
def setup(small_release):
    networks = load_networks(small_release)
    image = np.random.default_rng(0).integers(60, 200, (241, 300, 3), dtype=np.uint8)
    portrait = register_portrait(image, networks.appearance_extractor, networks.motion_extractor,
                                 load_face_models(small_release))
    motion = Motion(torch.from_numpy(np.random.default_rng(1).standard_normal((5, 265)).astype(np.float32) * 0.1))
    return networks, portrait, motion


def faces(networks, portrait, motion, precision: str) -> np.ndarray:
    options = RenderOptions(batch_size=3, paste_back=False, precision=precision)
    return np.stack(list(render_frames(networks, portrait, motion, options)))


def test_fp32_renders_exactly_what_the_networks_called_directly_make(setup):
    networks, portrait, motion = setup
    rendered = faces(networks, portrait, motion, "fp32")
    yaw = bins_to_degrees(portrait.keypoints["yaw"][:1]).item()
    pitch = bins_to_degrees(portrait.keypoints["pitch"][:1]).item()
    for batch in ([0, 1, 2], [3, 4]):  # the same batches render_frames makes, so the same convolutions
        _, x_d = driving_keypoints(portrait.keypoints, (yaw, pitch), motion, batch, [0] * len(batch), False)
        x_s = portrait.source_keypoints()[[0] * len(batch)]
        with torch.inference_mode():
            x_d = networks.stitch_network(x_s, x_d)
            appearance = portrait.appearance.expand(len(batch), *portrait.appearance.shape[1:])
            face = networks.decoder(networks.warp_network(appearance, x_s, x_d))
        expected = (face.clamp(0, 1) * 255).permute(0, 2, 3, 1).numpy().astype(np.uint8)
        np.testing.assert_array_equal(rendered[batch], expected)


def test_bf16_stays_within_the_bound(setup):
    """bf16 runs on any CPU (emulated where it is not native, which auto never picks); fp16 has no CPU kernels
    worth testing with and is measured on CUDA by bench/precision.py."""
    networks, portrait, motion = setup
    reference = faces(networks, portrait, motion, "fp32")
    reduced = faces(networks, portrait, motion, "bf16")
    difference = ImageDifference.between(reduced, reference)
    assert difference.max > 0  # the reduced precision was used
    assert difference.within_bound, difference


def test_reduced_precision_runs_only_the_tolerant_convolutions_low(setup):
    """Under the bf16 plan: the warp network's 3-D convolutions and the decoder's blocks compute in bf16; the
    convolutions that make the warped feature and first read it, and both networks' outputs, stay float32."""
    networks, portrait, _ = setup
    warp, decoder = networks.warp_network, networks.decoder
    watched = {"hourglass conv": warp.dense_motion_network.hourglass.decoder.conv,
               "mask conv": warp.dense_motion_network.mask, "warp third": warp.third.conv, "warp fourth": warp.fourth,
               "decoder fc": decoder.fc, "decoder block": decoder.G_middle_0.conv_0, "decoder last": decoder.conv_img,
               "dense motion": warp.dense_motion_network, "warp": warp, "decoder": decoder}
    seen = {}

    def record(name):
        def hook(module, inputs, out):
            seen[name] = tuple(o.dtype for o in out) if isinstance(out, tuple) else out.dtype
        return hook

    hooks = [module.register_forward_hook(record(name)) for name, module in watched.items()]
    plan = precision_plan(DeviceDescription("cpu", native_bf16=True))
    x_s = portrait.source_keypoints()
    with torch.inference_mode():
        with plan.autocast("warp_network", "cpu"):
            warped = warp(portrait.appearance, x_s, x_s + 0.02)
        with plan.autocast("decoder", "cpu"):
            decoder(warped)
    for hook in hooks:
        hook.remove()
    bf16 = torch.bfloat16
    assert seen == {"hourglass conv": bf16, "mask conv": bf16, "warp third": FP32, "warp fourth": FP32,
                    "decoder fc": FP32, "decoder block": bf16, "decoder last": bf16, "dense motion": (FP32, FP32),
                    "warp": FP32, "decoder": FP32}
