"""Batch throughput: one worker against N, in local worker processes and as actors on a local Ray instance.

    python bench/batch.py [--jobs 6] [--seconds 1.0] [--workers 2] [--steps 2] [--no-ray]

Every run renders the same manifest (the shipped portrait and the first ``--seconds`` of the shipped speech,
one seed per job) from scratch into a fresh folder, with the small fake release; the wall time counts
everything a user waits for: workers starting and loading the models (and Ray starting, with --ray local).
The machine's load average is printed beside each figure: other work on the machine slows it down.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
import time
from pathlib import Path

import soundfile

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ditto_core.batch import RESULTS_FILE, read_results, run_batch  # noqa: E402
from ditto_core.testing.fake_release import write_fake_release  # noqa: E402


def write_jobs(folder: Path, jobs: int, seconds: float, steps: int) -> Path:
    samples, rate = soundfile.read(ROOT / "assets" / "speech.wav", dtype="float32")
    soundfile.write(folder / "speech.wav", samples[: int(seconds * rate)], rate)
    manifest = folder / "jobs.csv"
    lines = ["portrait,audio,name,seed,steps"]
    lines += [f"{ROOT / 'assets' / 'portrait.jpg'},speech.wav,job{index},{index},{steps}" for index in range(jobs)]
    manifest.write_text("\n".join(lines) + "\n")
    return manifest


def measure(manifest: Path, models: Path, out: Path, workers: int, ray: str | None) -> dict:
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    summary = run_batch(manifest, models, out, workers=workers, ray_address=ray, out=io.StringIO(),
                        err=io.StringIO())
    wall = time.perf_counter() - start
    if not summary.all_good:
        raise SystemExit(f"the batch failed: {summary.line()}; see {out / RESULTS_FILE}")
    finished = read_results(out / RESULTS_FILE)[0].values()
    frames = sum(record["frames"] for record in finished)
    busy = sum(record["seconds"] for record in finished)
    return {"wall": wall, "frames": frames, "jobs": len(finished), "job_s": busy / len(finished),
            "load": (load_before, os.getloadavg()[0])}


def row(label: str, workers: int, figures: dict, base: dict | None) -> str:
    fps = figures["frames"] / figures["wall"]
    jobs_h = 3600 * figures["jobs"] / figures["wall"]
    scaling = f"{base['wall'] / figures['wall']:.2f}x" if base else "1.00x"
    before, after = figures["load"]
    return (f"| {label} | {workers} | {figures['jobs']} | {figures['frames']} | {figures['wall']:.1f} | {fps:.2f} | "
            f"{jobs_h:.0f} | {figures['job_s']:.1f} | {scaling} | {before:.2f} → {after:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=6, help="jobs in the manifest (default %(default)s)")
    parser.add_argument("--seconds", type=float, default=1.0, help="speech per job (default %(default)s)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2,
                        help="N, the larger worker count (default: the CPU count, %(default)s)")
    parser.add_argument("--steps", type=int, default=2, help="diffusion steps per window (default %(default)s)")
    parser.add_argument("--no-ray", action="store_true", help="skip the local Ray instance")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        models = write_fake_release(tmp / "models", small=True, seed=1)
        manifest = write_jobs(tmp, args.jobs, args.seconds, args.steps)
        modes = [("local", None)] + ([] if args.no_ray else [("ray local", "local")])
        print(f"{os.cpu_count()} CPUs; {args.jobs} jobs of {args.seconds:g} s speech, {args.steps} steps, small fake "
              f"release; wall time includes starting the workers and loading the models\n")
        print("| mode | workers | jobs | frames | wall s | frames/s | jobs/hour | s per job | scaling | load avg |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        for label, ray in modes:
            base = None
            for workers in sorted({1, args.workers}):
                figures = measure(manifest, models, tmp / f"out-{label}-{workers}".replace(" ", "-"), workers, ray)
                print(row(label, workers, figures, base), flush=True)
                base = base or figures


if __name__ == "__main__":
    main()
