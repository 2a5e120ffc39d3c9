"""ComfyUI node classes (thin: every computation lives in ditto_core)."""

from .audio import DittoEncodeAudio
from .batch import DittoLoadPortraits, DittoLoadSpeechClips, DittoTalkingHeadBatch
from .common import with_checked_inputs
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

NODE_DISPLAY_NAME_MAPPINGS = {
    "DittoLoadModels": "Load Ditto Models",
    "DittoRegisterPortrait": "Register Portrait (Ditto)",
    "DittoEncodeAudio": "Encode Audio (Ditto)",
    "DittoSampleMotion": "Sample Motion (Ditto)",
    "DittoEditPose": "Edit Pose (Ditto)",
    "DittoEditExpression": "Edit Expression (Ditto)",
    "DittoSmoothMotion": "Smooth Motion (Ditto)",
    "DittoRelaxOnSilence": "Relax on Silence (Ditto)",
    "DittoFadeMotion": "Fade Motion (Ditto)",
    "DittoMotionFromVideo": "Motion from Video (Ditto)",
    "DittoBlendMotion": "Blend Motion (Ditto)",
    "DittoConcatMotion": "Concat Motion (Ditto)",
    "DittoSliceMotion": "Slice Motion (Ditto)",
    "DittoSaveMotion": "Save Motion (Ditto)",
    "DittoLoadMotion": "Load Motion (Ditto)",
    "DittoRender": "Render (Ditto)",
    "DittoRenderVideo": "Render Video (Ditto)",
    "DittoTalkingHeadVideo": "Talking Head Video, streamed (Ditto)",
    "DittoPasteBack": "Paste Back (Ditto)",
    "DittoLoadPortraits": "Load Portraits from Folder (Ditto)",
    "DittoLoadSpeechClips": "Load Speech Clips from Folder (Ditto)",
    "DittoTalkingHeadBatch": "Talking Head Batch (Ditto)",
}

NODE_CLASSES = (
    DittoLoadModels,
    DittoRegisterPortrait,
    DittoEncodeAudio,
    DittoSampleMotion,
    DittoEditPose,
    DittoEditExpression,
    DittoSmoothMotion,
    DittoRelaxOnSilence,
    DittoFadeMotion,
    DittoMotionFromVideo,
    DittoBlendMotion,
    DittoConcatMotion,
    DittoSliceMotion,
    DittoSaveMotion,
    DittoLoadMotion,
    DittoRender,
    DittoRenderVideo,
    DittoTalkingHeadVideo,
    DittoPasteBack,
    DittoLoadPortraits,
    DittoLoadSpeechClips,
    DittoTalkingHeadBatch,
)
NODE_CLASS_MAPPINGS = {cls.__name__: with_checked_inputs(cls) for cls in NODE_CLASSES}

try:  # the example workflows' sample inputs, into ComfyUI's input folder (never replacing a file)
    from .samples import stage_sample_inputs

    stage_sample_inputs()
except Exception as _error:  # a read-only input folder: the nodes still load, the templates need their inputs
    import logging

    logging.getLogger("ComfyUI-Ditto").warning("ComfyUI-Ditto: sample inputs not staged: %s", _error)

try:  # the live endpoint and page on ComfyUI's own server (nothing is done without one)
    from .live import register_live_routes

    register_live_routes()
except Exception as _error:  # the nodes still load; only the live page is missing
    import logging

    logging.getLogger("ditto.live").warning("Ditto live is not available: %s", _error)
