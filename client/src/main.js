// The page at `/`: a call to the bot with Pipecat's client-js and its SmallWebRTC transport,
// the same library a web or mobile app would use, talking RTVI over the WebRTC data channel.
import { PipecatClient } from "@pipecat-ai/client-js";
import { SmallWebRTCTransport } from "@pipecat-ai/small-webrtc-transport";

import { analyserLevel, BrowserMediaManager } from "./media.js";
import { explain } from "./errors.js";
import { latencyRows } from "./latency.js";

const $ = (id) => document.getElementById(id);

// A session token handed over in the fragment (https://bot.example.com/#token=...): fragments
// never reach servers or logs. Kept in memory and dropped from the address bar at once.
const sessionToken = new URLSearchParams(location.hash.slice(1)).get("token");
if (sessionToken) history.replaceState(null, "", location.pathname + location.search);

// `?processing=off`: the microphone as it is, without the browser's echo cancellation, noise
// suppression and gain control (headsets, and the tests' fake microphone).
const rawMic = new URLSearchParams(location.search).get("processing") === "off";
const MIC_CONSTRAINTS = rawMic
  ? { echoCancellation: false, noiseSuppression: false, autoGainControl: false }
  : { echoCancellation: true, noiseSuppression: true, autoGainControl: true };

// The server drops a peer that has not connected within VOICEBOT_WEBRTC_CONNECT_TIMEOUT_SECONDS
// (20 s by default); the page gives up then too, rather than say "Connecting…" for ever (a
// browser whose network offers no usable ICE candidate never reports ICE as failed).
const CONNECT_TIMEOUT_MS = 20000;

let client = null;
let media = null;
let botAnalyser = null;
let meterTimer = null;
let userLine = null;
let botLine = null;
let hangingUp = false;
let botEnded = null; // why the bot ended the call, when it said so (a `call-ended` message)
let wasConnected = false;

function authHeaders() {
  const headers = new Headers();
  if (sessionToken) headers.set("Authorization", "Bearer " + sessionToken);
  return headers;
}

// -- what the page shows -------------------------------------------------------------------

function setStatus(text, state) {
  $("status").textContent = text;
  document.body.dataset.state = state;
}

function showError(problem) {
  $("error-title").textContent = problem.title;
  $("error-help").textContent = problem.help;
  $("error").hidden = false;
  setStatus(problem.title, "error");
}

function clearError() {
  $("error").hidden = true;
}

function addLine(who, cls) {
  const li = document.createElement("li");
  li.className = cls;
  const label = document.createElement("span");
  label.className = "who";
  label.textContent = who + ":";
  const body = document.createElement("span");
  body.className = "text";
  li.append(label, body);
  $("transcript").append(li);
  li.scrollIntoView({ block: "nearest" });
  return body;
}

function onUserTranscript(data) {
  const text = (data.text || "").trim();
  if (!text) return;
  botLine = null;
  if (!userLine) userLine = addLine("You", "user");
  userLine.textContent = text;
  userLine.parentElement.classList.toggle("interim", !data.final);
  if (data.final) userLine = null;
}

function onBotOutput(data) {
  // Sentences as they are spoken (word-by-word progress reports repeat them).
  if (data.aggregated_by === "word" || data.spoken === false) return;
  const text = (data.text || "").trim();
  if (!text) return;
  if (!botLine) botLine = addLine("Bot", "bot");
  botLine.textContent += (botLine.textContent ? " " : "") + text;
}

function setBotSpeaking(speaking) {
  $("bot-speaking").dataset.speaking = String(speaking);
  $("bot-speaking-text").textContent = speaking ? "Bot is speaking" : "Bot is listening";
  if (!speaking) botLine = null;
}

function setUserSpeaking(speaking) {
  $("user-speaking").dataset.speaking = String(speaking);
}

const END_REASONS = {
  caller_idle: "The bot ended the call: no one spoke for a while.",
  max_duration: "The bot ended the call: it reached its time limit.",
  shutdown: "The bot ended the call: the server is restarting.",
};

function onServerMessage(data) {
  if (data?.type === "call-ended") {
    botEnded = END_REASONS[data.reason] ?? "The bot ended the call.";
    return;
  }
  if (!data || data.type !== "turn-latency") return;
  $("latency-total").textContent = Math.round(data.voice_to_voice_ms) + " ms";
  $("latency-turn").textContent = "turn " + data.turn;
  const list = $("latency-stages");
  list.replaceChildren();
  for (const [name, ms] of latencyRows(data)) {
    const term = document.createElement("dt");
    term.textContent = name;
    const value = document.createElement("dd");
    value.textContent = Math.round(ms) + " ms";
    list.append(term, value);
  }
  $("latency").dataset.empty = "false";
}

