"""Reading the release's configuration pickle as data: numpy arrays, builtin containers and scalars, nothing else.

The release ships its settings as a Python pickle (``ditto_cfg/*.pkl``). A plain ``pickle.load`` would run any
callable the file names, so this reader allows only the globals that rebuild numpy arrays, dtypes and scalars
(under numpy 1.x and 2.x module names) and a few builtin containers, and refuses every other global when the
pickle *names* it, before anything could call it. The opcodes are scanned first: CPython's unpickler sizes its
memo table by the largest index a file names, so one damaged index could ask for gigabytes.
"""

from __future__ import annotations

import codecs
import io
import pickle
import pickletools
from pathlib import Path

import numpy as np


class ConfigFileError(ValueError):
    """A configuration file that is missing, damaged, or holds something other than plain data."""


def _latin1_encode(text: str, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    """What protocol-2 pickles use to rebuild ``bytes`` (``_codecs.encode(text, 'latin1')``); no other codec."""
    if codecs.lookup(encoding).name != "iso8859-1" or not isinstance(text, str):
        raise pickle.UnpicklingError(f"_codecs.encode is allowed only for latin-1 text, got {encoding!r}")
    return text.encode("latin-1", errors)


def _numpy_globals() -> dict[tuple[str, str], object]:
    reconstruct = np.zeros(1).__reduce__()[0]
    scalar = np.float32(0).__reduce__()[0]
    frombuffer = np.zeros(1).__reduce_ex__(5)[0]
    allowed = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype}
    for package in ("numpy.core", "numpy._core"):
        allowed[(f"{package}.multiarray", "_reconstruct")] = reconstruct
        allowed[(f"{package}.multiarray", "scalar")] = scalar
        allowed[(f"{package}.numeric", "_frombuffer")] = frombuffer
    for name in ("float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32",
                 "uint64", "bool_"):
        allowed[("numpy", name)] = getattr(np, name)
    return allowed


ALLOWED_GLOBALS: dict[tuple[str, str], object] = {
    **_numpy_globals(),
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "complex"): complex,
    ("builtins", "bytearray"): bytearray,
    ("_codecs", "encode"): _latin1_encode,
}


class _NdarrayName:
    """``numpy.ndarray`` as a pickle names it: the array type where ``_reconstruct`` takes it (how every array is
    pickled); called by itself, a constructor that refuses arrays larger than ``limit`` bytes."""

    def __init__(self, limit: int):
        self.limit = limit

    def __call__(self, shape, dtype=float, *args, **kwargs):
        _check_size(shape, dtype, self.limit, "numpy.ndarray")
        return np.ndarray(shape, dtype, *args, **kwargs)


def _check_size(shape, dtype, limit: int, what: str) -> None:
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    if not all(isinstance(n, int) and n >= 0 for n in shape):
        raise pickle.UnpicklingError(f"{what} asked for shape {shape!r}")
    nbytes = int(np.prod(shape, dtype=object)) * np.dtype(dtype).itemsize
    if nbytes > limit:
        raise pickle.UnpicklingError(f"{what} asked for {nbytes} bytes, more than the file could hold ({limit})")


