// The device page's script: opens the WebGPU adapter (with shader-f16 when it has it), shows
// its facts, and connects a Device to ws://<this host>/ws/device?name=..&token=.. (taken from
// the page's own query), showing the connection state and the counters as they change.
import { Device, plainLimits, parseLimitOverrides } from './device.js';
import { DeviceLink } from './link.js';
import { xxh3_128_hex } from './xxh3.js';

const $ = (id) => document.getElementById(id);
const query = new URLSearchParams(location.search);
const name = query.get('name') || 'default';
const token = query.get('token') || '';
$('name').textContent = `"${name}"`;

const KEY_LIMITS = ['maxBufferSize', 'maxStorageBufferBindingSize', 'minStorageBufferOffsetAlignment',
  'maxComputeWorkgroupStorageSize', 'maxComputeInvocationsPerWorkgroup', 'maxComputeWorkgroupsPerDimension',
  'maxStorageBuffersPerShaderStage'];

function setState(text, kind) {
  const el = $('state');
  el.textContent = text;
  el.className = `state ${kind ?? ''}`;
}

function describe(info) {
  const parts = [info.vendor, info.architecture, info.description].filter((s) => s);
  return parts.length ? parts.join(', ') : 'unnamed adapter';
}

function runtime() {
  const m = navigator.userAgent.match(/(Chrome|Chromium|Firefox|Safari)\/(\d+)/);
  return m ? `${m[1].toLowerCase()} ${m[2]}` : 'browser';
}

const fmt = (n) => n.toLocaleString('en-US');

function show(device) {
  const c = device.counters;
  for (const k of ['requests', 'runs', 'errors', 'sessions']) $(k).textContent = fmt(c[k]);
  $('bytesIn').textContent = fmt(c.bytesIn);
  $('bytesOut').textContent = fmt(c.bytesOut);
  $('current').textContent = c.current || '-';
  const list = $('lastErrors');
  list.replaceChildren(...(device.lastErrors.length ? device.lastErrors : ['none']).map((t) => {
    const li = document.createElement('li');
    li.textContent = t;
    return li;
  }));
}

async function main() {
  if (!navigator.gpu) {
    setState('this browser has no WebGPU (navigator.gpu is missing)', 'bad');
    $('adapter').textContent = 'no WebGPU';
    return;
  }
  const adapter = await navigator.gpu.requestAdapter({ powerPreference: 'high-performance' });
  if (!adapter) {
    setState('no WebGPU adapter found', 'bad');
    $('adapter').textContent = 'no adapter';
    return;
  }
  const info = adapter.info ?? (adapter.requestAdapterInfo ? await adapter.requestAdapterInfo() : {});
  const features = [];
  if (adapter.features.has('shader-f16')) features.push('shader-f16');
  const requiredLimits = {};
  for (const k of ['maxStorageBufferBindingSize', 'maxBufferSize', 'maxComputeWorkgroupStorageSize',
    'maxComputeInvocationsPerWorkgroup', 'maxStorageBuffersPerShaderStage'])
    requiredLimits[k] = adapter.limits[k];
  const gpu = await adapter.requestDevice({ requiredFeatures: features, requiredLimits });
  const adapterText = describe(info);
  $('adapter').textContent = adapterText;
  $('features').replaceChildren(...['shader-f16', 'subgroups'].map((f) => {
    const s = document.createElement('span');
    const has = adapter.features.has(f);
    s.className = `feature ${has ? 'yes' : 'no'}`;
    s.textContent = `${f}${has && f === 'shader-f16' && !gpu.features.has(f) ? ' (not enabled)' : ''}`;
    return s;
  }));
  // ?limits=NAME:VALUE,... holds the device to lower limits (standing in for a smaller one).
  const overrides = parseLimitOverrides(query.get('limits'), plainLimits(gpu.limits));
  const device = new Device(gpu, { adapter: adapterText, runtime: runtime(), hash: xxh3_128_hex, limits: overrides });
  const limits = device.limits;
  $('limits').replaceChildren(...KEY_LIMITS.map((k) => {
    const tr = document.createElement('tr');
    tr.innerHTML = '<td></td><td></td>';
    tr.children[0].textContent = k;
    tr.children[1].textContent = fmt(limits[k]) + (k in overrides ? ` (held to this; the adapter has ${fmt(gpu.limits[k])})` : '');
    return tr;
  }));

  let pending = false;
  device.onchange = () => {
    if (pending) return;
    pending = true;
    requestAnimationFrame(() => { pending = false; show(device); });
  };
  gpu.lost.then((l) => setState(`the GPU device was lost: ${l.message}`, 'bad'));
  const url = `ws://${location.host}/ws/device?name=${encodeURIComponent(name)}` +
    (token ? `&token=${encodeURIComponent(token)}` : '');
  const link = new DeviceLink(url, WebSocket, device, {
    adapter: adapterText, runtime: runtime(), features: [...gpu.features], limits, limitOverrides: overrides,
  }, (text, l) => setState(text, l.connected ? 'ok' : ''));
  window.tapmlDevice = { device, link, adapter: adapterText };
  show(device);
  link.start();
}

main().catch((e) => setState(`error: ${e.message}`, 'bad'));
