"""Face crops out of the renderer, through any IMAGE step, back in with Paste Back: the placement, paste-back at any
crop size, the feather and user masks, frames without a face, and the Render → Paste Back nodes on a fake release."""

from dataclasses import replace

import cv2
import numpy as np
import pytest
import torch
from comfy_stubs import InterruptProcessingException, install, load_pack, register

from ditto_core.motion import Motion
from ditto_core.networks import load_networks
from ditto_core.portrait import FacePlacement, blend_mask, load_face_models, paste_faces, register_portrait
from ditto_core.render import RenderOptions, render_faces, render_frames
from ditto_core.testing.fake_release import copy_release


def reference_mask() -> np.ndarray:
    """The reference's 512² blend mask as the renderer notes describe it (independent of ``blend_mask``): 1 on
    pixels 26…485, ramps i/25 over the 26-pixel bands, quarter-disc fall-offs in the corners."""
    ramp = np.ones(512)
    ramp[:26] = np.arange(26) / 25
    ramp[486:] = np.arange(25, -1, -1) / 25
    distance = 1 - ramp
    return (1 - np.clip(np.hypot(distance[:, None], distance[None, :]), 0, 1)).astype(np.float32)


def reference_paste(frame: np.ndarray, render: np.ndarray, crop_to_image: np.ndarray, mask: np.ndarray):
    """The reference's put-back: mask and render warped with M_c2o (bilinear, black border), blended in float32,
    truncated. render: ``[512, 512, 3]`` in [0, 255]. Returns (frame, warped mask)."""
    h, w = frame.shape[:2]
    matrix = crop_to_image[:2].astype(np.float64)
    warped_mask = cv2.warpAffine(mask, matrix, (w, h), flags=cv2.INTER_LINEAR).clip(0, 1)
    warped = cv2.warpAffine(render.astype(np.float32), matrix, (w, h), flags=cv2.INTER_LINEAR)
    blended = warped_mask[..., None] * warped + (1 - warped_mask[..., None]) * frame
    return np.clip(blended, 0, 255).astype(np.uint8), warped_mask


# grid_sample takes the warp's coordinates normalised to [-1, 1] in float32: about 3e-5 px of rounding against
# cv2's float64 coordinates, so warped masks agree to 1e-4 (0.03 of a level in the blend)
MASK_ATOL = 1e-4


def assert_within_one_level(pasted: np.ndarray, expected: np.ndarray) -> None:
    """Paste-back runs with torch (grid_sample, float32) where the reference runs cv2.warpAffine: the same bilinear
    blend, rounded differently (and TRUNCATION_GUARD), so a truncated level can flip in a few pixels, never by more
    than one."""
    diff = np.abs(pasted.astype(int) - expected.astype(int))
    assert diff.max() <= 1 and (diff == 0).mean() > 0.99


@pytest.fixture(scope="module")
def rendered(small_release):
    """A registered 240x300 portrait, a 5-frame motion, the rendered faces and Render's own pasted frames."""
    networks = load_networks(small_release)
    image = np.random.default_rng(0).integers(60, 200, (240, 300, 3), dtype=np.uint8)
    portrait = register_portrait(image, networks.appearance_extractor, networks.motion_extractor,
                                 load_face_models(small_release))
    motion = Motion(torch.from_numpy(np.random.default_rng(1).standard_normal((5, 265)).astype(np.float32) * 0.1))
    options = RenderOptions(batch_size=2, precision="fp32")
    faces = torch.cat([f for f, _ in render_faces(networks, portrait, motion, options)]).numpy()
    frames = np.stack(list(render_frames(networks, portrait, motion, options)))
    return portrait, faces, frames, FacePlacement.of(portrait, 0, len(motion))


def _pasted(faces, placement, **kwargs):
    out = list(paste_faces(faces, placement, **kwargs))
    return np.stack([f for f, _ in out]), np.stack([m for _, m in out])


def test_the_blend_mask_is_the_references():
    np.testing.assert_allclose(blend_mask(512), reference_mask(), atol=1e-6)
    np.testing.assert_array_equal(blend_mask((512, 512), 0.05), blend_mask(512))


