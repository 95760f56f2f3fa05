// LoRAs and saved styles in the studio: a style saved from the current settings, applied with one tap
// (its shape comes back, its words wrap the prompt at the gateway), renamed and deleted; the LoRA
// picker (at most four, a strength slider each, trigger words that go into the prompt) with the LoRA
// list answered by the test itself; and, where the studio's backends list LoRAs (GET /api/loras), a
// LoRA picked from the real list travels to the image, its viewer and "Reuse".
import { expect } from '@playwright/test';
import { openStudio, test, uniquePrompt } from './studio';

const FAKE_LORAS = {
  loras: [
    { name: 'watercolor.safetensors', backends: ['gpu-1'], trigger_words: ['wtrclr style'] },
    { name: 'ink.safetensors', backends: ['gpu-1'] },
    { name: 'styles/film.safetensors', backends: ['gpu-1'] },
    { name: 'grain.safetensors', backends: ['gpu-1'] },
    { name: 'neon.safetensors', backends: ['gpu-1'] },
  ],
};

test('a style is saved from the form, applied with one tap, renamed and deleted', async ({ page }, testInfo) => {
  test.setTimeout(60_000);
  await openStudio(page);
  const name = `Watercolor ${testInfo.project.name} ${Date.now().toString(36)}`;
  const styles = page.locator('fieldset.styles');
  await page.getByRole('radio', { name: '16:9' }).check();
  await styles.locator('summary').click();
  await page.getByLabel('Style name').fill(name);
  await page.getByLabel('Words before the prompt').fill('a watercolor painting of');
  await styles.getByRole('button', { name: 'Save as a new style' }).click();
  const chip = styles.getByRole('button', { name, exact: true });
  await expect(chip).toHaveAttribute('aria-pressed', 'true');
  await expect(styles.locator('.style-words')).toContainText('a watercolor painting of');

  // Shared with every device: after a reload it is listed; one tap brings its shape back.
  await openStudio(page);
  await page.getByRole('radio', { name: '1:1' }).check();
  await chip.click();
  await expect(chip).toHaveAttribute('aria-pressed', 'true');
  await expect(page.getByRole('radio', { name: '16:9' })).toBeChecked();

  // The job is made by the style: the gateway wraps the prompt.
  const prompt = uniquePrompt(testInfo, 'a heron');
  await page.locator('#prompt').fill(prompt);
  await page.getByRole('button', { name: 'Generate', exact: true }).click();
  await expect(page.locator('.result-image')).toBeVisible({ timeout: 30_000 });
  const history = await (await page.request.get('/api/history')).json();
  const made = history.items.find((item: { prompt: string }) => item.prompt.includes(prompt));
  expect(made.prompt).toBe(`a watercolor painting of ${prompt}`);
  expect([made.width, made.height]).toEqual([1024, 576]);

  // Renamed, then deleted.
  const renamed = `${name} 2`;
  await styles.locator('summary').click();
  await page.getByLabel('Style name').fill(renamed);
  await styles.getByRole('button', { name: 'Rename' }).click();
  await expect(styles.getByRole('button', { name: renamed, exact: true })).toHaveAttribute('aria-pressed', 'true');
  await expect(chip).toHaveCount(0);
  await styles.getByRole('button', { name: 'Delete style' }).click();
  await expect(styles.getByRole('button', { name: renamed, exact: true })).toHaveCount(0);
  await expect(styles.getByRole('button', { name: 'No style' })).toHaveAttribute('aria-pressed', 'true');

  // A taken name is refused with the gateway's sentence.
  await page.getByLabel('Style name').fill(name);
  await styles.getByRole('button', { name: 'Save as a new style' }).click();
  await page.getByLabel('Style name').fill(name.toUpperCase());
  await styles.getByRole('button', { name: 'Save as a new style' }).click();
  await expect(page.locator('#styles-error')).toHaveText('Another style already has this name.');
  await page.getByRole('button', { name, exact: true }).click();
  await styles.getByRole('button', { name: 'Delete style' }).click();
  await expect(styles.getByRole('button', { name, exact: true })).toHaveCount(0);
});

