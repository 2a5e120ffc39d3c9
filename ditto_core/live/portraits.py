"""The models and portraits live sessions share: the pipeline loaded once, portraits registered once."""

from __future__ import annotations

import threading
from collections import OrderedDict
from contextlib import contextmanager
from pathlib import Path

from .protocol import LiveError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")


class PipelineSource:
    """The pipeline, loaded once on first use (in a session's worker thread) and shared by every session.
    ``hold``, when given, maps it to a context that gives it ready to compute and keeps it so while the session
    lasts (inside ComfyUI: its model management puts the networks on the device, offloading other models if memory
    is short, and offloads them again only after the last session ends)."""

    def __init__(self, pipeline, hold=None):
        self._value = None if callable(pipeline) else pipeline
        self._load = pipeline if callable(pipeline) else None
        self._hold = hold
        self._lock = threading.Lock()

    def get(self):
        """The pipeline as loaded."""
        with self._lock:
            if self._value is None:
                self._value = self._load()
            return self._value

    @contextmanager
    def held(self):
        """The pipeline, ready to compute until the block ends."""
        pipeline = self.get()
        if self._hold is None:
            yield pipeline
        else:
            with self._hold(pipeline) as ready:
                yield ready


class PortraitLibrary:
    """Portraits by file name: images in ``folder`` (ComfyUI's input/) and/or one ``default`` image; each is
    registered once and kept (the ``cache_size`` most recent)."""

    def __init__(self, folder: str | Path | None = None, default: str | Path | None = None, cache_size: int = 4):
        self.folder = Path(folder).resolve() if folder is not None else None
        self.default = Path(default).resolve() if default is not None else None
        self.cache_size = cache_size
        self._cache: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def names(self, limit: int = 500) -> list[str]:
        found = [self.default.name] if self.default is not None else []
        if self.folder is not None and self.folder.is_dir():
            for path in sorted(self.folder.rglob("*")):
                if len(found) >= limit:
                    break
                relative = path.relative_to(self.folder)
                if (path.suffix.lower() in IMAGE_EXTENSIONS and path.is_file()
                        and not any(part.startswith(".") for part in relative.parts)):
                    found.append(relative.as_posix())
        return list(dict.fromkeys(found))

    def path(self, name: str | None) -> Path:
        if name is None or (self.default is not None and name == self.default.name):
            if self.default is None:
                raise LiveError("say which portrait to animate: add \"portrait\": \"<image file name>\" to the start "
                                "message (an image in ComfyUI's input folder, e.g. one uploaded with Load Image)")
            return self.default
        if self.folder is None:
            raise LiveError(f"portrait {name!r} is not offered: this server animates only {self.default.name}; leave "
                            f"\"portrait\" out (or start it with --portraits DIR to offer the images of a folder)")
        if not isinstance(name, str) or not name or len(name) > 512 or "\x00" in name:
            raise LiveError("\"portrait\" must be an image file name")
        path = (self.folder / name).resolve()
        if self.folder not in path.parents:
            raise LiveError(f"portrait {name!r} is outside the portraits folder; give a file name inside it")
        if path.suffix.lower() not in IMAGE_EXTENSIONS:
            raise LiveError(f"portrait {name!r} is not an image ({', '.join(IMAGE_EXTENSIONS)})")
        if not path.is_file():
            raise LiveError(f"portrait {name!r} not found in the portraits folder; the page lists the ones there")
        return path

    def get(self, name: str | None, pipeline):
        path = self.path(name)
        stat = path.stat()
        key = (str(path), stat.st_mtime_ns, stat.st_size, id(pipeline))
        with self._lock:  # one registration at a time; the result is shared
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
            portrait = pipeline.register(str(path))
            self._cache[key] = portrait
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
            return portrait
