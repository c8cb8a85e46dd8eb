import assert from "node:assert/strict";
import { test } from "node:test";

import { latencyRows, stageName } from "../src/latency.js";

test("stages in the server's order, with names a caller understands", () => {
  const rows = latencyRows({
    stages_ms: { endpointing_wait: 200, transcription: 110.4, llm_inference: 251, speech_synthesis: 80 },
  });
  assert.deepEqual(rows, [
    ["End of speech (VAD)", 200],
    ["Speech-to-text", 110.4],
    ["Language model", 251],
    ["Text-to-speech", 80],
  ]);
});

test("a stage the page does not know is shown by its key", () => {
  assert.equal(stageName("vision_model"), "vision model");
});

test("missing or non-numeric figures are left out", () => {
  assert.deepEqual(latencyRows({}), []);
  assert.deepEqual(latencyRows({ stages_ms: { llm_inference: null, tts: "x", pipeline: 3 } }),
    [["Pipeline", 3]]);
});
