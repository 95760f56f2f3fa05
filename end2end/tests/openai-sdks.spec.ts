// OpenAI's official SDKs against the real gateway and simulator: the Node SDK (npm `openai`, pinned in
// package.json) here, and the Python SDK (PyPI `openai`, in the venv scripts/setup-tools makes) as a
// child process. No browser: these run once, in the desktop project.
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { expect, test } from '@playwright/test';
import OpenAI from 'openai';

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
