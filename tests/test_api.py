"""The public API: importable after `pip install .`, and the README's Python example runs as written."""

import os
import re
import subprocess
import sys
from pathlib import Path

import av

from ditto_core.testing.fake_release import copy_release

ROOT = Path(__file__).resolve().parents[1]


def readme_example() -> str:
    section = ROOT.joinpath("README.md").read_text().split("## Python API", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def video_frames(path: Path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


def test_the_readme_python_example_runs_as_written(small_release, tmp_path):
    copy_release(small_release, tmp_path / "models" / "ditto")
    (tmp_path / "assets").symlink_to(ROOT / "assets")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", readme_example()], cwd=tmp_path, env=env, capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr
    frames = 84  # ⌈3.354 s × 25⌉ of assets/speech.wav
    assert video_frames(tmp_path / "output" / "api.mp4") == frames
    assert video_frames(tmp_path / "output" / "api_edited.mp4") == frames
    from ditto_core import Motion

    saved = Motion.load(tmp_path / "output" / "api_motion.safetensors")
    assert len(saved) == frames and saved.metadata["emotion"] == "['happy', 'surprise']"


def test_pip_install_gives_the_library_and_its_public_api(tmp_path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target",
                    str(target), str(ROOT)], check=True, capture_output=True, cwd=tmp_path)
    assert (target / "ditto_core" / "__init__.py").is_file() and not (target / "nodes").exists()
    code = ("import ditto_core, sys; assert 'torch' not in sys.modules; "
            "from ditto_core import " + ", ".join(__import__("ditto_core").__all__) + "; "
            "print(ditto_core.__file__)")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"PYTHONPATH": str(target)}
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().startswith(str(target))


def test_requirements_and_pyproject_list_the_same_dependencies():
    import tomllib

    project = tomllib.loads(ROOT.joinpath("pyproject.toml").read_text())["project"]
    assert sorted(project["dependencies"]) == sorted(requirements())
    assert not any(dep.startswith("torch") for dep in project["dependencies"])


def requirements() -> list[str]:
    lines = [line.split("#")[0].strip() for line in ROOT.joinpath("requirements.txt").read_text().splitlines()]
    return [line for line in lines if line]


def test_one_package_provides_cv2():
    """mediapipe brings opencv-contrib-python; a second OpenCV package would fight it over the cv2 folder."""
    from importlib import metadata

    assert not any(line.lower().startswith("opencv") for line in requirements())
    providers = {(d.metadata["Name"] or "").lower() for d in metadata.distributions()}
    assert len({name for name in providers if name.startswith("opencv")}) == 1, providers


def hf_download_lines() -> list[str]:
    from ditto_core.release import download_instructions

    readme = [line.strip() for line in ROOT.joinpath("README.md").read_text().splitlines()
              if line.strip().startswith("hf download ")]
    made = [line.strip() for line in download_instructions("/models").splitlines() if "hf download" in line]
    return readme + made


def test_the_manual_download_command_fits_the_installed_huggingface_hub():
    import shlex

    lines = hf_download_lines()
    assert len(lines) >= 2
    usage = subprocess.run([sys.executable, "-m", "huggingface_hub.cli.hf", "download", "--help"],
                           capture_output=True, text=True)
    assert usage.returncode == 0, usage.stderr
    for line in lines:
        words = shlex.split(line)
        assert words[:3] == ["hf", "download", "digital-avatar/ditto-talkinghead"]
        for option in (w for w in words if w.startswith("--")):
            assert option in usage.stdout, f"{option} is not an option of the installed hf download"
