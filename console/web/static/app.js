// The admin page's live part: re-render on every registry change (server-
// sent events), and steer hail_config through the JSON API.
(function () {
  "use strict";
  var main = document.getElementById("main");
  var message = document.getElementById("message");
  var live = document.getElementById("live");
  var formDirty = false;

  function say(text, isError) {
    message.textContent = text;
    message.className = isError ? "error" : "ok";
  }

  // morph makes cur look like next, replacing only what differs: at steady
  // traffic a change touches a few cells of each row, and keeping the rest
  // spares the browser their style and layout. An element whose children
  // differ in number, kind or key is replaced whole; a form is replaced
  // whole; an open <details> stays open, and so does an opened timeline.
  var slice = function (list) { return Array.prototype.slice.call(list); };
  function key(n) {
    if (n.nodeType !== 1) return "#" + n.nodeType;
    return n.tagName + "#" + (n.id || n.dataset.service || n.dataset.id || "");
  }
  // The page's own additions (an opened timeline) are not the server's:
  // they stay where they are.
  var own = function (n) { return n.nodeType === 1 && n.classList.contains("timeline-row"); };
  function morph(cur, next) {
    if (cur.isEqualNode(next)) return;
    var a = slice(cur.childNodes).filter(function (n) { return !own(n); }), b = slice(next.childNodes);
    var same = cur.tagName !== "FORM" && a.length === b.length;
    for (var i = 0; same && i < a.length; i++) same = key(a[i]) === key(b[i]);
    if (!same) {
      cur.replaceWith(next);
      return;
    }
    slice(cur.attributes).forEach(function (at) {
      if (!next.hasAttribute(at.name) && !(at.name === "open" && cur.tagName === "DETAILS")) cur.removeAttribute(at.name);
    });
    slice(next.attributes).forEach(function (at) {
      if (cur.getAttribute(at.name) !== at.value) cur.setAttribute(at.name, at.value);
    });
    a.forEach(function (c, i) {
      if (c.nodeType === 1) morph(c, b[i]);
      else if (c.nodeValue !== b[i].nodeValue) c.nodeValue = b[i].nodeValue;
    });
  }

  // A change is fetched at once when the page has been quiet for 100 ms,
  // and a burst of changes makes at most one fetch per 100 ms. Each update
  // is timed to the frame that shows it, as the User Timing measure
  // "hail:update" (the browser's performance panel shows it).
  var pending = null, last = 0;
  function refresh() {
    if (pending) return;
    var wait = Math.max(0, 100 - (Date.now() - last));
    pending = setTimeout(function () {
      pending = null;
      last = Date.now();
      var t0 = performance.now();
      var service = main.dataset.service || "";
      // Every service: the first answer showed the first rows only.
      fetch("/ui/main?all&service=" + encodeURIComponent(service))
        .then(function (r) { return r.text(); })
        .then(function (html) {
          var fresh = document.createElement("main");
          fresh.innerHTML = html;
          var ids = function (el) { return slice(el.children).map(function (c) { return c.id; }).join(","); };
          if (ids(fresh) !== ids(main)) {
            main.innerHTML = html;
          } else {
            var cur = slice(main.children);
            slice(fresh.children).forEach(function (sec, i) {
              // An edit in progress in the route form is left alone.
              if (!(formDirty && sec.id === "sec-route")) morph(cur[i], sec);
            });
          }
          requestAnimationFrame(function () {
            setTimeout(function () { performance.measure("hail:update", { start: t0 }); }, 0);
          });
        });
    }, wait);
  }

  function connect() {
    var es = new EventSource("/api/events");
    es.onopen = function () { live.textContent = "live"; live.className = "live on"; refresh(); };
    es.addEventListener("change", refresh);
    es.onerror = function () { live.textContent = "reconnecting…"; live.className = "live"; };
  }

  function send(method, url, body) {
    return fetch(url, {
      method: method,
      headers: { "Content-Type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body)
    }).then(function (r) {
      if (r.status === 204) return null;
      return r.json().then(function (v) {
        if (!r.ok) throw new Error(v.error || r.statusText);
        return v;
      });
    });
  }

  function edited(e) {
    if (e.target.closest("#route-form")) formDirty = true;
  }
  main.addEventListener("input", edited);
  main.addEventListener("change", edited);

  main.addEventListener("submit", function (e) {
    var form = e.target;
    if (form.id !== "route-form") return;
    e.preventDefault();
    var route = JSON.parse(form.dataset.route || "{}");
    route.strategy = form.elements.strategy.value || undefined;
    route.hash_header = form.elements.hash_header.value || undefined;
    var weights = {};
    form.querySelectorAll("input.weight").forEach(function (input) {
      if (input.value !== "") weights[input.dataset.id] = Number(input.value);
    });
    route.weights = Object.keys(weights).length ? weights : undefined;
    send("PUT", "/api/routes/" + encodeURIComponent(form.dataset.service), route)
      .then(function () { formDirty = false; say("Saved " + "route." + form.dataset.service + ".", false); refresh(); })
      .catch(function (err) { say("Not saved: " + err.message, true); });
  });

  main.addEventListener("click", function (e) {
    var b = e.target.closest("button");
    if (!b) return;
    if (b.id === "delete-route") {
      var service = document.getElementById("route-form").dataset.service;
      send("DELETE", "/api/routes/" + encodeURIComponent(service))
        .then(function () { formDirty = false; say("Deleted route." + service + ": router defaults apply.", false); refresh(); })
        .catch(function (err) { say("Not deleted: " + err.message, true); });
    } else if (b.classList.contains("drain") || b.classList.contains("undrain")) {
      var verb = b.classList.contains("drain") ? "drain" : "undrain";
      send("POST", "/api/instances/" + encodeURIComponent(b.dataset.id) + "/" + verb)
        .then(function () { say((verb === "drain" ? "Drained " : "Undrained ") + b.dataset.id + ".", false); refresh(); })
        .catch(function (err) { say("Not changed: " + err.message, true); });
    } else if (b.classList.contains("timeline")) {
      toggleTimeline(b);
    }
  });

  function toggleTimeline(b) {
    var row = b.closest("tr");
    var next = row.nextElementSibling;
    if (next && next.classList.contains("timeline-row")) { next.remove(); return; }
    fetch("/api/timeline?service=" + encodeURIComponent(b.dataset.service) + "&id=" + encodeURIComponent(b.dataset.id))
      .then(function (r) { return r.json(); })
      .then(function (evs) {
        var tr = document.createElement("tr");
        tr.className = "timeline-row";
        var td = document.createElement("td");
        td.colSpan = row.cells.length;
        var ol = document.createElement("ol");
        ol.className = "timeline";
        (evs || []).forEach(function (ev) {
          var li = document.createElement("li");
          var badge = document.createElement("span");
          badge.className = "badge " + ev.status;
          badge.textContent = ev.status;
          li.appendChild(badge);
          li.appendChild(document.createTextNode(" " + new Date(ev.ts).toLocaleTimeString() + (ev.reason ? " · " + ev.reason : "")));
          ol.appendChild(li);
        });
        if (!ol.children.length) ol.textContent = "No health events kept for this instance.";
        td.appendChild(ol);
        tr.appendChild(td);
        row.after(tr);
      });
  }

  connect();
})();
