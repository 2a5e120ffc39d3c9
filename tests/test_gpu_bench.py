"""bench/gpu.py, the one command that answers the GPU questions, run as the README says on the CPU with the small
fake release (--quick), so that it never rots between the sessions that have a GPU: every section is written,
figures are numbers, and what was not measured says why."""

import json
import math
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_quick_cpu_run_writes_every_section(tmp_path):
    out = tmp_path / "report"
    run = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu.py"), "--out", str(out), "--device", "cpu",
                          "--small", "--quick", "--budget", "3000"],
                         capture_output=True, text=True, timeout=1800)
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads((out / "gpu-report.json").read_text())
    assert set(report) == {"device", "correctness", "speed", "live", "memory", "host", "not_measured"}
    assert report["device"]["device"] == "cpu" and report["device"]["torch"]
    # nothing failed: every part not measured is one the CPU cannot have or --quick leaves out
    reasons = report["not_measured"]
    assert set(reasons) <= {"speed/encode h264_nvenc", "speed/stages torch.compile", "speed/LMDM window CUDA graph",
                            "memory/ComfyUI model management", "correctness/one-pass clip, device against CPU"}, reasons
    networks = report["correctness"]["networks, device fp32 against CPU fp32"]["fp32"]
    assert set(networks) >= {"appearance_extractor", "motion_extractor", "warp_network", "decoder", "stitch_network"}
    assert all(entry["rel"] == 0 and entry["ok"] for entry in networks.values())  # the CPU against itself
    assert report["correctness"]["auto precision against fp32"]["within bound"] is True
    stages = report["speed"]["stages eager"]
    assert {"batch 1 (ms/frame)", "batch 4 (ms/frame)", "LMDM window (80 frames)"} <= set(stages)
    assert all(value > 0 for value in stages["batch 4 (ms/frame)"].values())
    encode = report["speed"]["paste-back and encode"]
    assert encode["paste-back 1080p (ms/frame)"] > 0
    assert encode["encode 1080p libx264 veryfast crf/cq 18"]["psnr dB"] > 30  # the frames it was given came back
    for label in ("end to end 512", "end to end 1080p"):
        assert report["speed"][label]["frames"] > 0 and report["speed"][label]["frames/s"] > 0
    assert 0 < report["speed"]["end to end 1080p"]["host share (paste-back + hand-off)"] < 1
    for sessions in ("1 sessions", "2 sessions"):
        live = report["live"][sessions]
        assert live["sessions admitted"] == int(sessions[0]) and live["frames/s per session (min)"] > 0
        assert live["look-ahead ms"] > 0 and live["first frame ms (client)"] > 0
    assert len(report["memory"]) == 2 and all(math.isfinite(next(iter(v.values()))) for v in report["memory"].values())
    host = report["host"]["1080p"]
    assert host["host side of a 1080p frame (ms)"] > 0 and host["render 1080p, small release, wall per extra frame (ms)"] > 0
    markdown = (out / "gpu-report.md").read_text()
    for section in ("## device", "## correctness", "## speed", "## live", "## memory", "## host", "## not_measured"):
        assert section in markdown
