"""Crawl state in the ledger database: pages settle only with their exhibit, once."""

from __future__ import annotations

import pytest
from sqlalchemy import inspect

from ledger import migrations
from ledger.crawls import Crawls, PageTaken
from ledger.log import Ledger


@pytest.fixture(params=["sqlite", "postgresql"])
def led(request, tmp_path):
    url = None
    if request.param == "postgresql":
        url = request.getfixturevalue("pg_url")
    led = Ledger.init(tmp_path / "home", unencrypted=True, origin="test.example/log", db_url=url)
    yield led
    led.close()


def _seal(led, crawls, crawl_id, url, found=(), links=None):
    return led.append_many(
        [_draft(url)],
        on_locked=lambda conn, recs: crawls.page_done_in(
            conn, crawl_id, url, recs[0].index, links=links or [u for u, _ in found], out_of_scope=[], found=found),
    )[0]


def _draft(url):
    from ledger.record import Draft

    return Draft("custody", {"page": url}, "C-1")


def test_schema_at_head_has_the_crawl_tables(led):
    with led.store.engine.connect() as conn:
        assert migrations.read_status(conn).current == migrations.HEAD
        names = set(inspect(conn).get_table_names())
    assert {"crawls", "crawl_pages"} <= names


def test_a_page_is_done_only_with_its_record_and_only_once(led):
    c = Crawls(led.store)
    crawl = c.create("C-1", "http://shop.test/", operator="Li Wei", options={"max_pages": 5})
    assert [p.url for p in c.next_pages(crawl.id, 10)] == ["http://shop.test/"]
    size = led.size()
    found = [("http://shop.test/a", 1), ("http://shop.test/b", 1), ("http://shop.test/a", 1), ("http://shop.test/", 1)]
    rec = _seal(led, c, crawl.id, "http://shop.test/", found)
    pages = list(c.pages(crawl.id))
    # The start page is done with its record; each new link queued once, the start page not again.
    assert [(p.url, p.state, p.record_idx) for p in pages] == [
        ("http://shop.test/", "done", rec.index), ("http://shop.test/a", "queued", None), ("http://shop.test/b", "queued", None)]
    assert pages[0].links == ["http://shop.test/a", "http://shop.test/b", "http://shop.test/a", "http://shop.test/"]
    assert led.size() == size + 1
    # A second run sealing the same page: refused, and its record rolled back with it.
    with pytest.raises(PageTaken):
        _seal(led, c, crawl.id, "http://shop.test/")
    assert led.size() == size + 1
    assert c.counts(crawl.id) == {"queued": 2, "done": 1, "failed": 0}
    # Control: a queued page settles.
    _seal(led, c, crawl.id, "http://shop.test/a")
    assert c.counts(crawl.id) == {"queued": 1, "done": 2, "failed": 0}


def test_unknown_page_cannot_be_sealed(led):
    c = Crawls(led.store)
    crawl = c.create("C-1", "http://shop.test/", operator=None, options={})
    size = led.size()
    with pytest.raises(PageTaken):
        _seal(led, c, crawl.id, "http://shop.test/never-queued")
    assert led.size() == size


def test_failed_pages_and_order(led):
    c = Crawls(led.store)
    crawl = c.create("C-1", "http://shop.test/", operator=None, options={})
    _seal(led, c, crawl.id, "http://shop.test/", [(f"http://shop.test/{i}", 1) for i in range(7)])
    c.page_failed(crawl.id, "http://shop.test/3", "capture of http://shop.test/3 failed: refused")
    with pytest.raises(PageTaken):
        c.page_failed(crawl.id, "http://shop.test/3", "again")
    # Read back in batches smaller than the crawl: discovery order, nothing lost or repeated.
    urls = [p.url for p in c.pages(crawl.id, batch=3)]
    assert urls == ["http://shop.test/"] + [f"http://shop.test/{i}" for i in range(7)]
    assert [p.url for p in c.next_pages(crawl.id, 2)] == ["http://shop.test/0", "http://shop.test/1"]
    assert next(p for p in c.pages(crawl.id) if p.url.endswith("/3")).error.endswith("refused")


def test_finish_once(led):
    c = Crawls(led.store)
    crawl = c.create("C-1", "http://shop.test/", operator=None, options={})
    c.set_state(crawl.id, "paused", "expected text not found")
    assert c.get(crawl.id).state == "paused" and c.get(crawl.id).reason
    rec = led.append_many([_draft("end")], on_locked=lambda conn, recs: c.finish_in(conn, crawl.id, recs[0].index))[0]
    assert (c.get(crawl.id).state, c.get(crawl.id).record_idx) == ("done", rec.index)
    size = led.size()
    with pytest.raises(PageTaken):
        led.append_many([_draft("end")], on_locked=lambda conn, recs: c.finish_in(conn, crawl.id, recs[0].index))
    assert led.size() == size
    c.set_state(crawl.id, "running")  # a done crawl stays done
    assert c.get(crawl.id).state == "done"


def test_downgrade_removes_and_upgrade_restores(tmp_path):
    from alembic import command

    led = Ledger.init(tmp_path / "h", unencrypted=True, origin="test.example/log")
    engine = led.store.engine
    with engine.connect() as conn, conn.begin():
        command.downgrade(migrations.alembic_config(conn), "0002")
    with engine.connect() as conn:
        assert "crawl_pages" not in inspect(conn).get_table_names()
    with engine.connect() as conn, conn.begin():
        command.upgrade(migrations.alembic_config(conn), "0003")
    with engine.connect() as conn:
        assert {"crawls", "crawl_pages"} <= set(inspect(conn).get_table_names())
    led.close()
