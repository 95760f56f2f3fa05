// The history gallery: it is the gateway's persisted history (it survives a reload), tapping an image
// shows its settings, "reuse settings" fills the form, and deleting asks first.
import { expect, test } from '@playwright/test';
import { generate, openStudio, uniquePrompt, waitForHydration } from './studio';

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
  await expect(page.locator('.result-prompt')).toHaveText(prompt);
  await expect(page.locator('.result-seed')).toHaveText('777');
  await expect(page.locator('.result-size')).toHaveText('768 × 1024');
  await page.getByRole('button', { name: 'Reuse settings' }).click();
  await expect(page.locator('#prompt')).toHaveValue(prompt);
  await expect(page.getByLabel('Seed', { exact: true })).toHaveValue('777');
  await expect(page.getByRole('radio', { name: '3:4' })).toBeChecked();

  await page.getByRole('button', { name: 'Delete', exact: true }).click();
  await expect(page.getByRole('group', { name: 'Confirm deletion' })).toBeVisible();
  await page.getByRole('button', { name: 'Yes, delete' }).click();
  await expect(thumbnail).toHaveCount(0);

  const historyLoaded = page.waitForResponse((response) => response.url().includes('/api/history'));
  await page.reload();
  await waitForHydration(page);
  await historyLoaded;
  await expect(page.getByRole('button', { name: `Show image: ${prompt}` })).toHaveCount(0);
});
