"""Ditto's networks under ComfyUI's model management: on the GPU while a Ditto node runs, offloaded when another
model needs the memory, freed by "Unload models" / "Free model and node cache", like ComfyUI's own models."""

from __future__ import annotations

from dataclasses import dataclass

import comfy.model_patcher
from comfy import model_management

from ..ditto_core.pipeline import DittoPipeline


@dataclass(eq=False)
class ManagedPipeline(DittoPipeline):
    """A DittoPipeline whose torch networks ComfyUI's model management loads and offloads (the ONNX face and
    audio models are onnxruntime's and stay where they were created)."""

    patcher: object = None

    @classmethod
    def manage(cls, pipeline: DittoPipeline, load_device) -> "ManagedPipeline":
        patcher = comfy.model_patcher.ModelPatcher(pipeline.networks.as_module(), load_device=load_device,
                                                   offload_device=model_management.unet_offload_device())
        return cls(**{name: getattr(pipeline, name) for name in pipeline.__dataclass_fields__}, patcher=patcher)

    def on_device(self) -> "ManagedPipeline":
        """Ask ComfyUI to put the networks on the load device now (it frees other models' memory first if needed)."""
        model_management.load_models_gpu([self.patcher])
        return self


def on_device(models):
    """The DITTO_MODELS value ready to compute: loaded to the GPU through ComfyUI when it is managed."""
    return models.on_device() if isinstance(models, ManagedPipeline) else models
