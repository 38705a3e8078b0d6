/* openlipsync Studio: a click-through front end for the public v2 API.
 *
 * Plain JavaScript with no build step and no third-party code, so the page works offline and
 * every request it makes goes to the server that served it (or the storage URLs that server
 * hands out). All server data is put on the page through textContent, never as HTML.
 *
 * Flow for local files: each file is uploaded as an asset as soon as it is chosen
 * (POST /v2/assets/upload → PUT → POST /v2/assets). The price estimate and the generation then
 * reference the asset ids, so the estimate is exact and no file is sent twice. When a server
 * lacks the asset upload routes, the page falls back to one multipart POST /v2/generate.
 */
"use strict";

(() => {
  const KEY_STORAGE = "openlipsync.apiKey";
  const POLL_MS = 1500;
  const DEFAULT_FPS = 25;
  const TERMINAL = new Set(["COMPLETED", "FAILED", "REJECTED"]);
  const PAGE_SIZE = 20;

  // ---------------------------------------------------------------------------------------------
  // Friendly error text, keyed by the API's error codes (spec §17.3 and this server's own).
  const FRIENDLY = {
    unauthorized: "Your API key was not accepted. Sign in again with a valid key.",
    forbidden: "Your API key may not do this.",
    generation_media_metadata_missing:
      "This file could not be read as media. It may be damaged, or be a different kind of file " +
      "than its name says.",
    invalid_media:
      "This file could not be read as video, audio or a photo. It may be damaged, or be a " +
      "different kind of file than its name says.",
    invalid_url: "That address is not a usable http(s) link.",
    invalid_signature: "The link has expired. Reload the page to get a fresh one.",
    file_not_found: "The file is no longer stored on the server.",
    payment_required: "Your plan does not include this.",
    batch_not_found: "That batch does not exist (or belongs to another organisation).",
    alignment_failed: "The speech could not be lined up with the mouth movements.",
    alignment_bad_audio: "The speech could not be lined up: the audio is too noisy or silent.",
    alignment_no_words: "No words were heard in the audio.",
    alignment_mismatch: "The speech could not be lined up with its script.",
    alignment_oov: "The script contains words the voice engine cannot pronounce.",
    generation_media_unreadable:
      "This file could not be opened as video or audio. It may be damaged, or be a different " +
      "kind of file than its name says.",
    generation_no_face_detected:
      "No face was found. Use a clip where the face is clearly visible and turned towards the " +
      "camera.",
    generation_unsupported_resolution:
      "The picture size is not supported. Try a video between 128 and 4096 pixels wide.",
    generation_audio_missing: "The voice is missing: add an audio file or type a script.",
    generation_video_missing: "The face is missing: add a video or a photo.",
    generation_audio_length_exceeded: "The audio is longer than this server accepts.",
    generation_unsupported_model:
      "This model cannot do that. Photos, for example, need the sync-3 model.",
    generation_timeout: "The job took too long and was stopped. Try a shorter clip.",
    generation_pipeline_failed: "The lip-sync engine could not finish this job.",
    generation_unhandled_error: "Something went wrong on the server. Please try again.",
    generation_database_error: "Something went wrong on the server. Please try again.",
    generation_internal_auth: "Something went wrong on the server. Please try again.",
    generation_cancelled: "The job was cancelled.",
    generation_input_video_inaccessible: "An input could not be downloaded from its address.",
    generation_input_validation_failed: "A file is larger than this server accepts.",
    payload_too_large: "The file is larger than this server accepts.",
    file_size_exceeds_plan_limit: "The file is larger than your plan allows.",
    unsupported_media_type: "This kind of file is not supported.",
    elevenlabs_service_unavailable: "The voice service is unavailable. Try again in a minute.",
    elevenlabs_timeout: "The voice service took too long to answer. Try again in a minute.",
    tts_failed: "The script could not be spoken. Try different wording or another voice.",
    tts_invalid_request: "The script or voice settings are not valid.",
    tts_provider_not_configured:
      "This server has no account for that voice service. Pick one of the server's own voices.",
    tts_provider_unknown: "That voice service is not known to this server.",
    tts_quota_exceeded: "The voice service's quota is used up.",
    tts_rate_limited: "The voice service is busy. Try again in a minute.",
    tts_unauthorized: "The server's voice service account was refused.",
    voice_not_found: "That voice does not exist on this server.",
    rate_limit_exceeded: "Too many requests in a short time. Wait a moment and try again.",
    concurrency_limit_reached:
      "You already have as many jobs running as your plan allows. Wait for one to finish.",
    cost_estimate_unavailable: "A price cannot be calculated for these inputs.",
    invalid_request: "Some of the settings are not valid.",
    not_found: "That item does not exist (or belongs to another organisation).",
    generation_not_found: "That generation does not exist (or belongs to another organisation).",
    asset_not_found: "That file is no longer in your library.",
    network: "The server cannot be reached. Check your connection and try again.",
  };
  const BY_STATUS = {
    400: "invalid_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "rate_limit_exceeded",
  };

  /** An API failure with the parts a person needs: friendly text, server detail and code. */
  class ApiFailure extends Error {
    constructor(status, body, fallback) {
      const message = body && body.message ? body.message : fallback || `HTTP ${status}`;
      super(Array.isArray(message) ? message.join("; ") : String(message));
      this.status = status;
      this.code = (body && (body.errorCode || body.error_code)) || BY_STATUS[status] || null;
    }
  }

  /** {title, detail, code} for any error or a FAILED generation. */
  function describe(errorOrGeneration) {
    const g = errorOrGeneration || {};
    const code = g.code || g.error_code || g.errorCode || null;
    const detail = (g instanceof Error ? g.message : g.error) || "";
    let title = (code && FRIENDLY[code]) || null;
    if (!title && g instanceof ApiFailure && g.status >= 500) title = FRIENDLY.generation_unhandled_error;
    if (!title) title = detail || "Something went wrong.";
    return { title, detail: detail && detail !== title ? detail : "", code };
  }

  function errorBlock(err) {
    const info = describe(err);
    return h("div", { class: "error-box", "data-error-code": info.code || "" },
      h("strong", {}, info.title),
      info.detail ? h("span", { class: "error-detail" }, info.detail) : null,
      info.code ? h("span", { class: "error-code" }, `Error code: ${info.code}`) : null);
  }

  /** Element.append() without the nulls (append would print them as the text "null"). */
  function put(el, ...children) {
    el.append(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
  }

  function showError(el, err) {
    el.replaceChildren();
    if (err) el.append(errorBlock(err));
  }

  // ---------------------------------------------------------------------------------------------
  // DOM helpers.
  const $ = (id) => document.getElementById(id);

  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
      else if (name === "class") el.className = value;
      else if (name === "style") el.style.cssText = value; // CSSOM: allowed by the page's CSP
      else el.setAttribute(name, value === true ? "" : String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      el.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return el;
  }

  /** A link the server gave us, only if it is http(s) or a local blob (never javascript:). */
  function safeUrl(url) {
    if (!url) return "";
    try {
      const parsed = new URL(String(url), location.origin);
      return ["http:", "https:", "blob:"].includes(parsed.protocol) ? parsed.href : "";
    } catch (e) {
      return "";
    }
  }

  let toastTimer = 0;
  function toast(text) {
    const el = $("toast");
    el.textContent = text;
    el.classList.add("show");
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => el.classList.remove("show"), 4000);
  }

  const fmt = {
    bytes(n) {
      if (n === null || n === undefined) return "";
      const units = ["B", "KB", "MB", "GB"];
      let i = 0;
      while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
      return `${n.toFixed(i === 0 ? 0 : 1)} ${units[i]}`;
    },
    seconds(s) {
      if (s === null || s === undefined || Number.isNaN(Number(s))) return "";
      s = Number(s);
      if (s < 60) return `${s.toFixed(1)} s`;
      return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
    },
    date(iso) {
      if (!iso) return "";
      const d = new Date(iso);
      if (Number.isNaN(d.getTime())) return String(iso);
      return d.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
    },
    usd(v) {
      const n = Number(v);
      if (!Number.isFinite(n)) return "—";
      return n.toLocaleString(undefined, { style: "currency", currency: "USD",
        minimumFractionDigits: 2, maximumFractionDigits: n > 0 && n < 0.1 ? 4 : 2 });
    },
    status(s) {
      return { PENDING: "Queued", PROCESSING: "Processing", COMPLETED: "Completed",
        FAILED: "Failed", REJECTED: "Rejected", JOBS_CREATED: "Jobs created" }[s] || s || "Unknown";
    },
    shortId(id) { return id ? String(id).slice(0, 8) : ""; },
  };

  // ---------------------------------------------------------------------------------------------
  // API client: every call carries the key; every failure becomes an ApiFailure.
  const session = {
    get key() { return sessionStorage.getItem(KEY_STORAGE) || ""; },
    set key(v) { if (v) sessionStorage.setItem(KEY_STORAGE, v); else sessionStorage.removeItem(KEY_STORAGE); },
  };

  async function api(method, path, { json, form, query, key } = {}) {
    const url = new URL(path, location.origin);
    for (const [k, v] of Object.entries(query || {})) {
      if (v === null || v === undefined || v === "") continue;
      url.searchParams.set(k, Array.isArray(v) ? v.join(",") : String(v));
    }
    const headers = { "x-api-key": key || session.key, Accept: "application/json" };
    let body;
    if (json !== undefined) { headers["Content-Type"] = "application/json"; body = JSON.stringify(json); }
    else if (form) body = form;
    let response;
    try {
      response = await fetch(url, { method, headers, body, credentials: "omit", cache: "no-store" });
    } catch (e) {
      const failure = new ApiFailure(0, null, FRIENDLY.network);
      failure.code = "network";
      throw failure;
    }
    const text = await response.text();
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch (e) { data = null; }
    if (!response.ok) {
      if (response.status === 401 && !key) onUnauthorized();
      throw new ApiFailure(response.status, data, text.slice(0, 300) || response.statusText);
    }
    return data;
  }

  /** PUT a file to a presigned URL with upload progress (fetch cannot report upload progress). */
  function putFile(url, file, contentType, onProgress) {
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open("PUT", url);
      xhr.setRequestHeader("Content-Type", contentType);
      xhr.upload.onprogress = (e) => { if (e.lengthComputable) onProgress(e.loaded / e.total); };
      xhr.onload = () => {
        if (xhr.status >= 200 && xhr.status < 300) { resolve(); return; }
        let data = null;
        try { data = JSON.parse(xhr.responseText); } catch (e) { data = null; }
        reject(new ApiFailure(xhr.status, data, xhr.statusText || "Upload failed"));
      };
      xhr.onerror = () => {
        const failure = new ApiFailure(0, null, FRIENDLY.network);
        failure.code = "network";
        reject(failure);
      };
      xhr.send(file);
    });
  }

  // ---------------------------------------------------------------------------------------------
  // Sign in / out and views.
  function onUnauthorized() {
    if (!session.key) return;
    session.key = "";
    showSignedOut();
    showError($("signin-error"), new ApiFailure(401, { errorCode: "unauthorized",
      message: "The key was refused by the server (revoked or mistyped)." }));
  }

  function showSignedOut() {
    $("nav").hidden = true;
    $("session").hidden = true;
    for (const v of document.querySelectorAll(".view")) v.hidden = v.id !== "view-signin";
    $("api-key").focus();
  }

  async function signIn(event) {
    event.preventDefault();
    const key = $("api-key").value.trim();
    const errorEl = $("signin-error");
    if (!key) {
      showError(errorEl, new Error("Enter your API key."));
      $("api-key").focus();
      return;
    }
    $("signin-submit").disabled = true;
    try {
      await api("GET", "/v2/models", { key });
      session.key = key;
      $("api-key").value = "";
      showError(errorEl, null);
      enterApp();
      $("main").focus({ preventScroll: true });
    } catch (err) {
      if (err.status === 401) err.message = "The server did not accept this key.";
      showError(errorEl, err);
      $("api-key").focus();
    } finally {
      $("signin-submit").disabled = false;
    }
  }

  function signOut() {
    session.key = "";
    for (const job of jobs.values()) clearTimeout(job.timer);
    location.hash = "";
    showSignedOut();
    toast("Signed out. The key was removed from this tab.");
  }

  let loaded = false;
  function enterApp() {
    const key = session.key;
    $("key-chip").textContent = `${key.slice(0, 11)}…`;
    $("nav").hidden = false;
    $("session").hidden = false;
    if (!loaded) {
      loaded = true;
      loadModels();
      loadVoices();
    }
    route();
  }

  function route() {
    if (!session.key) { showSignedOut(); return; }
    const name = (location.hash || "#create").slice(1);
    const view = ["create", "history", "assets"].includes(name) ? name : "create";
    for (const v of document.querySelectorAll(".view")) v.hidden = v.id !== `view-${view}`;
    for (const tab of document.querySelectorAll(".tab")) {
      if (tab.dataset.view === view) tab.setAttribute("aria-current", "page");
      else tab.removeAttribute("aria-current");
    }
    if (view === "history") history.open();
    if (view === "assets") assets.reload();
  }

  // ---------------------------------------------------------------------------------------------
  // Models, voices and the options each model takes.
  const state = {
    models: [],
    visual: null, // {kind: "video"|"image", file?, url, asset?, uploading, error}
    audio: null, // {file?, url, asset?, uploading, error}
    direct: false, // true when the server has no asset upload routes (multipart fallback)
    speaker: null, // {frame, x, y}
    voices: [],
  };

  function modelInfo(name) {
    return state.models.find((m) => m.name === name) || { name, type: "lipsync" };
  }

  function capabilities(name) {
    const info = modelInfo(name);
    const react = info.type === "react" || name.startsWith("react");
    const v2 = name.startsWith("lipsync-2");
    return {
      temperature: v2,
      occlusion: v2,
      prompt: react,
      model_mode: react,
      speaker: !react,
      image: name.startsWith("sync-3"),
    };
  }

  async function loadModels() {
    const select = $("model");
    try {
      const models = await api("GET", "/v2/models");
      state.models = Array.isArray(models) ? models : [];
    } catch (err) {
      state.models = [];
      showError($("create-error"), err);
    }
    select.replaceChildren(...state.models.map((m) => h("option", { value: m.name }, m.name)));
    const preferred = state.models.find((m) => m.name === "lipsync-2") || state.models[0];
    if (preferred) select.value = preferred.name;
    applyModel();
  }

  async function loadVoices() {
    const select = $("voice-select");
    const help = $("voice-help");
    try {
      const data = await api("GET", "/v2/voices");
      const list = Array.isArray(data) ? data : (data && (data.voices || data.items)) || [];
      state.voices = list.map((v) => ({
        id: String(v.voiceId || v.voice_id || v.id || ""),
        name: String(v.name || v.voiceId || v.id || "voice"),
        language: v.language || v.locale || "",
      })).filter((v) => v.id);
    } catch (err) {
      state.voices = [];
    }
    if (state.voices.length) {
      select.replaceChildren(...state.voices.map((v, i) => h("option", { value: String(i) },
        v.language ? `${v.name} (${v.language})` : v.name)));
      select.hidden = false;
      $("voice-id").hidden = true;
      help.textContent = "The script is spoken by the server's voice engine, then lip-synced.";
    } else {
      select.hidden = true;
      $("voice-id").hidden = false;
      $("voice-select").previousElementSibling.setAttribute("for", "voice-id");
      help.textContent = "This server lists no voices. Type the id of a voice it knows, or use " +
        "an audio file instead.";
    }
  }

  function applyModel() {
    const name = $("model").value;
    const caps = capabilities(name);
    const info = modelInfo(name);
    $("model-help").textContent = info.description || "";
    const isImage = state.visual && state.visual.kind === "image";
    const show = {
      sync_mode: !isImage,
      temperature: caps.temperature,
      occlusion: caps.occlusion,
      prompt: caps.prompt,
      model_mode: caps.model_mode,
    };
    for (const el of document.querySelectorAll("[data-option]")) {
      el.hidden = !show[el.dataset.option];
    }
    for (const opt of $("model").options) {
      opt.disabled = Boolean(isImage) && !capabilities(opt.value).image;
    }
    $("speaker-box").hidden = !state.visual || !caps.speaker;
    scheduleEstimate();
  }

  // ---------------------------------------------------------------------------------------------
  // Picking files: each file becomes an asset right away (see the header comment).
  function isGif(file) {
    return Boolean(file) && file.type === "image/gif"; // moving or not, an <img> shows it
  }

  function kindOf(file) {
    const type = (file.type || "").split("/")[0];
    if (type === "video" || type === "image" || type === "audio") return type;
    const ext = (file.name.split(".").pop() || "").toLowerCase();
    // Browsers without HEIC support give phone photos no MIME type: the extension tells.
    if (["png", "jpg", "jpeg", "webp", "bmp", "tif", "tiff", "heic", "heif", "avif"].includes(ext)) {
      return "image";
    }
    if (["wav", "mp3", "flac", "ogg", "m4a", "aac", "opus", "wma"].includes(ext)) return "audio";
    return "video";
  }

  function releaseSlot(slot) {
    // A submitted file stays playable: the result viewer shows it beside the output.
    if (slot && slot.file && slot.url && !slot.keep) URL.revokeObjectURL(slot.url);
  }

  // A GIF that moves is a video to the server, one that does not a photo: count its frames.
  function gifFrames(b) {
    if (b.length < 13 || b[0] !== 0x47 || b[1] !== 0x49 || b[2] !== 0x46) return 0; // "GIF"
    let i = 13 + (b[10] & 0x80 ? 3 * (2 << (b[10] & 7)) : 0); // after the global colours
    let frames = 0;
    while (i < b.length && b[i] !== 0x3b) { // up to the trailer
      if (b[i] === 0x21) i += 2; // an extension: its label, then data blocks
      else if (b[i] === 0x2c) { // an image: descriptor, local colours, LZW size, data blocks
        frames += 1;
        if (frames > 1) return frames;
        const flags = b[i + 9];
        i += 11 + (flags & 0x80 ? 3 * (2 << (flags & 7)) : 0);
      } else break; // not a block of a GIF: stop counting
      while (i < b.length && b[i] !== 0) i += b[i] + 1;
      i += 1;
    }
    return frames;
  }

  async function pickVisual(file) {
    if (!file) return;
    let kind = kindOf(file);
    if (isGif(file) && gifFrames(new Uint8Array(await file.arrayBuffer())) > 1) {
      kind = "video";
    }
    if (kind === "audio") {
      showError($("create-error"), new Error("That is an audio file: add it under Voice."));
      return;
    }
    releaseSlot(state.visual);
    state.visual = { kind, file, url: URL.createObjectURL(file), asset: null };
    state.speaker = null;
    if (kind === "image" && !capabilities($("model").value).image) {
      const sync3 = state.models.find((m) => capabilities(m.name).image);
      if (sync3) {
        $("model").value = sync3.name;
        toast("Photos need sync-3, so the model was switched to it.");
      }
    }
    applyModel();
    renderPicked("visual");
    setupFramePicker();
    upload("visual");
  }

  function pickAudio(file) {
    if (!file) return;
    if (kindOf(file) !== "audio" && kindOf(file) !== "video") {
      showError($("create-error"), new Error("That is not an audio file."));
      return;
    }
    releaseSlot(state.audio);
    state.audio = { kind: "audio", file, url: URL.createObjectURL(file), asset: null };
    renderPicked("audio");
    upload("audio");
  }

  // ---------------------------------------------------------------------------------------------
  // Record in the page, a voice or a video of oneself: the recording becomes the slot's file,
  // as if it had been picked (MediaRecorder writes WebM, or MP4 in Safari).
  const RECORD_LIMIT_S = 600;
  const recorders = {
    audio: { what: "your voice", constraints: { audio: true }, pick: (f) => pickAudio(f),
      types: [["audio/webm;codecs=opus", "webm"], ["audio/ogg;codecs=opus", "ogg"],
        ["audio/mp4", "m4a"]] },
    // The front camera on a phone; 720p where the camera has it (ideal, not required).
    visual: { what: "a video",
      constraints: { audio: true, video: { facingMode: "user", width: 1280, height: 720 } },
      pick: (f) => pickVisual(f),
      types: [["video/webm;codecs=vp8,opus", "webm"], ["video/webm", "webm"], ["video/mp4", "mp4"]] },
  };

  function canRecord() {
    return Boolean(window.isSecureContext && navigator.mediaDevices &&
      navigator.mediaDevices.getUserMedia && window.MediaRecorder);
  }

  function setupRecorder(slotName) {
    const can = canRecord();
    $(`${slotName}-record-toggle`).disabled = !can;
    // Browsers give pages a camera or microphone only over HTTPS or on the computer itself.
    $(`${slotName}-record-help`).textContent = can ? "" : window.isSecureContext
      ? "This browser cannot record here."
      : "Recording needs this page over HTTPS, or opened on the server itself (localhost).";
  }

  async function toggleRecording(slotName) {
    const rec = recorders[slotName];
    if (rec.media) { rec.media.stop(); return; }
    let stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia(rec.constraints);
    } catch (err) {
      showError($("create-error"), new Error(deviceProblem(slotName, err)));
      return;
    }
    const [type, ext] = rec.types.find(([t]) => MediaRecorder.isTypeSupported(t)) || ["", "webm"];
    const media = new MediaRecorder(stream, type ? { mimeType: type } : undefined);
    Object.assign(rec, { media, stream, chunks: [], started: Date.now() });
    media.addEventListener("dataavailable", (e) => { if (e.data.size) rec.chunks.push(e.data); });
    media.addEventListener("stop", () => finishRecording(slotName, media.mimeType || type, ext));
    media.start(1000);
    rec.timer = setInterval(() => tickRecording(slotName), 250);
    renderRecorder(slotName);
    announceText("Recording. Press Stop recording when you are done.");
  }

  function deviceProblem(slotName, err) {
    const device = slotName === "audio" ? "microphone" : "camera or microphone";
    const name = (err && err.name) || "";
    if (name === "NotAllowedError" || name === "SecurityError") {
      return `Access to the ${device} was refused: allow it in the browser's site settings and try again.`;
    }
    if (name === "NotFoundError" || name === "OverconstrainedError") return `No ${device} was found.`;
    if (name === "NotReadableError") {
      return `The ${device} is busy: another application may be using it.`;
    }
    return `The ${device} could not be opened (${name || err}).`;
  }

  function tickRecording(slotName) {
    const rec = recorders[slotName];
    const seconds = Math.floor((Date.now() - rec.started) / 1000);
    $(`${slotName}-record-time`).textContent =
      `${Math.floor(seconds / 60)}:${String(seconds % 60).padStart(2, "0")}`;
    if (seconds >= RECORD_LIMIT_S && rec.media.state === "recording") rec.media.stop();
  }

  function finishRecording(slotName, type, ext) {
    const rec = recorders[slotName];
    clearInterval(rec.timer);
    for (const track of rec.stream.getTracks()) track.stop(); // the camera/mic light goes off
    const blob = new Blob(rec.chunks, { type: type.split(";")[0] });
    Object.assign(rec, { media: null, stream: null, chunks: [] });
    renderRecorder(slotName);
    if (!blob.size) {
      showError($("create-error"), new Error("Nothing was recorded: check the device."));
      return;
    }
    const stamp = new Date().toISOString().slice(0, 19).replace(/[-:]/g, "").replace("T", "-");
    rec.pick(new File([blob], `recording-${stamp}.${ext}`, { type: blob.type }));
  }

  function renderRecorder(slotName) {
    const rec = recorders[slotName];
    const on = Boolean(rec.media);
    $(`${slotName}-recorder`).classList.toggle("recording", on);
    $(`${slotName}-record-toggle`).setAttribute("aria-pressed", String(on));
    $(`${slotName}-record-label`).textContent = on ? "Stop recording" : `Record ${rec.what}`;
    $(`${slotName}-record-time`).hidden = !on;
    for (const other of Object.keys(recorders)) { // one recording at a time
      if (other !== slotName) $(`${other}-record-toggle`).disabled = on || !canRecord();
    }
    if (on) $(`${slotName}-record-time`).textContent = "0:00";
    const live = $(`${slotName}-record-live`);
    if (live) {
      live.hidden = !on;
      live.srcObject = on ? rec.stream : null;
      if (on) live.play().catch(() => {});
    }
  }

  function useAsset(asset) {
    const type = String(asset.type || "").toUpperCase();
    if (type === "AUDIO") {
      releaseSlot(state.audio);
      state.audio = { kind: "audio", file: null, url: asset.url || "", asset };
      setVoiceSource("audio");
      renderPicked("audio");
    } else {
      releaseSlot(state.visual);
      state.visual = { kind: type === "IMAGE" ? "image" : "video", file: null,
        url: asset.url || "", asset };
      state.speaker = null;
      if (type === "IMAGE" && !capabilities($("model").value).image) {
        const sync3 = state.models.find((m) => capabilities(m.name).image);
        if (sync3) $("model").value = sync3.name;
      }
      applyModel();
      renderPicked("visual");
      setupFramePicker();
    }
    location.hash = "#create";
    toast(`${asset.name || "Asset"} is ready to use.`);
    scheduleEstimate();
  }

  async function upload(slotName) {
    const slot = state[slotName];
    if (!slot || !slot.file) return;
    slot.error = null;
    slot.progress = 0;
    if (state.direct) { renderPicked(slotName); scheduleEstimate(); return; }
    slot.uploading = true;
    renderPicked(slotName);
    updateSubmit();
    const file = slot.file;
    const type = slot.kind.toUpperCase();
    const contentType = file.type || "application/octet-stream";
    try {
      let ticket;
      try {
        ticket = await api("POST", "/v2/assets/upload",
          { json: { fileName: file.name, contentType, size: file.size } });
      } catch (err) {
        if (err.status === 404 || err.status === 405) {
          state.direct = true; // no asset routes here: send the files with the generation
          slot.uploading = false;
          renderPicked(slotName);
          scheduleEstimate();
          return;
        }
        throw err;
      }
      await putFile(ticket.uploadUrl, file, contentType, (p) => {
        if (state[slotName] !== slot) return;
        slot.progress = p;
        renderProgress(slotName);
      });
      const asset = await api("POST", "/v2/assets",
        { json: { url: ticket.url, type, name: file.name } });
      if (state[slotName] !== slot) return; // replaced meanwhile
      slot.asset = asset;
      if (slotName === "visual") onVisualAsset(asset);
    } catch (err) {
      if (state[slotName] !== slot) return;
      slot.error = err;
    } finally {
      if (state[slotName] === slot) {
        slot.uploading = false;
        renderPicked(slotName);
        scheduleEstimate();
      }
    }
  }

  function renderProgress(slotName) {
    const bar = document.querySelector(`#${slotName}-picked .bar-fill`);
    const slot = state[slotName];
    if (bar && slot) {
      bar.style.width = `${Math.round((slot.progress || 0) * 100)}%`;
      bar.parentElement.setAttribute("aria-valuenow", String(Math.round((slot.progress || 0) * 100)));
    }
  }

  function renderPicked(slotName) {
    const box = $(`${slotName}-picked`);
    const slot = state[slotName];
    box.replaceChildren();
    box.hidden = !slot;
    $(`${slotName === "visual" ? "visual" : "audio"}-drop`).hidden = Boolean(slot);
    $(`${slotName}-recorder`).hidden = Boolean(slot);
    if (!slot) { updateSubmit(); return; }
    const name = slot.file ? slot.file.name : slot.asset && slot.asset.name;
    const size = slot.file ? slot.file.size : slot.asset && slot.asset.size;
    let statusText = "Ready";
    let statusClass = "ok";
    if (slot.uploading) { statusText = "Uploading…"; statusClass = "busy"; }
    else if (slot.error) { statusText = "Not usable"; statusClass = "bad"; }
    else if (state.direct && slot.file) { statusText = "Will upload on start"; }
    else if (slot.asset) { statusText = "In your library"; }
    let preview = null;
    if (slotName === "audio" && slot.url) {
      preview = h("audio", { controls: true, preload: "metadata", src: slot.url,
        "aria-label": `Preview of ${name || "audio"}` });
    } else if (slotName === "visual" && slot.url && (slot.kind === "image" || isGif(slot.file))) {
      preview = h("img", { class: "thumb", src: slot.url, alt: "" });
      // A HEIC photo is fine for the server but most browsers cannot show it.
      preview.addEventListener("error", () => preview.replaceWith(
        h("span", { class: "thumb asset-icon", "aria-hidden": "true" }, "▣")));
    } else if (slotName === "visual") {
      preview = videoThumb(slot);
    }
    const meta = [slot.kind === "image" ? "Photo" : slot.kind === "audio" ? "Audio" : "Video",
      fmt.bytes(size), slot.asset && slot.asset.durationSeconds ? fmt.seconds(slot.asset.durationSeconds) : ""]
      .filter(Boolean).join(" · ");
    put(box,
      h("div", { class: "picked-row" },
        slotName === "visual" ? preview : null,
        h("div", { class: "picked-info" },
          h("span", { class: "picked-name" }, name || "file"),
          h("span", { class: "muted small" }, meta),
          h("span", { class: `pill pill-${statusClass}`, "data-testid": `${slotName}-status` },
            statusText)),
        h("button", { type: "button", class: "btn btn-ghost btn-small",
          "aria-label": `Remove ${name || "file"}`, onclick: () => clearSlot(slotName) }, "Remove")),
      slot.uploading ? h("div", { class: "bar", role: "progressbar", "aria-label": `Uploading ${name}`,
        "aria-valuemin": "0", "aria-valuemax": "100", "aria-valuenow": "0" },
        h("span", { class: "bar-fill" })) : null,
      slotName === "audio" ? preview : null,
      slot.error ? errorBlock(slot.error) : null);
    renderProgress(slotName);
    updateSubmit();
  }

  /** The first frame of a video, or the server's still, or an icon when neither can be shown. */
  function videoThumb(slot) {
    const poster = slot.asset && slot.asset.thumbnailUrl;
    const icon = () => h("span", { class: "thumb thumb-icon", "aria-hidden": "true" }, "▶");
    const still = () => {
      if (!poster) return icon();
      const img = h("img", { class: "thumb", src: poster, alt: "" });
      img.addEventListener("error", () => img.replaceWith(icon()));
      return img;
    };
    if (!slot.url || slot.thumbFailed) return still();
    const video = h("video", { class: "thumb", muted: true, playsinline: true, preload: "metadata",
      src: `${slot.url}#t=0.1`, "aria-hidden": "true" });
    video.addEventListener("error", () => { slot.thumbFailed = true; video.replaceWith(still()); });
    return video;
  }

  function clearSlot(slotName) {
    releaseSlot(state[slotName]);
    state[slotName] = null;
    if (slotName === "visual") { state.speaker = null; setupFramePicker(); applyModel(); }
    renderPicked(slotName);
    $(`${slotName}-file`).value = "";
    $(`${slotName}-file`).focus();
    scheduleEstimate();
  }

  function setVoiceSource(value) {
    for (const radio of document.querySelectorAll("input[name=voice-source]")) {
      radio.checked = radio.value === value;
    }
    $("voice-audio").hidden = value !== "audio";
    $("voice-text").hidden = value !== "text";
    scheduleEstimate();
  }

  function voiceSource() {
    return document.querySelector("input[name=voice-source]:checked").value;
  }

  // ---------------------------------------------------------------------------------------------
  // Active speaker: click the face on a frame (video) or on the photo.
  const picker = { fps: DEFAULT_FPS, frame: 0, usingStill: false, cursor: null };

  function speakerMode() {
    return document.querySelector("input[name=speaker]:checked").value;
  }

  function setupFramePicker() {
    const video = $("frame-video");
    const image = $("frame-image");
    $("frame-marker").hidden = true;
    $("speaker-status").textContent = "";
    delete $("frame-stage").dataset.fps;
    picker.frame = 0;
    picker.cursor = null;
    picker.usingStill = false;
    video.hidden = true;
    image.hidden = true;
    video.removeAttribute("src");
    image.removeAttribute("src");
    const slot = state.visual;
    $("frame-picker").hidden = !slot || speakerMode() !== "manual";
    if ($("frame-picker").hidden) return; // load the frame only when it is wanted
    if (slot.kind === "image") {
      image.src = slot.url;
      image.hidden = false;
      $("frame-controls").hidden = true;
      return;
    }
    $("frame-controls").hidden = false;
    picker.fps = Number(slot.asset && (slot.asset.fps || slot.asset.frameRate)) || DEFAULT_FPS;
    if (slot.url) {
      video.src = slot.url;
      video.hidden = false;
    } else {
      useStill();
    }
  }

  function useStill() {
    // The browser cannot decode this video (e.g. MPEG-1): pick on the server's still instead.
    const slot = state.visual;
    const video = $("frame-video");
    const image = $("frame-image");
    video.hidden = true;
    picker.usingStill = true;
    picker.frame = 0;
    $("frame-controls").hidden = true;
    const still = slot && slot.asset && slot.asset.thumbnailUrl;
    if (still) {
      image.src = still;
      image.hidden = false;
      $("speaker-status").textContent =
        "This browser cannot play this video format, so choose the face on its first frame.";
    } else {
      image.hidden = true;
      $("speaker-status").textContent = slot && (slot.asset || slot.error || state.direct)
        ? "This browser cannot show this video format. Use Automatic, or convert it to MP4."
        : "Waiting for the upload to show a frame…";
    }
  }

  function onVisualAsset(asset) {
    if (state.visual && state.visual.kind === "video") {
      picker.fps = Number(asset.fps || asset.frameRate) || picker.fps;
      if (picker.usingStill) useStill();
      else updateFrameSlider();
    }
  }

  /** Frames per second of a playing video, from the timestamps of the frames it presents.
   * The API does not report a frame rate, and frame_number must count the video's own frames. */
  function measureFps(video) {
    return new Promise((resolve) => {
      if (!("requestVideoFrameCallback" in HTMLVideoElement.prototype)) { resolve(null); return; }
      const times = [];
      let done = false;
      const finish = () => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        video.pause();
        const gaps = times.slice(1).map((t, i) => t - times[i]).filter((d) => d > 0.002);
        resolve(gaps.length ? snapFps(1 / Math.min(...gaps)) : null);
      };
      const timer = setTimeout(finish, 2000);
      const step = (_now, meta) => {
        times.push(meta.mediaTime);
        if (times.length >= 8) finish(); else video.requestVideoFrameCallback(step);
      };
      video.requestVideoFrameCallback(step);
      video.muted = true;
      video.play().catch(finish);
    });
  }

  function snapFps(fps) {
    const common = [23.976, 24, 25, 29.97, 30, 48, 50, 59.94, 60];
    const near = common.reduce((a, b) => (Math.abs(b - fps) < Math.abs(a - fps) ? b : a));
    return Math.abs(near - fps) / near < 0.015 ? near : Math.round(fps * 100) / 100;
  }

  async function onFrameVideoReady() {
    const video = $("frame-video");
    const slot = state.visual;
    const measured = await measureFps(video);
    if (state.visual !== slot) return;
    picker.fps = measured || picker.fps;
    $("frame-stage").dataset.fps = String(picker.fps);
    updateFrameSlider();
    seekFrame(0);
  }

  function updateFrameSlider() {
    const video = $("frame-video");
    if (!Number.isFinite(video.duration)) return;
    const last = Math.max(0, Math.floor(video.duration * picker.fps) - 1);
    $("frame-slider").max = String(last);
  }

  function seekFrame(frame) {
    const video = $("frame-video");
    const last = Number($("frame-slider").max) || 0;
    picker.frame = Math.max(0, Math.min(last, frame));
    $("frame-slider").value = String(picker.frame);
    $("frame-readout").textContent = `frame ${picker.frame}`;
    if (!video.hidden) video.currentTime = (picker.frame + 0.5) / picker.fps;
    if (state.speaker && state.speaker.frame !== picker.frame) {
      $("frame-marker").hidden = true;
      state.speaker = null;
      $("speaker-status").textContent = "Click the speaking face on this frame.";
      scheduleEstimate();
    }
  }

  function frameMedia() {
    const video = $("frame-video");
    if (!video.hidden) return { el: video, width: video.videoWidth, height: video.videoHeight };
    const image = $("frame-image");
    const asset = state.visual && state.visual.asset;
    // A server still may be smaller than the video: scale to the real frame size when known.
    const width = (picker.usingStill && asset && asset.width) || image.naturalWidth;
    const height = (picker.usingStill && asset && asset.height) || image.naturalHeight;
    return { el: image, width, height };
  }

  function placeSpeaker(fx, fy) {
    const media = frameMedia();
    if (!media.width || !media.height) return;
    fx = Math.min(1, Math.max(0, fx));
    fy = Math.min(1, Math.max(0, fy));
    picker.cursor = { fx, fy };
    const x = Math.round(fx * (media.width - 1));
    const y = Math.round(fy * (media.height - 1));
    state.speaker = { frame: picker.frame, x, y };
    const marker = $("frame-marker");
    // The stage wraps the picture exactly, so percentages stay right when the layout changes.
    marker.style.left = `${fx * 100}%`;
    marker.style.top = `${fy * 100}%`;
    marker.hidden = false;
    $("speaker-status").textContent = `Speaker set: frame ${picker.frame}, point (${x}, ${y}).`;
    scheduleEstimate();
  }

  function onStageClick(event) {
    const media = frameMedia();
    if (media.el.hidden) return;
    const rect = media.el.getBoundingClientRect();
    placeSpeaker((event.clientX - rect.left) / rect.width, (event.clientY - rect.top) / rect.height);
  }

  function onStageKey(event) {
    const step = event.shiftKey ? 0.1 : 0.02;
    const cur = picker.cursor || { fx: 0.5, fy: 0.5 };
    const moves = { ArrowLeft: [-step, 0], ArrowRight: [step, 0], ArrowUp: [0, -step], ArrowDown: [0, step] };
    if (moves[event.key]) {
      event.preventDefault();
      placeSpeaker(cur.fx + moves[event.key][0], cur.fy + moves[event.key][1]);
    } else if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      placeSpeaker(cur.fx, cur.fy);
    } else if (event.key === "PageUp" || event.key === "PageDown") {
      event.preventDefault();
      seekFrame(picker.frame + (event.key === "PageUp" ? -1 : 1));
    }
  }

  // ---------------------------------------------------------------------------------------------
  // The request body shared by the estimate and the submission.
  function buildOptions() {
    const model = $("model").value;
    const caps = capabilities(model);
    const isImage = state.visual && state.visual.kind === "image";
    const options = {};
    if (!isImage) options.sync_mode = $("sync-mode").value;
    if (caps.temperature) options.temperature = Number($("temperature").value);
    if (caps.occlusion && $("occlusion").checked) options.occlusion_detection_enabled = true;
    if (caps.prompt && $("emotion").value) options.prompt = $("emotion").value;
    if (caps.model_mode) options.model_mode = document.querySelector("input[name=model-mode]:checked").value;
    if (caps.speaker && state.visual) {
      if (speakerMode() === "manual" && state.speaker) {
        options.active_speaker_detection = { frame_number: state.speaker.frame,
          coordinates: [state.speaker.x, state.speaker.y] };
      } else if (speakerMode() === "auto" && !isImage) {
        options.active_speaker_detection = { auto_detect: true };
      }
    }
    return options;
  }

  function textInput() {
    const script = $("script").value.trim();
    let voiceId = $("voice-id").value.trim();
    if (state.voices.length) voiceId = state.voices[Number($("voice-select").value) || 0].id;
    // The wire always names "elevenlabs" (the only value of the API's enum); the server routes
    // by voice id, so its own local voices are spoken locally.
    return { type: "text", provider: { name: "elevenlabs", voiceId, script } };
  }

  /** What is still missing before a request can be built, as a sentence (or ""). */
  function missing() {
    if (!state.models.length) return "No models are available on this server.";
    const v = state.visual;
    if (!v) return "Add a video or a photo.";
    if (v.uploading) return "Uploading the video…";
    if (v.error) return "Replace the face file: it cannot be used.";
    if (!v.asset && !(state.direct && v.file)) return "Add a video or a photo.";
    if (voiceSource() === "audio") {
      const a = state.audio;
      if (!a) return "Add an audio file, or type a script.";
      if (a.uploading) return "Uploading the audio…";
      if (a.error) return "Replace the audio file: it cannot be used.";
      if (!a.asset && !(state.direct && a.file)) return "Add an audio file.";
    } else {
      const t = textInput();
      if (!t.provider.script) return "Type the script.";
      if (!t.provider.voiceId) return "Choose a voice.";
    }
    if (speakerMode() === "manual" && capabilities($("model").value).speaker && !state.speaker) {
      return "Click the speaking face, or choose Automatic.";
    }
    const name = $("output-name").value.trim();
    if (name && !/^[A-Za-z0-9_-]+$/.test(name)) {
      return "The output file name may use only letters, digits, - and _.";
    }
    return "";
  }

  function buildJson() {
    const v = state.visual;
    const input = [{ type: v.kind === "image" ? "image" : "video", assetId: v.asset.id }];
    if (voiceSource() === "audio") input.push({ type: "audio", assetId: state.audio.asset.id });
    else input.push(textInput());
    const body = { model: $("model").value, input, options: buildOptions() };
    const name = $("output-name").value.trim();
    if (name) body.outputFileName = name;
    return body;
  }

  function buildMultipart() {
    const form = new FormData();
    form.append("model", $("model").value);
    const v = state.visual;
    const inputs = [];
    if (v.file) form.append(v.kind === "image" ? "image" : "video", v.file, v.file.name);
    else inputs.push({ type: v.kind === "image" ? "image" : "video", assetId: v.asset.id });
    if (voiceSource() === "audio") {
      if (state.audio.file) form.append("audio", state.audio.file, state.audio.file.name);
      else inputs.push({ type: "audio", assetId: state.audio.asset.id });
    } else {
      inputs.push(textInput());
    }
    if (inputs.length) form.append("input", JSON.stringify(inputs));
    form.append("options", JSON.stringify(buildOptions()));
    const name = $("output-name").value.trim();
    if (name) form.append("outputFileName", name);
    return form;
  }

  function usesDirectUpload() {
    return Boolean(state.direct && ((state.visual && state.visual.file && !state.visual.asset) ||
      (voiceSource() === "audio" && state.audio && state.audio.file && !state.audio.asset)));
  }

  // ---------------------------------------------------------------------------------------------
  // Price estimate (debounced; stale answers are dropped).
  let estimateTimer = 0;
  let estimateSeq = 0;

  function scheduleEstimate() {
    updateSubmit();
    clearTimeout(estimateTimer);
    estimateTimer = setTimeout(runEstimate, 400);
  }

  async function runEstimate() {
    const seq = ++estimateSeq;
    const cost = $("estimate-cost");
    const detail = $("estimate-detail");
    const reason = missing();
    $("estimate").classList.remove("estimate-error");
    if (reason) {
      cost.textContent = "—";
      detail.textContent = reason;
      return;
    }
    if (usesDirectUpload()) {
      cost.textContent = "—";
      detail.textContent = "This server prices a job only after its files are uploaded.";
      return;
    }
    cost.textContent = "…";
    detail.textContent = "Estimating…";
    try {
      const result = await api("POST", "/v2/analyze/cost", { json: buildJson() });
      if (seq !== estimateSeq) return;
      const first = Array.isArray(result) ? result[0] : result;
      cost.textContent = fmt.usd(first.estimatedGenerationCost);
      const frames = Number(first.estimatedFrameCount);
      detail.textContent = Number.isFinite(frames)
        ? `${frames.toLocaleString()} frames · ${$("model").value}` : $("model").value;
    } catch (err) {
      if (seq !== estimateSeq) return;
      cost.textContent = "—";
      const info = describe(err);
      detail.textContent = `No estimate: ${info.title}${info.code ? ` (${info.code})` : ""}`;
      $("estimate").classList.add("estimate-error");
    }
  }

  function updateSubmit() {
    const reason = missing();
    $("submit").disabled = Boolean(reason) || submitting;
    $("submit-help").textContent = reason || (usesDirectUpload()
      ? "Your files are sent with the job."
      : "Files are already in your library; starting only queues the job.");
  }

  // ---------------------------------------------------------------------------------------------
  // Submission and live progress of each job.
  let submitting = false;
  const jobs = new Map(); // id → {generation, el, timer, original}

  async function submit(event) {
    event.preventDefault();
    const reason = missing();
    if (reason) { showError($("create-error"), new Error(reason)); return; }
    submitting = true;
    updateSubmit();
    $("submit").textContent = "Starting…";
    showError($("create-error"), null);
    try {
      const generation = usesDirectUpload()
        ? await api("POST", "/v2/generate", { form: buildMultipart() })
        : await api("POST", "/v2/generate", { json: buildJson() });
      const original = state.visual ? { kind: state.visual.kind, url: state.visual.url,
        asset: state.visual.asset, file: state.visual.file } : null;
      if (state.visual && state.visual.file) state.visual.keep = true;
      addJob(generation, original);
      toast("Job started. You can start another one.");
    } catch (err) {
      showError($("create-error"), err);
    } finally {
      submitting = false;
      $("submit").textContent = "Start lip-sync";
      updateSubmit();
    }
  }

  function addJob(generation, original) {
    $("jobs-empty").hidden = true;
    const el = h("li", { class: "job", "data-id": generation.id });
    $("jobs").prepend(el);
    const job = { generation, el, timer: 0, original, lastAnnounced: "" };
    jobs.set(generation.id, job);
    renderJob(job);
    pollJob(job);
  }

  async function pollJob(job) {
    if (!session.key) return;
    try {
      const g = await api("GET", `/v2/generate/${encodeURIComponent(job.generation.id)}`,
        { query: { include: "progress" } });
      job.generation = g;
      job.pollError = null;
    } catch (err) {
      job.pollError = err;
      if (err.status === 404) { renderJob(job); return; }
    }
    renderJob(job);
    if (!TERMINAL.has(job.generation.status)) job.timer = setTimeout(() => pollJob(job), POLL_MS);
  }

  function progressOf(g) {
    if (g.status === "COMPLETED") return 100;
    const p = Number(g.progress_percent ?? g.progressPercent);
    return Number.isFinite(p) ? Math.max(0, Math.min(100, p)) : 0;
  }

  function renderJob(job) {
    const g = job.generation;
    const pct = Math.round(progressOf(g));
    const status = g.status || "PENDING";
    // Announce status changes and every quarter, not every poll (screen readers stay usable).
    const milestone = `${status}:${Math.floor(pct / 25)}`;
    const announce = milestone !== job.lastAnnounced;
    job.lastAnnounced = milestone;
    const live = h("p", { class: "job-status", "data-testid": "job-status" },
      h("span", { class: `badge badge-${status.toLowerCase()}` }, fmt.status(status)),
      TERMINAL.has(status) ? null : ` ${pct}%`);
    const kids = [
      h("div", { class: "job-head" },
        h("span", { class: "job-title" }, g.outputFileName || g.model || "Generation"),
        h("span", { class: "muted small mono", title: g.id }, fmt.shortId(g.id))),
      live,
    ];
    if (!TERMINAL.has(status)) {
      kids.push(h("div", { class: "bar", role: "progressbar", "aria-label": `Progress of ${fmt.shortId(g.id)}`,
        "aria-valuemin": "0", "aria-valuemax": "100", "aria-valuenow": String(pct) },
        h("span", { class: "bar-fill", style: `width:${Math.max(3, pct)}%` })));
    }
    if (status === "COMPLETED") {
      kids.push(h("div", { class: "job-actions" },
        h("button", { type: "button", class: "btn btn-primary btn-small",
          onclick: () => viewer.open(g, job.original) }, "View result"),
        safeUrl(g.outputUrl) ? h("a", { class: "btn btn-ghost btn-small", href: safeUrl(g.outputUrl),
          download: `${g.outputFileName || g.id}.mp4` }, "Download") : null));
    }
    if (status === "FAILED" || status === "REJECTED") kids.push(errorBlock(g));
    if (job.pollError) kids.push(errorBlock(job.pollError));
    job.el.replaceChildren();
    put(job.el, kids);
    if (announce) announceText(`Job ${fmt.shortId(g.id)}: ${fmt.status(status)}${
      TERMINAL.has(status) ? "" : `, ${pct} percent`}.`);
  }

  function announceText(text) {
    const el = $("announcer");
    el.textContent = "";
    setTimeout(() => { el.textContent = text; }, 50);
  }

  // ---------------------------------------------------------------------------------------------
  // Result viewer: the original and the result play in lock-step.
  const viewer = {
    original: null,
    async open(generation, original) {
      const dialog = $("viewer");
      const result = $("result-video");
      $("viewer-title").textContent = generation.outputFileName
        ? `Result: ${generation.outputFileName}` : "Result";
      $("viewer-meta").textContent = [generation.model, fmt.seconds(generation.outputDuration),
        fmt.date(generation.createdAt), `id ${generation.id}`].filter(Boolean).join(" · ");
      result.src = safeUrl(generation.outputUrl);
      $("download").href = safeUrl(generation.outputUrl) || "#";
      $("download").setAttribute("download", `${generation.outputFileName || generation.id}.mp4`);
      $("hear-original").checked = false;
      result.muted = false;
      const slot = $("original-slot");
      slot.replaceChildren(h("p", { class: "muted center" }, "Loading the original…"));
      if (!dialog.open) dialog.showModal();
      const source = original || (await this.findOriginal(generation));
      this.showOriginal(source);
    },
    async findOriginal(generation) {
      const visual = (generation.input || []).find((i) => i.type === "video" || i.type === "image");
      if (!visual) return null;
      if (visual.assetId) {
        try {
          const asset = await api("GET", `/v2/assets/${encodeURIComponent(visual.assetId)}`);
          return { kind: visual.type, url: asset.url, asset };
        } catch (err) {
          return null;
        }
      }
      return visual.url ? { kind: visual.type, url: visual.url, asset: null } : null;
    },
    showOriginal(source) {
      const slot = $("original-slot");
      this.original = null;
      slot.classList.remove("player-note");
      $("hear-original-box").hidden = !source || source.kind === "image";
      if (!source || !source.url) {
        slot.replaceChildren(h("p", { class: "muted center" }, "The original is not available."));
        slot.classList.add("player-note");
        return;
      }
      if (source.kind === "image") {
        slot.replaceChildren(h("img", { src: source.url, alt: "Original photo" }));
        return;
      }
      const video = h("video", { playsinline: true, preload: "auto", muted: true,
        "aria-label": "Original video (follows the result)" });
      video.muted = true;
      video.addEventListener("error", () => {
        const still = source.asset && source.asset.thumbnailUrl;
        slot.replaceChildren();
        put(slot, still ? h("img", { src: still, alt: "Still of the original video" }) : null,
          h("p", { class: "muted small center" }, still
            ? "This browser cannot play the original's format, so a still is shown."
            : "This browser cannot play the original's format; the lip-synced version plays " +
              "normally."));
        slot.classList.toggle("player-note", !still);
        this.original = null;
        $("hear-original-box").hidden = true;
      });
      video.src = source.url;
      slot.replaceChildren(video);
      this.original = video;
    },
    follow(event) {
      const original = viewer.original;
      const result = $("result-video");
      if (!original || !Number.isFinite(original.duration)) return;
      const target = result.currentTime % original.duration;
      if (event.type === "play") { original.currentTime = target; original.play().catch(() => {}); }
      else if (event.type === "pause" || event.type === "ended") original.pause();
      else if (event.type === "ratechange") original.playbackRate = result.playbackRate;
      else if (Math.abs(original.currentTime - target) > 0.12) original.currentTime = target;
    },
    close() {
      const result = $("result-video");
      result.pause();
      if (viewer.original) viewer.original.pause();
      $("viewer").close();
    },
  };

  // ---------------------------------------------------------------------------------------------
  // History: generations (filtered, paged by cursor) and batches.
  const history = {
    tab: "gens",
    items: [],
    cursor: null,
    seq: 0,
    open() {
      if (this.tab === "gens") this.reload(); else this.loadBatches();
    },
    statuses() {
      return [...document.querySelectorAll("input[name=gen-status]:checked")].map((c) => c.value);
    },
    async reload() {
      this.items = [];
      this.cursor = null;
      await this.loadMore();
    },
    async loadMore() {
      const seq = ++this.seq;
      const search = $("gen-search").value.trim();
      const query = { limit: PAGE_SIZE, status: this.statuses(), cursor: this.cursor };
      if (/^[0-9a-f-]{36}$/i.test(search)) query.ids = search;
      try {
        const page = await api("GET", "/v2/generations", { query });
        if (seq !== this.seq) return;
        const list = Array.isArray(page) ? page : [];
        this.items.push(...list);
        this.cursor = list.length === PAGE_SIZE ? list[list.length - 1].id : null;
        showError($("gen-error"), null);
      } catch (err) {
        if (seq !== this.seq) return;
        showError($("gen-error"), err);
      }
      this.render();
    },
    /** Keep running jobs in the list current while the history is on screen. */
    scheduleLive() {
      clearTimeout(this.liveTimer);
      const running = this.items.filter((g) => !TERMINAL.has(g.status)).slice(0, 10);
      if (!running.length) return;
      this.liveTimer = setTimeout(async () => {
        if ($("view-history").hidden || !session.key) return;
        const fresh = await Promise.all(running.map((g) => api("GET",
          `/v2/generate/${encodeURIComponent(g.id)}`, { query: { include: "progress" } })
          .catch(() => g)));
        for (const g of fresh) {
          const i = this.items.findIndex((x) => x.id === g.id);
          if (i >= 0) this.items[i] = g;
        }
        this.render();
      }, POLL_MS * 2);
    },
    render() {
      this.scheduleLive();
      const needle = $("gen-search").value.trim().toLowerCase();
      const shown = this.items.filter((g) => !needle || [g.id, g.model, g.outputFileName, g.error,
        g.error_code, g.status].some((v) => v && String(v).toLowerCase().includes(needle)));
      $("gen-list").replaceChildren(...shown.map((g) => this.row(g)));
      const filtered = Boolean(needle) || this.statuses().length > 0;
      $("gen-empty").textContent = filtered ? "No generations match."
        : "No generations yet. Start one under Create.";
      $("gen-empty").hidden = shown.length > 0;
      $("gen-more").hidden = !this.cursor;
    },
    row(g) {
      const status = g.status || "PENDING";
      const pct = progressOf(g);
      return h("li", { class: "history-row", "data-id": g.id, "data-status": status },
        h("span", { class: `badge badge-${status.toLowerCase()}` }, fmt.status(status)),
        h("div", { class: "history-main" },
          h("span", { class: "history-title" }, g.outputFileName || `Generation ${fmt.shortId(g.id)}`),
          h("span", { class: "muted small" }, [g.model, fmt.date(g.createdAt), `id ${fmt.shortId(g.id)}`,
            g.outputDuration ? fmt.seconds(g.outputDuration) : "", status === "PROCESSING" ? `${Math.round(pct)}%` : ""]
            .filter(Boolean).join(" · ")),
          status === "FAILED" || status === "REJECTED" ? errorBlock(g) : null),
        h("div", { class: "history-actions" },
          status === "COMPLETED" ? h("button", { type: "button", class: "btn btn-ghost btn-small",
            onclick: () => viewer.open(g, null) }, "View") : null,
          status === "COMPLETED" && safeUrl(g.outputUrl) ? h("a", { class: "btn btn-ghost btn-small",
            href: safeUrl(g.outputUrl), download: `${g.outputFileName || g.id}.mp4` }, "Download") : null));
    },
    async loadBatches() {
      const status = $("batch-status").value;
      try {
        const list = await api("GET", "/v2/batch", { query: { status } });
        this.batches = Array.isArray(list) ? list : [];
        showError($("batch-error"), null);
      } catch (err) {
        this.batches = [];
        showError($("batch-error"), err);
      }
      this.renderBatches();
    },
    renderBatches() {
      const needle = $("batch-search").value.trim().toLowerCase();
      const shown = (this.batches || []).filter((b) => !needle || String(b.id).toLowerCase().includes(needle));
      $("batch-list").replaceChildren(...shown.map((b) => {
        const m = b.metrics || {};
        const total = Number(m.total_generations) || 0;
        const done = (Number(m.success_count) || 0) + (Number(m.failed_count) || 0);
        const pct = total ? Math.round((done / total) * 100) : 0;
        return h("li", { class: "history-row", "data-id": b.id },
          h("span", { class: `badge badge-${String(b.status || "").toLowerCase()}` }, fmt.status(b.status)),
          h("div", { class: "history-main" },
            h("span", { class: "history-title mono" }, `Batch ${fmt.shortId(b.id)}`),
            h("span", { class: "muted small" }, `${fmt.date(b.created_at || b.createdAt)} · ` +
              `${m.success_count || 0} done, ${m.failed_count || 0} failed, ${m.pending_count || 0} waiting of ${total}`),
            h("div", { class: "bar", role: "progressbar", "aria-label": `Batch ${fmt.shortId(b.id)} progress`,
              "aria-valuemin": "0", "aria-valuemax": "100", "aria-valuenow": String(pct) },
              h("span", { class: "bar-fill", style: `width:${pct}%` }))),
          h("div", { class: "history-actions" },
            safeUrl(b.outputUrl) ? h("a", { class: "btn btn-ghost btn-small", href: safeUrl(b.outputUrl) },
              "Results") : null));
      }));
      $("batch-empty").hidden = shown.length > 0;
    },
    selectTab(tab) {
      this.tab = tab;
      const gens = tab === "gens";
      $("tab-gens").setAttribute("aria-selected", String(gens));
      $("tab-batches").setAttribute("aria-selected", String(!gens));
      $("tab-gens").tabIndex = gens ? 0 : -1;
      $("tab-batches").tabIndex = gens ? -1 : 0;
      $("panel-gens").hidden = !gens;
      $("panel-batches").hidden = gens;
      this.open();
    },
  };

  // ---------------------------------------------------------------------------------------------
  // Assets library.
  const assets = {
    items: [],
    cursor: null,
    seq: 0,
    async reload() {
      this.items = [];
      this.cursor = null;
      await this.loadMore();
    },
    async loadMore() {
      const seq = ++this.seq;
      const query = { limit: 24, cursor: this.cursor, searchQuery: $("asset-search").value.trim(),
        types: $("asset-type").value, sortBy: $("asset-sort").value };
      try {
        const page = await api("GET", "/v2/assets", { query });
        if (seq !== this.seq) return;
        this.items.push(...((page && page.items) || []));
        this.cursor = (page && page.nextCursor) || null;
        const total = page && page.totalCount;
        $("asset-count").textContent = Number.isFinite(total)
          ? `${total} file${total === 1 ? "" : "s"}` : "";
        showError($("asset-error"), null);
      } catch (err) {
        if (seq !== this.seq) return;
        showError($("asset-error"), err);
      }
      $("asset-list").replaceChildren(...this.items.map((a) => this.card(a)));
      $("asset-empty").hidden = this.items.length > 0;
      $("asset-more").hidden = !this.cursor;
    },
    card(a) {
      const type = String(a.type || "").toUpperCase();
      let preview;
      if (type === "AUDIO") {
        preview = h("div", { class: "asset-preview asset-audio" },
          h("span", { class: "asset-icon", "aria-hidden": "true" }, "♫"),
          safeUrl(a.url) ? h("audio", { controls: true, preload: "none", src: safeUrl(a.url),
            "aria-label": `Play ${a.name || "audio"}` }) : null);
      } else {
        const icon = () => h("span", { class: "asset-icon", "aria-hidden": "true" },
          type === "IMAGE" ? "▣" : "▶");
        const src = safeUrl(a.thumbnailUrl || (type === "IMAGE" ? a.url : null));
        let still = null;
        if (src) {
          still = h("img", { src, alt: "", loading: "lazy" });
          still.addEventListener("error", () => still.replaceWith(icon()));
        } else if (type === "VIDEO" && safeUrl(a.url)) {
          // No server still: the video's own first frame, when this browser can decode it.
          still = h("video", { src: `${safeUrl(a.url)}#t=0.1`, preload: "metadata", muted: true,
            playsinline: true, "aria-hidden": "true" });
          still.addEventListener("error", () => still.replaceWith(icon()));
        }
        preview = h("div", { class: "asset-preview" }, still || icon());
      }
      const meta = [type === "IMAGE" ? "Photo" : type === "AUDIO" ? "Audio" : "Video",
        a.durationSeconds ? fmt.seconds(a.durationSeconds) : "",
        a.width && a.height ? `${a.width}×${a.height}` : "", fmt.bytes(a.size)].filter(Boolean).join(" · ");
      return h("li", { class: "asset-card", "data-id": a.id },
        preview,
        h("div", { class: "asset-body" },
          h("span", { class: "asset-name", title: a.name || a.id }, a.name || fmt.shortId(a.id)),
          h("span", { class: "muted small" }, meta),
          h("span", { class: "muted small" }, fmt.date(a.createdAt))),
        h("button", { type: "button", class: "btn btn-ghost btn-small asset-use",
          onclick: () => useAsset(a), "aria-label": `Use ${a.name || "asset"} as the ${type === "AUDIO" ? "voice" : "face"}` },
          type === "AUDIO" ? "Use as voice" : "Use as face"));
    },
  };

  // ---------------------------------------------------------------------------------------------
  // Wiring.
  function debounce(fn, ms) {
    let t = 0;
    return (...args) => { clearTimeout(t); t = setTimeout(() => fn(...args), ms); };
  }

  function wireDrop(zoneId, onFile) {
    const zone = $(zoneId);
    zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
    zone.addEventListener("dragleave", () => zone.classList.remove("over"));
    zone.addEventListener("drop", (e) => {
      e.preventDefault();
      zone.classList.remove("over");
      const file = e.dataTransfer && e.dataTransfer.files[0];
      if (file) onFile(file);
    });
  }

  function init() {
    document.body.append(h("div", { id: "announcer", class: "visually-hidden", "aria-live": "polite",
      role: "status" }));
    $("signin-form").addEventListener("submit", signIn);
    $("toggle-key").addEventListener("click", () => {
      const input = $("api-key");
      const show = input.type === "password";
      input.type = show ? "text" : "password";
      $("toggle-key").textContent = show ? "Hide" : "Show";
      $("toggle-key").setAttribute("aria-pressed", String(show));
    });
    $("sign-out").addEventListener("click", signOut);
    window.addEventListener("hashchange", () => {
      route();
      // Screen readers start reading the new section, not wherever focus was left.
      if (session.key) $("main").focus({ preventScroll: true });
    });

    $("visual-file").addEventListener("change", (e) => pickVisual(e.target.files[0]));
    $("audio-file").addEventListener("change", (e) => pickAudio(e.target.files[0]));
    wireDrop("visual-drop", pickVisual);
    wireDrop("audio-drop", pickAudio);
    for (const slotName of ["visual", "audio"]) {
      $(`${slotName}-record-toggle`).addEventListener("click", () => toggleRecording(slotName));
      setupRecorder(slotName);
    }
    for (const radio of document.querySelectorAll("input[name=voice-source]")) {
      radio.addEventListener("change", () => setVoiceSource(radio.value));
    }
    for (const radio of document.querySelectorAll("input[name=speaker]")) {
      radio.addEventListener("change", () => { state.speaker = null; setupFramePicker(); scheduleEstimate(); });
    }
    $("model").addEventListener("change", applyModel);
    $("temperature").addEventListener("input", () => {
      $("temperature-value").textContent = Number($("temperature").value).toFixed(2);
    });
    for (const id of ["sync-mode", "temperature", "occlusion", "emotion", "voice-select"]) {
      $(id).addEventListener("change", scheduleEstimate);
    }
    for (const radio of document.querySelectorAll("input[name=model-mode]")) {
      radio.addEventListener("change", scheduleEstimate);
    }
    for (const id of ["script", "voice-id"]) {
      const later = debounce(scheduleEstimate, 500);
      $(id).addEventListener("input", () => { updateSubmit(); later(); });
    }
    $("output-name").addEventListener("input", updateSubmit);
    $("create-form").addEventListener("submit", submit);

    const video = $("frame-video");
    video.addEventListener("loadedmetadata", onFrameVideoReady);
    video.addEventListener("error", () => { if (!video.hidden || video.getAttribute("src")) useStill(); });
    $("frame-stage").addEventListener("click", onStageClick);
    $("frame-stage").addEventListener("keydown", onStageKey);
    $("frame-slider").addEventListener("input", () => seekFrame(Number($("frame-slider").value)));
    $("frame-prev").addEventListener("click", () => seekFrame(picker.frame - 1));
    $("frame-next").addEventListener("click", () => seekFrame(picker.frame + 1));

    const result = $("result-video");
    for (const type of ["play", "pause", "ended", "seeked", "timeupdate", "ratechange"]) {
      result.addEventListener(type, viewer.follow);
    }
    $("hear-original").addEventListener("change", () => {
      const hear = $("hear-original").checked;
      result.muted = hear;
      if (viewer.original) viewer.original.muted = !hear;
    });
    $("viewer-close").addEventListener("click", viewer.close);
    $("viewer").addEventListener("close", () => {
      result.pause();
      if (viewer.original) viewer.original.pause();
    });

    $("tab-gens").addEventListener("click", () => history.selectTab("gens"));
    $("tab-batches").addEventListener("click", () => history.selectTab("batches"));
    for (const id of ["tab-gens", "tab-batches"]) {
      $(id).addEventListener("keydown", (e) => {
        if (e.key !== "ArrowLeft" && e.key !== "ArrowRight") return;
        const next = history.tab === "gens" ? "batches" : "gens";
        history.selectTab(next);
        $(next === "gens" ? "tab-gens" : "tab-batches").focus();
      });
    }
    for (const box of document.querySelectorAll("input[name=gen-status]")) {
      box.addEventListener("change", () => history.reload());
    }
    $("gen-search").addEventListener("input", debounce(() => {
      if (/^[0-9a-f-]{36}$/i.test($("gen-search").value.trim())) history.reload(); else history.render();
    }, 250));
    $("gen-refresh").addEventListener("click", () => history.reload());
    $("gen-more").addEventListener("click", () => history.loadMore());
    $("batch-status").addEventListener("change", () => history.loadBatches());
    $("batch-search").addEventListener("input", () => history.renderBatches());
    $("batch-refresh").addEventListener("click", () => history.loadBatches());

    $("asset-search").addEventListener("input", debounce(() => assets.reload(), 300));
    $("asset-type").addEventListener("change", () => assets.reload());
    $("asset-sort").addEventListener("change", () => assets.reload());
    $("asset-more").addEventListener("click", () => assets.loadMore());

    if (session.key) enterApp(); else showSignedOut();
  }

  document.addEventListener("DOMContentLoaded", init);
})();
