"""Stand-ins for the release's ONNX auxiliary models, with the release's input/output names and shapes."""

from __future__ import annotations

from pathlib import Path

import numpy as np

HUBERT_KERNEL = 400  # HuBERT's conv front end: receptive field 400 samples, hop 320
HUBERT_HOP = 320


def _save(model, path: Path) -> Path:
    import onnx

    model.ir_version = 8
    onnx.checker.check_model(model)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def write_fake_hubert_onnx(path: str | Path, kernel: np.ndarray | None = None, seed: int = 0) -> Path:
    """A one-layer "HuBERT": ``input_values [1, n]`` → ``encoding_out [frames, 1024]`` with
    frames = (n − 400)/320 + 1 (20 for a 6,480-sample window), row r = kernel · samples[320r : 320r + 400].

    kernel: ``[1024, 400]``; random (seeded) when omitted.
    """
    from onnx import TensorProto, helper, numpy_helper

    if kernel is None:
        kernel = np.random.default_rng(seed).standard_normal((1024, HUBERT_KERNEL)).astype(np.float32) / 20
    kernel = np.asarray(kernel, dtype=np.float32)
    weight = numpy_helper.from_array(kernel[:, None, :], "conv_weight")
    axes_1 = numpy_helper.from_array(np.array([1], dtype=np.int64), "axes_1")
    axes_0 = numpy_helper.from_array(np.array([0], dtype=np.int64), "axes_0")
    nodes = [
        helper.make_node("Unsqueeze", ["input_values", "axes_1"], ["x3"]),
        helper.make_node("Conv", ["x3", "conv_weight"], ["conv"], kernel_shape=[HUBERT_KERNEL], strides=[HUBERT_HOP]),
        helper.make_node("Squeeze", ["conv", "axes_0"], ["channels_first"]),
        helper.make_node("Transpose", ["channels_first"], ["encoding_out"], perm=[1, 0]),
    ]
    graph = helper.make_graph(
        nodes,
        "fake_hubert_streaming_fix_kv",
        [helper.make_tensor_value_info("input_values", TensorProto.FLOAT, [1, "num_samples"])],
        [helper.make_tensor_value_info("encoding_out", TensorProto.FLOAT, ["num_rows", kernel.shape[0]])],
        initializer=[weight, axes_1, axes_0],
    )
    return _save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def _constant_output_graph(input_name: str, input_shape: list, outputs: dict[str, np.ndarray], name: str):
    """A graph whose outputs are fixed arrays plus 0 × mean(input) (so the input is consumed)."""
    from onnx import TensorProto, helper, numpy_helper

    nodes = [helper.make_node("ReduceMean", [input_name], ["mean"], keepdims=0), helper.make_node("Mul", ["mean", "zero"], ["nothing"])]
    initializers = [numpy_helper.from_array(np.array(0, np.float32), "zero")]
    value_infos = []
    for out_name, value in outputs.items():
        initializers.append(numpy_helper.from_array(value.astype(np.float32), f"{out_name}_value"))
        nodes.append(helper.make_node("Add", [f"{out_name}_value", "nothing"], [out_name]))
        value_infos.append(helper.make_tensor_value_info(out_name, TensorProto.FLOAT, list(value.shape)))
    graph = helper.make_graph(
        nodes, name, [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, input_shape)], value_infos,
        initializer=initializers,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


DEFAULT_FACES = ((256.0, 240.0, 220.0),)  # (centre x, centre y, box side) in the 512² detector canvas


