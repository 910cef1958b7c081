"""The S3 artifact store against a real S3 protocol server (moto's, on a free port).

As the adversary: someone with write access to the bucket puts other bytes
under a digest key; the store must never overwrite, and must refuse to hand
the altered bytes on (read, check, export). Object Lock buckets must hold
every object in COMPLIANCE mode, and the exhibit must say until when.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import botocore.exceptions
import pytest
from s3_fixtures import CREDENTIALS, LocalS3, free_port, s3_fixture, s3_server_fixture  # noqa: F401

from evidence.extraction import build_record, disclosures
from ledger.artifacts import ArtifactStore, BlobPath, S3Store, artifact_store_for
from ledger.errors import ConfigError, IntegrityError, StoreError
from ledger.exhibit import ArtifactFile
from ledger.log import Ledger

ROOT = Path(__file__).resolve().parents[2]


def store(s3: LocalS3, bucket: str, prefix: str = "cases", **kw) -> S3Store:
    return S3Store(f"s3://{bucket}/{prefix}", endpoint_url=s3.endpoint, **kw)


def versions(s3: LocalS3, bucket: str, key: str) -> list[dict]:
    got = s3.client().list_object_versions(Bucket=bucket, Prefix=key)
    return [v for v in got.get("Versions", []) if v["Key"] == key]


# -- the BlobStore contract -----------------------------------------------------


def test_round_trip(s3, tmp_path):
    bucket = s3.bucket()
    st = store(s3, bucket, "office/one")
    a = st.put_bytes(b"first blob")
    f = tmp_path / "shot.png"
    f.write_bytes(os.urandom(3 << 20))
    b = st.put_file(f)
    c = st.put_stream(io.BytesIO(b""))
    assert a.sha256 == hashlib.sha256(b"first blob").hexdigest() and a.size == 10
    assert b.sha256 == hashlib.sha256(f.read_bytes()).hexdigest() and b.size == 3 << 20
    assert c.size == 0
    for blob in (a, b, c):
        assert blob.sha256 in st
        st.check(blob.sha256)
    with st.open(b.sha256) as r:
        assert r.read() == f.read_bytes()
    assert sorted(st) == sorted([a.sha256, b.sha256, c.sha256])
    keys = {o["Key"] for o in s3.client().list_objects_v2(Bucket=bucket)["Contents"]}
    assert f"office/one/sha256/{a.sha256[:2]}/{a.sha256[2:4]}/{a.sha256}" in keys
    head = s3.client().head_object(Bucket=bucket, Key=st.key_for(a.sha256))
    assert head["Metadata"] == {"sha256": a.sha256}
    missing = hashlib.sha256(b"never stored").hexdigest()
    assert missing not in st and "not-a-digest" not in st
    with pytest.raises(IntegrityError, match="missing"):
        st.open(missing)
    # Another prefix in the same bucket is another store.
    assert list(store(s3, bucket, "office/two")) == []
    assert st.facts([a.sha256]) == {"backend": "s3", "bucket": bucket, "prefix": "office/one",
                                    "endpoint": s3.endpoint, "object_lock": None}


def test_partial_reads_and_seek(s3):
    st = store(s3, s3.bucket())
    data = bytes(range(256)) * 100
    blob = st.put_bytes(data)
    with st.open(blob.sha256) as r:  # what export's name sniffers do: read a little, close
        assert r.read(2) == data[:2]
    with st.open(blob.sha256) as r:  # web replay: seek to a record, read on
        r.seek(1000)
        assert r.read(10) == data[1000:1010]
        assert r.tell() == 1010


def test_if_none_match_is_enforced_by_the_server(s3):
    """The server really answers 412 (no HEAD-then-put fallback needed); control: without it, it overwrites."""
    bucket = s3.bucket()
    c = s3.client()
    c.put_object(Bucket=bucket, Key="k", Body=b"one", IfNoneMatch="*")
    with pytest.raises(botocore.exceptions.ClientError) as e:
        c.put_object(Bucket=bucket, Key="k", Body=b"two", IfNoneMatch="*")
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412
    assert c.get_object(Bucket=bucket, Key="k")["Body"].read() == b"one"
    c.put_object(Bucket=bucket, Key="k", Body=b"two")
    assert c.get_object(Bucket=bucket, Key="k")["Body"].read() == b"two"


def test_put_twice_writes_once(s3):
    bucket = s3.bucket(versioned=True)
    st = store(s3, bucket)
    a = st.put_bytes(b"same bytes")
    again = store(s3, bucket).put_bytes(b"same bytes")  # another machine, same content
    assert again == a
    assert len(versions(s3, bucket, st.key_for(a.sha256))) == 1
    # control: a different blob is a second object, written
    b = st.put_bytes(b"other bytes")
    assert len(versions(s3, bucket, st.key_for(b.sha256))) == 1 and b.sha256 != a.sha256


def test_concurrent_puts_of_one_blob(s3):
    """Several capture machines storing the same bytes at once: one object, every put succeeds."""
    from concurrent.futures import ThreadPoolExecutor

    bucket = s3.bucket(versioned=True)
    data = os.urandom(1 << 20)
    stores = [store(s3, bucket) for _ in range(4)]
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda st: st.put_bytes(data), stores))
    assert len(set(got)) == 1
    # Real S3 evaluates If-None-Match atomically (one version); the local test server
    # has been seen to let two racing conditional PUTs both through. What the contract
    # needs either way: every version under the key holds exactly these bytes.
    key = stores[0].key_for(got[0].sha256)
    vs = versions(s3, bucket, key)
    assert 1 <= len(vs) <= 4
    for v in vs:
        body = s3.client().get_object(Bucket=bucket, Key=key, VersionId=v["VersionId"])["Body"].read()
        assert hashlib.sha256(body).hexdigest() == got[0].sha256


def test_multipart_put_if_absent(s3, tmp_path):
    bucket = s3.bucket(versioned=True)
    st = store(s3, bucket, part_size=5 << 20)
    f = tmp_path / "video.webm"
    f.write_bytes(os.urandom((10 << 20) + 123))  # parts of 5, 5 and 123 bytes (the last may be small)
    blob = st.put_file(f)
    assert blob.size == f.stat().st_size
    with st.open(blob.sha256) as r:
        assert hashlib.sha256(r.read()).hexdigest() == blob.sha256
    assert s3.client().head_object(Bucket=bucket, Key=st.key_for(blob.sha256))["ETag"].endswith('-3"')
    assert st.put_file(f) == blob  # the completion is refused (412): still one version
    assert len(versions(s3, bucket, st.key_for(blob.sha256))) == 1
    assert s3.client().list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    exact = st.put_bytes(os.urandom(5 << 20))  # exactly one part: a plain PUT
    assert "-" not in s3.client().head_object(Bucket=bucket, Key=st.key_for(exact.sha256))["ETag"]
    st.check(exact.sha256)


def test_adversary_bytes_under_a_digest_key(s3):
    bucket = s3.bucket()
    st = store(s3, bucket)
    good = st.put_bytes(b"the original screenshot")
    kept = st.put_bytes(b"an untouched artifact")
    key = st.key_for(good.sha256)
    # Same length and the same sha256 metadata: a HEAD cannot tell, the read must.
    s3.client().put_object(Bucket=bucket, Key=key, Body=b"THE original screenshot", Metadata={"sha256": good.sha256})
    with pytest.raises(IntegrityError, match="altered"):
        with st.open(good.sha256) as r:
            r.read()
    with pytest.raises(IntegrityError, match="altered"):
        st.check(good.sha256)
    with pytest.raises(IntegrityError, match="altered"):  # a reader asking for exactly the size still hits the end
        with st.open(good.sha256) as r:
            r.read(good.size)
    st.check(kept.sha256)  # control: the untouched one reads and checks
    with st.open(kept.sha256) as r:
        assert r.read() == b"an untouched artifact"
    # Other bytes of another size: putting the original again does not overwrite, and says why.
    s3.client().put_object(Bucket=bucket, Key=key, Body=b"forged")
    with pytest.raises(IntegrityError, match="not overwritten"):
        st.put_bytes(b"the original screenshot")
    assert s3.client().get_object(Bucket=bucket, Key=key)["Body"].read() == b"forged"


# -- Object Lock -------------------------------------------------------------------


def test_object_lock_compliance(s3, monkeypatch):
    bucket = s3.bucket(lock=True)
    monkeypatch.setenv("EVIDENCE_S3_RETAIN_DAYS", "2")
    st = S3Store.from_env(f"s3://{bucket}/p")
    before = datetime.now(UTC)
    blob = st.put_bytes(b"locked evidence")
    head = s3.client().head_object(Bucket=bucket, Key=st.key_for(blob.sha256))
    assert head["ObjectLockMode"] == "COMPLIANCE"
    until = head["ObjectLockRetainUntilDate"]
    assert before + timedelta(days=2) - timedelta(minutes=5) <= until <= datetime.now(UTC) + timedelta(days=2, minutes=5)
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.client().delete_object(Bucket=bucket, Key=st.key_for(blob.sha256), VersionId=head["VersionId"])
    assert e.value.response["Error"]["Code"] == "AccessDenied"
    assert st.open(blob.sha256).read() == b"locked evidence"
    facts = st.facts([blob.sha256])
    assert facts["object_lock"]["mode"] == "COMPLIANCE" and facts["object_lock"]["retain_days"] == 2
    assert facts["object_lock"]["retain_until"] == until.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    # control: in a versioned bucket without a lock the same delete goes through
    plain = s3.bucket(versioned=True)
    pst = store(s3, plain)
    pb = pst.put_bytes(b"locked evidence")
    ph = s3.client().head_object(Bucket=plain, Key=pst.key_for(pb.sha256))
    assert "ObjectLockMode" not in ph
    s3.client().delete_object(Bucket=plain, Key=pst.key_for(pb.sha256), VersionId=ph["VersionId"])
    assert pb.sha256 not in pst


def test_lock_retention_default_and_extension(s3):
    bucket = s3.bucket(lock=True, default_days=5)
    st = store(s3, bucket)
    blob = st.put_bytes(b"kept five days")
    assert st.facts()["object_lock"]["retain_days"] == 5
    head = s3.client().head_object(Bucket=bucket, Key=st.key_for(blob.sha256))
    assert head["ObjectLockMode"] == "COMPLIANCE"
    assert head["ObjectLockRetainUntilDate"] > datetime.now(UTC) + timedelta(days=4)
    # The same bytes stored again by an office that keeps 30 days: the lock is extended, not shortened.
    longer = store(s3, bucket, retain_days=30)
    longer.put_bytes(b"kept five days")
    head = s3.client().head_object(Bucket=bucket, Key=st.key_for(blob.sha256))
    assert head["ObjectLockRetainUntilDate"] > datetime.now(UTC) + timedelta(days=29)
    assert longer.facts([blob.sha256])["object_lock"]["retain_until"] == \
        head["ObjectLockRetainUntilDate"].astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    # control: one that keeps fewer days leaves the longer lock as it is and reports it
    shorter = store(s3, bucket, retain_days=1)
    shorter.put_bytes(b"kept five days")
    assert shorter.facts([blob.sha256])["object_lock"]["retain_until"] == \
        longer.facts([blob.sha256])["object_lock"]["retain_until"]


def _seal(led: Ledger, tmp_path: Path, case: str = "SAMR-2026-017") -> None:
    page = tmp_path / "page.html"
    page.write_text("<html><body>假冒商品 ¥199</body></html>", "utf-8")
    shot = tmp_path / "shot.png"
    shot.write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(4096))
    led.seal_exhibit(case, [ArtifactFile("page.html", page, "text/html", "dom"),
                            ArtifactFile("shot.png", shot, "image/png", "screenshot-full")],
                     {"url": "https://shop.example/item/1", "title": "item"})


def test_exhibit_records_the_storage(s3, tmp_path):
    locked, plain = s3.bucket(lock=True), s3.bucket()
    for bucket, lock in ((locked, True), (plain, False)):
        led = Ledger.init(tmp_path / bucket, unencrypted=True, origin="test.example/log", artifacts=f"s3://{bucket}/ev")
        try:
            _seal(led, tmp_path)
            rec = next(r for r in led.records() if r.kind == "exhibit")
            msha = rec.payload["manifest"]["sha256"]
            manifest = json.loads(led.artifacts.open(msha).read())
            storage = manifest["info"]["storage"]
            assert storage["backend"] == "s3" and storage["bucket"] == bucket and storage["prefix"] == "ev"
            assert storage["endpoint"] == s3.endpoint
            said = {d.code: d.text for d in disclosures(build_record(led, rec.index))}
            assert f"s3://{bucket}/ev" in said["object-store"]
            if lock:
                assert storage["object_lock"]["retain_until"] in said["object-store"]
                assert "compliance-mode retention" in said["object-store"]
            else:
                assert "no Object Lock" in said["object-store"]
            if lock:
                assert storage["object_lock"]["mode"] == "COMPLIANCE"
                retain = datetime.strptime(storage["object_lock"]["retain_until"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
                assert retain > datetime.now(UTC) + timedelta(days=3649)
                for a in manifest["artifacts"]:
                    head = s3.client().head_object(Bucket=bucket, Key=led.artifacts.key_for(a["sha256"]))
                    assert head["ObjectLockMode"] == "COMPLIANCE" and head["ObjectLockRetainUntilDate"] >= retain
            else:
                assert storage["object_lock"] is None
            assert not (tmp_path / bucket / "store" / "sha256").exists()  # nothing went to the local store
        finally:
            led.close()
    # control: a file-store home records no storage at all (older exhibits are unchanged)
    led = Ledger.init(tmp_path / "filehome", unencrypted=True, origin="test.example/log")
    try:
        _seal(led, tmp_path)
        rec = next(r for r in led.records() if r.kind == "exhibit")
        manifest = json.loads(led.artifacts.open(rec.payload["manifest"]["sha256"]).read())
        assert "storage" not in manifest["info"]
        assert "object-store" not in {d.code for d in disclosures(build_record(led, rec.index))}
    finally:
        led.close()


# -- settings and failures -----------------------------------------------------------


def test_artifact_store_for(s3, tmp_path, monkeypatch):
    assert isinstance(artifact_store_for(tmp_path, "s3://bucket-a/some/prefix/"), S3Store)
    st = artifact_store_for(tmp_path, "s3://bucket-a/some/prefix/")
    assert (st.bucket, st.prefix, st.endpoint_url) == ("bucket-a", "some/prefix", s3.endpoint)
    assert isinstance(artifact_store_for(tmp_path, None), ArtifactStore)  # control
    with pytest.raises(StoreError, match="only a directory"):
        artifact_store_for(tmp_path, "gs://bucket/x")
    for bad in ("s3://", "s3://A_B/x", "s3://ok-bucket/a/../b"):
        with pytest.raises(ConfigError):
            artifact_store_for(tmp_path, bad)
    monkeypatch.setenv("EVIDENCE_S3_RETAIN_DAYS", "ten")
    with pytest.raises(ConfigError, match="EVIDENCE_S3_RETAIN_DAYS"):
        artifact_store_for(tmp_path, "s3://bucket-a")


def test_unusable_store_is_one_line(s3, monkeypatch, tmp_path):
    gone = S3Store("s3://no-such-bucket-here/x", endpoint_url=s3.endpoint)
    with pytest.raises(StoreError, match="does not exist") as e:
        gone.put_bytes(b"x")
    assert "\n" not in str(e.value)
    closed = S3Store("s3://bucket-a/x", endpoint_url=f"http://127.0.0.1:{free_port()}")
    with pytest.raises(StoreError, match="127.0.0.1") as e:
        closed.put_bytes(b"x")
    assert "\n" not in str(e.value) and e.value.exit_code == 3
    for k in CREDENTIALS:
        monkeypatch.delenv(k)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    nocred = S3Store(f"s3://{s3.bucket()}/x", endpoint_url=s3.endpoint, region="us-east-1")
    with pytest.raises(StoreError, match="no S3 credentials"):
        nocred.put_bytes(b"x")


def test_blob_path_spools_only_when_asked(s3, tmp_path):
    st = store(s3, s3.bucket())
    blob = st.put_bytes(b"WARC/1.1\r\n")
    lazy = BlobPath(st, blob.sha256, tmp_path)
    assert list(tmp_path.iterdir()) == []
    assert Path(os.fspath(lazy)).read_bytes() == b"WARC/1.1\r\n"
    fs = ArtifactStore(tmp_path / "fs")
    fb = fs.put_bytes(b"x")
    assert os.fspath(BlobPath(fs, fb.sha256, tmp_path)) == str(fs.path_for(fb.sha256))


def test_index_of_an_unscannable_warc_from_s3(s3, tmp_path):
    """Export's slow index path (cdxj-indexer wants a file) works from a bucket: the lazy path spools it."""
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    from evidence.cdxj import write_index
    from ledger.warcscan import WarcScan

    buf = io.BytesIO()
    w = WARCWriter(buf, gzip=False)  # not gzip per record: the streaming scan gives up on it
    http = StatusAndHeaders("200 OK", [("Content-Type", "text/html")], protocol="HTTP/1.1")
    w.write_record(w.create_warc_record("https://shop.example/item/9", "response",
                                        payload=io.BytesIO(b"<p>item</p>"), http_headers=http))
    st = store(s3, s3.bucket())
    blob = st.put_bytes(buf.getvalue())
    work = tmp_path / "work"
    work.mkdir()
    out = work / "index.cdxj"
    write_index([("1-page.warc", WarcScan(ok=False), BlobPath(st, blob.sha256, work))], out)
    text = out.read_text("utf-8")
    assert "shop.example/item/9" in text and '"filename": "1-page.warc"' in text


