// Ditto live page. WebRTC (where the browser has it): the microphone or a file is the page's audio track, the
// avatar comes back as a video track with its speech, and the conversation lasts until "Stop" (the avatar
// listens between utterances). WebSocket: speech goes to the server as f32le PCM at the AudioContext's rate;
// frames (4-byte little-endian index + JPEG) come back and are drawn when their speech plays; one clip.
// No build step, no external files: plain ES module, Web Audio, WebRTC, WebSocket, canvas.

const FPS = 25;
const MARGIN = 0.12; // seconds of jitter buffer between a frame's arrival and its playback time
const $ = (id) => document.getElementById(id);
const query = new URLSearchParams(location.search);
const base = new URL("..", location.href); // the page lives at <endpoint>/page/

function endpoint() {
  const url = new URL(base.href);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  url.pathname = url.pathname.replace(/\/$/, "");
  url.search = "";
  return url.href;
}

function setStatus(text, error = false) {
  const el = $("status");
  el.textContent = text;
  el.classList.toggle("error", error);
}

const fmt = {
  ms: (s) => (s == null ? "–" : `${Math.round(s * 1000)} ms`),
  s: (s) => (s == null ? "–" : `${s.toFixed(2)} s`),
  kbps: (bytes, seconds) => (seconds > 0 ? `${Math.round((bytes * 8) / seconds / 1000)} kbit/s` : "–"),
};

// The avatar's place: the portrait until the first frame, then the video (WebRTC) or the canvas (WebSocket).
function show(which) {
  for (const id of ["still", "video", "view"]) $(id).hidden = id !== which;
}

// A growable float32 buffer: every sample sent, so each frame's 40 ms of speech can be played with it.
class Samples {
  constructor() { this.data = new Float32Array(1 << 16); this.length = 0; }
  push(chunk) {
    if (this.length + chunk.length > this.data.length) {
      let size = this.data.length;
      while (size < this.length + chunk.length) size *= 2;
      const bigger = new Float32Array(size);
      bigger.set(this.data.subarray(0, this.length));
      this.data = bigger;
    }
    this.data.set(chunk, this.length);
    this.length += chunk.length;
  }
  slice(start, stop) { return this.data.slice(Math.min(start, this.length), Math.min(stop, this.length)); }
}

class Run {
  constructor(ctx, source) {
    this.ctx = ctx;
    // frames are timed on the audio clock when the browser's audio runs, else on the page's clock (no sound);
    // chosen when the first frame arrives, when the audio has had time to start
    this.sound = false;
    this.clock = null;
    this.rate = ctx.sampleRate;
    this.source = source; // "mic" or an AudioBuffer
    this.sent = new Samples();
    this.queue = []; // decoded frames waiting for their time: {index, bitmap, due}
    this.playStart = null; // AudioContext time at which speech second 0 plays
    this.firstAudioAt = null; // performance.now() when the first audio was sent
    this.firstFrameAt = null;
    this.received = 0;
    this.bytes = 0;
    this.lastFrameAt = null;
    this.lag = null;
    this.ended = false;
    this.closed = false;
    this.cleanups = [];
    this.canvas = $("view");
    this.draw = this.draw.bind(this);
  }

  start() {
    const token = $("token").value || query.get("token") || undefined;
    const url = new URL(endpoint());
    if (token) url.searchParams.set("token", token);
    this.ws = new WebSocket(url.href);
    this.ws.binaryType = "arraybuffer";
    this.ws.onopen = () => {
      const seed = parseInt($("seed").value, 10);
      this.ws.send(JSON.stringify({
        type: "start", sample_rate: this.rate, format: "f32le",
        portrait: $("portrait").value || undefined,
        emotion: $("emotion").value.trim() || undefined,
        seed: Number.isFinite(seed) && seed >= 0 ? seed : 0,
        token,
      }));
      setStatus("setting up the portrait…");
    };
    this.ws.onmessage = (event) => this.onMessage(event.data);
    this.ws.onerror = () => { if (!this.closed) setStatus("cannot reach the server", true); };
    this.ws.onclose = (event) => {
      this.closed = true;
      this.stopSources();
      if (!this.finished && !this.failed) {
        setStatus(`connection closed${event.reason ? ": " + event.reason : ""}`, !this.finished);
      }
      buttons(false);
    };
    requestAnimationFrame(this.draw);
  }