// -- audio: the bot's track, and both level meters -------------------------------------------

let botContext = null; // one AudioContext for the page's bot meter, whatever the calls
let botSource = null;

function onTrackStarted(track, participant) {
  if (track.kind !== "audio" || participant?.local) return;
  const stream = new MediaStream([track]);
  $("bot-audio").srcObject = stream;
  botContext ??= new AudioContext();
  botSource?.disconnect();
  botSource = botContext.createMediaStreamSource(stream);
  botAnalyser = botContext.createAnalyser();
  botAnalyser.fftSize = 1024;
  botSource.connect(botAnalyser);
  if (botContext.state === "suspended") botContext.resume();
}

// A level meter reads in decibels: -60 dBFS (silence) .. 0 dBFS maps to 0..1.
const meterValue = (level) => Math.max(0, Math.min(1, 1 + (20 * Math.log10(level + 1e-9)) / 60));

function startMeters() {
  stopMeters();
  meterTimer = setInterval(() => {
    $("mic-level").value = meterValue(media ? media.level() : 0);
    $("bot-level").value = meterValue(analyserLevel(botAnalyser));
  }, 100);
}

function stopMeters() {
  if (meterTimer) clearInterval(meterTimer);
  meterTimer = null;
  $("mic-level").value = 0;
  $("bot-level").value = 0;
}

async function fillMics(mics) {
  const select = $("mic");
  const current = media?.selectedMic?.deviceId || select.value;
  select.replaceChildren();
  if (mics.length === 0) { // no permission yet: the browser's default, named after the first call
    select.append(new Option("Default microphone", ""));
  }
  mics.forEach((mic, i) => {
    const option = document.createElement("option");
    option.value = mic.deviceId;
    option.textContent = mic.label || `Microphone ${i + 1}`;
    option.selected = mic.deviceId === current;
    select.append(option);
  });
}

async function changeMic() {
  const deviceId = $("mic").value;
  if (!media) return; // not in a call: used when the next call opens the microphone
  try {
    await media.updateMic(deviceId);
  } catch (error) {
    showError(explain(error));
  }
}

// -- the call -----------------------------------------------------------------------------------

async function iceServers() {
  try {
    const res = await fetch("/api/ice-servers", { headers: authHeaders() });
    if (res.ok) return (await res.json()).ice_servers;
  } catch { /* the offer below reports what is wrong */ }
  return [];
}

// SmallWebRTC's transport, remembering what its peer connections went through, for the error
// the page shows: refused, never answered, or answered with no media path (ICE).
class PageTransport extends SmallWebRTCTransport {
  answered = false;
  iceFailed = false;

  createPeerConnection() {
    const pc = super.createPeerConnection();
    pc.addEventListener("iceconnectionstatechange", () => {
      if (pc.iceConnectionState === "failed") this.iceFailed = true;
    });
    return pc;
  }

  async negotiate(recreatePeerConnection = false) {
    await super.negotiate(recreatePeerConnection);
    if (this.pc_id) this.answered = true;
  }
}

function newClient() {
  media = new BrowserMediaManager({ constraints: MIC_CONSTRAINTS, deviceId: $("mic").value });
  const transport = new PageTransport({ mediaManager: media });
  // A microphone changed mid-call goes out on the same connection (before it, with the offer).
  media.onTrackReplaced = (track) => transport.pc && transport.getAudioTransceiver().sender.replaceTrack(track);
  return new PipecatClient({
    transport,
    enableMic: true,
    enableCam: false,
    callbacks: {
      onTrackStarted,
      onAvailableMicsUpdated: fillMics,
      onBotReady: () => {
        wasConnected = true;
        setStatus("Connected: say something", "connected");
      },
      // While connecting, a failure is the connect() promise's to report (below).
      onDisconnected: () => (wasConnected || hangingUp) && ended(),
      onUserTranscript,
      onBotOutput,
      onBotStartedSpeaking: () => setBotSpeaking(true),
      onBotStoppedSpeaking: () => setBotSpeaking(false),
      onUserStartedSpeaking: () => setUserSpeaking(true),
      onUserStoppedSpeaking: () => setUserSpeaking(false),
      onServerMessage,
      onError: (message) => showError(explain(message)),
    },
  });
}

