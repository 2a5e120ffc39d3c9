"""The pack as a ComfyUI V3 extension: its node classes (thin: every computation lives in ditto_core), and on_load,
which stages the example workflows' sample inputs and adds the live routes."""

import logging

from comfy_api.latest import ComfyExtension, io

from .audio import DittoEncodeAudio
from .batch import DittoLoadPortraits, DittoLoadSpeechClips, DittoTalkingHeadBatch
from .common import with_checked_inputs
from .face import DittoEditFace, DittoMotionFromImage, DittoPreviewFrame
from .models import DittoLoadModels
from .motion import (
    DittoBlendMotion,
    DittoConcatMotion,
    DittoEditExpression,
    DittoEditPose,
    DittoFadeMotion,
    DittoLoadMotion,
    DittoMotionFromVideo,
    DittoRelaxOnSilence,
    DittoSampleMotion,
    DittoSaveMotion,
    DittoSliceMotion,
    DittoSmoothMotion,
)
from .paste import DittoPasteBack
from .portrait import DittoRegisterPortrait
from .render import DittoRender, DittoRenderVideo, DittoTalkingHeadVideo

log = logging.getLogger("ComfyUI-Ditto")

NODE_CLASSES = tuple(map(with_checked_inputs, (
    DittoLoadModels,
    DittoRegisterPortrait,
    DittoEncodeAudio,
    DittoSampleMotion,
    DittoEditPose,
    DittoEditExpression,
    DittoSmoothMotion,
    DittoRelaxOnSilence,
    DittoFadeMotion,
    DittoEditFace,
    DittoMotionFromVideo,
    DittoMotionFromImage,
    DittoBlendMotion,
    DittoConcatMotion,
    DittoSliceMotion,
    DittoSaveMotion,
    DittoLoadMotion,
    DittoRender,
    DittoRenderVideo,
    DittoTalkingHeadVideo,
    DittoPreviewFrame,
    DittoPasteBack,
    DittoLoadPortraits,
    DittoLoadSpeechClips,
    DittoTalkingHeadBatch,
)))


def stage_samples() -> None:
    """The example workflows' sample inputs, into ComfyUI's input folder (never replacing a file)."""
    from .samples import stage_sample_inputs

    try:
        stage_sample_inputs()
    except OSError as error:  # a read-only input folder: the nodes still load, the templates need their inputs
        log.warning("ComfyUI-Ditto: sample inputs not staged: %s", error)


def add_live_routes() -> None:
    """The live endpoint and page on ComfyUI's own server (nothing is done without one)."""
    from .live import register_live_routes

    try:
        register_live_routes()
    except Exception as error:  # the nodes still load; only the live page is missing
        logging.getLogger("ditto.live").warning("Ditto live is not available: %s", error)


class DittoExtension(ComfyExtension):
    async def on_load(self) -> None:
        stage_samples()
        add_live_routes()

    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return list(NODE_CLASSES)


async def comfy_entrypoint() -> DittoExtension:
    return DittoExtension()
