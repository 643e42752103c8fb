// sign-ctc live demo page: shows the camera or a chosen video, sends each shown frame to the
// server over one WebSocket (PNG: the tracker sees the very pixels shown; JPEG where set), draws the skeleton the server tracked and the glosses it recognized.
// Latency: a frame shown -> its skeleton drawn, and a gloss's last frame shown -> the gloss on the page.
// A camera runs on: frames beyond max_lag_frames unanswered are skipped. A video file pauses instead, so
// every frame is recognized, as sign-ctc-live does with a file.
"use strict";

const $ = (id) => document.getElementById(id);
const video = $("video"), overlay = $("skeleton"), grab = $("grab");
const PARTS = { pose: [0, 33], face: [33, 501], left: [501, 522], right: [522, 543] };
const POSE_LINES = [[11, 12], [11, 13], [13, 15], [12, 14], [14, 16], [11, 23], [12, 24], [23, 24]];
const HAND_LINES = [[0, 1], [1, 2], [2, 3], [3, 4], [0, 5], [5, 6], [6, 7], [7, 8], [5, 9], [9, 10], [10, 11],
  [11, 12], [9, 13], [13, 14], [14, 15], [15, 16], [13, 17], [17, 18], [18, 19], [19, 20], [0, 17]];
const WINDOW = 30;  // readouts: the median of the last WINDOW measurements

// What the page shows, also read by the browser test and the benchmark.
const state = window.signCtc = {
  ready: false, streamFps: null, committed: [], tentative: [], sent: 0, processed: 0, dropped: 0, segments: 0,
  latencies: [], glossLatencies: [], fps: null, errors: [], ended: false, source: null,
};
let ws = null, limits = null, shownAt = new Map(), processedTimes = [], sendChain = Promise.resolve();
let grabbing = false, frameCallback = null;

function median(values) {
  if (!values.length) return null;
  const s = [...values].sort((a, b) => a - b), m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}
function pushWindow(list, value) { list.push(value); if (list.length > 1000) list.shift(); }