  onMessage(data) {
    if (typeof data === "string") {
      const message = JSON.parse(data);
      if (message.type === "ready") {
        this.canvas.width = message.width;
        this.canvas.height = message.height;
        setStatus(this.source === "mic" ? "listening: speak" : "streaming the file");
        this.beginAudio().catch((err) => this.fail(String(err.message || err)));
      } else if (message.type === "done") {
        this.finished = true;
        showServer(message);
        setStatus(`done: ${message.frames} frames`);
      } else if (message.type === "error") {
        this.failed = true;
        setStatus(message.message, true);
      }
      return;
    }
    const index = new DataView(data).getUint32(0, true);
    const now = performance.now();
    this.received += 1;
    this.bytes += data.byteLength;
    if (this.firstFrameAt === null) this.firstFrameAt = now;
    this.lastFrameAt = now;
    if (this.firstAudioAt !== null) this.lag = (now - this.firstAudioAt) / 1000 - (index + 1) / FPS;
    createImageBitmap(new Blob([new Uint8Array(data, 4)], { type: "image/jpeg" })).then((bitmap) => {
      this.schedule(index, bitmap);
    });
    updateFigures(this);
  }

  // Frame `index` is shown when its 40 ms of speech plays: at playStart + index/25 on the audio clock. When the
  // server falls behind, the clock is moved later (the lag shown grows) rather than dropping frames.
  schedule(index, bitmap) {
    if (this.clock === null) {
      this.sound = this.ctx.state === "running";
      this.clock = this.sound ? () => this.ctx.currentTime : () => performance.now() / 1000;
    }
    const now = this.clock();
    if (this.playStart === null) this.playStart = now + MARGIN - index / FPS;
    let due = this.playStart + index / FPS;
    if (due < now + 0.02) {
      this.playStart += now + MARGIN - due;
      due = this.playStart + index / FPS;
    }
    this.queue.push({ index, bitmap, due });
    if (this.sound && $("playback").checked) {
      const start = Math.round((index * this.rate) / FPS), stop = Math.round(((index + 1) * this.rate) / FPS);
      const slice = this.sent.slice(start, stop);
      if (slice.length) {
        const buffer = this.ctx.createBuffer(1, slice.length, this.rate);
        buffer.copyToChannel(slice, 0);
        const node = this.ctx.createBufferSource();
        node.buffer = buffer;
        node.connect(this.ctx.destination);
        node.start(due);
      }
    }
  }

  draw() {
    const now = this.clock ? this.clock() : 0;
    let shown = null;
    while (this.queue.length && this.queue[0].due <= now) {
      if (shown) shown.bitmap.close();
      shown = this.queue.shift();
    }
    if (shown) {
      if (this.canvas.hidden) show("view");
      const g = this.canvas.getContext("2d");
      g.drawImage(shown.bitmap, 0, 0, this.canvas.width, this.canvas.height);
      shown.bitmap.close();
    }
    if (!this.closed || this.queue.length) requestAnimationFrame(this.draw);
  }

  send(chunk) {
    if (this.ended || this.ws.readyState !== WebSocket.OPEN) return;
    if (this.firstAudioAt === null) this.firstAudioAt = performance.now();
    this.sent.push(chunk);
    this.ws.send(chunk.buffer.byteLength === chunk.byteLength ? chunk.buffer : chunk.slice().buffer);
    updateFigures(this);
  }

  end() {
    if (this.ended) return;
    this.stopSources();
    this.ended = true;
    if (this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify({ type: "end" }));
    setStatus("speech ended: the last frames follow");
  }

  fail(message) {
    this.failed = true;
    setStatus(message, true);
    this.stopSources();
    if (this.ws.readyState === WebSocket.OPEN) this.ws.close();
  }

  stopSources() {
    for (const cleanup of this.cleanups.splice(0)) cleanup();
  }

