"""The opt-in release downloader, run against a local stand-in for the Hugging Face hub."""

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from ditto_core.download import MANIFEST, DownloadError, download_release, recorded_commit
from ditto_core.networks import load_networks
from ditto_core.release import RELEASE_FILES, check_release
from ditto_core.testing.fake_hub import COMMIT, FakeHub

ROOT = Path(__file__).resolve().parents[1]
GIT_FILE = RELEASE_FILES["face_landmarker"].path
LMDM = RELEASE_FILES["lmdm"].path


@pytest.fixture
def hub(small_release):
    with FakeHub(small_release, stored_in_git=(GIT_FILE,)) as fake:
        yield fake


def leftovers(folder: Path) -> list[Path]:
    """Anything but the release files and the manifest: temporary files must never remain."""
    expected = {f.path for f in RELEASE_FILES.values()} | {MANIFEST}
    return [p for p in folder.rglob("*") if p.is_file() and p.relative_to(folder).as_posix() not in expected]


def test_download_brings_the_verified_release_and_pins_its_commit(hub, small_release, tmp_path):
    seen = []
    report = download_release(tmp_path, endpoint=hub.endpoint, progress=lambda path, done, total: seen.append(path))
    assert report.commit == COMMIT and report.kept == []
    assert sorted(report.downloaded) == sorted(f.path for f in RELEASE_FILES.values())
    for file in RELEASE_FILES.values():
        assert (tmp_path / file.path).read_bytes() == (small_release / file.path).read_bytes()
    assert set(seen) == {f.path for f in RELEASE_FILES.values()}
    # every file was fetched from the resolved commit, never from a moving branch
    assert all(f"/resolve/{COMMIT}/" in url for url in hub.downloads)
    manifest = json.loads((tmp_path / MANIFEST).read_text())
    assert manifest["commit"] == COMMIT == recorded_commit(tmp_path)
    lmdm_bytes = (small_release / LMDM).read_bytes()
    assert manifest["files"][LMDM] == {"size": len(lmdm_bytes), "sha256": hashlib.sha256(lmdm_bytes).hexdigest()}
    assert set(manifest["files"][GIT_FILE]) == {"size", "git_blob"}
    assert check_release(tmp_path).complete and not leftovers(tmp_path)
    assert load_networks(tmp_path).lmdm is not None


def test_a_second_download_keeps_matching_files_and_repairs_damaged_ones(hub, tmp_path):
    download_release(tmp_path, endpoint=hub.endpoint)
    hub.downloads.clear()
    damaged = tmp_path / LMDM
    damaged.write_bytes(damaged.read_bytes()[:100])
    report = download_release(tmp_path, endpoint=hub.endpoint)
    assert report.downloaded == [LMDM] and len(report.kept) == len(RELEASE_FILES) - 1
    assert hub.downloads == [f"/digital-avatar/ditto-talkinghead/resolve/{COMMIT}/{LMDM}"]
    assert check_release(tmp_path).complete


@pytest.mark.parametrize("fault", ["tampered", "cut"])
@pytest.mark.parametrize("path", [LMDM, GIT_FILE])
def test_a_bad_transfer_leaves_no_file_that_looks_complete(hub, tmp_path, fault, path):
    getattr(hub, fault).add(path)
    with pytest.raises(DownloadError, match="download again") as error:
        download_release(tmp_path, endpoint=hub.endpoint)
    assert path in str(error.value)
    assert not (tmp_path / path).exists()
    assert not leftovers(tmp_path)
    assert not (tmp_path / MANIFEST).exists()


def test_an_oversized_transfer_is_refused_without_writing_it_all(hub, small_release, tmp_path):
    hub.padded.add(LMDM)
    written = []
    with pytest.raises(DownloadError, match=r"received more than \d+ bytes, but the hub lists"):
        download_release(tmp_path, endpoint=hub.endpoint,
                         progress=lambda path, done, total: written.append(done) if path == LMDM else None)
    assert written and max(written) <= (small_release / LMDM).stat().st_size  # the surplus was never written
    assert not (tmp_path / LMDM).exists() and not leftovers(tmp_path)


def test_the_token_reaches_the_hub_but_not_the_storage_it_redirects_to(hub, tmp_path):
    hub.redirect = True
    download_release(tmp_path, endpoint=hub.endpoint, token="hf_secret")
    assert check_release(tmp_path).complete
    assert hub.authorization["resolve"] and set(hub.authorization["resolve"]) == {"Bearer hf_secret"}
    assert len(hub.authorization["storage"]) == len(RELEASE_FILES) and set(hub.authorization["storage"]) == {None}


def test_stale_temporary_files_of_killed_downloads_are_removed(hub, tmp_path):
    stale = tmp_path / "ditto_pytorch" / "models" / ".lmdm_v0.4_hubert.abc123.part"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"half of a file from a download that was killed")
    download_release(tmp_path, endpoint=hub.endpoint)
    assert not stale.exists() and not leftovers(tmp_path)


def test_a_bad_transfer_keeps_the_good_file_already_there(hub, tmp_path):
    download_release(tmp_path, endpoint=hub.endpoint)
    before = (tmp_path / LMDM).read_bytes()
    (tmp_path / LMDM).write_bytes(before[:-1])  # damaged locally, then the transfer is tampered with
    hub.tampered.add(LMDM)
    with pytest.raises(DownloadError, match="sha256"):
        download_release(tmp_path, endpoint=hub.endpoint)
    assert (tmp_path / LMDM).read_bytes() == before[:-1]  # untouched: never replaced by unverified bytes
    assert not leftovers(tmp_path)


def test_unknown_revision_and_refused_access_are_explained(hub, tmp_path):
    with pytest.raises(DownloadError, match="revision 'v9'"):
        download_release(tmp_path, revision="v9", endpoint=hub.endpoint)
    hub.status = 401
    with pytest.raises(DownloadError, match="cannot read digital-avatar/ditto-talkinghead"):
        download_release(tmp_path, endpoint=hub.endpoint)
    assert not any(tmp_path.iterdir())


def test_a_release_lacking_a_file_is_refused(small_release, tmp_path):
    partial = tmp_path / "partial"
    for file in RELEASE_FILES.values():
        if file.path != LMDM:
            (partial / file.path).parent.mkdir(parents=True, exist_ok=True)
            (partial / file.path).write_bytes((small_release / file.path).read_bytes())
    with FakeHub(partial) as hub, pytest.raises(DownloadError, match="lacks ditto_pytorch/models/lmdm"):
        download_release(tmp_path / "out", endpoint=hub.endpoint)


def test_unreachable_hub(tmp_path):
    with pytest.raises(DownloadError, match="cannot read|cannot reach"):
        download_release(tmp_path, endpoint="http://127.0.0.1:9")


def test_download_command(hub, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
    done = subprocess.run([sys.executable, "-m", "ditto_core", "download", "--models", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"commit {COMMIT}; {len(RELEASE_FILES)} downloaded, 0 already verified" in done.stdout
    assert check_release(tmp_path).complete
    hub.tampered.add(LMDM)
    (tmp_path / LMDM).unlink()
    done = subprocess.run([sys.executable, "-m", "ditto_core", "download", "--models", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1 and "the file was discarded" in done.stderr and not (tmp_path / LMDM).exists()
