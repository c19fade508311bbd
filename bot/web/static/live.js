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

  function newCard(ticket) {
    var card = document.createElement("li");
    card.className = "card";
    card.id = "ticket-" + ticket.id;
    var key = document.createElement("a");
    key.className = "key";
    var title = document.createElement("span");
    title.className = "title";
    var meta = document.createElement("span");
    meta.className = "meta muted";
    var repo = document.createElement("span");
    repo.className = "repo";
    var attempt = document.createElement("span");
    attempt.className = "attempt";
    meta.append(repo, " · attempt ", attempt);
    var held = document.createElement("span");
    held.className = "flag held";
    held.textContent = "held";
    var needsInput = document.createElement("span");
    needsInput.className = "flag needs-input";
    needsInput.textContent = "needs input";
    var since = document.createElement("span");
    since.className = "since muted";
    var elapsed = document.createElement("span");
    elapsed.className = "for";
    since.append("running ", elapsed, ", since ", document.createElement("time"));
    var pr = document.createElement("a");
    pr.className = "pr";
    var prNumber = document.createElement("span");
    prNumber.className = "pr-number";
    pr.append("PR #", prNumber);
    var waiting = document.createElement("span");
    waiting.className = "waiting";
    var waitingWhy = document.createElement("span");
    waitingWhy.className = "why";
    var waitingLinks = document.createElement("span");
    waitingLinks.className = "links";
    waiting.append("waiting: ", waitingWhy, waitingLinks);
    var failure = document.createElement("span");
    failure.className = "failure bad";
    var failureWhy = document.createElement("span");
    failureWhy.className = "why";
    failure.append("failed: ", failureWhy);
    var checks = document.createElement("span");
    checks.className = "checks";
    var tally = document.createElement("span");
    tally.className = "tally";
    var list = document.createElement("span");
    list.className = "list";
    checks.append("checks ", tally, ":", list);
    card.append(key, " ", title, " ", meta, " ", since, " ", pr, " ", waiting, " ", failure,
      " ", checks, " ", held, " ", needsInput);
    return card;
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
    var since = card.querySelector(".since");
    since.hidden = !(ticket.since && ticket.state === "in_progress");
    var time = since.querySelector("time");
    time.dateTime = ticket.since || "";
    time.textContent = ticket.since ? ticket.since.slice(11, 16) + " UTC" : "";
    showElapsed(since);
    var pr = card.querySelector(".pr");
    pr.hidden = !ticket.pr_url;
    if (ticket.pr_url) pr.href = ticket.pr_url;
    pr.querySelector(".pr-number").textContent = ticket.pr_number ? String(ticket.pr_number) : "";
    var waiting = card.querySelector(".waiting");
    waiting.hidden = !ticket.waiting;
    waiting.querySelector(".why").textContent = ticket.waiting || "";
    var links = waiting.querySelector(".links");
    links.replaceChildren();
    (ticket.waiting_links || []).forEach(function (link) {
      var anchor = document.createElement("a");
      anchor.href = link[1];  // a path on this site, built by the server from the words
      anchor.textContent = link[0];
      links.append(" → ", anchor);
    });
    var failure = card.querySelector(".failure");
    failure.hidden = !ticket.failure;
    failure.querySelector(".why").textContent = ticket.failure || "";
    var checks = card.querySelector(".checks");
    var results = ticket.checks || [];
    checks.hidden = results.length === 0;
    var passed = results.filter(function (check) { return check[1]; }).length;
    checks.querySelector(".tally").textContent = passed + "/" + results.length;
    var list = checks.querySelector(".list");
    list.replaceChildren();
    results.forEach(function (check) {
      var item = document.createElement("span");
      item.className = check[1] ? "ok" : "bad";
      item.textContent = (check[1] ? "✓ " : "✗ ") + check[0];
      list.append(" ", item);
    });
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
    card.querySelector(".held").hidden = !ticket.held;
    card.querySelector(".needs-input").hidden = !ticket.needs_input;
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