  async beginAudio() {
    if (this.source === "mic") {
      const stream = await navigator.mediaDevices.getUserMedia({
        audio: { channelCount: 1, echoCancellation: true, noiseSuppression: false, autoGainControl: true },
      });
      await this.ctx.audioWorklet.addModule(new URL("worklet.js", location.href));
      const input = this.ctx.createMediaStreamSource(stream);
      const capture = new AudioWorkletNode(this.ctx, "ditto-capture");
      const mute = this.ctx.createGain();
      mute.gain.value = 0; // the worklet is pulled by the graph; nothing is heard from it
      capture.port.onmessage = (event) => this.send(event.data);
      input.connect(capture).connect(mute).connect(this.ctx.destination);
      this.cleanups.push(() => {
        capture.port.onmessage = null;
        input.disconnect();
        capture.disconnect();
        stream.getTracks().forEach((track) => track.stop());
      });
      return;
    }
    // a file: its samples (already at the context's rate) are sent at speaking pace, 20 ms at a time
    const buffer = this.source;
    const mono = new Float32Array(buffer.length);
    for (let c = 0; c < buffer.numberOfChannels; c++) {
      const channel = buffer.getChannelData(c);
      for (let i = 0; i < mono.length; i++) mono[i] += channel[i] / buffer.numberOfChannels;
    }
    const began = performance.now();
    let offset = 0;
    const tick = () => {
      const due = Math.min(mono.length, Math.floor(((performance.now() - began) / 1000) * this.rate));
      while (offset < due) {
        const stop = Math.min(due, offset + Math.round(this.rate / 2));
        this.send(mono.slice(offset, stop));
        offset = stop;
      }
      if (offset >= mono.length) this.end();
    };
    const timer = setInterval(tick, 20);
    this.cleanups.push(() => clearInterval(timer));
    tick();
  }
}

function updateFigures(run) {
  $("f-first").textContent = run.firstFrameAt !== null && run.firstAudioAt !== null
    ? fmt.ms((run.firstFrameAt - run.firstAudioAt) / 1000) + " after the first speech sent" : "–";
  // frames/s since the first frame (frames come in bursts, one per motion window, so a short window misleads)
  const span = run.received > 1 ? (run.lastFrameAt - run.firstFrameAt) / 1000 : 0;
  $("f-lag").textContent = run.lag === null ? "–" : fmt.s(run.lag);
  $("f-frames").textContent = `${run.received}`;
  $("f-audio").textContent = fmt.s(run.sent.length / run.rate);
  if (span < 1) return; // rates over the first burst of frames mean nothing
  $("f-fps").textContent = ((run.received - 1) / span).toFixed(1);
  $("f-rate").textContent = `${fmt.kbps(run.bytes, span)} (JPEG frames)`;
}

// WebRTC: one peer connection; the server's answer comes from POST <endpoint>/offer (no trickle ICE: the offer
// goes once its candidates are gathered). Figures come from the connection's own statistics.
class RtcRun {
  constructor(ctx, source) {
    this.ctx = ctx;
    this.source = source; // "mic" or an AudioBuffer
    this.closed = false;
    this.cleanups = [];
    this.startedAt = performance.now();
    this.firstFrameAt = null;
  }

