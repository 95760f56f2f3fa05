// Answers the tests give in place of the gateway, for screens that need particular data (a gallery of
// known images, an uploaded picture) without making it first.
import type { Page, Route } from '@playwright/test';

/** A 1x1 PNG, drawn at whatever size an <img> says. */
export const pixelPng = Buffer.from(
  'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==',
  'base64',
);

/** A gallery of three images served by the test. */
export async function fakeGallery(page: Page): Promise<void> {
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
    starred: n === 2,
  });
  await page.route('**/api/history?*', (route: Route) => route.fulfill({ json: { items: [item(3), item(2), item(1)] } }));
  await page.route('**/fake/*', (route: Route) => route.fulfill({ body: pixelPng, contentType: 'image/png' }));
}

export interface Upload {
  kind: string;
  body: Buffer;
}

/** `POST /api/pictures` answered as the pinned API says (a 1024 x 768 picture), and
 * `GET /api/pictures/{id}` with a PNG; returns the uploads received, in order. */
export async function fakePictures(page: Page, size = { width: 1024, height: 768 }): Promise<Upload[]> {
  const uploads: Upload[] = [];
  await page.route('**/api/pictures**', async (route: Route) => {
    const request = route.request();
    if (request.method() === 'POST') {
      const kind = new URL(request.url()).searchParams.get('kind') ?? 'picture';
      uploads.push({ kind, body: request.postDataBuffer() ?? Buffer.alloc(0) });
      const id = `${kind === 'mask' ? 'b' : 'a'}${uploads.length}`.padEnd(64, '0');
      await route.fulfill({ status: 201, json: { id, ...size, kind } });
    } else {
      await route.fulfill({ body: pixelPng, contentType: 'image/png' });
    }
  });
  return uploads;
}
