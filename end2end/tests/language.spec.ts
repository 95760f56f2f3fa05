// The studio in English and in Simplified Chinese: the browser's language picks the first render (no
// flash of the other language, the right <html lang>), the switch at the top changes it and the device
// remembers it, and no word of the other language is on screen, only the person's own prompt. Every
// test runs on the desktop and the phone project.
import { expect, type Page } from '@playwright/test';
import { test, uniquePrompt, waitForHydration } from './studio';

const CJK = /[\u3000-\u303f\u4e00-\u9fff\uff00-\uffef]/;
// Words of the English interface (product names such as Z-Image-Turbo, ComfyUI and GPU stay Latin in
// both languages).
const ENGLISH_UI = /\b(Generate|Cancel|Prompt|Seed|Aspect ratio|History|Pair a phone|Download|Delete|Reuse|Sampling|Queued|Done|Ready|Demo|Checking|Examples|Random|Load more|Describe)\b/;

/** The text a person sees (text, placeholders, accessible names), without what names the other language
 * on purpose (elements with `lang`: the switch) and without people's prompts (the given ones, and the
 * gallery's). */
async function visibleText(page: Page, prompts: string[] = []): Promise<string> {
  const text = await page.evaluate(() => {
    const clone = document.body.cloneNode(true) as HTMLElement;
    for (const element of clone.querySelectorAll('[lang], script, noscript, details:not([open]) > :not(summary)')) {
      element.remove();
    }
    // innerText of a detached clone is its textContent; placeholders are text people read too.
    const placeholders = [...document.querySelectorAll('[placeholder]')].map((element) => element.getAttribute('placeholder'));
    const labels = [...document.querySelectorAll('[aria-label]')]
      // The gallery's buttons are named after the prompts of every device (people's own words).
      .filter((element) => !element.closest('[lang], .thumbs'))
      .map((element) => element.getAttribute('aria-label'));
    return [clone.textContent, ...placeholders, ...labels].join('\n');
  });
  return prompts.reduce((rest, prompt) => rest.split(prompt).join(' '), text);
}

test.describe('English browser', () => {
  test.use({ locale: 'en-US' });

  test('the studio is in English, and a Chinese prompt is the only Chinese on screen', async ({ page }, testInfo) => {
    await page.goto('/');
    await expect(page.locator('html')).toHaveAttribute('lang', 'en');
    await expect(page.locator('#prompt')).toHaveAttribute('placeholder', 'Describe the image...');
    expect(await visibleText(page)).not.toMatch(CJK);
    await waitForHydration(page);

    const prompt = uniquePrompt(testInfo, '雨后的江南石桥，水墨画');
    await page.locator('#prompt').fill(prompt);
    await expect(page.locator('#prompt-count')).toHaveText(`${[...prompt].length} / 2000`);
    await page.getByRole('button', { name: 'Generate', exact: true }).click();
    await expect(page.locator('#stage img.result-image')).toBeVisible();
    await expect(page.locator('.result-prompt')).toHaveText(prompt);
    expect(await visibleText(page, [prompt])).not.toMatch(CJK);
  });
});

test.describe('Chinese browser', () => {
  test.use({ locale: 'zh-CN' });

  test('the first render is Chinese, and generating keeps every word Chinese', async ({ page }, testInfo) => {
    await page.goto('/');
    // Server-rendered in Chinese before any script runs: no flash of English.
    await expect(page.locator('html')).toHaveAttribute('lang', 'zh-CN');
    await expect(page.locator('#prompt')).toHaveAttribute('placeholder', '描述你想要的画面……');
    await expect(page.getByRole('button', { name: '生成', exact: true })).toBeVisible();
    expect(await visibleText(page)).not.toMatch(ENGLISH_UI);
    await waitForHydration(page);

    // The status light's detail is Chinese too: the gateway's English sentence is not shown for what
    // the page can say itself (ready, on which device, on the CPU).
    await expect(page.locator('.status-label')).toContainText('就绪');
    await page.locator('.status-summary').click();
    await expect(page.locator('.status-detail')).toBeVisible();
    await expect(page.locator('.status-detail p').first()).toContainText('已就绪');
    expect(await visibleText(page)).not.toMatch(ENGLISH_UI);
    await page.locator('.status-summary').click();

    // An example prompt fills the box; the counter counts characters, not bytes.
    await page.getByRole('button', { name: '灯塔' }).click();
    const example = await page.locator('#prompt').inputValue();
    expect(example).toMatch(CJK);
    await expect(page.locator('#prompt-count')).toHaveText(`${[...example].length} / 2000`);

    const prompt = uniquePrompt(testInfo, '一只戴着斗笠的橘猫');
    await page.locator('#prompt').fill(prompt);
    await page.getByRole('button', { name: '生成', exact: true }).click();
    await expect(page.locator('.progress-label')).toHaveText(/排队中|正在开始|采样中|解码中|完成/);
    await expect(page.locator('#stage img.result-image')).toBeVisible();
    await expect(page.locator('.result-prompt')).toHaveText(prompt);
    await expect(page.getByRole('link', { name: '下载' })).toBeVisible();
    await expect(page.getByRole('heading', { name: '历史记录' })).toBeVisible();
    const shown = await visibleText(page, [prompt]);
    expect(shown).not.toMatch(ENGLISH_UI);

    // Reusing the image's settings brings its Chinese prompt back exactly.
    await page.locator('#prompt').fill('');
    await page.getByRole('button', { name: '复用设置' }).click();
    await expect(page.locator('#prompt')).toHaveValue(prompt);
  });

  test("the gateway's error message is Chinese too", async ({ page }) => {
    await page.goto('/');
    await waitForHydration(page);
    await page.getByRole('button', { name: '生成', exact: true }).click();
    await expect(page.locator('#prompt-error')).toHaveText('请描述画面：提示词为空。');
    expect(await visibleText(page)).not.toMatch(ENGLISH_UI);
  });
});

test('the switch changes the language and the device remembers it', async ({ page }) => {
  await page.goto('/');
  await expect(page.locator('html')).toHaveAttribute('lang', 'en');
  await page.locator('nav.language a').click();
  await expect(page.locator('html')).toHaveAttribute('lang', 'zh-CN');
  await expect(page.getByRole('button', { name: '生成', exact: true })).toBeVisible();
  await waitForHydration(page);
  await page.reload();
  await expect(page.locator('html')).toHaveAttribute('lang', 'zh-CN');
  expect(await visibleText(page)).not.toMatch(ENGLISH_UI);
  await page.locator('nav.language a').click();
  await expect(page.locator('html')).toHaveAttribute('lang', 'en');
  expect(await visibleText(page)).not.toMatch(CJK);
});
