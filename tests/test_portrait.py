"""Portrait registration on a fake release: inputs, crop geometry, face choice, video smoothing, paste-back."""

import math

import numpy as np
import pytest
import torch

from ditto_core.networks import load_networks
from ditto_core.portrait import (
    FacePlacement,
    FaceModelError,
    NoFaceError,
    PortraitInputError,
    RegistrationOptions,
    blend_mask,
    load_face_models,
    mirror_index,
    paste_faces,
    register_portrait,
)
from ditto_core.portrait.face_models import FaceDetector
from ditto_core.portrait.geometry import crop_transform, invert, transform_points, warp
from ditto_core.portrait.images import fit_max_size, to_rgb_frames
from ditto_core.portrait.registration import moving_average
from ditto_core.release import AUX_FILES
from ditto_core.testing.fake_aux import write_fake_face_detector


@pytest.fixture(scope="module")
def networks(small_release):
    return load_networks(small_release)


@pytest.fixture(scope="module")
def face_models(small_release):
    return load_face_models(small_release)


def _photo(h=600, w=500, seed=0):
    """A smooth, non-black test picture (the fake detector only needs it not to be dark)."""
    yy, xx = np.mgrid[:h, :w]
    rng = np.random.default_rng(seed)
    base = np.stack([128 + 60 * np.sin(xx / 37 + c) * np.cos(yy / 53 + 2 * c) for c in range(3)], -1)
    return np.clip(base + rng.normal(0, 3, base.shape), 0, 255).astype(np.uint8)


def _register(image, networks, face_models, **options):
    return register_portrait(image, networks.appearance_extractor, networks.motion_extractor, face_models,
                             RegistrationOptions(**options))


@pytest.mark.parametrize(
    "image, expected_shape",
    [
        (np.full((40, 30), 200, np.uint8), (40, 30, 3)),  # greyscale
        (np.full((40, 30, 1), 200, np.uint8), (40, 30, 3)),
        (np.full((40, 30, 4), 200, np.uint8), (40, 30, 3)),  # RGBA: alpha dropped
        (np.full((40, 30, 3), 51400, np.uint16), (40, 30, 3)),  # 16-bit
        (np.full((40, 30, 3), 0.5, np.float32), (40, 30, 3)),
    ],
)
def test_image_layouts(image, expected_shape):
    (frame,) = to_rgb_frames(image)
    assert frame.shape == expected_shape and frame.dtype == np.uint8
    assert frame[0, 0, 0] in (128, 200)


def test_comfyui_image_batch_is_a_frame_list():
    frames = to_rgb_frames(torch.rand(3, 20, 24, 3))
    assert len(frames) == 3 and frames[0].shape == (20, 24, 3)


@pytest.mark.parametrize(
    "image, message",
    [
        (np.zeros((10, 10, 2), np.uint8), "expected an image of shape"),
        (np.full((10, 10, 3), np.nan, np.float32), "NaN"),
        ([np.zeros((10, 10, 3)), np.zeros((12, 10, 3))], "differ in size"),
        ([], "no image"),
        (np.zeros((1, 5, 3), np.uint8), "too small"),
    ],
)
def test_bad_images(image, message):
    with pytest.raises(PortraitInputError, match=message):
        to_rgb_frames(image)


@pytest.mark.parametrize("size, expected", [((8000, 6000), (1920, 1440)), ((601, 333), (600, 332)), ((512, 512), (512, 512))])
def test_max_size_and_even_sides(size, expected):
    assert fit_max_size(np.zeros((*size, 3), np.uint8)).shape[:2] == expected


def _face_points(centre, eye_distance, angle_deg):
    """203 points of a face: eyes on a line at ``angle_deg``, lips 1.2 eye-distances below their midpoint."""
    angle = math.radians(angle_deg)
    u_x = np.array([math.cos(angle), math.sin(angle)])
    u_y = np.array([-math.sin(angle), math.cos(angle)])
    rng = np.random.default_rng(1)
    local = rng.uniform(-1, 1, (203, 2)) * eye_distance
    local[0:24] = (-eye_distance / 2, 0)
    local[24:48] = (eye_distance / 2, 0)
    local[48], local[66] = (-0.3 * eye_distance, 1.2 * eye_distance), (0.3 * eye_distance, 1.2 * eye_distance)
    return (np.asarray(centre) + local[:, :1] * u_x + local[:, 1:] * u_y).astype(np.float32)


