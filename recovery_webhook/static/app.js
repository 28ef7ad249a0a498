/* The editors' status page.
 *
 * Every word it shows about the pipeline comes from /api/pipeline/editor-message
 * (the same source as the editor message, so the two never disagree); the page
 * itself only knows its chrome and what to say when it cannot reach the monitor
 * (both in index.html). It refreshes in place, and never shows old data as
 * current: when the monitor stops answering, it says so and marks what it shows
 * as out of date.
 *
 * Text goes in with textContent only: nothing from the server is ever parsed
 * as HTML.
 */
"use strict";

(function () {
  const API = "/api/pipeline/editor-message";
  const STATES = ["operational", "delayed", "down", "unknown"];
  const STATUSES = ["healthy", "degraded", "unhealthy", "unknown"];
  const OUTCOMES = ["ongoing", "repaired_automatically", "recovered_by_itself", "fixed_by_engineers"];
  const STATE_ICONS = { operational: "i-ok", delayed: "i-slow", down: "i-down", unknown: "i-unknown" };
  const STATUS_ICONS = { healthy: "i-ok", degraded: "i-slow", unhealthy: "i-down", unknown: "i-unknown" };
  const OUTCOME_ICONS = {
    repaired_automatically: "i-repair",
    recovered_by_itself: "i-ok",
    fixed_by_engineers: "i-people",
  };
  const WINDOWS = ["24h", "7d", "30d"];

  let refreshSeconds = 5;
  let timeZone; // the monitor's (status_page.timezone), once it has told us
  let lastGood = null; // {at: Date (the monitor's timestamp), received: client ms}
  let failingSince = null; // client ms of the first failed refresh in a row
  let stale = false;
  let timer = null;
  let inFlight = false;
  const shown = {}; // what each part of the page shows, to touch the DOM only on change

  const byId = (id) => document.getElementById(id);

  function oneOf(value, allowed, fallback) {
    return allowed.indexOf(value) >= 0 ? value : fallback;
  }

  function setText(element, value) {
    element.textContent = value === null || value === undefined ? "" : String(value);
  }

  function changed(key, value) {
    const json = JSON.stringify(value);
    if (shown[key] === json) {
      return false;
    }
    shown[key] = json;
    return true;
  }

  function setIcon(use, id) {
    use.setAttribute("href", "#" + id);
  }

  function clock(date, seconds) {
    const options = { hour: "2-digit", minute: "2-digit", hourCycle: "h23", timeZoneName: "short" };
    if (seconds) {
      options.second = "2-digit";
    }
    try {
      return new Intl.DateTimeFormat("en-GB", Object.assign({ timeZone: timeZone }, options)).format(date);
    } catch (err) {
      return new Intl.DateTimeFormat("en-GB", options).format(date);
    }
  }

  function setTime(element, date) {
    element.setAttribute("datetime", date.toISOString());
    setText(element, clock(date, true));
  }

  function fillList(list, lines) {
    list.replaceChildren();
    (Array.isArray(lines) ? lines : []).forEach(function (line) {
      const item = document.createElement("li");
      setText(item, line);
      list.appendChild(item);
    });
  }

  // -- the answer ------------------------------------------------------------

  function renderAnswer(data) {
    const state = oneOf(data.state, STATES, "unknown");
    const answer = {
      state: state,
      short: data.short,
      headline: data.headline_text,
      details: data.details,
      advice: data.advice,
    };
    if (!changed("answer", answer) && !stale) {
      return;
    }
    setIcon(byId("answer-icon"), STATE_ICONS[state]);
    setText(byId("answer-short"), answer.short);
    setText(byId("answer-headline"), answer.headline);
    fillList(byId("answer-details"), answer.details);
    fillList(byId("answer-advice"), answer.advice);
    byId("answer-advice-box").hidden = !(Array.isArray(answer.advice) && answer.advice.length);
    setHeroState(state);
  }

  function setHeroState(state) {
    const hero = byId("hero");
    STATES.forEach(function (s) {
      hero.classList.toggle("state-" + s, s === state);
    });
  }

  // -- components ------------------------------------------------------------

  function renderComponents(components) {
    const list = Array.isArray(components) ? components : [];
    if (!changed("components", list)) {
      return;
    }
    const target = byId("components");
    const template = byId("tpl-component");
    target.replaceChildren();
    list.forEach(function (c) {
      const row = template.content.firstElementChild.cloneNode(true);
      const status = oneOf(c.status, STATUSES, "unknown");
      let icon = STATUS_ICONS[status];
      if (c.manual_intervention) {
        icon = "i-people";
      } else if (c.repair_in_progress) {
        icon = "i-repair";
      }
      row.classList.add("status-" + status);
      row.classList.toggle("repairing", Boolean(c.repair_in_progress));
      row.classList.toggle("manual", Boolean(c.manual_intervention));
      setIcon(row.querySelector("use"), icon);
      setText(row.querySelector(".name"), c.display_name);
      setText(row.querySelector(".words"), c.words);
      setText(row.querySelector(".since"), c.since_text);
      showTech(row, c.error);
      target.appendChild(row);
    });
    byId("components-empty").hidden = list.length > 0;
  }

  function showTech(row, error) {
    const tech = row.querySelector(".tech");
    tech.hidden = !error;
    setText(row.querySelector(".tech-text"), error);
  }

  // -- incidents -------------------------------------------------------------

  function renderIncidents(incidents) {
    const list = Array.isArray(incidents) ? incidents : [];
    if (!changed("incidents", list)) {
      return;
    }
    const target = byId("incidents");
    const template = byId("tpl-incident");
    target.replaceChildren();
    list.forEach(function (incident) {
      const row = template.content.firstElementChild.cloneNode(true);
      const status = oneOf(incident.status, STATUSES, "unhealthy");
      const outcome = oneOf(incident.outcome, OUTCOMES, "ongoing");
      row.classList.add("status-" + status, "outcome-" + outcome);
      setIcon(row.querySelector("use"), OUTCOME_ICONS[outcome] || STATUS_ICONS[status]);
      setText(row.querySelector(".name"), incident.display_name);
      setText(row.querySelector(".what"), incident.what);
      setText(row.querySelector(".when"), incident.when_text);
      setText(row.querySelector(".duration"), incident.duration_text);
      setText(row.querySelector(".chip"), incident.outcome_text);
      showTech(row, incident.error);
      target.appendChild(row);
    });
    byId("incidents-empty").hidden = list.length > 0;
  }

  // -- uptime ----------------------------------------------------------------

  function renderUptime(uptime) {
    const values = uptime && typeof uptime === "object" ? uptime : {};
    if (!changed("uptime", values)) {
      return;
    }
    WINDOWS.forEach(function (window_) {
      const cell = document.querySelector('#uptime dd[data-window="' + window_ + '"]');
      const value = cell.querySelector(".value");
      const fill = cell.querySelector(".fill");
      const percent = values[window_];
      if (typeof percent === "number" && isFinite(percent)) {
        // Truncated, never rounded up: 99.996 % must not read as 100 %.
        const shownPercent = Math.floor(Math.min(100, Math.max(0, percent)) * 100) / 100;
        setText(value, shownPercent.toFixed(2).replace(/\.?0+$/, "") + " %");
        value.classList.remove("none");
        fill.style.width = shownPercent + "%";
        fill.classList.toggle("low", shownPercent < 99);
      } else {
        setText(value, byId("uptime-none").textContent);
        value.classList.add("none");
        fill.style.width = "0";
      }
    });
  }

  // -- freshness -------------------------------------------------------------

  function showUpdated(which) {
    ["fresh", "stale", "never", "loading"].forEach(function (name) {
      byId("updated-" + name).hidden = name !== which;
    });
    setIcon(byId("updated-icon"), which === "fresh" ? "i-ok" : which === "loading" ? "i-slow" : "i-offline");
  }

  function markFresh(data) {
    const at = new Date(data.timestamp);
    lastGood = { at: isNaN(at.getTime()) ? new Date() : at, received: Date.now() };
    failingSince = null;
    setTime(byId("updated-time"), lastGood.at);
    showUpdated("fresh");
    if (stale || document.body.classList.contains("is-loading")) {
      stale = false;
      document.body.classList.remove("is-stale", "is-loading");
      byId("answer-loading").hidden = true;
      byId("answer-offline").hidden = true;
      byId("answer-current").hidden = false;
      byId("stale-note").hidden = true;
    }
  }

  function markStale() {
    if (failingSince === null) {
      failingSince = Date.now();
    }
    if (stale) {
      return;
    }
    stale = true;
    document.body.classList.remove("is-loading");
    document.body.classList.add("is-stale");
    setTime(byId("offline-since"), new Date(failingSince));
    if (lastGood) {
      setTime(byId("offline-last-time"), lastGood.at);
      setTime(byId("updated-stale-time"), lastGood.at);
      setTime(byId("stale-note-time"), lastGood.at);
    }
    byId("offline-last").hidden = !lastGood;
    byId("stale-note").hidden = !lastGood;
    showUpdated(lastGood ? "stale" : "never");
    setHeroState("unknown");
    byId("answer-loading").hidden = true;
    byId("answer-current").hidden = true;
    byId("answer-offline").hidden = false;
    document.title = byId("answer-offline").querySelector(".state-label").textContent;
  }

  function staleAfterMs() {
    return (3 * refreshSeconds + 5) * 1000;
  }

  // -- the loop --------------------------------------------------------------

  function render(data) {
    if (typeof data.refresh_seconds === "number" && data.refresh_seconds >= 1) {
      refreshSeconds = Math.min(300, data.refresh_seconds);
    }
    if (typeof data.timezone === "string") {
      timeZone = data.timezone;
    }
    if (typeof data.title === "string" && data.title) {
      setText(byId("page-title"), data.title);
    }
    renderAnswer(data);
    renderComponents(data.components);
    renderIncidents(data.incidents);
    const historyGone = data.history_available === false;
    byId("history-unavailable").hidden = !historyGone;
    if (historyGone) {
      byId("incidents-empty").hidden = true; // not "none": they cannot be read now
    }
    renderUptime(data.uptime);
    markFresh(data);
    document.title = [data.headline_text, data.title].filter(Boolean).join(" · ");
  }

  async function refresh() {
    if (inFlight) {
      return;
    }
    inFlight = true;
    clearTimeout(timer);
    const controller = new AbortController();
    const limit = setTimeout(function () {
      controller.abort();
    }, Math.min(Math.max(2 * refreshSeconds, 4), 15) * 1000);
    try {
      const response = await fetch(API, {
        cache: "no-store",
        credentials: "same-origin",
        headers: { Accept: "application/json" },
        signal: controller.signal,
      });
      if (!response.ok) {
        throw new Error("HTTP " + response.status);
      }
      const data = await response.json();
      if (!data || typeof data !== "object" || STATES.indexOf(data.state) < 0) {
        throw new Error("not an editor message");
      }
      render(data);
    } catch (err) {
      markStale();
    } finally {
      clearTimeout(limit);
      inFlight = false;
      timer = setTimeout(refresh, refreshSeconds * 1000);
    }
  }

  // A watchdog, apart from the fetches: if no fresh answer came for a while
  // (a hung request, a sleeping laptop), what is shown is out of date.
  function watchdog() {
    if (!stale && lastGood && Date.now() - lastGood.received > staleAfterMs()) {
      markStale();
    }
  }

  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "visible") {
      watchdog();
      refresh();
    }
  });

  showUpdated("loading");
  setInterval(watchdog, 1000);
  refresh();
})();
