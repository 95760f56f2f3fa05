// The history gallery: it is the gateway's persisted history (it survives a reload), tapping an image
// opens it in the viewer with its settings, "reuse" fills the form, and deleting asks first.
import { expect, type Route } from '@playwright/test';
import { generate, openStudio, test, uniquePrompt, waitForHydration } from './studio';

test('history shows the image after a reload; reuse settings fills the form; delete asks first', async ({ page }, testInfo) => {
  await openStudio(page);
  const prompt = uniquePrompt(testInfo, 'a red bicycle in the rain');
  await generate(page, { prompt, ratio: '3:4', seed: 777 });
  await expect(page.locator('#stage img.result-image')).toBeVisible();

  await page.reload();
  await waitForHydration(page);
  const thumbnail = page.getByRole('button', { name: `Show image: ${prompt}` });
  await expect(thumbnail).toBeVisible();

  // A different form first, so reuse visibly changes it.
  await page.locator('#prompt').fill('something else');
  await page.getByRole('radio', { name: '1:1' }).check();
  await page.getByLabel('Seed', { exact: true }).fill('');

  await thumbnail.click();
  const viewer = page.getByRole('dialog', { name: 'Image viewer' });
  await expect(viewer.locator('.viewer-prompt')).toHaveText(prompt);
  await expect(viewer.locator('.viewer-seed')).toHaveText('777');
  await expect(viewer.locator('.viewer-size')).toHaveText('768 × 1024');
  await viewer.getByRole('button', { name: 'Reuse', exact: true }).click();
  await expect(viewer).toHaveCount(0);
  await expect(page.locator('#prompt')).toHaveValue(prompt);
  await expect(page.getByLabel('Seed', { exact: true })).toHaveValue('777');
  await expect(page.getByRole('radio', { name: '3:4' })).toBeChecked();

  await thumbnail.click();
  await viewer.getByRole('button', { name: 'Delete', exact: true }).click();
  await expect(viewer.getByRole('group', { name: 'Delete this image?' })).toBeVisible();
  await viewer.getByRole('button', { name: 'Yes, delete' }).click();
  await expect(thumbnail).toHaveCount(0);

  const historyLoaded = page.waitForResponse((response) => response.url().includes('/api/history'));
  await page.reload();
  await waitForHydration(page);
  await historyLoaded;
  await expect(page.getByRole('button', { name: `Show image: ${prompt}` })).toHaveCount(0);
});

test('scrolling to the end of the gallery loads three older pages, then "Load more" does', async ({ page }) => {
  // A history of 126 images in pages of 24, served by the test so that it needs no generations.
  const total = 126;
  const item = (n: number) => ({
    id: `fake-${n}`,
    prompt: `old image ${n}`,
    seed: n,
    width: 1024,
    height: 1024,
    timings: { queued_at: 0 },
    created_at: 0,
    image_url: `/fake/${n}.png`,
    thumbnail_url: `/fake/${n}.png`,
  });
  const asked: (string | null)[] = [];
  await page.route('**/api/history?*', (route: Route) => {
    const before = new URL(route.request().url()).searchParams.get('before');
    asked.push(before);
    const newest = before === null ? total : Number(before.replace('fake-', '')) - 1;
    const oldest = Math.max(1, newest - 23);
    const items = Array.from({ length: newest - oldest + 1 }, (_, k) => item(newest - k));
    return route.fulfill({ json: oldest > 1 ? { items, next_before: `fake-${oldest}` } : { items } });
  });
  // A 1x1 PNG for every fake thumbnail.
  const pixel = Buffer.from(
    'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==',
    'base64',
  );
  await page.route('**/fake/*', (route: Route) => route.fulfill({ body: pixel, contentType: 'image/png' }));

  await openStudio(page);
  const thumbnails = page.locator('.thumbs li');
  await expect(thumbnails).toHaveCount(24);
  for (const count of [48, 72, 96]) {
    await page.locator('.gallery-end').scrollIntoViewIfNeeded();
    await expect(thumbnails).toHaveCount(count);
  }
  // Then the page's foot stays where it is: the button loads the next page.
  const loadMore = page.getByRole('button', { name: 'Load more' });
  const pairPhone = page.getByRole('link', { name: 'Pair a phone' });
  await pairPhone.scrollIntoViewIfNeeded();
  await expect(loadMore).toBeEnabled();
  await expect(pairPhone).toBeInViewport();
  await loadMore.click();
  await expect(thumbnails).toHaveCount(120);
  await expect(loadMore).toBeEnabled();
  expect(asked).toEqual([null, 'fake-103', 'fake-79', 'fake-55', 'fake-31']);
  // The button arms scrolling again; the last page ends the gallery.
  await page.locator('.gallery-end').scrollIntoViewIfNeeded();
  await expect(thumbnails).toHaveCount(total);
  await expect(loadMore).toHaveCount(0);
});