@pytest.mark.parametrize("angle", [0.0, 17.0, -40.0])
def test_crop_transform_by_hand(angle):
    points = _face_points((300, 250), 80, angle)
    m = crop_transform(points, 512, 2.3, -0.125)
    eyes = points[[0, 24]].mean(0)
    lips = points[[48, 66]].mean(0)
    e, l = transform_points(np.stack([eyes, lips]), m)
    assert e[0] == pytest.approx(l[0], abs=1e-3)  # eye-to-lip axis is vertical in the crop
    assert l[1] > e[1]
    # scale: the landmarks' extent along the face axes becomes 512 / 2.3 pixels
    rotated = transform_points(points, m)
    extent = (rotated.max(0) - rotated.min(0)).max()
    assert extent == pytest.approx(512 / 2.3, rel=1e-4)
    # centre: the extent's middle sits 0.125 of the crop side below the crop centre
    middle = (rotated.max(0) + rotated.min(0)) / 2
    np.testing.assert_allclose(middle, [256, 256 + 0.125 * 512], atol=1e-2)
    np.testing.assert_allclose(invert(m) @ m, np.eye(3), atol=1e-5)


def test_crop_then_inverse_crop_returns_the_pixels_inside_the_mask():
    image = _photo(480, 640)
    m = crop_transform(_face_points((320, 220), 50, 12), 512, 2.3, -0.125)
    crop = warp(image, m, 512)
    back = warp(crop, invert(m), (640, 480))
    inside = warp(blend_mask(512), invert(m), (640, 480)) >= 1.0
    assert inside.sum() > 10_000
    diff = np.abs(back.astype(int) - image.astype(int))[inside]
    assert np.percentile(diff, 99) <= 3  # two bilinear resamplings of a smooth image


def test_blend_mask_shape():
    mask = blend_mask(512)
    assert mask.shape == (512, 512) and mask.dtype == np.float32
    assert np.isclose((mask == 1).mean(), 0.814, atol=0.001)
    assert mask[0, 0] == 0 and mask[0, 511] == 0 and mask[511, 0] == 0 and mask[511, 511] == 0
    np.testing.assert_allclose(mask[:26, 256], np.arange(26) / 25, atol=1e-6)
    np.testing.assert_allclose(mask[256, 486:], np.arange(25, -1, -1) / 25, atol=1e-6)
    assert (mask[26:486, 26:486] == 1).all()


def paste_back(frame: np.ndarray, render: np.ndarray, crop_to_image: np.ndarray) -> np.ndarray:
    """One ``[h, w, 3]`` render in [0, 255] pasted into ``frame`` through ``crop_to_image``."""
    placement = FacePlacement(crop_to_image=crop_to_image[None], source_frames=np.zeros(1, np.int64),
                              source_images=frame[None], has_face=np.ones(1, bool))
    ((out, _),) = paste_faces(render[None] / np.float32(255), placement)
    return out


def test_paste_back_touches_only_the_masked_area():
    frame = _photo(400, 700)
    m = crop_transform(_face_points((350, 200), 40, -8), 512, 2.3, -0.125)
    render = np.full((512, 512, 3), 255.0, np.float32)
    out = paste_back(frame, render, invert(m))
    assert out.shape == frame.shape and out.dtype == np.uint8
    reach = warp(blend_mask(512), invert(m), (700, 400))
    np.testing.assert_array_equal(out[reach == 0], frame[reach == 0])
    assert (out[reach >= 1] == 255).all()


def test_registration_end_to_end_feeds_the_renderer(networks, face_models):
    image = _photo(700, 600)
    portrait = _register(image, networks, face_models)
    assert portrait.num_frames == 1 and not portrait.is_video
    assert portrait.images.shape == (1, 700, 600, 3)
    assert portrait.appearance.shape[0] == 1 and portrait.crop_to_image.shape == (1, 3, 3)
    assert portrait.eye_open.shape == (1, 2) and portrait.eye_ball.shape == (1, 6)
    assert portrait.canonical_kp.shape == (63,)
    np.testing.assert_array_equal(portrait.canonical_kp, portrait.keypoints["kp"][0].numpy())
    x_s = portrait.source_keypoints()
    assert x_s.shape == (1, 21, 3)
    with torch.inference_mode():
        stitched = networks.stitch_network(x_s, x_s)
        feature = networks.warp_network(portrait.appearance, x_s, stitched)
        render = networks.decoder(feature)[0].permute(1, 2, 0).clamp(0, 1).numpy() * 255
    out = paste_back(portrait.images[0], np.ascontiguousarray(render), portrait.crop_to_image[0])
    assert out.shape == image.shape


