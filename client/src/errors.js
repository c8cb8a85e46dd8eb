// What went wrong, in words a caller can act on: a title and what to do about it.

// Keyed by client-js's DeviceError type, or by getUserMedia's DOMException name.
const MIC_PROBLEMS = {
  permissions: ["Microphone blocked",
    "Allow microphone access for this site (the icon at the left of the address bar), then press Connect again."],
  "not-found": ["No microphone found",
    "Plug in a microphone or headset, or pick another one in the list, then press Connect again."],
  constraints: ["That microphone is gone",
    "Pick another microphone in the list, then press Connect again."],
  "in-use": ["The microphone is in use",
    "Another app or tab is holding it. Close that app, or pick another microphone, then press Connect again."],
  NotAllowedError: ["Microphone blocked",
    "Allow microphone access for this site (the icon at the left of the address bar), then press Connect again."],
  SecurityError: ["Microphone blocked",
    "Allow microphone access for this site (the icon at the left of the address bar), then press Connect again."],
  NotFoundError: ["No microphone found",
    "Plug in a microphone or headset, or pick another one in the list, then press Connect again."],
  OverconstrainedError: ["That microphone is gone",
    "Pick another microphone in the list, then press Connect again."],
  NotReadableError: ["The microphone is in use",
    "Another app or tab is holding it. Close that app, or pick another microphone, then press Connect again."],
  AbortError: ["The microphone did not start",
    "Unplug and replug it, or pick another microphone, then press Connect again."],
};

const seconds = (retryAfter) => {
  const n = Number.parseInt(retryAfter ?? "", 10);
  return Number.isFinite(n) && n > 0 ? `${n} seconds` : "a few seconds";
};

/** `problem`: an exception (getUserMedia's DOMException), an RTVI error message, or what the
 * offer's answer said: `{status, detail, answered, hasToken, retryAfter}`. */
export function explain(problem) {
  const pick = (title, help) => ({ title, help });
  if (!problem) return pick("Something went wrong", "Press Connect to try again.");
  if (problem.insecure) {
    return pick("This page needs a secure address",
      "Browsers only open the microphone on https:// pages (or http://localhost). Open the bot at its https:// address.");
  }
  if (Array.isArray(problem.devices) && MIC_PROBLEMS[problem.type]) {
    return pick(...MIC_PROBLEMS[problem.type]); // client-js's DeviceError
  }
  if (problem.dropped) {
    return pick("The call dropped",
      "The connection to the server was lost (the network changed or went away). Press Connect to call again.");
  }
  if (problem.unreachable) {
    return pick("Cannot reach the server",
      "The server did not answer in time. Check your connection and that the server is running, then press Connect again.");
  }
  const name = problem.name ?? problem.error?.name;
  if (MIC_PROBLEMS[name]) return pick(...MIC_PROBLEMS[name]);
  if (problem.devices) {
    return pick("The microphone did not start", "Pick another microphone in the list, then press Connect again.");
  }
  if (problem.type === "error" || problem.type === "error-response") {
    const message = problem.data?.message ?? problem.data?.error ?? "unknown error";
    return pick("The bot reported an error", `${message}. If the call stopped, press Connect to start again.`);
  }
  const detail = problem.detail ? ` (the server said: ${problem.detail})` : "";
  switch (problem.status) {
    case 401:
      return problem.hasToken
        ? pick("Your session has expired", "Open the bot again from the app that linked you here: it gives a fresh session." + detail)
        : pick("The server needs a session token",
          "This server takes calls from signed-in apps only. Open the bot from the app that links to it (the link carries #token=…)." + detail);
    case 403:
      return pick("The server refused the call",
        "This server does not take calls from this page without a credential. Open the bot from the app that links to it, or ask whoever runs the server." + detail);
    case 429:
      return pick("Too many calls from here", `Wait ${seconds(problem.retryAfter)}, then press Connect again.` + detail);
    case 503:
      return pick("The server is busy",
        `Every call place is taken, or the server is restarting. Try again in ${seconds(problem.retryAfter)}.` + detail);
    case 400:
    case 413:
    case 422:
      return pick("The server could not answer this browser's call",
        "Try an up-to-date Chrome, Edge, Firefox or Safari." + detail);
    default:
      break;
  }
  if (problem.status >= 500) {
    return pick("The server had a problem", "Try again in a moment; if it keeps happening, tell whoever runs the server." + detail);
  }
  if (problem.answered) {
    return pick("The audio could not connect (ICE failed)",
      "The server answered, but this network blocks the media path to it. Try another network (a VPN or corporate firewall often blocks it); whoever runs the server can add a TURN relay (VOICEBOT_TURN_URLS).");
  }
  return pick("Cannot reach the server",
    "Check your connection and that the server is running, then press Connect again.");
}
