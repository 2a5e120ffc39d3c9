"""Many portraits and speech clips at once (ComfyUI's lists): which portrait goes with which clip, what each video
is called (the batch command's rule: ``<portrait stem>_<audio stem>``), and the portraits or clips a folder holds."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from .batch import check_name, default_name

PAIRS = "pairs"
EVERY = "every portrait × every clip"
PAIRINGS = (PAIRS, EVERY)


class BatchListError(ValueError):
    """Lists of portraits, clips or names that cannot make a batch, with what to do."""


def pair_up(num_portraits: int, num_clips: int, pairing: str) -> list[tuple[int, int]]:
    """(portrait index, clip index) of each video, in order. ``pairs``: the i-th portrait with the i-th clip (a
    single portrait or clip goes with each of the other list); ``every portrait × every clip``: each portrait with
    each clip, portrait by portrait."""
    if num_portraits == 0:
        raise BatchListError("the batch got no portraits; wire Register Portrait (fed by Load Portraits or any "
                             "image list) into 'portraits'")
    if num_clips == 0:
        raise BatchListError("the batch got no speech clips; wire Load Speech Clips (or any AUDIO list) into 'clips'")
    if pairing not in PAIRINGS:
        raise BatchListError(f"unknown pairing {pairing!r}; choose one of: {', '.join(PAIRINGS)}")
    if pairing == EVERY:
        return [(portrait, clip) for portrait in range(num_portraits) for clip in range(num_clips)]
    if num_portraits != num_clips and 1 not in (num_portraits, num_clips):
        raise BatchListError(
            f"'{PAIRS}' takes the i-th portrait with the i-th clip, but there are {num_portraits} portraits and "
            f"{num_clips} clips; give lists of the same length (or a single portrait or clip), or choose "
            f"'{EVERY}' to render each portrait with each clip ({num_portraits * num_clips} videos)")
    return [(index if num_portraits > 1 else 0, index if num_clips > 1 else 0)
            for index in range(max(num_portraits, num_clips))]


def item_names(names: Sequence[str] | None, count: int, what: str) -> list[str]:
    """The names of ``count`` portraits or clips: ``names`` (one each), or ``<what>1``, ``<what>2``, … when no names
    are wired (None, or the empty text of an unlinked widget)."""
    if names is None or list(names) == [""]:
        return [f"{what}{index + 1}" for index in range(count)]
    if len(names) != count:
        raise BatchListError(
            f"{what}_names has {len(names)} names for {count} {what}s; wire the names output of the loader that "
            f"gives the {what}s (one name each, in the same order), or leave {what}_names unconnected to number "
            f"them")
    return list(names)


def video_names(portrait_names: Sequence[str], clip_names: Sequence[str], pairs: Iterable[tuple[int, int]]) -> list[str]:
    """One name per video: ``<portrait stem>_<clip stem>``, as the batch command names its rows."""
    return [check_name(default_name(portrait_names[portrait], clip_names[clip], index + 1))
            for index, (portrait, clip) in enumerate(pairs)]


def folder_media(folder: Path, suffixes: Iterable[str], what: str) -> list[Path]:
    """The ``what`` files of ``folder`` (not its sub-folders; hidden files skipped) whose suffix is one of
    ``suffixes`` (any case), sorted by name; BatchListError when there is none."""
    suffixes = {suffix.lower() for suffix in suffixes}
    if not folder.is_dir():
        raise BatchListError(f"folder not found: {folder}")
    files = sorted((path for path in folder.iterdir()
                    if path.is_file() and not path.name.startswith(".") and path.suffix.lower() in suffixes),
                   key=lambda path: (path.name.casefold(), path.name))
    if not files:
        raise BatchListError(f"{folder} holds no {what} ({', '.join(sorted(suffixes))}); put them there, or choose "
                             f"another folder")
    return files
