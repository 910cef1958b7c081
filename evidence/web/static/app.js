// Progressive enhancement only: every page works without this file.
"use strict";
document.addEventListener("click", (ev) => {
  const img = ev.target.closest("img.zoomable");
  if (img) { ev.preventDefault(); img.classList.toggle("zoomed"); }
});
const job = document.getElementById("job");
if (job) {
  const id = job.dataset.job;
  const state = document.getElementById("job-state");
  const msgs = document.getElementById("job-messages");
  const result = document.getElementById("job-result");
  const elapsed = document.getElementById("job-elapsed");
  const tick = async () => {
    const r = await fetch(`/api/jobs/${encodeURIComponent(id)}`, {credentials: "same-origin"});
    if (!r.ok) return;
    const j = await r.json();
    state.textContent = j.state;
    elapsed.textContent = `(${j.elapsed} s)`;
    msgs.replaceChildren(...j.messages.map((m) => { const li = document.createElement("li"); li.textContent = m; return li; }));
    result.replaceChildren();
    if (j.exhibit !== null) {
      const a = document.createElement("a");
      a.href = `/exhibits/${j.exhibit}`; a.id = "exhibit-link"; a.textContent = `Exhibit ${j.exhibit}`;
      result.append(a);
    }
    if (j.error) { const s = document.createElement("span"); s.className = "error"; s.textContent = j.error; result.append(s); }
    if (j.state === "queued" || j.state === "running") setTimeout(tick, 700);
  };
  tick();
}
const live = document.getElementById("live");
if (live) {
  // Live status of a livestream capture: the window count, sealed windows, the latest frames.
  const id = live.dataset.live;
  const $ = (x) => document.getElementById(x);
  const tick = async () => {
    const r = await fetch(`/api/livestream/${encodeURIComponent(id)}`, {credentials: "same-origin"});
    if (!r.ok) return;
    const j = await r.json();
    $("live-state").textContent = j.state;
    $("live-elapsed").textContent = `(${j.elapsed} s)`;
    $("window-count").textContent = String(j.window_count);
    $("frame-count").textContent = String(j.frames);
    const frames = $("frames");
    const want = j.latest_frames.map((n) => `/livestream/${encodeURIComponent(id)}/frames/${encodeURIComponent(n)}?thumb=1`);
    const have = Array.from(frames.querySelectorAll("img")).map((i) => i.getAttribute("src"));
    if (want.join("\n") !== have.join("\n")) {
      frames.replaceChildren(...want.map((src, k) => { const i = new Image(); i.src = src; i.alt = j.latest_frames[k]; return i; }));
    }
    $("windows").replaceChildren(...j.windows.map((w) => {
      const li = document.createElement("li"); const a = document.createElement("a");
      a.href = `/exhibits/${w}`; a.className = "window-link"; a.textContent = `exhibit ${w}`; li.append(a); return li;
    }));
    const res = $("live-result");
    res.replaceChildren();
    if (j.end_index !== null) res.append(`Ended 结束: ${j.end_reason}, end record ${j.end_index}`);
    if (j.error) { const s = document.createElement("span"); s.className = "error"; s.id = "error"; s.textContent = j.error; res.append(s); }
    const stop = $("stop-form");
    if (stop && !(j.state === "starting" || j.state === "recording")) stop.remove();
    if (j.state !== "done" && j.state !== "failed") setTimeout(tick, 1000);
  };
  tick();
}
