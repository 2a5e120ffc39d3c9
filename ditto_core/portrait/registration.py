"""Portrait registration: find the face, crop it the Ditto way, read its eye state, keypoints and appearance."""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np
import torch

from ..keypoints import bins_to_degrees, transform_keypoints
from ..models.motion_extractor import MotionExtractor
from .face_models import FaceModels, NoFaceError
from .geometry import CROP_SCALE, CROP_SIZE, CROP_VY_RATIO, crop_transform, eye_conditions, invert, warp
from .images import DEFAULT_MAX_SIZE, fit_max_size, to_rgb_frames

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


@dataclass
class Portrait:
    """Everything later stages need about a source image or looping source video of F frames.

    images: ``[F, H, W, 3]`` uint8 RGB (after max-size fitting); crop_to_image: ``[F, 3, 3]`` float32 (M_c2o);
    keypoints: motion-extractor outputs, each ``[F, …]`` float32 (pose logits ``[F, 66]``, t ``[F, 3]``,
    exp ``[F, 63]``, scale ``[F, 1]``, kp ``[F, 63]``), temporally smoothed for videos;
    appearance: ``[F, 32, 16, 64, 64]`` float32; eye_open ``[F, 2]``; eye_ball ``[F, 6]``;
    canonical_kp ``[63]``: frame 0's kp before smoothing; landmarks ``[F, 203, 2]``; has_face ``[F]`` bool: False
    where no face was found (a source video's cut or occlusion: the frame is shown unchanged).
    """

    images: np.ndarray
    crop_to_image: np.ndarray
    keypoints: dict[str, torch.Tensor]
    appearance: torch.Tensor
    eye_open: np.ndarray
    eye_ball: np.ndarray
    canonical_kp: np.ndarray
    landmarks: np.ndarray
    has_face: np.ndarray
    options: RegistrationOptions = field(default_factory=RegistrationOptions)

    @property
    def num_frames(self) -> int:
        return len(self.images)

    @property
    def is_video(self) -> bool:
        return self.num_frames > 1

    def source_frame(self, index: int) -> int:
        """The source frame behind output frame ``index`` (a video source loops ping-pong)."""
        return mirror_index(index, self.num_frames)

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


def _first_face_landmarks(frame: np.ndarray, face_models: FaceModels, options: RegistrationOptions) -> np.ndarray:
    detections = face_models.detector(frame, options.detection_threshold)
    h, w = frame.shape[:2]
    if len(detections) == 0:
        raise NoFaceError(
            f"no face found in the {w}x{h} source image (detector threshold {options.detection_threshold}); "
            f"use a photo with a clearly visible, roughly frontal face, or lower the detection threshold "
            f"(--detection-threshold on the command line, detection_threshold on Register Portrait)"
        )
    if options.face_index >= len(detections):
        raise NoFaceError(
            f"face index {options.face_index} was asked for, but only {len(detections)} face(s) were found in the "
            f"{w}x{h} image (index 0 is the largest)"
        )
    return face_models.landmark106(frame, detections.boxes[options.face_index])


def stack_outputs(outputs: list[list[torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Per-frame motion-extractor outputs → one ``[F, …]`` tensor per field."""
    return {name: torch.cat([o[i] for o in outputs]) for i, name in enumerate(KEYPOINT_FIELDS)}


def track_faces(frames: list[np.ndarray], face_models: FaceModels, options: RegistrationOptions):
    """Yield ``(frame, crop, image → crop [3, 3], landmarks [203, 2])`` per frame: the face is detected in the
    first frame and followed from frame to frame through its 203 landmarks, as the reference does."""
    guide = _first_face_landmarks(frames[0], face_models, options)
    for frame in frames:
        points = face_models.landmark203(frame, guide)
        crop, to_crop = crop_face(frame, points, options)
        yield frame, crop, to_crop, points
        guide = points


def register_portrait(
    images,
    appearance_extractor: torch.nn.Module,
    motion_extractor: torch.nn.Module,
    face_models: FaceModels,
    options: RegistrationOptions = RegistrationOptions(),
) -> Portrait:
    """Register one portrait image, or the frames of a short source video (tracked from frame to frame).

    images: anything ``to_rgb_frames`` accepts (a ComfyUI IMAGE batch is taken as a video when B > 1).
    """
    frames = to_rgb_frames(images)
    frames = [fit_max_size(f, options.max_size) for f in (frames[: options.max_frames] if options.max_frames > 0 else frames)]
    device = next(motion_extractor.parameters()).device
    crops_to_image, landmarks, eye_open, eye_ball, outputs, volumes = [], [], [], [], [], []
    for index, (frame, crop, to_crop, points) in enumerate(track_faces(frames, face_models, options)):
        mesh = face_models.face_mesh(crop)
        if mesh is None:
            raise NoFaceError(
                f"the face landmarker found no face in the crop of source frame {index}; the face may be too "
                f"small, occluded or turned away"
            )
        opened, ball = eye_conditions(mesh)
        with torch.inference_mode():
            net_in = network_input(crop).to(device)
            outputs.append([o.float().cpu() for o in motion_extractor(net_in)])
            volumes.append(appearance_extractor(net_in).float().cpu())
        crops_to_image.append(invert(to_crop))
        landmarks.append(points)
        eye_open.append(opened)
        eye_ball.append(ball)

    keypoints = stack_outputs(outputs)
    canonical_kp = keypoints["kp"][0].numpy().copy()
    if len(frames) > 1 and options.video_smoothing > 1:
        keypoints = {name: moving_average(v, options.video_smoothing) for name, v in keypoints.items()}
    return Portrait(
        images=np.stack(frames),
        crop_to_image=np.stack(crops_to_image),
        keypoints=keypoints,
        appearance=torch.cat(volumes),
        eye_open=np.stack(eye_open),
        eye_ball=np.stack(eye_ball),
        canonical_kp=canonical_kp,
        landmarks=np.stack(landmarks),
        has_face=np.ones(len(frames), dtype=bool),
        options=options,
    )


def extract_motion_keypoints(
    images, motion_extractor: torch.nn.Module, face_models: FaceModels,
    options: RegistrationOptions = RegistrationOptions(), check=None,
) -> dict[str, torch.Tensor]:
    """The motion extractor's outputs for every frame of a (driving) video, face tracked as in registration:
    ``{pitch, yaw, roll: [N, 66], t: [N, 3], exp: [N, 63], scale: [N, 1], kp: [N, 63]}``. ``check`` runs before
    each frame (to stop early)."""
    frames = [fit_max_size(f, options.max_size) for f in to_rgb_frames(images)]
    device = next(motion_extractor.parameters()).device
    outputs = []
    for _, crop, _, _ in track_faces(frames, face_models, options):
        if check is not None:
            check()
        with torch.inference_mode():
            outputs.append([o.float().cpu() for o in motion_extractor(network_input(crop).to(device))])
    return stack_outputs(outputs)
