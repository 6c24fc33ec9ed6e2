// Admin API for login authenticators: CRUD, the realm default mirroring the realm's Keycloak
// fields both ways, presets, assignment to users and groups with the user > group > default
// order, and bad input.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { startAdminBench, type AdminBench } from '../../support/admin.ts';

const REALM = 'authenticators';
const OTHER = 'authenticators-other';

type Rep = Record<string, unknown> & { id: string; name: string; default: boolean; passwordPolicy: string; passwordRules: Record<string, unknown> };

describe('login authenticators admin API', () => {
  let bench: AdminBench;

  const list = async (realm = REALM): Promise<Rep[]> => {
    const response = await bench.api(`/${realm}/login-authenticators`);
    expect(response.status).toBe(200);
    return response.json() as Promise<Rep[]>;
  };
  const create = (body: unknown, realm = REALM): Promise<Response> =>
    bench.api(`/${realm}/login-authenticators`, { method: 'POST', body: JSON.stringify(body) });
  const idOf = (response: Response): string => response.headers.get('location')!.split('/').pop()!;
  const get = async (id: string): Promise<Rep> => (await bench.api(`/${REALM}/login-authenticators/${id}`)).json() as Promise<Rep>;
  const put = (id: string, body: unknown): Promise<Response> =>
    bench.api(`/${REALM}/login-authenticators/${id}`, { method: 'PUT', body: JSON.stringify(body) });

  beforeAll(async () => {
    bench = await startAdminBench();
    await bench.admin.realms.create({ realm: REALM, enabled: true, passwordPolicy: 'length(10) and digits(2)', bruteForceProtected: true, failureFactor: 7 });
    await bench.admin.realms.create({ realm: OTHER, enabled: true });
  });
  afterAll(async () => { await bench?.stop(); });

  it('the realm default exists and shows the realm password policy, brute force and OTP fields', async () => {
    const [first, ...rest] = await list();
    expect(rest).toEqual([]);
    expect(first).toMatchObject({
      name: 'default', default: true, passwordPolicy: 'length(10) and digits(2)', bruteForceProtected: true, failureFactor: 7,
      otpPolicyType: 'totp', otpPolicyAlgorithm: 'HmacSHA1', otpPolicyDigits: 6, otpPolicyPeriod: 30, mfa: 'none', allowedIpRanges: [],
    });
    expect(first!.passwordRules).toMatchObject({ minLength: 10, minDigits: 2 });
  });

  it('writing the default writes the realm (and the realm representation shows it); writing the realm changes the default', async () => {
    const [def] = await list();
    expect((await put(def!.id, { passwordRules: { minLength: 12, minUpperCase: 1 }, failureFactor: 5, mfa: 'totp' })).status).toBe(204);
    const realm = await bench.admin.realms.findOne({ realm: REALM });
    // Structured rules are the whole rule set: digits(2) was not named, so it goes.
    expect(realm?.passwordPolicy).toBe('length(12) and upperCase(1)');
    expect(realm?.failureFactor).toBe(5);
    await bench.admin.realms.update({ realm: REALM }, { passwordPolicy: 'length(9) and notUsername(undefined)', otpPolicyDigits: 8 });
    const after = await get(def!.id);
    expect(after).toMatchObject({ passwordPolicy: 'length(9) and notUsername(undefined)', otpPolicyDigits: 8, mfa: 'totp', failureFactor: 5 });
    expect(after.passwordRules).toMatchObject({ minLength: 9, notUsername: true });
  });

  it('creates named authenticators from Keycloak defaults or the CXone preset, with 201 and Location', async () => {
    const cx = await create({ name: 'CXone standard', preset: 'cxone' });
    expect(cx.status).toBe(201);
    expect(await get(idOf(cx))).toMatchObject({
      name: 'CXone standard', default: false, bruteForceProtected: true, failureFactor: 6, waitIncrementSeconds: 1800, maxFailureWaitSeconds: 1800,
      passwordRules: { minLength: 6, minLowerCase: 1, minUpperCase: 1, minDigits: 1 },
    });
    const plain = await create({ name: 'plain' });
    expect(await get(idOf(plain))).toMatchObject({ passwordPolicy: '', bruteForceProtected: false, failureFactor: 30, mfa: 'none' });
    expect((await create({ name: 'Plain' })).status).toBe(409);
  });

  it('refuses bad input with 400 and an errorMessage', async () => {
    for (const body of [
      {}, { name: '' }, { name: 'x', passwordPolicy: 'noSuchPolicy(3)' }, { name: 'x', passwordPolicy: 'length(abc)' },
      { name: 'x', mfa: 'sms' }, { name: 'x', allowedIpRanges: ['10.0.0.0/99'] }, { name: 'x', allowedIpRanges: ['not-an-ip'] },
      { name: 'x', preset: 'strictest' }, { name: 'x', otpPolicyDigits: 7 }, { name: 'x', failureFactor: -1 },
      { name: 'x', passwordRules: { minLength: 'eight' } }, { name: 'x', passwordRules: { unknownRule: 1 } },
    ]) {
      const response = await create(body);
      expect(response.status, JSON.stringify(body)).toBe(400);
      expect(await response.json()).toHaveProperty('errorMessage');
    }
    expect((await bench.api(`/${REALM}/login-authenticators/not-a-uuid`)).status).toBe(404);
  });

  it('another authenticator can become the default: the realm takes its fields, the old default keeps its own', async () => {
    const strict = await create({ name: 'strict-default', passwordPolicy: 'length(16)', failureFactor: 3, bruteForceProtected: true, mfa: 'hotp' });
    const id = idOf(strict);
    const oldDefault = (await list()).find((a) => a.default)!;
    expect((await put(id, { default: true })).status).toBe(204);
    const realm = await bench.admin.realms.findOne({ realm: REALM });
    expect(realm).toMatchObject({ passwordPolicy: 'length(16)', failureFactor: 3, bruteForceProtected: true });
    expect(await get(id)).toMatchObject({ default: true, mfa: 'hotp' });
    expect(await get(oldDefault.id)).toMatchObject({ default: false, passwordPolicy: 'length(9) and notUsername(undefined)', failureFactor: 5, mfa: 'totp' });
    // The default cannot be deleted or un-defaulted; the old one can be deleted now.
    expect((await bench.api(`/${REALM}/login-authenticators/${id}`, { method: 'DELETE' })).status).toBe(400);
    expect((await put(id, { default: false })).status).toBe(400);
    expect((await bench.api(`/${REALM}/login-authenticators/${oldDefault.id}`, { method: 'DELETE' })).status).toBe(204);
  });

  it('assigns to users and groups: the user wins, then the nearest group, then the default', async () => {
    const userLevel = idOf(await create({ name: 'user-level' }));
    const parentLevel = idOf(await create({ name: 'parent-level' }));
    const childLevel = idOf(await create({ name: 'child-level' }));
    const { id: parent } = await bench.admin.groups.create({ realm: REALM, name: 'floor' });
    const { id: child } = await bench.admin.groups.createChildGroup({ realm: REALM, id: parent }, { name: 'team' });
    const { id: userId } = await bench.admin.users.create({ realm: REALM, username: 'agent1', enabled: true, groups: ['/floor/team'] });
    const effective = async (): Promise<{ name: string; source: string }> =>
      (await bench.api(`/${REALM}/users/${userId}/login-authenticator`)).json() as Promise<{ name: string; source: string }>;

    expect(await effective()).toMatchObject({ name: 'strict-default', source: 'default' });
    expect((await bench.api(`/${REALM}/groups/${parent}/login-authenticator`, { method: 'PUT', body: JSON.stringify({ id: parentLevel }) })).status).toBe(204);
    expect(await effective()).toMatchObject({ name: 'parent-level', source: 'group' });
    expect((await bench.api(`/${REALM}/groups/${child}/login-authenticator`, { method: 'PUT', body: JSON.stringify({ name: 'child-level' }) })).status).toBe(204);
    expect(await effective()).toMatchObject({ name: 'child-level', source: 'group' });
    expect((await bench.api(`/${REALM}/users/${userId}/login-authenticator`, { method: 'PUT', body: JSON.stringify({ id: userLevel }) })).status).toBe(204);
    expect(await effective()).toMatchObject({ name: 'user-level', source: 'user' });
    const user = await bench.admin.users.findOne({ realm: REALM, id: userId });
    expect((user as Record<string, unknown>).loginAuthenticatorId).toBe(userLevel);

    // Deleting an assigned authenticator falls back to the next level.
    expect((await bench.api(`/${REALM}/login-authenticators/${userLevel}`, { method: 'DELETE' })).status).toBe(204);
    expect(await effective()).toMatchObject({ name: 'child-level', source: 'group' });
    expect((await bench.api(`/${REALM}/groups/${child}/login-authenticator`, { method: 'DELETE' })).status).toBe(204);
    expect(await effective()).toMatchObject({ name: 'parent-level' });
    expect((await bench.api(`/${REALM}/groups/${child}/login-authenticator`)).status).toBe(404);

    // The user representation takes the assignment too; "" clears it.
    await bench.admin.users.update({ realm: REALM, id: userId }, { loginAuthenticatorId: childLevel } as never);
    expect(await effective()).toMatchObject({ name: 'child-level', source: 'user' });
    await bench.admin.users.update({ realm: REALM, id: userId }, { loginAuthenticatorId: '' } as never);
    expect(await effective()).toMatchObject({ name: 'parent-level', source: 'group' });
  });

  it("never assigns another realm's authenticator", async () => {
    const foreign = idOf(await create({ name: 'foreign' }, OTHER));
    const { id: userId } = await bench.admin.users.create({ realm: REALM, username: 'agent2', enabled: true });
    const assign = await bench.api(`/${REALM}/users/${userId}/login-authenticator`, { method: 'PUT', body: JSON.stringify({ id: foreign }) });
    expect(assign.status).toBe(404);
    expect((await bench.api(`/${REALM}/login-authenticators/${foreign}`)).status).toBe(404);
    const update = await bench.api(`/${REALM}/users/${userId}`, { method: 'PUT', body: JSON.stringify({ loginAuthenticatorId: foreign }) });
    expect(update.status).toBe(400);
  });

  it('allowed IP ranges refuse a right password from elsewhere, and only after the password was right', async () => {
    await bench.admin.clients.create({ realm: OTHER, clientId: 'ip-app', publicClient: true, directAccessGrantsEnabled: true });
    const { id: userId } = await bench.admin.users.create({
      realm: OTHER, username: 'remote', enabled: true, credentials: [{ type: 'password', value: 'Remote-password-1', temporary: false }],
    });
    const office = idOf(await create({ name: 'office-only', allowedIpRanges: ['10.0.0.0/8', 'fd00::/8'] }, OTHER));
    expect((await bench.api(`/${OTHER}/users/${userId}/login-authenticator`, { method: 'PUT', body: JSON.stringify({ id: office }) })).status).toBe(204);
    const token = (password: string): Promise<Response> => fetch(`${bench.server.url}/realms/${OTHER}/protocol/openid-connect/token`, {
      method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ grant_type: 'password', client_id: 'ip-app', username: 'remote', password }).toString(),
    });
    const wrong = await token('not-it');
    expect(wrong.status).toBe(401);
    expect(await wrong.json()).toMatchObject({ error: 'invalid_grant', error_description: 'Invalid user credentials' });
    const right = await token('Remote-password-1');
    expect(right.status).toBe(400);
    expect(await right.json()).toMatchObject({ error: 'invalid_grant', error_description: 'Login not allowed from this address' });
    const put = await bench.api(`/${OTHER}/login-authenticators/${office}`, { method: 'PUT', body: JSON.stringify({ allowedIpRanges: ['10.0.0.0/8', '127.0.0.1'] }) });
    expect(put.status).toBe(204);
    expect((await token('Remote-password-1')).status).toBe(200);
  });

  it('realm admins need view-realm to read and manage-realm to write', async () => {
    // (In OTHER: REALM's default now demands HOTP, which a password-grant admin client cannot give.)
    const viewer = await bench.realmAdmin(OTHER, ['view-realm']);
    const token = await viewer.getAccessToken();
    expect((await bench.api(`/${OTHER}/login-authenticators`, { token })).status).toBe(200);
    expect((await bench.api(`/${OTHER}/login-authenticators`, { token, method: 'POST', body: JSON.stringify({ name: 'nope' }) })).status).toBe(403);
    expect((await bench.api(`/${REALM}/login-authenticators`, { token })).status).toBe(403);
  });
});
