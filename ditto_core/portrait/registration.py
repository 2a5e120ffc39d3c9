"""Portrait registration: find the face, crop it the Ditto way, read its eye state, keypoints and appearance."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import cv2
import numpy as np
import torch

from ..keypoints import bins_to_degrees, transform_keypoints
from ..models.motion_extractor import MotionExtractor
from .face_models import FaceModels, NoFaceError
from .geometry import CROP_SCALE, CROP_SIZE, CROP_VY_RATIO, crop_transform, eye_conditions, invert, warp
from .images import DEFAULT_MAX_SIZE, fit_max_size, fitted_size, to_rgb_frames

NETWORK_INPUT_SIZE = 256
KEYPOINT_FIELDS = MotionExtractor.OUTPUT_NAMES  # pitch, yaw, roll, t, exp, scale, kp


@dataclass(frozen=True)
class RegistrationOptions:
    max_size: int = DEFAULT_MAX_SIZE  # long side of the source, larger images are scaled down (0: never)
    crop_scale: float = CROP_SCALE
    crop_vx_ratio: float = 0.0  # horizontal crop shift in crop sides (positive: toward the image's right)
    crop_vy_ratio: float = CROP_VY_RATIO
    crop_rotate: bool = True
    face_index: int = 0  # among detected faces sorted by box area, largest first
    detection_threshold: float = 0.5
    video_smoothing: int = 13  # centred moving average over source frames (video only; ≤ 1: off)
    max_frames: int = -1  # a source video's frames used, from the start (−1: all)
    loop: str = "ping-pong"  # a source video shorter than the speech: see LOOP_POLICIES

    def __post_init__(self):
        if self.loop not in LOOP_POLICIES:
            raise ValueError(f"unknown loop policy {self.loop!r}; choose one of {', '.join(LOOP_POLICIES)}")


LOOP_POLICIES = {
    "ping-pong": "play the source video forward, then backward, and so on",
    "once": "play the source video once, then hold its last frame",
    "shortest": "stop at the shorter of the source video and the speech",
}


@dataclass(frozen=True)
class SourceTimeline:
    """Which source frame shows at each output frame: output frame i of a clip at ``fps`` falls at i/fps seconds,
    the source frame there (at the source's own ``fps``; None: one source frame per output frame), and past the
    source's end the loop policy decides."""

    num_frames: int
    fps: float | None = None
    loop: str = "ping-pong"

    def frame(self, index: int, fps: float | None = None) -> int:
        position = index if self.fps is None or fps is None else int(index * self.fps / fps + 0.5)
        if self.loop == "ping-pong":
            return mirror_index(position, self.num_frames)
        return min(max(position, 0), self.num_frames - 1)

    def output_frames(self, fps: float | None = None) -> int | None:
        """How many output frames at ``fps`` the source lasts when the clip stops with it ("shortest"); None when
        the source loops or holds."""
        if self.loop != "shortest" or self.num_frames == 1:
            return None
        if self.fps is None or fps is None:
            return self.num_frames
        return math.ceil(self.num_frames * fps / self.fps - 1e-9)


@dataclass
class Portrait:
    """Everything later stages need about a source image or source video of F frames.

    images: ``[F, H, W, 3]`` uint8 RGB (after max-size fitting; may be a disk-backed memmap for long videos);
    image_to_crop and crop_to_image: ``[F, 3, 3]`` float32 (M_o2c, M_c2o); keypoints: motion-extractor outputs, each ``[F, …]`` float32
    (pose logits ``[F, 66]``, t ``[F, 3]``, exp ``[F, 63]``, scale ``[F, 1]``, kp ``[F, 63]``), temporally
    smoothed for videos; appearance: ``[1, 32, 16, 64, 64]`` float32 for an image, None for a video (each frame's
    volume, 8 MB, is computed when it is rendered: :func:`source_appearance`); eye_open ``[F, 2]``;
    eye_ball ``[F, 6]``; canonical_kp ``[63]``: the first face frame's kp before smoothing; landmarks
    ``[F, 203, 2]``; has_face ``[F]`` bool: False where no face was found (a cut, a hand over the face, the head
    turned away: the frame is shown unchanged; its other fields hold the nearest face frame's values);
    fps: a source video's frame rate (None: unknown, one source frame per output frame).
    """

    images: np.ndarray
    image_to_crop: np.ndarray
    crop_to_image: np.ndarray
    keypoints: dict[str, torch.Tensor]
    appearance: torch.Tensor | None
    eye_open: np.ndarray
    eye_ball: np.ndarray
    canonical_kp: np.ndarray
    landmarks: np.ndarray
    has_face: np.ndarray
    options: RegistrationOptions = field(default_factory=RegistrationOptions)
    fps: float | None = None

    @property
    def num_frames(self) -> int:
        return len(self.images)

    @property
    def is_video(self) -> bool:
        return self.num_frames > 1

    @property
    def timeline(self) -> SourceTimeline:
        return SourceTimeline(self.num_frames, self.fps, self.options.loop)

    @property
    def faceless_frames(self) -> int:
        """Source frames without a face (shown unchanged)."""
        return int((~self.has_face).sum())

    def video_summary(self) -> str:
        """One line on a source video: its frames, rate and loop policy, and the frames without a face."""
        rate = f"{self.fps:g} fps" if self.fps else "an unknown rate"
        line = f"{self.num_frames} source frames at {rate}, loop {self.options.loop}"
        if self.faceless_frames:
            line += (f"; {self.faceless_frames} frame(s) without a face pass through unchanged (the first: frame "
                     f"{int(np.argmin(self.has_face))})")
        return line

    def source_frame(self, index: int, fps: float | None = None) -> int:
        """The source frame behind output frame ``index`` of a clip at ``fps`` (see :class:`SourceTimeline`)."""
        return self.timeline.frame(index, fps)

    def source_keypoints(self) -> torch.Tensor:
        """Posed source keypoints x_s ``[F, 21, 3]``."""
        k = self.keypoints
        return transform_keypoints(
            k["kp"], bins_to_degrees(k["pitch"]), bins_to_degrees(k["yaw"]), bins_to_degrees(k["roll"]),
            k["t"], k["exp"], k["scale"],
        )


def mirror_index(i: int, n: int) -> int:
    """Ping-pong position of frame ``i`` in an ``n``-frame loop: 0, 1, …, n−1, n−1, …, 0, 0, 1, …"""
    turn, position = divmod(max(i, 0), n)
    return position if turn % 2 == 0 else n - 1 - position


def moving_average(values: torch.Tensor, window: int) -> torch.Tensor:
    """Centred mean over ``window`` frames along dim 0, truncated at the ends. values: ``[F, …]``."""
    half = window // 2
    return torch.stack([values[max(0, i - half) : i + half + 1].mean(0) for i in range(len(values))])


def crop_face(frame: np.ndarray, landmarks203: np.ndarray, options: RegistrationOptions) -> tuple[np.ndarray, np.ndarray]:
    """The 512² face crop and its image → crop transform ``[3, 3]``."""
    to_crop = crop_transform(landmarks203, CROP_SIZE, options.crop_scale, options.crop_vy_ratio, options.crop_rotate,
                             options.crop_vx_ratio)
    return warp(frame, to_crop, CROP_SIZE), to_crop


def network_input(crop: np.ndarray) -> torch.Tensor:
    """512² RGB uint8 crop → ``[1, 3, 256, 256]`` float32 in [0, 1] (INTER_AREA resize)."""
    small = cv2.resize(crop, (NETWORK_INPUT_SIZE, NETWORK_INPUT_SIZE), interpolation=cv2.INTER_AREA)
    return torch.from_numpy(small.astype(np.float32) / 255.0).permute(2, 0, 1)[None]


def _detect_landmarks(frame: np.ndarray, face_models: FaceModels, options: RegistrationOptions) -> np.ndarray | None:
    """The chosen face's 106 landmarks (``options.face_index`` among the detected faces, largest first), or None."""
    detections = face_models.detector(frame, options.detection_threshold)
    if options.face_index >= len(detections):
        return None
    return face_models.landmark106(frame, detections.boxes[options.face_index])


def no_face_error(frame: np.ndarray, face_models: FaceModels, options: RegistrationOptions) -> NoFaceError:
    """Why no face was registered in a source image, and what to do."""
    found = len(face_models.detector(frame, options.detection_threshold))
    h, w = frame.shape[:2]
    if found == 0:
        return NoFaceError(
            f"no face found in the {w}x{h} source image (detector threshold {options.detection_threshold}); "
            f"use a photo with a clearly visible, roughly frontal face, or lower the detection threshold "
            f"(--detection-threshold on the command line, detection_threshold on Register Portrait)"
        )
    if options.face_index >= found:
        return NoFaceError(
            f"face index {options.face_index} was asked for, but only {found} face(s) were found in the "
            f"{w}x{h} image (index 0 is the largest)"
        )
    return NoFaceError(
        f"the face landmarker found no face in the crop of the {w}x{h} source image; the face may be too small, "
        f"occluded or turned away"
    )


@dataclass(frozen=True)
class TrackedFace:
    """One frame's face: crop ``[512, 512, 3]`` uint8, image → crop ``[3, 3]`` float32, landmarks ``[203, 2]``,
    face mesh ``[478, 3]``."""

    crop: np.ndarray
    to_crop: np.ndarray
    landmarks: np.ndarray
    mesh: np.ndarray


def track_faces(frames, face_models: FaceModels, options: RegistrationOptions,
                check: Callable[[], None] | None = None) -> Iterator[TrackedFace | None]:
    """Per frame, the face, or None where there is none. The face is detected, then followed from frame to frame
    through its 203 landmarks, as the reference does; where the face landmarker sees no face in the crop (a cut,
    a hand over the face, the head turned away) the track is lost, and the face is detected again in the
    following frames. ``check`` runs before each frame (to stop early, or count progress)."""
    guide = None
    for frame in frames:
        if check is not None:
            check()
        if guide is None and (guide := _detect_landmarks(frame, face_models, options)) is None:
            yield None
            continue
        points = face_models.landmark203(frame, guide)
        crop, to_crop = crop_face(frame, points, options)
        mesh = face_models.face_mesh(crop)
        if mesh is None:
            guide = None
            yield None
            continue
        yield TrackedFace(crop, to_crop, points, mesh)
        guide = points


def held_face_frames(has_face: np.ndarray) -> np.ndarray:
    """For each frame, the face frame whose values it takes ``[F]``: itself, else the last face frame before it,
    else the first one after it. has_face: ``[F]`` bool with at least one True."""
    faces = np.flatnonzero(has_face)
    before = np.searchsorted(faces, np.arange(len(has_face)), side="right") - 1
    return faces[np.maximum(before, 0)]


def face_runs(has_face: np.ndarray) -> list[tuple[int, int]]:
    """``(start, stop)`` of each run of consecutive face frames. has_face: ``[F]`` bool."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], has_face.astype(np.int8), [0]])))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist()))


def smooth_face_runs(values: torch.Tensor, has_face: np.ndarray, held: np.ndarray, window: int) -> torch.Tensor:
    """The moving average within each run of face frames, so a cut or a lost track does not mix two shots; a
    frame without a face then holds its held face frame's smoothed value. values: ``[F, …]``; held: ``[F]``."""
    smoothed = values.clone()
    for start, stop in face_runs(has_face):
        smoothed[start:stop] = moving_average(values[start:stop], window)
    return smoothed[torch.from_numpy(held)]


def _source_frames(images, options: RegistrationOptions) -> np.ndarray | list[np.ndarray]:
    """The source's RGB uint8 frames, max-size fitted; a ``[F, H, W, 3]`` uint8 array that already fits (e.g. a
    long video decoded into a memmap) is used as it is, not copied."""
    if isinstance(images, np.ndarray) and images.ndim == 4 and images.dtype == np.uint8 and images.shape[-1] == 3:
        array = images[: options.max_frames] if options.max_frames > 0 else images
        if len(array) and fitted_size(*array.shape[1:3], options.max_size) == array.shape[1:3]:
            return array
    frames = to_rgb_frames(images)
    frames = frames[: options.max_frames] if options.max_frames > 0 else frames
    return [fit_max_size(f, options.max_size) for f in frames]


def register_portrait(
    images,
    appearance_extractor: torch.nn.Module,
    motion_extractor: torch.nn.Module,
    face_models: FaceModels,
    options: RegistrationOptions = RegistrationOptions(),
    fps: float | None = None,
    check: Callable[[], None] | None = None,
) -> Portrait:
    """Register one portrait image, or the frames of a source video (tracked from frame to frame; frames without
    a face are kept, to be shown unchanged).

    images: anything ``to_rgb_frames`` accepts (a ComfyUI IMAGE batch is taken as a video when B > 1), or a
    ``[F, H, W, 3]`` uint8 array; fps: a video's frame rate, when known. ``check`` runs before each frame.
    """
    frames = _source_frames(images, options)
    device = next(motion_extractor.parameters()).device
    rows, appearance = [], None
    for face in track_faces(frames, face_models, options, check):
        if face is None:
            rows.append(None)
            continue
        with torch.inference_mode():
            net_in = network_input(face.crop).to(device)
            outputs = [o.float().cpu() for o in motion_extractor(net_in)]
            if len(frames) == 1:  # a video's volumes (8 MB a frame) are made when rendered: source_appearance
                appearance = appearance_extractor(net_in).float().cpu()
        rows.append((face.to_crop, face.landmarks, *eye_conditions(face.mesh), outputs))
    has_face = np.array([row is not None for row in rows])
    if not has_face.any():
        if len(frames) == 1:
            raise no_face_error(frames[0], face_models, options)
        raise NoFaceError(f"no face found in any of the {len(frames)} frames of the source video; give a video in "
                          f"which a face is visible, or lower the detection threshold")
    held = held_face_frames(has_face)
    to_crop, landmarks, eye_open, eye_ball, outputs = zip(*(rows[i] for i in held))
    keypoints = stack_outputs(list(outputs))
    canonical_kp = keypoints["kp"][0].numpy().copy()
    if len(frames) > 1 and options.video_smoothing > 1:
        keypoints = {name: smooth_face_runs(v, has_face, held, options.video_smoothing)
                     for name, v in keypoints.items()}
    return Portrait(
        images=frames if isinstance(frames, np.ndarray) else np.stack(frames),
        image_to_crop=np.stack(to_crop),
        crop_to_image=np.stack([invert(m) for m in to_crop]),
        keypoints=keypoints,
        appearance=appearance,
        eye_open=np.stack(eye_open),
        eye_ball=np.stack(eye_ball),
        canonical_kp=canonical_kp,
        landmarks=np.stack(landmarks),
        has_face=has_face,
        options=options,
        fps=fps,
    )


def source_appearance(portrait: Portrait, sources: list[int], appearance_extractor: torch.nn.Module,
                      device: torch.device) -> torch.Tensor:
    """Appearance volumes ``[n, 32, 16, 64, 64]`` on ``device`` for source frames ``sources``: an image's one
    volume, or a video's computed from each frame's crop, as registration would have."""
    if portrait.appearance is not None:
        volume = portrait.appearance.to(device)
        return volume.expand(len(sources), *volume.shape[1:])
    distinct, where = np.unique(sources, return_inverse=True)  # a held or turning frame is made once
    crops = [warp(portrait.images[s], portrait.image_to_crop[s], CROP_SIZE) for s in distinct]
    with torch.inference_mode():
        volumes = appearance_extractor(torch.cat([network_input(c) for c in crops]).to(device)).float()
    return volumes[torch.from_numpy(where.reshape(-1)).to(device)]


def stack_outputs(outputs: list[list[torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Per-frame motion-extractor outputs → one ``[F, …]`` tensor per field."""
    return {name: torch.cat([o[i] for o in outputs]) for i, name in enumerate(KEYPOINT_FIELDS)}


def extract_motion_keypoints(
    images, motion_extractor: torch.nn.Module, face_models: FaceModels,
    options: RegistrationOptions = RegistrationOptions(), check=None,
) -> dict[str, torch.Tensor]:
    """The motion extractor's outputs for every frame of a (driving) video, face tracked as in registration:
    ``{pitch, yaw, roll: [N, 66], t: [N, 3], exp: [N, 63], scale: [N, 1], kp: [N, 63]}``; a frame without a face
    holds the nearest face frame's values. ``check`` runs before each frame (to stop early)."""
    frames = [fit_max_size(f, options.max_size) for f in to_rgb_frames(images)]
    device = next(motion_extractor.parameters()).device
    outputs = []
    for face in track_faces(frames, face_models, options, check):
        if face is None:
            outputs.append(None)
            continue
        with torch.inference_mode():
            outputs.append([o.float().cpu() for o in motion_extractor(network_input(face.crop).to(device))])
    has_face = np.array([o is not None for o in outputs])
    if not has_face.any():
        if len(frames) == 1:
            raise no_face_error(frames[0], face_models, options)
        raise NoFaceError(f"no face found in any of the {len(frames)} frames of the driving video")
    return stack_outputs([outputs[i] for i in held_face_frames(has_face)])
