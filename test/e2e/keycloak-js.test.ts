// The official Keycloak browser adapter (keycloak-js 26, unchanged) against Cloakroom in real
// headless Chromium. A tiny app server on another loopback port serves a page that loads
// keycloak-js as an ES module with its defaults (standard flow, PKCE S256, fragment response mode,
// login status iframe + third-party cookie check) and exposes what it gets on `window`.
// Screenshots of the login pages go to a temporary folder removed afterwards, or to
// E2E_SCREENSHOT_DIR when set (to look at them).
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { chromiumAvailable, launchChromium, recordPage } from '../support/browser.ts';
import { postForm, startTestServer, type TestServer } from '../support/server.ts';

const REALM = 'kcjs';
const REALM_DISPLAY = 'Keycloak JS Demo';
const USERNAME = 'alice';
const PASSWORD = 'correct horse battery staple';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const KEYCLOAK_JS = readFileSync(path.join(root, 'node_modules/keycloak-js/lib/keycloak.js'));

/** What the app page exposes (see appPage below). */
type KcWindow = {
  kc: {
    token?: string;
    refreshToken?: string;
    idToken?: string;
    tokenParsed?: Record<string, unknown> & { realm_access?: { roles: string[] }; sid?: string; preferred_username?: string; acr?: string };
    idTokenParsed?: Record<string, unknown>;
    refreshTokenParsed?: Record<string, unknown>;
    sessionId?: string;
    authenticated?: boolean;
    updateToken(minValidity: number): Promise<boolean>;
    loadUserInfo(): Promise<Record<string, unknown>>;
    logout(options?: { redirectUri?: string }): Promise<void>;
    login(options?: { action?: string; redirectUri?: string }): Promise<void>;
    register(options?: { redirectUri?: string }): Promise<void>;
  };
  authenticated?: boolean;
  kcError?: string;
  kcEvents: string[];
  kcMessages: string[];
};
// Globals of the page, for the callbacks run there by page.evaluate (no DOM lib in this project).
declare const window: KcWindow;
declare const document: { styleSheets: { length: number }; querySelector(selector: string): unknown };
declare function getComputedStyle(element: unknown): { paddingTop: string; backgroundColor: string };

function appPage(serverUrl: string): string {
  // onLoad comes from ?onLoad=...; without it init() runs with no onLoad (it still processes a
  // callback in the URL and sets up the iframes).
  return `<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>keycloak-js test app</title></head>
<body><h1>App</h1><p id="status">loading</p>
<script type="module">
import Keycloak from '/keycloak.js';
window.kcEvents = [];
window.kcMessages = [];
window.addEventListener('message', (event) => { if (typeof event.data === 'string') window.kcMessages.push(event.data); });
const kc = new Keycloak({ url: ${JSON.stringify(serverUrl)}, realm: ${JSON.stringify(REALM)}, clientId: 'app' });
for (const name of ['onReady', 'onAuthSuccess', 'onAuthError', 'onAuthRefreshSuccess', 'onAuthRefreshError', 'onAuthLogout', 'onTokenExpired']) {
  kc[name] = () => window.kcEvents.push(name);
}
kc.onActionUpdate = (status, action) => window.kcEvents.push('onActionUpdate:' + status + ':' + action);
window.kc = kc;
const onLoad = new URLSearchParams(location.search).get('onLoad');
try {
  window.authenticated = await kc.init(onLoad ? { onLoad } : {});
  document.getElementById('status').textContent = window.authenticated ? 'authenticated' : 'anonymous';
} catch (error) {
  window.kcError = error instanceof Error ? error.message : JSON.stringify(error);
  document.getElementById('status').textContent = 'error: ' + window.kcError;
}
</script>
</body></html>`;
}

