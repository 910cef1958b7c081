"""AES-128 HLS against ``ffmpeg -re -f hls -hls_key_info_file``: ciphertext kept, key archived, frames decrypted in memory."""

from __future__ import annotations

import hashlib
import io
import subprocess
import sys
from pathlib import Path
from typing import Any

import av
import pytest
from live_sources import KEY, FileServer, aes_source, env_for, have_ffmpeg, stop
from test_livestream import CASE, check_chain, log_lines, new_home, parallel, warc_records

from capture.livestream import _decrypt as _decrypt_file
from capture.livestream import capture_livestream
from ledger.log import Ledger

pytestmark = pytest.mark.skipif(not have_ffmpeg(), reason="ffmpeg not installed")


def _rewrite(root: Path, old: str, new: str) -> Any:
    def serve(h: Any) -> None:
        text = (root / "aes" / "index.m3u8").read_text("utf-8").replace(old, new)
        text = "\n".join(f"/aes/{ln}" if ln.startswith("seg-") else ln for ln in text.splitlines())
        h.send(200, text.encode(), "application/vnd.apple.mpegurl")

    return serve


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Any:
    root = tmp_path_factory.mktemp("aes")
    p = aes_source(root / "aes")
    srv = FileServer(root)
    srv.routes["/nokey/index.m3u8"] = _rewrite(root, 'URI="/key.bin"', 'URI="/gone.key"')
    srv.routes["/sample/index.m3u8"] = _rewrite(root, "METHOD=AES-128", "METHOD=SAMPLE-AES")
    srv.routes["/drm/index.m3u8"] = _rewrite(
        root, 'URI="/key.bin"', 'URI="skd://drm.example/1",KEYFORMAT="com.apple.streamingkeydelivery"'
    )
    srv.routes["/key.bin"] = lambda h: h.send(200, KEY, "application/octet-stream")
    srv.start()
    yield root, srv
    srv.stop()
    stop(p)


def _job(tmp_path: Path, name: str, url: str) -> Any:
    led = new_home(tmp_path / name)
    return lambda: (led, capture_livestream(url, case=CASE, ledger=led, duration=8, window=4))


def test_aes128_ciphertext_and_key_archived_frames_decrypted(tmp_path, source):
    root, srv = source
    (led, s), (led_s, ss), (led_d, sd) = parallel(
        _job(tmp_path, "aes", srv.base + "/aes/index.m3u8"),
        _job(tmp_path, "sample", srv.base + "/sample/index.m3u8"),
        _job(tmp_path, "drm", srv.base + "/drm/index.m3u8"),
    )
    assert s.end_reason == "duration" and not s.errors
    ms = check_chain(led, s)
    segs = [x for m in ms for x in m["info"]["segments"]]
    assert len(segs) >= 6 and all(x["encryption"]["method"] == "AES-128" for x in segs)
    keys = [k for m in ms for k in m["info"].get("keys", [])]
    assert keys == [
        {
            "uri": srv.base + "/key.bin",
            "sha256": hashlib.sha256(KEY).hexdigest(),
            "size": 16,
            "method": "AES-128",
        }
    ]
    assert all(m["info"]["encryption"]["decoded"] is True for m in ms)
    records = [r for m in ms for r in warc_records(led, m) if r["type"] == "response"]
    assert [r["body"] for r in records if r["uri"].endswith("/key.bin")] == [KEY], "the key response, once"
    for r in records:
        if r["uri"].endswith(".ts"):
            written_name = r["uri"].rsplit("/", 1)[1]
            written = (root / "aes" / written_name).read_bytes()
            assert r["body"] == written, "the ciphertext as served"
    # the archived segment really is ciphertext: it does not decode without the key, and does with it
    with pytest.raises(av.error.FFmpegError):
        with av.open(io.BytesIO(written), "r", format="mpegts") as c:
            list(c.decode(video=0))
    seq = int(written_name.split("-")[1].split(".")[0])
    plain = _decrypt_file(root / "aes" / written_name, KEY, seq.to_bytes(16, "big"))
    with av.open(plain, "r", format="mpegts") as c:
        assert len(list(c.decode(video=0))) >= 5
    frames = [f for m in ms for f in m["info"]["frames"]]
    assert len({f["sha256"] for f in frames}) >= 6, "frames decoded from the decrypted segments"
    led.close()

    # SAMPLE-AES and a DRM key system: archived as served, not decoded, and the exhibit says so
    for led_x, sx, method in ((led_s, ss, "SAMPLE-AES"), (led_d, sd, "AES-128")):
        assert sx.end_reason == "duration" and sx.segments >= 6 and sx.frames == 0
        mx = check_chain(led_x, sx)
        enc = mx[-1]["info"]["encryption"]
        assert enc["method"] == method and enc["decoded"] is False and "no frames decoded" in enc["why"]
        assert not any(m["info"].get("keys") for m in mx), "no key fetched"
        assert any(e["step"] == "key" and e["level"] == "warning" for m in mx for e in log_lines(led_x, m))
        led_x.close()


@pytest.mark.slow  # command-line runs: start-up of each process
def test_a_key_that_404s_is_one_line_and_no_segment_is_claimed(tmp_path, source):
    _, srv = source
    home = tmp_path / "home"
    new_home(home).close()
    p = subprocess.run(
        [sys.executable, "-m", "evidence.cli", "livestream", srv.base + "/nokey/index.m3u8", "--case", CASE, "--duration", "5"],
        env=env_for(home), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    errors = [ln for ln in p.stderr.splitlines() if ln.startswith("error:")]
    assert p.returncode == 3 and len(errors) == 1 and "gone.key" in errors[0] and "404" in errors[0], p.stderr
    with Ledger.open(home) as led:
        end = next(r for r in led.records() if r.kind == "livestream-end").payload
        assert end["segments"] == 0 and end["frames"] == 0 and end["end_reason"] == "http-error"
    # control: the same stream with its key records (the test above shows what)
    p = subprocess.run(
        [sys.executable, "-m", "evidence.cli", "livestream", srv.base + "/aes/index.m3u8", "--case", CASE, "--duration", "3"],
        env=env_for(home), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert p.returncode == 0 and "frame(s)" in p.stdout, p.stderr
