// "Find" and "Chapters": POST /videos/{id}/moments draws each window's score on a strip along
// the video's timeline as it comes and lists the best; POST /videos/{id}/chapters lists the
// chapters and streams the summary. Uses app.js's helpers ($, state, headers, readEvents…).
"use strict";

function clock(seconds) {
  const s = Math.floor(seconds), h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60);
  const rest = String(s % 60).padStart(2, "0");
  return h ? `${h}:${String(m).padStart(2, "0")}:${rest}` : `${m}:${rest}`;
}

// A button that plays the video from `seconds` (when the file is in the player).
function seekButton(start, end) {
  const button = document.createElement("button");
  button.type = "button";
  button.textContent = `${clock(start)}–${clock(end)}`;
  button.addEventListener("click", () => {
    const player = $("player");
    if (!player.hidden) { player.currentTime = start; player.play().catch(() => {}); }
  });
  return button;
}

function item(start, end, text) {
  const li = document.createElement("li");
  li.append(seekButton(start, end), document.createTextNode(` ${text}`));
  return li;
}

// POSTs `body` and hands each event to onEvent; an HTTP or stream error shows under the form.
async function post(path, body, onEvent) {
  show($("find-error"), "");
  videoReady(false);
  try {
    const response = await fetch(path, {
      method: "POST", headers: headers({ "Content-Type": "application/json" }), body: JSON.stringify(body),
    });
    if (!response.ok) {
      show($("find-error"), explain(await errorOf(response), response.status));
      return;
    }
    await readEvents(response, (name, data) => {
      if (name === "error") show($("find-error"), explain(data));
      else onEvent(name, data);
    });
  } catch {
    show($("find-error"), "The connection to the server was lost.");
  } finally {
    videoReady(!!state.videoId);
  }
}

function drawScore(strip, moment) {
  const span = document.createElement("span");
  const whole = Math.max(state.duration, moment.end_s);
  span.style.left = `${(100 * moment.start_s) / whole}%`;
  span.style.width = `${(100 * (moment.end_s - moment.start_s)) / whole}%`;
  span.style.opacity = String(0.1 + 0.9 * moment.score);
  span.dataset.score = String(moment.score);
  span.title = `${clock(moment.start_s)}–${clock(moment.end_s)}: ${(100 * moment.score).toFixed(1)}%`;
  strip.append(span);
}

async function findMoments(event) {
  event.preventDefault();
  if (!state.videoId) return;
  const strip = $("strip"), list = $("moments");
  strip.replaceChildren();
  list.replaceChildren();
  strip.hidden = false;
  const body = { query: $("find-query").value, window_s: Number($("window").value) || 16, top_k: 5 };
  await post(`/videos/${state.videoId}/moments`, body, (name, data) => {
    if (name === "moment") drawScore(strip, data);
    else if (name === "done") {
      list.replaceChildren(...data.moments.map((m) => item(m.start_s, m.end_s, `${(100 * m.score).toFixed(1)}%`)));
    }
  });
}

// The chapters as a <track> of the player: fetched with the API key, given as a blob.
async function addTrack(videoId) {
  const response = await fetch(`/videos/${videoId}/chapters.vtt`, { headers: headers() });
  if (!response.ok) return;
  const player = $("player");
  player.querySelectorAll("track").forEach((t) => t.remove());
  const track = document.createElement("track");
  track.kind = "chapters";
  track.label = "Chapters";
  track.src = URL.createObjectURL(await response.blob());
  player.append(track);
}

async function readChapters() {
  if (!state.videoId) return;
  const videoId = state.videoId, list = $("chapters"), summary = $("chapters-summary");
  list.replaceChildren();
  show(summary, "");
  await post(`/videos/${videoId}/chapters`, {}, (name, data) => {
    if (name === "chapter") {
      const li = item(data.start_s, data.end_s, data.text);
      li.dataset.index = String(data.index);
      const after = [...list.children].find((other) => Number(other.dataset.index) > data.index);
      list.insertBefore(li, after || null);  // captions finish in any order; the list stays in time order
    } else if (name === "summary") {
      summary.hidden = false;
      summary.textContent += data.text;
    } else if (name === "done") {
      show(summary, data.summary || "");
      addTrack(videoId);
    }
  });
}

$("find-form").addEventListener("submit", findMoments);
$("chapters-button").addEventListener("click", readChapters);