def test_pasting_the_rendered_faces_gives_render_frames_exactly(rendered):
    """The exactness contract: the float faces pasted with the default feather are Render's frames, bit for bit,
    and both are the reference's put-back of the float render (up to the mask's float rounding)."""
    portrait, faces, frames, placement = rendered
    pasted, masks = _pasted(faces, placement)
    np.testing.assert_array_equal(pasted, frames)
    for face, frame, mask in zip(faces, frames, masks):
        expected, expected_mask = reference_paste(portrait.images[0], torch.from_numpy(face).mul(255).numpy(),
                                                  portrait.crop_to_image[0], reference_mask())
        assert np.abs(frame.astype(int) - expected.astype(int)).max() <= 1
        assert (frame == expected).mean() > 0.999
        np.testing.assert_allclose(mask, expected_mask, atol=1e-5)


def test_quantised_crops_paste_as_their_levels_and_within_one_level_of_render(rendered):
    """Crops that went through 8 bits (a PNG, a restorer working in uint8) and came back as IMAGE floats (level/255)
    paste as the reference would paste those levels, and within one level of Render's frames."""
    portrait, faces, frames, placement = rendered
    levels = np.rint(faces * 255).astype(np.uint8)
    image_floats = torch.from_numpy(levels).float().div(255).numpy()  # what ComfyUI's IMAGE carries
    pasted, _ = _pasted(image_floats, placement)
    for face, out in zip(levels, pasted):
        expected, _ = reference_paste(portrait.images[0], face.astype(np.float32), portrait.crop_to_image[0],
                                      blend_mask(512))
        assert_within_one_level(out, expected)
    assert np.abs(pasted.astype(int) - frames.astype(int)).max() <= 1


def test_2x_crops_land_where_the_512_crops_do(rendered):
    """The 8-bit crops upscaled 512 → 1024 (cv2 bicubic, an upscaler's stand-in) paste to nearly Render's frames:
    the 1024² crop maps onto the same place (pixel centres aligned), with its own blend mask."""
    portrait, faces, frames, placement = rendered
    levels = np.rint(faces * 255).astype(np.uint8)
    big = np.stack([cv2.resize(f, (1024, 1024), interpolation=cv2.INTER_CUBIC) for f in levels])
    pasted, masks = _pasted(big.astype(np.float32) / 255, placement)
    assert pasted.shape == frames.shape
    diff = np.abs(pasted.astype(int) - frames.astype(int))
    assert diff.mean() < 1.5 and np.percentile(diff, 99) <= 10  # bicubic ringing on the fake renderer's noise
    _, mask_512 = reference_paste(portrait.images[0], levels[0], portrait.crop_to_image[0], reference_mask())
    assert np.abs(masks[0] - mask_512).max() < 0.05  # bands of 51-52 px at 1024 against 26 px at 512


def test_non_square_crops(rendered):
    _, faces, frames, placement = rendered
    levels = np.rint(faces * 255).astype(np.uint8)
    wide = np.stack([cv2.resize(f, (768, 512), interpolation=cv2.INTER_CUBIC) for f in levels])  # 1.5x along x
    pasted, _ = _pasted(wide.astype(np.float32) / 255, placement)
    assert np.abs(pasted.astype(int) - frames.astype(int)).mean() < 1.5


def _crop_coordinates(placement: FacePlacement, index: int) -> np.ndarray:
    """``[H, W, 2]``: where each frame pixel falls in the 512² crop (x, y)."""
    h, w = placement.frame_size
    to_crop = np.linalg.inv(placement.crop_to_image[index].astype(np.float64))
    ys, xs = np.mgrid[0:h, 0:w]
    points = np.stack([xs, ys, np.ones_like(xs)], -1) @ to_crop.T
    return points[..., :2]


def test_feather_zero_gives_a_hard_edge(rendered):
    portrait, faces, _, placement = rendered
    assert (blend_mask(512, 0.0) == 1).all()
    _, masks = _pasted(faces, placement, feather=0.0)
    inside_crop = _crop_coordinates(placement, 0)
    well_inside = ((inside_crop >= 0.1) & (inside_crop <= 510.9)).all(-1)
    outside = ((inside_crop < -1.1) | (inside_crop > 512.1)).any(-1)
    assert well_inside.sum() > 1000 and outside.sum() > 1000
    assert (masks[0][well_inside] > 1 - MASK_ATOL).all() and (masks[0][outside] == 0).all()
    edge = (masks[0] > MASK_ATOL) & (masks[0] < 1 - MASK_ATOL)
    assert not (edge & well_inside).any() and not (edge & outside).any()  # fractional only on the square's edge
    centre = np.rint(portrait.crop_to_image[0] @ [255.5, 255.5, 1]).astype(int)
    assert masks[0][centre[1], centre[0]] > 1 - MASK_ATOL
    soft = _pasted(faces, placement)[1][0]
    assert ((soft > 0) & (soft < 1)).sum() > 10 * edge.sum()  # the default feather: a wide soft band


