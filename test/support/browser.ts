// Real headless Chromium for end-to-end tests, driven by playwright-core. Uses the system's
// Chromium (Debian: /usr/bin/chromium, or CHROMIUM_PATH); never downloads a browser.
// Without Chromium a suite is skipped with a printed reason, except on CI (CI=true) where the
// missing browser is an error.
import { accessSync, constants } from 'node:fs';

import { chromium, type Browser, type ConsoleMessage, type Page, type Request, type Response } from 'playwright-core';

export const CHROMIUM_PATH = process.env.CHROMIUM_PATH || '/usr/bin/chromium';

export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

function chromiumMissingReason(): string | undefined {
  try {
    accessSync(CHROMIUM_PATH, constants.X_OK);
    return undefined;
  } catch (error) {
    return `${CHROMIUM_PATH} is not an executable (${(error as NodeJS.ErrnoException).code ?? String(error)})`;
  }
}

/**
 * Whether browser suites can run. When Chromium is missing: prints why and returns false, or
 * throws when CI=true (a CI run must not silently skip the browser tests).
 * Use as `describe.skipIf(!chromiumAvailable('keycloak-js e2e'))(...)`.
 */
export function chromiumAvailable(suite = 'browser tests'): boolean {
  const reason = chromiumMissingReason();
  if (!reason) return true;
  if (process.env.CI === 'true') throw new Error(`${suite}: Chromium is required on CI but ${reason}`);
  console.warn(`[skip] ${suite}: ${reason} (install Debian's chromium or set CHROMIUM_PATH)`);
  return false;
}

/** Launches headless Chromium (about 2 s). The caller closes it. */
export async function launchChromium(): Promise<Browser> {
  const reason = chromiumMissingReason();
  if (reason) throw new Error(`cannot launch Chromium: ${reason}`);
  return chromium.launch({ executablePath: CHROMIUM_PATH, args: CHROMIUM_ARGS, timeout: 30_000 });
}

/**
 * Records what a page (and its frames) says: console messages, page errors, failed requests and
 * HTTP error responses. `dump()` gives a readable transcript for assertion messages.
 */
export function recordPage(page: Page): { lines: string[]; dump(): string } {
  const lines: string[] = [];
  page.on('console', (message: ConsoleMessage) => { lines.push(`console.${message.type()}: ${message.text()} (${message.location().url})`); });
  page.on('pageerror', (error: Error) => { lines.push(`pageerror: ${error.message}`); });
  page.on('requestfailed', (request: Request) => { lines.push(`requestfailed: ${request.method()} ${request.url()} ${request.failure()?.errorText ?? ''}`); });
  page.on('response', (response: Response) => {
    if (response.status() >= 400) lines.push(`response ${response.status()}: ${response.request().method()} ${response.url()}`);
  });
  page.on('framenavigated', (frame) => { if (frame === page.mainFrame()) lines.push(`navigated: ${frame.url()}`); });
  return { lines, dump: () => lines.join('\n') };
}
