"""The release's face models: SCRFD detector, 106- and 203-point landmarks (ONNX), MediaPipe face mesh."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..onnx_sessions import open_session
from ..release import HF_REPO, release_path
from .geometry import (
    LANDMARK_CROP_SCALE,
    LANDMARK_CROP_SIZE,
    LANDMARK_CROP_VY_RATIO,
    crop_transform,
    invert,
    transform_points,
    warp,
)

DETECTION_SIZE = 512
DETECTION_THRESHOLD = 0.5
NMS_THRESHOLD = 0.4
STRIDES = (8, 16, 32)
ANCHORS_PER_CELL = 2
LANDMARK106_SIZE = 192

FAKE_FACE_LANDMARKER_MAGIC = b"DITTO-FAKE-FACE-LANDMARKER\n"


class FaceModelError(ValueError):
    """An auxiliary face model that is missing, damaged or unusable."""


class NoFaceError(ValueError):
    """No face was found where one was needed."""


@dataclass(frozen=True)
class Detections:
    """Faces found in an image, largest first.

    boxes: ``[n, 4]`` x1, y1, x2, y2 pixels; scores: ``[n]``; keypoints: ``[n, 5, 2]``.
    """

    boxes: np.ndarray
    scores: np.ndarray
    keypoints: np.ndarray

    def __len__(self) -> int:
        return len(self.boxes)


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float = NMS_THRESHOLD) -> list[int]:
    """Greedy non-maximum suppression with InsightFace's "+1 pixel" area convention; indices by falling score."""
    x1, y1, x2, y2 = boxes.T
    areas = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = scores.argsort()[::-1]
    keep = []
    while order.size > 0:
        i = order[0]
        keep.append(int(i))
        w = np.maximum(0.0, np.minimum(x2[i], x2[order[1:]]) - np.maximum(x1[i], x1[order[1:]]) + 1)
        h = np.maximum(0.0, np.minimum(y2[i], y2[order[1:]]) - np.maximum(y1[i], y1[order[1:]]) + 1)
        inter = w * h
        overlap = inter / (areas[i] + areas[order[1:]] - inter)
        order = order[np.where(overlap <= threshold)[0] + 1]
    return keep


def anchor_centres(stride: int, size: int = DETECTION_SIZE) -> np.ndarray:
    """``[cells·2, 2]`` (x, y) anchor centres of one SCRFD level: each cell's top-left corner, twice."""
    cells = size // stride
    ys, xs = np.mgrid[:cells, :cells]
    centres = (np.stack([xs, ys], axis=-1).astype(np.float32) * stride).reshape(-1, 2)
    return np.repeat(centres, ANCHORS_PER_CELL, axis=0)


class FaceDetector:
    """SCRFD-10G (``det_10g.onnx``): letterboxed to 512², boxes and 5 keypoints decoded from 3 strides."""

    def __init__(self, path: Path, device: str = "cpu", threshold: float = DETECTION_THRESHOLD):
        self.session = open_session(path, device, "face_detector", "face detector", FaceModelError)
        self.input_name = self.session.get_inputs()[0].name
        self.output_names = [o.name for o in self.session.get_outputs()]
        if len(self.output_names) != 9:
            raise FaceModelError(f"{path} has {len(self.output_names)} outputs; SCRFD with keypoints has 9")
        self.threshold = threshold

    def __call__(self, image: np.ndarray, threshold: float | None = None) -> Detections:
        """image: RGB uint8 ``[H, W, 3]``."""
        threshold = self.threshold if threshold is None else threshold
        h, w = image.shape[:2]
        if h / w > 1:
            new_h, new_w = DETECTION_SIZE, int(DETECTION_SIZE / (h / w))
        else:
            new_w, new_h = DETECTION_SIZE, int(DETECTION_SIZE * (h / w))
        scale = new_h / h
        canvas = np.zeros((DETECTION_SIZE, DETECTION_SIZE, 3), dtype=np.uint8)
        canvas[:new_h, :new_w] = cv2.resize(image, (new_w, new_h))
        # The reference passes RGB with swapRB, so the network sees BGR; kept for identical detections.
        blob = cv2.dnn.blobFromImage(canvas, 1.0 / 128, (DETECTION_SIZE, DETECTION_SIZE), (127.5,) * 3, swapRB=True)
        outputs = self.session.run(self.output_names, {self.input_name: blob})
        scores, boxes, keypoints = [], [], []
        for level, stride in enumerate(STRIDES):
            level_scores = outputs[level].reshape(-1)
            distances = outputs[level + 3].reshape(-1, 4) * stride
            offsets = outputs[level + 6].reshape(-1, 10) * stride
            centres = anchor_centres(stride)
            keep = np.where(level_scores >= threshold)[0]
            scores.append(level_scores[keep])
            boxes.append(np.concatenate([centres - distances[:, :2], centres + distances[:, 2:]], axis=1)[keep])
            keypoints.append((np.tile(centres, 5) + offsets).reshape(-1, 5, 2)[keep])
        scores = np.concatenate(scores).astype(np.float32)
        boxes = np.concatenate(boxes) / scale
        keypoints = np.concatenate(keypoints) / scale
        order = scores.argsort()[::-1]
        keep = order[nms(boxes[order].astype(np.float32), scores[order])]
        boxes, scores, keypoints = boxes[keep], scores[keep], keypoints[keep]
        by_area = np.argsort(-(boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]), kind="stable")
        return Detections(boxes[by_area].astype(np.float32), scores[by_area], keypoints[by_area].astype(np.float32))


