"""Face crop geometry (LivePortrait's similarity crop), and the eye conditions from 478 face-mesh points."""

from __future__ import annotations

import math

import cv2
import numpy as np

CROP_SIZE = 512
CROP_SCALE = 2.3
CROP_VY_RATIO = -0.125
LANDMARK_CROP_SIZE = 224
LANDMARK_CROP_SCALE = 1.5
LANDMARK_CROP_VY_RATIO = -0.1


def eye_lip_anchors(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eye centre and lip centre of a 106- or 203-point landmark set ``[N, 2]``."""
    if len(points) == 203:
        eyes = (points[[0, 6, 12, 18]].mean(0) + points[[24, 30, 36, 42]].mean(0)) / 2
        lips = (points[48] + points[66]) / 2
    elif len(points) == 106:
        eyes = (points[[33, 35, 40, 39]].mean(0) + points[[87, 89, 94, 93]].mean(0)) / 2
        lips = (points[52] + points[61]) / 2
    else:
        raise ValueError(f"expected 106 or 203 landmarks, got {len(points)}")
    return eyes, lips


def crop_transform(
    points: np.ndarray, dsize: int, scale: float, vy_ratio: float, rotate: bool = True, vx_ratio: float = 0.0
) -> np.ndarray:
    """Image → crop similarity ``[3, 3]`` float32 framing the face given by ``points`` ``[N, 2]``.

    The crop's y axis runs from the eye centre to the lip centre (when ``rotate``); its side is ``scale`` times the
    landmarks' extent in that frame, and its centre moves ``vx_ratio`` sides along x and ``vy_ratio`` sides along y
    (negative: toward the forehead).
    """
    points = points.astype(np.float32)
    eyes, lips = eye_lip_anchors(points)
    u_y = lips - eyes
    length = np.linalg.norm(u_y)
    u_y = np.array([0, 1], dtype=np.float32) if length <= 1e-3 else u_y / length
    u_x = np.array([u_y[1], -u_y[0]], dtype=np.float32)
    centre0 = points.mean(axis=0)
    rotated = (points - centre0) @ np.stack([u_x, u_y]).T
    low, high = rotated.min(axis=0), rotated.max(axis=0)
    mid = (low + high) / 2
    side = float(max(high - low)) * scale
    centre = centre0 + u_x * mid[0] + u_y * mid[1] + u_x * (vx_ratio * side) + u_y * (vy_ratio * side)
    k = dsize / side
    angle = math.acos(float(u_x[0])) * (-1 if u_x[1] < 0 else 1)
    cos, sin = (math.cos(angle), math.sin(angle)) if rotate else (1.0, 0.0)
    cx, cy = float(centre[0]), float(centre[1])
    return np.array(
        [
            [k * cos, k * sin, dsize / 2 - k * (cos * cx + sin * cy)],
            [-k * sin, k * cos, dsize / 2 - k * (-sin * cx + cos * cy)],
            [0, 0, 1],
        ],
        dtype=np.float32,
    )


def warp(image: np.ndarray, matrix: np.ndarray, size: tuple[int, int] | int) -> np.ndarray:
    """``cv2.warpAffine`` with the top two rows of ``matrix``, bilinear, black border. size: (w, h) or side."""
    dsize = (size, size) if isinstance(size, int) else size
    return cv2.warpAffine(image, matrix[:2].astype(np.float64), dsize, flags=cv2.INTER_LINEAR)


def transform_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """points ``[N, 2]`` mapped by the affine part of ``matrix``."""
    return points @ matrix[:2, :2].T + matrix[:2, 2]


def invert(matrix: np.ndarray) -> np.ndarray:
    """Inverse of a ``[3, 3]`` affine matrix."""
    return np.linalg.inv(matrix.astype(np.float64)).astype(np.float32)


# MediaPipe face-mesh indices: eye corners (outer, inner), three lid pairs, iris centre.
LEFT_EYE = dict(corners=(33, 133), lids=((145, 159), (144, 160), (153, 158)), iris=468)
RIGHT_EYE = dict(corners=(263, 362), lids=((374, 386), (373, 387), (380, 385)), iris=473)


def _eye_conditions(mesh: np.ndarray, eye: dict) -> tuple[float, np.ndarray]:
    outer, inner = mesh[eye["corners"][0]], mesh[eye["corners"][1]]
    width = np.linalg.norm(outer - inner)
    openness = sum(np.linalg.norm(mesh[a] - mesh[b]) for a, b in eye["lids"]) / (width + 1e-8)
    centre = (outer + inner) * 0.5
    axis = (outer - inner) / (width + 1e-8)
    to_iris = mesh[eye["iris"]] - centre
    distance = np.linalg.norm(to_iris)
    move = (to_iris / (distance + 1e-8) - axis) * distance
    return float(openness), move


def eye_conditions(mesh: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eye openness ``[2]`` (left, right) and eye-ball offsets ``[6]`` (Lx, Rx, Ly, Ry, Lz, Rz) from 478
    normalised face-mesh points ``[478, 3]``."""
    mesh = mesh.astype(np.float32)
    open_l, move_l = _eye_conditions(mesh, LEFT_EYE)
    open_r, move_r = _eye_conditions(mesh, RIGHT_EYE)
    return (
        np.array([open_l, open_r], dtype=np.float32),
        np.stack([move_l, move_r], axis=-1).reshape(6).astype(np.float32),
    )
