// Forgot password end to end, with real e-mail (an in-process SMTP server): the link on the login
// page, the request page (same answer for every input), the e-mailed single-use link opened in
// another browser, the password rules on the new-password page, the change notice, logins before
// and after, link reuse and expiry.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { browserlessLogin, CookieJar, decodeEntities, get, parseForm, post } from '../support/browserless.ts';
import { startMailServer, type MailServer, type ReceivedMail } from '../support/mail.ts';
import { startTestServer, type TestServer } from '../support/server.ts';

let server: TestServer;
let mail: MailServer;
const REALM = 'reset';
const REDIRECT = 'http://app.test/cb';
const APP_HOME = 'http://app.test/home';

const authUrl = (realm = REALM): string =>
  `${server.url}/realms/${realm}/protocol/openid-connect/auth?${new URLSearchParams({ client_id: 'web', response_type: 'code', scope: 'openid', redirect_uri: REDIRECT })}`;

const user = (username: string, password: string, extra: Record<string, unknown> = {}) => ({
  username, enabled: true, email: `${username}@example.test`, firstName: username, lastName: 'Test',
  credentials: [{ type: 'password', value: password, temporary: false }], ...extra,
});

beforeAll(async () => {
  mail = await startMailServer();
  server = await startTestServer();
  const realm = (name: string, extra: Record<string, unknown>) => server.importRealm({
    realm: name, eventsEnabled: true, smtpServer: mail.smtpServerSettings(),
    passwordPolicy: 'length(10) and digits(1)',
    clients: [{ clientId: 'web', secret: 'web-secret', redirectUris: [REDIRECT], baseUrl: APP_HOME }],
    ...extra,
  });
  await realm(REALM, {
    resetPasswordAllowed: true,
    users: [
      user('alice', 'Alice-Password-1'),
      user('bob', 'Bob-Password-1'),
      user('erin', 'Erin-Password-1', { emailVerified: false, requiredActions: [] }),
      user('nomail', 'Nomail-Password-1', { email: undefined }),
      user('dora', 'Dora-Password-1', { enabled: false }),
    ],
  });
  await realm('reset-short', { resetPasswordAllowed: true, actionTokenGeneratedByUserLifespan: 1, users: [user('alice', 'Alice-Password-1')] });
  await realm('no-reset', { users: [user('alice', 'Alice-Password-1')] });
}, 60_000);

afterAll(async () => {
  await server?.stop();
  await mail?.stop();
});

type Page = { status: number; html: string; url: string };

/** Authorization request -> username page -> password page of `username`. */
async function passwordPage(jar: CookieJar, username: string, realm = REALM): Promise<Page> {
  const start = await get(authUrl(realm), jar);
  expect(start.status).toBe(303);
  const loginUrl = new URL(start.headers.get('location')!, start.url).href;
  const login = await get(loginUrl, jar);
  const form = parseForm(await login.text(), loginUrl);
  const res = await post(form.action, { ...form.hidden, username }, jar);
  return { status: res.status, html: await res.text(), url: loginUrl };
}

function forgotLink(page: Page): string | undefined {
  const href = /id="kc-forgot-password"[^>]*href="([^"]+)"/.exec(page.html)?.[1];
  return href === undefined ? undefined : new URL(decodeEntities(href), page.url).href;
}

/** Opens the "Forgot Password?" page of a fresh login (its form action and CSRF token). */
async function resetPage(jar = new CookieJar(), realm = REALM): Promise<{ jar: CookieJar; action: string; hidden: Record<string, string>; html: string }> {
  const page = await passwordPage(jar, 'whoever', realm);
  const link = forgotLink(page);
  expect(link, page.html).toBeDefined();
  const res = await get(link!, jar);
  const html = await res.text();
  expect(res.status, html).toBe(200);
  const form = parseForm(html, link!);
  return { jar, ...form, html };
}

async function requestReset(username: string, realm = REALM): Promise<Response> {
  const page = await resetPage(new CookieJar(), realm);
  return post(page.action, { ...page.hidden, username }, page.jar);
}

const linkIn = (m: ReceivedMail): string => {
  const link = /(https?:\/\/\S+\/login-actions\/action-token\?key=[\w%-]+)/.exec(m.text)?.[1];
  expect(link, m.text).toBeDefined();
  return link!;
};

const resetMailTo = (address: string, after = 0) => (m: ReceivedMail): boolean =>
  m.to.includes(address) && m.subject === 'Reset password' && mail.messages.indexOf(m) >= after;

