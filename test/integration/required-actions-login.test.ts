// Required actions in the hosted login, driven with fetch: they run in the realm's priority order
// before any code is issued (terms, profile, e-mail verification through a real mail), a declined
// action sends the browser back with access_denied, the OTP step cannot be skipped by posting to
// a later step, and the password grant refuses users with pending actions.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { startAdminBench, type AdminBench } from '../support/admin.ts';
import { CookieJar, follow, get, parseForm, post } from '../support/browserless.ts';
import { startMailServer, type MailServer } from '../support/mail.ts';
import { postForm } from '../support/server.ts';

const REALM = 'actions';
const REDIRECT = 'http://127.0.0.1:1/cb';

type Step = { url: string; html: string; status: number; form: { action: string; hidden: Record<string, string> } };

describe('required actions at login', () => {
  let bench: AdminBench;
  let mail: MailServer;
  let issuer: string;

  beforeAll(async () => {
    mail = await startMailServer();
    bench = await startAdminBench();
    issuer = `${bench.server.url}/realms/${REALM}`;
    await bench.admin.realms.create({ realm: REALM, enabled: true, smtpServer: mail.smtpServerSettings({ from: 'idp@actions.example' }) });
    await bench.admin.clients.create({ realm: REALM, clientId: 'web', publicClient: true, redirectUris: [`${REDIRECT}`], directAccessGrantsEnabled: true });
    // Keycloak ships TERMS_AND_CONDITIONS disabled; enable it.
    const terms = await bench.admin.authenticationManagement.getRequiredActionForAlias({ alias: 'TERMS_AND_CONDITIONS', realm: REALM } as never) as Record<string, unknown>;
    await bench.admin.authenticationManagement.updateRequiredAction({ alias: 'TERMS_AND_CONDITIONS', realm: REALM } as never, { ...terms, enabled: true });
  });
  afterAll(async () => {
    await bench?.stop();
    await mail?.stop();
  });

  async function createUser(username: string, requiredActions: string[], extra: Record<string, unknown> = {}): Promise<string> {
    const { id } = await bench.admin.users.create({
      realm: REALM, username, enabled: true, requiredActions, credentials: [{ type: 'password', value: 'Password-123', temporary: false }], ...extra,
    });
    return id;
  }

  /** Authorization request, username and password: the first page after the password (or the redirect). */
  async function signIn(username: string, jar = new CookieJar()): Promise<{ jar: CookieJar; step: Step | { redirect: string } }> {
    const url = `${issuer}/protocol/openid-connect/auth?${new URLSearchParams({
      client_id: 'web', response_type: 'code', scope: 'openid', redirect_uri: REDIRECT,
      code_challenge: 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM', code_challenge_method: 'S256',
    })}`;
    const { response, url: pageUrl } = await follow(await get(url, jar), jar, (u) => u.startsWith(REDIRECT));
    const first = parseForm(await response.text(), pageUrl);
    const passwordPage = await post(first.action, { ...first.hidden, username }, jar);
    const second = parseForm(await passwordPage.text(), pageUrl);
    return { jar, step: await submit(second.action, { ...second.hidden, username, password: 'Password-123' }, jar) };
  }

  async function submit(action: string, form: Record<string, string>, jar: CookieJar): Promise<Step | { redirect: string }> {
    const response = await post(action, form, jar);
    const { response: last, url } = await follow(response, jar, (u) => u.startsWith(REDIRECT));
    if (url.startsWith(REDIRECT)) return { redirect: url };
    const html = await last.text();
    return { url, html, status: last.status, form: parseForm(html, action) };
  }

  const page = (step: Step | { redirect: string }): Step => {
    if ('redirect' in step) throw new Error(`expected a page, got the redirect ${step.redirect}`);
    return step;
  };
  const title = (step: Step): string => /<h1[^>]*>([^<]*)<\/h1>/.exec(step.html)?.[1] ?? '';

  it('runs terms, profile and e-mail verification in priority order, then issues the code', async () => {
    await createUser('nina', ['VERIFY_EMAIL', 'UPDATE_PROFILE', 'TERMS_AND_CONDITIONS']);
    const { jar, step } = await signIn('nina');
    // Keycloak 26's default priorities: TERMS_AND_CONDITIONS, UPDATE_PROFILE, ..., VERIFY_EMAIL later.
    const terms = page(step);
    expect(title(terms)).toBe('Terms and Conditions');
    const profile = page(await submit(terms.form.action, { ...terms.form.hidden, accept: 'yes' }, jar));
    expect(title(profile)).toBe('Update Account Information');

    const invalid = page(await submit(profile.form.action, { ...profile.form.hidden, email: 'not-an-email', firstName: 'Nina', lastName: '' }, jar));
    expect(invalid.status).toBe(400);
    expect(invalid.html).toContain('Invalid email address.');
    expect(invalid.html).toContain('Please specify last name.');
    const verify = page(await submit(invalid.form.action, { ...invalid.form.hidden, email: 'nina@actions.example', firstName: 'Nina', lastName: 'Simone' }, jar));
    expect(title(verify)).toBe('Email verification');
    expect(verify.html).toContain('nina@actions.example');

    // "Continue" before the link was followed keeps the user here.
    const notYet = page(await submit(verify.form.action, { ...verify.form.hidden, resend: 'no' }, jar));
    expect(notYet.status).toBe(400);
    const message = await mail.waitFor((m) => m.to.includes('nina@actions.example'));
    const link = /https?:\/\/\S+action-token\?key=[\w-]+/.exec(message.text)![0];
    // The link (in another browser) asks for confirmation, then verifies the address.
    const otherJar = new CookieJar();
    const confirmPage = await get(link, otherJar);
    const confirm = parseForm(await confirmPage.text(), link);
    const confirmed = await post(confirm.action, { ...confirm.hidden, confirm: 'yes' }, otherJar);
    expect(await confirmed.text()).toContain('Your email address has been verified.');

    const done = await submit(notYet.form.action, { ...notYet.form.hidden, resend: 'no' }, jar);
    expect('redirect' in done && new URL(done.redirect).searchParams.get('code')).toBeTruthy();
    const [nina] = await bench.admin.users.find({ realm: REALM, username: 'nina', exact: true });
    expect(nina).toMatchObject({ email: 'nina@actions.example', firstName: 'Nina', lastName: 'Simone', emailVerified: true, requiredActions: [] });
    expect(nina!.attributes?.terms_and_conditions?.[0]).toMatch(/^\d+$/);
  });

  it('declining the terms returns access_denied to the client and keeps the action', async () => {
    await createUser('dave', ['TERMS_AND_CONDITIONS']);
    const { jar, step } = await signIn('dave');
    const terms = page(step);
    const declined = await submit(terms.form.action, { ...terms.form.hidden, accept: 'no' }, jar);
    expect('redirect' in declined && new URL(declined.redirect).searchParams.get('error')).toBe('access_denied');
    const [dave] = await bench.admin.users.find({ realm: REALM, username: 'dave', exact: true });
    expect(dave!.requiredActions).toEqual(['TERMS_AND_CONDITIONS']);
  });

  it('a stale or forged action post only shows the action that is due', async () => {
    await createUser('sven', ['UPDATE_PROFILE', 'TERMS_AND_CONDITIONS']);
    const { jar, step } = await signIn('sven');
    const terms = page(step);
    // Posting the profile form while the terms are due changes nothing.
    const forged = page(await submit(terms.form.action, { ...terms.form.hidden, requiredAction: 'UPDATE_PROFILE', email: 'x@y.z', firstName: 'X', lastName: 'Y' }, jar));
    expect(title(forged)).toBe('Terms and Conditions');
    const [sven] = await bench.admin.users.find({ realm: REALM, username: 'sven', exact: true });
    expect(sven!.email).toBeUndefined();
    // Without the CSRF token nothing is accepted.
    const noCsrf = await post(terms.form.action, { requiredAction: 'TERMS_AND_CONDITIONS', accept: 'yes' }, jar);
    expect(noCsrf.status).toBe(403);
  });

  it('the OTP step cannot be skipped by posting to a later step', async () => {
    const userId = await createUser('otto', []);
    await bench.admin.users.update({ realm: REALM, id: userId }, { requiredActions: ['CONFIGURE_TOTP'] });
    const { jar, step } = await signIn('otto');
    const enroll = page(step);
    expect(enroll.html).toContain('kc-totp-secret-key');
    // Finish enrollment with a code from the page's secret, via the module under test's own
    // sibling: the e2e test checks codes independently; here only the flow order matters.
    const { otpCode } = await import('../../src/login/otp.ts');
    const secret = /name="totpSecret" value="([A-Z2-7]+)"/.exec(enroll.html)![1]!;
    const data = { subType: 'totp' as const, digits: 6, counter: 0, period: 30, algorithm: 'HmacSHA1' as const, secretEncoding: 'BASE32' as const };
    const enrolled = await submit(enroll.form.action, { ...enroll.form.hidden, totpSecret: secret, totp: otpCode(secret, data, { time: Date.now() }), userLabel: 'phone' }, jar);
    expect('redirect' in enrolled).toBe(true);

    // Next login: the OTP page; posting to the action or password step shows it again.
    const next = await signIn('otto');
    const otpPage = page(next.step);
    expect(otpPage.form.action).toMatch(/\/otp$/);
    const actionUrl = otpPage.form.action.replace(/\/otp$/, '/action');
    const skipped = page(await submit(actionUrl, { ...otpPage.form.hidden }, next.jar));
    expect(skipped.form.action).toMatch(/\/otp$/);
    const wrong = page(await submit(otpPage.form.action, { ...otpPage.form.hidden, totp: '000000' === otpCode(secret, data, { time: Date.now() }) ? '111111' : '000000' }, next.jar));
    expect(wrong.status).toBe(401);
    expect(wrong.html).toContain('Invalid authenticator code.');
  });

  it('the password grant refuses pending actions and accepts once they are done', async () => {
    const userId = await createUser('pat', ['UPDATE_PROFILE']);
    const grant = (): Promise<Response> => postForm(`${issuer}/protocol/openid-connect/token`, { grant_type: 'password', client_id: 'web', username: 'pat', password: 'Password-123' });
    const refused = await grant();
    expect(refused.status).toBe(400);
    expect(await refused.json()).toEqual({ error: 'invalid_grant', error_description: 'Account is not fully set up' });
    await bench.admin.users.update({ realm: REALM, id: userId }, { requiredActions: [] });
    expect((await grant()).status).toBe(200);
  });
});
