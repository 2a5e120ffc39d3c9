"""Many videos in one run: folder loaders whose lists keep the file names (Load Portraits, Load Speech Clips) and
Talking Head Batch, one video per portrait and clip with one progress bar and the models loaded once.

The batch node takes registered portraits (Register Portrait maps itself over an image list), not images: the
registration widgets stay on Register Portrait instead of being repeated here, ComfyUI caches the registered
portraits when only render settings change, and any portrait source (a video source too) works as with Talking Head
Video. Registration is a small part of a batch's time; the bar here covers the rendering, frame by frame.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import folder_paths
import torch
from comfy_api.latest import io

from ..ditto_core.audio import load_audio
from ..ditto_core.audio.clip import AUDIO_SUFFIXES, read_audio_file
from ..ditto_core.lists import PAIRINGS, PAIRS, BatchListError, folder_media, item_names, pair_up, video_names
from ..ditto_core.portrait.images import IMAGE_SUFFIXES, PortraitInputError, to_rgb_frames
from .common import CATEGORY, Progress, audio_value, check_interrupt, input_path
from .render import SpeechToVideo, talking_head_inputs, validate_talking_head
from .types import DittoModels, DittoPortrait

NO_FOLDERS = "(no folders in input/)"


def read_portrait(path: Path) -> torch.Tensor:
    """An image file as ComfyUI's IMAGE ``[1, H, W, 3]`` float32 in [0, 1], turned upright by its EXIF orientation
    as Load Image does."""
    from PIL import Image, ImageOps

    try:
        with Image.open(path) as image:
            frame = to_rgb_frames(ImageOps.exif_transpose(image))[0]
    except OSError as exc:  # not an image (PIL's UnidentifiedImageError), or a damaged one
        raise PortraitInputError(f"cannot read {path} as an image ({exc}); re-save it as jpg or png") from exc
    return torch.tensor(frame, dtype=torch.float32).div_(255)[None]


def read_clip(path: Path) -> dict:
    """A speech file as ComfyUI's AUDIO, as Load Audio gives it: ``waveform`` ``[1, C, M]`` float32 at the file's
    own ``sample_rate``."""
    return audio_value(*read_audio_file(path))


class FolderLoader(io.ComfyNode):
    """Every file of one kind in a folder under ComfyUI's input/ (not its sub-folders), sorted by name, as a list,
    with the file names as a second list."""

    SUFFIXES: set[str] = set()
    WHAT = ""  # what the files are, plural
    read: Callable[[Path], object]  # one file → one list item

    @classmethod
    def folder_schema(cls, node_id: str, display_name: str, description: str, items: io.Output,
                      search_aliases: list[str]) -> io.Schema:
        folders = folder_paths.get_input_subfolders() or [NO_FOLDERS]
        return io.Schema(
            node_id=node_id, display_name=display_name, category=CATEGORY, description=description,
            search_aliases=search_aliases,
            inputs=[io.Combo.Input("folder", options=folders, tooltip=f"A folder in ComfyUI's input folder: all the "
                                                                      f"{cls.WHAT} in it, sorted by file name.")],
            outputs=[items, io.String.Output("names", tooltip="The file names, in the same order.",
                                             is_output_list=True)],
        )

    @classmethod
    def files(cls, folder: str) -> list[Path]:
        return folder_media(input_path(folder), cls.SUFFIXES, cls.WHAT)

    @classmethod
    def fingerprint_inputs(cls, folder):
        """Run again when a file is added, removed or changed."""
        try:
            files = cls.files(folder)
        except ValueError:
            return float("nan")
        listing = [(path.name, path.stat().st_size, path.stat().st_mtime_ns) for path in files]
        return hashlib.sha256(repr(listing).encode()).hexdigest()

    @classmethod
    def execute(cls, folder) -> io.NodeOutput:
        files = cls.files(folder)
        progress = Progress(len(files))
        items = []
        for path in files:
            check_interrupt()
            items.append(cls.read(path))
            progress.update()
        return io.NodeOutput(items, [path.name for path in files])


class DittoLoadPortraits(FolderLoader):
    SUFFIXES = IMAGE_SUFFIXES
    WHAT = "images"
    read = staticmethod(read_portrait)

    @classmethod
    def define_schema(cls) -> io.Schema:
        return cls.folder_schema(
            "DittoLoadPortraits", "Load Portraits from Folder (Ditto)",
            "Loads every image (jpg, png, webp, bmp, tiff) of a folder in ComfyUI's input folder as an image list, "
            "with their file names: Register Portrait runs once per image, and Talking Head Batch names its videos "
            "after them.",
            io.Image.Output("images", tooltip="One IMAGE per file, each its own size.", is_output_list=True),
            ["batch portraits", "image folder", "load images"],
        )


class DittoLoadSpeechClips(FolderLoader):
    SUFFIXES = AUDIO_SUFFIXES
    WHAT = "audio files"
    read = staticmethod(read_clip)

    @classmethod
    def define_schema(cls) -> io.Schema:
        return cls.folder_schema(
            "DittoLoadSpeechClips", "Load Speech Clips from Folder (Ditto)",
            "Loads every audio file (wav, flac, ogg, opus, mp3, m4a, aac, aiff) of a folder in ComfyUI's input "
            "folder as an AUDIO list, with their file names, for Talking Head Batch.",
            io.Audio.Output("clips", tooltip="One AUDIO per file, as Load Audio gives it.", is_output_list=True),
            ["batch audio", "audio folder", "load audio files"],
        )


def one_value(name: str, values: list):
    """The one value of a setting: a list node gets every input as a list, a widget as a list of one."""
    if len(values) != 1:
        raise BatchListError(f"{name} got {len(values)} values; the batch takes one {name} for all its videos, so "
                             f"wire a single value, not a list")
    return values[0]


def video_prefix(filename_prefix: str, name: str) -> str:
    """``<prefix>_<name>``, or ``<prefix><name>`` when the prefix names a folder (ends with /)."""
    folder = not filename_prefix or filename_prefix.endswith(("/", "\\"))
    return filename_prefix + name if folder else f"{filename_prefix}_{name}"


def output_relative_path(entry: dict) -> str:
    """A ui entry's file, relative to the output folder."""
    return f"{entry['subfolder']}/{entry['filename']}" if entry["subfolder"] else entry["filename"]