def _sized_constructors(limit: int) -> dict[tuple[str, str], object]:
    """The allowed globals that allocate by a size or a state they are given, each refusing more than ``limit``
    bytes (a few bytes of pickle can otherwise ask for gigabytes: ``bytearray(10**10)``, a scalar of a 1 GB void
    dtype) and arrays whose state does not fit their shape (numpy crashes on an object array's short item list)."""
    ndarray = _NdarrayName(limit)

    class CheckedArray(np.ndarray):
        """An array being unpickled: its state is checked before numpy reads it; made plain after loading."""

        def __setstate__(self, state):
            if not isinstance(state, tuple) or len(state) not in (4, 5):
                raise pickle.UnpicklingError(f"an array's state is {type(state).__name__} of {len(state)} items")
            shape, dtype, _, data = state[-4:]
            _check_size(shape, dtype, limit, "an array")
            count = int(np.prod(shape, dtype=object))
            if np.dtype(dtype).hasobject and not (isinstance(data, list) and len(data) == count):
                raise pickle.UnpicklingError(f"an object array of shape {tuple(shape)} comes with "
                                             f"{len(data) if isinstance(data, list) else type(data).__name__} items")
            super().__setstate__(state)

    def reconstruct(subtype, shape, dtype):
        if subtype is not ndarray:
            raise pickle.UnpicklingError(f"numpy's _reconstruct of {subtype!r}: only plain arrays are data")
        _check_size(shape, dtype, limit, "numpy's _reconstruct")
        return ALLOWED_GLOBALS[("numpy.core.multiarray", "_reconstruct")](CheckedArray, shape, dtype)

    def scalar(dtype, *data):
        _check_size((), dtype, limit, "a numpy scalar")
        return ALLOWED_GLOBALS[("numpy.core.multiarray", "scalar")](dtype, *data)

    def sized_bytearray(*args):
        if args and not isinstance(args[0], (bytes, str)):  # what pickles write: bytearray(text or bytes)
            raise pickle.UnpicklingError(f"bytearray of {type(args[0]).__name__}: only of bytes or text")
        return bytearray(*args)

    constructors = {("numpy", "ndarray"): ndarray, ("builtins", "bytearray"): sized_bytearray}
    for package in ("numpy.core", "numpy._core"):
        constructors[(f"{package}.multiarray", "_reconstruct")] = reconstruct
        constructors[(f"{package}.multiarray", "scalar")] = scalar
    return constructors


def _plain(value):
    """``value`` with every array a plain ndarray (the unpickler builds them as a checking subclass)."""
    if isinstance(value, np.ndarray):
        return value.view(np.ndarray)
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(item) for item in value)
    return value


class DataOnlyUnpickler(pickle.Unpickler):
    """An unpickler that resolves only ``ALLOWED_GLOBALS``; any other global raises before it is used, and those
    that allocate by a given size refuse more than ``limit`` bytes (the file's size: data it really holds is
    never larger)."""

    def __init__(self, file, source: str, limit: int):
        super().__init__(file)
        self.source = source
        self.sized = _sized_constructors(limit)

    def find_class(self, module: str, name: str):
        if module == "__builtin__":  # the Python 2 name, which protocols 0-2 write
            module = "builtins"
        found = self.sized.get((module, name)) or ALLOWED_GLOBALS.get((module, name))
        if found is None:
            raise ConfigFileError(
                f"{self.source} asks to run {module}.{name} while loading; a configuration file may hold only numpy "
                f"arrays, lists, dicts, numbers and strings, so it was refused without running anything. Replace it "
                f"with the official file from the Hugging Face repo digital-avatar/ditto-talkinghead."
            )
        return found

    def persistent_load(self, pid):
        raise ConfigFileError(f"{self.source} refers to an external object ({pid!r}); refused")


def load_data_pickle(path: str | Path) -> object:
    """The plain data in the pickle at ``path`` (never runs code from it)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigFileError(f"cannot read the configuration file {path}: {exc}") from exc
    try:
        check_memo_indexes(data)
        return _plain(DataOnlyUnpickler(io.BytesIO(data), str(path), limit=len(data)).load())
    except ConfigFileError:
        raise
    except Exception as exc:  # truncated or corrupt pickles raise many different errors
        raise ConfigFileError(f"{path} is not a readable configuration pickle (damaged or incomplete: {exc}); "
                              f"download it again") from exc


MEMO_PUTS = ("PUT", "BINPUT", "LONG_BINPUT")


def check_memo_indexes(data: bytes) -> None:
    """ValueError when a memo index exceeds the number of operations before it (never so in a pickle as written)."""
    for count, (opcode, argument, _) in enumerate(pickletools.genops(data)):
        if opcode.name in MEMO_PUTS and int(argument) > count:
            raise ValueError(f"memo index {argument} at operation {count}")

