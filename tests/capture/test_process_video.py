"""The process video: the browser session as a WebM artifact of the exhibit."""

from __future__ import annotations

import hashlib

import av
import pytest
from warcio.archiveiterator import ArchiveIterator

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def recorded(browser, shop, tmp_path_factory):
    return browser.capture(shop.url("/item/123"), tmp_path_factory.mktemp("video"), record_process=True, case="C-V")


def frames(path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


def test_video_plays_and_is_in_the_manifest(recorded, home):
    video = recorded.artifact("process-video")
    assert video.media_type == "video/webm" and video.path.stat().st_size > 0
    assert frames(video.path) > 0
    digest = hashlib.sha256(video.path.read_bytes()).hexdigest()
    ex = home.seal_exhibit("C-V", recorded.artifacts, recorded.info)
    listed = {a["name"]: a for a in ex.manifest["artifacts"]}
    assert listed["process-video.webm"]["sha256"] == digest
    assert listed["process-video.webm"]["media_type"] == "video/webm"
    assert {"name": "process-video.webm", "sha256": digest} in ex.record.payload["artifacts"]
    assert ex.manifest["info"]["process_video"]["size"] == video.path.stat().st_size
    # The stored copy is the same bytes and still decodes.
    stored = home.artifacts.path_for(digest)
    assert frames(stored) > 0


def test_video_is_a_warc_resource(recorded, shop):
    video = recorded.artifact("process-video").path.read_bytes()
    with open(recorded.artifact("warc").path, "rb") as f:
        found = [
            (r.rec_headers.get_header("Content-Type"), r.content_stream().read())
            for r in ArchiveIterator(f)
            if r.rec_type == "resource"
            and r.rec_headers.get_header("WARC-Target-URI").startswith("urn:evidence-chain:process-video:")
        ]
    assert found == [("video/webm", video)]


def test_off_by_default(browser, shop, tmp_path):
    pc = browser.capture(shop.url("/zh-a"), tmp_path / "plain")
    assert not any(a.role == "process-video" for a in pc.artifacts)
    assert "process_video" not in pc.info and not (tmp_path / "plain" / "video").exists()
