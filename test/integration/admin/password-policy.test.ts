// Password policy and required actions through the Admin API, with the official admin client
// where it has the call: reset-password under the policy (Keycloak's error shape), password
// history, temporary passwords, invalid policy strings, user creation and realm import with plain
// passwords, and the authentication/required-actions endpoints with default actions for new users.
import fs from 'node:fs';
import path from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import type { Db } from '../../../src/store/db.ts';
import { passwordToken, startAdminBench, type AdminBench } from '../../support/admin.ts';

let bench: AdminBench;
let db: Db;
const REALM = 'pp';
const POLICY = 'length(8) and digits(1) and notUsername and passwordHistory(3)';

beforeAll(async () => {
  bench = await startAdminBench();
  db = bench.server.store.db;
  await bench.admin.realms.create({ realm: REALM, enabled: true, passwordPolicy: POLICY });
}, 60_000);
afterAll(async () => { await bench?.stop(); });

async function call(method: string, path: string, body?: unknown): Promise<{ status: number; body: any }> {
  const response = await bench.api(path, { method, ...(body === undefined ? {} : { body: JSON.stringify(body) }) });
  const text = await response.text();
  return { status: response.status, body: text ? JSON.parse(text) : undefined };
}

async function newUser(username: string): Promise<string> {
  const { id } = await bench.admin.users.create({ realm: REALM, username, enabled: true });
  return id;
}

/** The admin client types some realm-scoped calls' payload as `void & {realm?}`, which a literal cannot satisfy. */
const inRealm = (realm: string): never => ({ realm }) as never;

const reset = (id: string, value: string, temporary = false) =>
  call('PUT', `/${REALM}/users/${id}/reset-password`, { type: 'password', value, temporary });

async function credentialTypes(userId: string): Promise<string[]> {
  return (await db.selectFrom('credentials').select('type').where('user_id', '=', userId).orderBy('priority').execute()).map((c) => c.type);
}

describe('reset-password', () => {
  it('refuses a password that breaks a rule, in Keycloak\'s shape, and the admin client surfaces the key', async () => {
    const id = await newUser('alice');
    expect(await reset(id, 'abc1')).toEqual({
      status: 400, body: { error: 'invalidPasswordMinLengthMessage', error_description: 'Invalid password: minimum length 8.' },
    });
    expect(await reset(id, 'abcdefgh')).toEqual({
      status: 400, body: { error: 'invalidPasswordMinDigitsMessage', error_description: 'Invalid password: must contain at least 1 numerical digits.' },
    });
    const failure = await bench.admin.users.resetPassword({ realm: REALM, id, credential: { type: 'password', value: 'alice', temporary: false } })
      .then(() => undefined, (error: { message: string; responseData: unknown }) => error);
    expect(failure?.message).toBe('invalidPasswordMinLengthMessage');
    expect(failure?.responseData).toEqual({ error: 'invalidPasswordMinLengthMessage', error_description: 'Invalid password: minimum length 8.' });
    expect(await credentialTypes(id)).toEqual([]);
  });

  it('accepts a compliant password, which then logs in', async () => {
    const id = await newUser('bob');
    await bench.admin.users.resetPassword({ realm: REALM, id, credential: { type: 'password', value: 'correct-horse-1', temporary: false } });
    expect(await passwordToken(bench.server.url, REALM, 'bob', 'correct-horse-1')).toMatch(/^ey/);
  });

  it('refuses the current and the last passwords of passwordHistory(3), allows older ones', async () => {
    const id = await newUser('carol');
    for (const password of ['first-pass-1', 'second-pass-2', 'third-pass-3', 'fourth-pass-4']) expect((await reset(id, password)).status).toBe(204);
    // The current password keeps its credential; the two previous ones are history, the oldest is gone.
    expect(await credentialTypes(id)).toEqual(['password', 'password-history', 'password-history']);
    const refused = { status: 400, body: { error: 'invalidPasswordHistoryMessage', error_description: 'Invalid password: must not be equal to any of last 3 passwords.' } };
    for (const reused of ['fourth-pass-4', 'third-pass-3', 'second-pass-2']) expect(await reset(id, reused)).toEqual(refused);
    expect((await reset(id, 'first-pass-1')).status).toBe(204);
    expect(await passwordToken(bench.server.url, REALM, 'carol', 'first-pass-1')).toMatch(/^ey/);
    // History entries are neither listed nor usable to log in.
    const listed = await bench.admin.users.getCredentials({ realm: REALM, id });
    expect(listed.map((c) => c.type)).toEqual(['password']);
    await expect(passwordToken(bench.server.url, REALM, 'carol', 'fourth-pass-4')).rejects.toThrow(/invalid_grant/);
  });

  it('keeps the password credential\'s id and priority across changes', async () => {
    const id = await newUser('dave');
    await reset(id, 'dave-pass-1');
    const before = await bench.admin.users.getCredentials({ realm: REALM, id });
    await reset(id, 'dave-pass-2');
    const after = await bench.admin.users.getCredentials({ realm: REALM, id });
    expect(after.map((c) => c.id)).toEqual(before.map((c) => c.id));
  });

  it('adds UPDATE_PASSWORD for a temporary password and removes it for a permanent one', async () => {
    const id = await newUser('erin');
    await bench.admin.users.resetPassword({ realm: REALM, id, credential: { type: 'password', value: 'temporary-1', temporary: true } });
    expect((await bench.admin.users.findOne({ realm: REALM, id }))?.requiredActions).toEqual(['UPDATE_PASSWORD']);
    await bench.admin.users.resetPassword({ realm: REALM, id, credential: { type: 'password', value: 'permanent-2', temporary: false } });
    expect((await bench.admin.users.findOne({ realm: REALM, id }))?.requiredActions).toEqual([]);
  });
});

