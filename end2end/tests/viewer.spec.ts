// Search, stars and the full-screen viewer: a search box that follows typing and survives a reload,
// a "Starred" filter, and a viewer that moves with the arrow keys or a swipe and closes with the back
// button or Esc.
import { expect, type Page, type Route } from '@playwright/test';
import { generate, openStudio, test, uniquePrompt, waitForHydration } from './studio';

test('search finds English words and Chinese substrings, survives a reload, and combines with stars', async ({ page }, testInfo) => {
  await openStudio(page);
  const tag = uniquePrompt(testInfo, 'tag').replace(/[^a-z0-9]/gi, '');
  const fox = `a crimson fox in the snow ${tag}`;
  const chinese = `一只在雪地里的红狐狸 ${tag}`;
  for (const prompt of [fox, chinese]) {
    await generate(page, { prompt, seed: 4242 });
    await expect(page.locator('#stage img.result-image')).toBeVisible();
  }
  const thumb = (prompt: string) => page.getByRole('button', { name: `Show image: ${prompt}` });
  await expect(thumb(fox)).toBeVisible();
  await expect(thumb(chinese)).toBeVisible();

  const search = page.getByRole('searchbox', { name: 'Search the history' });
  await search.fill(`狐狸 ${tag}`);
  await expect(thumb(fox)).toHaveCount(0);
  await expect(thumb(chinese)).toBeVisible();
  await expect(page).toHaveURL(/[?&]q=/);

  await page.reload();
  await waitForHydration(page);
  await expect(search).toHaveValue(`狐狸 ${tag}`);
  await expect(thumb(chinese)).toBeVisible();
  await expect(thumb(fox)).toHaveCount(0);

  await search.fill(`crimson ${tag}`);
  await expect(thumb(chinese)).toHaveCount(0);
  await expect(thumb(fox)).toBeVisible();
  await search.fill('no-such-image-anywhere');
  await expect(page.getByText('No image matches.')).toBeVisible();

  // Star the Chinese one, then the filter shows it and not the other.
  await search.fill(tag);
  await expect(thumb(fox)).toBeVisible();
  const item = page.locator('.thumbs li').filter({ has: thumb(chinese) });
  await item.getByRole('button', { name: 'Star', exact: true }).click();
  await expect(item.getByRole('button', { name: 'Unstar' })).toBeVisible();
  await page.getByLabel('Starred').check();
  await expect(thumb(chinese)).toBeVisible();
  await expect(thumb(fox)).toHaveCount(0);
  await page.reload();
  await waitForHydration(page);
  await expect(page.getByLabel('Starred')).toBeChecked();
  await expect(thumb(chinese)).toBeVisible();
  await expect(thumb(fox)).toHaveCount(0);
});

/** A gallery of three images served by the test. */
async function fakeGallery(page: Page): Promise<void> {
  const item = (n: number) => ({
    id: `fake-${n}`,
    prompt: `old image ${n}`,
    seed: n,
    width: 1024,
    height: 1024,
    timings: { queued_at: 0, finished_at: 3200 },
    created_at: 0,
    image_url: `/fake/${n}.png`,
    thumbnail_url: `/fake/${n}.png`,
    backend: 'gpu-1',
    starred: false,
  });
  await page.route('**/api/history?*', (route: Route) => route.fulfill({ json: { items: [item(3), item(2), item(1)] } }));
  const pixel = Buffer.from(
    'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==',
    'base64',
  );
  await page.route('**/fake/*', (route: Route) => route.fulfill({ body: pixel, contentType: 'image/png' }));
}

/** A horizontal swipe over the viewer's image: negative `dx` is to the left (the next image). */
async function swipe(page: Page, dx: number): Promise<void> {
  await page.locator('.viewer-stage').evaluate((element, dx) => {
    const box = element.getBoundingClientRect();
    const [x, y] = [box.left + box.width / 2, box.top + box.height / 2];
    const touch = (clientX: number) => new Touch({ identifier: 1, target: element, clientX, clientY: y });
    element.dispatchEvent(new TouchEvent('touchstart', { touches: [touch(x)], changedTouches: [touch(x)], bubbles: true }));
    element.dispatchEvent(new TouchEvent('touchend', { touches: [], changedTouches: [touch(x + dx)], bubbles: true }));
  }, dx);
}

test('the viewer opens over the page, moves through the gallery, and the back button and Esc close it', async ({ page }, testInfo) => {
  await fakeGallery(page);
  await openStudio(page);
  await page.getByRole('button', { name: 'Show image: old image 3' }).click();
  const viewer = page.getByRole('dialog', { name: 'Image viewer' });
  await expect(viewer.locator('.viewer-prompt')).toHaveText('old image 3');
  await expect(viewer.locator('.viewer-backend')).toHaveText('gpu-1');
  await expect(viewer.locator('.viewer-position')).toHaveText('1 of 3');
  await expect(page).toHaveURL(/[?&]view=fake-3/);

  if (testInfo.project.name === 'phone') {
    // The viewer fills a 360 px screen.
    const box = await viewer.boundingBox();
    expect(box?.width).toBe(360);
    await swipe(page, -120);
    await expect(viewer.locator('.viewer-prompt')).toHaveText('old image 2');
    await swipe(page, -120);
    await expect(viewer.locator('.viewer-prompt')).toHaveText('old image 1');
    await swipe(page, 120);
    await expect(viewer.locator('.viewer-prompt')).toHaveText('old image 2');
    // A mostly vertical move is not a swipe.
    await swipe(page, 10);
    await expect(viewer.locator('.viewer-prompt')).toHaveText('old image 2');
  } else {
    await page.keyboard.press('ArrowRight');
    await expect(viewer.locator('.viewer-prompt')).toHaveText('old image 2');
    await page.keyboard.press('ArrowRight');
    await page.keyboard.press('ArrowRight');
    await expect(viewer.locator('.viewer-prompt')).toHaveText('old image 1');
    await page.keyboard.press('ArrowLeft');
    await expect(viewer.locator('.viewer-prompt')).toHaveText('old image 2');
  }

  // The back button closes the viewer and leaves the studio where it was.
  await page.goBack();
  await expect(viewer).toHaveCount(0);
  await expect(page).not.toHaveURL(/view=/);
  await expect(page.locator('.studio')).toBeVisible();

  await page.getByRole('button', { name: 'Show image: old image 1' }).click();
  await expect(viewer.locator('.viewer-prompt')).toHaveText('old image 1');
  await page.keyboard.press('Escape');
  await expect(viewer).toHaveCount(0);

  // A reload with the viewer open opens it again, and the back button still closes it.
  await page.getByRole('button', { name: 'Show image: old image 2' }).click();
  await expect(page).toHaveURL(/[?&]view=fake-2/);
  await page.reload();
  await expect(viewer.locator('.viewer-prompt')).toHaveText('old image 2');
  await expect(page).toHaveURL(/[?&]view=fake-2/);
  await page.goBack();
  await expect(viewer).toHaveCount(0);
  await expect(page).not.toHaveURL(/view=/);
  await expect(page.locator('.studio')).toBeVisible();
});
