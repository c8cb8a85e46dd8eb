// One turn's latency, as the server's `turn-latency` message gives it, in rows for the page.

// Pipecat's latency breakdown (UserBotLatencyObserver) names its contributions with these keys.
const STAGE_NAMES = {
  endpointing_wait: "End of speech (VAD)",
  first_request: "First request",
  turn_detection: "End-of-turn decision",
  transcription: "Speech-to-text",
  turn_completion: "Turn completion",
  llm_inference: "Language model",
  llm_tool_call: "Tool call",
  function_handler: "Function",
  awaiting_speakable_text: "Waiting for speakable text",
  sentence_aggregation: "First sentence",
  speech_synthesis: "Text-to-speech",
  output_transport: "Sending audio",
  pipeline: "Pipeline",
};

export const stageName = (key) => STAGE_NAMES[key] ?? key.replaceAll("_", " ");

/** [label, milliseconds] rows: the stages the server measured, in the order it sent them. */
export function latencyRows(data) {
  return Object.entries(data.stages_ms ?? {})
    .filter(([, ms]) => typeof ms === "number" && Number.isFinite(ms))
    .map(([key, ms]) => [stageName(key), ms]);
}
