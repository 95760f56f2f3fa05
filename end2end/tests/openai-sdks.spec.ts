// OpenAI's official SDKs against the real gateway and simulator: the Node SDK (npm `openai`, pinned in
// package.json) here, and the Python SDK (PyPI `openai`, in the venv scripts/setup-tools makes) as a
// child process. No browser: these run once, in the desktop project.
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { deflateSync } from 'node:zlib';
import { expect, test } from '@playwright/test';
import OpenAI, { toFile } from 'openai';

test.beforeEach(async ({}, testInfo) => {
  test.skip(testInfo.project.name !== 'desktop', 'the SDKs need no viewport: they run once, in the desktop project');
});

const base = () => process.env.E2E_BASE_URL ?? '';
const client = () => new OpenAI({ baseURL: `${base()}/v1`, apiKey: 'sk-node-sdk', maxRetries: 0 });

/** Width and height from a base64 PNG's header. */
function pngSize(b64: string): [number, number] {
  const bytes = Buffer.from(b64, 'base64');
  expect(bytes.subarray(0, 8).toString('latin1')).toBe('\x89PNG\r\n\x1a\n');
  return [bytes.readUInt32BE(16), bytes.readUInt32BE(20)];
}

test('the Node SDK generates base64 and url images, n=2, and JPEG', async () => {
  const openai = client();
  const models = await openai.models.list();
  expect(models.data.map((model) => model.id)).toEqual(['z-image-turbo']);

  const two = await openai.images.generate({ model: 'gpt-image-1', prompt: 'a red fox', n: 2, size: '256x256' });
  expect(two.data).toHaveLength(2);
  for (const image of two.data ?? []) expect(pngSize(image.b64_json ?? '')).toEqual([256, 256]);
  expect(two.usage?.total_tokens).toBe(0);

  const { data, response } = await openai.images
    .generate({ model: 'dall-e-3', prompt: 'a lighthouse', size: '1792x1024', response_format: 'url' })
    .withResponse();
  expect(response.headers.get('x-zimage-model')).toBe('z-image-turbo');
  expect(data.data?.[0]?.url).toMatch(new RegExp(`^${base()}/api/images/`));

  const jpeg = await openai.images.generate({
    model: 'gpt-image-1',
    prompt: 'fox',
    size: '256x256',
    output_format: 'jpeg',
    output_compression: 60,
  });
  expect(jpeg.output_format).toBe('jpeg');
  expect(Buffer.from(jpeg.data?.[0]?.b64_json ?? '', 'base64').subarray(0, 3)).toEqual(Buffer.from([0xff, 0xd8, 0xff]));
});

test("the Node SDK sends LibreChat's body and reads data[0].b64_json", async () => {
  // LibreChat's image tool calls `openai.images.generate` with exactly these fields.
  const answer = await client().images.generate({
    model: 'gpt-image-1',
    prompt: 'a red fox in snow',
    n: 1,
    background: 'auto',
    output_format: 'png',
    output_compression: 100,
    quality: 'auto',
    size: 'auto',
  });
  expect(pngSize(answer.data?.[0]?.b64_json ?? '')).toEqual([1024, 1024]);
});

test('the Node SDK streams partial images then the image', async () => {
  const stream = await client().images.generate({
    model: 'gpt-image-1',
    prompt: 'fox',
    size: '256x256',
    stream: true,
    partial_images: 2,
  });
  const kinds: string[] = [];
  for await (const event of stream) {
    kinds.push(event.type);
    if (event.type === 'image_generation.partial_image') {
      expect(event.partial_image_index).toBe(kinds.filter((kind) => kind === event.type).length - 1);
    } else {
      expect(pngSize(event.b64_json)).toEqual([256, 256]);
      expect(event.usage.total_tokens).toBe(0);
    }
  }
  expect(kinds.at(-1)).toBe('image_generation.completed');
  expect(kinds.filter((kind) => kind === 'image_generation.completed')).toHaveLength(1);
  const partials = kinds.filter((kind) => kind === 'image_generation.partial_image').length;
  expect(partials).toBeGreaterThanOrEqual(1);
  expect(partials).toBeLessThanOrEqual(2);
});

