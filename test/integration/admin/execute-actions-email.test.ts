// Admin API e-mail actions with real e-mail: execute-actions-email and send-verify-email through
// the official admin client, their links followed to the end in a browser without cookies, and
// Keycloak's answers for users, clients, actions and SMTP servers that cannot work.
import crypto from 'node:crypto';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { CookieJar, get, parseForm, post } from '../../support/browserless.ts';
import { passwordToken, startAdminBench, type AdminBench } from '../../support/admin.ts';
import { startMailServer, type MailServer, type ReceivedMail } from '../../support/mail.ts';

let bench: AdminBench;
let mail: MailServer;
let deadSmtpPort: number;
const REALM = 'mail-actions';
const DONE = 'http://app.test/done';

beforeAll(async () => {
  mail = await startMailServer();
  const dead = await startMailServer();
  deadSmtpPort = dead.port;
  await dead.stop();
  bench = await startAdminBench();
  await bench.admin.realms.create({
    realm: REALM, enabled: true, eventsEnabled: true, passwordPolicy: 'length(10)', smtpServer: mail.smtpServerSettings(),
  });
  await bench.admin.clients.create({ realm: REALM, clientId: 'web', secret: 'web-secret', redirectUris: ['http://app.test/*'] });
  await bench.admin.clients.create({ realm: REALM, clientId: 'off', enabled: false, redirectUris: ['http://app.test/*'] });
  await bench.admin.realms.create({ realm: 'smtp-down', enabled: true, smtpServer: mail.smtpServerSettings({ port: String(deadSmtpPort) }) });
  await bench.admin.realms.create({ realm: 'smtp-none', enabled: true });
}, 60_000);

afterAll(async () => {
  await bench?.stop();
  await mail?.stop();
});

async function newUser(extra: Record<string, unknown> = {}, realm = REALM): Promise<{ id: string; username: string; email: string }> {
  const username = `u-${crypto.randomBytes(4).toString('hex')}`;
  const email = `${username}@example.test`;
  const { id } = await bench.admin.users.create({
    realm, username, email, enabled: true, firstName: 'First', lastName: 'Last',
    credentials: [{ type: 'password', value: 'Initial-password-1', temporary: false }], ...extra,
  });
  return { id, username, email };
}

const linkIn = (m: ReceivedMail): string => {
  const link = /(https?:\/\/\S+\/login-actions\/action-token\?key=[\w%-]+)/.exec(m.text)?.[1];
  expect(link, m.text).toBeDefined();
  return link!;
};

async function call(method: string, path: string, body?: unknown): Promise<{ status: number; body: any }> {
  const response = await bench.api(path, { method, ...(body === undefined ? {} : { body: JSON.stringify(body) }) });
  const text = await response.text();
  return { status: response.status, body: text ? JSON.parse(text) : undefined };
}

/** Opens the link in a fresh browser and presses "proceed" on the confirmation page. */
async function openAndConfirm(link: string, jar = new CookieJar()): Promise<{ jar: CookieJar; status: number; html: string }> {
  const opened = await get(link, jar);
  const html = await opened.text();
  expect(opened.status, html).toBe(200);
  const form = parseForm(html, link);
  const res = await post(form.action, { ...form.hidden, confirm: 'yes' }, jar);
  return { jar, status: res.status, html: await res.text() };
}

