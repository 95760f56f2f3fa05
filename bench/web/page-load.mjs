// Time to first render and to hydration of the studio page in headless Chromium, as a phone on Wi-Fi
// sees it: a Pixel 7 profile, the CPU slowed down through the DevTools protocol, Wi-Fi-like network
// conditions, and a fresh browser context (empty cache) for every load.
//
// Usage: node bench/web/page-load.mjs URL [RUNS] [CPU_SLOWDOWN]
// Prints one JSON object: {"profile": ..., "with_js": [load...], "without_js": [load...]}, where each
// load has first_contentful_paint_ms, hydrated_ms (with JS only), dom_content_loaded_ms, load_ms and
// the bytes that crossed the network. The page without JavaScript is the baseline: what the server's
// HTML alone costs to show.
//
// Uses the Playwright of end2end/ (playwright-core, no browser download) and the system Chromium.

import { createRequire } from 'node:module';

const require = createRequire(new URL('../../end2end/package.json', import.meta.url));
const { chromium, devices } = require('playwright-core');

const [url, runsArg = '5', slowdownArg = '4'] = process.argv.slice(2);
if (!url) {
  console.error('usage: node bench/web/page-load.mjs URL [RUNS] [CPU_SLOWDOWN]');
  process.exit(2);
}
const runs = Number(runsArg);
const slowdown = Number(slowdownArg);
const phone = devices['Pixel 7'];
// Home Wi-Fi as Lighthouse-style emulation describes it: tens of megabits, a few milliseconds away.
const wifi = { offline: false, latency: 10, downloadThroughput: (30e6 / 8), uploadThroughput: (15e6 / 8) };
const executablePath = process.env.CHROMIUM_PATH || '/usr/bin/chromium';

const browser = await chromium.launch({
  executablePath,
  args: [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
  ],
});

async function load(javaScriptEnabled) {
  const context = await browser.newContext({ ...phone, javaScriptEnabled });
  const page = await context.newPage();
  const cdp = await context.newCDPSession(page);
  await cdp.send('Emulation.setCPUThrottlingRate', { rate: slowdown });
  await cdp.send('Network.enable');
  await cdp.send('Network.emulateNetworkConditions', wifi);
  let bytes = 0;
  cdp.on('Network.loadingFinished', (event) => { bytes += event.encodedDataLength; });
  // Notes the moment the studio marks itself hydrated (the attribute is set by the first effect that
  // runs in the browser), without polling.
  await page.addInitScript(() => {
    const mark = () => {
      if (window.__hydratedAt === undefined && document.querySelector('[data-hydrated="true"]')) {
        window.__hydratedAt = performance.now();
      }
    };
    new MutationObserver(mark).observe(document, { subtree: true, childList: true, attributes: true });
  });
  await page.goto(url, { waitUntil: 'load' });
  if (javaScriptEnabled) {
    await page.waitForFunction(() => window.__hydratedAt !== undefined, null, { timeout: 60000 });
  }
  // First paint is reported a moment after it happens.
  await page.waitForFunction(
    () => performance.getEntriesByName('first-contentful-paint').length > 0, null, { timeout: 30000 });
  const timings = await page.evaluate(() => {
    const navigation = performance.getEntriesByType('navigation')[0];
    const wasm = performance.getEntriesByType('resource').find((entry) => entry.name.endsWith('.wasm'));
    return {
      first_contentful_paint_ms: performance.getEntriesByName('first-contentful-paint')[0].startTime,
      hydrated_ms: window.__hydratedAt ?? null,
      dom_content_loaded_ms: navigation.domContentLoadedEventEnd,
      load_ms: navigation.loadEventEnd,
      html_response_end_ms: navigation.responseEnd,
      wasm_response_end_ms: wasm ? wasm.responseEnd : null,
    };
  });
  await context.close();
  return { ...timings, network_bytes: bytes };
}

const result = {
  profile: { device: 'Pixel 7', cpu_slowdown: slowdown, network: wifi },
  with_js: [],
  without_js: [],
};
// One unrecorded load of each warms the server (its first render) and the browser process.
await load(true);
await load(false);
for (let run = 0; run < runs; run += 1) {
  result.with_js.push(await load(true));
  result.without_js.push(await load(false));
}
await browser.close();
console.log(JSON.stringify(result));
