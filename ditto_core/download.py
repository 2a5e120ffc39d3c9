"""Opt-in download of the official release from the Hugging Face hub: one commit, every file checked against the
hub's own hash for that commit, every file written atomically.

The hub's metadata for a commit lists each file's size and hash: the sha256 of the content for LFS files, the git
blob id for small files kept in git. Each file is streamed into a temporary file beside its destination, hashed on
the way, and renamed into place only when size and hash match, so a failed, cut or tampered download never leaves
a file that looks complete. The commit and the hashes are recorded in ``ditto_pytorch/release.json``; a later
download reuses that commit unless another revision is asked for, and keeps the files that still match.

Nothing here runs unless a user asks for it (``python -m ditto_core download`` or the Load Models node's switch).
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from .files import atomic_write_bytes, finish_atomically, temporary_sibling
from .release import HF_REPO, PYTORCH_DIR, RELEASE_FILES, resolve_release_root

MANIFEST = f"{PYTORCH_DIR}/release.json"
CHUNK_BYTES = 1 << 20
COMMIT_ID = re.compile(r"[0-9a-f]{40}")
ACCESS_HINT = " (log in with `hf auth login` or set HF_TOKEN)"
NO_REVISION_HINT = f" (pass --revision main, or delete {MANIFEST} to follow main again)"


class DownloadError(RuntimeError):
    """A download that could not be completed or verified; nothing half-written is left behind."""


@dataclass(frozen=True)
class ExpectedFile:
    path: str  # relative to the release root
    size: int
    sha256: str | None = None  # LFS files: the content's sha256
    git_blob: str | None = None  # files kept in git: sha1 of "blob <size>\0" + content

    def hasher(self):
        if self.sha256:
            return hashlib.sha256()
        digest = hashlib.sha1()
        digest.update(b"blob %d\0" % self.size)
        return digest

    @property
    def digest(self) -> str:
        return self.sha256 or self.git_blob or ""

    @property
    def algorithm(self) -> str:
        return "sha256" if self.sha256 else "git blob id"


@dataclass(frozen=True)
class ReleaseRevision:
    commit: str
    files: dict[str, ExpectedFile]  # keyed like RELEASE_FILES


@dataclass(frozen=True)
class DownloadReport:
    root: Path
    commit: str
    downloaded: list[str]
    kept: list[str]  # already present with the right hash


ProgressCallback = Callable[[str, int, int], None]  # (release path, bytes done, bytes in all)


def resolve_revision(revision: str = "main", endpoint: str | None = None, token: str | None = None) -> ReleaseRevision:
    """Ask the hub which commit ``revision`` is and what size and hash each release file has there."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    try:
        info = HfApi(endpoint=endpoint, token=token).model_info(HF_REPO, revision=revision, files_metadata=True)
    except HfHubHTTPError as exc:
        status = getattr(exc.response, "status_code", None)
        hint = {401: ACCESS_HINT, 403: ACCESS_HINT, 404: NO_REVISION_HINT}.get(status, "")
        raise DownloadError(f"cannot read {HF_REPO} at revision {revision!r} from the Hugging Face hub{hint}: "
                            f"{exc}") from exc
    except Exception as exc:  # the hub client's connection errors differ between its versions (requests, httpx)
        raise DownloadError(f"cannot reach the Hugging Face hub ({type(exc).__name__}: {exc}); check the network "
                            f"or proxy settings, or download the files by hand") from exc
    if not info.sha or not COMMIT_ID.fullmatch(info.sha):
        raise DownloadError(f"the hub did not name a commit for {HF_REPO} at revision {revision!r}")
    siblings = {sibling.rfilename: sibling for sibling in info.siblings or []}
    absent = [file.path for file in RELEASE_FILES.values() if file.path not in siblings]
    if absent:
        raise DownloadError(f"{HF_REPO} at commit {info.sha} lacks {', '.join(absent)}; choose another revision")
    files = {}
    for name, file in RELEASE_FILES.items():
        sibling = siblings[file.path]
        if sibling.lfs is not None:
            files[name] = ExpectedFile(file.path, sibling.lfs.size, sha256=sibling.lfs.sha256)
        elif sibling.blob_id and sibling.size is not None:
            files[name] = ExpectedFile(file.path, sibling.size, git_blob=sibling.blob_id)
        else:
            raise DownloadError(f"the hub lists no hash for {file.path} at commit {info.sha}; refusing an "
                                f"unverifiable download")
    return ReleaseRevision(info.sha, files)


def file_matches(path: Path, expected: ExpectedFile) -> bool:
    """Whether ``path`` holds exactly the expected bytes."""
    if not path.is_file() or path.stat().st_size != expected.size:
        return False
    digest = expected.hasher()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest() == expected.digest


