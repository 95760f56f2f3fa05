// Helpers shared by the specs: open the studio once hydrated, fill and submit the form, and record the
// progress bar as it changes (a job takes about two seconds, faster than polling can follow).
import { test as base, expect, type Page, type TestInfo } from '@playwright/test';

/** Playwright's `test`, failing any test in which the page threw (a panic of the bundle included). */
export const test = base.extend({
  page: async ({ page }, use) => {
    const uncaught: string[] = [];
    page.on('pageerror', (error) => uncaught.push(error.message));
    await use(page);
    expect(uncaught, 'uncaught errors in the page').toEqual([]);
  },
});

/** Opens the studio and waits until the WebAssembly bundle has taken over the server-rendered page. */
export async function openStudio(page: Page): Promise<void> {
  await page.goto('/');
  await waitForHydration(page);
}

export async function waitForHydration(page: Page): Promise<void> {
  await expect(page.locator('.studio[data-hydrated="true"]')).toBeAttached();
}

/** A prompt no other test (or earlier run) uses, so the gallery item is this test's own. */
export function uniquePrompt(testInfo: TestInfo, words: string): string {
  return `${words} [${testInfo.project.name} ${Date.now().toString(36)}]`;
}

export interface Settings {
  prompt: string;
  ratio?: string;
  seed?: number;
}

/** Fills the form and presses Generate. */
export async function generate(page: Page, settings: Settings): Promise<void> {
  await page.locator('#prompt').fill(settings.prompt);
  if (settings.ratio) await page.getByRole('radio', { name: settings.ratio }).check();
  if (settings.seed !== undefined) await page.getByLabel('Seed', { exact: true }).fill(String(settings.seed));
  await page.getByRole('button', { name: 'Generate', exact: true }).click();
}

export interface ProgressSample {
  value: number;
  label: string;
  preview: boolean;
}

/** Starts recording every change of the progress bar, its label and the live preview. */
export async function recordProgress(page: Page): Promise<void> {
  await page.evaluate(() => {
    const samples: ProgressSample[] = [];
    (window as unknown as { progressSamples: ProgressSample[] }).progressSamples = samples;
    const stage = document.querySelector('#stage');
    if (!stage) throw new Error('no stage');
    const record = () => {
      const bar = stage.querySelector('[role=progressbar]');
      samples.push({
        value: Number(bar?.getAttribute('aria-valuenow') ?? 0),
        label: stage.querySelector('.progress-label')?.textContent ?? '',
        preview: stage.querySelector('img.preview') !== null,
      });
    };
    new MutationObserver(record).observe(stage, { attributes: true, childList: true, subtree: true, characterData: true });
  });
}

export async function recordedProgress(page: Page): Promise<ProgressSample[]> {
  return page.evaluate(() => (window as unknown as { progressSamples: ProgressSample[] }).progressSamples);
}

/** The sampling steps the label showed, in the order it showed them, each once. */
export function stepsShown(samples: ProgressSample[]): number[] {
  const steps: number[] = [];
  for (const sample of samples) {
    const step = /step (\d+) of 8/.exec(sample.label)?.[1];
    if (step !== undefined && steps[steps.length - 1] !== Number(step)) steps.push(Number(step));
  }
  return steps;
}

/** Saves a full-page screenshot as an artifact of the test (under test-results/, and in the report). */
export async function saveScreenshot(page: Page, testInfo: TestInfo, name: string): Promise<void> {
  const path = testInfo.outputPath(`${name}-${testInfo.project.name}.png`);
  await page.screenshot({ path, fullPage: true });
  await testInfo.attach(`${name} (${testInfo.project.name})`, { path, contentType: 'image/png' });
}
