// Starting from a picture: choosing, pasting and dropping one, the strength in words, painting over a
// part (the mask sent at the picture's size, transparent where painted), and "Start from this" on an
// image of the studio (the result, the viewer, a gallery thumbnail). The first test answers the picture API itself, so the page's side is checked on
// its own; the second runs the whole way through the gateway and the simulator.
import { expect, type Page, type Request } from '@playwright/test';
import { fakePictures, pixelPng } from './fakes';
import { generate, openStudio, test, uniquePrompt } from './studio';

/** Counts the pixels of a PNG by their alpha, decoded by the browser: [width, height, transparent, opaque]. */
async function maskPixels(page: Page, png: Buffer): Promise<number[]> {
  return page.evaluate(async (base64) => {
    const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
    const bitmap = await createImageBitmap(new Blob([bytes], { type: 'image/png' }), { premultiplyAlpha: 'none' });
    const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
    const context = canvas.getContext('2d');
    if (!context) throw new Error('no 2d context');
    context.drawImage(bitmap, 0, 0);
    const data = context.getImageData(0, 0, bitmap.width, bitmap.height).data;
    let [transparent, opaque] = [0, 0];
    for (let i = 3; i < data.length; i += 4) {
      if (data[i] === 0) transparent += 1;
      else if (data[i] === 255) opaque += 1;
    }
    return [bitmap.width, bitmap.height, transparent, opaque];
  }, png.toString('base64'));
}

/** Paints a horizontal stroke across the middle of the painting canvas with the mouse, once the canvas
 * is in the middle of the screen (as a person scrolls it there: on a phone, the sticky Generate bar
 * covers the bottom of the screen). */
async function paintStroke(page: Page): Promise<void> {
  const canvas = page.locator('#painting');
  await canvas.evaluate((element) => element.scrollIntoView({ block: 'center', behavior: 'instant' }));
  const box = await canvas.boundingBox();
  if (!box) throw new Error('no canvas');
  const y = box.y + box.height / 2;
  await page.mouse.move(box.x + box.width * 0.3, y);
  await page.mouse.down();
  for (const share of [0.4, 0.5, 0.6, 0.7]) await page.mouse.move(box.x + box.width * share, y);
  await page.mouse.up();
}

/** Pastes a PNG file onto the page, as a copied picture. */
async function pastePicture(page: Page): Promise<void> {
  await page.evaluate((base64) => {
    const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
    const data = new DataTransfer();
    data.items.add(new File([bytes], 'pasted.png', { type: 'image/png' }));
    document.body.dispatchEvent(new ClipboardEvent('paste', { clipboardData: data, bubbles: true }));
  }, pixelPng.toString('base64'));
}

/** Drops a PNG file on the picture's field. */
async function dropPicture(page: Page): Promise<void> {
  await page.locator('#source').evaluate((element, base64) => {
    const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
    const data = new DataTransfer();
    data.items.add(new File([bytes], 'dropped.png', { type: 'image/png' }));
    element.dispatchEvent(new DragEvent('dragover', { dataTransfer: data, bubbles: true, cancelable: true }));
    element.dispatchEvent(new DragEvent('drop', { dataTransfer: data, bubbles: true, cancelable: true }));
  }, pixelPng.toString('base64'));
}

