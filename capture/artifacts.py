"""The capture's files besides the snapshots: the WARC, network.json, environment.json, the log.

Written once the page is closed, from what the steps put into the state;
every snapshot and saved file also goes into the WARC as a resource.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .browser import video_encoder
from .environment import environment, tool_version
from .network import Hop
from .state import CaptureState
from .warc import Resource, WarcFile, response_headers


def main_headers(main: list[Hop]) -> dict[str, Any] | None:
    final = main[-1] if main else None
    if final is None or final.response is None:
        return None
    status_line, headers, _ = response_headers(final)
    return {"status_line": status_line, "headers": [[k, v] for k, v in headers]}


def write(s: CaptureState, info: dict[str, Any], main: list[Hop]) -> None:
    """Write the WARC and the JSON facts into the work directory, as artifacts."""
    warc_path = s.add("page.warc.gz", "application/warc", "warc")
    warc = WarcFile(warc_path)
    b = s.browser.facts
    env = environment(b.to_json() if b else {}, s.browser.proxy, s.profile)
    env["check"] = s.check
    if s.video is not None:
        env["video_encoder"] = video_encoder()
    warc.warcinfo(
        {
            "software": tool_version(),
            "format": "WARC File Format 1.1",
            "conformsTo": "https://iipc.github.io/warc-specifications/specifications/warc-format/warc-1.1/",
            "browser": f"{b.name} {b.version}" if b else "unknown",
            "user-agent": info["viewport"]["user_agent"] or "",
            "os": f"{env['os']['distribution'] or env['os']['system']} ({env['os']['system']} {env['os']['release']} {env['os']['machine']})",
            "hostname": env["os"]["hostname"],
            "operator": s.operator or "",
            "case": s.case or "",
            "note": s.note or "",
            "capture-start": info["started"],
            "capture-end": info["ended"],
            "time-source": "system clock of the capturing machine",
            "isPartOf": s.case or "",
        }
    )
    final = main[-1] if main else None
    for hop in s.rec.order:
        if urlsplit(hop.url).scheme not in ("http", "https"):
            continue  # data:, blob: and the like never crossed the network
        notes = warc.exchange(hop, main=hop is final, stored_as=s.payload_of_hop.get(id(hop)))
        for n in notes:
            if n not in hop.transformations:
                hop.transformations.append(n)
        if notes:
            s.log("warc", f"{hop.method} {hop.url}: " + "; ".join(notes))
    network = {
        "main_document": {
            "url": final.url if final else None,
            "redirect_chain": [h.summary() for h in main],
            "response": main_headers(main),
        },
        "exchanges": [h.summary() for h in s.rec.order],
        "tls": s.tls,
        "dns": {
            "statement": (
                "Chromium does not report its DNS answers; browser_connected_to is the address each "
                "connection actually used, system_resolver is this machine's resolver asked right after the capture"
            ),
            "hosts": s.dns,
        },
        "dialogs": s.dialogs,
        "popups": s.popups,
        "downloads": [
            {k: str(v) if isinstance(v, Path) else v for k, v in d.items()} for d in s.downloads
        ],
        "scroll": s.scroll,
        "page": s.facts,
    }
    net_path = s.add("network.json", "application/json", "network")
    net_path.write_text(json.dumps(network, ensure_ascii=False, indent=1, sort_keys=True), "utf-8")
    env_path = s.add("environment.json", "application/json", "environment")
    env_path.write_text(json.dumps(env, ensure_ascii=False, indent=1, sort_keys=True), "utf-8")
    log_path = s.add("capture-log.jsonl", "application/x-ndjson", "capture-log")
    s.log("warc", "exchanges written; adding resources and metadata", records=warc.records)
    s.log.write(log_path)
    page_url = info["final_url"]
    when = info["ended"]
    roles = {
        "screenshot-full": f"urn:evidence-chain:screenshot-full:{page_url}",
        "screenshot-viewport": f"urn:evidence-chain:screenshot-viewport:{page_url}",
        "dom": f"urn:evidence-chain:dom:{page_url}",
        "mhtml": f"urn:evidence-chain:mhtml:{page_url}",
        "certificates": f"urn:evidence-chain:certificates:{page_url}",
        "process-video": f"urn:evidence-chain:process-video:{page_url}",
    }
    visit_url = {v[k]: v["url"] for v in s.visits for k in ("screenshot", "dom") if k in v}
    for a in list(s.artifacts):
        if a.role in roles:
            warc.resource(Resource(roles[a.role], a.path, a.media_type, refers_to_main=True), when)
        elif a.role == "frame-dom":
            frame_url = next((f["url"] for f in s.frames if f.get("artifact") == a.name), page_url)
            warc.resource(Resource(f"urn:evidence-chain:frame-dom:{frame_url}", a.path, a.media_type), when)
        elif a.role in ("visit-screenshot", "visit-dom"):
            kind = "screenshot-viewport" if a.role == "visit-screenshot" else "dom"
            uri = f"urn:evidence-chain:{kind}:{visit_url.get(a.name, page_url)}"
            warc.resource(Resource(uri, a.path, a.media_type), when)
        elif a.role == "download":
            ref = s.download_refs[a.path]
            if ref in s.payload_of_hop.values():
                continue  # its exchange's revisit record already names it
            d = next((d for d in s.downloads if d["path"] == a.path), None)
            uri = f"urn:evidence-chain:download:{d['url'] if d else a.name}"
            warc.payload_reference(uri, ref, when)
    for a, uri in (
        (log_path, f"urn:evidence-chain:capture-log:{page_url}"),
        (net_path, f"urn:evidence-chain:network:{page_url}"),
        (env_path, f"urn:evidence-chain:environment:{page_url}"),
    ):
        media = "application/x-ndjson" if a is log_path else "application/json"
        warc.resource(Resource(uri, a, media, record_type="metadata", refers_to_main=True), when)
    warc.close()
    # The bodies live on in the WARC; the scratch copies go.
    shutil.rmtree(s.dir / "bodies", ignore_errors=True)
    # The WARC goes first in the manifest: it is the primary artifact.
    s.artifacts.sort(key=lambda x: x.role != "warc")
