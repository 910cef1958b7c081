"""A real capture travels into a case file that replays as WACZ and verifies offline."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from capture import capture_page
from evidence.case import export_case
from verify.case import verify_case
from verify.report import write_report

pytestmark = pytest.mark.browser


def test_captured_listing_exports_validates_and_verifies(home, shop, tmp_path):
    ex = capture_page(shop.url("/s/Xy7Kq"), case="SAMR-2026-017", operator="Li Wei", ledger=home)
    out = tmp_path / "case.wacz"
    export_case(home, "SAMR-2026-017", out)

    wacz = Path(sys.executable).with_name("wacz")
    r = subprocess.run([str(wacz), "validate", "-f", str(out)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    with zipfile.ZipFile(out) as zf:
        pages = [json.loads(line) for line in zf.read("pages/pages.jsonl").splitlines()][1:]
        assert [p["url"] for p in pages] == [shop.url("/item/123")]
        cdxj = zf.read("indexes/index.cdx").decode()
        # The redirect hop and the lazy images are in the index, not only the final document.
        assert "/s/xy7kq" in cdxj.lower() and cdxj.count("\n") >= 5
        names = zf.namelist()
        for a in ex.manifest["artifacts"]:
            assert any(n.endswith(a["name"].lower().replace("_", "-")) or a["role"] == "warc" for n in names), a["name"]

    res = verify_case(out, trust=home.config.trusted_vkeys)
    assert res.ok and res.trusted, res.first_failure
    [summary] = res.exhibits
    assert summary["url"] == shop.url("/s/Xy7Kq") and summary["operator"] == "Li Wei"
    warc_checks = [c for c in res.checks if c.name == "warc-digests"]
    assert warc_checks and all(c.ok for c in warc_checks)
    html = write_report(res, out, tmp_path / "report.html").read_text("utf-8")
    assert ex.manifest_sha256 in html or ex.record.payload["manifest"]["sha256"] in html
