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
