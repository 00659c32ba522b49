// The page of `reloc serve`: a client of the server's HTTP API (see reloc/serve/app.py).
// No framework and no build step. Every text from the server goes in with textContent.
"use strict";

const state = { token: sessionStorage.getItem("reloc-token") || "", models: null, pendingFiles: [] };
const $ = (selector, root = document) => root.querySelector(selector);

// --- the API --------------------------------------------------------------------------
class ApiError extends Error {
  constructor(status, message, retryAfter) { super(message); this.status = status; this.retryAfter = retryAfter; }
}

async function api(path, options = {}) {
  const headers = new Headers(options.headers || {});
  if (state.token) headers.set("Authorization", `Bearer ${state.token}`);
  const response = await fetch(path, { ...options, headers });
  if (response.status === 401) askToken("The server refused the token.");
  if (!response.ok) {
    let message = `${response.status} ${response.statusText}`;
    try { message = (await response.json()).error || message; } catch (_) { /* not JSON */ }
    throw new ApiError(response.status, message, Number(response.headers.get("Retry-After")) || 0);
  }
  return response;
}

const apiJson = async (path, options) => (await api(path, options)).json();
const apiBlobUrl = async (path) => URL.createObjectURL(await (await api(path)).blob());
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// --- token ----------------------------------------------------------------------------
function askToken(message) {
  const form = $("#token-form");
  form.hidden = false;
  $("#token-error").textContent = state.token ? message : "";
  $("#token-input").focus();
}

$("#token-form").addEventListener("submit", (event) => {
  event.preventDefault();
  state.token = $("#token-input").value.trim();
  sessionStorage.setItem("reloc-token", state.token);
  $("#token-form").hidden = true;
  connect();
});

// --- start: the models and limits -------------------------------------------------------
async function connect() {
  try {
    const [models, health] = await Promise.all([apiJson("/api/models"), apiJson("/api/health")]);
    state.models = models;
    const select = $("#model-select");
    select.replaceChildren(...models.models.map((model) => {
      const option = document.createElement("option");
      option.value = model.name;
      option.textContent = model.name === "auto" ? "auto (by JPEG quality)" : model.name;
      option.title = model.source || "";
      option.selected = model.name === models.default;
      return option;
    }));
    const windows = models.window
      ? `${models.window} px`
      : [...new Set(models.models.filter((m) => m.window).map((m) => `${m.window[0]} px`))].join(" / ");
    $("#server-status").textContent = `reloc ${health.version} \u00b7 windows ${windows}`;
    const megabytes = models.limits.max_upload_bytes / 2 ** 20;
    const megapixels = models.limits.max_pixels / 1e6;
    $("#limits").textContent = `PNG, JPEG, TIFF, BMP, WebP \u00b7 up to ${+megabytes.toFixed(1)} MB and ${+megapixels.toFixed(1)} megapixels each \u00b7 files stay on this server`;
    const waiting = state.pendingFiles.splice(0);
    waiting.forEach(analyse);
  } catch (error) {
    if (error.status !== 401) $("#server-status").textContent = `server unreachable: ${error.message}`;
  }
}

// --- uploads --------------------------------------------------------------------------
const dropZone = $("#drop-zone");
const fileInput = $("#file-input");
$("#choose-files").addEventListener("click", () => fileInput.click());
fileInput.addEventListener("change", () => { [...fileInput.files].forEach(analyse); fileInput.value = ""; });
dropZone.addEventListener("dragover", (event) => { event.preventDefault(); dropZone.classList.add("dragging"); });
dropZone.addEventListener("dragleave", () => dropZone.classList.remove("dragging"));
dropZone.addEventListener("drop", (event) => {
  event.preventDefault();
  dropZone.classList.remove("dragging");
  [...event.dataTransfer.files].forEach(analyse);
});

async function analyse(file) {
  if (!state.models) { state.pendingFiles.push(file); return; }
  const card = new Card(file.name);
  try {
    let accepted;
    for (;;) {
      const form = new FormData();
      form.append("file", file);
      form.append("model", $("#model-select").value);
      form.append("threshold", "0.5");
      form.append("wait", "false");
      try {
        accepted = await apiJson("/api/localize", { method: "POST", body: form });
        break;
      } catch (error) {
        if (error.status !== 503) throw error;
        const seconds = Math.max(1, error.retryAfter);
        card.progress(0, 0, `the queue is full: trying again in ${seconds} s`);
        await sleep(seconds * 1000);
      }
    }
    for (;;) {
      const job = await apiJson(accepted.status_url);
      if (job.state === "done") { await card.show(job.result); return; }
      if (job.state === "failed") throw new Error(job.error);
      const text = job.state === "queued"
        ? `queued${job.position ? `: ${job.position} image(s) ahead` : ""}`
        : `sliding windows: ${job.done} / ${job.total}`;
      card.progress(job.done, job.total, text, job.state);
      await sleep(250);
    }
  } catch (error) {
    card.fail(error.message);
  }
}

