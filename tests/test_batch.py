"""Batch rendering: a manifest of jobs rendered by local worker processes or Ray actors, every good row to its
files, every bad row failing alone, re-runs rendering only what is missing, failed or changed, Ctrl-C resumable."""

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import soundfile
import torch

from ditto_core.batch import (
    BadRow,
    BatchError,
    ManifestError,
    ResultsLog,
    Row,
    Worker,
    import_ray,
    read_manifest,
)
from ditto_core.batch import Result as BatchResult
from ditto_core.video import write_mp4

ROOT = Path(__file__).resolve().parents[1]
HEADER = "portrait,audio,name,emotion,seed,steps\n"


def cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ditto_core", "batch", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)


def write_speech(path: Path, seconds: float) -> Path:
    samples, rate = soundfile.read(ROOT / "assets" / "speech.wav", dtype="float32")
    soundfile.write(path, samples[: int(seconds * rate)], rate)
    return path


def video_frames(path: Path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


def records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


def statuses(run_lines: list[dict]) -> dict[str, str]:
    return {record["name"]: record["status"] for record in run_lines}


def hidden_files(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir() if p.name.startswith(".") and p.name != ".batch.lock")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    """Real input files beside a manifest: a portrait image, a portrait video, a black image and two clips."""
    folder = tmp_path_factory.mktemp("batch_inputs")
    portrait = cv2.imread(str(ROOT / "assets" / "portrait.jpg"))
    cv2.imwrite(str(folder / "portrait.jpg"), portrait)
    cv2.imwrite(str(folder / "black.png"), np.zeros((128, 128, 3), np.uint8))
    rgb = cv2.cvtColor(portrait, cv2.COLOR_BGR2RGB)
    write_mp4(folder / "talker.mp4", [rgb, np.roll(rgb, 2, axis=1), np.roll(rgb, 4, axis=1)])
    write_speech(folder / "short.wav", 0.3)  # 7.5 frames' worth: ⌈0.3 × 25⌉ = 8
    write_speech(folder / "longer.wav", 0.45)  # ⌈0.45 × 25⌉ = 12
    return folder


def write_manifest(folder: Path, name: str, rows: list[str]) -> Path:
    path = folder / name
    path.write_text(HEADER + "".join(row + "\n" for row in rows))
    return path


GOOD_AND_BAD = [
    "portrait.jpg,short.wav,,,,1",  # name defaults to portrait_short
    "talker.mp4,{longer},video,happy,5,1",  # a video portrait (looping source), absolute audio path
    "nope.jpg,short.wav,missing,,,1",
    "portrait.jpg,short.wav,bad-emotion,grumpy,,1",
    "black.png,short.wav,no-face,,,1",
]


def run_good_and_bad(inputs: Path, small_release: Path, out: Path, *extra) -> tuple[subprocess.CompletedProcess, Path]:
    rows = [row.format(longer=inputs / "longer.wav") for row in GOOD_AND_BAD]
    manifest = write_manifest(inputs, f"jobs_{out.name}.csv", rows)
    return cli(manifest, "--models", small_release, "--out", out, "--save-motion", *extra), manifest


def check_good_and_bad(done: subprocess.CompletedProcess, inputs: Path, out: Path) -> None:
    assert done.returncode == 1, done.stderr
    assert done.stdout.splitlines()[-1] == "2 ok, 0 skipped, 3 failed"
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == [
        "portrait_short.mp4", "portrait_short.safetensors", "results.jsonl", "video.mp4", "video.safetensors"]
    assert hidden_files(out) == []
    assert video_frames(out / "portrait_short.mp4") == math.ceil(0.3 * 25) == 8
    assert video_frames(out / "video.mp4") == math.ceil(0.45 * 25) == 12
    lines = {record["name"]: record for record in records(out)}
    assert statuses(records(out)) == {
        "portrait_short": "ok", "video": "ok", "missing": "error", "bad-emotion": "error", "no-face": "error"}
    assert lines["portrait_short"]["frames"] == 8 and lines["video"]["frames"] == 12
    assert lines["video"]["seconds"] > 0 and len(lines["video"]["key"]) == 64
    assert lines["missing"]["error"] == f"line 4: portrait not found: {inputs / 'nope.jpg'}"
    assert lines["bad-emotion"]["error"].startswith("line 5: unknown emotion 'grumpy'")
    assert lines["no-face"]["error"].startswith("line 6: no face found")


def test_local_workers_render_good_rows_fail_bad_ones_and_rerun_only_what_changed(inputs, small_release, tmp_path):
    out = tmp_path / "out"
    done, manifest = run_good_and_bad(inputs, small_release, out)
    check_good_and_bad(done, inputs, out)
    gpus = torch.cuda.device_count()  # one worker per CUDA device, one in all on a CPU-only machine
    assert f"rendering 3 job(s) with {max(gpus, 1)} local worker(s) on {'cuda' if gpus else 'cpu'}" in done.stderr
    assert "batch: 5/5 jobs, 20 frames" in done.stderr

    first_key = {record["name"]: record["key"] for record in records(out)}["portrait_short"]
    stamps = {name: (out / name).stat().st_mtime_ns for name in ("portrait_short.mp4", "video.mp4")}
    again = cli(manifest, "--models", small_release, "--out", out, "--save-motion")
    assert again.returncode == 1 and again.stdout.splitlines()[-1] == "0 ok, 2 skipped, 3 failed"
    rerun = records(out)[5:]
    assert statuses(rerun) == {"portrait_short": "skipped", "video": "skipped", "missing": "error",
                               "bad-emotion": "error", "no-face": "error"}
    assert {name: (out / name).stat().st_mtime_ns for name in stamps} == stamps  # nothing rendered again

    manifest.write_text(manifest.read_text().replace("portrait.jpg,short.wav,,,,1", "portrait.jpg,short.wav,,,7,1"))
    changed = cli(manifest, "--models", small_release, "--out", out, "--save-motion")
    assert changed.stdout.splitlines()[-1] == "1 ok, 1 skipped, 3 failed"
    third = {record["name"]: record for record in records(out)[10:]}
    assert third["portrait_short"]["status"] == "ok" and third["video"]["status"] == "skipped"
    assert (out / "portrait_short.mp4").stat().st_mtime_ns != stamps["portrait_short.mp4"]
    assert (out / "video.mp4").stat().st_mtime_ns == stamps["video.mp4"]
    assert third["portrait_short"]["key"] != first_key


def test_ray_local_actors_render_the_same_manifest(inputs, small_release, tmp_path):
    pytest.importorskip("ray", reason="Ray is not installed (pip install ray); --ray is optional")
    out = tmp_path / "ray_out"
    done, _ = run_good_and_bad(inputs, small_release, out, "--ray", "local", "--workers", "2")
    check_good_and_bad(done, inputs, out)
    assert "rendering 3 job(s) with 2 Ray actor(s), each with num_" in done.stderr
    rendered = [record for record in records(out) if record["name"] in ("portrait_short", "video", "no-face")]
    assert all(record["worker"] for record in rendered)  # rendered by an actor; the other rows failed up front


def test_ctrl_c_mid_batch_keeps_finished_videos_leaves_no_partial_file_and_resumes(inputs, small_release, tmp_path):
    out = tmp_path / "out"
    manifest = write_manifest(inputs, "kill.csv", ["portrait.jpg,short.wav,first,,,1",
                                                   "portrait.jpg,longer.wav,second,,,1",
                                                   "portrait.jpg,short.wav,third,,,1"])
    command = [sys.executable, "-m", "ditto_core", "batch", str(manifest), "--models", str(small_release),
               "--out", str(out)]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not list(out.glob(".second.*.mp4")) and time.monotonic() < deadline:  # "second" is being written
        time.sleep(0.02)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert stdout.splitlines()[-1] == "1 ok, 0 skipped, 0 failed, 2 not done (run the same command again to resume)"
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == ["first.mp4", "results.jsonl"]
    assert hidden_files(out) == []
    assert [(r["name"], r["status"]) for r in records(out)] == [("first", "ok")]

    resumed = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.splitlines()[-1] == "2 ok, 1 skipped, 0 failed"
    assert [(r["name"], r["status"]) for r in records(out)[1:]] == [("first", "skipped"), ("second", "ok"),
                                                                    ("third", "ok")]
    assert [video_frames(out / f"{name}.mp4") for name in ("first", "second", "third")] == [8, 12, 8]


# ------------------------------------------------------------------------------------ lost work comes back by itself


def descendants(root: int, marker: bytes) -> list[int]:
    """Processes under ``root`` whose command line holds ``marker`` (Linux /proc)."""
    parents, lines = {}, {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                lines[int(entry.name)] = (entry / "cmdline").read_bytes()
            except (OSError, IndexError):  # a process that ended while being read
                continue

    def under(pid: int) -> bool:
        while pid > 1:
            pid = parents.get(pid, 0)
            if pid == root:
                return True
        return False

    return [pid for pid, line in lines.items() if marker in line and under(pid)]


def start_batch(manifest: Path, small_release: Path, out: Path, *extra) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "ditto_core", "batch", str(manifest), "--models",
                             str(small_release), "--out", str(out), *map(str, extra)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def when_second_is_written(out: Path, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 300
    while not list(out.glob(".second.*.mp4")) and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.02)
    assert list(out.glob(".second.*.mp4")), "the job 'second' never started writing"


THREE_JOBS = ["portrait.jpg,short.wav,first,,,1", "portrait.jpg,longer.wav,second,,,1",
              "portrait.jpg,short.wav,third,,,1"]


def check_retried(out: Path, stdout: str, lost_worker: str) -> None:
    """Every job ok, "second" rendered twice: attempt 1 lost with its worker, attempt 2 ok; nothing else twice."""
    assert stdout.splitlines()[-1] == "3 ok, 0 skipped, 0 failed (1 attempt(s) lost with a worker, retried)"
    lines = records(out)
    assert [(r["name"], r["status"], r["attempt"]) for r in lines] == [
        ("first", "ok", 1), ("second", "lost", 1), ("second", "ok", 2), ("third", "ok", 1)]
    assert lines[1]["error"].startswith(f"line 3: attempt 1 was lost with its worker ({lost_worker}")
    assert lines[1]["error"].endswith("trying again (1 of 1 retries)")
    assert [video_frames(out / f"{name}.mp4") for name in ("first", "second", "third")] == [8, 12, 8]
    assert hidden_files(out) == []


def test_a_local_worker_killed_mid_job_is_replaced_and_its_job_retried(inputs, small_release, tmp_path):
    out = tmp_path / "out"
    process = start_batch(write_manifest(inputs, "sigkill.csv", THREE_JOBS), small_release, out, "--workers", 1)
    when_second_is_written(out, process)
    [worker] = descendants(process.pid, b"spawn_main")
    os.kill(worker, signal.SIGKILL)
    stdout, stderr = process.communicate(timeout=600)
    assert process.returncode == 0, stderr
    lost = f"worker process {worker} ended with exit code -9 (killed by SIGKILL)"
    assert f"warning: {lost}; a new worker takes its place (restart 1 of 3)" in stderr
    check_retried(out, stdout, lost)
    assert records(out)[2]["worker"] != records(out)[0]["worker"]  # the replacement process rendered it

    again = start_batch(inputs / "sigkill.csv", small_release, out)
    stdout, _ = again.communicate(timeout=600)
    assert again.returncode == 0 and stdout.splitlines()[-1] == "0 ok, 3 skipped, 0 failed"


def test_a_stalled_local_worker_is_ended_after_the_stall_timeout_and_its_job_retried(inputs, small_release,
                                                                                     tmp_path):
    out = tmp_path / "out"
    process = start_batch(write_manifest(inputs, "stall.csv", THREE_JOBS), small_release, out, "--workers", 1,
                          "--stall-timeout", 20)
    when_second_is_written(out, process)
    [worker] = descendants(process.pid, b"spawn_main")
    os.kill(worker, signal.SIGSTOP)  # alive, but no frame or render batch any more
    stdout, stderr = process.communicate(timeout=600)
    assert process.returncode == 0, stderr
    stalled = "worker 0 made no progress for 20 s (--stall-timeout) and was ended"
    assert f"warning: {stalled}; a new worker takes its place (restart 1 of 3)" in stderr
    check_retried(out, stdout, stalled)


def test_a_ray_actor_whose_process_is_killed_mid_job_restarts_and_its_job_is_retried(inputs, small_release,
                                                                                    tmp_path):
    pytest.importorskip("ray", reason="Ray is not installed (pip install ray); --ray is optional")
    out = tmp_path / "out"
    process = start_batch(write_manifest(inputs, "ray_kill.csv", THREE_JOBS), small_release, out, "--ray", "local",
                          "--workers", 1)
    when_second_is_written(out, process)
    [actor] = descendants(process.pid, b"ray::RayWorker")
    os.kill(actor, signal.SIGKILL)
    stdout, stderr = process.communicate(timeout=600)
    assert process.returncode == 0, stderr
    assert "warning: Ray actor 0 was lost: " in stderr and "a new worker takes its place (restart 1 of 3)" in stderr
    check_retried(out, stdout, "Ray actor 0 was lost: ")
    assert records(out)[2]["worker"] != records(out)[0]["worker"]  # the restarted actor is another process


# ---------------------------------------------------------------------------------- the manifest, said up front


def test_a_manifest_without_its_required_columns_is_refused_with_the_line(tmp_path):
    path = tmp_path / "jobs.csv"
    path.write_text("portrait.jpg,speech.wav\n")  # no header
    with pytest.raises(ManifestError, match=r"jobs.csv line 1: missing required column\(s\) portrait, audio; "
                                            r"unknown column\(s\) 'portrait.jpg', 'speech.wav'"):
        read_manifest(path)
    path.write_text("portrait,audio,emotions\na.jpg,b.wav,happy\n")
    with pytest.raises(ManifestError, match=r"line 1: unknown column\(s\) 'emotions'.*name, emotion, seed, fps, steps"):
        read_manifest(path)
    path.write_text("")
    with pytest.raises(ManifestError, match="line 1: empty; the first line must name the columns"):
        read_manifest(path)
    path.write_text("portrait,audio\n\n")
    with pytest.raises(ManifestError, match="has a header but no jobs"):
        read_manifest(path)


def test_each_bad_row_is_its_own_error_with_its_line(tmp_path):
    path = tmp_path / "jobs.csv"
    path.write_text("Portrait, Audio ,name,fps,seed,steps\n"
                    "faces/a.jpg,/abs/a.wav,,,,\n"
                    "a.jpg,a.wav,,75,,\n"
                    "a.jpg,a.wav,two,,x,\n"
                    "a.jpg,a.wav,three,,,0\n"
                    "b.jpg,b.wav,a_a,25,3,4\n"
                    "c.jpg,,blank,,,\n"
                    "c.jpg,c.wav,../up,,,\n"
                    "c.jpg,c.wav,x,,,,extra\n"
                    "d.jpg,d.wav,big,,99999999999999999999999,\n"
                    "e.jpg,e.wav,slow,,,100000000\n")
    rows = read_manifest(path)
    assert rows[0] == Row(2, "a_a", tmp_path / "faces" / "a.jpg", Path("/abs/a.wav"))
    assert rows[1] == BadRow(3, "a_a", "line 3: the frame rate must be between 10 and 60 fps, got 75")
    assert rows[2].message == "line 4: seed must be a whole number, got 'x'"
    assert rows[3].message == "line 5: steps must be a whole number from 1 to 1000, got 0"
    assert rows[4] == BadRow(6, "a_a", "line 6: the name 'a_a' is already used by line 2; give this row its own "
                                       "name (the name column)")
    assert rows[5].message.startswith("line 7: the audio column is empty")
    assert rows[6].message.startswith("line 8: the name '../up' cannot be a file name in the output folder")
    assert rows[7].message.startswith("line 9: 7 values for 6 columns")
    assert rows[8].message == ("line 10: seed must be a whole number from 0 to 9223372036854775807, got "
                               "99999999999999999999999")
    assert rows[9].message == "line 11: steps must be a whole number from 1 to 1000, got 100000000"


def test_a_results_line_cut_off_by_a_crash_is_ignored_and_the_next_line_starts_fresh(tmp_path):
    path = tmp_path / "results.jsonl"
    path.write_text('{"name": "a", "status": "ok", "frames": 3, "key": "k1"}\n{"name": "b", "sta')
    log = ResultsLog(path)
    assert list(log.previous) == ["a"] and log.unreadable == 1
    log.append(BatchResult("b", 3, "ok", 5, 1.0, key="k2"))
    lines = path.read_text().splitlines()
    assert lines[1] == '{"name": "b", "sta' and json.loads(lines[2])["name"] == "b"
    assert ResultsLog(path).previous["b"]["frames"] == 5


def test_a_node_without_the_model_files_names_itself_and_the_missing_path(tmp_path):
    import socket

    state, message = Worker(str(tmp_path / "models"), "cpu").start()
    assert state == "failed"
    models = tmp_path / "models"
    assert (f"node {socket.gethostname()} lacks 12 Ditto model file(s) under {models} (the first: "
            f"{models / 'ditto_pytorch' / 'models' / 'appearance_extractor.pth'})") in message
    assert str(models / "ditto_pytorch" / "models" / "lmdm_v0.4_hubert.pth") in message
    assert "same path" in message


def test_without_ray_the_ray_mode_is_one_clear_error(monkeypatch, small_release, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    with pytest.raises(BatchError, match=r"--ray needs Ray, which is not installed: pip install ray"):
        import_ray()
    manifest = write_manifest(tmp_path, "jobs.csv", ["a.jpg,a.wav,,,,"])
    done = subprocess.run([sys.executable, "-c", "import sys; sys.modules['ray'] = None; from ditto_core.__main__ "
                           "import main; sys.exit(main(sys.argv[1:]))", "batch", str(manifest), "--models",
                           str(small_release), "--out", str(tmp_path / "out"), "--ray", "local"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert done.stderr.strip().startswith("error: --ray needs Ray, which is not installed: pip install ray")
    assert not (tmp_path / "out").exists()


class SilentStarts:
    """An executor whose workers in ``silent`` never report ready (a Ray actor no node can take); the others
    start at once and render each job they get in 0.2 s."""

    def __init__(self, worker_count: int, silent: set):
        self.worker_count, self.silent = worker_count, silent
        self.queued, self.killed = [], []  # (when due, event)

    def start(self):
        self.queued += [(0, ("ready", wid, "")) for wid in range(self.worker_count) if wid not in self.silent]

    def submit(self, wid, job):
        done = BatchResult(job.name, job.row.line, "ok", frames=1, worker=str(wid))
        self.queued.append((time.monotonic() + 0.2, ("done", wid, done)))

    def events(self, timeout):
        time.sleep(0.01)
        now = time.monotonic()
        due = [event for when, event in self.queued if when <= now]
        self.queued = [(when, event) for when, event in self.queued if when > now]
        return due

    def progress(self, busy):
        return {wid: (0, 0) for wid in busy}

    def kill(self, wid):
        raise AssertionError("a worker that never started is given up, not killed to be replaced")

    def give_up(self, wid):
        self.killed.append(wid)

    def restart(self, wid):
        raise AssertionError("a worker that never started is not restarted")


@pytest.mark.parametrize("silent", [{1}, {0, 1}])
def test_a_worker_that_never_starts_is_given_up_after_the_start_timeout(silent):
    import io
    from types import SimpleNamespace

    from ditto_core.batch.dispatch import Dispatcher
    from ditto_core.batch.errors import BatchError
    from ditto_core.batch.jobs import Job
    from ditto_core.batch.report import Progress

    jobs = [Job(SimpleNamespace(name=f"job{i}", line=i + 2), Path(f"job{i}.mp4"), None, f"key{i}") for i in range(3)]
    executor, recorded, err = SilentStarts(2, silent), [], io.StringIO()
    dispatcher = Dispatcher(executor, jobs, recorded.append, Progress(3, out=io.StringIO(), err=err), err,
                            start_timeout=0.3)
    if silent == {0, 1}:  # nobody to render: one error instead of waiting for ever
        with pytest.raises(BatchError, match="no worker is left .* 3 remaining"):
            dispatcher.run()
    else:
        dispatcher.run()
        assert [r.name for r in recorded] == ["job0", "job1", "job2"] and {r.status for r in recorded} == {"ok"}
    assert executor.killed == sorted(silent)
    assert "worker 1 did not start within 0.3 s and was given up" in err.getvalue()