test('a picture is chosen, pasted or dropped, its strength said in words, and a painted part sent as a mask', async ({ page }) => {
  const uploads = await fakePictures(page);
  const jobs: unknown[] = [];
  await page.route('**/api/jobs', async (route) => {
    jobs.push(route.request().postDataJSON());
    await route.fulfill({
      status: 422,
      json: { error: { code: 'unknown_picture', message: 'That picture is no longer kept.', field: 'source.picture' } },
    });
  });
  await openStudio(page);

  // The file button takes any image, with no `capture`, so a phone offers its camera and its library.
  const input = page.locator('#source input[type=file]');
  await expect(input).toHaveAttribute('accept', 'image/*');
  await expect(input).not.toHaveAttribute('capture');
  await input.setInputFiles({ name: 'photo.png', mimeType: 'image/png', buffer: pixelPng });
  await expect(page.locator('.picture-thumb')).toBeVisible();
  expect(uploads.map((upload) => upload.kind)).toEqual(['picture']);
  expect(uploads[0].body.equals(pixelPng)).toBe(true);
  await expect(page.locator('.picture-size')).toHaveText('1024 × 768');
  // The result keeps the picture's shape: its chip is the one picked.
  await expect(page.getByRole('radio', { name: /Picture/ })).toBeChecked();

  // The strength says how much may change, in words, to the eye and to a screen reader.
  const strength = page.getByRole('slider', { name: 'How much may change' });
  await expect(strength).toHaveValue('0.6');
  await expect(strength).toHaveAttribute('aria-valuetext', 'A lot may change (0.6)');
  await strength.focus();
  for (let i = 0; i < 8; i += 1) await page.keyboard.press('ArrowLeft');
  await expect(strength).toHaveAttribute('aria-valuetext', 'A little may change (0.2)');
  await expect(page.locator('.strength-value')).toHaveText('A little may change (0.2)');
  for (let i = 0; i < 8; i += 1) await page.keyboard.press('ArrowRight');
  await expect(strength).toHaveValue('0.6');

  // Remove it, then paste one, then drop one: each is sent as it is.
  await page.getByRole('button', { name: 'Remove the picture' }).click();
  await expect(page.locator('.picture-thumb')).toHaveCount(0);
  await expect(page.getByRole('radio', { name: /1:1/ })).toBeChecked();
  await pastePicture(page);
  await expect(page.locator('.picture-thumb')).toBeVisible();
  await page.getByRole('button', { name: 'Remove the picture' }).click();
  await dropPicture(page);
  await expect(page.locator('.picture-thumb')).toBeVisible();
  expect(uploads.map((upload) => upload.kind)).toEqual(['picture', 'picture', 'picture']);

  // Paint over a part, undo it, paint again; hide and show the painting.
  await page.getByRole('button', { name: 'Paint over a part' }).click();
  // Opening it brings the canvas into view, clear of the sticky Generate bar (on a phone it opens
  // below the screen's edge).
  await expect
    .poll(() =>
      page.evaluate(() => {
        const canvas = document.querySelector('#painting')?.getBoundingClientRect();
        const bar = document.querySelector('.action-bar')?.getBoundingClientRect();
        return !!canvas && !!bar && canvas.top >= 0 && canvas.bottom <= bar.top;
      }),
    )
    .toBe(true);
  const undo = page.getByRole('button', { name: 'Undo' });
  await expect(undo).toBeDisabled();
  await paintStroke(page);
  await expect(undo).toBeEnabled();
  await undo.click();
  await expect(undo).toBeDisabled();
  await page.getByRole('radio', { name: 'Large' }).check();
  await paintStroke(page);
  const toggle = page.getByRole('button', { name: 'Show the painting' });
  await expect(toggle).toHaveAttribute('aria-pressed', 'true');
  await toggle.click();
  await expect(toggle).toHaveAttribute('aria-pressed', 'false');
  await toggle.click();
  await page.getByRole('button', { name: 'Done' }).click();
  await expect(page.getByText('Only the painted part changes.')).toBeVisible();
  // Painting makes the painted part anew unless a strength was chosen (it was: 0.6 stays).
  await expect(strength).toHaveValue('0.6');

  await page.locator('#prompt').fill('the sky as a storm');
  await page.getByRole('button', { name: 'Generate', exact: true }).click();
  // The gateway's refusal is shown beside the picture.
  await expect(page.locator('#source-error')).toHaveText('That picture is no longer kept.');

  // The mask went first, as a PNG at the picture's size: transparent where painted, opaque elsewhere.
  expect(uploads.map((upload) => upload.kind)).toEqual(['picture', 'picture', 'picture', 'mask']);
  const [width, height, transparent, opaque] = await maskPixels(page, uploads[3].body);
  expect([width, height]).toEqual([1024, 768]);
  expect(transparent).toBeGreaterThan(1000);
  expect(opaque).toBeGreaterThan(transparent);
  expect(transparent + opaque).toBe(width * height);
  expect(jobs).toEqual([
    {
      prompt: 'the sky as a storm',
      source: { picture: 'a3'.padEnd(64, '0'), strength: 0.6, mask: 'b4'.padEnd(64, '0') },
    },
  ]);

  // Sent again unchanged, the same mask is not uploaded again.
  await page.getByRole('button', { name: 'Generate', exact: true }).click();
  await expect.poll(() => jobs.length).toBe(2);
  expect(uploads).toHaveLength(4);
});

