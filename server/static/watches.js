// Watches on a live stream: POST/GET/DELETE /videos/{id}/watches; the alerts arrive as `alert`
// events on the stream's events, which app.js reads and hands to showAlert.
"use strict";

const watching = { streamId: null };

function hideWatches() {
  watching.streamId = null;
  $("watches-section").hidden = true;
  $("watches").replaceChildren();
  $("alerts").replaceChildren();
}

function showWatches(streamId) {
  if (watching.streamId === streamId) return;
  watching.streamId = streamId;
  $("watches-section").hidden = false;
  listWatches();
}

function watchItem(watch) {
  const li = document.createElement("li");
  const remove = document.createElement("button");
  remove.type = "button";
  remove.textContent = "Remove";
  remove.setAttribute("aria-label", `Remove the watch “${watch.query}”`);
  remove.addEventListener("click", () => removeWatch(watch.id));
  li.append(document.createTextNode(`${watch.query} (at least ${watch.threshold}) `), remove);
  return li;
}

async function listWatches() {
  const response = await fetch(`/videos/${watching.streamId}/watches`, { headers: headers() });
  if (response.ok) $("watches").replaceChildren(...(await response.json()).watches.map(watchItem));
}

async function addWatch(event) {
  event.preventDefault();
  if (!watching.streamId) return;
  show($("watch-error"), "");
  const body = { query: $("watch-query").value, threshold: Number($("watch-threshold").value) };
  const response = await fetch(`/videos/${watching.streamId}/watches`, {
    method: "POST", headers: headers({ "Content-Type": "application/json" }), body: JSON.stringify(body),
  });
  if (!response.ok) {
    show($("watch-error"), explain(await errorOf(response), response.status));
    return;
  }
  $("watch-query").value = "";
  listWatches();
}

async function removeWatch(watchId) {
  await fetch(`/videos/${watching.streamId}/watches/${watchId}`, { method: "DELETE", headers: headers() });
  listWatches();
}

function showAlert(alert) {
  const li = document.createElement("li");
  li.textContent = `${clock(alert.start_s)}–${clock(alert.end_s)} ${alert.query}: ${(100 * alert.score).toFixed(1)}%`;
  $("alerts").prepend(li);  // the newest first
}

$("watch-form").addEventListener("submit", addWatch);
