"""The command line never wastes work: outputs checked before computing, Ctrl-C clean, options documented."""

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ASSETS = ["--portrait", ROOT / "assets" / "portrait.jpg", "--audio", ROOT / "assets" / "speech.wav"]


def cli(*args, **kwargs):
    return subprocess.run([sys.executable, "-m", "ditto_core", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, **kwargs)


def test_outputs_go_into_new_folders_and_get_their_extension(small_release, tmp_path):
    done = cli("render", *ASSETS, "--models", small_release, "--out", tmp_path / "new" / "clip",
               "--save-motion", tmp_path / "deeper" / "still" / "motion", "--steps", "2", "--device", "cpu",
               "--detection-threshold", "0.3", "--encoder", "libx264", "--preset", "ultrafast")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "new" / "clip.mp4").stat().st_size > 0
    assert b"cabac=0 " in (tmp_path / "new" / "clip.mp4").read_bytes()  # x264's settings: the ultrafast preset's
    assert (tmp_path / "deeper" / "still" / "motion.safetensors").is_file()
    assert "writing " + str(tmp_path / "new" / "clip.mp4") in done.stderr
    features = cli("features", "--audio", ROOT / "assets" / "speech.wav", "--models", small_release,
                   "--out", tmp_path / "f" / "feats")
    assert features.returncode == 0, features.stderr
    assert (tmp_path / "f" / "feats.npy").is_file()


def test_a_wrong_extension_is_refused_before_any_work(small_release, tmp_path):
    done = cli("render", *ASSETS, "--models", small_release, "--out", tmp_path / "clip.avi")
    assert done.returncode == 1 and done.stderr.strip() == f"error: --out must be a .mp4 file, got {tmp_path / 'clip.avi'}"
    motion = cli("render", *ASSETS, "--models", small_release, "--out", tmp_path / "a.mp4", "--save-motion",
                 tmp_path / "m.json")
    assert motion.returncode == 1 and "--save-motion must be a .safetensors file" in motion.stderr
    assert not list(tmp_path.iterdir())


def test_a_missing_portrait_is_one_line(small_release, tmp_path):
    done = cli("render", "--portrait", tmp_path / "nope.jpg", "--audio", ROOT / "assets" / "speech.wav",
               "--models", small_release, "--out", tmp_path / "a.mp4")
    assert done.returncode == 1 and done.stderr.strip() == f"error: portrait image not found: {tmp_path / 'nope.jpg'}"


def test_ctrl_c_stops_with_one_line_and_no_partial_file(small_release, tmp_path):
    out = tmp_path / "out"
    process = subprocess.Popen([sys.executable, "-m", "ditto_core", "render", *map(str, ASSETS), "--models",
                                str(small_release), "--out", str(out / "clip.mp4"), "--save-motion",
                                str(out / "clip.safetensors"), "--device", "cpu"],
                               cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list(out.glob(".clip.*.mp4")) and time.monotonic() < deadline:  # the video is being written
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    lines = [line for line in stderr.replace("\r", "\n").splitlines() if line and not line.startswith("rendering")]
    assert lines[-1] == "interrupted; no partial file was left"
    assert [p.name for p in out.iterdir()] == []


def test_the_readme_lists_every_render_option():
    readme = ROOT.joinpath("README.md").read_text()
    paragraph = readme[readme.index("`render` options"):]
    paragraph = paragraph[: paragraph.index("\n\n")]
    documented = set(re.findall(r"--[a-z][a-z-]+", paragraph))
    usage = cli("render", "--help").stdout
    options = set(re.findall(r"^  (--[a-z][a-z-]+)", usage, re.M)) - {"--help"}
    assert len(options) > 15 and documented == options - {"--portrait", "--audio", "--out", "--models"}
    for option in options:  # every option has its help text
        assert re.search(rf"^  {option}( [A-Z_]+| \{{[a-z0-9,-]+\}})?\n? +[a-zA-Z(]", usage, re.M), option


def test_the_readmes_first_command_downloads_the_release_then_renders(small_release, tmp_path):
    """The quick start's one paste, its ditto_core commands run as written (in a fresh folder holding the assets,
    the hub faked) from a folder without models: the download comes first and the video follows."""
    import os
    import shlex

    from ditto_core.testing.fake_hub import FakeHub

    readme = ROOT.joinpath("README.md").read_text()
    section = readme[readme.index("## Quick start"):]
    first = next(line.strip() for line in section.splitlines() if line.startswith("    "))
    commands = [shlex.split(part) for part in first.split("&&")]
    ours = [words for words in commands if words[:3] == ["python", "-m", "ditto_core"]]
    assert [words[3] for words in ours] == ["download", "render"]
    (tmp_path / "assets").symlink_to(ROOT / "assets")
    with FakeHub(small_release) as hub:
        env = {**os.environ, "HF_ENDPOINT": hub.endpoint, "PYTHONPATH": str(ROOT)}
        for words in ours:
            done = subprocess.run([sys.executable, *words[1:]], cwd=tmp_path, env=env, capture_output=True, text=True)
            assert done.returncode == 0, done.stderr
    assert (tmp_path / "models" / "ditto" / "ditto_pytorch" / "release.json").is_file()
    assert (tmp_path / "output" / "talking.mp4").stat().st_size > 0
