// Live updates for the ticket board, a ticket's page and the run page (Server-Sent Events).
// The pages are complete without this file; it only keeps them current. What the streams
// send is set as text (textContent), never as HTML; a ticket's page swaps in its own
// sections as the server renders them for a reload (fetched from the same URL).
"use strict";

(function () {
  function status(text) {
    var element = document.getElementById("live-status");
    if (element) element.textContent = text;
  }

  // -- the board ------------------------------------------------------------------------

  function column(board, state) {
    var found = board.querySelector('section.column[data-state="' + CSS.escape(state) + '"]');
    if (found) return found;
    // A custom stage the page did not have a column for yet.
    var section = document.createElement("section");
    section.className = "column";
    section.dataset.state = state;
    section.setAttribute("aria-labelledby", "col-" + state);
    var heading = document.createElement("h2");
    heading.id = "col-" + state;
    var label = state.replace(/_/g, " ");
    heading.append(label.charAt(0).toUpperCase() + label.slice(1) + " ");
    var count = document.createElement("span");
    count.className = "count muted";
    count.textContent = "0";
    heading.append(count);
    var list = document.createElement("ol");
    list.className = "cards";
    section.append(heading, list);
    board.append(section);
    return section;
  }

  function bump(section, by) {
    var count = section && section.querySelector(".count");
    if (count) count.textContent = String(Math.max(0, (parseInt(count.textContent, 10) || 0) + by));
  }

  function element(tag, className, text) {
    var made = document.createElement(tag);
    if (className) made.className = className;
    if (text) made.textContent = text;
    return made;
  }

  function newCard(ticket) {
    var card = element("li", "card");
    card.id = "ticket-" + ticket.id;
    var meta = element("span", "meta muted");
    meta.append(element("span", "repo"), " · attempt ", element("span", "attempt"));
    card.append(element("a", "key"), " ", element("span", "title"), " ", meta);
    return card;
  }

  // A card's extra lines, in this order; the server renders only those with something
  // to say, and live.js makes the others when a ticket first needs them.
  var PARTS = {
    since: function () {
      var part = element("span", "since muted");
      part.append("running ", element("span", "for"), ", since ", element("time"));
      return part;
    },
    pr: function () {
      var part = element("a", "pr");
      part.append("PR #", element("span", "pr-number"));
      return part;
    },
    waiting: function () {
      var part = element("span", "waiting");
      part.append("waiting: ", element("span", "why"), element("span", "links"));
      return part;
    },
    failure: function () {
      var part = element("span", "failure bad");
      part.append("failed: ", element("span", "why"));
      return part;
    },
    checks: function () {
      var part = element("span", "checks");
      part.append("checks ", element("span", "tally"), ":", element("span", "list"));
      return part;
    },
    held: function () { return element("span", "flag held", "held"); },
    "needs-input": function () { return element("span", "flag needs-input", "needs input"); },
  };
  var ORDER = Object.keys(PARTS);

  // The card's `name` line when `wanted` (made in its place if missing), else hidden.
  function part(card, name, wanted) {
    var found = card.querySelector(":scope > ." + name);
    if (!wanted) {
      if (found) found.hidden = true;
      return null;
    }
    if (!found) {
      found = PARTS[name]();
      var later = null;
      for (var i = ORDER.indexOf(name) + 1; i < ORDER.length && !later; i++) {
        later = card.querySelector(":scope > ." + ORDER[i]);
      }
      card.insertBefore(found, later);
      card.insertBefore(document.createTextNode(" "), found);
    }
    found.hidden = false;
    return found;
  }

  // "running 4 min": from the card's <time>, kept current while the page is open.
  function showElapsed(since) {
    var time = since.querySelector("time");
    var elapsed = since.querySelector(".for");
    if (!time || !elapsed || !time.dateTime) return;
    var minutes = Math.max(0, Math.floor((Date.now() - Date.parse(time.dateTime)) / 60000));
    var hours = Math.floor(minutes / 60);
    elapsed.textContent = hours ? hours + " h " + (minutes % 60) + " min" : minutes + " min";
  }

  // The card's extra lines: each shown only when the ticket says something for it.
  function showDetails(card, ticket) {
    // Not "running" while the agent waits for a person's answer: no run is.
    var since = part(card, "since",
      ticket.since && ticket.state === "in_progress" && !ticket.needs_input);
    if (since) {
      var time = since.querySelector("time");
      time.dateTime = ticket.since;
      time.textContent = ticket.since.slice(11, 16) + " UTC";
      showElapsed(since);
    }
    var pr = part(card, "pr", ticket.pr_url);
    if (pr) {
      pr.href = ticket.pr_url;
      pr.querySelector(".pr-number").textContent = String(ticket.pr_number);
    }
    var waiting = part(card, "waiting", ticket.waiting);
    if (waiting) {
      waiting.querySelector(".why").textContent = ticket.waiting;
      var links = waiting.querySelector(".links");
      links.replaceChildren();
      (ticket.waiting_links || []).forEach(function (link) {
        var anchor = element("a", "", link[0]);
        anchor.href = link[1];  // a path on this site, built by the server from the words
        links.append(" → ", anchor);
      });
    }
    var failure = part(card, "failure", ticket.failure);
    if (failure) failure.querySelector(".why").textContent = ticket.failure;
    var results = ticket.checks || [];
    var checks = part(card, "checks", results.length > 0);
    if (checks) {
      var passed = results.filter(function (check) { return check[1]; }).length;
      checks.querySelector(".tally").textContent = passed + "/" + results.length;
      var list = checks.querySelector(".list");
      list.replaceChildren();
      results.forEach(function (check) {
        list.append(" ", element("span", check[1] ? "ok" : "bad",
          (check[1] ? "✓ " : "✗ ") + check[0]));
      });
    }
    part(card, "held", ticket.held);
    part(card, "needs-input", ticket.needs_input);
  }

  function showTicket(board, ticket) {
    var card = document.getElementById("ticket-" + ticket.id);
    var from = card ? card.closest("section.column") : null;
    if (!card) card = newCard(ticket);
    var key = card.querySelector(".key");
    key.textContent = ticket.key;
    key.href = ticket.url;
    card.querySelector(".title").textContent = ticket.title;
    card.querySelector(".repo").textContent = ticket.repo || ticket.source;
    card.querySelector(".attempt").textContent = String(ticket.attempt);
    showDetails(card, ticket);
    card.dataset.state = ticket.state;
    var to = column(board, ticket.state);
    // Newest change first, as the server orders a column.
    to.querySelector("ol.cards").prepend(card);
    if (from !== to) {
      bump(from, -1);
      bump(to, 1);
    }
  }

  function followBoard(board) {
    window.setInterval(function () {
      board.querySelectorAll(".card .since:not([hidden])").forEach(showElapsed);
    }, 30000);
    var source = new EventSource(board.dataset.events);
    source.addEventListener("open", function () {
      status("Live: changes appear as they happen.");
    });
    source.addEventListener("ticket", function (event) {
      showTicket(board, JSON.parse(event.data));
    });
    source.addEventListener("error", function () {
      if (source.readyState === EventSource.CLOSED) {
        status("Live updates stopped. Reload the page to see changes.");
      } else {
        status("Reconnecting…");
      }
    });
  }

  // -- a run's output -------------------------------------------------------------------

  function followRun(output) {
    var source = new EventSource(output.dataset.events);
    var state = document.getElementById("run-state");
    source.addEventListener("open", function () {
      status("Live: new output appears as it arrives.");
    });
    // The output is folded by phase (details > pre); a phase event opens a new fold.
    function lastFold() {
      var folds = output.querySelectorAll("details.phase > pre");
      return folds.length ? folds[folds.length - 1] : null;
    }
    function newFold(at, name) {
      output.querySelectorAll("details.phase[open]").forEach(function (fold) {
        if (!fold.classList.contains("failed")) fold.open = false;
      });
      var details = document.createElement("details");
      details.className = "phase";
      details.open = true;
      var summary = document.createElement("summary");
      var time = document.createElement("span");
      time.className = "ts";
      time.textContent = at;
      var label = document.createElement("strong");
      label.textContent = name;
      summary.append(time, " ", label);
      details.append(summary, document.createElement("pre"));
      output.append(details);
      return details.querySelector("pre");
    }
    source.addEventListener("output", function (event) {
      var data = JSON.parse(event.data);
      // Follow the end only when the reader is already there (not while they scroll back).
      var atEnd = output.scrollHeight - output.scrollTop - output.clientHeight < 40;
      if (data.phase) {
        newFold(data.at || "", data.phase);
      } else {
        var fold = lastFold() || newFold(data.at || "", "start");
        fold.hidden = false;
        var time = document.createElement("span");
        time.className = "ts";
        time.textContent = data.at || "";
        fold.append(time, " " + data.line + "\n");
      }
      if (atEnd) output.scrollTop = output.scrollHeight;
    });
    source.addEventListener("end", function (event) {
      source.close();
      var over = JSON.parse(event.data);
      var text = over.state + (over.status ? " (" + over.status + ")" : "");
      if (state) state.textContent = text;
      status("The run is over: " + text + ".");
      // Its hook results, cost, finish time and duration are on the page as it is now.
      window.setTimeout(function () { window.location.reload(); }, 500);
    });
    source.addEventListener("interrupted", function () {
      status("Reconnecting…");
    });
    source.addEventListener("error", function () {
      if (source.readyState === EventSource.CLOSED) {
        status("Live output stopped. Reload the page to see new output.");
      }
    });
  }

  // -- a ticket's page ------------------------------------------------------------------

  // A section someone is typing in (or has typed into) is left alone until they are done.
  function inUse(section) {
    if (section.contains(document.activeElement) && document.activeElement !== document.body) {
      return true;
    }
    var fields = section.querySelectorAll("textarea, input:not([type=hidden])");
    for (var i = 0; i < fields.length; i++) {
      if (fields[i].value) return true;
    }
    return section.querySelector("details[open]") !== null;
  }

  function refreshTicket(holder, wanted) {
    return fetch(window.location.href, { headers: { Accept: "text/html" }, credentials: "same-origin" })
      .then(function (response) {
        if (!response.ok) throw new Error(String(response.status));
        return response.text();
      })
      .then(function (html) {
        var fresh = new DOMParser().parseFromString(html, "text/html");
        document.querySelectorAll("[data-live]").forEach(function (section) {
          var next = fresh.getElementById(section.id);
          if (next && !inUse(section)) section.replaceWith(document.adoptNode(next));
        });
        var freshHolder = fresh.querySelector("[data-live-ticket]");
        holder.dataset.fingerprint = freshHolder ? freshHolder.dataset.fingerprint : wanted;
        status("Live: updated " + new Date().toLocaleTimeString() + ".");
      });
  }

  function followTicket(holder) {
    var source = new EventSource(holder.dataset.events);
    var fetching = false;
    source.addEventListener("open", function () {
      status("Live: this page updates as the ticket changes.");
    });
    source.addEventListener("changed", function (event) {
      var data = JSON.parse(event.data);
      if (fetching || data.fingerprint === holder.dataset.fingerprint) return;
      fetching = true;
      refreshTicket(holder, data.fingerprint)
        .catch(function () { status("Could not update the page; reload it to see changes."); })
        .then(function () { fetching = false; });
    });
    source.addEventListener("interrupted", function () {
      status("Reconnecting…");
    });
    source.addEventListener("error", function () {
      if (source.readyState === EventSource.CLOSED) {
        status("Live updates stopped. Reload the page to see changes.");
      }
    });
  }

  function start() {
    if (typeof EventSource === "undefined") return;
    var board = document.querySelector("[data-live-board]");
    if (board) followBoard(board);
    var ticket = document.querySelector("[data-live-ticket]");
    if (ticket) followTicket(ticket);
    var output = document.querySelector("[data-live-run]");
    if (output) followRun(output);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