type EventRow = { type: string; user_id: string | null; error: string | null };
async function waitForEvent(match: (e: EventRow) => boolean): Promise<EventRow> {
  for (let i = 0; i < 100; i++) {
    const rows = await server.store.db.selectFrom('events').select(['type', 'user_id', 'error']).execute();
    const found = rows.find(match);
    if (found) return found;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error('event not recorded');
}

async function userRow(username: string, realm = REALM) {
  return server.store.db.selectFrom('users').innerJoin('realms', 'realms.id', 'users.realm_id')
    .select(['users.id', 'users.email_verified', 'users.required_actions']).where('realms.name', '=', realm).where('users.username', '=', username)
    .executeTakeFirstOrThrow();
}

async function canLogIn(username: string, password: string, realm = REALM): Promise<boolean> {
  try {
    const { redirect } = await browserlessLogin(authUrl(realm), username, password, REDIRECT);
    return new URL(redirect).searchParams.has('code');
  } catch {
    return false;
  }
}

describe('forgot password', () => {
  it('resets the password through the e-mailed link, once', async () => {
    const page = await resetPage();
    expect(page.html).toContain('Forgot Your Password?');
    expect(page.html).toMatch(/id="backToLogin"/);
    const mailsBefore = mail.messages.length;

    const sent = await post(page.action, { ...page.hidden, username: 'alice' }, page.jar);
    const sentHtml = await sent.text();
    expect(sent.status).toBe(200);
    expect(sentHtml).toContain('You should receive an email shortly with further instructions.');

    const resetMail = await mail.waitFor(resetMailTo('alice@example.test', mailsBefore));
    expect(resetMail.text).toContain('5 minutes');
    const link = linkIn(resetMail);
    expect(new URL(link).origin).toBe(server.url);
    await waitForEvent((e) => e.type === 'SEND_RESET_PASSWORD');

    // Another browser: no cookies from the login.
    const other = new CookieJar();
    const opened = await get(link, other);
    const openedHtml = await opened.text();
    expect(opened.status, openedHtml).toBe(200);
    expect(openedHtml).toContain('password-new');
    const form = parseForm(openedHtml, link);
    expect(form.hidden.key).toBeTruthy();
    expect(form.hidden.csrf).toBeTruthy();

    const weak = await post(form.action, { ...form.hidden, 'password-new': 'short1', 'password-confirm': 'short1' }, other);
    const weakHtml = await weak.text();
    expect(weak.status).toBe(400);
    expect(weakHtml).toMatch(/Invalid password/);
    expect(weakHtml).toMatch(/10/);

    const mismatch = await post(form.action, { ...form.hidden, 'password-new': 'Brand-new-pass-1', 'password-confirm': 'Brand-new-pass-2' }, other);
    expect(mismatch.status).toBe(400);

    const mailsBeforeChange = mail.messages.length;
    const strong = await post(form.action, { ...form.hidden, 'password-new': 'Brand-new-pass-1', 'password-confirm': 'Brand-new-pass-1' }, other);
    const strongHtml = await strong.text();
    expect(strong.status, strongHtml).toBe(200);
    expect(strongHtml).toContain('Your password has been updated.');
    expect(strongHtml).toContain(`href="${APP_HOME}"`);

    const notice = await mail.waitFor((m) => m.to.includes('alice@example.test') && m.subject === 'Your password was changed' && mail.messages.indexOf(m) >= mailsBeforeChange);
    expect(notice.text).not.toContain('action-token');
    await waitForEvent((e) => e.type === 'RESET_PASSWORD');

    expect(await canLogIn('alice', 'Brand-new-pass-1')).toBe(true);
    expect(await canLogIn('alice', 'Alice-Password-1')).toBe(false);

    // Used up: neither showing nor submitting works again, in any browser.
    const again = await get(link, new CookieJar());
    expect(again.status).toBe(400);
    expect(await again.text()).toContain('Action expired.');
    const replay = await post(form.action, { ...form.hidden, 'password-new': 'Other-new-pass-2', 'password-confirm': 'Other-new-pass-2' }, other);
    expect(replay.status).toBe(400);
    expect(await canLogIn('alice', 'Brand-new-pass-1')).toBe(true);
  });

  it('answers byte for byte the same for known, unknown, disabled and mail-less users', async () => {
    const page = await resetPage();
    const bodies: Record<string, { status: number; body: string }> = {};
    const mailsBefore = mail.messages.length;
    for (const login of ['bob', 'nobody-here', 'dora', 'nomail', 'BOB@EXAMPLE.TEST']) {
      const res = await post(page.action, { ...page.hidden, username: login }, page.jar);
      bodies[login] = { status: res.status, body: await res.text() };
    }
    const reference = bodies.bob!;
    expect(reference.status).toBe(200);
    for (const [login, answer] of Object.entries(bodies)) {
      expect(answer.status, login).toBe(reference.status);
      expect(answer.body, login).toBe(reference.body);
    }
    expect(reference.body).not.toMatch(/bob|nobody|dora|nomail/i);

    // Only bob gets mail (twice: by username and by e-mail address).
    await mail.waitFor((m) => m.to.includes('bob@example.test') && mail.messages.indexOf(m) >= mailsBefore);
    const unknown = await waitForEvent((e) => e.type === 'SEND_RESET_PASSWORD_ERROR' && e.error === 'user_not_found');
    expect(unknown.user_id).toBeNull();
    const dora = await userRow('dora');
    await waitForEvent((e) => e.type === 'SEND_RESET_PASSWORD_ERROR' && e.error === 'user_disabled' && e.user_id === dora.id);
    const nomail = await userRow('nomail');
    await waitForEvent((e) => e.type === 'SEND_RESET_PASSWORD_ERROR' && e.error === 'invalid_email' && e.user_id === nomail.id);
    await new Promise((resolve) => setTimeout(resolve, 300));
    const received = mail.messages.slice(mailsBefore).flatMap((m) => m.to);
    expect(received.filter((to) => to === 'bob@example.test')).toHaveLength(2);
    expect(received.every((to) => to === 'bob@example.test')).toBe(true);
  });

  it('a completed reset verifies the address and ends the other reset links', async () => {
    const mailsBefore = mail.messages.length;
    expect((await requestReset('erin')).status).toBe(200);
    const first = linkIn(await mail.waitFor(resetMailTo('erin@example.test', mailsBefore)));
    const mailsBetween = mail.messages.length;
    expect((await requestReset('erin')).status).toBe(200);
    const second = linkIn(await mail.waitFor(resetMailTo('erin@example.test', mailsBetween)));
    expect(second).not.toBe(first);

    const jar = new CookieJar();
    const form = parseForm(await (await get(second, jar)).text(), second);
    const done = await post(form.action, { ...form.hidden, 'password-new': 'Erin-new-pass-1', 'password-confirm': 'Erin-new-pass-1' }, jar);
    expect(done.status).toBe(200);
    expect((await userRow('erin')).email_verified).toBe(true);
    expect((await get(first, new CookieJar())).status).toBe(400);
  });

  it('refuses forms without the CSRF token and links with a wrong key', async () => {
    const page = await resetPage();
    const noCsrf = await post(page.action, { username: 'alice' }, page.jar);
    expect(noCsrf.status).toBe(403);

    const mailsBefore = mail.messages.length;
    await requestReset('bob');
    const link = linkIn(await mail.waitFor(resetMailTo('bob@example.test', mailsBefore)));
    const jar = new CookieJar();
    const form = parseForm(await (await get(link, jar)).text(), link);
    const forged = await post(form.action, { ...form.hidden, csrf: 'x'.repeat(43), 'password-new': 'Forged-pass-12', 'password-confirm': 'Forged-pass-12' }, jar);
    expect(forged.status).toBe(403);

    const url = new URL(link);
    const key = url.searchParams.get('key')!;
    for (const bad of ['', 'nope', `${key.slice(0, -1)}${key.endsWith('A') ? 'B' : 'A'}`, key.repeat(2)]) {
      url.searchParams.set('key', bad);
      const res = await get(url.href, new CookieJar());
      expect(res.status, bad).toBe(400);
      expect(await res.text()).toContain('Action expired.');
    }
    // The same key belongs to its realm only.
    const elsewhere = new URL(link.replace(`/realms/${REALM}/`, '/realms/no-reset/'));
    expect((await get(elsewhere.href, new CookieJar())).status).toBe(400);
    // The real link still works.
    expect((await get(link, new CookieJar())).status).toBe(200);
  });

  it('refuses an expired link', async () => {
    const mailsBefore = mail.messages.length;
    expect((await requestReset('alice', 'reset-short')).status).toBe(200);
    const resetMail = await mail.waitFor(resetMailTo('alice@example.test', mailsBefore));
    const link = linkIn(resetMail);
    expect(link).toContain('/realms/reset-short/');
    await new Promise((resolve) => setTimeout(resolve, 2000));
    const res = await get(link, new CookieJar());
    expect(res.status).toBe(400);
    expect(await res.text()).toContain('Action expired.');

    // The next token clears expired rows: nothing outlives its link for long.
    const expired = () => server.store.db.selectFrom('action_tokens').select('digest').where('expires_at', '<=', new Date()).execute();
    expect((await expired()).length).toBeGreaterThan(0);
    const mailsBetween = mail.messages.length;
    await requestReset('bob');
    await mail.waitFor(resetMailTo('bob@example.test', mailsBetween));
    expect(await expired()).toEqual([]);
  });

  it('has no forgot-password link or page unless the realm allows it', async () => {
    const jar = new CookieJar();
    const page = await passwordPage(jar, 'alice', 'no-reset');
    expect(page.status).toBe(200);
    expect(forgotLink(page)).toBeUndefined();
    const res = await get(`${page.url}/reset-credentials`, jar);
    expect(res.status).toBe(400);
    expect(await res.text()).toContain('Reset Credential not allowed');
  });
});
