// Live updates for /activity (Server-Sent Events). The page is complete without this file;
// it only puts new entries on top. Everything from the server is set as text.
"use strict";

(function () {
  function status(text) {
    var element = document.getElementById("live-status");
    if (element) element.textContent = text;
  }

  function link(href, text) {
    var a = document.createElement("a");
    a.href = href;
    a.textContent = text;
    return a;
  }

  function row(entry) {
    var item = document.createElement("li");
    item.className = "entry";
    item.id = "entry-" + entry.key;
    var when = document.createElement("span");
    when.className = "when";
    var time = document.createElement("time");
    time.dateTime = entry.at;
    time.textContent = entry.at.replace("T", " ").slice(0, 19) + " UTC";
    when.append(time);
    var kind = document.createElement("span");
    kind.className = "kind kind-" + entry.kind;
    kind.textContent = entry.kind;
    var what = document.createElement("span");
    what.className = "what";
    what.textContent = entry.message;
    var links = document.createElement("span");
    links.className = "links muted";
    if (entry.ticket_url) links.append(link(entry.ticket_url, entry.ticket_key || "ticket"));
    if (entry.run_url) links.append(" · ", link(entry.run_url, "run " + entry.run_id));
    if (entry.repo) links.append(" · " + entry.repo);
    item.append(when, " ", kind, " ", what, " ", links);
    return item;
  }

  function follow(feed) {
    var source = new EventSource(feed.dataset.events);
    source.addEventListener("open", function () {
      status("Live: new entries appear as they happen.");
    });
    source.addEventListener("entry", function (event) {
      var entry = JSON.parse(event.data);
      if (document.getElementById("entry-" + entry.key)) return;
      feed.prepend(row(entry));
    });
    source.addEventListener("interrupted", function () {
      status("Reconnecting…");
    });
    source.addEventListener("error", function () {
      if (source.readyState === EventSource.CLOSED) {
        status("Live updates stopped. Reload the page to see new entries.");
      } else {
        status("Reconnecting…");
      }
    });
  }

  function start() {
    if (typeof EventSource === "undefined") return;
    var feed = document.querySelector("[data-live-activity]");
    if (feed) follow(feed);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
