"""The rendered DOM of the page and of each of its frames, and the MHTML snapshot.

Open shadow roots are kept as declarative shadow DOM; each DOM is serialised
in an isolated world and read back in slices, so a huge page never crosses
DevTools as one message.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ledger.exhibit import ArtifactFile

from .network import Unanswered, _short
from .state import CaptureState
from .world import World

DOM_CHUNK = 1 << 20  # characters per DevTools round trip when reading the DOM
#: frames whose DOM is kept, and frames listed, in document order (breadth first)
MAX_FRAME_DOMS = 50
MAX_FRAMES_LISTED = 200

# Open shadow roots are kept as declarative shadow DOM (<template shadowrootmode>),
# which a browser rebuilds when it opens the file; outerHTML alone drops them.
# Closed shadow roots cannot be reached by script: only the screenshots show them.
DOM_JS = """
(() => {
  const roots = [];
  const todo = [document];
  while (todo.length) {  // a loop, not recursion: a page can nest roots deeper than the stack
    const it = document.createTreeWalker(todo.pop(), NodeFilter.SHOW_ELEMENT);
    for (let el = it.nextNode(); el; el = it.nextNode()) {
      if (el.shadowRoot) { roots.push(el.shadowRoot); todo.push(el.shadowRoot); }
    }
  }
  const de = document.documentElement;
  let html = "";
  if (de && roots.length && typeof de.getHTML === "function") {
    const q = (v) => v.replace(/&/g, "&amp;").replace(/"/g, "&quot;");
    const attrs = Array.from(de.attributes, (a) => " " + a.name + '="' + q(a.value) + '"').join("");
    html = "<" + de.localName + attrs + ">" + de.getHTML({serializableShadowRoots: true, shadowRoots: roots}) +
           "</" + de.localName + ">";
  } else if (de) {
    html = de.outerHTML;
  }
  const dt = document.doctype;
  const s = (dt ? new XMLSerializer().serializeToString(dt) + "\\n" : "") + html;
  globalThis[%s] = s;
  return {length: s.length, shadowRoots: roots.length};
})()
"""


async def dom(s: CaptureState) -> list[ArtifactFile]:
    """The main document's DOM as ``dom.html``, then every frame's."""
    path = s.dir / "dom.html"
    try:
        length = await dom_to(s, path)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    s.dom_chars = length
    s.main_shadow_roots = s.dom_shadow_roots
    s.log("dom", "rendered DOM saved", characters=length, shadow_roots=s.dom_shadow_roots)
    return [ArtifactFile("dom.html", path, "text/html; charset=utf-8", "dom"), *await frame_doms(s)]


async def mhtml(s: CaptureState) -> list[ArtifactFile]:
    if not s.opt.mhtml:
        return []
    length = s.dom_chars
    if length * 2 > s.opt.max_mhtml_bytes:
        s.warn(
            f"MHTML snapshot skipped: the page's DOM ({length:,} characters) is too large for "
            f"one DevTools message; the WARC and dom.html hold the page"
        )
        return []
    snap = await s.cdp.send("Page.captureSnapshot", {"format": "mhtml"}, timeout=60)
    path = s.dir / "page.mhtml"
    path.write_text(snap["data"], "utf-8", newline="")
    s.log("mhtml", "MHTML snapshot saved")
    return [ArtifactFile("page.mhtml", path, "multipart/related", "mhtml")]


async def frame_doms(s: CaptureState) -> list[ArtifactFile]:
    """The DOM of every frame in the page, each a file of its own, listed in ``frames``.

    Each is read in an isolated world of that frame, as the main DOM is;
    a frame that cannot be read (gone, or in another renderer process)
    is listed with the reason.
    """
    s.frames = []
    try:
        tree = (await s.cdp.send("Page.getFrameTree"))["frameTree"]
    except Exception as e:
        s.log("dom", f"frames not listed: {_short(e)}")
        return []
    frames: list[dict[str, Any]] = []
    stuck = False
    made: list[ArtifactFile] = []
    ids = {tree["frame"]["id"]: 0}
    todo = [(c, tree["frame"]["id"]) for c in tree.get("childFrames", [])]
    unlisted = 0
    while todo:
        node, parent = todo.pop(0)
        f = node["frame"]
        n = len(frames) + 1
        if n > MAX_FRAMES_LISTED:
            unlisted += 1
            todo.extend((c, f["id"]) for c in node.get("childFrames", []))
            continue
        ids[f["id"]] = n
        todo.extend((c, f["id"]) for c in node.get("childFrames", []))
        entry: dict[str, Any] = {
            "n": n,
            "url": str(f.get("url", "")) + str(f.get("urlFragment", "")),
            "name": str(f.get("name") or "")[:200] or None,
            "parent": ids.get(parent, 0),
            "origin": f.get("securityOrigin"),
        }
        frames.append(entry)
        if n > MAX_FRAME_DOMS:
            entry["error"] = f"more than {MAX_FRAME_DOMS} frames: not serialised"
            continue
        if stuck:
            entry["error"] = "not read: the renderer stopped answering"
            continue
        name = f"dom-frame-{n:03d}.html"
        path = s.dir / name
        try:
            await dom_to(s, path, World(s.cdp, f["id"]))
        except Exception as e:
            stuck = isinstance(e, Unanswered)
            path.unlink(missing_ok=True)
            entry["error"] = _short(e)
            s.log("dom", f"DOM of frame {n} not read: {_short(e)}", url=entry["url"])
            continue
        entry["artifact"] = name
        entry["shadow_roots"] = s.dom_shadow_roots
        made.append(ArtifactFile(name, path, "text/html; charset=utf-8", "frame-dom"))
    if len(frames) > MAX_FRAME_DOMS:
        listed = f", the first {MAX_FRAMES_LISTED} listed" if unlisted else ""
        s.warn(
            f"the page has {len(frames) + unlisted} frames; the DOM of the first {MAX_FRAME_DOMS} is kept{listed}"
        )
    s.frames = frames
    if frames:
        s.log("dom", f"DOM of {len(made)} of {len(frames)} frame(s) saved")
    return made


async def read_global(s: CaptureState, world: World, key: str, length: int, write: Callable[[str], Any]) -> None:
    """Hand ``globalThis[key]`` (a string) to ``write`` in slices, then delete it.

    Slices keep a huge string from crossing DevTools as one message; a
    slice never ends between the two halves of a surrogate pair.
    """
    read_js = (
        "(() => { const s = globalThis[%s]; let e = Math.min(%d, s.length);"
        " if (e < s.length && e > %d && s.charCodeAt(e - 1) >= 0xD800 && s.charCodeAt(e - 1) < 0xDC00) e--;"
        " return [e, s.slice(%d, e)]; })()"
    )
    pos = 0
    while pos < length:
        end, text = await world.eval(read_js % (key, pos + DOM_CHUNK, pos, pos), timeout=s.step_timeout)
        write(text)
        pos = int(end)
    await world.eval(f"delete globalThis[{key}]", timeout=10)


async def dom_to(s: CaptureState, path: Path, world: World | None = None) -> int:
    """Serialise the DOM of ``world``'s frame (the main frame's by default) into ``path``; its length."""
    world = world or s.world
    key = json.dumps("__evidence_dom_" + secrets.token_hex(8))
    r = await world.eval(DOM_JS % key, timeout=s.step_timeout) or {}
    length = int(r.get("length", 0))
    s.dom_shadow_roots = int(r.get("shadowRoots", 0))
    with open(path, "w", encoding="utf-8", errors="surrogatepass", newline="") as f:
        await read_global(s, world, key, length, f.write)
    return length