describe('execute-actions-email', () => {
  it('sends a working UPDATE_PASSWORD link back to the application', async () => {
    const carol = await newUser();
    await bench.admin.users.executeActionsEmail({ realm: REALM, id: carol.id, actions: ['UPDATE_PASSWORD'], lifespan: 600, clientId: 'web', redirectUri: DONE });
    const sent = await mail.waitFor((m) => m.to.includes(carol.email) && m.subject === 'Update Your Account');
    expect(sent.text).toContain('Update Password');
    expect(sent.text).toContain('10 minutes');
    const link = linkIn(sent);

    const opened = await get(link, new CookieJar());
    const confirmHtml = await opened.text();
    expect(confirmHtml).toContain('Perform the following action(s): Update Password');

    const { jar, status, html } = await openAndConfirm(link);
    expect(status, html).toBe(200);
    expect(html).toContain('password-new');
    const form = parseForm(html, link);
    const weak = await post(form.action, { ...form.hidden, 'password-new': 'short', 'password-confirm': 'short' }, jar);
    expect(weak.status).toBe(400);
    const done = await post(form.action, { ...form.hidden, 'password-new': 'Changed-by-link-1', 'password-confirm': 'Changed-by-link-1' }, jar);
    const doneHtml = await done.text();
    expect(done.status, doneHtml).toBe(200);
    expect(doneHtml).toContain('Your account has been updated.');
    expect(doneHtml).toContain(`href="${DONE}"`);

    expect(await passwordToken(bench.server.url, REALM, carol.username, 'Changed-by-link-1')).toBeTruthy();
    await expect(passwordToken(bench.server.url, REALM, carol.username, 'Initial-password-1')).rejects.toThrow();
    // The link proved the address.
    expect((await bench.admin.users.findOne({ realm: REALM, id: carol.id }))?.emailVerified).toBe(true);
    // Used up.
    const reused = await get(link, new CookieJar());
    expect(reused.status).toBe(400);
    expect(await reused.text()).toContain('Action expired.');
  });

  it('runs several actions in order and keeps their progress in the link', async () => {
    const dan = await newUser();
    await bench.admin.users.executeActionsEmail({ realm: REALM, id: dan.id, actions: ['TERMS_AND_CONDITIONS', 'VERIFY_EMAIL', 'UPDATE_PROFILE'] });
    const sent = await mail.waitFor((m) => m.to.includes(dan.email) && m.subject === 'Update Your Account');
    // Default lifespan: actionTokenGeneratedByAdminLifespan (12 hours).
    expect(sent.text).toContain('12 hours');
    const link = linkIn(sent);

    const { jar, html } = await openAndConfirm(link);
    const seen: string[] = [];
    let page = html;
    for (let step = 0; step < 5 && !page.includes('Your account has been updated.'); step++) {
      const form = parseForm(page, link);
      const action = form.hidden.requiredAction!;
      seen.push(action);
      if (action === 'UPDATE_PROFILE') {
        // Opening the link again mid-way resumes where it stopped.
        const resumed = await openAndConfirm(link, jar);
        expect(parseForm(resumed.html, link).hidden.requiredAction).toBe('UPDATE_PROFILE');
      }
      const fields: Record<string, string> = action === 'TERMS_AND_CONDITIONS' ? { accept: 'yes' } : { email: dan.email, firstName: 'Dan', lastName: 'Updated' };
      const res = await post(form.action, { ...form.hidden, ...fields }, jar);
      page = await res.text();
      expect(res.status, page).toBe(200);
    }
    expect(page).toContain('Your account has been updated.');
    expect(seen).toEqual(expect.arrayContaining(['TERMS_AND_CONDITIONS', 'UPDATE_PROFILE']));
    expect(seen).not.toContain('VERIFY_EMAIL');
    const after = await bench.admin.users.findOne({ realm: REALM, id: dan.id });
    expect(after?.emailVerified).toBe(true);
    expect(after?.firstName).toBe('Dan');
    expect(after?.lastName).toBe('Updated');
    expect((await get(link, new CookieJar())).status).toBe(400);
  });

  it('stops a link once the address changes', async () => {
    const eve = await newUser();
    await bench.admin.users.executeActionsEmail({ realm: REALM, id: eve.id, actions: ['UPDATE_PASSWORD'] });
    const link = linkIn(await mail.waitFor((m) => m.to.includes(eve.email) && m.subject === 'Update Your Account'));
    await bench.admin.users.update({ realm: REALM, id: eve.id }, { email: `changed-${eve.email}` });
    expect((await get(link, new CookieJar())).status).toBe(400);
  });

  it('answers with Keycloak errors for users, clients and actions', async () => {
    const { id: noMail } = await bench.admin.users.create({ realm: REALM, username: `nomail-${crypto.randomBytes(3).toString('hex')}`, enabled: true });
    const { id: disabled } = await newUser({ enabled: false });
    const { id } = await newUser();
    const path = (userId: string, query = '') => `/${REALM}/users/${userId}/execute-actions-email${query}`;
    expect(await call('PUT', path(noMail), ['UPDATE_PASSWORD'])).toEqual({ status: 400, body: { errorMessage: 'User email missing' } });
    expect(await call('PUT', path(disabled), ['UPDATE_PASSWORD'])).toEqual({ status: 400, body: { errorMessage: 'User is disabled' } });
    expect(await call('PUT', path(id), ['UPDATE_PASSWORD', 'NOPE'])).toEqual({ status: 400, body: { errorMessage: 'Provided invalid required actions' } });
    // Registered in Keycloak, but no page for it here.
    expect(await call('PUT', path(id), ['webauthn-register'])).toEqual({ status: 400, body: { errorMessage: 'Provided invalid required actions' } });
    expect(await call('PUT', path(id, '?client_id=ghost'), ['UPDATE_PASSWORD'])).toEqual({ status: 400, body: { errorMessage: "Client doesn't exist" } });
    expect(await call('PUT', path(id, '?client_id=off'), ['UPDATE_PASSWORD'])).toEqual({ status: 400, body: { errorMessage: 'Client is not enabled' } });
    expect(await call('PUT', path(id, `?redirect_uri=${encodeURIComponent(DONE)}`), ['UPDATE_PASSWORD'])).toEqual({ status: 400, body: { errorMessage: 'Client id missing' } });
    expect(await call('PUT', path(id, `?client_id=web&redirect_uri=${encodeURIComponent('http://evil.test/')}`), ['UPDATE_PASSWORD'])).toEqual({ status: 400, body: { errorMessage: 'Invalid redirect uri.' } });
    for (const lifespan of ['abc', '-5', '0', '1.5']) {
      expect((await call('PUT', path(id, `?lifespan=${lifespan}`), ['UPDATE_PASSWORD'])).status, lifespan).toBe(400);
    }
    expect((await call('PUT', path(id), 'UPDATE_PASSWORD')).status).toBe(400);
    expect((await call('PUT', path(crypto.randomUUID()), ['UPDATE_PASSWORD'])).status).toBe(404);
  });

  it('reports an SMTP server that cannot be reached, or none, as Keycloak does (500)', async () => {
    const down = await newUser({}, 'smtp-down');
    await expect(bench.admin.users.executeActionsEmail({ realm: 'smtp-down', id: down.id, actions: ['UPDATE_PASSWORD'] }))
      .rejects.toMatchObject({ response: { status: 500 }, responseData: { errorMessage: expect.stringMatching(/^Failed to send execute actions email: /) } });
    expect(await call('PUT', `/smtp-down/users/${down.id}/send-verify-email`)).toEqual({ status: 500, body: { errorMessage: 'Failed to send verify email' } });
    const none = await newUser({}, 'smtp-none');
    expect(await call('PUT', `/smtp-none/users/${none.id}/execute-actions-email`, ['UPDATE_PASSWORD']))
      .toEqual({ status: 500, body: { errorMessage: 'Failed to send execute actions email: the realm has no SMTP server configured' } });
  });
});