test('the LoRA picker takes four at most, each with a strength, and sends them', async ({ page }) => {
  await page.route('**/api/loras', (route) => route.fulfill({ json: FAKE_LORAS }));
  await openStudio(page);
  const picker = page.locator('fieldset.loras');
  const add = picker.getByLabel('Add a LoRA');
  await add.selectOption('watercolor.safetensors');
  await expect(picker.locator('.lora-name')).toHaveText(['watercolor.safetensors']);
  // The trigger words go into the prompt with a tap.
  await page.locator('#prompt').fill('a fox');
  await picker.getByRole('button', { name: 'wtrclr style' }).click();
  await expect(page.locator('#prompt')).toHaveValue('a fox, wtrclr style');
  const slider = picker.getByLabel('Strength of watercolor.safetensors');
  await slider.fill('0.85');
  await expect(picker.locator('.lora-value').first()).toHaveText('0.85');
  for (const name of ['ink.safetensors', 'styles/film.safetensors', 'grain.safetensors']) await add.selectOption(name);
  await expect(picker.locator('.lora')).toHaveCount(4);
  await expect(add).toBeDisabled();
  await picker.getByRole('button', { name: 'Remove grain.safetensors' }).click();
  await expect(picker.locator('.lora')).toHaveCount(3);

  // What Generate sends: the LoRAs with their strengths.
  const sent = page.waitForRequest((request) => request.url().endsWith('/api/jobs') && request.method() === 'POST');
  await page.route('**/api/jobs', (route) => route.fulfill({ status: 422, json: { error: { code: 'invalid_field', message: 'No backend has ink.safetensors.', field: 'loras[1].name' } } }));
  await page.getByRole('button', { name: 'Generate', exact: true }).click();
  const body = (await sent).postDataJSON();
  expect(body.loras).toEqual([
    { name: 'watercolor.safetensors', strength: 0.85 },
    { name: 'ink.safetensors', strength: 1 },
    { name: 'styles/film.safetensors', strength: 1 },
  ]);
  await expect(page.locator('#loras-error')).toHaveText('No backend has ink.safetensors.');
});

// Needs GET /api/loras from the gateway: skipped where the studio's backends list no LoRA.
test('a LoRA from the studio\'s list travels to the image, its viewer and Reuse', async ({ page, request }, testInfo) => {
  const answer = await request.get('/api/loras');
  const list = answer.ok() ? ((await answer.json()) as typeof FAKE_LORAS).loras : [];
  test.skip(list.length === 0, 'the studio lists no LoRA (GET /api/loras missing or empty)');
  const lora = list[0].name;
  await openStudio(page);
  const picker = page.locator('fieldset.loras');
  await picker.getByLabel('Add a LoRA').selectOption(lora);
  await picker.getByLabel(`Strength of ${lora}`).fill('0.5');
  const prompt = uniquePrompt(testInfo, 'a lighthouse');
  await page.locator('#prompt').fill(prompt);
  await page.getByRole('button', { name: 'Generate', exact: true }).click();
  // Its own image: other tests make images on the same studio at the same time.
  const thumb = page.getByRole('button', { name: `Show image: ${prompt}` });
  await expect(thumb).toBeVisible({ timeout: 30_000 });
  await picker.getByRole('button', { name: `Remove ${lora}` }).click();
  await expect(picker.locator('.lora')).toHaveCount(0);
  await thumb.click();
  await expect(page.locator('.viewer-loras')).toHaveText(`${lora} (0.5)`);
  await page.locator('.viewer').getByRole('button', { name: 'Reuse' }).click();
  await expect(picker.locator('.lora-name')).toHaveText([lora]);
});