class Landmark106:
    """InsightFace ``2d106det.onnx``: 106 points from a 192² crop around a detection box."""

    def __init__(self, path: Path, device: str = "cpu"):
        self.session = open_session(path, device, "landmark106", "106-point landmark", FaceModelError)
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, image: np.ndarray, box: np.ndarray) -> np.ndarray:
        """image RGB uint8, box ``[4]`` → landmarks ``[106, 2]`` in image pixels."""
        w, h = box[2] - box[0], box[3] - box[1]
        cx, cy = (box[2] + box[0]) / 2, (box[3] + box[1]) / 2
        s = LANDMARK106_SIZE / (max(w, h) * 1.5)
        half = LANDMARK106_SIZE / 2
        to_crop = np.array([[s, 0, half - s * cx], [0, s, half - s * cy], [0, 0, 1]], dtype=np.float64)
        crop = warp(image, to_crop, LANDMARK106_SIZE)
        blob = cv2.dnn.blobFromImage(crop, 1.0, (LANDMARK106_SIZE, LANDMARK106_SIZE), (0.0,) * 3, swapRB=True)
        pred = self.session.run(None, {self.input_name: blob})[0][0].reshape(-1, 2)[-106:]
        pred = (pred + 1) * (LANDMARK106_SIZE // 2)
        return transform_points(pred, invert(to_crop)).astype(np.float32)


class Landmark203:
    """``landmark203.onnx``: 203 points from a 224² crop (RGB in [0, 1]); the third output holds them."""

    def __init__(self, path: Path, device: str = "cpu"):
        self.session = open_session(path, device, "landmark203", "203-point landmark", FaceModelError)

    def __call__(self, image: np.ndarray, guide_points: np.ndarray) -> np.ndarray:
        """image RGB uint8; guide_points: 106 or 203 landmarks locating the face → ``[203, 2]`` image pixels."""
        to_crop = crop_transform(guide_points, LANDMARK_CROP_SIZE, LANDMARK_CROP_SCALE, LANDMARK_CROP_VY_RATIO)
        crop = warp(image, to_crop, LANDMARK_CROP_SIZE)
        net_input = (crop.astype(np.float32) / 255.0).transpose(2, 0, 1)[None]
        points = self.session.run(None, {"input": net_input})[2][0].reshape(-1, 2) * LANDMARK_CROP_SIZE
        return transform_points(points, invert(to_crop)).astype(np.float32)


class MediaPipeFaceMesh:
    """MediaPipe's FaceLandmarker (``face_landmarker.task``): 478 normalised points of one face."""

    def __init__(self, path: Path):
        try:
            import mediapipe as mp
            from mediapipe.tasks.python import BaseOptions, vision
        except ImportError as exc:
            raise FaceModelError("the eye conditions need MediaPipe: pip install mediapipe") from exc
        self._mp = mp
        options = vision.FaceLandmarkerOptions(base_options=BaseOptions(model_asset_path=str(path)), num_faces=1)
        try:
            self.landmarker = vision.FaceLandmarker.create_from_options(options)
        except Exception as exc:  # MediaPipe raises RuntimeError/ValueError variants for bad bundles
            raise FaceModelError(f"cannot load the MediaPipe face landmarker {path}: {exc}") from exc

    def __call__(self, crop: np.ndarray) -> np.ndarray | None:
        """crop: RGB uint8 ``[512, 512, 3]`` → ``[478, 3]`` (x/W, y/H, z) or None when no face is seen."""
        result = self.landmarker.detect(self._mp.Image(image_format=self._mp.ImageFormat.SRGB, data=crop.copy()))
        if not result.face_landmarks:
            return None
        return np.array([[p.x, p.y, p.z] for p in result.face_landmarks[0]], dtype=np.float32)


class TemplateFaceMesh:
    """Stand-in for MediaPipe in fake releases (a real ``.task`` bundle cannot be faked): returns a fixed
    478-point template stored in the fake ``face_landmarker.task``."""

    def __init__(self, template: np.ndarray):
        self.template = template.astype(np.float32)

    def __call__(self, crop: np.ndarray) -> np.ndarray | None:
        """The template, or None for a crop with nothing in it (all but black), like the fake detector."""
        return self.template.copy() if crop.mean() >= 8 else None


def load_face_mesh(path: Path):
    """MediaPipe on a real ``face_landmarker.task``; the template stand-in on a fake release's placeholder."""
    if not path.is_file():
        raise FaceModelError(
            f"face landmarker not found: {path}. Get face_landmarker.task from the Hugging Face repo {HF_REPO} "
            f"(folder ditto_pytorch/aux_models/)."
        )
    data = path.read_bytes()
    if data.startswith(FAKE_FACE_LANDMARKER_MAGIC):
        return TemplateFaceMesh(np.load(io.BytesIO(data[len(FAKE_FACE_LANDMARKER_MAGIC) :]), allow_pickle=False))
    return MediaPipeFaceMesh(path)


@dataclass(frozen=True)
class FaceModels:
    detector: FaceDetector
    landmark106: Landmark106
    landmark203: Landmark203
    face_mesh: object  # MediaPipeFaceMesh or TemplateFaceMesh: crop → [478, 3] or None


def load_face_models(root: str | Path, device: str = "cpu") -> FaceModels:
    """The four face models of the release under ``root``."""
    return FaceModels(
        detector=FaceDetector(release_path(root, "face_detector"), device),
        landmark106=Landmark106(release_path(root, "landmark106"), device),
        landmark203=Landmark203(release_path(root, "landmark203"), device),
        face_mesh=load_face_mesh(release_path(root, "face_landmarker")),
    )
