// The login pages' language: Keycloak's language menu (kc_locale, remembered in the KEYCLOAK_LOCALE
// cookie for the realm), ui_locales and the browser's Accept-Language, among the realm's locales.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { CookieJar, decodeEntities, get, parseForm, post } from '../support/browserless.ts';
import { startAdminBench, type AdminBench } from '../support/admin.ts';

const REDIRECT = 'http://127.0.0.1:1/cb';

describe('login page language', () => {
  let bench: AdminBench;

  beforeAll(async () => {
    bench = await startAdminBench();
    await bench.admin.realms.create({ realm: 'i18n', enabled: true, internationalizationEnabled: true, supportedLocales: ['en', 'de'], defaultLocale: 'en' });
    await bench.admin.realms.create({ realm: 'plain', enabled: true });
    for (const realm of ['i18n', 'plain']) await bench.admin.clients.create({ realm, clientId: 'web', publicClient: true, redirectUris: [REDIRECT] });
  });
  afterAll(async () => {
    await bench?.stop();
  });

  const authUrl = (realm: string, extra: Record<string, string> = {}): string => `${bench.server.url}/realms/${realm}/protocol/openid-connect/auth?${new URLSearchParams({
    client_id: 'web', response_type: 'code', scope: 'openid', redirect_uri: REDIRECT, code_challenge: 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM', code_challenge_method: 'S256', ...extra,
  })}`;

  /** Follows the authorization redirect to the first login page. */
  async function loginPage(url: string, jar: CookieJar, headers: Record<string, string> = {}): Promise<{ url: string; html: string }> {
    let response = await get(url, jar, headers);
    let current = url;
    while (response.status >= 300 && response.status < 400) {
      current = new URL(response.headers.get('location')!, current).href;
      response = await get(current, jar, headers);
    }
    return { url: current, html: await response.text() };
  }
  const title = (html: string): string => decodeEntities(/<h1[^>]*>([^<]*)<\/h1>/.exec(html)?.[1] ?? '');
  const menu = (html: string): Array<{ label: string; href: string; current: boolean }> =>
    [...html.matchAll(/<a class="kc-locale-item( kc-locale-current)?" href="([^"]+)"[^>]*>([^<]*)<\/a>/g)]
      .map((m) => ({ label: m[3]!, href: decodeEntities(m[2]!), current: m[1] !== undefined }));

  it('offers the realm\'s languages; the chosen one is kept for the next pages', async () => {
    const jar = new CookieJar();
    const first = await loginPage(authUrl('i18n'), jar, { 'accept-language': 'en-US,en;q=0.9' });
    expect(title(first.html)).toBe('Sign in to your account');
    const links = menu(first.html);
    expect(links.map((l) => [l.label, l.current])).toEqual([['English', true], ['Deutsch', false]]);

    const german = await get(new URL(links[1]!.href, first.url).href, jar, { 'accept-language': 'en-US,en;q=0.9' });
    expect(german.headers.getSetCookie().join(';')).toMatch(/KEYCLOAK_LOCALE=de; path=\/realms\/i18n\//i);
    const germanHtml = await german.text();
    expect(title(germanHtml)).toBe('Melden Sie sich bei Ihrem Konto an');
    expect(germanHtml).toContain('<html lang="de">');

    // The next step, without kc_locale and with an English browser, stays German (the cookie).
    const form = parseForm(germanHtml, first.url);
    const passwordPage = await (await post(form.action, { ...form.hidden, username: 'nobody' }, jar, { 'accept-language': 'en' })).text();
    expect(passwordPage).toContain('<html lang="de">');
  });

  it('ui_locales and Accept-Language choose among the supported locales; others fall back to the default', async () => {
    expect((await loginPage(authUrl('i18n', { ui_locales: 'de-CH' }), new CookieJar())).html).toContain('<html lang="de">');
    expect((await loginPage(authUrl('i18n'), new CookieJar(), { 'accept-language': 'de-DE,de;q=0.9' })).html).toContain('<html lang="de">');
    expect((await loginPage(authUrl('i18n'), new CookieJar(), { 'accept-language': 'fr' })).html).toContain('<html lang="en">');
    // An unsupported kc_locale changes nothing and sets no cookie.
    const jar = new CookieJar();
    const first = await loginPage(authUrl('i18n'), jar, { 'accept-language': 'en' });
    const unknown = await get(`${first.url}?kc_locale=fr`, jar, { 'accept-language': 'en' });
    expect(unknown.headers.getSetCookie().some((c) => c.startsWith('KEYCLOAK_LOCALE'))).toBe(false);
    expect(await unknown.text()).toContain('<html lang="en">');
  });

  it('a realm without internationalization has no language menu', async () => {
    const page = await loginPage(authUrl('plain'), new CookieJar(), { 'accept-language': 'de' });
    expect(page.html).not.toContain('kc-locale');
    expect(page.html).toContain('<html lang="en">');
  });
});