describe('user representations with passwords', () => {
  it('refuses to create a user whose password breaks the policy, and creates nothing', async () => {
    const created = await call('POST', `/${REALM}/users`, { username: 'frank', enabled: true, credentials: [{ type: 'password', value: 'frank1', temporary: false }] });
    expect(created).toEqual({ status: 400, body: { error: 'invalidPasswordMinLengthMessage', error_description: 'Invalid password: minimum length 8.' } });
    const notUsername = await call('POST', `/${REALM}/users`, { username: 'frank1234', enabled: true, credentials: [{ type: 'password', value: 'frank1234' }] });
    expect(notUsername).toEqual({ status: 400, body: { error: 'invalidPasswordNotUsernameMessage', error_description: 'Invalid password: must not be equal to the username.' } });
    expect(await bench.admin.users.find({ realm: REALM, username: 'frank', exact: true })).toEqual([]);
  });

  it('creates a user with a compliant temporary password', async () => {
    const { id } = await bench.admin.users.create({ realm: REALM, username: 'grace', enabled: true, credentials: [{ type: 'password', value: 'grace-pass-1', temporary: true }] });
    expect((await bench.admin.users.findOne({ realm: REALM, id }))?.requiredActions).toEqual(['UPDATE_PASSWORD']);
  });

  it('checks a password set by a user update, history included', async () => {
    const id = await newUser('heidi');
    await reset(id, 'heidi-pass-1');
    expect(await call('PUT', `/${REALM}/users/${id}`, { credentials: [{ type: 'password', value: 'heidi-pass-1' }] })).toEqual({
      status: 400, body: { error: 'invalidPasswordHistoryMessage', error_description: 'Invalid password: must not be equal to any of last 3 passwords.' },
    });
    expect((await call('PUT', `/${REALM}/users/${id}`, { credentials: [{ type: 'password', value: 'heidi-pass-2' }] })).status).toBe(204);
    expect(await credentialTypes(id)).toEqual(['password', 'password-history']);
    expect(await passwordToken(bench.server.url, REALM, 'heidi', 'heidi-pass-2')).toMatch(/^ey/);
  });

  it('fails a realm import whose plain password breaks the policy, naming the user and the rule', async () => {
    const response = await call('POST', '', {
      realm: 'pp-import', enabled: true, passwordPolicy: 'length(10)',
      users: [{ username: 'ivan', enabled: true, credentials: [{ type: 'password', value: 'short-1' }] }],
    });
    expect(response.status).toBe(400);
    expect(response.body.errorMessage).toBe('user "ivan": the password does not meet the realm\'s password policy (length): Invalid password: minimum length 10.');
    expect(await db.selectFrom('realms').select('id').where('name', '=', 'pp-import').executeTakeFirst()).toBeUndefined();
  });
});

