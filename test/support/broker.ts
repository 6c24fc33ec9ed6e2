// Browser-less helpers for identity brokering tests: follow redirects across our server, upstream
// realms and IdPs with a path-aware cookie jar, read what a page says, find a provider's button.
import { decodeJwt } from 'jose';

import { decodeEntities, get, type CookieJar } from './browserless.ts';

export type BrowsedPage = { status: number; url: string; html: string };

/**
 * Follows redirects from `start` (or from `response`, the answer to a request already made there)
 * until `stop` returns a result for a redirect target, or a response is not a redirect (a page).
 */
export async function followRedirects<T>(start: string, jar: CookieJar, stop: (url: string) => T | undefined, response?: Response): Promise<T | { page: BrowsedPage }> {
  let url = start;
  let current = response ?? await get(url, jar);
  for (let hops = 0; hops < 15; hops++) {
    if (current.status < 300 || current.status >= 400) return { page: { status: current.status, url, html: await current.text() } };
    url = new URL(current.headers.get('location')!, url).href;
    const stopped = stop(url);
    if (stopped !== undefined) return stopped;
    current = await get(url, jar);
  }
  throw new Error(`too many redirects at ${url}`);
}

/** What a page says (its error, info or field message), for failure messages. */
export function pageSays(page: BrowsedPage): string {
  const message = /id="kc-(?:error|info)-message"[^>]*>([^<]*)</.exec(page.html)?.[1] ?? /class="kc-field-error"[^>]*>([^<]*)</.exec(page.html)?.[1];
  return `${page.status} at ${page.url}: ${message ?? page.html.slice(0, 300)}`;
}

/** The href of the login page's button for `alias` (id="social-{alias}"). */
export function providerLink(html: string, alias: string): string | undefined {
  const match = new RegExp(`id="social-${alias}"[^>]*href="([^"]+)"`).exec(html) ?? new RegExp(`href="([^"]+)"[^>]*id="social-${alias}"`).exec(html);
  return match ? decodeEntities(match[1]!) : undefined;
}

/** The realm roles in a token response's access token, sorted. */
export function realmRolesOf(tokens: Record<string, unknown>): string[] {
  return ((decodeJwt(tokens.access_token as string).realm_access as { roles?: string[] } | undefined)?.roles ?? []).slice().sort();
}

/** Polls `read` until `ok` (events are written off the request path). */
export async function until<T>(read: () => Promise<T>, ok: (value: T) => boolean): Promise<T> {
  for (let i = 0; i < 50; i++) {
    const value = await read();
    if (ok(value)) return value;
    await new Promise((r) => setTimeout(r, 100));
  }
  return read();
}
