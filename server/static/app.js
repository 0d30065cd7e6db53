// The page talks to the same API as everyone else: POST /videos, GET /videos/{id}/events,
// POST /videos/{id}/ask. Streams are read with fetch (not EventSource) so that the API key
// can travel in the Authorization header.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { videoId: null, answering: null, duration: 0 };

const MESSAGES = {
  too_large: "The video is larger than this server accepts.",
  unsupported_media: "That file is not a video this server can read.",
  too_long: "The video is longer than this server accepts.",
  url_not_allowed: "The server may not fetch that URL.",
  url_fetch_failed: "The URL could not be fetched.",
  url_timeout: "The URL did not answer in time.",
  empty_video: "The file is empty.",
  unauthorized: "This server needs an API key: open “API key” above and enter it.",
  overloaded: "The server is busy; try again in a moment.",
  not_ready: "The video is still being processed.",
  question_too_long: "The question is too long.",
  empty_range: "No frame lies in that time range.",
  invalid_range: "The end of the range must not come before its start.",
  worker_dead: "The model worker stopped; the server must be restarted.",
  cache_unavailable: "The cache is unreachable; try again shortly.",
  not_live: "Watches follow live streams; use Find for a file.",
  too_many_watches: "The stream has as many watches as the server allows; remove one first.",
  scoring_unavailable: "This server cannot score windows (its language model runs elsewhere).",
};

function explain(error, status) {
  const known = MESSAGES[error.code];
  const detail = error.message ? ` (${error.message})` : "";
  return known ? `${known}${detail}` : `Error ${status || ""} ${error.code || ""}: ${error.message || "unknown error"}`;
}

function headers(extra = {}) {
  const key = sessionStorage.getItem("longvu-key");
  return key ? { ...extra, Authorization: `Bearer ${key}` } : extra;
}

function show(el, text) {
  el.textContent = text;
  el.hidden = !text;
}

async function errorOf(response) {
  try {
    return (await response.json()).error || {};
  } catch {
    return { code: "http_" + response.status, message: response.statusText };
  }
}

// Server-sent events from a fetch response: calls onEvent(name, data) per event.
async function readEvents(response, onEvent) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      let name = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) name = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      }
      if (data.length) onEvent(name, JSON.parse(data.join("\n")));
    }
  }
}

// The buttons that need a ready (or live) video: ask's own state is kept by `ask`.
function videoReady(on) {
  for (const button of document.querySelectorAll(".needs-video")) button.disabled = !on;
}

function resetVideo() {
  state.videoId = null;
  state.duration = 0;
  hideWatches();
  $("ask").disabled = true;
  videoReady(false);
  show($("video-error"), "");
  show($("video-status"), "");
  $("upload").hidden = true;
  $("ingest").hidden = true;
}

function upload(file) {
  resetVideo();
  const player = $("player");
  player.src = URL.createObjectURL(file);
  player.hidden = false;
  $("upload").hidden = false;
  const form = new FormData();
  form.append("file", file);
  const xhr = new XMLHttpRequest();  // fetch cannot report upload progress
  xhr.open("POST", "/videos");
  for (const [k, v] of Object.entries(headers())) xhr.setRequestHeader(k, v);
  xhr.upload.onprogress = (e) => { if (e.lengthComputable) $("upload-bar").value = e.loaded / e.total; };
  xhr.onload = () => {
    let body = {};
    try { body = JSON.parse(xhr.responseText); } catch { /* not JSON */ }
    if (xhr.status >= 400) {
      show($("video-status"), "");
      $("player").hidden = true;
      show($("video-error"), explain(body.error || {}, xhr.status));
      return;
    }
    $("upload-bar").value = 1;
    follow(body.id);
  };
  xhr.onerror = () => {
    show($("video-status"), "");
    show($("video-error"), "The upload failed: the server could not be reached.");
  };
  xhr.send(form);
  show($("video-status"), `Uploading ${file.name}…`);
}

// A video by URL (POST /videos) or a live stream (POST /streams): both answer with a status to follow.
async function start(path, url, waiting) {
  resetVideo();
  $("player").hidden = true;
  show($("video-status"), waiting);
  const response = await fetch(path, {
    method: "POST", headers: headers({ "Content-Type": "application/json" }), body: JSON.stringify({ url }),
  });
  if (!response.ok) {
    show($("video-status"), "");
    show($("video-error"), explain(await errorOf(response), response.status));
    return;
  }
  follow((await response.json()).id);
}

function showLive(id, status) {
  const behind = status.lag_s != null ? `, ${Math.round(status.lag_s)} s behind the live edge` : "";
  $("ingest-text").textContent =
    `Live: ${Math.round(status.seconds_live || 0)} s followed, ${status.frames_cached || 0} frames cached${behind}`;
  state.duration = status.seconds_live || 0;
  showWatches(id);
  if (status.frames_cached > 0 && state.videoId !== id) {
    state.videoId = id;
    $("ask").disabled = !!state.answering;
    videoReady(true);
    show($("video-status"), "Live: ask about what has been seen so far.");
  }
}