def test_mask_output_is_the_warped_blend_mask(rendered):
    portrait, faces, _, placement = rendered
    _, masks = _pasted(faces, placement)
    h, w = placement.frame_size
    expected = cv2.warpAffine(reference_mask(), portrait.crop_to_image[0][:2].astype(np.float64), (w, h)).clip(0, 1)
    for mask in masks:
        assert mask.shape == (h, w) and mask.dtype == np.float32
        np.testing.assert_allclose(mask, expected, atol=1e-5)


def test_a_face_mask_replaces_the_blend_mask(rendered):
    portrait, faces, frames, placement = rendered
    yy, xx = np.mgrid[0:512, 0:512]
    disc = (np.hypot(xx - 255.5, yy - 300) < 150).astype(np.float32)  # a segmenter's face, say
    pasted, masks = _pasted(faces, placement, face_masks=disc[None])
    h, w = placement.frame_size
    matrix = portrait.crop_to_image[0][:2].astype(np.float64)
    expected_mask = cv2.warpAffine(disc, matrix, (w, h)).clip(0, 1)
    warped_face = cv2.warpAffine(faces[0] * np.float32(255), matrix, (w, h))
    np.testing.assert_allclose(masks[0], expected_mask, atol=MASK_ATOL)
    untouched = expected_mask == 0
    np.testing.assert_array_equal(pasted[0][untouched], portrait.images[0][untouched])
    full = expected_mask == 1
    assert_within_one_level(pasted[0][full], np.clip(warped_face[full], 0, 255).astype(np.uint8))
    assert not np.array_equal(pasted[0], frames[0])


def test_frames_without_a_face_pass_through_with_an_empty_mask(rendered):
    portrait, faces, frames, placement = rendered
    blank = replace(placement, has_face=np.array([True, False, True, False, True]))
    pasted, masks = _pasted(faces, blank)
    for index in (1, 3):
        np.testing.assert_array_equal(pasted[index], portrait.images[0])
        assert (masks[index] == 0).all()
    np.testing.assert_array_equal(pasted[[0, 2, 4]], frames[[0, 2, 4]])


def test_faces_go_into_the_frames_given(rendered):
    portrait, faces, _, placement = rendered
    grey = np.full((1, *placement.frame_size, 3), 90, np.uint8)
    pasted, masks = _pasted(faces, placement, frames=grey)
    outside = masks[0] == 0
    assert outside.sum() > 1000 and (pasted[:, outside] == 90).all()
    expected, _ = reference_paste(grey[0], faces[2] * np.float32(255), portrait.crop_to_image[0], blend_mask(512))
    assert_within_one_level(pasted[2], expected)


def test_placement_follows_the_portraits_source_frames(small_release):
    networks = load_networks(small_release)
    rng = np.random.default_rng(5)
    video = [rng.integers(60, 200, (96, 96, 3), dtype=np.uint8) for _ in range(3)]
    portrait = register_portrait(video, networks.appearance_extractor, networks.motion_extractor,
                                 load_face_models(small_release))
    placement = FacePlacement.of(portrait, 2, 7, first_index=3)
    sources = [portrait.source_frame(i) for i in range(5, 10)]
    assert len(placement) == 5 and placement.frame_size == (96, 96)
    np.testing.assert_array_equal(placement.source_frames, sources)
    np.testing.assert_array_equal(placement.crop_to_image, portrait.crop_to_image[sources])
    np.testing.assert_array_equal(placement.has_face, portrait.has_face[sources])
    np.testing.assert_array_equal(placement.source_image(0), portrait.images[sources[0]])
    motion = Motion(torch.zeros(7, 265))
    batches = [p for _, p in render_faces(networks, portrait, motion, RenderOptions(batch_size=2), start=2,
                                          first_index=3)]
    np.testing.assert_array_equal(np.concatenate([p.source_frames for p in batches]), sources)


