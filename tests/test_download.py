"""Downloading and verifying datasets, against an HTTP server on loopback serving archives the test
builds; and dataset roots at fsspec URLs copied to a local cache."""

from __future__ import annotations

import hashlib
import http.server
import io
import re
import socket
import tarfile
import threading
import zipfile
from pathlib import Path

import pytest

from segaudit.data.download import DATASETS, Archive, DownloadError, ensure_dataset, fetch, materialize


class _Handler(http.server.BaseHTTPRequestHandler):
    """Serves ``server.files`` with HTTP range requests (206), and records each request's Range header."""

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        body = self.server.files.get(self.path)
        self.server.requests.append((self.path, self.headers.get("Range")))
        if body is None:
            self.send_error(404)
            return
        start = 0
        match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
        if match:
            start = int(match.group(1))
            if start >= len(body):
                self.send_error(416)
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        self.wfile.write(body[start:])

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.files, httpd.requests = {}, []
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _zip(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as handle:
        for name, data in files.items():
            handle.writestr(name, data)
    return buffer.getvalue()


def _tar(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as handle:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            handle.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def test_dataset_is_downloaded_verified_unpacked_and_then_left_alone(server, tmp_path) -> None:
    httpd, base = server
    images = _zip({"val2017/000000000139.jpg": b"\xff\xd8 jpeg bytes" * 100})
    labels = _tar({"VOCdevkit/VOC2012/SegmentationClass/2007_000032.png": b"png" * 50})
    httpd.files = {"/zips/val2017.zip": images, "/voc.tar": labels}
    archives = [Archive(f"{base}/zips/val2017.zip", _md5(images), "coco", "coco/val2017"),
                Archive(f"{base}/voc.tar", _md5(labels), ".", "VOCdevkit/VOC2012/SegmentationClass")]
    seen = []
    root = ensure_dataset(archives, tmp_path / "data", progress=lambda name, done, total: seen.append((name, done, total)))
    assert (root / "coco/val2017/000000000139.jpg").read_bytes() == b"\xff\xd8 jpeg bytes" * 100
    assert (root / "VOCdevkit/VOC2012/SegmentationClass/2007_000032.png").is_file()
    assert seen[-1] == ("voc.tar", len(labels), len(labels)) and ("val2017.zip", len(images), len(images)) in seen
    assert not list((root / "downloads").iterdir())  # archives removed once unpacked
    served = len(httpd.requests)
    ensure_dataset(archives, root)
    assert len(httpd.requests) == served  # present: nothing downloaded again


def test_interrupted_download_resumes_with_a_range_request(server, tmp_path) -> None:
    httpd, base = server
    body = bytes(range(256)) * 400
    httpd.files = {"/big.zip": body}
    dest = tmp_path / "big.zip"
    (tmp_path / "big.zip.part").write_bytes(body[:40_000])  # what an interrupted download left
    assert fetch(f"{base}/big.zip", dest, _md5(body)).read_bytes() == body
    assert httpd.requests == [("/big.zip", "bytes=40000-")]
    assert not (tmp_path / "big.zip.part").exists()
    # a part that is already whole: the server answers 416 and the part is verified as it is
    other = tmp_path / "again.zip"
    (tmp_path / "again.zip.part").write_bytes(body)
    assert fetch(f"{base}/big.zip", other, _md5(body)).read_bytes() == body


def test_checksum_mismatch_removes_the_download(server, tmp_path) -> None:
    httpd, base = server
    httpd.files = {"/a.zip": b"corrupted in transit"}
    with pytest.raises(DownloadError, match="MD5 .* is not the published"):
        fetch(f"{base}/a.zip", tmp_path / "a.zip", _md5(b"the real archive"))
    assert not (tmp_path / "a.zip").exists() and not (tmp_path / "a.zip.part").exists()
    with pytest.raises(DownloadError, match="HTTP 404"):
        fetch(f"{base}/missing.zip", tmp_path / "m.zip", "0" * 32)


def test_offline_error_names_the_url_and_where_to_put_the_file(tmp_path) -> None:
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/zips/val2017.zip"
    archive = Archive(url, DATASETS["coco2017-val"][0].md5, "coco", "coco/val2017")
    with pytest.raises(DownloadError) as info:
        ensure_dataset([archive], tmp_path, timeout=5)
    message = str(info.value)
    assert url in message and str(tmp_path / "downloads" / "val2017.zip") in message and "yourself" in message


def test_unpacking_refuses_paths_outside_the_root(server, tmp_path) -> None:
    httpd, base = server
    evil = _zip({"../escaped.txt": b"x"})
    httpd.files = {"/evil.zip": evil}
    with pytest.raises(DownloadError, match="outside"):
        ensure_dataset([Archive(f"{base}/evil.zip", _md5(evil), "coco", "coco/never")], tmp_path / "root")
    assert not (tmp_path / "escaped.txt").exists()


def test_known_datasets_use_official_urls() -> None:
    hosts = {a.url.split("/")[2] for archives in DATASETS.values() for a in archives}
    assert hosts == {"images.cocodataset.org", "host.robots.ox.ac.uk"}
    assert all(re.fullmatch(r"[0-9a-f]{32}", a.md5) for archives in DATASETS.values() for a in archives)


def test_materialize_copies_a_dataset_at_a_url_once(tmp_path) -> None:
    import fsspec

    fs = fsspec.filesystem("memory")
    root = f"/segaudit-materialize-{id(tmp_path)}/VOC2012"
    fs.pipe({f"{root}/JPEGImages/a.jpg": b"a" * 10, f"{root}/ImageSets/Segmentation/val.txt": b"a\n"})
    local = Path(materialize(f"memory://{root}", tmp_path / "cache"))
    assert local.name == "VOC2012" and (local / "JPEGImages" / "a.jpg").read_bytes() == b"a" * 10
    assert (local / "ImageSets/Segmentation/val.txt").read_text() == "a\n"
    stamp = (local / "JPEGImages" / "a.jpg").stat().st_mtime_ns
    fs.pipe(f"{root}/JPEGImages/b.jpg", b"b")
    assert materialize(f"memory://{root}", tmp_path / "cache") == str(local)
    assert (local / "JPEGImages" / "b.jpg").read_bytes() == b"b"
    assert (local / "JPEGImages" / "a.jpg").stat().st_mtime_ns == stamp  # already there: not copied again
    assert materialize(str(tmp_path), tmp_path / "cache") == str(tmp_path)  # local paths as they are
