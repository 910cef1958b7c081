"""Screenshots straight from DevTools: the viewport, and the whole page (in tiles when tall)."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

from ledger.exhibit import ArtifactFile

from .state import CaptureState
from .tiles import StitchedPng

#: tile height, in device pixels, of a tall full-page screenshot (Chromium draws at most 16,384)
TILE_DEVICE_PX = 8192


async def screenshot(s: CaptureState, params: dict[str, Any]) -> bytes:
    # Straight from DevTools: Playwright's screenshot adds waits and
    # round trips we do not need once the page has settled.
    r = await s.cdp.send("Page.captureScreenshot", {"format": "png", **params})
    return base64.b64decode(r["data"])


async def shot_viewport(s: CaptureState) -> list[ArtifactFile]:
    path = s.dir / "screenshot-viewport.png"
    params: dict[str, Any] = {}
    if s.opt.device_scale_factor != 1:
        # As the full-page shot: device pixels need the scale asked for explicitly.
        vv = (await s.cdp.send("Page.getLayoutMetrics")).get("cssVisualViewport") or {}
        params["clip"] = {
            "x": vv.get("pageX", 0), "y": vv.get("pageY", 0),
            "width": vv.get("clientWidth", s.opt.viewport_width),
            "height": vv.get("clientHeight", s.opt.viewport_height),
            "scale": s.opt.device_scale_factor,
        }
    path.write_bytes(await screenshot(s, params))
    return [ArtifactFile("screenshot-viewport.png", path, "image/png", "screenshot-viewport")]


async def shot_full(s: CaptureState) -> list[ArtifactFile]:
    """The whole page; taller than one tile, shot in tiles and stitched into one PNG."""
    metrics = await s.cdp.send("Page.getLayoutMetrics")
    size = metrics.get("cssContentSize") or metrics.get("contentSize") or {}
    width = max(1, int(size.get("width") or s.opt.viewport_width))
    height = max(1, int(size.get("height") or s.opt.viewport_height))
    s.scroll["content_size"] = {"width": width, "height": height}
    if height > s.opt.max_screenshot_height:
        s.warn(
            f"page is {height:,} px tall; the full-page screenshot shows the top "
            f"{s.opt.max_screenshot_height:,} px (max_screenshot_height)"
        )
        height = s.opt.max_screenshot_height
    # Tiles in CSS pixels small enough that, at the device's scale, each stays
    # well under Chromium's texture limit.
    tile = max(256, int(TILE_DEVICE_PX // max(1.0, float(s.opt.device_scale_factor))))
    path = s.dir / "screenshot-full.png"
    shot: dict[str, Any] = {"width_css": width, "height_css": height, "tile_height_css": tile}
    if height <= tile:
        # Device pixels (CSS x scale factor): our session's screenshots are drawn at CSS size otherwise.
        clip = {"x": 0, "y": 0, "width": width, "height": height, "scale": s.opt.device_scale_factor}
        path.write_bytes(await screenshot(s, {"captureBeyondViewport": True, "clip": clip}))
        shot["tiles"] = 1
    else:
        png = StitchedPng(path)
        try:
            for top in range(0, height, tile):
                h = min(tile, height - top)
                clip = {"x": 0, "y": top, "width": width, "height": h, "scale": s.opt.device_scale_factor}
                data = await screenshot(s, {"captureBeyondViewport": True, "clip": clip})
                # Decoding and compressing a tile takes a second or so: off the event loop.
                await asyncio.to_thread(png.add, data)
            png.close()
        except BaseException:
            png.abort()
            raise
        shot.update(tiles=png.tiles, width_px=png.width, height_px=png.rows)
        shot["statement"] = (
            f"the page is taller than one screenshot can be drawn; it was shot in {png.tiles} tiles of at "
            f"most {tile:,} CSS px, top to bottom, and their pixel rows joined into this one PNG unchanged"
        )
    s.full_shot = shot
    s.log("screenshot", "viewport and full-page screenshots taken", width=width, height=height,
          tiles=shot["tiles"])
    return [ArtifactFile("screenshot-full.png", path, "image/png", "screenshot-full")]