function connect() {
  ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`);
  ws.binaryType = "arraybuffer";
  ws.onopen = () => { $("status").textContent = "connected: choose the camera or a video file"; };
  ws.onclose = () => { state.ready = false; $("status").textContent = "disconnected (reload the page)"; };
  ws.onmessage = (event) => onMessage(JSON.parse(event.data));
}

function onMessage(msg) {
  if (msg.type === "ready") { limits = msg.limits; state.ready = true; return; }
  if (msg.type === "error") {
    state.errors.push(msg.message);
    $("error").textContent = msg.message;
    console.warn("server:", msg.message);
    return;
  }
  if (msg.type === "hello") { state.streamFps = msg.fps; return; }
  if (msg.type === "cleared") return;
  if (msg.type !== "update") return;
  const now = performance.now();
  if (msg.points) {
    drawSkeleton(msg.points, msg.presence);
    const shown = shownAt.get(msg.frame);
    if (shown !== undefined) pushWindow(state.latencies, now - shown);
    processedTimes.push(now);
    while (processedTimes.length && now - processedTimes[0] > 1000) processedTimes.shift();
    state.fps = processedTimes.length > 1 ? 1000 * (processedTimes.length - 1) / (now - processedTimes[0]) : null;
  }
  for (const g of msg.committed) {
    state.committed.push(g);
    const shown = shownAt.get(g.frame);
    if (shown !== undefined) pushWindow(state.glossLatencies, now - shown);
  }
  state.tentative = msg.tentative;
  if (msg.frame !== undefined && msg.frame >= 0) state.processed = msg.frame + 1;
  if (msg.dropped !== undefined) state.dropped = msg.dropped;
  if (msg.segments !== undefined) state.segments = msg.segments;
  if (msg.ended) state.ended = true;
  if (waiting && state.sent - state.processed <= 1) { waiting = false; video.play(); }
  for (const key of shownAt.keys()) { if (key < state.processed - 300) shownAt.delete(key); else break; }
  render();
}

function render() {
  $("committed").textContent = state.committed.slice(-40).map((g) => g.gloss).join(" ");
  $("tentative").textContent = state.tentative.map((g) => g.gloss).join(" ");
  const lat = median(state.latencies.slice(-WINDOW)), glat = median(state.glossLatencies.slice(-WINDOW));
  $("latency").textContent = lat === null ? "-" : lat.toFixed(0);
  $("gloss-latency").textContent = glat === null ? "-" : glat.toFixed(0);
  $("fps").textContent = state.fps === null ? "-" : state.fps.toFixed(1);
  $("frames").textContent = String(state.processed);
  $("dropped").textContent = String(state.dropped);
}

function drawSkeleton(points, presence) {
  const w = overlay.width = video.videoWidth || overlay.width, h = overlay.height = video.videoHeight || overlay.height;
  const ctx = overlay.getContext("2d");
  ctx.clearRect(0, 0, w, h);
  const at = (i) => [points[i][0] * w, points[i][1] * h];
  const seen = (i) => points[i][0] !== 0 || points[i][1] !== 0;
  const lines = (offset, pairs, color) => {
    ctx.strokeStyle = color; ctx.lineWidth = Math.max(2, w / 300); ctx.beginPath();
    for (const [a, b] of pairs) {
      if (!seen(offset + a) || !seen(offset + b)) continue;
      ctx.moveTo(...at(offset + a)); ctx.lineTo(...at(offset + b));
    }
    ctx.stroke();
  };
  const dots = ([lo, hi], color, r) => {
    ctx.fillStyle = color;
    for (let i = lo; i < hi; i++) if (seen(i)) { const [x, y] = at(i); ctx.fillRect(x - r, y - r, 2 * r, 2 * r); }
  };
  const r = Math.max(1, w / 400);
  dots(PARTS.face, "rgba(200,200,200,0.6)", r * 0.6);
  lines(PARTS.pose[0], POSE_LINES, "#4af");
  dots([0, 25], "#4af", r * 1.5);
  lines(PARTS.left[0], HAND_LINES, "#f84"); dots(PARTS.left, "#f84", r * 1.5);
  lines(PARTS.right[0], HAND_LINES, "#8f4"); dots(PARTS.right, "#8f4", r * 1.5);
}

function send(data) { if (ws && ws.readyState === WebSocket.OPEN) ws.send(data); }

function startStream(fps) {
  clearDisplay();
  send(JSON.stringify({ type: "clear" }));
  send(JSON.stringify(fps ? { type: "hello", fps } : { type: "hello" }));
  shownAt = new Map(); state.sent = 0; state.ended = false;
  if (!grabbing) { grabbing = true; scheduleGrab(); }
}

function scheduleGrab() {
  if ("requestVideoFrameCallback" in HTMLVideoElement.prototype) {
    frameCallback = video.requestVideoFrameCallback(() => { grabFrame(); scheduleGrab(); });
  } else {
    frameCallback = requestAnimationFrame(() => { grabFrame(); scheduleGrab(); });
  }
}

let lastTime = -1, waiting = false;
function grabFrame() {
  if (!state.ready || video.readyState < 2 || !video.videoWidth) return;
  if (!("requestVideoFrameCallback" in HTMLVideoElement.prototype)) {  // one send per new frame only
    if (video.currentTime === lastTime) return;
    lastTime = video.currentTime;
  }
  const index = state.sent++;
  shownAt.set(index, performance.now());
  // Bounded waiting: beyond max_lag_frames unanswered (encoding, on the way or tracked), a camera frame is
  // not encoded; a one-byte "D" keeps its place in the stream so times stay true (the server counts it).
  // A video file pauses instead (and plays on when the server has caught up): no frame is lost.
  const lag = index - state.processed, maxLag = limits ? limits.max_lag_frames : 8;
  if (state.source === "file" && lag >= maxLag - 1 && !video.paused) {
    video.pause(); waiting = true;
  } else if (state.source !== "file" && lag >= maxLag) {
    sendChain = sendChain.then(() => send(new Uint8Array([68])));
    return;
  }
  let w = video.videoWidth, h = video.videoHeight;
  const scale = Math.min(1, Math.sqrt((limits ? limits.max_pixels : 2073600) / (w * h)));
  w = Math.floor(w * scale); h = Math.floor(h * scale);
  if (grab.width !== w || grab.height !== h) { grab.width = w; grab.height = h; }
  grab.getContext("2d").drawImage(video, 0, 0, w, h);
  const format = limits && limits.frame_format === "jpeg" ? ["image/jpeg", 0.9] : ["image/png"];
  const blob = new Promise((resolve) => grab.toBlob(resolve, ...format));
  sendChain = sendChain.then(() => blob).then(async (b) => {
    if (!b) { send(new Uint8Array([68])); return; }
    const body = new Uint8Array(await b.arrayBuffer()), message = new Uint8Array(body.length + 1);
    message[0] = 70;  // "F": an encoded frame
    message.set(body, 1);
    send(message);
  });
}

function clearDisplay() {
  state.committed = []; state.tentative = []; state.latencies = []; state.glossLatencies = [];
  state.errors = []; $("error").textContent = ""; render();
  overlay.getContext("2d").clearRect(0, 0, overlay.width, overlay.height);
}

$("camera").onclick = async () => {
  try {
    const stream = await navigator.mediaDevices.getUserMedia({ video: true, audio: false });
    video.removeAttribute("src");
    video.srcObject = stream;
    video.loop = false;
    await video.play();
    const fps = stream.getVideoTracks()[0].getSettings().frameRate;
    state.source = "camera";
    $("status").textContent = "camera: sign away";
    startStream(fps);
  } catch (err) {
    $("error").textContent = `camera: ${err.name}: ${err.message}`;
  }
};

$("file").onchange = async (event) => {
  const file = event.target.files[0];
  if (!file) return;
  if (video.srcObject) { video.srcObject.getTracks().forEach((t) => t.stop()); video.srcObject = null; }
  video.src = URL.createObjectURL(file);
  state.source = "file";
  $("status").textContent = `video: ${file.name}`;
  startStream(null);
  try { await video.play(); } catch (err) { $("error").textContent = `video: ${err.name}: ${err.message}`; }
};

video.onended = () => { if (state.source === "file") sendChain = sendChain.then(() => send(JSON.stringify({ type: "end" }))); };

$("clear").onclick = () => {  // the server starts a fresh stream: frame numbers start again from 0
  send(JSON.stringify({ type: "clear" })); clearDisplay(); shownAt = new Map(); state.sent = 0;
};

connect();
if (new URLSearchParams(location.search).has("camera")) {  // ?camera: start the camera at once
  const start = () => (state.ready ? $("camera").click() : setTimeout(start, 50));
  start();
}