# --- the nodes ------------------------------------------------------------------------------------------------------
@pytest.fixture
def nodes(tmp_path, small_release):
    state = install(tmp_path)
    pack = load_pack()
    copy_release(small_release, tmp_path / "models" / "ditto")
    nodes = register(pack)
    (models,) = nodes["DittoLoadModels"].execute(release="ditto_pytorch", device="auto")
    image = torch.from_numpy(np.random.default_rng(0).integers(60, 200, (1, 120, 150, 3)).astype(np.float32) / 255)
    (portrait,) = nodes["DittoRegisterPortrait"].execute(models, image, "first image", 0, "custom", 2.3, -0.125,
                                                          1920, 0.5)
    motion = Motion(torch.randn(4, 265, generator=torch.Generator().manual_seed(0)) * 0.1)
    return pack, state, nodes, models, portrait, motion


def test_render_crops_pasted_back_by_the_node_equal_render_frames(nodes):
    pack, state, nodes, models, portrait, motion = nodes
    render = register(pack)["DittoRender"]
    assert render.RETURN_NAMES[:3] == ["frames", "audio", "video"]  # existing links keep their slots
    assert render.RETURN_TYPES[3:] == ["IMAGE", "DITTO_FACE_PLACEMENT", "FLOAT"]
    frames, _, _, crops, placement, _ = nodes["DittoRender"].execute(models, portrait, motion, True, "on", 3, "fp32")
    assert crops.shape == (4, 512, 512, 3) and crops.dtype == torch.float32
    assert 0 <= crops.min() and crops.max() <= 1 and len(placement) == 4
    pasted, mask = nodes["DittoPasteBack"].execute(crops, placement, 0.05)
    assert torch.equal(pasted, frames)
    assert mask.shape == (4, 120, 150) and mask.dtype == torch.float32
    assert state.progress[-1].value == state.progress[-1].total == 4
    unpasted, _, _, crops_again, _, _ = nodes["DittoRender"].execute(models, portrait, motion, False, "on", 3, "fp32")
    assert torch.equal(crops_again, crops)
    assert (unpasted - crops).abs().max() < 1 / 255  # the 8-bit crops Render gives without paste-back


def test_paste_back_node_takes_upscaled_crops_a_single_mask_and_frame(nodes):
    pack, state, nodes, models, portrait, motion = nodes
    frames, _, _, crops, placement, _ = nodes["DittoRender"].execute(models, portrait, motion, True, "on", 4, "fp32")
    big = torch.nn.functional.interpolate(crops.movedim(-1, 1), scale_factor=2, mode="bilinear").movedim(1, -1)
    pasted, _ = nodes["DittoPasteBack"].execute(big, placement, 0.05)
    assert (pasted - frames).abs().mean() < 2 / 255
    square = torch.zeros(1024, 1024)
    square[256:768, 256:768] = 1
    grey = torch.full((1, 120, 150, 3), 0.5)
    pasted, mask = nodes["DittoPasteBack"].execute(big, placement, 0.0, frames=grey, face_mask=square)
    halve = np.array([[0.5, 0, -0.25], [0, 0.5, -0.25], [0, 0, 1]])  # 1024 px → 512 px, pixel centres aligned
    matrix = (placement.crop_to_image[0].astype(np.float64) @ halve)[:2]
    expected = cv2.warpAffine(square.numpy(), matrix, (150, 120)).clip(0, 1)
    torch.testing.assert_close(mask[2], torch.from_numpy(expected), rtol=0, atol=MASK_ATOL)
    untouched = pasted[:, mask[0] == 0]
    assert untouched.numel() > 1000 and ((untouched * 255).round() == 128).all()  # the grey frame, for every crop


def test_paste_back_node_errors_and_interrupts(nodes):
    _, state, nodes, models, portrait, motion = nodes
    _, _, _, crops, placement, _ = nodes["DittoRender"].execute(models, portrait, motion, True, "on", 4, "fp32")
    with pytest.raises(ValueError, match="3 face crops for a placement of 4 frames"):
        nodes["DittoPasteBack"].execute(crops[:3], placement, 0.05)
    with pytest.raises(ValueError, match="the face mask is 256x256 but the face crops are 512x512"):
        nodes["DittoPasteBack"].execute(crops, placement, 0.05, face_mask=torch.ones(256, 256))
    state.interrupt_checks, state.interrupt_after = 0, 2
    with pytest.raises(InterruptProcessingException):
        nodes["DittoPasteBack"].execute(crops, placement, 0.05)
    assert state.interrupt_checks == 3


