// Opens a WebGPU adapter and device under Node with the npm package `webgpu` (Dawn). On a
// machine without a GPU driver, Chromium's SwiftShader Vulkan driver serves as the adapter.
// Keep the returned `gpu` referenced for as long as the device is used: Dawn's instance is
// released when it is collected.
import fs from 'node:fs';
import { createRequire } from 'node:module';

const SWIFTSHADER_ICD = '/usr/lib/chromium/vk_swiftshader_icd.json';

export function describeAdapter(info) {
  if (!info) return 'unknown adapter';
  const parts = [info.vendor, info.architecture, info.description].filter((s) => s && String(s).length);
  return parts.length ? parts.join(', ') : 'unnamed adapter';
}

// Returns {gpu, adapter, device, info, runtime, features} or throws an Error with a
// one-line reason. wantF16: request shader-f16 when the adapter has it.
export async function openNodeGpu({ wantF16 = true } = {}) {
  if (!process.env.VK_ICD_FILENAMES && fs.existsSync(SWIFTSHADER_ICD)) process.env.VK_ICD_FILENAMES = SWIFTSHADER_ICD;
  let webgpu;
  try {
    webgpu = await import('webgpu');
  } catch (e) {
    throw new Error(`the npm package webgpu is not installed (npm ci --prefix web): ${e.message.split('\n')[0]}`);
  }
  const { create, globals } = webgpu;
  Object.assign(globalThis, globals);
  const gpu = create([]);
  const adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
  if (!adapter) throw new Error('no WebGPU adapter found (Dawn found no Vulkan driver)');
  const features = [];
  if (wantF16 && adapter.features.has('shader-f16')) features.push('shader-f16');
  const limits = {};
  for (const k of ['maxStorageBufferBindingSize', 'maxBufferSize', 'maxComputeWorkgroupStorageSize',
    'maxComputeInvocationsPerWorkgroup', 'maxStorageBuffersPerShaderStage'])
    limits[k] = adapter.limits[k];
  const device = await adapter.requestDevice({ requiredFeatures: features, requiredLimits: limits });
  const info = adapter.info ?? {};
  const require = createRequire(import.meta.url);
  let version = '?';
  try { version = require('webgpu/package.json').version; } catch { /* unknown */ }
  return { gpu, adapter, device, info, description: describeAdapter(info),
    runtime: `node ${process.versions.node.split('.')[0]} + webgpu ${version}`,
    features: [...adapter.features] };
}