  async track() {
    if (this.source === "mic") {
      const stream = await navigator.mediaDevices.getUserMedia({
        audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true, autoGainControl: true },
      });
      this.cleanups.push(() => stream.getTracks().forEach((track) => track.stop()));
      return stream.getAudioTracks()[0];
    }
    // a file plays into a stream of the page's own; after it, that stream carries silence: the avatar listens
    this.speaker = this.ctx.createMediaStreamDestination();
    return this.speaker.stream.getAudioTracks()[0];
  }

  play(buffer) {
    const node = this.ctx.createBufferSource();
    node.buffer = buffer;
    node.connect(this.speaker);
    node.onended = () => this.closed || setStatus("listening: the file was spoken (choose another to speak again)");
    node.start();
    setStatus("speaking the file; the avatar listens once it ends (choose another file to speak again)");
  }

  async start() {
    const pc = (this.pc = new RTCPeerConnection({ iceServers: iceServers.map((urls) => ({ urls })) }));
    pc.addTrack(await this.track());
    pc.addTransceiver("video", { direction: "recvonly" });
    const channel = pc.createDataChannel("ditto");
    channel.onmessage = (event) => this.onMessage(JSON.parse(event.data));
    const remote = new MediaStream();
    const video = $("video");
    pc.ontrack = (event) => {
      remote.addTrack(event.track);
      video.srcObject = remote;
    };
    video.onplaying = () => {
      if (this.firstFrameAt === null) this.firstFrameAt = performance.now();
      if (this.source === "mic") setStatus("connected: speak (the avatar listens when you are silent)");
      show("video");
    };
    pc.onconnectionstatechange = () => {
      if (["failed", "closed"].includes(pc.connectionState)) this.close(`connection ${pc.connectionState}`);
    };
    await pc.setLocalDescription(await pc.createOffer());
    await new Promise((resolve) => {
      if (pc.iceGatheringState === "complete") return resolve();
      pc.addEventListener("icegatheringstatechange", () => pc.iceGatheringState === "complete" && resolve());
    });
    const seed = parseInt($("seed").value, 10);
    const token = $("token").value || query.get("token") || undefined;
    const url = new URL("offer", base.href);
    const reply = await fetch(url, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({
        type: "offer", sdp: pc.localDescription.sdp,
        portrait: $("portrait").value || undefined,
        emotion: $("emotion").value.trim() || undefined,
        seed: Number.isFinite(seed) && seed >= 0 ? seed : 0,
        token,
      }),
    });
    const answer = await reply.json();
    if (answer.type !== "answer") throw new Error(answer.message || `the server answered ${reply.status}`);
    await pc.setRemoteDescription(answer);
    setStatus("connecting…");
    const timer = setInterval(() => this.figures(), 1000);
    this.cleanups.push(() => clearInterval(timer));
  }

  onMessage(message) {
    if (message.type === "ready") {
      setStatus("the avatar is ready; connecting…");
      if (this.source !== "mic") this.play(this.source);
    } else if (message.type === "error") {
      this.close(message.message, true);
    }
  }

  async figures() {
    if (this.closed) return;
    let bytes = 0, video = null;
    (await this.pc.getStats()).forEach((report) => {
      if (report.type !== "inbound-rtp") return;
      bytes += report.bytesReceived || 0;
      if (report.kind === "video") video = report;
    });
    const now = performance.now(), frames = video ? video.framesDecoded || 0 : 0;
    // since the first frame, as over the WebSocket (a 1-second window jumps while the video catches up)
    const span = this.firstFrameAt === null ? 0 : (now - this.firstFrameAt) / 1000;
    if (span >= 1) {
      $("f-rate").textContent = `${fmt.kbps(bytes, span)} (video + speech)`;
      $("f-fps").textContent = (frames / span).toFixed(1);
    }
    $("f-first").textContent = this.firstFrameAt === null ? "–"
      : fmt.ms((this.firstFrameAt - this.startedAt) / 1000) + " after connecting";
    if (video) {
      $("f-frames").textContent = `${frames} (${video.framesDropped || 0} dropped)`;
      const delay = video.jitterBufferEmittedCount ? video.jitterBufferDelay / video.jitterBufferEmittedCount : null;
      $("f-lag").textContent = delay === null ? "–" : fmt.ms(delay);
    }
    $("f-audio").textContent = fmt.s((now - this.startedAt) / 1000);
  }

  end() { this.close("hung up"); }

  close(reason, error = false) {
    if (this.closed) return;
    this.closed = true;
    for (const cleanup of this.cleanups.splice(0)) cleanup();
    if (this.pc) this.pc.close();
    setStatus(reason, error);
    buttons(false);
  }
}

function showServer(done) {
  const split = done.first_frame_split_ms;
  const parts = split ? ` (look-ahead ${split.lookahead}, waiting ${split.waiting}, sampling ${split.sampling}, ` +
    `rendering ${split.rendering} ms)` : "";
  $("f-server").textContent = `first frame ${done.first_frame_ms ?? "–"} ms${parts}; ${done.fps ?? "–"} frames/s ` +
    `delivered, ${done.compute_fps ?? "–"} frames/s of compute; median lag ${done.lag_ms ?? "–"} ms`;
}

let current = null;
const hasRtc = typeof RTCPeerConnection === "function";

function buttons(running, filesSpeak = false) {
  $("mic").disabled = running;
  $("file").disabled = running && !filesSpeak; // a WebRTC session begun with a file speaks further files
  $("stop").disabled = !running;
  $("transport").disabled = running;
}