/** True when the gateway documents the picture API (it is then served). */
async function gatewayTakesPictures(page: Page): Promise<boolean> {
  const document = await (await page.request.get('/api/openapi.json')).json();
  return Object.keys(document.paths ?? {}).includes('/api/pictures');
}

test('"Start from this" sends an image back as a picture; the new image keeps its shape and shows what it started from', async ({ page }, testInfo) => {
  test.skip(!(await gatewayTakesPictures(page)), 'this gateway does not serve /api/pictures yet');
  await openStudio(page);
  const first = uniquePrompt(testInfo, 'a harbour at noon');
  await generate(page, { prompt: first, ratio: '16:9', seed: 7 });
  await expect(page.locator('#stage img.result-image')).toBeVisible();

  await page.locator('#stage').getByRole('button', { name: 'Start from this' }).click();
  await expect(page.locator('.picture-thumb')).toBeVisible();
  await expect(page.locator('.picture-size')).toHaveText('1024 × 576');
  await page.getByRole('button', { name: 'Paint over a part' }).click();
  await paintStroke(page);
  await page.getByRole('button', { name: 'Done' }).click();

  const sent: Request[] = [];
  page.on('request', (request) => {
    if (request.method() === 'POST' && /\/api\/(jobs|pictures)/.test(request.url())) sent.push(request);
  });
  const second = uniquePrompt(testInfo, 'the same harbour at night');
  await page.locator('#prompt').fill(second);
  await page.getByRole('button', { name: 'Generate', exact: true }).click();
  await expect(page.locator('#stage .result-prompt')).toHaveText(second);
  await expect(page.locator('#stage .result-size')).toHaveText('1024 × 576');
  expect(sent.map((request) => new URL(request.url()).search)).toEqual(['?kind=mask', '']);
  const body = sent[1].postDataJSON();
  expect(body.source.mask).toMatch(/^[0-9a-f]{64}$/);
  expect(body.source.strength).toBe(1);
  expect(body.aspect_ratio).toBeUndefined();

  // The viewer says what it started from, and how strongly.
  await page.getByRole('button', { name: `Show image: ${second}` }).click();
  const viewer = page.getByRole('dialog', { name: 'Image viewer' });
  await expect(viewer.locator('.viewer-source img')).toBeVisible();
  await expect(viewer.locator('.viewer-source')).toContainText('Everything may change (1)');

  // "Start from this" on a gallery thumbnail too: the picture is replaced by that image, unpainted.
  await page.keyboard.press('Escape');
  await expect(viewer).toBeHidden();
  await page.getByRole('button', { name: 'Remove the picture' }).click();
  await expect(page.locator('.picture-thumb')).toBeHidden();
  const uploads: Request[] = [];
  page.on('request', (request) => {
    if (request.method() === 'POST' && request.url().includes('/api/pictures')) uploads.push(request);
  });
  await page.locator('.thumbs li').first().getByRole('button', { name: 'Start from this' }).click();
  await expect(page.locator('.picture-thumb')).toBeVisible();
  await expect(page.locator('.picture-size')).toHaveText('1024 × 576');
  expect(uploads.map((request) => new URL(request.url()).search)).toEqual(['']);
});
