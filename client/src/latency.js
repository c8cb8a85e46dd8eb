// One turn's latency, as the server's `turn-latency` message gives it, in rows for the page.

// Pipecat's latency breakdown (UserBotLatencyObserver) names its contributions with these keys.
const STAGE_NAMES = {
  endpointing_wait: "End of speech (VAD)",
  turn_detection: "End-of-turn decision",
  transcription: "Speech-to-text",
  llm_inference: "Language model",
  sentence_aggregation: "First sentence",
  speech_synthesis: "Text-to-speech",
  pipeline: "Pipeline and transport",
};

export const stageName = (key) => STAGE_NAMES[key] ?? key.replaceAll("_", " ");

/** [label, milliseconds] rows: the stages the server measured, in the order it sent them. */
export function latencyRows(data) {
  return Object.entries(data.stages_ms ?? {})
    .filter(([, ms]) => typeof ms === "number" && Number.isFinite(ms))
    .map(([key, ms]) => [stageName(key), ms]);
}
