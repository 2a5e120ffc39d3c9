"""Portrait registration and paste-back."""

from .face_models import FaceModelError, FaceModels, NoFaceError, load_face_models
from .images import PortraitInputError
from .paste import FacePlacement, PasteBackError, blend_mask, paste_faces
from .registration import Portrait, RegistrationOptions, mirror_index, register_portrait

__all__ = [
    "FaceModelError",
    "FacePlacement",
    "FaceModels",
    "NoFaceError",
    "Portrait",
    "PasteBackError",
    "PortraitInputError",
    "RegistrationOptions",
    "blend_mask",
    "load_face_models",
    "mirror_index",
    "paste_faces",
    "register_portrait",
]