# -- through the CLI -----------------------------------------------------------------


def cli(home: Path, env: dict[str, str], *args: str, check: int | None = None) -> subprocess.CompletedProcess:
    full = {**os.environ, **env, "EVIDENCE_HOME": str(home), "COLUMNS": "200"}
    p = subprocess.run([sys.executable, "-m", "evidence.cli", *args], capture_output=True, text=True,
                       env=full, timeout=600, cwd=ROOT)
    assert "Traceback" not in p.stderr
    if check is not None:
        assert p.returncode == check, (p.returncode, p.stdout, p.stderr)
    return p


def test_export_of_a_tampered_object_fails(s3, tmp_path):
    bucket = s3.bucket()
    env = s3.env()
    home = tmp_path / "home"
    # This time the home's config names the bucket (init --artifacts), not the environment.
    cli(home, env, "init", "--no-passphrase", "--artifacts", f"s3://{bucket}/ev", check=0)
    led = Ledger.open(home)
    try:
        _seal(led, tmp_path, "C-GOOD")
        page = tmp_path / "other.html"
        page.write_text("<p>another listing</p>", "utf-8")
        led.seal_exhibit("C-BAD", [ArtifactFile("other.html", page, "text/html", "dom")], {"url": "https://shop.example/2"})
        bad_sha = hashlib.sha256(page.read_bytes()).hexdigest()
        key = led.artifacts.key_for(bad_sha)
    finally:
        led.close()
    good = tmp_path / "good.wacz"
    cli(home, env, "export", "C-GOOD", "-o", str(good), check=0)  # control: untouched objects export
    v = json.loads(cli(home, env, "verify", str(good), "--trust", str(home / "keys"), "--json", check=0).stdout)
    assert v["verdict"].startswith("VALID")
    s3.client().put_object(Bucket=bucket, Key=key, Body=b"<p>another listin!</p>", Metadata={"sha256": bad_sha})
    out = tmp_path / "out"
    out.mkdir()
    p = cli(home, env, "export", "C-BAD", "-o", str(out / "bad.wacz"), check=1)
    assert p.stderr.count("\n") == 1 and "altered" in p.stderr
    assert list(out.iterdir()) == []