async function begin(source) {
  const rtc = $("transport").value === "webrtc";
  if (current && !current.closed) {
    // WebRTC: another file is spoken on the same connection
    if (rtc && current instanceof RtcRun && current.speaker && source !== "mic") {
      current.play(await current.ctx.decodeAudioData(await source.arrayBuffer()));
    }
    return;
  }
  const ctx = new AudioContext();
  // resume() never settles where the browser has no sound device: a file then plays without sound
  const resumed = ctx.resume();
  if (source === "mic") await Promise.race([resumed, new Promise((resolve) => setTimeout(resolve, 5000))]);
  let input = "mic";
  if (source !== "mic") {
    setStatus(`reading ${source.name}…`);
    try {
      input = await ctx.decodeAudioData(await source.arrayBuffer());
    } catch (err) {
      setStatus(`cannot read ${source.name} as audio: ${err.message || err}`, true);
      return;
    }
  } else if (!navigator.mediaDevices || !window.AudioWorkletNode) {
    setStatus("the microphone needs a secure page (https or localhost); an audio file works anywhere", true);
    return;
  } else if (!rtc && ctx.state !== "running") {
    setStatus("the browser's audio is not running (no sound device?), so the microphone cannot be captured; an " +
      "audio file still works, without sound", true);
    return;
  }
  buttons(true, rtc && source !== "mic");
  $("f-lag-label").textContent = rtc ? "jitter buffer" : "behind realtime"; // WebRTC's stats see only the buffer
  $("f-audio-label").textContent = rtc ? "connected" : "speech sent";
  $("f-server").textContent = "–";
  if (!rtc) {
    current = new Run(ctx, input);
    current.start();
    return;
  }
  current = new RtcRun(ctx, input);
  try {
    await current.start();
  } catch (err) {
    current.close(String(err.message || err), true);
  }
}

$("mic").onclick = () => begin("mic");
$("file").onchange = (event) => { if (event.target.files[0]) begin(event.target.files[0]); event.target.value = ""; };
$("stop").onclick = () => current && current.end();
document.addEventListener("dragover", (event) => { event.preventDefault(); document.body.classList.add("dragging"); });
document.addEventListener("dragleave", (event) => {
  if (!event.relatedTarget) document.body.classList.remove("dragging");
});
document.addEventListener("drop", (event) => {
  event.preventDefault();
  document.body.classList.remove("dragging");
  const file = event.dataTransfer.files[0];
  if (file) begin(file);
});
setInterval(() => current instanceof Run && !current.closed && updateFigures(current), 250);

let iceServers = []; // the server's STUN/TURN URLs (--ice-server), for the browser's side of the connection

async function loadPortraits() {
  const url = new URL("portraits", base.href);
  const token = query.get("token");
  if (token) { url.searchParams.set("token", token); $("token").value = token; }
  try {
    const reply = await fetch(url);
    const data = await reply.json();
    if (data.error) { setStatus(data.error, true); return; }
    iceServers = data.ice_servers || [];
    const select = $("portrait");
    const chosen = query.get("portrait") || data.default; // ?portrait=NAME chooses one in a link
    select.replaceChildren(...data.portraits.map((name) => new Option(name, name, false, name === chosen)));
    if (!data.portraits.length) setStatus("no portraits: put an image with a face in the input folder", true);
    showPortrait();
  } catch (err) {
    setStatus(`cannot reach the server: ${err.message || err}`, true);
  }
}

// the chosen portrait, shown until the first frame
function showPortrait() {
  const name = $("portrait").value;
  if (!name || (current && !current.closed)) return;
  const url = new URL("portrait", base.href);
  url.searchParams.set("name", name);
  const token = $("token").value || query.get("token");
  if (token) url.searchParams.set("token", token);
  $("still").src = url.href;
  show("still");
}

$("portrait").onchange = showPortrait;
$("playback-row").hidden = hasRtc;
$("transport").value = hasRtc && query.get("transport") !== "websocket" ? "webrtc" : "websocket";
$("transport").querySelector("option[value=webrtc]").disabled = !hasRtc;
$("transport").onchange = () => { $("playback-row").hidden = $("transport").value === "webrtc"; };
window.addEventListener("pagehide", () => current && !current.closed && current.end());
loadPortraits();
if (query.get("autostart") === "mic") begin("mic");
