// The "sold" figure comes from an API call and keeps ticking, as on real
// listings: a capture must record both the XHR and what the screen showed.
(function () {
  var sold = document.getElementById("sold");
  var id = document.querySelector("[data-item-id]").getAttribute("data-item-id");
  var count = 0;
  fetch("/api/sold?item=" + id)
    .then(function (r) { return r.json(); })
    .then(function (d) {
      count = d.sold;
      sold.textContent = count.toLocaleString("zh-CN");
      setInterval(function () { count += 1; sold.textContent = count.toLocaleString("zh-CN"); }, 3000);
    });
  // Script-driven lazy loading (data-src), the older pattern many shops still use.
  var io = new IntersectionObserver(function (entries) {
    entries.forEach(function (e) {
      if (e.isIntersecting) { e.target.src = e.target.getAttribute("data-src"); io.unobserve(e.target); }
    });
  });
  document.querySelectorAll("img.lazy").forEach(function (img) { io.observe(img); });
})();