// --- one image's card -----------------------------------------------------------------
class Card {
  constructor(name) {
    this.root = $("#card-template").content.firstElementChild.cloneNode(true);
    $(".file-name", this.root).textContent = name;
    $(".file-name", this.root).title = name;
    this.setState("uploading");
    $("#results").prepend(this.root);
    this.view = { scale: 1, x: 0, y: 0 };
  }

  setState(name) {
    this.root.dataset.state = name;
    $(".badge", this.root).textContent = name;
  }

  progress(done, total, text, stateName = "queued") {
    this.setState(stateName);
    $(".progress-fill", this.root).style.width = total ? `${(100 * done) / total}%` : "0";
    $(".progress-text", this.root).textContent = text;
  }

  fail(message) {
    this.setState("failed");
    $(".card-error", this.root).textContent = message;
  }

  async show(result) {
    this.result = result;
    this.root.dataset.sha256 = result.sha256;
    this.root.style.setProperty("--aspect", `${result.width} / ${result.height}`);
    this.fillFacts(result);
    const urls = result.urls;
    const names = ["image", "heatmap"].concat(urls.restored ? ["restored"] : [], urls.learned ? ["learned"] : []);
    const blobs = Object.fromEntries(await Promise.all(names.map(async (n) => [n, await apiBlobUrl(urls[n])])));
    this.pane("image").querySelector("img").src = blobs.image;
    this.pane("heatmap").querySelector("img").src = blobs.heatmap;
    const [under, layer] = this.pane("overlay").querySelectorAll("img");
    under.src = blobs.image;
    layer.src = blobs.heatmap;
    if (blobs.restored) { this.pane("restored").hidden = false; this.pane("restored").querySelector("img").src = blobs.restored; }
    if (blobs.learned) { this.pane("learned").hidden = false; this.pane("learned").querySelector("img").src = blobs.learned; }
    $(".map-shows", this.root).textContent = result.map && result.map.shows ? `Map: ${result.map.shows}.` : "";
    $(".score", this.root).textContent = result.score.toFixed(3) + (result.detection.band ? ` (${result.detection.band})` : "");
    $(".detection-text", this.root).textContent = result.detection.text;
    const opacity = $(".opacity", this.root);
    const threshold = $(".threshold", this.root);
    opacity.addEventListener("input", () => { layer.style.opacity = opacity.value; });
    layer.style.opacity = opacity.value;
    threshold.value = result.threshold;
    threshold.addEventListener("input", () => this.setThreshold(Number(threshold.value)));
    await this.setThreshold(result.threshold, true);
    await this.showEvidence(result.evidence || [], blobs.image);
    $(".download-report", this.root).addEventListener("click", () => this.download("report"));
    $(".download-json", this.root).addEventListener("click", () => this.download("json"));
    $(".download-report", this.root).disabled = false;
    $(".download-json", this.root).disabled = false;
    this.enableZoom();
    $(".card-body", this.root).hidden = false;
    this.setState("done");
  }

  pane(name) { return this.root.querySelector(`.pane[data-view="${name}"]`); }

  // Classical evidence maps as layers over the image: one toggle and opacity slider each.
  async showEvidence(layers, imageUrl) {
    if (!layers.length) return;
    const stage = this.pane("evidence").querySelector(".stage");
    stage.querySelector("img").src = imageUrl;
    const controls = $(".evidence-layers", this.root);
    for (const layer of layers) {
      const row = document.createElement("div");
      row.className = "evidence-layer";
      const name = document.createElement("strong");
      name.textContent = layer.method;
      const note = document.createElement("span");
      note.className = "evidence-note";
      note.textContent = `${layer.note}. Measured: ${layer.reliability}.`;
      if (layer.url) {
        const img = document.createElement("img");
        img.className = "overlay-layer evidence-map";
        img.alt = `${layer.method} evidence`;
        img.src = await apiBlobUrl(layer.url);
        stage.append(img);
        const toggle = document.createElement("input");
        toggle.type = "checkbox";
        toggle.checked = true;
        toggle.setAttribute("aria-label", `show ${layer.method}`);
        const opacity = document.createElement("input");
        opacity.type = "range";
        opacity.min = "0"; opacity.max = "1"; opacity.step = "0.05"; opacity.value = "0.6";
        opacity.setAttribute("aria-label", `${layer.method} opacity`);
        const update = () => { img.hidden = !toggle.checked; img.style.opacity = opacity.value; };
        toggle.addEventListener("change", update);
        opacity.addEventListener("input", update);
        update();
        row.append(toggle, name, opacity, note);
      } else {
        row.append(name, note);
      }
      controls.append(row);
    }
    controls.hidden = false;
    this.pane("evidence").hidden = false;
  }

