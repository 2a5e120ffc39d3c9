"""The pack's own socket types, declared once. Each carries one ditto_core value between nodes:

* ``DITTO_MODELS`` (:class:`DittoModels`): the loaded release, a ``ManagedPipeline`` (networks under ComfyUI's model
  management, face and audio models, the release's configuration).
* ``DITTO_PORTRAIT`` (:class:`DittoPortrait`): a registered ``Portrait`` (crop, keypoints, eye state, appearance; a
  video source's frames and timeline).
* ``DITTO_AUDIO_FEATURES`` (:class:`DittoAudioFeatures`): ``AudioFeatures``, 25-fps HuBERT features of the speech.
* ``DITTO_MOTION`` (:class:`DittoMotion`): an editable ``Motion`` (per-frame keypoint motion at its fps).
* ``DITTO_FACE_PLACEMENT`` (:class:`DittoFacePlacement`): a ``FacePlacement``, where each rendered face goes in its
  frame (for Paste Back).
"""

from comfy_api.latest import io

DittoModels = io.Custom("DITTO_MODELS")
DittoPortrait = io.Custom("DITTO_PORTRAIT")
DittoAudioFeatures = io.Custom("DITTO_AUDIO_FEATURES")
DittoMotion = io.Custom("DITTO_MOTION")
DittoFacePlacement = io.Custom("DITTO_FACE_PLACEMENT")
