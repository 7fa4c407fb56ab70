// Connects a Device to the relay of `tapml serve-web` over a WebSocket (the browser's, or
// npm ws's under Node: both have the same API) as web_contract describes: binary messages
// are protocol frames served in order, one reply each; text messages are JSON control
// messages (hello, session-start, session-end); reconnects every second when closed.

export class DeviceLink {
  // url: ws://HOST:PORT/ws/device?name=..&token=..; WebSocketImpl: the WebSocket class;
  // info: the device-info message's fields; onstate(text, link): connection state changes.
  constructor(url, WebSocketImpl, device, info, onstate = () => {}) {
    this.url = url;
    this.WebSocketImpl = WebSocketImpl;
    this.device = device;
    this.info = info;
    this.onstate = onstate;
    this.queue = Promise.resolve();
    this.stopped = false;
    this.connected = false;
    this.inSession = false;
    this.client = '';
  }

  start() {
    this.stopped = false;
    this.open();
  }

  stop() {
    this.stopped = true;
    if (this.ws) this.ws.close();
  }

  state(text) { this.stateText = text; this.onstate(text, this); }

  open() {
    let ws;
    try {
      ws = new this.WebSocketImpl(this.url);
    } catch (e) {
      this.state(`cannot open ${this.url}: ${e.message}`);
      this.retry();
      return;
    }
    this.ws = ws;
    ws.binaryType = 'arraybuffer';
    ws.onopen = () => { this.connected = true; this.state(`connected to ${this.url}`); };
    ws.onmessage = (ev) => {
      if (typeof ev.data === 'string') this.control(ev.data);
      else this.frame(new Uint8Array(ev.data));
    };
    ws.onerror = () => {};
    ws.onclose = () => {
      const was = this.connected;
      this.connected = false;
      if (this.inSession) this.enqueue(() => { this.inSession = false; this.device.sessionEnd(); });
      if (this.stopped) { this.state('stopped'); return; }
      this.state(`waiting for the host at ${this.url} (retrying${was ? ', connection closed' : ''})`);
      this.retry();
    };
  }

  retry() { if (!this.stopped) setTimeout(() => this.open(), 1000); }

  // Requests and control messages are handled one after another, in arrival order.
  enqueue(fn) {
    this.queue = this.queue.then(fn).catch((e) => this.device.noteError(`link: ${e.message}`));
    return this.queue;
  }

  send(data) { if (this.ws && this.ws.readyState === 1) this.ws.send(data); }

  control(text) {
    let msg;
    try { msg = JSON.parse(text); } catch { return; }
    if (msg.type === 'hello') {
      this.send(JSON.stringify({ type: 'device-info', ...this.info }));
      this.state(`connected to ${this.url}`);
    } else if (msg.type === 'session-start') {
      this.enqueue(() => {
        this.inSession = true;
        this.client = msg.client ?? '';
        this.device.sessionStart();
        this.state(`connected to ${this.url}; serving ${this.client}`);
      });
    } else if (msg.type === 'session-end') {
      this.enqueue(() => {
        this.inSession = false;
        this.device.sessionEnd();
        this.state(`connected to ${this.url}; session ended (${msg.reason ?? ''})`);
      });
    }
  }

  frame(bytes) {
    const ws = this.ws;
    this.enqueue(async () => {
      if (!this.inSession) return; // frames only flow within a session
      const reply = await this.device.handle(bytes);
      if (this.ws === ws) this.send(reply);
    });
  }
}