def test_hd_frames_with_crops_of_every_pose_match_the_reference_and_keep_the_rest(rendered):
    """1080p frames, one batch of faces whose crops differ in scale, rotation and place (a source video), one of
    them reaching past the frame's corner: within one level of the reference's whole-frame warp, and every pixel
    out of the crop's reach is the frame's own, bit for bit."""
    _, faces, _, _ = rendered
    rng = np.random.default_rng(7)
    frames = rng.integers(0, 256, (len(faces), 1080, 1920, 3), dtype=np.uint8)
    matrices = []
    for index, (scale, angle, x, y) in enumerate([(1.2, 0.0, 700, 300), (0.8, 0.3, 1500, 600), (1.7, -0.5, 100, 50),
                                                  (1.0, 2.5, 1800, 1000), (0.5, 1.0, 900, 500)]):
        c, s = scale * np.cos(angle), scale * np.sin(angle)
        matrices.append(np.array([[c, -s, x - 256], [s, c, y - 256], [0, 0, 1]], np.float32))
    placement = FacePlacement(crop_to_image=np.stack(matrices), source_frames=np.arange(len(faces)),
                              source_images=frames, has_face=np.ones(len(faces), bool))
    pasted, masks = _pasted(faces, placement)
    for index, (frame, out, mask) in enumerate(zip(frames, pasted, masks)):
        expected, expected_mask = reference_paste(frame, faces[index] * np.float32(255), matrices[index],
                                                  reference_mask())
        assert_within_one_level(out, expected)
        np.testing.assert_allclose(mask, expected_mask, atol=MASK_ATOL)
        coordinates = np.linalg.inv(matrices[index].astype(np.float64))
        ys, xs = np.mgrid[0:1080, 0:1920]
        crop_x = coordinates[0, 0] * xs + coordinates[0, 1] * ys + coordinates[0, 2]
        crop_y = coordinates[1, 0] * xs + coordinates[1, 1] * ys + coordinates[1, 2]
        beyond = (crop_x <= -1) | (crop_x >= 512) | (crop_y <= -1) | (crop_y >= 512)
        assert beyond.sum() > 1000
        np.testing.assert_array_equal(out[beyond], frame[beyond])


def test_paste_runs_on_the_device_asked_for_and_yields_no_masks_when_not_wanted(rendered):
    _, faces, frames, placement = rendered
    out = list(paste_faces(torch.from_numpy(faces), placement, with_masks=False, device="cpu", batch_size=2))
    assert all(mask is None for _, mask in out)
    np.testing.assert_array_equal(np.stack([f for f, _ in out]), frames)


def test_cpu_bands_blend_as_one_call(rendered, monkeypatch):
    """On a CPU the boxes are blended a band of rows at a time (the last band shorter): any band height gives the
    one-call result bit for bit, masks too; without masks none are made."""
    from ditto_core.portrait import paste

    _, faces, _, _ = rendered
    rng = np.random.default_rng(3)
    box = paste.FrameBox(0, 0, 301, 257)
    matrices = np.stack([np.array([[0.6 * np.cos(a), -0.6 * np.sin(a), 10], [0.6 * np.sin(a), 0.6 * np.cos(a), 20],
                                   [0, 0, 1]]) for a in (0.0, 0.2, -0.4)])
    inputs = (torch.from_numpy(faces[:3]), torch.from_numpy(blend_mask())[None],
              paste.sampling_grid(matrices, [box] * 3, (512, 512), torch.device("cpu")),
              torch.from_numpy(rng.integers(0, 256, (3, 301, 257, 3), dtype=np.uint8)))
    monkeypatch.setattr(paste, "CPU_BLEND_PIXELS", 1 << 40)
    whole, whole_masks = paste.blend_boxes(*inputs)
    monkeypatch.setattr(paste, "CPU_BLEND_PIXELS", 3 * 257 * 8)  # 37 bands of 8 rows and one of 5
    banded, banded_masks = paste.blend_boxes(*inputs)
    assert torch.equal(banded, whole) and torch.equal(banded_masks, whole_masks)
    assert 0.1 < float((whole_masks > 0.5).float().mean()) < 0.9  # the faces cover part of the box
    boxes, no_masks = paste.blend_boxes(*inputs, with_masks=False)
    assert no_masks is None and torch.equal(boxes, whole)