def test_eye_conditions_come_from_the_face_mesh(networks, face_models):
    from ditto_core.portrait.geometry import eye_conditions

    portrait = _register(_photo(), networks, face_models)
    opened, ball = eye_conditions(face_models.face_mesh(np.full((512, 512, 3), 128, np.uint8)))
    np.testing.assert_allclose(portrait.eye_open[0], opened)
    np.testing.assert_allclose(portrait.eye_ball[0], ball)
    assert (opened > 0.5).all()  # the template's eyes are open


def test_multi_face_choice(small_release, networks, face_models, tmp_path):
    faces = ((150, 200, 120), (330, 260, 200), (400, 420, 60))
    detector = FaceDetector(write_fake_face_detector(tmp_path / "det.onnx", faces=faces))
    detections = detector(_photo(512, 512))
    assert len(detections) == 3
    sides = detections.boxes[:, 2] - detections.boxes[:, 0]
    np.testing.assert_allclose(sides, [200, 120, 60], atol=1e-3)  # largest first
    models = type(face_models)(detector, face_models.landmark106, face_models.landmark203, face_models.face_mesh)
    centres = []
    for index in range(3):
        portrait = _register(_photo(512, 512), networks, models, face_index=index)
        centres.append(transform_points(np.array([[256.0, 256.0]]), portrait.crop_to_image[0])[0])
    assert np.linalg.norm(centres[0] - (330, 260)) < np.linalg.norm(centres[0] - (150, 200))
    assert np.linalg.norm(centres[1] - (150, 200)) < np.linalg.norm(centres[1] - (330, 260))
    with pytest.raises(NoFaceError, match="face index 3 was asked for, but only 3 face"):
        _register(_photo(512, 512), networks, models, face_index=3)


def test_no_face_error(networks, face_models):
    with pytest.raises(NoFaceError, match=r"no face found in the 320x240 source image \(detector threshold 0.5\)"):
        _register(np.zeros((240, 320, 3), np.uint8), networks, face_models)


def test_video_source_is_smoothed_and_keeps_frame0_canonical_keypoints(networks, face_models):
    frames = [_photo(seed=i) for i in range(6)]
    raw = _register(frames, networks, face_models, video_smoothing=1)
    smooth = _register(frames, networks, face_models, video_smoothing=3)
    assert smooth.is_video and smooth.num_frames == 6
    for name, values in raw.keypoints.items():
        expected = torch.stack([values[max(0, i - 1) : i + 2].mean(0) for i in range(6)])
        torch.testing.assert_close(smooth.keypoints[name], expected)
    np.testing.assert_array_equal(smooth.canonical_kp, raw.keypoints["kp"][0].numpy())
    assert smooth.appearance is None  # a video's volumes are made when its frames are rendered
    assert (raw.keypoints["exp"][1] - raw.keypoints["exp"][0]).abs().max() > 0  # frames do differ


def test_moving_average_truncates_at_the_ends():
    values = torch.arange(5.0)[:, None]
    torch.testing.assert_close(moving_average(values, 3)[:, 0], torch.tensor([0.5, 1, 2, 3, 3.5]))


def test_mirror_index():
    assert [mirror_index(i, 3) for i in range(10)] == [0, 1, 2, 2, 1, 0, 0, 1, 2, 2]
    assert mirror_index(-4, 3) == 0


@pytest.mark.parametrize("name", ["face_detector", "landmark106", "landmark203", "face_landmarker"])
def test_missing_aux_file_names_the_file(small_release, tmp_path, name):
    import shutil

    copy = tmp_path / "release"
    shutil.copytree(small_release, copy)
    (copy / AUX_FILES[name].path).unlink()
    with pytest.raises(FaceModelError) as err:
        load_face_models(copy)
    assert AUX_FILES[name].path.split("/")[-1] in str(err.value)
    assert "ditto_pytorch/aux_models" in str(err.value)


def test_damaged_onnx_is_reported(small_release, tmp_path):
    import shutil

    copy = tmp_path / "release"
    shutil.copytree(small_release, copy)
    (copy / AUX_FILES["landmark203"].path).write_bytes(b"not an onnx file")
    with pytest.raises(FaceModelError, match="damaged or incomplete"):
        load_face_models(copy)


def test_damaged_face_landmarker_task_is_reported(tmp_path):
    from ditto_core.portrait.face_models import load_face_mesh

    path = tmp_path / "face_landmarker.task"
    path.write_bytes(b"garbage, not a MediaPipe bundle")
    with pytest.raises(FaceModelError, match="cannot load the MediaPipe face landmarker"):
        load_face_mesh(path)