async function startAppServer(serverUrl: string): Promise<{ origin: string; close(): Promise<void> }> {
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://app');
    if (url.pathname === '/keycloak.js') {
      res.writeHead(200, { 'content-type': 'text/javascript; charset=utf-8', 'cache-control': 'no-store' });
      res.end(KEYCLOAK_JS);
    } else if (url.pathname === '/') {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
      res.end(appPage(serverUrl));
    } else {
      res.writeHead(404, { 'content-type': 'text/plain' });
      res.end('not found');
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    origin: `http://127.0.0.1:${port}`,
    close: () => new Promise<void>((resolve) => { server.closeAllConnections(); server.close(() => resolve()); }),
  };
}

/** Waits until the page's keycloak-js init() has settled (on the app origin). */
async function initSettled(page: Page, appOrigin: string): Promise<{ authenticated?: boolean; error?: string }> {
  await page.waitForURL((url) => url.origin === appOrigin, { timeout: 20_000 });
  await page.waitForFunction(() => window.authenticated !== undefined || window.kcError !== undefined, undefined, { timeout: 20_000 });
  return page.evaluate(() => ({ authenticated: window.authenticated, error: window.kcError }));
}

/** Main-frame URLs the page commits to from now on, until stop(). */
function collectNavigations(page: Page): { urls: string[]; stop(): void } {
  const urls: string[] = [];
  const listener = (frame: { url(): string }) => { if (frame === page.mainFrame()) urls.push(frame.url()); };
  page.on('framenavigated', listener);
  return { urls, stop: () => { page.off('framenavigated', listener); } };
}

