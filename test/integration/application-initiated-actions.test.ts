// Application-initiated actions (kc_action), driven with fetch through the hosted login: the action
// after a fresh login and straight away with an SSO session, cancel, re-authentication when the
// login is older than the action's max_auth_age, prompt=none, an action the user had pending, an
// action the realm does not run on request, and the required-action configuration Admin API.
import crypto from 'node:crypto';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { startAdminBench, type AdminBench } from '../support/admin.ts';
import {
  CookieJar, openStep, pageOf, redirectOf, submitStep, type FlowPage, type FlowStep,
} from '../support/browserless.ts';
import { postForm } from '../support/server.ts';

const REALM = 'aia';
const REDIRECT = 'http://127.0.0.1:1/cb';
const PASSWORD = 'Password-123';
const VERIFIER = crypto.randomBytes(32).toString('base64url');
const CHALLENGE = crypto.createHash('sha256').update(VERIFIER).digest('base64url');


describe('application-initiated actions (kc_action)', () => {
  let bench: AdminBench;
  let issuer: string;

  beforeAll(async () => {
    bench = await startAdminBench();
    issuer = `${bench.server.url}/realms/${REALM}`;
    await bench.admin.realms.create({ realm: REALM, enabled: true, eventsEnabled: true });
    await bench.admin.clients.create({ realm: REALM, clientId: 'web', publicClient: true, redirectUris: [REDIRECT], directAccessGrantsEnabled: true });
  });
  afterAll(async () => {
    await bench?.stop();
  });

  async function createUser(username: string, extra: Record<string, unknown> = {}): Promise<string> {
    const { id } = await bench.admin.users.create({
      realm: REALM, username, enabled: true, email: `${username}@aia.example`, firstName: username, lastName: 'Tester',
      credentials: [{ type: 'password', value: PASSWORD, temporary: false }], ...extra,
    });
    return id;
  }

  const authUrl = (extra: Record<string, string> = {}): string => `${issuer}/protocol/openid-connect/auth?${new URLSearchParams({
    client_id: 'web', response_type: 'code', scope: 'openid', redirect_uri: REDIRECT, state: 'st-1',
    code_challenge: CHALLENGE, code_challenge_method: 'S256', ...extra,
  })}`;

  const open = (url: string, jar: CookieJar): Promise<FlowStep> => openStep(url, jar, REDIRECT);
  const submit = (page: FlowPage, fields: Record<string, string>, jar: CookieJar): Promise<FlowStep> => submitStep(page, fields, jar, REDIRECT);
  const page = pageOf;
  const redirect = redirectOf;
  const title = (p: FlowPage): string => /<h1[^>]*>([^<]*)<\/h1>/.exec(p.html)?.[1] ?? '';
  const hasCancel = (p: FlowPage): boolean => /name="cancel-aia" value="true"/.test(p.html);

  /** Username and password pages of a fresh login: what follows the password. */
  async function signIn(username: string, jar: CookieJar, extra: Record<string, string> = {}, password = PASSWORD): Promise<FlowStep> {
    const first = page(await open(authUrl(extra), jar));
    const second = page(await submit(first, { username }, jar));
    return submit(second, { username, password }, jar);
  }

  async function exchange(code: string): Promise<Record<string, unknown>> {
    const response = await postForm(`${issuer}/protocol/openid-connect/token`, {
      grant_type: 'authorization_code', client_id: 'web', code, redirect_uri: REDIRECT, code_verifier: VERIFIER,
    });
    const body = await response.json() as Record<string, unknown>;
    expect({ status: response.status, body }).toMatchObject({ status: 200 });
    return body;
  }

  const passwordGrant = (username: string, password: string): Promise<Response> =>
    postForm(`${issuer}/protocol/openid-connect/token`, { grant_type: 'password', client_id: 'web', username, password });

  async function events(userId: string, type: string): Promise<Array<{ error: string | null; details: Record<string, unknown> }>> {
    for (let i = 0; i < 40; i++) {
      const rows = await bench.server.store.db.selectFrom('events').select(['error', 'details']).where('user_id', '=', userId).where('type', '=', type).execute();
      if (rows.length > 0) return rows.map((r) => ({ error: r.error, details: (typeof r.details === 'string' ? JSON.parse(r.details) : r.details) as Record<string, unknown> }));
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    return [];
  }

  it('after a fresh login: the action page with Cancel, then the code with kc_action_status=success', async () => {
    await createUser('anna');
    const jar = new CookieJar();
    const update = page(await signIn('anna', jar, { kc_action: 'UPDATE_PASSWORD' }));
    expect(title(update)).toBe('Update password');
    expect(hasCancel(update)).toBe(true);
    const mismatch = page(await submit(update, { 'password-new': 'New-Password-1', 'password-confirm': 'other' }, jar));
    expect(mismatch.status).toBe(400);
    const back = redirect(await submit(mismatch, { 'password-new': 'New-Password-1', 'password-confirm': 'New-Password-1' }, jar));
    expect(back.searchParams.get('kc_action_status')).toBe('success');
    expect(back.searchParams.get('kc_action')).toBe('UPDATE_PASSWORD');
    expect(back.searchParams.get('state')).toBe('st-1');
    expect(await exchange(back.searchParams.get('code')!)).toHaveProperty('access_token');
    expect((await passwordGrant('anna', 'New-Password-1')).status).toBe(200);
    expect((await passwordGrant('anna', PASSWORD)).status).toBe(401);
  });

  it('with an SSO session: the action page at once; Cancel still signs in and changes nothing', async () => {
    const userId = await createUser('bruno');
    const jar = new CookieJar();
    redirect(await signIn('bruno', jar));
    const update = page(await open(authUrl({ kc_action: 'UPDATE_PASSWORD' }), jar));
    expect(title(update)).toBe('Update password');
    expect(hasCancel(update)).toBe(true);
    const back = redirect(await submit(update, { 'cancel-aia': 'true' }, jar));
    expect(back.searchParams.get('kc_action_status')).toBe('cancelled');
    expect(back.searchParams.get('kc_action')).toBe('UPDATE_PASSWORD');
    const tokens = await exchange(back.searchParams.get('code')!);
    expect(typeof tokens.access_token).toBe('string');
    expect((await passwordGrant('bruno', PASSWORD)).status).toBe(200);
    const [cancelled] = await events(userId, 'CUSTOM_REQUIRED_ACTION_ERROR');
    expect(cancelled).toMatchObject({ error: 'rejected_by_user', details: { custom_required_action: 'UPDATE_PASSWORD' } });

    // The next request without kc_action signs in silently, without any status.
    const silent = redirect(await open(authUrl(), jar));
    expect(silent.searchParams.get('code')).toBeTruthy();
    expect(silent.searchParams.has('kc_action_status')).toBe(false);
  });

  it('with an SSO session: a profile update and an OTP device on request', async () => {
    const userId = await createUser('carla');
    const jar = new CookieJar();
    redirect(await signIn('carla', jar));
    const profile = page(await open(authUrl({ kc_action: 'UPDATE_PROFILE' }), jar));
    expect(title(profile)).toBe('Update Account Information');
    const refused = page(await submit(profile, { email: 'carla@new.example', firstName: 'Carla (admin)', lastName: 'Bruni' }, jar));
    expect(refused.status).toBe(400);
    expect(refused.html).toContain('First name contains invalid characters.');
    const done = redirect(await submit(refused, { email: 'carla@new.example', firstName: 'Carla', lastName: 'Bruni' }, jar));
    expect(done.searchParams.get('kc_action_status')).toBe('success');
    const user = await bench.admin.users.findOne({ realm: REALM, id: userId });
    expect(user).toMatchObject({ email: 'carla@new.example', firstName: 'Carla', lastName: 'Bruni', emailVerified: false });

    const totp = page(await open(authUrl({ kc_action: 'CONFIGURE_TOTP' }), jar));
    expect(totp.html).toContain('kc-totp-secret-key');
    expect(/id="cancelTOTPBtn"/.test(totp.html)).toBe(true);
    const { otpCode } = await import('../../src/login/otp.ts');
    const secret = /name="totpSecret" value="([A-Z2-7]+)"/.exec(totp.html)![1]!;
    const data = { subType: 'totp' as const, digits: 6, counter: 0, period: 30, algorithm: 'HmacSHA1' as const, secretEncoding: 'BASE32' as const };
    const enrolled = redirect(await submit(totp, { totpSecret: secret, totp: otpCode(secret, data, { time: Date.now() }), userLabel: 'phone' }, jar));
    expect(enrolled.searchParams.get('kc_action_status')).toBe('success');
    expect(enrolled.searchParams.get('kc_action')).toBe('CONFIGURE_TOTP');
    const credentials = await bench.admin.users.getCredentials({ realm: REALM, id: userId });
    expect(credentials.map((c) => c.type).sort()).toEqual(['otp', 'password']);
  });

  it('"Sign out from other devices" ends the user\'s other sessions and keeps this one', async () => {
    await createUser('ida');
    const refresh = (token: unknown): Promise<Response> =>
      postForm(`${issuer}/protocol/openid-connect/token`, { grant_type: 'refresh_token', client_id: 'web', refresh_token: String(token) });
    const otherBrowser = new CookieJar();
    const otherTokens = await exchange(redirect(await signIn('ida', otherBrowser)).searchParams.get('code')!);
    const untouched = new CookieJar();
    const untouchedTokens = await exchange(redirect(await signIn('ida', untouched)).searchParams.get('code')!);

    // Without the box ticked (a form post without it) nothing else ends.
    const jar = new CookieJar();
    redirect(await signIn('ida', jar));
    const keep = page(await open(authUrl({ kc_action: 'UPDATE_PASSWORD' }), jar));
    expect(keep.html).toMatch(/name="logout-sessions" type="checkbox" value="on" checked/);
    redirect(await submit(keep, { 'password-new': 'Ida-Password-2', 'password-confirm': 'Ida-Password-2' }, jar));
    expect((await refresh(otherTokens.refresh_token)).status).toBe(200);

    const update = page(await open(authUrl({ kc_action: 'UPDATE_PASSWORD' }), jar));
    const back = redirect(await submit(update, { 'password-new': 'Ida-Password-3', 'password-confirm': 'Ida-Password-3', 'logout-sessions': 'on' }, jar));
    const tokens = await exchange(back.searchParams.get('code')!);
    expect((await refresh(tokens.refresh_token)).status).toBe(200);
    for (const ended of [otherTokens, untouchedTokens]) {
      const refused = await refresh(ended.refresh_token);
      expect(refused.status).toBe(400);
      expect(await refused.json()).toMatchObject({ error: 'invalid_grant' });
    }
    // The other browser's SSO session is gone: it gets the login page again.
    expect(title(page(await open(authUrl(), otherBrowser)))).toBe('Sign in to your account');
    expect(redirect(await open(authUrl(), jar)).searchParams.get('code')).toBeTruthy();
  });

  it('an action the realm does not run on request completes the login with kc_action_status=error', async () => {
    await createUser('dora');
    const jar = new CookieJar();
    const fresh = redirect(await signIn('dora', jar, { kc_action: 'NO_SUCH_ACTION' }));
    expect(fresh.searchParams.get('kc_action_status')).toBe('error');
    expect(fresh.searchParams.has('kc_action')).toBe(false);
    // TERMS_AND_CONDITIONS is not run on request (Keycloak's NOT_SUPPORTED), enabled or not.
    const terms = redirect(await open(authUrl({ kc_action: 'TERMS_AND_CONDITIONS' }), jar));
    expect(terms.searchParams.get('kc_action_status')).toBe('error');
    expect(await exchange(terms.searchParams.get('code')!)).toHaveProperty('id_token');
  });

  it('prompt=none: interaction_required for a pending action, never a code', async () => {
    await createUser('emil');
    const jar = new CookieJar();
    redirect(await signIn('emil', jar));
    const none = redirect(await open(authUrl({ kc_action: 'UPDATE_PROFILE', prompt: 'none' }), jar));
    expect(none.searchParams.get('error')).toBe('interaction_required');
    expect(none.searchParams.has('code')).toBe(false);
    // Keycloak's ACTION:parameter form names the same action.
    const withParameter = redirect(await open(authUrl({ kc_action: 'UPDATE_PROFILE:anything', prompt: 'none' }), jar));
    expect(withParameter.searchParams.get('error')).toBe('interaction_required');
  });

  it('a login older than max_auth_age asks the same user for the password first', async () => {
    const userId = await createUser('fritz');
    await createUser('mallory');
    await bench.admin.authenticationManagement.updateRequiredActionConfig({ alias: 'UPDATE_PROFILE', realm: REALM } as never, { config: { max_auth_age: '0' } });
    try {
      const jar = new CookieJar();
      redirect(await signIn('fritz', jar));
      await new Promise((resolve) => setTimeout(resolve, 1100));
      const none = redirect(await open(authUrl({ kc_action: 'UPDATE_PROFILE', prompt: 'none' }), jar));
      expect(none.searchParams.get('error')).toBe('login_required');

      const reauth = page(await open(authUrl({ kc_action: 'UPDATE_PROFILE' }), jar));
      expect(reauth.html).toContain('Please re-authenticate to continue');
      expect(reauth.html).toContain('class="kc-attempted-username">fritz<');
      // The form's username is the session's user, whatever is posted.
      const wrong = page(await submit(reauth, { username: 'mallory', password: 'wrong' }, jar));
      expect(wrong.status).toBe(401);
      const profile = page(await submit(wrong, { username: 'mallory', password: PASSWORD }, jar));
      expect(title(profile)).toBe('Update Account Information');
      const done = redirect(await submit(profile, { email: 'fritz@aia.example', firstName: 'Fritz', lastName: 'Lang' }, jar));
      expect(done.searchParams.get('kc_action_status')).toBe('success');
      const tokens = await exchange(done.searchParams.get('code')!);
      const claims = JSON.parse(Buffer.from(String(tokens.access_token).split('.')[1]!, 'base64url').toString()) as Record<string, unknown>;
      expect(claims.sub).toBe(userId);
      expect(claims.given_name).toBe('Fritz');
    } finally {
      await bench.admin.authenticationManagement.removeRequiredActionConfig({ alias: 'UPDATE_PROFILE', realm: REALM } as never);
    }
  });

  it('an action the user has pending anyway runs in its turn and cannot be cancelled', async () => {
    const userId = await createUser('gina', { requiredActions: ['UPDATE_PASSWORD'] });
    const jar = new CookieJar();
    const update = page(await signIn('gina', jar, { kc_action: 'UPDATE_PASSWORD' }));
    expect(hasCancel(update)).toBe(false);
    const ignored = page(await submit(update, { 'cancel-aia': 'true' }, jar));
    expect(ignored.status).toBe(400);
    const back = redirect(await submit(ignored, { 'password-new': 'Gina-Password-2', 'password-confirm': 'Gina-Password-2' }, jar));
    expect(back.searchParams.get('kc_action_status')).toBe('success');
    expect(back.searchParams.get('kc_action')).toBe('UPDATE_PASSWORD');
    expect((await bench.admin.users.findOne({ realm: REALM, id: userId }))!.requiredActions).toEqual([]);
  });

  it('a disabled action is not run on request', async () => {
    await createUser('hans');
    const current = await bench.admin.authenticationManagement.getRequiredActionForAlias({ alias: 'UPDATE_PROFILE', realm: REALM } as never) as Record<string, unknown>;
    await bench.admin.authenticationManagement.updateRequiredAction({ alias: 'UPDATE_PROFILE', realm: REALM } as never, { ...current, enabled: false });
    try {
      const back = redirect(await signIn('hans', new CookieJar(), { kc_action: 'UPDATE_PROFILE' }));
      expect(back.searchParams.get('kc_action_status')).toBe('error');
    } finally {
      await bench.admin.authenticationManagement.updateRequiredAction({ alias: 'UPDATE_PROFILE', realm: REALM } as never, { ...current, enabled: true });
    }
  });

  describe('required action configuration (Admin API)', () => {
    const alias = (name: string) => ({ alias: name, realm: REALM }) as never;

    it('describes max_auth_age and reads, validates, stores and deletes it', async () => {
      const { authenticationManagement: auth } = bench.admin;
      const description = await auth.getRequiredActionConfigDescription(alias('UPDATE_PASSWORD'));
      expect(description.properties).toEqual([expect.objectContaining({ name: 'max_auth_age', type: 'String', defaultValue: '300', label: 'Maximum Age of Authentication' })]);
      expect(await auth.getRequiredActionConfig(alias('UPDATE_PASSWORD'))).toEqual({ config: {} });

      for (const bad of ['soon', '-1', '1.5']) {
        const response = await bench.api(`/${REALM}/authentication/required-actions/UPDATE_PASSWORD/config`, { method: 'PUT', body: JSON.stringify({ config: { max_auth_age: bad } }) });
        expect(response.status).toBe(400);
        expect(await response.json()).toMatchObject({ field: 'max_auth_age', errorMessage: bad === '-1' ? 'error-number-out-of-range-too-small' : 'error-invalid-value' });
      }
      // The provider's own PUT validates it too.
      const current = await auth.getRequiredActionForAlias(alias('UPDATE_PASSWORD')) as Record<string, unknown>;
      const viaProvider = await bench.api(`/${REALM}/authentication/required-actions/UPDATE_PASSWORD`, { method: 'PUT', body: JSON.stringify({ ...current, config: { max_auth_age: '-5' } }) });
      expect(viaProvider.status).toBe(400);
      expect(await viaProvider.json()).toMatchObject({ field: 'max_auth_age', errorMessage: 'error-number-out-of-range-too-small' });
      // A PUT of the config sets the declared property; others stay as stored.
      await auth.updateRequiredActionConfig(alias('UPDATE_PASSWORD'), { config: { max_auth_age: '600', other: 'x' } });
      expect(await auth.getRequiredActionConfig(alias('UPDATE_PASSWORD'))).toEqual({ config: { max_auth_age: '600' } });
      expect((await auth.getRequiredActionForAlias(alias('UPDATE_PASSWORD')) as { config: unknown }).config).toEqual({ max_auth_age: '600' });
      const exported = await bench.api(`/${REALM}/partial-export`, { method: 'POST' });
      const requiredActions = (await exported.json() as { requiredActions: Array<{ alias: string; config: unknown }> }).requiredActions;
      expect(requiredActions.find((a) => a.alias === 'UPDATE_PASSWORD')?.config).toEqual({ max_auth_age: '600' });

      await auth.removeRequiredActionConfig(alias('UPDATE_PASSWORD'));
      expect(await auth.getRequiredActionConfig(alias('UPDATE_PASSWORD'))).toEqual({ config: {} });
    });

    it('answers as Keycloak for actions without configuration, unknown and unregistered ones', async () => {
      const status = async (path: string, init: RequestInit = {}): Promise<[number, unknown]> => {
        const response = await bench.api(`/${REALM}/authentication/required-actions/${path}`, init);
        return [response.status, await response.json().catch(() => undefined)];
      };
      expect(await status('delete_account/config')).toEqual([400, { errorMessage: 'RequiredAction is not configurable' }]);
      expect(await status('NO_SUCH_ACTION/config')).toEqual([400, { errorMessage: 'RequiredAction is not configurable' }]);
      expect(await status('delete_account/config-description')).toEqual([404, { errorMessage: 'Could not find configurable RequiredAction provider' }]);
      expect(await status('NO_SUCH_ACTION/config-description')).toEqual([404, { errorMessage: 'Could not find configurable RequiredAction provider' }]);

      await bench.admin.authenticationManagement.deleteRequiredAction(alias('update_user_locale'));
      expect(await status('update_user_locale/config')).toEqual([404, { errorMessage: 'Could not find RequiredAction config' }]);
      expect(await status('update_user_locale/config', { method: 'PUT', body: JSON.stringify({ config: { max_auth_age: '5' } }) }))
        .toEqual([404, { errorMessage: 'Could not find RequiredAction config' }]);
      expect((await status('update_user_locale/config-description'))[0]).toBe(200);
    });
  });
});
