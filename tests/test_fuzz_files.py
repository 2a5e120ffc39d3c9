"""Every file format a user shares or downloads, fed hundreds of seeded mutations of a good file (truncated, bytes
changed, header values replaced, other dtypes and shapes, NaN and infinity, huge sizes, metadata of the wrong
type): each one is either loaded as a valid value or refused by the format's own error naming the file. Never
another exception, a hang or a large allocation. Bounded: each case has a deadline, each format a case count."""

from __future__ import annotations

import csv
import json
import pickle
import resource
import signal
import struct
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch

from ditto_core.batch import BadRow, ManifestError, ResultsLog, Row, read_manifest
from ditto_core.batch.results import well_formed
from ditto_core.config_pickle import ConfigFileError, load_data_pickle
from ditto_core.live import LiveError, StartRequest
from ditto_core.live.protocol import OfferRequest
from ditto_core.models import CheckpointError, load_network
from ditto_core.motion import Motion, MotionFileError
from ditto_core.motion.motion import MAX_FPS, MIN_FPS
from ditto_core.release import NETWORK_FILES, release_path
from ditto_core.release_config import ReleaseConfig, load_release_config

CASE_DEADLINE_S = 2.0
MAX_RSS_GROWTH_MB = 512
WEIRD = [None, True, 0, -1, 1, 2**63, 10**12, -(10**12), 1.5, float("nan"), float("inf"), "", "x", "nan", "inf",
         "-inf", "1e308", "-5", "0", "99", "1.0", "F16", "F64", "BF16", "I32", "U8", "BOOL", [], [1], [0, 265],
         [12, 264], [12, 265, 1], [10**12, 265], [2**62, 265], {}, {"a": 1}, "[" * 5000, '{"a": NaN}', "[1]", "\x00"]


class Hang(Exception):
    pass


