"""A local stand-in for the Hugging Face hub, serving a release folder, to test the downloader for real.

It answers the two requests the downloader makes, as the hub does: the model metadata of a revision with file
sizes and hashes (``/api/models/<repo>/revision/<rev>?blobs=true``) and file downloads
(``/<repo>/resolve/<commit>/<path>``), optionally redirected to a storage path as the hub redirects to its CDN.
Faults can be switched on per file: wrong bytes, extra bytes, a connection cut half-way, or an HTTP status for
every request.

    with FakeHub(release_root) as hub:
        download_release(target, endpoint=hub.endpoint)

For a check by hand (e.g. a real ComfyUI started with ``HF_ENDPOINT=http://127.0.0.1:8790``):

    python -m ditto_core.testing.fake_hub RELEASE_ROOT --port 8790
"""

from __future__ import annotations

import hashlib
import http.server
import json
import threading
from pathlib import Path
from urllib.parse import unquote, urlparse

from ..download import CHUNK_BYTES
from ..release import HF_REPO

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class FakeHub:
    def __init__(self, release_root: str | Path, commit: str = COMMIT, stored_in_git: tuple[str, ...] = (),
                 port: int = 0):  # 0: any free port
        self.root = Path(release_root)
        self.commit = commit
        self.stored_in_git = set(stored_in_git)  # paths listed with a git blob id instead of LFS metadata
        self.tampered: set[str] = set()  # served with one byte changed
        self.cut: set[str] = set()  # connection closed after half of the announced bytes
        self.padded: set[str] = set()  # served with extra bytes after the real ones
        self.status: int | None = None  # answer every request with this HTTP status
        self.redirect = False  # answer resolve requests with a redirect to /storage/<path>, as the hub does
        self.downloads: list[str] = []  # resolve URLs requested, in order
        self.authorization: dict[str, list[str | None]] = {"resolve": [], "storage": []}  # headers seen
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> FakeHub:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def siblings(self) -> list[dict]:
        entries = []
        for path in sorted(p for p in self.root.rglob("*") if p.is_file()):
            name = path.relative_to(self.root).as_posix()
            data = path.read_bytes()
            entry = {"rfilename": name, "size": len(data), "blobId": git_blob_id(data)}
            if name not in self.stored_in_git:
                entry["lfs"] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest(), "pointerSize": 134}
                entry["size"] = 134
            entries.append(entry)
        return entries

    def _handler(self):
        hub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def _send(self, status: int, body: bytes, length: int | None = None) -> None:
                self.send_response(status)
                self.send_header("Content-Length", str(len(body) if length is None else length))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                if hub.status is not None:
                    return self._send(hub.status, json.dumps({"error": "refused"}).encode())
                path = unquote(urlparse(self.path).path)
                meta_prefix = f"/api/models/{HF_REPO}/revision/"
                file_prefix = f"/{HF_REPO}/resolve/"
                if path.startswith(meta_prefix):
                    if path[len(meta_prefix):] not in ("main", hub.commit):
                        return self._send(404, json.dumps({"error": "Revision not found"}).encode())
                    info = {"id": HF_REPO, "modelId": HF_REPO, "sha": hub.commit, "siblings": hub.siblings()}
                    return self._send(200, json.dumps(info).encode())
                if path.startswith(file_prefix):
                    revision, _, name = path[len(file_prefix):].partition("/")
                    if revision != hub.commit or not (hub.root / name).is_file():
                        return self._send(404, b"not found")
                    hub.downloads.append(path)
                    hub.authorization["resolve"].append(self.headers.get("Authorization"))
                    if hub.redirect:
                        self.send_response(302)
                        self.send_header("Location", f"/storage/{name}")
                        self.send_header("Content-Length", "0")
                        return self.end_headers()
                    return self._send_file(name)
                if path.startswith("/storage/"):
                    hub.authorization["storage"].append(self.headers.get("Authorization"))
                    return self._send_file(path[len("/storage/"):])
                return self._send(404, b"not found")

            def _send_file(self, name: str) -> None:
                data = (hub.root / name).read_bytes()
                if name in hub.tampered:
                    data = data[:-1] + bytes([data[-1] ^ 1])
                if name in hub.padded:
                    data += bytes(CHUNK_BYTES + 1)
                if name in hub.cut:
                    return self._send(200, data[: len(data) // 2], length=len(data))
                return self._send(200, data)

        return Handler


def main() -> None:
    import argparse
    import time

    parser = argparse.ArgumentParser(description="Serve a release folder as a local stand-in for the hub.")
    parser.add_argument("release_root")
    parser.add_argument("--port", type=int, default=8790)
    parser.add_argument("--redirect", action="store_true", help="redirect downloads to /storage/, as the hub does")
    args = parser.parse_args()
    with FakeHub(args.release_root, port=args.port) as hub:
        hub.redirect = args.redirect
        print(f"serving {args.release_root} as {HF_REPO} at {hub.endpoint} (commit {hub.commit})", flush=True)
        while True:
            time.sleep(3600)


if __name__ == "__main__":
    main()