test('the Node SDK raises refusals as BadRequestError naming the parameter', async () => {
  const refused = await client()
    .images.generate({ prompt: 'fox', size: '2048x2048' as '1024x1024' })
    .catch((error: unknown) => error);
  expect(refused).toBeInstanceOf(OpenAI.BadRequestError);
  expect((refused as InstanceType<typeof OpenAI.BadRequestError>).param).toBe('size');
});

/** CRC-32 of PNG chunks. */
function crc32(bytes: Buffer): number {
  let crc = 0xffffffff;
  for (const byte of bytes) {
    crc ^= byte;
    for (let bit = 0; bit < 8; bit += 1) crc = crc & 1 ? (crc >>> 1) ^ 0xedb88320 : crc >>> 1;
  }
  return (crc ^ 0xffffffff) >>> 0;
}

/** A PNG of `pixel(x, y)` (3 or 4 channels), written without an imaging library. */
function png(width: number, height: number, pixel: (x: number, y: number) => number[]): Buffer {
  const channels = pixel(0, 0).length;
  const rows: number[] = [];
  for (let y = 0; y < height; y += 1) {
    rows.push(0);
    for (let x = 0; x < width; x += 1) rows.push(...pixel(x, y));
  }
  const chunk = (kind: string, data: Buffer) => {
    const length = Buffer.alloc(4);
    length.writeUInt32BE(data.length);
    const body = Buffer.concat([Buffer.from(kind, 'latin1'), data]);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(body));
    return Buffer.concat([length, body, crc]);
  };
  const header = Buffer.alloc(13);
  header.writeUInt32BE(width, 0);
  header.writeUInt32BE(height, 4);
  header.set([8, channels === 3 ? 2 : 6, 0, 0, 0], 8);
  return Buffer.concat([
    Buffer.from('\x89PNG\r\n\x1a\n', 'latin1'),
    chunk('IHDR', header),
    chunk('IDAT', deflateSync(Buffer.from(rows))),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

test('the Node SDK edits a picture, with a mask, streamed, and reads its refusals', async () => {
  const openai = client();
  const red = () => toFile(png(256, 320, () => [200, 30, 40]), 'photo.png', { type: 'image/png' });
  const edited = await openai.images.edit({ model: 'gpt-image-1', image: await red(), prompt: 'at night', n: 2 });
  expect(edited.data).toHaveLength(2);
  for (const image of edited.data ?? []) expect(pngSize(image.b64_json ?? '')).toEqual([256, 320]);

  const mask = await toFile(png(256, 320, (x) => [0, 0, 0, x < 128 ? 0 : 255]), 'mask.png', { type: 'image/png' });
  const masked = await openai.images.edit({
    image: [await red()],
    mask,
    prompt: 'a window',
    size: '256x320' as '1024x1024',
  });
  expect(pngSize(masked.data?.[0]?.b64_json ?? '')).toEqual([256, 320]);

  const stream = await openai.images.edit({ image: await red(), prompt: 'fox', stream: true, partial_images: 1 });
  const kinds: string[] = [];
  for await (const event of stream) kinds.push(event.type);
  expect(kinds.at(-1)).toBe('image_edit.completed');

  const wrongMask = await toFile(png(64, 64, () => [0, 0, 0, 0]), 'mask.png', { type: 'image/png' });
  const refused = await openai.images
    .edit({ image: await red(), mask: wrongMask, prompt: 'fox' })
    .catch((error: unknown) => error);
  expect(refused).toBeInstanceOf(OpenAI.BadRequestError);
  expect((refused as InstanceType<typeof OpenAI.BadRequestError>).param).toBe('mask');
});

test('the Python SDK passes its checks', async () => {
  test.setTimeout(120_000);
  const python = process.env.OPENAI_PYTHON;
  expect(python, 'OPENAI_PYTHON (scripts/e2e sets it; run scripts/setup-tools)').toBeTruthy();
  const run = spawnSync(python ?? '', [join(__dirname, '..', 'sdk', 'openai_sdk.py'), base()], {
    encoding: 'utf8',
    timeout: 110_000,
  });
  expect(run.status, `${run.stdout}\n${run.stderr}`).toBe(0);
  expect(run.stdout).toContain('all passed');
});
