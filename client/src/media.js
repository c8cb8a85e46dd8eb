// The microphone for Pipecat's SmallWebRTC transport, with the browser's own getUserMedia.
//
// The transport's default media manager is Daily's (DailyMediaManager), which loads Daily's
// call machine from Daily's CDN before it opens a microphone: a page served by this server must
// work offline and load nothing from elsewhere. This one implements the same interface (the
// transport calls exactly these members) with no download: one audio track, chosen by device id,
// and an AnalyserNode on it for the page's level meter. No camera, no screen share.

import { DeviceError } from "@pipecat-ai/client-js";

const LOCAL = { id: "local", name: "", local: true };

// getUserMedia's failures, in client-js's words (DeviceError's `type`).
const DEVICE_ERROR_TYPES = {
  NotAllowedError: "permissions",
  SecurityError: "permissions",
  NotFoundError: "not-found",
  OverconstrainedError: "constraints",
  NotReadableError: "in-use",
};

/** An AnalyserNode's level now, 0..1: the RMS of its last window (0 without one). */
export function analyserLevel(analyser) {
  if (!analyser) return 0;
  const samples = new Float32Array(analyser.fftSize);
  analyser.getFloatTimeDomainData(samples);
  let sum = 0;
  for (const s of samples) sum += s * s;
  return Math.sqrt(sum / samples.length);
}

export class BrowserMediaManager {
  /** `constraints`: extra getUserMedia audio constraints (the tests turn echo cancellation,
   * noise suppression and gain control off to hear the fake microphone as it is);
   * `deviceId`: the microphone to open (the browser's default when empty). */
  constructor({ constraints = {}, deviceId = "" } = {}) {
    this._constraints = constraints;
    this._callbacks = {};
    this._options = null;
    this._micEnabled = true;
    this._stream = null;
    this._deviceId = deviceId;
    this._selectedMic = {};
    this._audioContext = null;
    this._analyser = null;
    this._source = null;
    /** Called with the new track when the microphone changes mid-call (set by the page:
     * the transport's audio sender swaps it in). */
    this.onTrackReplaced = null;
    this._onDeviceChange = () => this._refreshDevices();
  }

  setUserAudioCallback() {} // the transport sends the track itself, not PCM
  setClientOptions(options, override = false) {
    if (this._options && !override) return;
    this._options = options;
    this._callbacks = options.callbacks ?? {};
    this._micEnabled = options.enableMic ?? true;
  }

  get supportsScreenShare() { return false; }

  async initialize() {
    if (!this._stream) await this._open(this._deviceId);
    navigator.mediaDevices.addEventListener("devicechange", this._onDeviceChange);
    await this._refreshDevices();
  }

  async connect() {
    if (!this._stream) await this.initialize();
  }

  async disconnect() {
    navigator.mediaDevices.removeEventListener("devicechange", this._onDeviceChange);
    this._close();
  }

  async getAllMics() {
    const devices = await navigator.mediaDevices.enumerateDevices();
    return devices.filter((d) => d.kind === "audioinput");
  }
  async getAllCams() { return []; }
  async getAllSpeakers() { return []; }

  async updateMic(micId) {
    const previous = this._stream;
    this._stream = null;
    try {
      await this._open(micId);
    } catch (error) {
      this._stream = previous; // keep talking on the microphone that works
      throw error;
    }
    previous?.getTracks().forEach((t) => t.stop());
    const track = this._stream.getAudioTracks()[0];
    await this.onTrackReplaced?.(track);
    this._callbacks.onMicUpdated?.(this._selectedMic);
  }
  updateCam() {}
  updateSpeaker() {}

  get selectedMic() { return this._selectedMic; }
  get selectedCam() { return {}; }
  get selectedSpeaker() { return {}; }

  enableMic(enable) {
    this._micEnabled = enable;
    this._stream?.getAudioTracks().forEach((t) => { t.enabled = enable; });
  }
  enableCam() {}
  enableScreenShare() {}
  get isMicEnabled() { return this._micEnabled; }
  get isCamEnabled() { return false; }
  get isSharingScreen() { return false; }

  tracks() {
    const audio = this._stream?.getAudioTracks()[0];
    return { local: audio ? { audio } : {} };
  }

  /** The microphone's level now, 0..1 (RMS of the last analyser window). */
  level() {
    return analyserLevel(this._analyser);
  }

  async _open(deviceId) {
    const audio = { ...this._constraints };
    if (deviceId) audio.deviceId = { exact: deviceId };
    let stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({ audio, video: false });
    } catch (error) {
      const type = DEVICE_ERROR_TYPES[error?.name] ?? "unknown";
      const deviceError = new DeviceError(["mic"], type, error?.message, { sourceError: error });
      this._callbacks.onDeviceError?.(deviceError);
      throw deviceError;
    }
    this._stream = stream;
    const track = stream.getAudioTracks()[0];
    track.enabled = this._micEnabled;
    const settings = track.getSettings();
    this._deviceId = settings.deviceId ?? deviceId ?? "";
    this._selectedMic = (await this.getAllMics()).find((d) => d.deviceId === this._deviceId)
      ?? { deviceId: this._deviceId, label: track.label, kind: "audioinput" };
    this._meter(stream);
    this._callbacks.onTrackStarted?.(track, LOCAL);
  }

  _meter(stream) {
    this._audioContext ??= new AudioContext();
    this._source?.disconnect();
    this._source = this._audioContext.createMediaStreamSource(stream);
    this._analyser = this._audioContext.createAnalyser();
    this._analyser.fftSize = 1024;
    this._source.connect(this._analyser);
    if (this._audioContext.state === "suspended") this._audioContext.resume();
  }

  _close() {
    const track = this._stream?.getAudioTracks()[0];
    this._stream?.getTracks().forEach((t) => t.stop());
    if (track) this._callbacks.onTrackStopped?.(track, LOCAL);
    this._stream = null;
    this._source?.disconnect();
    this._source = null;
    this._analyser = null;
    this._audioContext?.close();
    this._audioContext = null;
  }

  async _refreshDevices() {
    this._callbacks.onAvailableMicsUpdated?.(await this.getAllMics());
  }
}