def _open(url: str, token: str | None):
    from huggingface_hub.utils import build_hf_headers

    request = urllib.request.Request(url)
    for key, value in build_hf_headers(token=token).items():
        # unredirected: the token goes to the hub, not to the storage host it redirects to
        request.add_unredirected_header(key, value)
    try:
        return urllib.request.urlopen(request, timeout=60)
    except urllib.error.HTTPError as exc:
        hint = ACCESS_HINT if exc.code in (401, 403) else ""
        raise DownloadError(f"download of {url} failed: HTTP {exc.code} {exc.reason}{hint}") from exc
    except (OSError, http.client.HTTPException, ValueError) as exc:  # URLError is an OSError
        raise DownloadError(f"download of {url} failed: {exc}; check the network and run the download again") from exc


def _remove_stale_parts(destination: Path) -> None:
    """Temporary files of earlier downloads of ``destination`` that were killed before they could clean up."""
    for stale in destination.parent.glob(f".{destination.stem}.*.part"):
        stale.unlink(missing_ok=True)


def download_file(url: str, destination: Path, expected: ExpectedFile, token: str | None = None,
                  progress: ProgressCallback | None = None) -> Path:
    """Stream ``url`` into ``destination``, which appears only once its size and hash are the expected ones."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_parts(destination)
    tmp_name = temporary_sibling(destination, ".part")
    try:
        digest, done = expected.hasher(), 0
        with _open(url, token) as response, open(tmp_name, "wb") as out:
            while True:
                try:
                    chunk = response.read(CHUNK_BYTES)
                except (OSError, http.client.HTTPException) as exc:
                    raise DownloadError(f"download of {expected.path} broke off after {done} of {expected.size} "
                                        f"bytes ({exc}); run the download again") from exc
                if not chunk:
                    break
                done += len(chunk)
                if done > expected.size:
                    break  # more than the hub lists: refused below, without writing the rest
                out.write(chunk)  # a full disk raises OSError here, with its own message
                digest.update(chunk)
                if progress is not None:
                    progress(expected.path, done, expected.size)
        if done < expected.size:
            raise DownloadError(f"download of {expected.path} broke off after {done} of {expected.size} bytes; "
                                f"run the download again")
        if done != expected.size or digest.hexdigest() != expected.digest:
            received = f"more than {expected.size} bytes" if done > expected.size else (
                f"{done} bytes with {expected.algorithm} {digest.hexdigest()}")
            raise DownloadError(
                f"{expected.path}: received {received}, but the hub lists {expected.size} bytes with "
                f"{expected.digest}; the file was discarded. Run the download again; if this repeats, the file on "
                f"the hub or a proxy in between is not the released one."
            )
        finish_atomically(tmp_name, destination)
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
    return destination


def recorded_commit(root: str | Path) -> str | None:
    """The commit a previous download recorded under ``root``, if any."""
    manifest = resolve_release_root(root) / MANIFEST
    if not manifest.is_file():
        return None
    try:
        commit = json.loads(manifest.read_text()).get("commit")
    except (ValueError, AttributeError):
        return None
    return commit if isinstance(commit, str) and COMMIT_ID.fullmatch(commit) else None


def download_release(root: str | Path, revision: str | None = None, endpoint: str | None = None,
                     token: str | None = None, progress: ProgressCallback | None = None) -> DownloadReport:
    """Bring the release files into ``root`` (the folder that holds ``ditto_pytorch/``), each verified.

    ``revision``: a branch, tag or commit of the hub repo; by default the commit recorded by an earlier download,
    else ``main`` (resolved to its commit once, then recorded). Files already present with the right hash are kept.
    ``endpoint``: the hub or a mirror of it (default: ``$HF_ENDPOINT``, else huggingface.co); the hashes are still
    the ones the endpoint lists for the commit.
    """
    from huggingface_hub import hf_hub_url

    endpoint = endpoint or os.environ.get("HF_ENDPOINT") or None  # a mirror, e.g. https://hf-mirror.com
    root = resolve_release_root(root)
    pinned = resolve_revision(revision or recorded_commit(root) or "main", endpoint, token)
    downloaded, kept = [], []
    for expected in pinned.files.values():
        destination = root / expected.path
        if file_matches(destination, expected):
            kept.append(expected.path)
            continue
        url = hf_hub_url(HF_REPO, expected.path, revision=pinned.commit, endpoint=endpoint)
        download_file(url, destination, expected, token, progress)
        downloaded.append(expected.path)
    record = {"repo": HF_REPO, "commit": pinned.commit,
              "files": {f.path: {k: v for k, v in asdict(f).items() if k != "path" and v is not None}
                        for f in pinned.files.values()}}
    atomic_write_bytes(root / MANIFEST, (json.dumps(record, indent=1) + "\n").encode())
    return DownloadReport(root, pinned.commit, downloaded, kept)
