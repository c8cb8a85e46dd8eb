// Stands in for @daily-co/daily-js in the bundle. SmallWebRTC's transport imports it only for
// its default media manager, which this page replaces (media.js): Daily's library would load
// its call machine from Daily's CDN, and the page must load nothing from elsewhere.
const unavailable = () => {
  throw new Error("daily-js is not bundled: pass a mediaManager to SmallWebRTCTransport");
};
export default { getCallInstance: () => null, createCallObject: unavailable };