async function follow(id) {
  $("ingest").hidden = false;
  show($("video-status"), "Processing the video…");
  const response = await fetch(`/videos/${id}/events`, { headers: headers() });
  if (!response.ok) {
    show($("video-error"), explain(await errorOf(response), response.status));
    return;
  }
  await readEvents(response, (name, status) => {
    if (name === "alert") return showAlert(status);
    $("ingest-bar").value = status.progress || 0;
    if (name === "progress" && status.status === "live") {
      showLive(id, status);
    } else if (name === "progress") {
      const eta = status.eta_s != null ? `, about ${Math.ceil(status.eta_s)} s left` : "";
      const done = status.seconds_done != null ? `${Math.round(status.seconds_done)} s of video done` : "waiting";
      $("ingest-text").textContent = `${status.stage || "queued"}: ${done}${eta}`;
    } else if (name === "ready") {
      state.videoId = id;
      state.duration = status.duration_s || 0;
      $("ask").disabled = false;
      videoReady(true);
      $("ingest-text").textContent =
        `${status.frames_sampled} frames sampled, ${status.frames_cached} cached (${status.rows_cached} SVA rows)`;
      show($("video-status"), "Ready: ask away.");
    } else if (name === "failed" || name === "error") {
      show($("video-status"), "");
      show($("video-error"), explain({ code: status.error_code || status.code, message: status.error || status.message }));
    }
  });
}

function number(id) {
  const value = $(id).value;
  return value === "" ? undefined : Number(value);
}

function summarize(done) {
  const c = done.compression, t = done.timings, u = done.usage;
  const rows = [
    ["Frames", `${c.frames_sampled} sampled, ${c.frames_survived_dino} after DINO, ${c.frames_used} used`],
    ["Visual tokens", `${c.visual_tokens_before} → ${c.visual_tokens_after} (${c.regime}${c.stc_applied ? ", STC" : ""})`],
    ["Seconds seen", c.seconds.length ? `${c.seconds[0]} – ${c.seconds[c.seconds.length - 1]}` : "none"],
    ["Tokens", `${u.prompt_tokens} prompt, ${u.completion_tokens} answer (${done.finish_reason})`],
    ["First token", t.ttft_s != null ? `${Math.round(t.ttft_s * 1000)} ms` : "–"],
    ["Total", `${t.total_s.toFixed(2)} s`],
  ];
  const list = $("summary");
  list.replaceChildren(...rows.flatMap(([k, v]) => {
    const dt = document.createElement("dt"), dd = document.createElement("dd");
    dt.textContent = k;
    dd.textContent = v;
    return [dt, dd];
  }));
  list.hidden = false;
}

async function ask(event) {
  event.preventDefault();
  if (!state.videoId || state.answering) return;
  const answer = $("answer");
  show($("ask-error"), "");
  answer.textContent = "";
  $("summary").hidden = true;
  const controller = new AbortController();
  state.answering = controller;
  $("ask").disabled = true;
  $("stop").disabled = false;
  answer.setAttribute("aria-busy", "true");
  const body = {
    question: $("question").value, max_new_tokens: number("max-tokens") || 128,
    start_s: number("start"), end_s: number("end"),
    last_s: number("last-min") ? number("last-min") * 60 : undefined,
  };
  try {
    const response = await fetch(`/videos/${state.videoId}/ask`, {
      method: "POST", headers: headers({ "Content-Type": "application/json" }),
      body: JSON.stringify(body), signal: controller.signal,
    });
    if (!response.ok) {
      show($("ask-error"), explain(await errorOf(response), response.status));
      return;
    }
    await readEvents(response, (name, data) => {
      if (name === "token") answer.textContent += data.text;
      else if (name === "done") summarize(data);
      else if (name === "error") show($("ask-error"), explain(data));
    });
  } catch (err) {
    if (err.name !== "AbortError") show($("ask-error"), "The connection to the server was lost.");
  } finally {
    state.answering = null;
    answer.setAttribute("aria-busy", "false");
    $("ask").disabled = !state.videoId;
    $("stop").disabled = true;
  }
}

function init() {
  const key = $("key");
  key.value = sessionStorage.getItem("longvu-key") || "";
  key.addEventListener("input", () => sessionStorage.setItem("longvu-key", key.value.trim()));
  $("file").addEventListener("change", (e) => {
    if (e.target.files[0]) upload(e.target.files[0]);
    e.target.value = "";  // choosing the same file again (say, after entering a key) uploads again
  });
  const drop = $("drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    if (e.dataTransfer.files[0]) upload(e.dataTransfer.files[0]);
  });
  $("url-form").addEventListener("submit", (e) => {
    e.preventDefault();
    if ($("url").value) start("/videos", $("url").value, "Fetching the video…");
  });
  $("stream-form").addEventListener("submit", (e) => {
    e.preventDefault();
    if ($("stream-url").value) start("/streams", $("stream-url").value, "Opening the stream…");
  });
  $("ask-form").addEventListener("submit", ask);
  $("question").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) $("ask-form").requestSubmit();
  });
  $("stop").addEventListener("click", () => state.answering && state.answering.abort());
}

init();