def write_fake_face_detector(path: str | Path, faces=DEFAULT_FACES) -> Path:
    """A stand-in for SCRFD ``det_10g.onnx`` (input ``input.1`` [1, 3, 512, 512], 9 outputs: scores, boxes and
    keypoints for strides 8, 16, 32) that reports the given square ``faces`` (in detector-canvas pixels) on the
    stride-32 level, with confidence 0.9 scaled down for dark images, so an all-black image has no face."""
    from onnx import TensorProto, helper, numpy_helper

    levels = {}
    for stride in (8, 16, 32):
        n = 2 * (512 // stride) ** 2
        levels[stride] = [np.zeros((n, 1), np.float32), np.ones((n, 4), np.float32), np.zeros((n, 10), np.float32)]
    for cx, cy, side in faces:
        col, row = int(cx // 32), int(cy // 32)
        anchor = (row * 16 + col) * 2
        ax, ay = col * 32.0, row * 32.0
        half = side / 2
        scores, boxes, kps = levels[32]
        scores[anchor] = 0.9
        boxes[anchor] = [(ax - (cx - half)) / 32, (ay - (cy - half)) / 32, (cx + half - ax) / 32, (cy + half - ay) / 32]
        points = [(cx - 0.2 * side, cy - 0.1 * side), (cx + 0.2 * side, cy - 0.1 * side), (cx, cy + 0.05 * side),
                  (cx - 0.15 * side, cy + 0.25 * side), (cx + 0.15 * side, cy + 0.25 * side)]
        kps[anchor] = np.array([((px - ax) / 32, (py - ay) / 32) for px, py in points]).reshape(-1)

    # brightness = clip((mean(blob) + 1) · 2, 0, 1): 1 for ordinary photos, ≈0 for a black image
    nodes = [
        helper.make_node("ReduceMean", ["input.1"], ["mean"], keepdims=0),
        helper.make_node("Add", ["mean", "one"], ["shifted"]),
        helper.make_node("Mul", ["shifted", "two"], ["scaled"]),
        helper.make_node("Clip", ["scaled", "zero", "one"], ["brightness"]),
        helper.make_node("Mul", ["brightness", "zero"], ["nothing"]),
    ]
    initializers = [numpy_helper.from_array(np.array(v, np.float32), name) for name, v in (("one", 1), ("two", 2), ("zero", 0))]
    outputs = []
    for kind, index in (("scores", 0), ("boxes", 1), ("kps", 2)):
        for level, stride in enumerate((8, 16, 32), start=1):
            value = levels[stride][index]
            out = f"{kind}{level}"
            initializers.append(numpy_helper.from_array(value, f"{out}_value"))
            nodes.append(helper.make_node("Mul" if kind == "scores" else "Add",
                                          [f"{out}_value", "brightness" if kind == "scores" else "nothing"], [out]))
            outputs.append(helper.make_tensor_value_info(out, TensorProto.FLOAT, list(value.shape)))
    graph = helper.make_graph(
        nodes, "fake_scrfd", [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [1, 3, 512, 512])],
        outputs, initializer=initializers,
    )
    return _save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def _ring(centre, radius, count, start=0.0):
    angles = start + np.linspace(0, 2 * np.pi, count, endpoint=False)
    return np.stack([centre[0] + radius[0] * np.cos(angles), centre[1] + radius[1] * np.sin(angles)], -1)


def landmark106_template() -> np.ndarray:
    """106 points in the landmark crop's [-1, 1] frame: a face whose eye groups (33, 35, 39, 40 and 87, 89, 93,
    94) and lip points (52, 61) sit where a frontal face's do."""
    points = _ring((0, 0.05), (0.55, 0.65), 106)
    points[[33, 35, 39, 40]] = _ring((-0.25, -0.15), (0.08, 0.04), 4)
    points[[87, 89, 93, 94]] = _ring((0.25, -0.15), (0.08, 0.04), 4)
    points[[52, 61]] = [(-0.15, 0.35), (0.15, 0.35)]
    return points.astype(np.float32)


def landmark203_template() -> np.ndarray:
    """203 points in the 224² crop's [0, 1] frame: eye contours 0–23 and 24–47, lips from 48, the rest an
    outline."""
    points = _ring((0.5, 0.55), (0.3, 0.36), 203)
    points[0:24] = _ring((0.38, 0.47), (0.06, 0.025), 24, start=np.pi)
    points[24:48] = _ring((0.62, 0.47), (0.06, 0.025), 24)
    points[48:96] = _ring((0.5, 0.7), (0.1, 0.04), 48, start=np.pi)
    return points.astype(np.float32)


def write_fake_landmark106(path: str | Path) -> Path:
    """Stand-in for ``2d106det.onnx``: input ``data`` [1, 3, 192, 192] → ``fc1`` [1, 212] (a fixed face)."""
    return _save(
        _constant_output_graph("data", [1, 3, 192, 192], {"fc1": landmark106_template().reshape(1, -1)}, "fake_106"),
        path,
    )


def write_fake_landmark203(path: str | Path) -> Path:
    """Stand-in for ``landmark203.onnx``: input ``input`` [1, 3, 224, 224] → three outputs, the third [1, 406]
    holding 203 (x, y) pairs in [0, 1] (a fixed face)."""
    outputs = {
        "output0": np.zeros((1, 214), np.float32),
        "output1": np.zeros((1, 1), np.float32),
        "landmarks": landmark203_template().reshape(1, -1),
    }
    return _save(_constant_output_graph("input", [1, 3, 224, 224], outputs, "fake_203"), path)


def face_mesh_template() -> np.ndarray:
    """478 normalised face-mesh points ``[478, 3]`` with open eyes looking ahead."""
    rng = np.random.default_rng(478)
    mesh = np.concatenate([_ring((0.5, 0.55), (0.3, 0.38), 478), rng.uniform(-0.05, 0.05, (478, 1))], 1)
    for outer, inner, lids, iris, cx in (
        (33, 133, ((145, 159), (144, 160), (153, 158)), 468, 0.38),
        (263, 362, ((374, 386), (373, 387), (380, 385)), 473, 0.62),
    ):
        side = -1 if cx < 0.5 else 1
        mesh[outer] = (cx + side * 0.06, 0.47, 0.0)
        mesh[inner] = (cx - side * 0.06, 0.47, 0.0)
        for j, (lower, upper) in enumerate(lids):
            x = cx + side * 0.03 * (j - 1)
            mesh[lower] = (x, 0.485, 0.0)
            mesh[upper] = (x, 0.455, 0.0)
        mesh[iris] = (cx + 0.005, 0.47, -0.01)
    return mesh.astype(np.float32)


def write_fake_face_landmarker(path: str | Path) -> Path:
    """Placeholder for ``face_landmarker.task`` (a MediaPipe bundle of TFLite models, which cannot be faked): the
    loader recognises it by its header and answers every crop with ``face_mesh_template()``."""
    import io

    from ..portrait.face_models import FAKE_FACE_LANDMARKER_MAGIC

    buffer = io.BytesIO()
    np.save(buffer, face_mesh_template(), allow_pickle=False)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(FAKE_FACE_LANDMARKER_MAGIC + buffer.getvalue())
    return path


def export_hubert_onnx(model, path: str | Path) -> Path:
    """Export a transformers ``HubertModel`` as the release's encoder is shaped: ``input_values [1, n]`` →
    ``encoding_out [rows, hidden]`` (its last hidden state)."""
    import warnings

    import torch

    class LastHidden(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, input_values):
            return self.inner(input_values).last_hidden_state[0]

    path = Path(path)
    with warnings.catch_warnings():  # the TorchScript exporter and tracer announce their deprecation
        warnings.simplefilter("ignore")
        torch.onnx.export(LastHidden(model), (torch.zeros(1, 6480),), str(path), input_names=["input_values"],
                          output_names=["encoding_out"], dynamic_axes={"input_values": {1: "n"}}, dynamo=False)
    return path
