// The studio from first paint to finished image: server rendering, hydration, generating with a chosen
// ratio and seed while progress advances, cancelling, errors, picking a job up after a reload, layout.
import { expect } from '@playwright/test';
import {
  generate,
  openStudio,
  recordProgress,
  recordedProgress,
  saveScreenshot,
  stepsShown,
  test,
  uniquePrompt,
  waitForHydration,
} from './studio';

test.describe('without the bundle', () => {
  test.use({ javaScriptEnabled: false });

  test('the studio is rendered on the server', async ({ page }) => {
    await page.goto('/');
    await expect(page.getByRole('heading', { level: 1 })).toHaveText('Z-Image-Turbo (Local)');
    await expect(page.locator('#prompt')).toHaveAttribute('placeholder', 'Describe the image...');
    await expect(page.locator('#prompt')).toHaveAttribute('rows', '4');
    await expect(page.getByRole('radio')).toHaveCount(5);
    await expect(page.locator('.chip', { hasText: '16:9' })).toContainText('1024×576');
    await expect(page.getByRole('button', { name: 'Generate', exact: true })).toBeVisible();
    await expect(page.locator('.studio')).not.toHaveAttribute('data-hydrated', 'true');
    // Playwright turns scripts off after parsing starts, so <noscript> stays unrendered here: check it is sent.
    await expect(page.locator('noscript')).toHaveCount(1);
  });

  test('the manifest and icons make it installable', async ({ request }) => {
    const manifest = await (await request.get('/pkg/manifest.webmanifest')).json();
    expect(manifest.name).toBe('Z-Image-Turbo (Local)');
    expect(manifest.start_url).toBe('/');
    expect(manifest.display).toBe('standalone');
    for (const icon of manifest.icons) expect((await request.get(icon.src)).ok(), icon.src).toBe(true);
  });
});

test('the bundle hydrates the page: counter, chips and dice respond', async ({ page }) => {
  // A hydration mismatch shows up as a console error or a panic of the bundle.
  const problems: string[] = [];
  page.on('pageerror', (error) => problems.push(error.message));
  page.on('console', (message) => {
    if (message.type() === 'error' || message.type() === 'warning') problems.push(message.text());
  });
  await openStudio(page);
  await page.locator('#prompt').fill('一只在雪地里的狐狸');
  await expect(page.locator('#prompt-count')).toHaveText('9 / 2000');
  await page.getByRole('radio', { name: '9:16' }).check();
  await expect(page.locator('.chip.selected')).toContainText('576×1024');
  await page.getByRole('button', { name: 'Roll a random seed' }).click();
  await expect(page.getByLabel('Seed', { exact: true })).toHaveValue(/^\d+$/);
  await expect(page.locator('.status-label')).toContainText(/Ready|Demo/);
  expect(problems).toEqual([]);
});

test('generating with a chosen ratio and a fixed seed shows progress, then that image', async ({ page, baseURL }, testInfo) => {
  const requested: string[] = [];
  page.on('request', (request) => requested.push(request.url()));
  await openStudio(page);
  await recordProgress(page);
  const prompt = uniquePrompt(testInfo, 'a lighthouse on a cliff at dusk');
  await generate(page, { prompt, ratio: '16:9', seed: 424242 });

  const image = page.locator('#stage img.result-image');
  await expect(image).toBeVisible();
  await expect(page.locator('.result-prompt')).toHaveText(prompt);
  await expect(page.locator('.result-seed')).toHaveText('424242');
  await expect(page.locator('.result-size')).toHaveText('1024 × 576');
  const natural = await image.evaluate(async (element: HTMLImageElement) => {
    await element.decode();
    return [element.naturalWidth, element.naturalHeight];
  });
  expect(natural).toEqual([1024, 576]);
  await expect(page.getByRole('link', { name: 'Download' })).toHaveAttribute('download', 'z-image-424242.png');

  const samples = await recordedProgress(page);
  const steps = stepsShown(samples);
  expect(steps.length, `steps shown: ${steps}`).toBeGreaterThanOrEqual(3);
  expect(steps).toEqual([...steps].sort((a, b) => a - b));
  const values = samples.map((sample) => sample.value);
  for (let i = 1; i < values.length; i++) expect(values[i]).toBeGreaterThanOrEqual(values[i - 1]);
  expect(samples.some((sample) => sample.label === 'Decoding' || sample.value === 100)).toBe(true);
  expect(samples.some((sample) => sample.preview), 'a live preview was shown while sampling').toBe(true);

  await expect(page.getByRole('button', { name: 'Generate', exact: true })).toBeEnabled();
  // Self-contained: the page, its bundle, fonts, icons, images and streams all come from the gateway.
  const elsewhere = requested.filter((url) => !url.startsWith(`${baseURL}/`) && !url.startsWith('data:'));
  expect(elsewhere).toEqual([]);
  expect(requested.some((url) => url.endsWith('/pkg/hydrate_bg.wasm'))).toBe(true);
  await saveScreenshot(page, testInfo, 'studio');
});

