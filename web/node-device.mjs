#!/usr/bin/env node
// The TapML WebGPU device under Node: Dawn (npm webgpu) for the GPU, npm ws for the
// WebSocket to the relay of `tapml serve-web`.
//   node web/node-device.mjs --url ws://HOST:PORT/ws/device?name=N&token=T [--no-f16]
//                            [--limits NAME:VALUE,...]   (hold the device to lower limits)
// Prints `webgpu device ready: <adapter>` once connected; exits 0 on SIGTERM or SIGINT, and
// non-zero with a one-line reason when no WebGPU adapter is found.
import { openNodeGpu } from './node-gpu.mjs';
import { Device, plainLimits, parseLimitOverrides } from './device.js';
import { DeviceLink } from './link.js';
import { xxh3_128_hex } from './xxh3.js';

function usage(msg) {
  if (msg) console.error(`node-device: ${msg}`);
  console.error('usage: node web/node-device.mjs --url ws://HOST:PORT/ws/device?name=N&token=T [--no-f16]\n' +
    '         [--limits NAME:VALUE,...]   hold the device to lower WebGPU limits than its adapter\'s,\n' +
    '                                     e.g. maxStorageBufferBindingSize:134217728');
  process.exit(2);
}

const args = process.argv.slice(2);
let url = null, wantF16 = true, limitText = '';
for (let i = 0; i < args.length; ++i) {
  if (args[i] === '--url') url = args[++i];
  else if (args[i].startsWith('--url=')) url = args[i].slice(6);
  else if (args[i] === '--no-f16') wantF16 = false;
  else if (args[i] === '--limits') limitText = args[++i] ?? '';
  else if (args[i].startsWith('--limits=')) limitText = args[i].slice(9);
  else if (args[i] === '--help' || args[i] === '-h') usage();
  else usage(`unknown argument ${args[i]}`);
}
if (!url || !/^wss?:\/\//.test(url)) usage('--url ws://... is required');

let WebSocket;
try {
  ({ WebSocket } = await import('ws'));
} catch {
  console.error('node-device: the npm package ws is not installed (npm ci --prefix web)');
  process.exit(1);
}

let g;
try {
  g = await openNodeGpu({ wantF16 });
} catch (e) {
  console.error(`node-device: ${e.message}`);
  process.exit(1);
}
// Held for the life of the process: Dawn's instance goes away when `g.gpu` is collected.
globalThis.tapmlGpu = g;

let overrides;
try {
  overrides = parseLimitOverrides(limitText, plainLimits(g.device.limits));
} catch (e) {
  usage(e.message);
}
const device = new Device(g.device, { adapter: g.description, runtime: g.runtime, hash: xxh3_128_hex, limits: overrides });
const info = {
  adapter: g.description,
  runtime: g.runtime,
  features: [...g.device.features],
  limits: device.limits,
  limitOverrides: overrides,
};
let announced = false;
let lastState = '';
const link = new DeviceLink(url, WebSocket, device, info, (text, l) => {
  if (l.connected && !announced) {
    announced = true;
    console.log(`webgpu device ready: ${g.description} (${g.runtime}${device.native16 ? ', shader-f16' : ''})`);
  } else if (!l.connected && text !== lastState) {
    announced = false;
    console.error(`node-device: ${text}`);
  }
  lastState = text;
});
g.device.lost.then((info) => {
  console.error(`node-device: the GPU device was lost: ${info.message}`);
  process.exit(1);
});
const stop = () => { link.stop(); process.exit(0); };
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
link.start();
