// Connection manager: one WebSocket to /ws, heartbeat, reconnect with backoff, resume.
// The token goes in the sub-protocol list (never in the URL); the server picks "openpista.v1".

const PING_EVERY = 15000; // ms between our heartbeats
const DEAD_AFTER = 35000; // ms without any frame: the connection is dead
const BACKOFF_MIN = 500;
const BACKOFF_MAX = 15000;

export class Connection {
  /** @param {{token: () => string|null, clientId: string, onFrame: Function, onState: Function, onAuthFailed: Function}} o */
  constructor(o) {
    Object.assign(this, o);
    this.ws = null;
    this.attempt = 0;
    this.lastSeq = 0;
    this.epoch = null;
    this.closedByUs = false;
    this.timers = {};
  }

  url() {
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    const q = new URLSearchParams({ client: this.clientId });
    if (this.lastSeq && this.epoch) { q.set("since", this.lastSeq); q.set("epoch", this.epoch); }
    return `${proto}//${location.host}/ws?${q}`;
  }

  connect() {
    const token = this.token();
    if (!token) { this.onState("signed-out"); this.onAuthFailed(false); return; }
    this.closedByUs = false;
    clearTimeout(this.timers.retry);
    clearInterval(this.timers.count);
    this.timers.count = 0;
    this.onState("connecting");
    let opened = false;
    const ws = new WebSocket(this.url(), ["openpista.v1", "openpista.token." + token]);
    this.ws = ws;
    ws.onopen = () => { opened = true; this.attempt = 0; this.onState("online"); this.beat(); };
    ws.onmessage = (e) => {
      this.alive();
      let frame;
      try { frame = JSON.parse(e.data); } catch { return; }
      if (frame.type === "hello") {
        if (frame.epoch !== this.epoch) this.lastSeq = 0;
        this.epoch = frame.epoch;
        this.lastSeq = Math.max(this.lastSeq, frame.seq || 0);
      } else if (frame.seq) this.lastSeq = Math.max(this.lastSeq, frame.seq);
      if (frame.type !== "pong") this.onFrame(frame);
    };
    ws.onclose = async (e) => {
      this.stopBeat();
      if (this.ws !== ws) return;
      this.ws = null;
      if (this.closedByUs) { this.onState("offline"); return; }
      const why = opened ? null : await this.whyRefused(token);
      if (why === "token") { this.onState("signed-out"); this.onAuthFailed(true); return; }
      if (typeof why === "number") { this.limited(why); return; }
      this.retry(e.code);
    };
  }

  /** Browsers hide why a handshake failed: ask the server. "token" (wrong), a number (seconds
   * until this address may try again, after too many wrong tokens) or null (down: retry). */
  async whyRefused(token) {
    try {
      const r = await fetch("api/auth", { method: "POST", headers: { Authorization: "Bearer " + token } });
      if (r.status === 401) return "token";
      if (r.status === 429) return Math.min(3600, Math.max(1, parseInt(r.headers.get("Retry-After"), 10) || 60));
    } catch {}
    return null;
  }

  limited(seconds) {
    const until = Date.now() + seconds * 1000;
    this.onState("limited", seconds);
    clearTimeout(this.timers.retry);
    clearInterval(this.timers.count);
    this.timers.count = setInterval(() => {
      const left = Math.ceil((until - Date.now()) / 1000);
      if (left > 0) this.onState("limited", left);
      else { clearInterval(this.timers.count); this.timers.count = 0; this.connect(); }
    }, 1000);
  }

  retry(code) {
    const wait = Math.min(BACKOFF_MAX, BACKOFF_MIN * 2 ** this.attempt++) * (0.75 + Math.random() / 2);
    this.onState("offline", Math.round(wait / 1000), code);
    this.timers.retry = setTimeout(() => this.connect(), wait);
  }

  /** Reconnect now (e.g. the tab became visible or the network came back). */
  nudge() {
    if (!this.ws && !this.closedByUs && !this.timers.count && this.token()) { this.attempt = 0; this.connect(); }
  }

  send(frame) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.send(JSON.stringify(frame));
    return true;
  }

  close() {
    this.closedByUs = true;
    clearTimeout(this.timers.retry);
    if (this.ws) this.ws.close(1000);
  }

  beat() {
    this.stopBeat();
    this.timers.ping = setInterval(() => this.send({ type: "ping" }), PING_EVERY);
    this.alive();
  }

  alive() {
    clearTimeout(this.timers.dead);
    this.timers.dead = setTimeout(() => {
      const ws = this.ws; // silent for too long: give up on it without waiting for a close
      if (!ws) return;
      this.ws = null;
      this.stopBeat();
      try { ws.close(4000, "no heartbeat"); } catch {}
      this.retry(4000);
    }, DEAD_AFTER);
  }

  stopBeat() {
    clearInterval(this.timers.ping);
    clearTimeout(this.timers.dead);
  }
}