@contextmanager
def deadline(seconds: float):
    """Raise Hang in this thread when the block runs longer than ``seconds``."""
    def expire(signum, frame):
        raise Hang(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def written(folder: Path, pattern: str, count: int, make) -> list[Path]:
    """``count`` files ``pattern.format(index)`` in ``folder``, each holding ``make()``."""
    paths = [folder / pattern.format(index) for index in range(count)]
    for path in paths:
        path.write_bytes(make())
    return paths


def fuzz(cases, load, error: type | tuple, check, named: bool = True, seconds: float = 30) -> dict[str, int]:
    """Run ``load`` on every case, all within ``seconds``; each must return a value that passes ``check`` or raise
    ``error`` whose message names the case (its path) when ``named``. Returns how many loaded and were refused."""
    counts, start_rss, start = {"loaded": 0, "refused": 0}, peak_rss_mb(), time.perf_counter()
    for index, case in enumerate(cases):
        try:
            with deadline(CASE_DEADLINE_S):
                value = load(case)
        except error as exc:
            assert not named or str(case) in str(exc), f"case {index}: the message does not name the file: {exc}"
            counts["refused"] += 1
        else:
            assert check(value), f"case {index} loaded an invalid value: {value!r}"[:400]
            counts["loaded"] += 1
    assert peak_rss_mb() - start_rss < MAX_RSS_GROWTH_MB, "a mutated file made the loader allocate too much"
    assert time.perf_counter() - start < seconds
    return counts


def mutate_bytes(rng: np.random.Generator, data: bytes) -> bytes:
    """Truncated, a few bytes replaced, a span repeated or removed."""
    choice = rng.integers(4)
    if choice == 0:
        return data[: rng.integers(len(data))]
    if choice == 1:
        out = bytearray(data)
        for position in rng.integers(len(out), size=rng.integers(1, 9)):
            out[position] = rng.integers(256)
        return bytes(out)
    start, stop = sorted(rng.integers(len(data), size=2))
    return data[:start] + data[start:stop] * 2 + data[stop:] if choice == 2 else data[:start] + data[stop:]


def weird(rng: np.random.Generator):
    return WEIRD[rng.integers(len(WEIRD))]


# ------------------------------------------------------------------------------------------------- motion files


def safetensors_bytes(header: dict, data: bytes) -> bytes:
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + data


def motion_parts(rng: np.random.Generator) -> tuple[dict, bytearray]:
    """A good motion file as a header and data to mutate (12 frames, as Motion.save writes)."""
    frames = rng.standard_normal((12, 265)).astype(np.float32) * 0.1
    anchor = frames[0].copy()
    header = {"frames": {"dtype": "F32", "shape": [12, 265], "data_offsets": [0, frames.nbytes]},
              "anchor": {"dtype": "F32", "shape": [265],
                         "data_offsets": [frames.nbytes, frames.nbytes + anchor.nbytes]},
              "__metadata__": {"format": "ditto-motion", "version": "1", "fps": "25.0",
                               "metadata": json.dumps({"source": "fuzz"})}}
    return header, bytearray(frames.tobytes() + anchor.tobytes())


def mutated_motion(rng: np.random.Generator) -> bytes:
    header, data = motion_parts(rng)
    choice = rng.integers(8)
    if choice == 0:  # a header value of another type or size
        key = ["frames", "anchor", "__metadata__"][rng.integers(3)]
        field = list(header[key])[rng.integers(len(header[key]))]
        header[key][field] = weird(rng)
    elif choice == 1:  # NaN or infinity in the frames or the anchor
        values = np.frombuffer(data, np.float32).copy()
        values[rng.integers(len(values), size=rng.integers(1, 4))] = [np.nan, np.inf, -np.inf][rng.integers(3)]
        data = bytearray(values.tobytes())
    elif choice == 2:  # stored in another dtype, data to match
        dtype, numpy_dtype = [("F16", np.float16), ("F64", np.float64), ("I32", np.int32),
                              ("BF16", None)][rng.integers(4)]
        values = np.frombuffer(data, np.float32)
        stored = (torch.from_numpy(values.copy()).bfloat16().view(torch.int16).numpy() if numpy_dtype is None
                  else values.astype(numpy_dtype))
        size = stored.itemsize
        header["frames"].update(dtype=dtype, data_offsets=[0, 12 * 265 * size])
        header["anchor"].update(dtype=dtype, data_offsets=[12 * 265 * size, 13 * 265 * size])
        data = bytearray(stored.tobytes())
    elif choice == 3:  # other shapes, data to match
        rows, columns = [(0, 265), (1, 265), (12, 264), (3, 530), (3180, 1)][rng.integers(5)]
        header["frames"].update(shape=[rows, columns], data_offsets=[0, rows * columns * 4])
        header["anchor"]["data_offsets"] = [rows * columns * 4, rows * columns * 4 + 265 * 4]
        data = bytearray(bytes(rows * columns * 4) + bytes(data[-265 * 4:]))
    elif choice == 4:  # huge sizes claimed
        header["frames"].update(shape=[2**40, 265], data_offsets=[0, 2**40 * 265 * 4])
    elif choice == 5:  # tensors missing or added
        name = ["frames", "anchor", "extra"][rng.integers(3)]
        if name == "extra":
            header["extra"] = {"dtype": "F32", "shape": [1], "data_offsets": [len(data), len(data) + 4]}
            data += bytes(4)
        else:
            header.pop(name)
    elif choice == 6:  # header fields missing
        header["__metadata__"].pop(list(header["__metadata__"])[rng.integers(4)])
    else:
        return mutate_bytes(rng, safetensors_bytes(header, bytes(data)))
    if rng.integers(10) == 0:  # sometimes a header length that does not fit
        return struct.pack("<Q", int(rng.choice([0, 7, 2**40, 2**63]))) + safetensors_bytes(header, bytes(data))[8:]
    return safetensors_bytes(header, bytes(data))


def valid_motion(motion: Motion) -> bool:
    return (motion.frames.shape[1] == 265 and 1 <= len(motion) and bool(torch.isfinite(motion.frames).all())
            and bool(torch.isfinite(motion.anchor).all()) and MIN_FPS <= motion.fps <= MAX_FPS
            and isinstance(motion.metadata, dict))


def test_mutated_motion_files_load_as_valid_motion_or_are_refused_naming_the_file(tmp_path):
    rng = np.random.default_rng(27)
    paths = written(tmp_path, "motion_{}.safetensors", 1000, lambda: mutated_motion(rng))
    counts = fuzz(paths, Motion.load, MotionFileError, valid_motion)
    assert counts["refused"] > 600 and counts["loaded"] > 100, counts


# ----------------------------------------------------------------------------------------------- batch manifests


MANIFEST = ("portrait,audio,name,emotion,seed,fps,steps\n"
            "alice.jpg,hello.wav,,,,,\n"
            "alice.jpg,hello.wav,alice_happy,happy+surprise,7,30,2\n"
            "/data/bob.mp4,speech/news.m4a,bob_news,\"0:neutral, 2.5:happy\",,,10\n")
MANIFEST_INSERTS = [b",", b'"', b"\n", b"\r", b"\x00", b"\xff\xfe", b"\xef\xbb\xbf", b"\xc3", b"x" * 200_000,
                    b",,,,,,,,", b"nan", b"-1", b"1e308", b"../..", b".hidden", b"portrait", b"\t", "é".encode()]


def mutated_manifest(rng: np.random.Generator) -> bytes:
    data = MANIFEST.encode()
    if rng.integers(3) == 0:
        return mutate_bytes(rng, data)
    position = rng.integers(len(data) + 1)
    return data[:position] + MANIFEST_INSERTS[rng.integers(len(MANIFEST_INSERTS))] + data[position:]


def valid_rows(rows) -> bool:
    return bool(rows) and all(isinstance(row, Row) or (isinstance(row, BadRow) and row.message.startswith(
        f"line {row.line}: ")) for row in rows)


def test_mutated_manifests_are_read_row_by_row_or_refused_naming_the_file(tmp_path):
    rng = np.random.default_rng(2711)
    paths = written(tmp_path, "jobs_{}.csv", 500, lambda: mutated_manifest(rng))
    counts = fuzz(paths, read_manifest, ManifestError, valid_rows)
    assert counts["refused"] > 100 and counts["loaded"] > 250, counts
    assert csv.field_size_limit() == 131072  # the reader's own limit was left as it is


# ------------------------------------------------------------------------------------------------- release cfg


def mutated_config(rng: np.random.Generator, data: dict, raw: bytes) -> bytes:
    if rng.integers(2) == 0:
        return mutate_bytes(rng, raw)
    changed = {**data, "default_kwargs": dict(data["default_kwargs"])}
    keys = list(changed["default_kwargs"])
    key = keys[rng.integers(len(keys))]
    value = weird(rng)
    if rng.integers(3) == 0:  # an array of another shape, dtype or with NaN
        with np.errstate(invalid="ignore", over="ignore"):  # NaN and 1e308 cast to ints and halves on purpose
            value = np.full(tuple(rng.integers(0, 4, size=rng.integers(1, 3))), [np.nan, 1e308, 0][rng.integers(3)],
                            dtype=[np.float32, np.int64, np.float16][rng.integers(3)])
    changed["default_kwargs"][key] = value
    return pickle.dumps(changed, protocol=int(rng.integers(0, pickle.HIGHEST_PROTOCOL + 1)))


def test_mutated_release_configs_load_or_are_refused_naming_the_file(small_release, tmp_path):
    rng = np.random.default_rng(2712)
    source = release_path(small_release, "config")
    raw = source.read_bytes()
    data = load_data_pickle(source)
    paths = written(tmp_path, "cfg_{}.pkl", 500, lambda: mutated_config(rng, data, raw))
    counts = fuzz(paths, load_release_config, ConfigFileError, lambda cfg: isinstance(cfg, ReleaseConfig))
    assert counts["refused"] > 300 and counts["loaded"] > 40, counts


# ------------------------------------------------------------------------------------- batch results.jsonl


RESULTS = ('{"name": "a", "line": 2, "status": "ok", "frames": 8, "seconds": 1.5, "error": null, "key": "k1", '
           '"worker": "host:1 cpu", "attempt": 1}\n'
           '{"name": "b", "line": 3, "status": "lost", "frames": 0, "seconds": 0.0, "error": "line 3: lost", '
           '"key": "k2", "worker": null, "attempt": 1}\n'
           '{"name": "b", "line": 3, "status": "ok", "frames": 12, "seconds": 2.0, "error": null, "key": "k2", '
           '"worker": "host:2 cpu", "attempt": 2}\n')


def mutated_results(rng: np.random.Generator) -> bytes:
    choice = rng.integers(3)
    if choice == 0:
        return mutate_bytes(rng, RESULTS.encode())
    if choice == 1:  # a line nested thousands deep
        return RESULTS.encode() + b"[" * 100_000 + b"\n"
    records = [json.loads(line) for line in RESULTS.splitlines()]
    record = records[rng.integers(len(records))]
    record[list(record)[rng.integers(len(record))]] = weird(rng)
    return "".join(json.dumps(record) + "\n" for record in records).encode()


def test_mutated_results_files_resume_from_the_lines_that_are_whole(tmp_path):
    """results.jsonl is never refused: a line that is not a whole record is counted and its job rendered again."""
    rng = np.random.default_rng(2715)
    paths = written(tmp_path, "results_{}.jsonl", 300, lambda: mutated_results(rng))

    def whole(log: ResultsLog) -> bool:
        return all(well_formed(record) and name == record["name"] for name, record in log.previous.items())

    counts = fuzz(paths, ResultsLog, (), whole)  # no error of its own to raise
    assert counts["loaded"] == 300
    assert sum(ResultsLog(path).unreadable > 0 for path in paths) > 100


# ---------------------------------------------------------------------------------------- network checkpoints


def test_mutated_checkpoints_load_or_are_refused_naming_the_file(small_release, tmp_path):
    rng = np.random.default_rng(2714)
    raw = (small_release / NETWORK_FILES["stitch_network"].path).read_bytes()
    paths = written(tmp_path, "stitch_{}.pth", 200, lambda: mutate_bytes(rng, raw))
    counts = fuzz(paths, lambda path: load_network("stitch_network", path), CheckpointError,
                  lambda network: isinstance(network, torch.nn.Module))
    assert counts["refused"] > 100 and counts["loaded"] > 20, counts


# ----------------------------------------------------------------------------------------- live start messages


LIVE_MESSAGES = {
    StartRequest: {"type": "start", "sample_rate": 16000, "format": "s16le", "portrait": "a.png", "emotion": "happy",
                   "seed": 3, "token": "t"},
    OfferRequest: {"type": "offer", "sdp": "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n", "portrait": "a.png", "seed": 3},
}


def mutated_message(rng: np.random.Generator, message: dict) -> str:
    message = dict(message)
    choice = rng.integers(3)
    if choice == 0:
        message[list(message)[rng.integers(len(message))]] = weird(rng)
        return json.dumps(message)
    if choice == 1:
        return mutate_bytes(rng, json.dumps(message).encode()).decode("utf-8", errors="replace")
    return ["[" * 100_000, "{" * 50_000, "1" * 5000, "null", '"start"', "NaN", ""][rng.integers(7)]


@pytest.mark.parametrize("kind", list(LIVE_MESSAGES), ids=lambda kind: kind.__name__)
def test_mutated_live_messages_are_parsed_or_refused(kind):
    """The WebSocket's start message and the WebRTC offer, as a client may send them."""
    rng = np.random.default_rng(2713)
    messages = [mutated_message(rng, LIVE_MESSAGES[kind]) for _ in range(500)]
    counts = fuzz(messages, kind.parse, LiveError, lambda request: isinstance(request, kind), named=False)
    assert counts["refused"] > 250 and counts["loaded"] > 50, counts