describe('keycloak-js against Cloakroom', { timeout: 60_000 }, () => {
  let server: TestServer;
  let app: { origin: string; close(): Promise<void> };
  let issuer: string;

  beforeAll(async () => {
    server = await startTestServer();
    app = await startAppServer(server.url);
    issuer = `${server.url}/realms/${REALM}`;
    await server.importRealm({
      realm: REALM,
      displayName: REALM_DISPLAY,
      enabled: true,
      registrationAllowed: true,
      clients: [{
        clientId: 'app',
        publicClient: true,
        standardFlowEnabled: true,
        redirectUris: [`${app.origin}/*`],
        webOrigins: ['+'],
        attributes: { 'post.logout.redirect.uris': '+' },
      }],
      users: [{
        username: USERNAME, email: 'alice@example.com', firstName: 'Alice', lastName: 'Liddell', enabled: true, emailVerified: true,
        credentials: [{ type: 'password', value: PASSWORD, temporary: false }],
      }],
    });
  });

  afterAll(async () => {
    await app?.close();
    await server?.stop();
  });

  // keycloak-js 26 calls the token endpoint with fetch(..., { credentials: 'include' }) (code
  // exchange and refresh). A browser then accepts the response only with
  // Access-Control-Allow-Credentials: true next to the echoed origin, as Keycloak sends.
  it('token endpoint CORS answers allow credentials for the client\'s web origins', async () => {
    const response = await postForm(`${issuer}/protocol/openid-connect/token`,
      { grant_type: 'refresh_token', client_id: 'app', refresh_token: 'not-a-token' },
      { origin: app.origin, accept: 'application/json' });
    expect(response.status).toBe(400);
    expect(response.headers.get('access-control-allow-origin')).toBe(app.origin);
    expect(response.headers.get('access-control-allow-credentials')).toBe('true');
  });

  describe.skipIf(!chromiumAvailable('keycloak-js e2e'))('in Chromium', () => {
    let browser: Browser;
    let screenshotDir: string;

    /** A fresh browser profile (cookies, localStorage) with generous Playwright timeouts. */
    async function newContext(): Promise<BrowserContext> {
      const context = await browser.newContext();
      context.setDefaultTimeout(20_000);
      return context;
    }

    beforeAll(async () => {
      browser = await launchChromium();
      screenshotDir = process.env.E2E_SCREENSHOT_DIR || mkdtempSync(path.join(os.tmpdir(), 'cloakroom-kcjs-'));
      mkdirSync(screenshotDir, { recursive: true });
    });

    afterAll(async () => {
      await browser?.close();
      if (screenshotDir && !process.env.E2E_SCREENSHOT_DIR) rmSync(screenshotDir, { recursive: true, force: true });
    });

    describe('login, refresh, SSO and logout in one browser', () => {
      let context: BrowserContext;
      let page: Page;
      let record: ReturnType<typeof recordPage>;
      let firstRefreshToken: string;

      beforeAll(async () => {
        context = await newContext();
        page = await context.newPage();
        record = recordPage(page);
      });
      afterAll(async () => { await context?.close(); });

      it("init({ onLoad: 'login-required' }) goes through the hosted login pages and comes back authenticated", async () => {
        await page.goto(`${app.origin}/?onLoad=login-required`);
        // keycloak-js checks third-party cookies in a hidden iframe, then redirects to the auth endpoint.
        await page.waitForURL((url) => url.href.startsWith(`${issuer}/login-actions/`), { timeout: 20_000 });
        await expect.poll(() => page.title()).toBe(`Sign in to your account - ${REALM_DISPLAY}`);
        expect(await page.textContent('#kc-header-wrapper')).toBe(REALM_DISPLAY);
        await page.screenshot({ path: path.join(screenshotDir, 'login-username.png'), fullPage: true });
        // The theme stylesheet loaded and applies (the card is styled, not the UA default).
        const styled = await page.evaluate(() => ({
          sheets: document.styleSheets.length,
          cardPadding: getComputedStyle(document.querySelector('#kc-content')).paddingTop,
          buttonBackground: getComputedStyle(document.querySelector('#kc-login')).backgroundColor,
        }));
        expect(styled.sheets).toBe(1);
        expect(styled.cardPadding).not.toBe('0px');
        expect(styled.buttonBackground).not.toBe('rgba(0, 0, 0, 0)');

        await page.fill('#username', USERNAME);
        await Promise.all([page.waitForURL((url) => url.href.includes('/login-actions/') && url.href.includes('/username')), page.click('#kc-login')]);
        expect(await page.textContent('#kc-attempted-username')).toBe(USERNAME);
        await page.screenshot({ path: path.join(screenshotDir, 'login-password.png'), fullPage: true });
        await page.fill('#password', PASSWORD);
        await page.click('#kc-login');

        const settled = await initSettled(page, app.origin);
        expect(settled, record.dump()).toEqual({ authenticated: true, error: undefined });
        // keycloak-js removed the code/state from the URL fragment.
        expect(page.url()).toBe(`${app.origin}/?onLoad=login-required`);

        const kc = await page.evaluate(() => ({
          authenticated: window.kc.authenticated,
          token: window.kc.token!, refreshToken: window.kc.refreshToken!, idToken: window.kc.idToken!,
          tokenParsed: window.kc.tokenParsed!, idTokenParsed: window.kc.idTokenParsed!, refreshTokenParsed: window.kc.refreshTokenParsed!,
          sessionId: window.kc.sessionId, events: window.kcEvents,
        }));
        expect(kc.authenticated).toBe(true);
        expect(kc.events).toContain('onAuthSuccess');
        expect(kc.tokenParsed.preferred_username).toBe(USERNAME);
        expect(kc.tokenParsed.iss).toBe(issuer);
        expect(kc.tokenParsed.typ).toBe('Bearer');
        expect(kc.tokenParsed.azp).toBe('app');
        expect(kc.tokenParsed.acr).toBe('1');
        expect(kc.tokenParsed.realm_access?.roles).toContain(`default-roles-${REALM}`);
        expect(kc.tokenParsed['allowed-origins']).toEqual([app.origin]);
        expect(kc.idTokenParsed.typ).toBe('ID');
        expect(kc.idTokenParsed.aud).toBe('app');
        expect(typeof kc.idTokenParsed.nonce).toBe('string'); // keycloak-js checked it against its stored nonce
        expect(kc.refreshTokenParsed.typ).toBe('Refresh');
        expect(kc.sessionId).toBeTruthy();
        expect(kc.sessionId).toBe(kc.tokenParsed.sid);
        expect(kc.idTokenParsed.sid).toBe(kc.tokenParsed.sid);

        // The server set the KEYCLOAK_SESSION cookie the login status iframe reads: realm/user/sid.
        const sessionCookie = (await context.cookies(`${issuer}/`)).find((c) => c.name === 'KEYCLOAK_SESSION');
        expect(sessionCookie?.value && decodeURIComponent(sessionCookie.value).split('/')).toEqual([REALM, kc.tokenParsed.sub, kc.sessionId]);

        const sessions = await server.store.db.selectFrom('user_sessions').select(['id']).where('id', '=', kc.sessionId!).execute();
        expect(sessions).toHaveLength(1);
        firstRefreshToken = kc.refreshToken;
      });

      it('updateToken(-1) refreshes through CORS after the login status iframe says unchanged; loadUserInfo works', async () => {
        expect(firstRefreshToken, 'needs the login of the first test').toBeDefined();
        const before = await page.evaluate(() => ({ token: window.kc.token, refreshToken: window.kc.refreshToken }));
        const refreshed = await page.evaluate(async () => {
          try {
            return { result: await window.kc.updateToken(-1) };
          } catch (error) {
            return { error: error instanceof Error ? error.message : JSON.stringify(error) };
          }
        });
        expect(refreshed, record.dump()).toEqual({ result: true });
        const after = await page.evaluate(() => ({
          token: window.kc.token!, refreshToken: window.kc.refreshToken!, tokenParsed: window.kc.tokenParsed!,
          sessionId: window.kc.sessionId, authenticated: window.kc.authenticated, events: window.kcEvents, messages: window.kcMessages,
        }));
        // updateToken first asks the login status iframe: the server's page must answer "unchanged".
        expect(after.messages).toContain('supported');
        expect(after.messages).toContain('unchanged');
        expect(after.messages).not.toContain('changed');
        expect(after.messages).not.toContain('error');
        expect(after.authenticated).toBe(true);
        expect(after.token).not.toBe(before.token);
        expect(after.events).toContain('onAuthRefreshSuccess');
        expect(after.tokenParsed.sid).toBe(after.sessionId);
        expect(after.tokenParsed.preferred_username).toBe(USERNAME);

        const userInfo = await page.evaluate(async () => {
          try {
            return { result: await window.kc.loadUserInfo() };
          } catch (error) {
            return { error: error instanceof Error ? error.message : JSON.stringify(error) };
          }
        });
        expect(userInfo, record.dump()).toMatchObject({
          result: { sub: after.tokenParsed.sub, preferred_username: USERNAME, email: 'alice@example.com', name: 'Alice Liddell' },
        });
      });

      it("a reload with init({ onLoad: 'check-sso' }) is authenticated silently through SSO", async () => {
        expect(firstRefreshToken, 'needs the login of the first test').toBeDefined();
        const sid = await page.evaluate(() => window.kc.sessionId);
        const navigations = collectNavigations(page);
        const authRequests: string[] = [];
        const onRequest = (request: { url(): string; frame(): unknown }) => {
          if (request.url().startsWith(`${issuer}/protocol/openid-connect/auth`) && request.frame() === page.mainFrame()) authRequests.push(request.url());
        };
        page.on('request', onRequest);
        try {
          await page.goto(`${app.origin}/?onLoad=check-sso`);
          // A fresh page has no token: the iframe answers "changed", keycloak-js redirects with
          // prompt=none and comes back with a code for the existing session.
          expect(await initSettled(page, app.origin), record.dump()).toEqual({ authenticated: true, error: undefined });
        } finally {
          navigations.stop();
          page.off('request', onRequest);
        }
        expect(authRequests).toHaveLength(1);
        expect(new URL(authRequests[0]!).searchParams.get('prompt')).toBe('none');
        expect(navigations.urls.filter((u) => !u.startsWith(app.origin)), 'no server page shown').toEqual([]);
        expect(page.url()).toBe(`${app.origin}/?onLoad=check-sso`);

        const kc = await page.evaluate(() => ({ sessionId: window.kc.sessionId, tokenParsed: window.kc.tokenParsed! }));
        expect(kc.sessionId).toBe(sid);
        expect(kc.tokenParsed.preferred_username).toBe(USERNAME);
        expect(kc.tokenParsed.acr).toBe('0'); // SSO reuse, not a fresh login
      });

      it("login({ action: 'UPDATE_PASSWORD' }) shows the action at once; Cancel returns to the app through onActionUpdate", async () => {
        expect(firstRefreshToken, 'needs the login of the first test').toBeDefined();
        const sid = await page.evaluate(() => window.kc.sessionId);
        await Promise.all([
          page.waitForURL((url) => url.href.startsWith(`${issuer}/login-actions/`), { timeout: 20_000 }),
          page.evaluate((redirectUri) => { void window.kc.login({ action: 'UPDATE_PASSWORD', redirectUri }); }, `${app.origin}/?onLoad=check-sso`),
        ]);
        // The SSO session's login is fresh: no password prompt, the action's page with Cancel.
        await page.waitForSelector('#password-new');
        await page.click('#kc-cancel');
        expect(await initSettled(page, app.origin), record.dump()).toEqual({ authenticated: true, error: undefined });
        const kc = await page.evaluate(() => ({ sessionId: window.kc.sessionId, events: window.kcEvents }));
        expect(kc.events).toContain('onActionUpdate:cancelled:UPDATE_PASSWORD');
        expect(kc.sessionId).toBe(sid);
      });

      it('logout({ redirectUri }) ends the session and returns to the app; check-sso is then anonymous', async () => {
        expect(firstRefreshToken, 'needs the login of the first test').toBeDefined();
        const { refreshToken, sessionId } = await page.evaluate(() => ({ refreshToken: window.kc.refreshToken!, sessionId: window.kc.sessionId! }));
        // The refresh token still works before the logout (so its later failure is the logout's doing).
        const beforeLogout = await postForm(`${issuer}/protocol/openid-connect/token`, { grant_type: 'refresh_token', client_id: 'app', refresh_token: refreshToken });
        expect(beforeLogout.status).toBe(200);
        const { refresh_token: latestRefreshToken } = await beforeLogout.json() as { refresh_token: string };

        const logoutRequests: string[] = [];
        page.on('request', (request) => { if (request.url().startsWith(`${issuer}/protocol/openid-connect/logout`)) logoutRequests.push(request.url()); });
        const logoutNavigations = collectNavigations(page);
        await page.evaluate((redirectUri) => { void window.kc.logout({ redirectUri }); }, `${app.origin}/?after-logout`);
        await page.waitForURL(`${app.origin}/?after-logout`, { timeout: 20_000 });
        logoutNavigations.stop();
        // id_token_hint ends the session at once: no confirmation page, straight back to the app.
        expect(logoutNavigations.urls).toEqual([`${app.origin}/?after-logout`]);
        expect(logoutRequests).toHaveLength(1);
        const logoutUrl = new URL(logoutRequests[0]!);
        expect(logoutUrl.searchParams.get('client_id')).toBe('app');
        expect(logoutUrl.searchParams.get('post_logout_redirect_uri')).toBe(`${app.origin}/?after-logout`);
        expect(logoutUrl.searchParams.get('id_token_hint')).toBeTruthy();
        expect(await initSettled(page, app.origin)).toEqual({ authenticated: false, error: undefined });

        const cookies = await context.cookies(`${issuer}/`);
        expect(cookies.find((c) => c.name === 'KEYCLOAK_SESSION')).toBeUndefined();
        expect(await server.store.db.selectFrom('user_sessions').select(['id']).where('id', '=', sessionId).execute()).toEqual([]);

        const checkNavigations = collectNavigations(page);
        await page.goto(`${app.origin}/?onLoad=check-sso`);
        // check-sso redirects with prompt=none and comes back with error=login_required, which
        // keycloak-js treats as "not logged in", not as an error.
        const settled = await initSettled(page, app.origin);
        checkNavigations.stop();
        expect(settled, record.dump()).toEqual({ authenticated: false, error: undefined });
        expect(checkNavigations.urls.filter((u) => !u.startsWith(app.origin)), 'no server page shown').toEqual([]);
        expect(checkNavigations.urls.some((u) => u.includes('error=login_required'))).toBe(true);
        expect(page.url()).toBe(`${app.origin}/?onLoad=check-sso`);
        expect(await page.evaluate(() => window.kc.token)).toBeUndefined();

        for (const old of [firstRefreshToken, refreshToken, latestRefreshToken]) {
          const response = await postForm(`${issuer}/protocol/openid-connect/token`, { grant_type: 'refresh_token', client_id: 'app', refresh_token: old });
          expect(response.status).toBe(400);
          expect(((await response.json()) as { error: string }).error).toBe('invalid_grant');
        }
      });

      it('register() opens the registration page; the new user comes back signed in', async () => {
        await Promise.all([
          page.waitForURL((url) => url.href.startsWith(`${issuer}/login-actions/`), { timeout: 20_000 }),
          page.evaluate((redirectUri) => { void window.kc.register({ redirectUri }); }, `${app.origin}/?onLoad=check-sso`),
        ]);
        expect(await page.textContent('h1')).toBe('Register');
        await page.fill('#firstName', 'Bob');
        await page.fill('#lastName', 'Builder');
        await page.fill('#email', 'bob@example.com');
        await page.fill('#username', 'bob');
        await page.fill('#password', 'Bob-password-1');
        await page.fill('#password-confirm', 'Bob-password-1');
        await page.click('#kc-register');
        expect(await initSettled(page, app.origin), record.dump()).toEqual({ authenticated: true, error: undefined });
        const token = await page.evaluate(() => window.kc.tokenParsed!);
        expect(token).toMatchObject({ preferred_username: 'bob', email: 'bob@example.com', given_name: 'Bob', family_name: 'Builder' });
      });
    });

    it('a wrong password shows "Invalid username or password." on the login page', async () => {
      const context = await newContext();
      try {
        const page = await context.newPage();
        const record = recordPage(page);
        await page.goto(`${app.origin}/?onLoad=login-required`);
        await page.waitForURL((url) => url.href.startsWith(`${issuer}/login-actions/`), { timeout: 20_000 });
        await page.fill('#username', USERNAME);
        await Promise.all([page.waitForSelector('#password'), page.click('#kc-login')]);
        await page.fill('#password', 'not the password');
        const [response] = await Promise.all([page.waitForResponse((r) => r.request().method() === 'POST' && r.url().startsWith(`${issuer}/login-actions/`)), page.click('#kc-login')]);
        expect(response.status()).toBe(401);
        // The same password page again, with the message under the password field.
        const message = page.getByText('Invalid username or password.');
        await message.waitFor({ state: 'visible' });
        expect(await message.count(), record.dump()).toBe(1);
        expect(await page.getAttribute('#password', 'aria-invalid')).toBe('true');
        expect(await page.textContent('#kc-attempted-username')).toBe(USERNAME);
        expect(page.url().startsWith(`${issuer}/login-actions/`)).toBe(true);
        await page.screenshot({ path: path.join(screenshotDir, 'login-invalid-password.png'), fullPage: true });

        // The page still works: the right password now sends the browser back to the app with a
        // code (what keycloak-js then does with it is the first test's business).
        const navigations = collectNavigations(page);
        await page.fill('#password', PASSWORD);
        await page.click('#kc-login');
        await page.waitForURL((url) => url.origin === app.origin);
        navigations.stop();
        const callback = new URLSearchParams(new URL(navigations.urls[0]!).hash.slice(1));
        expect(navigations.urls[0]!.startsWith(`${app.origin}/?onLoad=login-required#`), record.dump()).toBe(true);
        expect(callback.get('code')).toBeTruthy();
        expect(callback.get('state')).toBeTruthy();
        expect(callback.get('iss')).toBe(issuer);
      } finally {
        await context.close();
      }
    });
  });
});
