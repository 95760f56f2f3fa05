// Every screen against axe-core's WCAG 2 A and AA rules, on a 360 px phone, in the light and dark
// schemes and in English and Chinese: the studio with its gallery and its status light open, the
// picture to start from with its strength and the painting over it, and the full-screen viewer. One
// test walks all of them, so the server and the page are set up once.
import AxeBuilder from '@axe-core/playwright';
import { expect, type Page } from '@playwright/test';
import { fakeGallery, fakePictures, pixelPng } from './fakes';
import { saveScreenshot, test, waitForHydration } from './studio';

/** axe's findings on the page as it is, one line each (rule, impact, what it says, where). */
async function violations(page: Page, screen: string): Promise<string[]> {
  const results = await new AxeBuilder({ page }).withTags(['wcag2a', 'wcag2aa']).analyze();
  return results.violations.flatMap((violation) =>
    violation.nodes.map(
      (node) => `${screen}: ${violation.id} (${violation.impact}) ${node.failureSummary?.replace(/\s+/g, ' ')} at ${node.target.join(' ')}`,
    ),
  );
}

const combinations = (['light', 'dark'] as const).flatMap((colorScheme) =>
  (['en', 'zh-CN'] as const).map((lang) => ({ colorScheme, lang })),
);

test('every screen passes axe WCAG 2 AA at 360 px, light and dark, English and Chinese', async ({ page, context, baseURL }, testInfo) => {
  test.skip(testInfo.project.name !== 'phone', 'checked at the phone width');
  test.setTimeout(120_000);
  await fakeGallery(page);
  await fakePictures(page);
  // LoRAs as a studio with LoRAs lists them, so the picker is shown.
  await page.route('**/api/loras', (route) =>
    route.fulfill({ json: { loras: [{ name: 'watercolor.safetensors', backends: ['gpu-1'], trigger_words: ['wtrclr style'] }] } }),
  );
  const found: string[] = [];
  for (const { colorScheme, lang } of combinations) {
    const where = `${colorScheme}, ${lang}`;
    await context.addCookies([{ name: 'zimage_lang', value: lang, url: baseURL ?? '' }]);
    await page.emulateMedia({ colorScheme });
    await page.goto('/');
    await waitForHydration(page);
    await expect(page.locator('html')).toHaveAttribute('lang', lang);
    await expect(page.locator('.thumbs li')).toHaveCount(3);
    found.push(...(await violations(page, `studio (${where})`)));

    // The status light open: its sentences in the page's language.
    await page.locator('.status-summary').click();
    await expect(page.locator('.status-detail')).toBeVisible();
    found.push(...(await violations(page, `status light open (${where})`)));
    await page.locator('.status-summary').click();

    // A LoRA picked, and the form to save a style open.
    await page.locator('.lora-add').selectOption('watercolor.safetensors');
    await expect(page.locator('.lora')).toHaveCount(1);
    await page.locator('.style-save summary').click();
    found.push(...(await violations(page, `LoRAs and styles (${where})`)));
    const wide = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
    if (wide > 0) found.push(`LoRAs and styles (${where}): ${wide} px wider than the screen`);

    // A picture to start from, with the painting open over it.
    await page.locator('#source input[type=file]').setInputFiles({ name: 'photo.png', mimeType: 'image/png', buffer: pixelPng });
    await expect(page.locator('.picture-thumb')).toBeVisible();
    await page.locator('.picture-tools button').first().click();
    await expect(page.locator('#painting')).toBeVisible();
    found.push(...(await violations(page, `picture and painting (${where})`)));
    // Pleasant at 360 px: nothing wider than the screen, whatever the language.
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
    if (overflow > 0) found.push(`picture and painting (${where}): ${overflow} px wider than the screen`);
    await saveScreenshot(page, testInfo, `picture-${colorScheme}-${lang}`);

    // The full-screen viewer, with the delete confirmation open.
    await page.locator('.thumb').first().click();
    const viewer = page.locator('.viewer');
    await expect(viewer.locator('.viewer-prompt')).toHaveText('old image 3');
    found.push(...(await violations(page, `viewer (${where})`)));
    await viewer.locator('.danger-outline').click();
    await expect(viewer.locator('.confirm')).toBeVisible();
    found.push(...(await violations(page, `viewer, confirming (${where})`)));
  }
  expect(found).toEqual([]);
});