describe('the realm password policy string', () => {
  it('refuses invalid strings with Keycloak\'s wording', async () => {
    expect(await call('PUT', `/${REALM}`, { passwordPolicy: 'length(abc)' })).toEqual({ status: 400, body: { errorMessage: 'Invalid config for length: Not a valid number' } });
    expect(await call('PUT', `/${REALM}`, { passwordPolicy: 'length(8) and noSuchPolicy' })).toEqual({ status: 400, body: { errorMessage: 'Password policy not found' } });
    expect(await call('PUT', `/${REALM}`, { passwordPolicy: 'regexPattern([a-z)' })).toEqual({ status: 400, body: { errorMessage: 'Invalid config for regexPattern: Not a valid regular expression' } });
    expect(await call('POST', '', { realm: 'pp-bad', passwordPolicy: 'digits(x)' })).toEqual({ status: 400, body: { errorMessage: 'Invalid config for digits: Not a valid number' } });
    expect((await bench.admin.realms.findOne({ realm: REALM }))?.passwordPolicy).toBe(POLICY);
  });

  it('stores the normal form Keycloak stores', async () => {
    await bench.admin.realms.create({ realm: 'pp-normal', passwordPolicy: 'length(8) and digits(2) and length(12) and notUsername(undefined)' });
    expect((await bench.admin.realms.findOne({ realm: 'pp-normal' }))?.passwordPolicy).toBe('length(12) and digits(2) and notUsername(undefined)');
    await bench.admin.realms.update({ realm: 'pp-normal' }, { passwordPolicy: 'upperCase and upperCase(3)' });
    expect((await bench.admin.realms.findOne({ realm: 'pp-normal' }))?.passwordPolicy).toBe('upperCase(3)');
  });
});

describe('passwordBlacklist(<file>)', () => {
  it('refuses a policy naming a file missing from the blacklists folder, then checks passwords against the file', async () => {
    const folder = bench.server.config.passwordBlacklistsDir;
    fs.mkdirSync(folder, { recursive: true });
    fs.writeFileSync(path.join(folder, 'cx-common.txt'), 'Welcome123\nsummer2026\n');
    await bench.admin.realms.create({ realm: 'pp-blacklist', enabled: true });
    expect(await call('PUT', '/pp-blacklist', { passwordPolicy: 'length(8) and passwordBlacklist(not-there.txt)' }))
      .toEqual({ status: 400, body: { errorMessage: 'Invalid config for passwordBlacklist: Password blacklist not-there.txt not found!' } });
    expect((await call('PUT', '/pp-blacklist', { passwordPolicy: 'length(8) and passwordBlacklist(cx-common.txt)' })).status).toBe(204);
    const { id } = await bench.admin.users.create({ realm: 'pp-blacklist', username: 'dave', enabled: true });
    const resetTo = (value: string) => call('PUT', `/pp-blacklist/users/${id}/reset-password`, { type: 'password', value, temporary: false });
    const refused = { status: 400, body: { error: 'invalidPasswordBlacklistedMessage', error_description: 'Invalid password: password is blacklisted.' } };
    expect(await resetTo('WELCOME123')).toEqual(refused);
    expect(await resetTo('summer2026')).toEqual(refused);
    expect((await resetTo('autumn-2026')).status).toBe(204);
    expect(await passwordToken(bench.server.url, 'pp-blacklist', 'dave', 'autumn-2026')).toMatch(/^ey/);
  });
});

