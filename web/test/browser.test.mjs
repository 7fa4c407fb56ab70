// Loads the device page in headless Chromium from a small local server that plays the relay
// of `tapml serve-web` (web_contract.md): serves web/*.html|js|css, accepts the page's
// WebSocket at /ws/device, sends hello, waits for device-info, then runs a session (HELLO,
// ALLOC, WRITE, RUN add, READ) and checks the sum. Prints the adapter the page found.
// Exits 0 on pass, 1 on failure, 77 when Chromium or npm ws is missing.
//   node web/test/browser.test.mjs [--keep SECONDS]
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { spawn } from 'node:child_process';
import * as P from '../protocol.js';

const CHROMIUM = '/usr/lib/chromium/chromium';
const WEB = path.dirname(path.dirname(new URL(import.meta.url).pathname));
if (!fs.existsSync(CHROMIUM)) { console.log('skip: no chromium'); process.exit(77); }
let WebSocketServer;
try { ({ WebSocketServer } = await import('ws')); } catch { console.log('skip: npm ws missing'); process.exit(77); }

const TYPES = { '.html': 'text/html', '.js': 'text/javascript', '.mjs': 'text/javascript', '.css': 'text/css', '.wgsl': 'text/plain' };
const server = http.createServer((req, res) => {
  const url = new URL(req.url, 'http://x');
  const rel = url.pathname === '/' ? 'index.html' : url.pathname.slice(1);
  const file = path.join(WEB, rel);
  if (!/^(kernels\/)?[\w.-]+\.(html|js|mjs|css|wgsl)$/.test(rel) || !fs.existsSync(file)) { res.writeHead(404); res.end(); return; }
  res.writeHead(200, { 'content-type': TYPES[path.extname(file)] });
  res.end(fs.readFileSync(file));
});
const wss = new WebSocketServer({ server, path: '/ws/device' });
await new Promise((r) => server.listen(0, '127.0.0.1', r));
const port = server.address().port;
const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'tapml-chromium-'));
const flags = ['--headless=new', '--no-sandbox', '--enable-unsafe-webgpu', '--enable-features=Vulkan',
  '--use-angle=swiftshader', '--use-webgpu-adapter=swiftshader', `--user-data-dir=${profile}`];
const chrome = spawn(CHROMIUM, [...flags, `http://127.0.0.1:${port}/?name=test&token=t1`], { stdio: ['ignore', 'ignore', 'pipe'] });
let chromeLog = '';
chrome.stderr.on('data', (d) => { chromeLog += d; });

function finish(code, msg) {
  console.log(msg);
  if (code) console.log(chromeLog.split('\n').slice(-25).join('\n'));
  chrome.kill('SIGTERM');
  server.close();
  try { fs.rmSync(profile, { recursive: true, force: true, maxRetries: 3 }); } catch { /* still in use */ }
  process.exit(code);
}
setTimeout(() => finish(1, 'FAIL: no session within 60 s'), 60000);

wss.on('connection', async (ws, req) => {
  console.log(`device connected: ${req.url}`);
  ws.send(JSON.stringify({ type: 'hello', relay: 'tapml', version: 1 }));
  const replies = [];
  let wake = null;
  ws.on('message', (data, isBinary) => {
    if (!isBinary) {
      const m = JSON.parse(data.toString());
      if (m.type === 'device-info') {
        console.log(`device-info: adapter "${m.adapter}", runtime "${m.runtime}", features [${m.features.join(', ')}], ` +
          `maxStorageBufferBindingSize ${m.limits.maxStorageBufferBindingSize}`);
        session().catch((e) => finish(1, `FAIL: ${e.message}`));
      }
      return;
    }
    replies.push(new Uint8Array(data));
    if (wake) wake();
  });
  const ask = async (m) => {
    ws.send(P.encodeRequest(m));
    while (!replies.length) await new Promise((r) => { wake = r; });
    const r = P.decodeReply(replies.shift());
    if (r.type === P.MsgType.ERROR) throw new Error(`${P.msgName(m.type)}: ${r.text}`);
    return r;
  };
  async function session() {
    ws.send(JSON.stringify({ type: 'session-start', client: '127.0.0.1:1' }));
    const h = await ask({ type: P.MsgType.HELLO, client: 'browser-test' });
    console.log(`HELLO_OK: ${h.name}, "${h.device}", ops ${h.ops.length}, hash probe ${h.capabilities & 1n}`);
    const id = (await ask({ type: P.MsgType.ALLOC, size: 4 * 3 * 67 + 8 })).id;
    const a = Float32Array.from({ length: 67 }, (_, i) => i * 0.5), b = Float32Array.from({ length: 67 }, (_, i) => 100 - i);
    await ask({ type: P.MsgType.WRITE, id, offset: 4, data: new Uint8Array(a.buffer) });
    await ask({ type: P.MsgType.WRITE, id, offset: 4 + 268, data: new Uint8Array(b.buffer) });
    const t = (offset) => ({ buffer: id, offset, dtype: 'f32', shape: [1, 67] });
    await ask({ type: P.MsgType.RUN, call: { op: 'add', attrs: {}, inputs: [t(4), t(272)], outputs: [t(540)], site: 'test' } });
    const out = (await ask({ type: P.MsgType.READ, id, offset: 540, size: 268 })).data;
    const sum = new Float32Array(out.buffer.slice(out.byteOffset, out.byteOffset + 268));
    const ok = sum.every((v, i) => v === a[i] + b[i]);
    ws.send(JSON.stringify({ type: 'session-end', reason: 'client closed' }));
    const keep = process.argv.includes('--keep') ? Number(process.argv[process.argv.indexOf('--keep') + 1]) : 0;
    if (keep) await new Promise((r) => setTimeout(r, keep * 1000));
    finish(ok ? 0 : 1, ok ? `ok: add on the page's WebGPU device (flags: ${flags.slice(0, 6).join(' ')})` : `FAIL: sums ${sum.slice(0, 4)}`);
  }
});