  fillFacts(result) {
    const facts = result.facts;
    const jpeg = facts.jpeg_quality === null ? "not a JPEG"
      : `about ${facts.jpeg_quality} (${facts.jpeg_standard_tables ? "standard libjpeg tables" : "non-standard tables"})`;
    fill($(".facts-list", this.root), [
      ["SHA-256", facts.sha256, "hash"],
      ["Format", `${facts.format} (${facts.mode})`],
      ["Size", `${facts.bytes.toLocaleString()} bytes`],
      ["Pixels", `${facts.width} \u00d7 ${facts.height}`],
      ["JPEG quality", jpeg, facts.jpeg_quality !== null && !facts.jpeg_standard_tables ? "flag" : ""],
    ]);
    const exif = facts.exif || {};
    const software = exif.Software;
    fill($(".exif-list", this.root), [["Software", software || "none recorded", software ? "flag" : ""]]
      .concat(Object.entries(exif).filter(([tag]) => tag !== "Software")));
    fill($(".model-list", this.root), [["Model", result.model], ["Why", result.model_reason],
      ["Windows", `${result.windows} in ${result.seconds} s`]]);
  }

  async setThreshold(value, immediately = false) {
    const fraction = this.result.fractions[Math.round(value * 100)];
    $(".fraction", this.root).textContent = `${(100 * fraction).toFixed(2)}%`;
    $(".threshold-value", this.root).textContent = value.toFixed(2);
    $(".mask-caption", this.root).textContent = `Mask at threshold ${value.toFixed(2)}`;
    clearTimeout(this.maskTimer);
    const load = async () => {
      const url = await apiBlobUrl(`${this.result.urls.mask}?threshold=${value}`);
      const img = this.pane("mask").querySelector("img");
      if (img.src.startsWith("blob:")) URL.revokeObjectURL(img.src);
      img.src = url;
    };
    if (immediately) await load(); else this.maskTimer = setTimeout(load, 120);
  }

  async download(kind) {
    const threshold = $(".threshold", this.root).value;
    const url = kind === "report" ? this.result.urls.report : this.result.urls.json;
    const blob = await (await api(`${url}?threshold=${threshold}`)).blob();
    const link = document.createElement("a");
    link.href = URL.createObjectURL(blob);
    link.download = `reloc-${this.result.sha256.slice(0, 12)}-${kind === "report" ? "report.html" : "localize.json"}`;
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(link.href), 10000);
  }

  // Synchronised zoom (wheel) and pan (drag) over every view of this card.
  enableZoom() {
    const stages = [...this.root.querySelectorAll(".stage")];
    const apply = () => {
      const { scale, x, y } = this.view;
      stages.forEach((stage) => {
        stage.classList.toggle("zoomed", scale > 2);
        stage.querySelectorAll("img").forEach((img) => { img.style.transform = `translate(${x}px, ${y}px) scale(${scale})`; });
      });
    };
    const clamp = (stage) => {
      const { width, height } = stage.getBoundingClientRect();
      const v = this.view;
      v.x = Math.min(0, Math.max(width * (1 - v.scale), v.x));
      v.y = Math.min(0, Math.max(height * (1 - v.scale), v.y));
    };
    stages.forEach((stage) => {
      stage.addEventListener("wheel", (event) => {
        event.preventDefault();
        const box = stage.getBoundingClientRect();
        const v = this.view;
        const next = Math.min(32, Math.max(1, v.scale * (event.deltaY < 0 ? 1.25 : 0.8)));
        const px = event.clientX - box.left, py = event.clientY - box.top;
        v.x = px - ((px - v.x) * next) / v.scale;
        v.y = py - ((py - v.y) * next) / v.scale;
        v.scale = next;
        clamp(stage);
        apply();
      }, { passive: false });
      stage.addEventListener("pointerdown", (event) => {
        const start = { x: event.clientX - this.view.x, y: event.clientY - this.view.y };
        stage.setPointerCapture(event.pointerId);
        stage.classList.add("panning");
        const move = (e) => { this.view.x = e.clientX - start.x; this.view.y = e.clientY - start.y; clamp(stage); apply(); };
        const up = () => { stage.classList.remove("panning"); stage.removeEventListener("pointermove", move); };
        stage.addEventListener("pointermove", move);
        stage.addEventListener("pointerup", up, { once: true });
      });
      stage.addEventListener("dblclick", () => { this.view = { scale: 1, x: 0, y: 0 }; apply(); });
    });
    $(".reset-zoom", this.root).addEventListener("click", () => { this.view = { scale: 1, x: 0, y: 0 }; apply(); });
  }
}

function fill(list, rows) {
  list.replaceChildren(...rows.flatMap(([term, value, kind]) => {
    const dt = document.createElement("dt");
    const dd = document.createElement("dd");
    dt.textContent = term;
    if (kind === "flag") {
      const mark = document.createElement("span");
      mark.className = "flag";
      mark.textContent = value;
      dd.append(mark);
    } else {
      dd.textContent = value;
      if (kind) dd.className = kind;
    }
    return [dt, dd];
  }));
}

connect();
