// The journey page's live updates: the server sends its live sections as HTML whenever the
// figures change (Server-Sent Events); each section is patched in place, so that nothing
// flickers and focus and scroll stay where they were. Without this script the page is a
// complete snapshot.
"use strict";

(function () {
  const status = document.getElementById("live");
  let lastHeard = 0;
  let state = "connecting";

  function show() {
    if (!status) return;
    status.dataset.state = state;
    if (state === "live") {
      const seconds = Math.max(0, Math.round((Date.now() - lastHeard) / 1000));
      status.textContent = "Live: last heard from the worker " + (seconds < 2 ? "just now" : seconds + " s ago");
    } else if (state === "lost") {
      status.textContent = "Connection to the worker lost: retrying\u2026 (figures may be stale)";
    } else {
      status.textContent = "Connecting to the worker\u2026";
    }
  }

  // Make `from` look like `to` (same tag), touching only what differs.
  function patch(from, to) {
    for (const attr of Array.from(from.attributes)) {
      if (!to.hasAttribute(attr.name)) from.removeAttribute(attr.name);
    }
    for (const attr of Array.from(to.attributes)) {
      if (from.getAttribute(attr.name) !== attr.value) from.setAttribute(attr.name, attr.value);
    }
    const next = Array.from(to.childNodes);
    next.forEach(function (wanted, i) {
      const have = from.childNodes[i];
      if (!have) {
        from.appendChild(wanted.cloneNode(true));
      } else if (have.nodeType !== wanted.nodeType || have.nodeName !== wanted.nodeName) {
        from.replaceChild(wanted.cloneNode(true), have);
      } else if (have.nodeType === Node.ELEMENT_NODE) {
        patch(have, wanted);
      } else if (have.nodeValue !== wanted.nodeValue) {
        have.nodeValue = wanted.nodeValue;
      }
    });
    while (from.childNodes.length > next.length) from.removeChild(from.lastChild);
  }

  function update(sections) {
    for (const id of Object.keys(sections)) {
      const target = document.getElementById(id);
      if (!target) continue;
      // Parsed inertly: a template runs no script and loads nothing.
      const template = document.createElement("template");
      template.innerHTML = sections[id];
      const wanted = document.createElement(target.tagName);
      wanted.append(template.content);
      for (const attr of Array.from(target.attributes)) wanted.setAttribute(attr.name, attr.value);
      patch(target, wanted);
    }
  }

  function heard() {
    lastHeard = Date.now();
    state = "live";
    show();
  }

  if (!("EventSource" in window)) return;
  const source = new EventSource("/live");
  show();
  source.addEventListener("open", heard);
  source.addEventListener("heartbeat", heard);
  source.addEventListener("sections", function (event) {
    heard();
    update(JSON.parse(event.data).sections);
  });
  source.addEventListener("error", function () {
    state = "lost";
    show();
  });
  setInterval(function () { if (state === "live") show(); }, 1000);
})();