describe('send-verify-email', () => {
  it('sends a link that verifies the address after confirmation, once', async () => {
    const fay = await newUser({ emailVerified: false, requiredActions: ['VERIFY_EMAIL'] });
    await bench.admin.users.sendVerifyEmail({ realm: REALM, id: fay.id, clientId: 'web', redirectUri: DONE });
    const sent = await mail.waitFor((m) => m.to.includes(fay.email) && m.subject === 'Verify email');
    expect(sent.text).toContain('12 hours');
    const link = linkIn(sent);

    // Showing the page changes nothing (mail scanners open links too).
    const shown = await get(link, new CookieJar());
    expect(await shown.text()).toContain(`Confirm validity of e-mail address ${fay.email}.`);
    expect((await bench.admin.users.findOne({ realm: REALM, id: fay.id }))?.emailVerified).toBe(false);

    const { status, html } = await openAndConfirm(link);
    expect(status, html).toBe(200);
    expect(html).toContain('Your email address has been verified.');
    expect(html).toContain(`href="${DONE}"`);
    const after = await bench.admin.users.findOne({ realm: REALM, id: fay.id });
    expect(after?.emailVerified).toBe(true);
    expect(after?.requiredActions).not.toContain('VERIFY_EMAIL');
    expect((await get(link, new CookieJar())).status).toBe(400);
  });

  it('validates like execute-actions-email', async () => {
    const { id: disabled } = await newUser({ enabled: false });
    expect(await call('PUT', `/${REALM}/users/${disabled}/send-verify-email`)).toEqual({ status: 400, body: { errorMessage: 'User is disabled' } });
    const { id } = await newUser();
    expect(await call('PUT', `/${REALM}/users/${id}/send-verify-email?client_id=ghost`)).toEqual({ status: 400, body: { errorMessage: "Client doesn't exist" } });
  });
});
