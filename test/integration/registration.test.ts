// Self-registration on the hosted login pages, driven with fetch: the login page's "Register" link,
// Keycloak's registrations endpoint and prompt=create, field errors, the realm's password policy,
// taken usernames and e-mails, what a new user gets (default role and groups), events, the e-mail
// as username, a realm without registration, and the realm's "Verify email".
import crypto from 'node:crypto';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { startAdminBench, type AdminBench } from '../support/admin.ts';
import {
  CookieJar, decodeEntities, openStep, pageOf, post, redirectOf, submitStep, type FlowPage, type FlowStep,
} from '../support/browserless.ts';
import { startMailServer, type MailServer } from '../support/mail.ts';
import { postForm } from '../support/server.ts';

const REDIRECT = 'http://127.0.0.1:1/cb';
const VERIFIER = crypto.randomBytes(32).toString('base64url');
const CHALLENGE = crypto.createHash('sha256').update(VERIFIER).digest('base64url');


describe('self-registration', () => {
  let bench: AdminBench;
  let mail: MailServer;

  beforeAll(async () => {
    mail = await startMailServer();
    bench = await startAdminBench();
    await bench.admin.realms.create({
      realm: 'signup', enabled: true, eventsEnabled: true, registrationAllowed: true, passwordPolicy: 'length(10)',
      smtpServer: mail.smtpServerSettings({ from: 'idp@signup.example' }),
    });
    await bench.admin.realms.create({ realm: 'closed', enabled: true });
    await bench.admin.realms.create({
      realm: 'by-email', enabled: true, registrationAllowed: true, registrationEmailAsUsername: true,
      smtpServer: mail.smtpServerSettings({ from: 'idp@by-email.example' }),
    });
    for (const realm of ['signup', 'closed', 'by-email']) {
      await bench.admin.clients.create({ realm, clientId: 'web', publicClient: true, redirectUris: [REDIRECT], directAccessGrantsEnabled: true });
    }
    await bench.admin.clients.create({ realm: 'signup', clientId: 'consenting', publicClient: true, consentRequired: true, redirectUris: [REDIRECT] });
    const { id: groupId } = await bench.admin.groups.create({ realm: 'signup', name: 'customers' });
    await bench.admin.realms.addDefaultGroup({ realm: 'signup', id: groupId });
  });
  afterAll(async () => {
    await bench?.stop();
    await mail?.stop();
  });

  const issuer = (realm: string): string => `${bench.server.url}/realms/${realm}`;
  const query = (extra: Record<string, string> = {}): string => new URLSearchParams({
    client_id: 'web', response_type: 'code', scope: 'openid', redirect_uri: REDIRECT, code_challenge: CHALLENGE, code_challenge_method: 'S256', ...extra,
  }).toString();

  const open = (url: string, jar: CookieJar): Promise<FlowStep> => openStep(url, jar, REDIRECT);
  const submit = (page: FlowPage, fields: Record<string, string>, jar: CookieJar): Promise<FlowStep> => submitStep(page, fields, jar, REDIRECT);
  const page = pageOf;
  const redirect = redirectOf;
  const title = (p: FlowPage): string => /<h1[^>]*>([^<]*)<\/h1>/.exec(p.html)?.[1] ?? '';
  const fieldError = (p: FlowPage, field: string): string | undefined => {
    const text = new RegExp(`id="input-error-${field}"[^>]*>([^<]*)<`).exec(p.html)?.[1];
    return text === undefined ? undefined : decodeEntities(text);
  };

  async function registrationPage(realm: string, jar: CookieJar): Promise<FlowPage> {
    const login = page(await open(`${issuer(realm)}/protocol/openid-connect/auth?${query()}`, jar));
    const link = /id="kc-register-link"[^>]*href="([^"]+)"/.exec(login.html)?.[1];
    expect(link, 'the login page links to the registration page').toBeDefined();
    return page(await open(new URL(link!.replaceAll('&amp;', '&'), bench.server.url).href, jar));
  }

  type EventRow = { error: string | null; user_id: string | null; details: Record<string, unknown> };
  /** The realm's events of a type, once `ready` holds for them (events are stored in the background). */
  async function events(realm: string, type: string, ready: (rows: EventRow[]) => boolean = (rows) => rows.length > 0): Promise<EventRow[]> {
    const realmId = (await bench.server.store.db.selectFrom('realms').select('id').where('name', '=', realm).executeTakeFirstOrThrow()).id;
    let rows: EventRow[] = [];
    for (let i = 0; i < 60; i++) {
      rows = (await bench.server.store.db.selectFrom('events').select(['error', 'user_id', 'details']).where('realm_id', '=', realmId).where('type', '=', type).execute())
        .map((r) => ({ ...r, details: (typeof r.details === 'string' ? JSON.parse(r.details) : r.details) as Record<string, unknown> }));
      if (ready(rows)) return rows;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    return rows;
  }

  async function exchange(realm: string, code: string): Promise<Record<string, unknown>> {
    const response = await postForm(`${issuer(realm)}/protocol/openid-connect/token`, {
      grant_type: 'authorization_code', client_id: 'web', code, redirect_uri: REDIRECT, code_verifier: VERIFIER,
    });
    const body = await response.json() as Record<string, unknown>;
    expect({ status: response.status, body }).toMatchObject({ status: 200 });
    return body;
  }
  const claims = (jwt: unknown): Record<string, unknown> => JSON.parse(Buffer.from(String(jwt).split('.')[1]!, 'base64url').toString()) as Record<string, unknown>;

  const person = { firstName: 'Rita', lastName: 'Hayworth', email: 'Rita@Signup.example', username: 'Rita' };

  it('registers from the login page: field errors, policy, then the new user is signed in with the defaults', async () => {
    const jar = new CookieJar();
    const form = await registrationPage('signup', jar);
    expect(title(form)).toBe('Register');
    for (const field of ['firstName', 'lastName', 'email', 'username', 'password', 'password-confirm']) expect(form.html).toContain(`name="${field}"`);

    const empty = page(await submit(form, {}, jar));
    expect(empty.status).toBe(400);
    expect(fieldError(empty, 'firstName')).toBe('Please specify first name.');
    expect(fieldError(empty, 'email')).toBe('Please specify email.');
    expect(fieldError(empty, 'username')).toBe('Please specify username.');
    expect(fieldError(empty, 'password')).toBe('Please specify password.');

    const mismatch = page(await submit(empty, { ...person, password: 'Long-enough-1', 'password-confirm': 'other' }, jar));
    expect(fieldError(mismatch, 'password-confirm')).toBe("Passwords don't match.");
    // What was typed comes back (escaped), the passwords do not.
    expect(mismatch.html).toContain('value="Hayworth"');
    expect(mismatch.html).not.toContain('Long-enough-1');

    // Keycloak's person-name validator: no markup or shell characters in a name; the address must be sendable.
    const badName = page(await submit(mismatch, { ...person, lastName: 'O&M <b>', email: 'a<b@c.example', password: 'Long-enough-1', 'password-confirm': 'Long-enough-1' }, jar));
    expect(fieldError(badName, 'lastName')).toBe('Last name contains invalid characters.');
    expect(fieldError(badName, 'email')).toBe('Invalid email address.');
    expect(badName.html).not.toContain('<b>');
    const short = page(await submit(badName, { ...person, password: 'short', 'password-confirm': 'short' }, jar));
    expect(fieldError(short, 'password')).toBe('Invalid password: minimum length 10.');
    expect(await bench.admin.users.find({ realm: 'signup', username: 'rita', exact: true })).toEqual([]);

    const done = redirect(await submit(short, { ...person, password: 'Long-enough-1', 'password-confirm': 'Long-enough-1' }, jar));
    const tokens = await exchange('signup', done.searchParams.get('code')!);
    const access = claims(tokens.access_token);
    expect(access).toMatchObject({ preferred_username: 'rita', email: 'rita@signup.example', given_name: 'Rita', family_name: 'Hayworth', email_verified: false });
    expect((access.realm_access as { roles: string[] }).roles).toEqual(expect.arrayContaining(['default-roles-signup', 'offline_access']));

    const [rita] = await bench.admin.users.find({ realm: 'signup', username: 'rita', exact: true });
    expect(rita).toMatchObject({ enabled: true, emailVerified: false, firstName: 'Rita', lastName: 'Hayworth' });
    expect((await bench.admin.users.listGroups({ realm: 'signup', id: rita!.id! })).map((g) => g.name)).toEqual(['customers']);
    const password = await postForm(`${issuer('signup')}/protocol/openid-connect/token`, { grant_type: 'password', client_id: 'web', username: 'rita', password: 'Long-enough-1' });
    expect(password.status).toBe(200);

    const [registered] = await events('signup', 'REGISTER');
    expect(registered).toMatchObject({ user_id: rita!.id, details: { register_method: 'form', username: 'rita', email: 'rita@signup.example' } });
    const refused = await events('signup', 'REGISTER_ERROR', (rows) => rows.length >= 4);
    expect(refused.map((e) => e.error).sort()).toEqual(['invalid_registration', 'invalid_registration', 'invalid_registration', 'invalid_registration']);
  });

  it('refuses a taken username or e-mail, whatever the case', async () => {
    const jar = new CookieJar();
    const form = await registrationPage('signup', jar);
    const taken = page(await submit(form, { ...person, username: 'RITA', email: 'other@signup.example', password: 'Long-enough-1', 'password-confirm': 'Long-enough-1' }, jar));
    expect(fieldError(taken, 'username')).toBe('Username already exists.');
    const email = page(await submit(taken, { ...person, username: 'rita2', email: 'RITA@signup.example', password: 'Long-enough-1', 'password-confirm': 'Long-enough-1' }, jar));
    expect(fieldError(email, 'email')).toBe('Email already exists.');
    const inUse = await events('signup', 'REGISTER_ERROR', (rows) => rows.some((e) => e.error === 'email_in_use') && rows.some((e) => e.error === 'username_in_use'));
    expect(inUse.map((e) => e.error)).toEqual(expect.arrayContaining(['username_in_use', 'email_in_use']));
  });

  it('the registrations endpoint (keycloak-js register()) and prompt=create start at the registration page', async () => {
    const viaEndpoint = page(await open(`${issuer('signup')}/protocol/openid-connect/registrations?${query()}`, new CookieJar()));
    expect(title(viaEndpoint)).toBe('Register');
    const jar = new CookieJar();
    const viaPrompt = page(await open(`${issuer('signup')}/protocol/openid-connect/auth?${query({ prompt: 'create' })}`, jar));
    expect(title(viaPrompt)).toBe('Register');
    const done = redirect(await submit(viaPrompt, {
      firstName: 'Sam', lastName: 'Spade', email: 'sam@signup.example', username: 'sam', password: 'Long-enough-2', 'password-confirm': 'Long-enough-2',
    }, jar));
    expect(claims((await exchange('signup', done.searchParams.get('code')!)).id_token).preferred_username).toBe('sam');
  });

  it('prompt=create and prompt=login stay answered through a consent step', async () => {
    const consentUrl = (prompt: string): string => `${issuer('signup')}/protocol/openid-connect/auth?${query({ client_id: 'consenting', prompt })}`;
    const jar = new CookieJar();
    const form = page(await open(consentUrl('create'), jar));
    expect(title(form)).toBe('Register');
    const consent = page(await submit(form, {
      firstName: 'Cora', lastName: 'Consent', email: 'cora@signup.example', username: 'cora', password: 'Long-enough-3', 'password-confirm': 'Long-enough-3',
    }, jar));
    expect(consent.html).toContain('name="accept"');
    const granted = redirect(await submit(consent, { accept: 'yes' }, jar));
    expect(granted.searchParams.get('code')).toBeTruthy();
    // One LOGIN for that sign-in, not one per step.
    const logins = (await events('signup', 'LOGIN', (rows) => rows.some((e) => e.details.username === 'cora'))).filter((e) => e.details.username === 'cora');
    expect(logins).toHaveLength(1);

    // prompt=login: the password again, then the consent step, then the code (no second login page).
    const again = page(await open(consentUrl('login'), jar));
    const password = page(await submit(again, { username: 'cora' }, jar));
    const consentAgain = await submit(password, { username: 'cora', password: 'Long-enough-3' }, jar);
    const done = 'redirect' in consentAgain ? consentAgain : await submit(page(consentAgain), { accept: 'yes' }, jar);
    expect(redirect(done).searchParams.get('code')).toBeTruthy();
  });

  it('with the e-mail as username there is no username field', async () => {
    const jar = new CookieJar();
    const form = await registrationPage('by-email', jar);
    expect(form.html).not.toContain('name="username"');
    const done = redirect(await submit(form, { firstName: 'Ed', lastName: 'Wood', email: 'Ed@Wood.example', password: 'Whatever-1', 'password-confirm': 'Whatever-1' }, jar));
    expect(claims((await exchange('by-email', done.searchParams.get('code')!)).access_token).preferred_username).toBe('ed@wood.example');
  });

  it('a realm without registration offers no link and refuses the page and the endpoint', async () => {
    const jar = new CookieJar();
    const login = page(await open(`${issuer('closed')}/protocol/openid-connect/auth?${query()}`, jar));
    expect(login.html).not.toContain('kc-register-link');
    const direct = page(await open(login.form.action.replace(/\/username$/, '/registration'), jar));
    expect(direct.status).toBe(400);
    expect(direct.html).toContain('Registration not allowed');
    const posted = await post(login.form.action.replace(/\/username$/, '/registration'), { ...login.form.hidden, ...person, password: 'Long-enough-1', 'password-confirm': 'Long-enough-1' }, jar);
    expect(posted.status).toBe(400);
    expect(await bench.admin.users.find({ realm: 'closed', username: 'rita', exact: true })).toEqual([]);
    const endpoint = page(await open(`${issuer('closed')}/protocol/openid-connect/registrations?${query()}`, new CookieJar()));
    expect(endpoint.html).toContain('Registration not allowed');
  });

  it('the realm\'s "Verify email" asks every user with an unverified address, at registration and at login', async () => {
    await bench.admin.realms.update({ realm: 'by-email' }, { verifyEmail: true });
    try {
      const jar = new CookieJar();
      const form = await registrationPage('by-email', jar);
      const verify = page(await submit(form, { firstName: 'Vera', lastName: 'Miles', email: 'vera@miles.example', password: 'Whatever-1', 'password-confirm': 'Whatever-1' }, jar));
      expect(title(verify)).toBe('Email verification');
      const message = await mail.waitFor((m) => m.to.includes('vera@miles.example'));
      expect(message.text).toMatch(/action-token\?key=/);
      // The earlier user (unverified) meets the same page at the password grant's equivalent: the grant refuses.
      const grant = await postForm(`${issuer('by-email')}/protocol/openid-connect/token`, { grant_type: 'password', client_id: 'web', username: 'ed@wood.example', password: 'Whatever-1' });
      expect(grant.status).toBe(400);
      expect(await grant.json()).toEqual({ error: 'invalid_grant', error_description: 'Account is not fully set up' });
    } finally {
      await bench.admin.realms.update({ realm: 'by-email' }, { verifyEmail: false });
    }
    const grant = await postForm(`${issuer('by-email')}/protocol/openid-connect/token`, { grant_type: 'password', client_id: 'web', username: 'ed@wood.example', password: 'Whatever-1' });
    expect(grant.status).toBe(200);
  });
});
