"""HuBERT encoders: 6,480-sample windows → 20 rows of 1024-d features at 50 Hz.

Two back-ends with one interface, ``encoder(windows [W, 6480] float32) → rows [W, 20, 1024] float32``:

- ``OnnxHubertEncoder`` runs the release's ``hubert_streaming_fix_kv.onnx`` with onnxruntime, fed exactly as the
  reference feeds it (one window of raw samples at a time, input ``input_values`` of shape [1, 6480]).
- ``TorchHubertEncoder`` runs ``transformers``' HubertModel of ``facebook/hubert-large-ls960-ft`` on raw samples
  and returns its ``last_hidden_state`` (or another layer's hidden state). It equals the ONNX path when the ONNX
  graph is a plain export of that model; whether the release's "fix_kv" graph adds a fixed key/value context is
  not settled (see README), so the ONNX back-end is the default and the reference.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..onnx_sessions import open_session

HUBERT_REPO = "facebook/hubert-large-ls960-ft"
HUBERT_REVISION = "ece5fabbf034c1073acae96d5401b25be96709d8"  # the commit Ditto's features were made with
ONNX_INPUT = "input_values"


class EncoderError(ValueError):
    """An audio encoder that cannot be loaded or run."""


class OnnxHubertEncoder:
    def __init__(self, path: str | Path, device: str = "cpu", threads: int = 0):
        self.session = open_session(path, device, "hubert", "HuBERT ONNX", EncoderError, threads)
        names = [i.name for i in self.session.get_inputs()]
        if names != [ONNX_INPUT]:
            raise EncoderError(f"{path} takes inputs {names}; the release's HuBERT takes one input {ONNX_INPUT!r}")

    def __call__(self, windows: np.ndarray) -> np.ndarray:
        rows = [self.session.run(None, {ONNX_INPUT: w[None].astype(np.float32)})[0] for w in windows]
        return np.stack([r.reshape(-1, r.shape[-1]) for r in rows])


class TorchHubertEncoder:
    """``layer``: -1 for the last hidden state, or the index into ``hidden_states`` (0 = after the feature
    projection)."""

    def __init__(self, model_dir: str | Path, device: str = "cpu", layer: int = -1, dtype=None):
        import torch
        from transformers import HubertModel

        model_dir = Path(model_dir)
        if not (model_dir / "config.json").is_file():
            raise EncoderError(
                f"no HuBERT model in {model_dir} (expected config.json and weights of {HUBERT_REPO}); "
                f"download it with download_hubert() or hf download {HUBERT_REPO} "
                f"--revision {HUBERT_REVISION} --local-dir {model_dir}"
            )
        self.torch = torch
        self.device = torch.device(device)
        self.model = HubertModel.from_pretrained(str(model_dir), dtype=dtype or torch.float32).eval().to(self.device)
        self.layer = layer

    def __call__(self, windows: np.ndarray) -> np.ndarray:
        torch = self.torch
        inputs = torch.from_numpy(np.ascontiguousarray(windows, dtype=np.float32)).to(self.device)
        with torch.inference_mode():
            out = self.model(inputs.to(self.model.dtype), output_hidden_states=self.layer != -1)
            hidden = out.last_hidden_state if self.layer == -1 else out.hidden_states[self.layer]
        return hidden.float().cpu().numpy()


def download_hubert(local_dir: str | Path) -> Path:
    """Opt-in download of HuBERT-large (the pinned revision) into ``local_dir``; returns it."""
    from huggingface_hub import snapshot_download

    local_dir = Path(local_dir)
    snapshot_download(
        HUBERT_REPO,
        revision=HUBERT_REVISION,
        local_dir=str(local_dir),
        allow_patterns=["config.json", "*.safetensors", "pytorch_model.bin", "preprocessor_config.json"],
    )
    return local_dir


BACKENDS = ("onnx", "hubert")


def load_encoder(backend: str, release_root: str | Path | None = None, hubert_dir: str | Path | None = None,
                 device: str = "cpu"):
    """The encoder for ``backend``: ``onnx`` (the release's HuBERT ONNX under ``release_root``) or ``hubert``
    (transformers' HubertModel from ``hubert_dir``)."""
    if backend == "onnx":
        if release_root is None:
            raise EncoderError("the onnx back-end needs the release folder (models)")
        from ..release import release_path

        return OnnxHubertEncoder(release_path(release_root, "hubert"), device=device)
    if backend == "hubert":
        if hubert_dir is None:
            raise EncoderError(f"the hubert back-end needs a local folder holding {HUBERT_REPO}")
        return TorchHubertEncoder(hubert_dir, device=device)
    raise EncoderError(f"unknown audio back-end {backend!r}; choose one of {', '.join(BACKENDS)}")