test('cancel during sampling stops the job', async ({ page }, testInfo) => {
  await openStudio(page);
  await generate(page, { prompt: uniquePrompt(testInfo, 'a painting that will be cancelled') });
  await expect(page.locator('.progress-label')).toHaveText(/Sampling: step [1-6] of 8/);
  await page.getByRole('button', { name: 'Cancel', exact: true }).click();
  await expect(page.locator('.progress-label')).toHaveText('Cancelled');
  await expect(page.getByRole('button', { name: 'Generate', exact: true })).toBeEnabled();
  await expect(page.locator('#stage img.result-image')).toHaveCount(0);
});

test("a second device's job waits in line and shows its place", async ({ page, browser, baseURL }, testInfo) => {
  const otherDevice = await browser.newContext({ baseURL });
  const otherPage = await otherDevice.newPage();
  await openStudio(otherPage);
  await openStudio(page);
  await generate(otherPage, { prompt: uniquePrompt(testInfo, 'the first in line') });
  await expect(otherPage.locator('.progress-label')).toHaveText(/Starting|Sampling/);
  await recordProgress(page);
  await generate(page, { prompt: uniquePrompt(testInfo, 'the second in line') });
  await expect(page.locator('#stage img.result-image')).toBeVisible();
  const labels = (await recordedProgress(page)).map((sample) => sample.label);
  expect(labels).toContain('Queued: next in line');
  await otherDevice.close();
});

test("the backend's failures read as sentences: not ready, out of memory", async ({ page }) => {
  await openStudio(page);
  // The gateway's answers, played by the test: first ComfyUI is not ready, then a job runs out of memory.
  const notReady = 'ComfyUI is still starting: the model file ae.safetensors is not installed yet.';
  const outOfMemory = 'The GPU ran out of memory. Try a smaller size, or close other programs using the GPU.';
  let attempts = 0;
  await page.route('**/api/jobs', (route) => {
    attempts += 1;
    if (attempts === 1) {
      return route.fulfill({ status: 503, json: { error: { code: 'comfyui_not_ready', message: notReady, field: null } } });
    }
    return route.fulfill({ status: 202, json: { id: 'fake-oom', seed: 5, width: 1024, height: 1024, status: 'queued' } });
  });
  await page.route('**/api/jobs/fake-oom/events', (route) =>
    route.fulfill({
      contentType: 'text/event-stream',
      body: [
        'id: 1\nevent: running\ndata: {}\n\n',
        'id: 2\nevent: progress\ndata: {"step":1,"total":8}\n\n',
        `id: 3\nevent: failed\ndata: ${JSON.stringify({ code: 'out_of_memory', message: outOfMemory })}\n\n`,
      ].join(''),
    }),
  );

  await generate(page, { prompt: 'a cathedral' });
  await expect(page.locator('.form-error[role=alert]')).toHaveText(notReady);
  await page.getByRole('button', { name: 'Generate', exact: true }).click();
  await expect(page.locator('.job-error')).toHaveText(outOfMemory);
  await expect(page.locator('.progress-label')).toHaveText('Failed');
  await expect(page.locator('.form-error[role=alert]')).toBeEmpty();
  await expect(page.getByRole('button', { name: 'Generate', exact: true })).toBeEnabled();
});

