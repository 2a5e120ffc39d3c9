"""Ditto's networks under ComfyUI's model management: on the GPU while a Ditto node runs, offloaded when another
model needs the memory, freed by "Unload models" / "Free model and node cache", like ComfyUI's own models."""

from __future__ import annotations

import threading
import weakref
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import comfy.model_patcher
from comfy import model_management

from ..ditto_core.pipeline import DittoPipeline


class HeldModelPatcher(comfy.model_patcher.ModelPatcher):
    """A ModelPatcher that ComfyUI's model management cannot offload while a live session holds it (the session's
    render thread computes with these weights at any moment). An offload asked for meanwhile (a graph that needs
    the memory, "Unload models") is put off until the last session ends; ComfyUI loading it again in between (a
    Ditto node of a graph: ``load``, or ``partially_load`` when the weights are still on the device) cancels it."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._holds = 0
        self._pending_detach: tuple | None = None  # the arguments of the detach put off
        self._hold_lock = threading.RLock()

    @contextmanager
    def hold(self):
        with self._hold_lock:
            self._holds += 1
        try:
            yield self
        finally:
            with self._hold_lock:
                self._holds -= 1
                if self._holds == 0 and self._pending_detach is not None:
                    args, kwargs = self._pending_detach
                    self._pending_detach = None
                    super().detach(*args, **kwargs)

    def load(self, *args, **kwargs):
        with self._hold_lock:
            self._pending_detach = None
            return super().load(*args, **kwargs)

    def partially_load(self, *args, **kwargs):
        with self._hold_lock:
            self._pending_detach = None
            return super().partially_load(*args, **kwargs)

    def partially_unload(self, *args, **kwargs):
        with self._hold_lock:
            return 0 if self._holds else super().partially_unload(*args, **kwargs)

    def detach(self, *args, **kwargs):
        with self._hold_lock:
            if self._holds:
                self._pending_detach = (args, kwargs)
                return self.model
            return super().detach(*args, **kwargs)


@dataclass(eq=False)
class ManagedPipeline(DittoPipeline):
    """A DittoPipeline whose torch networks ComfyUI's model management loads and offloads (the ONNX face and
    audio models are onnxruntime's and stay where they were created)."""

    patcher: object = None

    @classmethod
    def manage(cls, pipeline: DittoPipeline, load_device) -> "ManagedPipeline":
        patcher = HeldModelPatcher(pipeline.networks.as_module(), load_device=load_device,
                                   offload_device=model_management.unet_offload_device())
        return cls(**{name: getattr(pipeline, name) for name in pipeline.__dataclass_fields__}, patcher=patcher)

    def on_device(self) -> "ManagedPipeline":
        """Ask ComfyUI to put the networks on the load device now (it frees other models' memory first if needed)."""
        model_management.load_models_gpu([self.patcher])
        return self

    @contextmanager
    def held(self):
        """On the device and kept there until the block ends (a live session): see HeldModelPatcher."""
        with self.patcher.hold():
            yield self.on_device()


def on_device(models):
    """The DITTO_MODELS value ready to compute: loaded to the GPU through ComfyUI when it is managed."""
    return models.on_device() if isinstance(models, ManagedPipeline) else models


def held(models):
    """A context that gives the DITTO_MODELS value ready to compute and keeps it so while it lasts."""
    return models.held() if isinstance(models, ManagedPipeline) else nullcontext(models)


_shared: weakref.WeakValueDictionary = weakref.WeakValueDictionary()


def _release_state(folder: Path) -> tuple:
    """What identifies the release's files as they are now (names, sizes, modification times)."""
    return tuple(sorted((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in folder.parent.rglob("*")
                        if p.is_file()))


def shared_pipeline(folder: Path, load_device, code_defaults: bool = False) -> ManagedPipeline:
    """The release at ``folder`` as one ManagedPipeline for ``load_device``, shared by the graph's Load Ditto
    Models nodes and the live endpoint while either holds it: ComfyUI then manages one copy (on the device while
    something computes, offloaded when another model needs the memory). Loaded onto ComfyUI's offload device."""
    key = (str(Path(folder).resolve()), str(load_device), code_defaults, _release_state(Path(folder).resolve()))
    pipeline = _shared.get(key)
    if pipeline is None:
        loaded = DittoPipeline.load(folder, str(model_management.unet_offload_device()), code_defaults=code_defaults)
        pipeline = _shared[key] = ManagedPipeline.manage(loaded, load_device)
    return pipeline
