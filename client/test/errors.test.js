// What the page says for each failure: `node --test client/test` (run by tests/test_client_js.py).
import assert from "node:assert/strict";
import { test } from "node:test";

import { explain } from "../src/errors.js";

test("the server's refusals, by status", () => {
  assert.equal(explain({ status: 401, hasToken: false }).title, "The server needs a session token");
  assert.match(explain({ status: 401, hasToken: false }).help, /#token=/);
  assert.equal(explain({ status: 401, hasToken: true }).title, "Your session has expired");
  assert.equal(explain({ status: 403 }).title, "The server refused the call");
  assert.equal(explain({ status: 429, retryAfter: "7" }).title, "Too many calls from here");
  assert.match(explain({ status: 429, retryAfter: "7" }).help, /Wait 7 seconds/);
  assert.equal(explain({ status: 503, retryAfter: "5" }).title, "The server is busy");
  assert.match(explain({ status: 503, retryAfter: "5" }).help, /Try again in 5 seconds/);
  assert.match(explain({ status: 503 }).help, /Try again in a few seconds/);
  assert.match(explain({ status: 503, retryAfter: "soon" }).help, /a few seconds/);
  assert.equal(explain({ status: 400, detail: "sdp is not an SDP offer" }).title,
    "The server could not answer this browser's call");
  assert.match(explain({ status: 400, detail: "sdp is not an SDP offer" }).help,
    /the server said: sdp is not an SDP offer/);
  assert.equal(explain({ status: 502 }).title, "The server had a problem");
});

test("a status wins over what the transport saw", () => {
  assert.equal(explain({ status: 503, answered: true }).title, "The server is busy");
});

test("no answer, an answer without media, a dropped call", () => {
  assert.equal(explain({}).title, "Cannot reach the server");
  assert.equal(explain({ unreachable: true }).title, "Cannot reach the server");
  const ice = explain({ answered: true });
  assert.equal(ice.title, "The audio could not connect (ICE failed)");
  assert.match(ice.help, /TURN relay/);
  assert.equal(explain({ dropped: true }).title, "The call dropped");
  assert.equal(explain(null).title, "Something went wrong");
});

test("microphone failures: client-js's DeviceError and getUserMedia's DOMException", () => {
  const device = (type) => ({ devices: ["mic"], type });
  assert.equal(explain(device("permissions")).title, "Microphone blocked");
  assert.equal(explain(device("not-found")).title, "No microphone found");
  assert.equal(explain(device("in-use")).title, "The microphone is in use");
  assert.equal(explain(device("constraints")).title, "That microphone is gone");
  assert.equal(explain(device("unknown")).title, "The microphone did not start");
  assert.equal(explain({ name: "NotAllowedError" }).title, "Microphone blocked");
  assert.equal(explain({ error: { name: "NotReadableError" } }).title, "The microphone is in use");
});

test("the bot's own error messages", () => {
  const problem = explain({ type: "error", data: { message: "LLM unavailable", fatal: true } });
  assert.equal(problem.title, "The bot reported an error");
  assert.match(problem.help, /LLM unavailable/);
});

test("a page that is not a secure context", () => {
  assert.equal(explain({ insecure: true }).title, "This page needs a secure address");
});
