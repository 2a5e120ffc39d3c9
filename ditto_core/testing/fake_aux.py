"""Stand-ins for the release's ONNX auxiliary models, with the release's input/output names and shapes."""

from __future__ import annotations

from pathlib import Path

import numpy as np

HUBERT_KERNEL = 400  # HuBERT's conv front end: receptive field 400 samples, hop 320
HUBERT_HOP = 320


def write_fake_hubert_onnx(path: str | Path, kernel: np.ndarray | None = None, seed: int = 0) -> Path:
    """A one-layer "HuBERT": ``input_values [1, n]`` → ``encoding_out [frames, 1024]`` with
    frames = (n − 400)/320 + 1 (20 for a 6,480-sample window), row r = kernel · samples[320r : 320r + 400].

    kernel: ``[1024, 400]``; random (seeded) when omitted.
    """
    import onnx
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
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path
