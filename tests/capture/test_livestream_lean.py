"""The leaner livestream start-up and steady state keep what they kept.

* Frames: ``write_png``'s own encoder ("Up" filter, zlib) writes PNGs whose
  pixels are the frame's, read back by two decoders (Pillow's and FFmpeg's),
  every chunk's CRC right, the digest that of the bytes on disk.
* ``import capture.livestream`` loads no page-capture module, and the names
  of ``capture`` still resolve (``from capture import capture_page``).
* A paced streamed GET (``Fetcher.pace``, HTTP-FLV) keeps every byte, in order,
  of a source that trickles many small chunks.
"""

from __future__ import annotations

import hashlib
import http.server
import struct
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import av
import pytest
from PIL import Image

import capture
from capture import frames
from capture.fetch import Fetcher
from capture.frames import write_png

ROOT = Path(__file__).resolve().parents[2]


def _picture(w: int, h: int, mode: str) -> Image.Image:
    """A busy picture: gradients, a hard edge, every byte value somewhere."""
    data = bytes(((x * 7 + y * 13) ^ (x * y)) & 0xFF for y in range(h) for x in range(w * 3))
    return Image.frombytes("RGB", (w, h), data).convert(mode)


def _chunks(data: bytes) -> list[tuple[bytes, bytes, int]]:
    """(type, data, stored CRC) of each PNG chunk; AssertionError if the signature is wrong."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    out, pos = [], 8
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + n]
        (crc,) = struct.unpack(">I", data[pos + 8 + n : pos + 12 + n])
        out.append((kind, body, crc))
        pos += 12 + n
    return out


def _bad_crcs(data: bytes) -> list[bytes]:
    return [k for k, body, crc in _chunks(data) if zlib.crc32(body, zlib.crc32(k)) != crc]


# 150 rows: more than two bands of PNG_BAND_ROWS; 1x1 and 7x3: the edges of the row loop
@pytest.mark.parametrize("size", [(320, 180), (97, 150), (1, 1), (7, 3)])
@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_frames_written_by_our_encoder_decode_to_the_same_pixels(tmp_path, size, mode):
    im = _picture(*size, mode)
    wf = write_png(im, tmp_path / "f.png")
    data = (tmp_path / "f.png").read_bytes()
    assert wf.sha256 == hashlib.sha256(data).hexdigest() and wf.size == len(data)
    assert _bad_crcs(data) == []
    kinds = [k for k, _, _ in _chunks(data)]
    assert kinds[0] == b"IHDR" and kinds[-1] == b"IEND" and set(kinds[1:-1]) == {b"IDAT"}
    with Image.open(tmp_path / "f.png") as back:
        assert back.mode == mode and back.size == size and back.tobytes() == im.tobytes()
    with av.open(str(tmp_path / "f.png")) as c:  # FFmpeg's PNG decoder, not Pillow's
        f = next(c.decode(video=0))
        assert f.to_image().convert(mode).tobytes() == im.tobytes()


def test_a_frame_larger_than_an_idat_chunk_is_split_and_still_exact(tmp_path, monkeypatch):
    monkeypatch.setattr(frames, "PNG_IDAT_BYTES", 256)
    monkeypatch.setattr(frames, "PNG_BAND_ROWS", 4)
    im = _picture(600, 400, "RGB")  # zlib holds back ~16 KiB of output: a frame well above that
    write_png(im, tmp_path / "f.png")
    data = (tmp_path / "f.png").read_bytes()
    assert sum(k == b"IDAT" for k, _, _ in _chunks(data)) > 2 and _bad_crcs(data) == []
    with Image.open(tmp_path / "f.png") as back:
        assert back.tobytes() == im.tobytes()


def test_a_changed_byte_of_our_png_is_caught_by_its_crc(tmp_path):
    write_png(_picture(64, 48, "RGB"), tmp_path / "f.png")
    data = bytearray((tmp_path / "f.png").read_bytes())
    assert _bad_crcs(bytes(data)) == []  # control: the file as written
    data[60] ^= 0x01  # inside the IDAT data
    assert _bad_crcs(bytes(data)) == [b"IDAT"]


def test_other_modes_are_still_written_by_pillow(tmp_path):
    im = _picture(40, 30, "RGBA")
    wf = write_png(im, tmp_path / "f.png")
    with Image.open(tmp_path / "f.png") as back:
        assert back.mode == "RGBA" and back.tobytes() == im.tobytes()
    assert wf.sha256 == hashlib.sha256((tmp_path / "f.png").read_bytes()).hexdigest()


def _loaded(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", f"import sys\n{code}\nprint(' '.join(sorted(sys.modules)))"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return set(out.stdout.split())


def test_a_livestream_import_loads_no_page_capture_module():
    page_stack = {"capture.page", "capture.session", "capture.interactive", "capture.crawl"}
    assert _loaded("import capture.livestream") & page_stack == set()
    # control: the same check sees them when a page capture is imported
    assert _loaded("from capture import capture_page") >= {"capture.page", "capture.session"}


def test_capture_names_still_resolve_and_unknown_ones_do_not():
    from capture.livestream import capture_livestream
    from capture.page import capture_page

    assert capture.capture_page is capture_page and capture.capture_livestream is capture_livestream
    assert set(capture.__all__) <= set(dir(capture))
    for name in capture.__all__:
        assert getattr(capture, name) is not None
    with pytest.raises(AttributeError, match="no_such_name"):
        capture.no_such_name  # noqa: B018


class _Trickle(http.server.BaseHTTPRequestHandler):
    """A chunked body of many small chunks sent with pauses, as an HTTP-FLV server sends tags."""

    protocol_version = "HTTP/1.1"
    body = bytes(range(256)) * 160  # 40 KiB

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "video/x-flv")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for i in range(0, len(self.body), 977):
            piece = self.body[i : i + 977]
            self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            self.wfile.flush()
            if i % (977 * 8) == 0:
                time.sleep(0.03)
        self.wfile.write(b"0\r\n\r\n")

    def log_message(self, *a: object) -> None:
        pass


@pytest.fixture
def trickle():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Trickle)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/live.flv"
    srv.shutdown()
    srv.server_close()


@pytest.mark.parametrize("pace", [0.0, 0.1])  # 0.0: the control, unpaced through the same path
def test_a_paced_streamed_get_keeps_every_byte_in_order(tmp_path, trickle, pace):
    got = bytearray()

    def on_chunk(data: bytes) -> bool:
        got.extend(data)
        return True

    f = Fetcher(tmp_path)
    f.pace = pace
    ex = f.get(trickle, on_chunk=on_chunk)[-1]
    f.close()
    assert ex.complete and not ex.truncated and ex.size == len(_Trickle.body)
    assert bytes(got) == _Trickle.body and ex.body is not None and ex.body.read_bytes() == _Trickle.body
    assert ex.sha256 == hashlib.sha256(_Trickle.body).hexdigest()


def test_pace_applies_only_to_streamed_bodies(tmp_path, trickle):
    # Without on_chunk (a playlist, a segment) the fetcher never waits, whatever its pace.
    f = Fetcher(tmp_path)
    f.pace = 0.1
    ex = f.get(trickle)[-1]
    f.close()
    assert ex.complete and ex.body is not None and ex.body.read_bytes() == _Trickle.body