describe('required actions', () => {
  const realm = 'ra';
  beforeAll(async () => { await bench.admin.realms.create({ realm, enabled: true }); });

  it('lists Keycloak 26\'s providers of a new realm in priority order', async () => {
    const list = await bench.admin.authenticationManagement.getRequiredActions(inRealm(realm));
    expect(list.map((a) => [a.alias, a.priority, a.enabled])).toEqual([
      ['CONFIGURE_TOTP', 10, true], ['TERMS_AND_CONDITIONS', 20, false], ['UPDATE_PASSWORD', 30, true], ['UPDATE_PROFILE', 40, true],
      ['VERIFY_EMAIL', 50, true], ['delete_account', 60, false], ['UPDATE_EMAIL', 70, false], ['webauthn-register', 80, true],
      ['webauthn-register-passwordless', 90, true], ['VERIFY_PROFILE', 100, true], ['delete_credential', 110, true], ['idp_link', 120, true],
      ['CONFIGURE_RECOVERY_AUTHN_CODES', 130, true], ['update_user_locale', 1000, true],
    ]);
    expect(list[0]).toEqual({ alias: 'CONFIGURE_TOTP', name: 'Configure OTP', providerId: 'CONFIGURE_TOTP', enabled: true, defaultAction: false, priority: 10, config: {} });
    expect(await bench.admin.authenticationManagement.getRequiredActionForAlias({ realm, alias: 'UPDATE_PASSWORD' })).toMatchObject({ name: 'Update Password', priority: 30 });
    expect(await bench.admin.authenticationManagement.getRequiredActionForAlias({ realm, alias: 'NOPE' })).toBeNull();
    expect(await bench.admin.authenticationManagement.getUnregisteredRequiredActions(inRealm(realm))).toEqual([]);
    // Only exports carry them, not the realm representation.
    expect(await bench.admin.realms.findOne({ realm })).not.toHaveProperty('requiredActions');
  });

  it('updates enabled and defaultAction, and a new user gets the enabled default actions', async () => {
    const terms = await bench.admin.authenticationManagement.getRequiredActionForAlias({ realm, alias: 'TERMS_AND_CONDITIONS' });
    await bench.admin.authenticationManagement.updateRequiredAction({ realm, alias: 'TERMS_AND_CONDITIONS' }, { ...terms, enabled: true, defaultAction: true });
    const profile = await bench.admin.authenticationManagement.getRequiredActionForAlias({ realm, alias: 'UPDATE_PROFILE' });
    // A default action that is disabled gives nothing.
    await bench.admin.authenticationManagement.updateRequiredAction({ realm, alias: 'delete_account' }, { defaultAction: true });
    expect(await bench.admin.authenticationManagement.getRequiredActionForAlias({ realm, alias: 'TERMS_AND_CONDITIONS' })).toMatchObject({ enabled: true, defaultAction: true, priority: 20 });
    expect(profile).toMatchObject({ defaultAction: false });
    const { id } = await bench.admin.users.create({ realm, username: 'newcomer', enabled: true, requiredActions: ['VERIFY_EMAIL'] });
    expect((await bench.admin.users.findOne({ realm, id }))?.requiredActions).toEqual(['TERMS_AND_CONDITIONS', 'VERIFY_EMAIL']);
  });

  it('raises and lowers priorities by swapping with the neighbour', async () => {
    await bench.admin.authenticationManagement.raiseRequiredActionPriority({ realm, alias: 'UPDATE_PROFILE' });
    let list = await bench.admin.authenticationManagement.getRequiredActions(inRealm(realm));
    expect(list.slice(0, 4).map((a) => [a.alias, a.priority])).toEqual([['CONFIGURE_TOTP', 10], ['TERMS_AND_CONDITIONS', 20], ['UPDATE_PROFILE', 30], ['UPDATE_PASSWORD', 40]]);
    await bench.admin.authenticationManagement.lowerRequiredActionPriority({ realm, alias: 'CONFIGURE_TOTP' });
    list = await bench.admin.authenticationManagement.getRequiredActions(inRealm(realm));
    expect(list.slice(0, 2).map((a) => [a.alias, a.priority])).toEqual([['TERMS_AND_CONDITIONS', 10], ['CONFIGURE_TOTP', 20]]);
    // At either end nothing moves.
    await bench.admin.authenticationManagement.raiseRequiredActionPriority({ realm, alias: 'TERMS_AND_CONDITIONS' });
    await bench.admin.authenticationManagement.lowerRequiredActionPriority({ realm, alias: 'update_user_locale' });
    expect((await bench.admin.authenticationManagement.getRequiredActions(inRealm(realm))).map((a) => a.priority)).toEqual(list.map((a) => a.priority));
  });

  it('deletes a provider, lists it as unregistered and registers it again after the last one', async () => {
    await bench.admin.authenticationManagement.deleteRequiredAction({ realm, alias: 'delete_account' });
    expect(await bench.admin.authenticationManagement.getRequiredActionForAlias({ realm, alias: 'delete_account' })).toBeNull();
    expect(await bench.admin.authenticationManagement.getUnregisteredRequiredActions(inRealm(realm))).toEqual([{ name: 'Delete Account', providerId: 'delete_account' }]);
    await bench.admin.authenticationManagement.registerRequiredAction({ realm, providerId: 'delete_account', name: 'Delete Account' });
    expect(await bench.admin.authenticationManagement.getRequiredActionForAlias({ realm, alias: 'delete_account' })).toEqual({
      alias: 'delete_account', name: 'Delete Account', providerId: 'delete_account', enabled: true, defaultAction: false, priority: 1001, config: {},
    });
    expect(await bench.admin.authenticationManagement.getUnregisteredRequiredActions(inRealm(realm))).toEqual([]);
    expect((await call('POST', `/${realm}/authentication/register-required-action`, { providerId: 'delete_account' })).status).toBe(409);
    expect(await call('POST', `/${realm}/authentication/register-required-action`, { providerId: 'no-such-action' })).toEqual({
      status: 400, body: { errorMessage: 'Unknown required action provider: no-such-action' },
    });
    expect(await call('DELETE', `/${realm}/authentication/required-actions/NOPE`)).toEqual({ status: 404, body: { errorMessage: 'Failed to find required action' } });
  });

  it('lets users\' administrators read the list but only realm managers change it', async () => {
    // A realm of its own: realm `ra` now gives new users a default action (no password grant for them).
    const other = 'ra-permissions';
    await bench.admin.realms.create({ realm: other, enabled: true });
    const viewer = await bench.realmAdmin(other, ['view-users']);
    expect((await viewer.authenticationManagement.getRequiredActions(inRealm(other))).length).toBe(14);
    await expect(viewer.authenticationManagement.raiseRequiredActionPriority({ realm: other, alias: 'UPDATE_PASSWORD' })).rejects.toThrow('HTTP 403 Forbidden');
    const nobody = await bench.realmAdmin(other, []);
    await expect(nobody.authenticationManagement.getRequiredActions(inRealm(other))).rejects.toThrow('HTTP 403 Forbidden');
    const manager = await bench.realmAdmin(other, ['manage-realm']);
    await manager.authenticationManagement.raiseRequiredActionPriority({ realm: other, alias: 'UPDATE_PASSWORD' });
    expect((await manager.authenticationManagement.getRequiredActionForAlias({ realm: other, alias: 'UPDATE_PASSWORD' }))?.priority).toBe(20);
  });

  it('exports the stored list and imports one, adding the defaults it lacks', async () => {
    const exported = await call('POST', `/${realm}/partial-export`);
    expect(exported.status).toBe(200);
    const stored = await bench.admin.authenticationManagement.getRequiredActions(inRealm(realm));
    expect(exported.body.requiredActions).toEqual(stored);

    const fresh = await call('POST', `/${REALM}/partial-export`);
    expect(fresh.body.requiredActions.map((a: { alias: string }) => a.alias)).toContain('UPDATE_PASSWORD');

    await bench.admin.realms.create({
      realm: 'ra-import', enabled: true,
      requiredActions: [
        { alias: 'UPDATE_PASSWORD', name: 'Update Password', providerId: 'UPDATE_PASSWORD', enabled: true, defaultAction: true, priority: 5, config: {} },
        { alias: 'terms_and_conditions', name: 'Terms and Conditions', providerId: 'terms_and_conditions', enabled: true, defaultAction: false, priority: 6, config: {} },
      ],
    } as never);
    const imported = await bench.admin.authenticationManagement.getRequiredActions(inRealm('ra-import'));
    expect(imported.slice(0, 3).map((a) => [a.alias, a.priority, a.enabled, a.defaultAction])).toEqual([
      ['UPDATE_PASSWORD', 5, true, true], ['TERMS_AND_CONDITIONS', 6, true, false], ['CONFIGURE_TOTP', 10, true, false],
    ]);
    expect(imported).toHaveLength(14);
    const { id } = await bench.admin.users.create({ realm: 'ra-import', username: 'someone', enabled: true });
    expect((await bench.admin.users.findOne({ realm: 'ra-import', id }))?.requiredActions).toEqual(['UPDATE_PASSWORD']);
    expect(await call('POST', '', { realm: 'ra-bad', requiredActions: [{ alias: 'X', priority: 'high' }] })).toEqual({
      status: 400, body: { errorMessage: 'requiredActions[0]: priority must be an integer' },
    });
  });
});