@pytest.mark.browser
def test_capture_audit_export_verify_on_s3(s3, tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("s3_shop_serve", ROOT / "examples" / "suspect-shop" / "serve.py")
    serve = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(serve)
    shop = serve.ShopServer().start()
    try:
        bucket = s3.bucket(lock=True)
        env = {**s3.env(), "EVIDENCE_ARTIFACTS": f"s3://{bucket}/samr"}
        home = tmp_path / "home"
        cli(home, env, "init", "--no-passphrase", check=0)
        res = json.loads(cli(home, env, "capture", shop.url("/item/123"), "--case", "SAMR-2026-017",
                             "--operator", "Li Wei", "--json", check=0).stdout)
        assert res["exhibits"][0]["status"] == 200
        cli(home, env, "audit", check=0)
        record = tmp_path / "record-1.html"
        cli(home, env, "record", "1", "--format", "html", "-o", str(record), check=0)
        assert "compliance-mode retention until" in record.read_text("utf-8")
        wacz = tmp_path / "case.wacz"
        cli(home, env, "export", "SAMR-2026-017", "-o", str(wacz), check=0)
        report = tmp_path / "report.html"
        v = json.loads(cli(home, env, "verify", str(wacz), "--trust", str(home / "keys"), "--report", str(report),
                           "--json", check=0).stdout)
        assert v["verdict"].startswith("VALID") and v["complete"] and report.stat().st_size > 0
        listed = s3.client().list_objects_v2(Bucket=bucket, Prefix="samr/sha256/")["Contents"]
        assert len(listed) >= 6
        assert not (home / "store" / "sha256").exists()
        n = len(json.loads(cli(home, env, "log", "--json", check=0).stdout)["records"])
        # The endpoint goes away: one line, exit 3, nothing appended.
        down = {**env, "EVIDENCE_S3_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}"}
        p = cli(home, down, "capture", shop.url("/item/123"), "--case", "SAMR-2026-017", check=3)
        print(p.stderr)
        assert p.stderr.strip().count("\n") == 0 and down["EVIDENCE_S3_ENDPOINT_URL"] in p.stderr
        assert len(json.loads(cli(home, env, "log", "--json", check=0).stdout)["records"]) == n
    finally:
        shop.stop()
