"""Release layout knowledge and the command-line check."""

import subprocess
import sys
from pathlib import Path

from ditto_core.release import NETWORK_FILES, RELEASE_FILES, check_release, release_path
from ditto_core.testing.fake_release import write_fake_release

ROOT = Path(__file__).resolve().parents[1]


def test_release_file_paths_are_the_official_ones():
    assert {f.path for f in NETWORK_FILES.values()} == {
        f"ditto_pytorch/models/{name}.pth"
        for name in ("appearance_extractor", "motion_extractor", "warp_network", "decoder", "stitch_network", "lmdm_v0.4_hubert")
    }
    assert {Path(f.path).name for f in RELEASE_FILES.values()} >= {
        "det_10g.onnx", "2d106det.onnx", "landmark203.onnx", "face_landmarker.task", "hubert_streaming_fix_kv.onnx"
    }
    assert RELEASE_FILES["lmdm"].url == (
        "https://huggingface.co/digital-avatar/ditto-talkinghead/resolve/main/ditto_pytorch/models/lmdm_v0.4_hubert.pth"
    )


def test_check_release_on_an_empty_folder(tmp_path):
    status = check_release(tmp_path)
    assert not status.complete and not status.present
    report = status.report()
    assert report.count("MISSING") == len(RELEASE_FILES)
    assert f'hf download digital-avatar/ditto-talkinghead --include "ditto_pytorch/*" --include "ditto_cfg/v0.4_hubert_cfg_pytorch.pkl" --include "ditto_cfg/v0.4_hubert_cfg_trt_online.pkl" --local-dir {tmp_path}' in report


def test_check_release_on_a_fake_release(tmp_path):
    small_release = write_fake_release(tmp_path, small=True)
    status = check_release(small_release)
    assert status.complete and set(status.present) == set(RELEASE_FILES)
    (small_release / RELEASE_FILES["face_detector"].path).unlink()
    status = check_release(small_release)
    assert set(status.missing) == {"face_detector"}
    assert '--include "ditto_pytorch/aux_models/det_10g.onnx"' in status.report()
    # the ditto_pytorch folder itself is accepted as the root too
    assert check_release(small_release / "ditto_pytorch").present == status.present


def test_empty_file_counts_as_missing(tmp_path):
    path = release_path(tmp_path, "decoder")
    path.parent.mkdir(parents=True)
    path.touch()
    assert "decoder" in check_release(tmp_path).missing


def _run(*args):
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_cli_writes_a_fake_release_and_checks_it(tmp_path):
    written = _run("ditto_core.testing.fake_release", str(tmp_path), "--small", "--seed", "3")
    assert written.returncode == 0, written.stderr
    checked = _run("ditto_core", "check", "--models", str(tmp_path), "--run")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "forward on random input → 1x3x512x512" in checked.stdout
    assert checked.stdout.count("loaded ") == len(NETWORK_FILES)


def test_cli_check_fails_clearly_without_models(tmp_path):
    checked = _run("ditto_core", "check", "--models", str(tmp_path))
    assert checked.returncode == 1
    assert f"{len(RELEASE_FILES)} of {len(RELEASE_FILES)} release files are missing (6 of 6 networks)" in checked.stdout
    assert "hf download digital-avatar/ditto-talkinghead" in checked.stdout