test("an empty prompt shows the gateway's message beside the prompt", async ({ page }) => {
  await openStudio(page);
  await page.locator('#prompt').fill('   ');
  await page.getByRole('button', { name: 'Generate', exact: true }).click();
  const error = page.locator('#prompt-error');
  await expect(error).not.toBeEmpty();
  await expect(error).not.toContainText(/\b[45]\d\d\b/);
  await expect(page.locator('#prompt')).toHaveAttribute('aria-invalid', 'true');
  await page.locator('#prompt').fill('a cat');
  await expect(error).toBeEmpty();
});

test('reloading while a job runs picks it up again (Ctrl+Enter starts it)', async ({ page }, testInfo) => {
  await openStudio(page);
  const prompt = uniquePrompt(testInfo, 'a harbour at night');
  await page.locator('#prompt').fill(prompt);
  await page.locator('#prompt').press('Control+Enter');
  await expect(page.locator('.progress-label')).toHaveText(/Sampling: step [1-5] of 8/);
  await page.reload();
  await waitForHydration(page);
  await expect(page.locator('#stage img.result-image')).toBeVisible();
  await expect(page.locator('.result-prompt')).toHaveText(prompt);
});

test('a dropped event stream reconnects with Last-Event-ID and catches up', async ({ page }, testInfo) => {
  await openStudio(page);
  await recordProgress(page);
  await generate(page, { prompt: uniquePrompt(testInfo, 'a train in the snow'), seed: 31337 });
  await expect(page.locator('.progress-label')).toHaveText(/Sampling: step [1-3] of 8/);
  const control = process.env.E2E_RELAY_CONTROL;
  const before: string[] = await (await fetch(`${control}/last-event-ids`)).json();
  await fetch(`${control}/drop`, { method: 'POST' });

  await expect(page.locator('#stage img.result-image')).toBeVisible();
  await expect(page.locator('.result-seed')).toHaveText('31337');
  const after: string[] = await (await fetch(`${control}/last-event-ids`)).json();
  expect(after.length, 'the browser reconnected the event stream with Last-Event-ID').toBeGreaterThan(before.length);
  const steps = stepsShown(await recordedProgress(page));
  expect(steps).toEqual([...steps].sort((a, b) => a - b));
});

test('the layout fits: no horizontal scroll, 44 px tap targets, the button within reach', async ({ page }, testInfo) => {
  await openStudio(page);
  await generate(page, { prompt: uniquePrompt(testInfo, 'a very tall tower'), ratio: '9:16' });
  await expect(page.locator('#stage img.result-image')).toBeVisible();

  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
  expect(overflow, 'horizontal overflow in px').toBeLessThanOrEqual(0);

  const tooSmall = await page.evaluate(() =>
    [...document.querySelectorAll('button, a.button, input[type=text], textarea, .chip, summary')]
      .filter((element) => {
        const box = element.getBoundingClientRect();
        return box.width > 0 && (box.width < 44 || box.height < 44);
      })
      .map((element) => element.outerHTML.slice(0, 100)),
  );
  expect(tooSmall).toEqual([]);

  await page.evaluate(() => window.scrollTo(0, 0));
  const button = await page.getByRole('button', { name: 'Generate', exact: true }).boundingBox();
  const viewport = page.viewportSize();
  expect(button && viewport && button.y + button.height <= viewport.height).toBe(true);

  if (testInfo.project.name === 'desktop') {
    const form = await page.locator('#composer').boundingBox();
    const stage = await page.locator('#stage').boundingBox();
    expect(form && stage && stage.x >= form.x + form.width, 'form and result side by side').toBe(true);
  }
  await saveScreenshot(page, testInfo, 'layout');
  await page.emulateMedia({ colorScheme: 'dark' });
  await saveScreenshot(page, testInfo, 'layout-dark');
});
