"""Opening the release's ONNX auxiliary models with onnxruntime, with one clear error for a missing or damaged
file."""

from __future__ import annotations

from pathlib import Path

from .release import AUX_FILES, HF_REPO


def onnx_providers(device: str) -> list[str]:
    """CUDA then CPU for a CUDA device (when this onnxruntime has CUDA), else CPU."""
    import onnxruntime

    available = onnxruntime.get_available_providers()
    wanted = ["CUDAExecutionProvider", "CPUExecutionProvider"] if device.startswith("cuda") else ["CPUExecutionProvider"]
    return [p for p in wanted if p in available] or ["CPUExecutionProvider"]


def open_session(path: str | Path, device: str, name: str, role: str, error: type[Exception], threads: int = 0):
    """An InferenceSession for release aux file ``name`` (a key of AUX_FILES) stored at ``path``.

    A missing file raises ``error`` saying which release file belongs there; an unreadable one says it is
    damaged or incomplete.
    """
    import onnxruntime

    path = Path(path)
    if not path.is_file():
        raise error(
            f"{role} model not found: {path}. It is the release file {AUX_FILES[name].path} from the Hugging Face "
            f"repo {HF_REPO}."
        )
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    try:
        return onnxruntime.InferenceSession(str(path), options, providers=onnx_providers(device))
    except Exception as exc:  # onnxruntime raises its own types for damaged files
        raise error(f"cannot load the {role} model {path} (damaged or incomplete?): {exc}") from exc