def names_input(name: str, tooltip: str) -> io.String.Input:
    """A STRING list input for names (linked only; unlinked it is the empty text)."""
    return io.String.Input(name, default="", force_input=True, optional=True, tooltip=tooltip)


class DittoTalkingHeadBatch(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        widgets, optional = talking_head_inputs("ditto/batch", "Each video is <prefix>_<portrait>_<clip>_00001.mp4.")
        return io.Schema(
            node_id="DittoTalkingHeadBatch",
            display_name="Talking Head Batch (Ditto)",
            category=CATEGORY,
            description=(
                "Many talking-head videos in one run: lists of portraits (Register Portrait over Load Portraits or "
                "any image list) and of speech clips (Load Speech Clips, or several Load Audio through Create List). "
                "'pairs' renders the i-th portrait with the i-th clip (a single portrait or clip goes with each of "
                "the others); 'every portrait × every clip' renders each portrait with each clip. Each video is an "
                "mp4 in the output folder named <prefix>_<portrait>_<clip> (the names wired from the loaders, else "
                "numbers), written whole or not at all. The models are loaded once; one progress bar counts the "
                "frames of all the videos."
            ),
            search_aliases=["batch talking head", "many videos", "bulk lip sync", "avatars"],
            inputs=[
                DittoModels.Input("models"),
                DittoPortrait.Input("portraits", tooltip="A list of portraits (or one, for every clip)."),
                io.Audio.Input("clips", tooltip="A list of speech clips (or one, for every portrait)."),
                io.Combo.Input("pairing", options=list(PAIRINGS), default=PAIRS,
                               tooltip="pairs: the i-th portrait speaks the i-th clip; every portrait × every clip: "
                                       "all combinations."),
                *widgets,
                *optional,
                names_input("portrait_names", "Load Portraits' names (else the portraits are numbered)."),
                names_input("clip_names", "Load Speech Clips' names (else the clips are numbered)."),
            ],
            outputs=[io.String.Output("filenames", is_output_list=True,
                                      tooltip="The videos written, relative to the output folder, in the order they "
                                              "were rendered.")],
            is_input_list=True,
            is_output_node=True,
        )

    @classmethod
    def validate_inputs(cls, emotion_timeline=("",), fps=(0.0,)):
        """Talking Head Video's checks on each value (ComfyUI hands a list node its constants as lists, and a
        linked input as None)."""
        answers = (validate_talking_head(timeline or "", rate) for timeline in emotion_timeline for rate in fps)
        return next((answer for answer in answers if answer is not True), True)

    @classmethod
    def execute(cls, models, portraits, clips, pairing, filename_prefix, portrait_names=None, clip_names=None,
                **widgets) -> io.NodeOutput:
        pairs = pair_up(len(portraits), len(clips), one_value("pairing", pairing))
        portrait_names = item_names(portrait_names, len(portraits), "portrait")
        clip_names = item_names(clip_names, len(clips), "clip")
        names = video_names(portrait_names, clip_names, pairs)
        speech_clips = [load_audio(clip, name=name) for clip, name in zip(clips, clip_names)]
        speech = SpeechToVideo(one_value("models", models),
                               **{name: one_value(name, values) for name, values in widgets.items()})
        jobs = [speech.job(portraits[portrait], speech_clips[clip]) for portrait, clip in pairs]
        progress = Progress(sum(job.num_frames for job in jobs))
        prefix = one_value("filename_prefix", filename_prefix)
        entries = []
        for job, name in zip(jobs, names):
            check_interrupt()
            ui, _ = speech.write(video_prefix(prefix, name), job, progress)
            entries += ui["images"]
        return io.NodeOutput([output_relative_path(entry) for entry in entries],
                             ui={"images": entries, "animated": [True]})