async function connect() {
  $("connect").disabled = true;
  clearError();
  hangingUp = false;
  botEnded = null;
  wasConnected = false;
  const mine = (client = newClient());
  setStatus("Asking for the microphone…", "connecting");
  try {
    await mine.initDevices();
  } catch (error) {
    if (client !== mine) return; // hung up meanwhile
    showError(explain(error));
    await teardown();
    return;
  }
  if (client !== mine) return;
  $("hangup").disabled = false;
  startMeters();
  setStatus("Connecting…", "connecting");
  try {
    const servers = await iceServers();
    if (client !== mine) return; // hung up before the offer: send none
    mine.transport.iceServers = servers;
    let timer;
    const timeout = new Promise((_, reject) => {
      timer = setTimeout(() => reject(new ConnectTimeout()), CONNECT_TIMEOUT_MS);
    });
    const connecting = mine.connect({
      webrtcRequestParams: { endpoint: new URL("/api/offer", location.href).href,
        headers: authHeaders() },
    });
    try {
      await Promise.race([connecting, timeout]);
    } finally {
      clearTimeout(timer);
    }
  } catch (error) {
    if (client !== mine) return; // hung up meanwhile (and maybe called again): not this call's
    showError(await explainConnectError(error));
    await teardown();
  }
}

class ConnectTimeout extends Error {}

// Why the transport gave up: the server's answer (a status and its reason) or, when the offer
// was answered and media never flowed, ICE.
async function explainConnectError(error) {
  const response = error?.cause instanceof Response ? error.cause : null;
  const status = error?.status ?? response?.status;
  let detail = "";
  if (response) {
    try { detail = (await response.clone().json()).detail || ""; } catch { /* no JSON body */ }
  }
  const transport = client?.transport;
  const answered = Boolean(transport?.answered || transport?.iceFailed);
  if (error instanceof ConnectTimeout && !answered) return explain({ unreachable: true });
  return explain({ status, detail, answered, hasToken: Boolean(sessionToken),
    retryAfter: response?.headers.get("Retry-After"), error });
}

async function hangup() {
  hangingUp = true;
  $("hangup").disabled = true;
  setStatus("Hanging up…", "connecting");
  try { await client?.disconnect(); } catch { /* already gone */ }
  ended();
}

function ended() {
  if (!client) return; // already ended (hang-up, then the transport's own notice)
  stopMeters();
  setBotSpeaking(false);
  setUserSpeaking(false);
  botSource?.disconnect();
  botSource = null;
  botAnalyser = null;
  media = null;
  client = null;
  $("bot-audio").srcObject = null;
  $("connect").disabled = false;
  $("hangup").disabled = true;
  if (botEnded) {
    setStatus(botEnded, "idle");
  } else if (wasConnected && !hangingUp) {
    showError(explain({ dropped: true }));
  } else if (document.body.dataset.state !== "error") {
    setStatus("Call ended", "idle");
  }
}

async function teardown() {
  try { await client?.disconnect(); } catch { /* nothing to undo */ }
  ended();
}

$("connect").addEventListener("click", connect);
$("hangup").addEventListener("click", hangup);
$("mic").addEventListener("change", changeMic);
$("error-dismiss").addEventListener("click", clearError);
navigator.mediaDevices?.enumerateDevices?.().then(
  (devices) => fillMics(devices.filter((d) => d.kind === "audioinput" && d.deviceId)),
  () => {},
);
if (!window.isSecureContext || !navigator.mediaDevices) {
  showError(explain({ insecure: true }));
  $("connect").disabled = true;
}

// -- Daily (hosted SFU): shown only when the server has DAILY_API_KEY ---------------------------

async function checkDaily() {
  try {
    const res = await fetch("/api/daily/available");
    if (res.ok && (await res.json()).available) $("daily-row").hidden = false;
  } catch { /* no Daily: the page stays as it is */ }
}

async function joinDaily() {
  $("daily-join").disabled = true;
  clearError();
  setStatus("Creating a Daily room…", "connecting");
  try {
    const res = await fetch("/api/daily/start", { method: "POST", headers: authHeaders() });
    const body = await res.json().catch(() => ({}));
    if (!res.ok) throw Object.assign(new Error(body.detail || "HTTP " + res.status), { status: res.status, detail: body.detail });
    const url = new URL(body.room_url);
    url.searchParams.set("t", body.token);
    $("daily-frame").src = url.toString();
    $("daily-frame").hidden = false;
    $("daily-leave").disabled = false;
    setStatus("In a Daily room: join, then say something", "connected");
  } catch (error) {
    showError(explain({ status: error.status, detail: error.detail, hasToken: Boolean(sessionToken), error }));
    $("daily-join").disabled = false;
  }
}

function leaveDaily() {
  $("daily-frame").src = "about:blank"; // leaving the room ends the bot's call
  $("daily-frame").hidden = true;
  $("daily-leave").disabled = true;
  $("daily-join").disabled = false;
  if (document.body.dataset.state !== "error") setStatus("Not connected", "idle");
}

$("daily-join").addEventListener("click", joinDaily);
$("daily-leave").addEventListener("click", leaveDaily);
checkDaily();
