// Admin REST API: users, through the official admin client where it has the call and raw
// requests for error cases. Fixtures owned by other areas (groups, identity providers, consents,
// management roles) are written straight to the database so these tests stand on their own.
import crypto from 'node:crypto';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { newId } from '../../../src/crypto/random.ts';
import type { Db } from '../../../src/store/db.ts';
import { passwordToken, startAdminBench, type AdminBench } from '../../support/admin.ts';
import { postForm } from '../../support/server.ts';

let bench: AdminBench;
let db: Db;
beforeAll(async () => {
  bench = await startAdminBench();
  db = bench.server.store.db;
}, 60_000);
afterAll(async () => { await bench?.stop(); });

const json = (body: unknown): RequestInit => ({ body: JSON.stringify(body) });
async function call(method: string, path: string, body?: unknown, token?: string): Promise<{ status: number; body: any; headers: Headers }> {
  const response = await bench.api(path, { method, ...(body === undefined ? {} : json(body)), ...(token ? { token } : {}) });
  const text = await response.text();
  const isJson = response.headers.get('content-type')?.includes('json');
  return { status: response.status, body: isJson && text ? JSON.parse(text) : undefined, headers: response.headers };
}

async function realmId(realm: string): Promise<string> {
  return (await db.selectFrom('realms').select('id').where('name', '=', realm).executeTakeFirstOrThrow()).id;
}

async function clientUuid(realm: string, clientId: string): Promise<string> {
  return (await db.selectFrom('clients').select('id').where('realm_id', '=', await realmId(realm)).where('client_id', '=', clientId).executeTakeFirstOrThrow()).id;
}

/** A user of `realm` holding realm-management roles, and a token for it. */
async function adminToken(realm: string, roles: string[]): Promise<string> {
  const username = `adm-${crypto.randomBytes(4).toString('hex')}`;
  const password = crypto.randomBytes(12).toString('base64url');
  const { id } = await bench.admin.users.create({ realm, username, enabled: true, credentials: [{ type: 'password', value: password }] });
  const management = await clientUuid(realm, 'realm-management');
  const roleRows = roles.length === 0 ? [] : await db.selectFrom('roles').select('id').where('client_id', '=', management).where('name', 'in', roles).execute();
  for (const role of roleRows) await db.insertInto('user_roles').values({ user_id: id, role_id: role.id }).execute();
  return passwordToken(bench.server.url, realm, username, password);
}

async function insertGroup(realm: string, name: string, parentId: string | null = null): Promise<string> {
  const id = newId();
  await db.insertInto('groups').values({ id, realm_id: await realmId(realm), parent_id: parentId, name, description: null, attributes: JSON.stringify({ tier: ['1'] }) }).execute();
  return id;
}

async function insertIdentityProvider(realm: string, alias: string): Promise<void> {
  await db.insertInto('identity_providers').values({
    internal_id: newId(), realm_id: await realmId(realm), alias, provider_id: 'oidc', display_name: null, config: '{}', secrets_sealed: null, extra: '{}',
  }).execute();
}

function tokenRequest(realm: string, form: Record<string, string>): Promise<Response> {
  return postForm(`${bench.server.url}/realms/${realm}/protocol/openid-connect/token`, { client_id: 'admin-cli', ...form });
}

describe('create, read, update, delete', () => {
  it('creates a user the way Keycloak stores it and reads it back', async () => {
    await bench.admin.realms.create({ realm: 'u-crud', enabled: true });
    const created = await bench.api('/u-crud/users', {
      method: 'POST',
      ...json({ username: 'Alice', email: 'Alice@Example.COM', firstName: 'Alice', lastName: 'Liddell', enabled: true,
        attributes: { dept: ['sales'], team: 'north', username: ['ignored'] }, requiredActions: ['VERIFY_EMAIL', 'NOT_AN_ACTION'] }),
    });
    expect(created.status).toBe(201);
    const id = created.headers.get('location')!.split('/').pop()!;
    expect(created.headers.get('location')).toBe(`${bench.server.url}/admin/realms/u-crud/users/${id}`);

    const user = await bench.admin.users.findOne({ realm: 'u-crud', id });
    expect(user).toEqual({
      id, username: 'alice', firstName: 'Alice', lastName: 'Liddell', email: 'alice@example.com', emailVerified: false,
      attributes: { dept: ['sales'], team: ['north'] }, createdTimestamp: expect.any(Number), enabled: true, totp: false,
      disableableCredentialTypes: [], requiredActions: ['VERIFY_EMAIL'], notBefore: 0,
      access: { view: true, manage: true, mapRoles: true, manageGroupMembership: true, impersonate: true },
    });
    expect(Math.abs(user!.createdTimestamp! - Date.now())).toBeLessThan(60_000);

    // The realm's default role comes with every new user.
    const roles = await db.selectFrom('user_roles').innerJoin('roles', 'roles.id', 'user_roles.role_id').select('roles.name').where('user_roles.user_id', '=', id).execute();
    expect(roles.map((r) => r.name)).toEqual(['default-roles-u-crud']);
  });

  it('creates users disabled unless enabled is given, as Keycloak does', async () => {
    const { id } = await bench.admin.users.create({ realm: 'u-crud', username: 'quiet' });
    expect(await bench.admin.users.findOne({ realm: 'u-crud', id })).toMatchObject({ enabled: false, emailVerified: false });
  });

  it('updates only the fields given and replaces attributes when they are', async () => {
    const { id } = await bench.admin.users.create({ realm: 'u-crud', username: 'merge', email: 'merge@example.com', firstName: 'M', lastName: 'E', enabled: true, attributes: { a: ['1'] } });
    await bench.admin.users.update({ realm: 'u-crud', id }, { firstName: 'Marge' });
    expect(await bench.admin.users.findOne({ realm: 'u-crud', id })).toMatchObject({ firstName: 'Marge', lastName: 'E', email: 'merge@example.com', enabled: true, attributes: { a: ['1'] } });

    await bench.admin.users.update({ realm: 'u-crud', id }, { attributes: { b: ['2', '3'] }, enabled: false, emailVerified: true, requiredActions: ['UPDATE_PROFILE'] });
    expect(await bench.admin.users.findOne({ realm: 'u-crud', id })).toMatchObject({ attributes: { b: ['2', '3'] }, enabled: false, emailVerified: true, requiredActions: ['UPDATE_PROFILE'] });

    await bench.admin.users.update({ realm: 'u-crud', id }, { requiredActions: [], attributes: {}, lastName: '' });
    const after = await bench.admin.users.findOne({ realm: 'u-crud', id });
    expect(after).toMatchObject({ requiredActions: [] });
    expect(after).not.toHaveProperty('attributes');
    expect(after).not.toHaveProperty('lastName');
  });

  it('changes the username only where the realm allows it, with 409 on a taken name', async () => {
    const { id } = await bench.admin.users.create({ realm: 'u-crud', username: 'renamed', enabled: true });
    const refused = await call('PUT', `/u-crud/users/${id}`, { username: 'other-name' });
    expect(refused.status).toBe(400);

    await bench.admin.realms.update({ realm: 'u-crud' }, { editUsernameAllowed: true });
    await bench.admin.users.update({ realm: 'u-crud', id }, { username: 'New-Name' });
    expect(await bench.admin.users.findOne({ realm: 'u-crud', id })).toMatchObject({ username: 'new-name' });
    const taken = await call('PUT', `/u-crud/users/${id}`, { username: 'ALICE' });
    expect(taken).toMatchObject({ status: 409, body: { errorMessage: 'User exists with same username' } });
  });

  it('refuses duplicate usernames and e-mails with 409, unless the realm allows duplicate e-mails', async () => {
    expect(await call('POST', '/u-crud/users', { username: 'ALICE' })).toMatchObject({ status: 409, body: { errorMessage: 'User exists with same username' } });
    expect(await call('POST', '/u-crud/users', { username: 'alice2', email: 'ALICE@example.com' })).toMatchObject({ status: 409, body: { errorMessage: 'User exists with same email' } });
    const { id } = await bench.admin.users.create({ realm: 'u-crud', username: 'mailer', email: 'mailer@example.com' });
    expect(await call('PUT', `/u-crud/users/${id}`, { email: 'Alice@example.com' })).toMatchObject({ status: 409, body: { errorMessage: 'User exists with same email' } });

    await bench.admin.realms.update({ realm: 'u-crud' }, { duplicateEmailsAllowed: true });
    expect((await call('POST', '/u-crud/users', { username: 'alice-twin', email: 'alice@example.com' })).status).toBe(201);
    expect((await call('PUT', `/u-crud/users/${id}`, { email: 'alice@example.com' })).status).toBe(204);
    await bench.admin.realms.update({ realm: 'u-crud' }, { duplicateEmailsAllowed: false });
  });

  it('answers 400 for missing usernames, wrong types, bad JSON and NUL characters', async () => {
    expect(await call('POST', '/u-crud/users', { email: 'x@example.com' })).toMatchObject({ status: 400, body: { errorMessage: 'User name is missing' } });
    expect(await call('POST', '/u-crud/users', { username: '   ' })).toMatchObject({ status: 400, body: { errorMessage: 'User name is missing' } });
    const wrongType = await call('POST', '/u-crud/users', { username: 42 });
    expect(wrongType.status).toBe(400);
    expect(wrongType.body.errorMessage).toContain('username');
    const wrongFlag = await call('POST', '/u-crud/users', { username: 'flag', enabled: 'yes' });
    expect(wrongFlag.status).toBe(400);
    expect(wrongFlag.body.errorMessage).toContain('enabled');
    expect((await call('POST', '/u-crud/users', { username: 'attrs', attributes: { a: [1] } })).status).toBe(400);
    expect((await call('POST', '/u-crud/users', { username: 'nul\u0000' })).status).toBe(400);
    // Keycloak's default user profile: usernames of 3 to 255 characters, other values up to 255.
    expect(await call('POST', '/u-crud/users', { username: 'ab' })).toMatchObject({ status: 400, body: { errorMessage: 'error-invalid-length' } });
    expect((await call('POST', '/u-crud/users', { username: 'x'.repeat(256) })).status).toBe(400);
    expect((await call('POST', '/u-crud/users', { username: 'long-mail', email: `${'m'.repeat(3000)}@example.com` })).status).toBe(400);
    expect((await call('POST', '/u-crud/users', { username: 'long-name', firstName: 'f'.repeat(3000) })).status).toBe(400);
    expect((await call('POST', '/u-crud/users', { username: 'nul-attr', attributes: { a: ['x\u0000'] } })).status).toBe(400);
    expect((await call('POST', '/u-crud/users', { username: 'prio', credentials: [{ type: 'otp', secretData: '{}', credentialData: '{}', priority: 1.5 }] })).status).toBe(400);
    expect((await call('POST', '/u-crud/users', { username: 'longtype', credentials: [{ type: 't'.repeat(5000), secretData: '{}', credentialData: '{}' }] })).status).toBe(400);
    const notJson = await bench.api('/u-crud/users', { method: 'POST', body: '{"username":', headers: { 'content-type': 'application/json' } });
    expect(notJson.status).toBe(400);
    const { id } = await bench.admin.users.create({ realm: 'u-crud', username: 'typed' });
    expect((await call('PUT', `/u-crud/users/${id}`, { emailVerified: 'no' })).status).toBe(400);
    expect((await call('PUT', `/u-crud/users/${id}`, { requiredActions: 'VERIFY_EMAIL' })).status).toBe(400);
    expect((await call('PUT', `/u-crud/users/${id}`, { lastName: 'l'.repeat(3000) })).status).toBe(400);
  });

  it('answers 404 for unknown and malformed ids on every user route', async () => {
    const unknown = crypto.randomUUID();
    for (const id of [unknown, 'not-a-uuid', '1']) {
      expect((await call('GET', `/u-crud/users/${id}`)).status).toBe(404);
      expect((await call('PUT', `/u-crud/users/${id}`, { firstName: 'x' })).status).toBe(404);
      expect((await call('DELETE', `/u-crud/users/${id}`)).status).toBe(404);
      expect((await call('PUT', `/u-crud/users/${id}/reset-password`, { type: 'password', value: 'x' })).status).toBe(404);
      expect((await call('GET', `/u-crud/users/${id}/credentials`)).status).toBe(404);
      expect((await call('GET', `/u-crud/users/${id}/groups`)).status).toBe(404);
      expect((await call('GET', `/u-crud/users/${id}/sessions`)).status).toBe(404);
      expect((await call('POST', `/u-crud/users/${id}/logout`)).status).toBe(404);
    }
    expect(await call('GET', `/u-crud/users/${unknown}`)).toMatchObject({ body: { errorMessage: 'User not found' } });
    expect(await bench.admin.users.findOne({ realm: 'u-crud', id: unknown })).toBeNull();
  });

  it('deletes a user with everything it owns', async () => {
    const { id } = await bench.admin.users.create({ realm: 'u-crud', username: 'doomed', credentials: [{ type: 'password', value: 'pw-doomed' }] });
    await bench.admin.users.del({ realm: 'u-crud', id });
    expect(await bench.admin.users.findOne({ realm: 'u-crud', id })).toBeNull();
    expect(await db.selectFrom('credentials').select('id').where('user_id', '=', id).execute()).toEqual([]);
    expect((await call('DELETE', `/u-crud/users/${id}`)).status).toBe(404);
  });
});

describe('search over many users', () => {
  it('pages a broad search past the narrow-search cap in username order, and a narrow one exactly', async () => {
    await bench.admin.realms.create({ realm: 'u-many', enabled: true });
    const id = await realmId('u-many');
    // 2,500 users in one statement: more matches than the narrow-search path collects.
    const { sql } = await import('kysely');
    await sql`INSERT INTO users (id, realm_id, username, email, attributes, required_actions)
      SELECT gen_random_uuid(), ${id}, 'bulk-' || lpad(i::text, 4, '0'), 'bulk-' || lpad(i::text, 4, '0') || '@example.com', '{}', '[]'
      FROM generate_series(1, 2500) AS i`.execute(db);
    const page = await bench.admin.users.find({ realm: 'u-many', search: 'bulk', first: 2200, max: 3, briefRepresentation: true });
    expect(page.map((u) => u.username)).toEqual(['bulk-2201', 'bulk-2202', 'bulk-2203']);
    expect(await bench.admin.users.count({ realm: 'u-many', search: 'bulk' })).toBe(2500);
    // The unfiltered count comes from the trigger-kept counter: it must match a real count.
    expect(await bench.admin.users.count({ realm: 'u-many' })).toBe(2500);
    await bench.admin.clients.create({ realm: 'u-many', clientId: 'svc', serviceAccountsEnabled: true });
    const [first] = await bench.admin.users.find({ realm: 'u-many', search: 'bulk-0001', max: 1 });
    await bench.admin.users.del({ realm: 'u-many', id: first!.id! });
    await bench.admin.users.create({ realm: 'u-many', username: 'zed', enabled: true });
    const { count } = await db.selectFrom('users').select((eb) => eb.fn.countAll<number>().as('count'))
      .where('realm_id', '=', id).where('service_account_client_id', 'is', null).executeTakeFirstOrThrow();
    expect(Number(count)).toBe(2500);
    expect(await bench.admin.users.count({ realm: 'u-many' })).toBe(2500);
    const narrow = await bench.admin.users.find({ realm: 'u-many', search: 'bulk-001', max: 20 });
    expect(narrow.map((u) => u.username)).toEqual(Array.from({ length: 10 }, (_, i) => `bulk-001${i}`));
    expect(await bench.admin.users.find({ realm: 'u-many', search: 'bulk-001', first: 8, max: 5 })).toHaveLength(2);
    expect(await bench.admin.users.find({ realm: 'u-many', search: 'bulk-001', first: 50, max: 5 })).toEqual([]);
  });
});

describe('search', () => {
  const ids: Record<string, string> = {};
  beforeAll(async () => {
    await bench.admin.realms.create({ realm: 'u-search', enabled: true });
    const people = [
      { username: 'alice', email: 'alice@corp.com', firstName: 'Alice', lastName: 'Smith', enabled: true, emailVerified: true, attributes: { dept: ['Sales'], region: ['north east'] } },
      { username: 'alicia', email: 'alicia@other.org', firstName: 'Alicia', lastName: 'Jones', enabled: true, attributes: { dept: ['support'] } },
      { username: 'bob', email: 'bob@corp.com', firstName: 'Bob', lastName: 'Alison', enabled: false },
      { username: 'carol_x', email: 'carol@x.com', firstName: 'Carol', lastName: 'King', enabled: true },
      { username: 'carolyx', firstName: 'Caroly', enabled: true },
    ];
    for (const person of people) ids[person.username] = (await bench.admin.users.create({ realm: 'u-search', ...person })).id;
    // A service-account user (Keycloak leaves them out of plain lists and searches).
    ids.sa = newId();
    await db.insertInto('users').values({
      id: ids.sa, realm_id: await realmId('u-search'), username: 'service-account-alpha', email: null, first_name: null, last_name: null,
      federation_link: null, service_account_client_id: await clientUuid('u-search', 'broker'), attributes: '{}', required_actions: '[]',
    }).execute();
  });

  const names = async (query: Record<string, string | number | boolean>): Promise<string[]> =>
    (await bench.admin.users.find({ realm: 'u-search', ...query })).map((u) => u.username!);
  const count = async (query: string): Promise<number> => (await call('GET', `/u-search/users/count${query}`)).body;

  it('searches by prefix by default over username, e-mail, first and last name', async () => {
    expect(await names({ search: 'ali' })).toEqual(['alice', 'alicia', 'bob']);
    expect(await names({ search: 'ALI*' })).toEqual(['alice', 'alicia', 'bob']);
    expect(await names({ search: 'ice' })).toEqual([]);
    expect(await names({ search: 'corp' })).toEqual([]);
    expect(await names({ search: 'alice@' })).toEqual(['alice']);
  });

  it('supports infix (*x*), wildcards, exact ("x") and several terms', async () => {
    expect(await names({ search: '*ice*' })).toEqual(['alice']);
    expect(await names({ search: '*corp*' })).toEqual(['alice', 'bob']);
    expect(await names({ search: 'a*ce' })).toEqual(['alice']);
    expect(await names({ search: '"alice"' })).toEqual(['alice']);
    expect(await names({ search: '"ALICIA"' })).toEqual(['alicia']);
    expect(await names({ search: 'ali smi' })).toEqual(['alice']);
    expect(await names({ search: `id:${ids.alicia}` })).toEqual(['alicia']);
    expect(await names({ search: 'id:nonsense' })).toEqual([]);
  });

  it('matches % and _ literally', async () => {
    expect(await names({ search: 'carol_' })).toEqual(['carol_x']);
    expect(await names({ search: 'carol%' })).toEqual([]);
    expect(await names({ search: 'caroly' })).toEqual(['carolyx']);
  });

  it('leaves service accounts out of plain lists and searches, and in for field filters', async () => {
    expect(await names({})).toEqual(['alice', 'alicia', 'bob', 'carol_x', 'carolyx']);
    expect(await names({ search: 'serv' })).toEqual([]);
    expect(await names({ username: 'service' })).toEqual(['service-account-alpha']);
    expect(await count('')).toBe(5);
  });

  it('filters by fields (contains, or equals with exact), attributes (q), state and identity provider', async () => {
    expect(await names({ username: 'lic' })).toEqual(['alice', 'alicia']);
    expect(await names({ username: 'alice', exact: true })).toEqual(['alice']);
    expect(await names({ email: 'CORP' })).toEqual(['alice', 'bob']);
    expect(await names({ firstName: 'carol', lastName: 'king' })).toEqual(['carol_x']);
    expect(await names({ q: 'dept:sales' })).toEqual(['alice']);
    expect(await names({ q: 'dept:s' })).toEqual(['alice', 'alicia']);
    expect(await names({ q: 'dept:s', exact: true })).toEqual([]);
    expect(await names({ q: 'dept:sales region:"north east"' })).toEqual(['alice']);
    expect(await names({ q: 'dept:sales region:south' })).toEqual([]);
    expect(await names({ q: 'constructor:x __proto__:y' })).toEqual([]);
    expect((await call('GET', '/u-search/users?search=%00')).body).toEqual([]);
    expect(await names({ enabled: false })).toEqual(['bob']);
    expect(await names({ emailVerified: true })).toEqual(['alice']);
    expect(await names({ search: 'ali', enabled: true })).toEqual(['alice', 'alicia']);

    await insertIdentityProvider('u-search', 'corp-idp');
    await bench.admin.users.addToFederatedIdentity({ realm: 'u-search', id: ids.bob!, federatedIdentityId: 'corp-idp', federatedIdentity: { identityProvider: 'corp-idp', userId: 'ext-7', userName: 'bobby' } });
    expect(await names({ idpAlias: 'corp-idp' })).toEqual(['bob']);
    expect(await names({ idpAlias: 'corp-idp', idpUserId: 'ext-7' })).toEqual(['bob']);
    expect(await names({ idpUserId: 'ext-8' })).toEqual([]);
  });

  it('paginates in username order and counts with the same filters', async () => {
    expect(await names({ first: 1, max: 2 })).toEqual(['alicia', 'bob']);
    expect(await names({ first: 4, max: 10 })).toEqual(['carolyx']);
    expect(await names({ max: 0 })).toEqual([]);
    expect(await count('?search=ali')).toBe(3);
    expect(await count('?search=*corp*')).toBe(2);
    expect(await count('?email=corp')).toBe(2);
    expect(await count('?q=dept:sales')).toBe(1);
    expect(await count(`?search=id:${ids.bob}`)).toBe(1);
    expect(await count('?username=service')).toBe(1);
    expect(await bench.admin.users.count({ realm: 'u-search', search: 'carol' })).toBe(2);
  });

  it('answers the brief representation when asked', async () => {
    const [alice] = await bench.admin.users.find({ realm: 'u-search', search: '"alice"', briefRepresentation: true });
    expect(alice).toEqual({
      id: ids.alice, username: 'alice', firstName: 'Alice', lastName: 'Smith', email: 'alice@corp.com', emailVerified: true,
      createdTimestamp: expect.any(Number), enabled: true, access: expect.objectContaining({ view: true, manage: true }),
    });
    const [full] = await bench.admin.users.find({ realm: 'u-search', search: '"alice"' });
    expect(full).toMatchObject({ attributes: { dept: ['Sales'] }, totp: false, requiredActions: [] });
  });
});

describe('passwords and credentials', () => {
  beforeAll(async () => { await bench.admin.realms.create({ realm: 'u-pw', enabled: true }); });

  it('resets a password the user then logs in with, and hides secrets from the credential list', async () => {
    const { id } = await bench.admin.users.create({ realm: 'u-pw', username: 'pat', enabled: true });
    expect((await tokenRequest('u-pw', { grant_type: 'password', username: 'pat', password: 'first-pass' })).status).toBe(401);
    await bench.admin.users.resetPassword({ realm: 'u-pw', id, credential: { type: 'password', value: 'first-pass', temporary: false } });
    expect((await tokenRequest('u-pw', { grant_type: 'password', username: 'pat', password: 'first-pass' })).status).toBe(200);

    const credentials = await bench.admin.users.getCredentials({ realm: 'u-pw', id });
    expect(credentials).toEqual([{ id: expect.any(String), type: 'password', createdDate: expect.any(Number), credentialData: expect.any(String) }]);
    expect(JSON.parse(credentials[0]!.credentialData!)).toMatchObject({ algorithm: 'argon2', hashIterations: 2 });

    // A new password replaces the old one (same credential), and the old one stops working.
    await bench.admin.users.resetPassword({ realm: 'u-pw', id, credential: { type: 'password', value: 'second-pass', temporary: false } });
    expect((await tokenRequest('u-pw', { grant_type: 'password', username: 'pat', password: 'first-pass' })).status).toBe(401);
    expect((await tokenRequest('u-pw', { grant_type: 'password', username: 'pat', password: 'second-pass' })).status).toBe(200);
    const after = await bench.admin.users.getCredentials({ realm: 'u-pw', id });
    expect(after.map((c) => c.id)).toEqual([credentials[0]!.id]);
  });

  it('hashes with the realm argon2 parameters', async () => {
    await bench.admin.realms.update({ realm: 'u-pw' }, { passwordPolicy: 'hashIterations(3)' });
    const { id } = await bench.admin.users.create({ realm: 'u-pw', username: 'hashed', enabled: true, credentials: [{ type: 'password', value: 'pw' }] });
    const [credential] = await bench.admin.users.getCredentials({ realm: 'u-pw', id });
    expect(JSON.parse(credential!.credentialData!)).toMatchObject({ algorithm: 'argon2', hashIterations: 3 });
    await bench.admin.realms.update({ realm: 'u-pw' }, { passwordPolicy: '' });
  });

  it('marks a temporary password with UPDATE_PASSWORD, and a permanent one clears it', async () => {
    const { id } = await bench.admin.users.create({ realm: 'u-pw', username: 'temp', enabled: true });
    await bench.admin.users.resetPassword({ realm: 'u-pw', id, credential: { type: 'password', value: 'temp-pass', temporary: true } });
    expect((await bench.admin.users.findOne({ realm: 'u-pw', id }))!.requiredActions).toEqual(['UPDATE_PASSWORD']);
    const refused = await tokenRequest('u-pw', { grant_type: 'password', username: 'temp', password: 'temp-pass' });
    expect(await refused.json()).toMatchObject({ error: 'invalid_grant', error_description: 'Account is not fully set up' });
    await bench.admin.users.resetPassword({ realm: 'u-pw', id, credential: { type: 'password', value: 'temp-pass', temporary: false } });
    expect((await bench.admin.users.findOne({ realm: 'u-pw', id }))!.requiredActions).toEqual([]);

    const { id: created } = await bench.admin.users.create({ realm: 'u-pw', username: 'temp2', enabled: true, credentials: [{ type: 'password', value: 'x', temporary: true }] });
    expect((await bench.admin.users.findOne({ realm: 'u-pw', id: created }))!.requiredActions).toEqual(['UPDATE_PASSWORD']);
  });

  it('refuses an empty or missing password with 400', async () => {
    const { id } = await bench.admin.users.create({ realm: 'u-pw', username: 'empty', enabled: true });
    expect(await call('PUT', `/u-pw/users/${id}/reset-password`, { type: 'password', value: '' })).toMatchObject({ status: 400, body: { errorMessage: 'Empty password not allowed' } });
    expect(await call('PUT', `/u-pw/users/${id}/reset-password`, { type: 'password', value: '   ' })).toMatchObject({ status: 400 });
    expect(await call('PUT', `/u-pw/users/${id}/reset-password`, { type: 'password' })).toMatchObject({ status: 400, body: { errorMessage: 'No password provided' } });
    expect(await call('PUT', `/u-pw/users/${id}/reset-password`, { value: 12 })).toMatchObject({ status: 400 });
    expect(await bench.admin.users.getCredentials({ realm: 'u-pw', id })).toEqual([]);
  });

  it('imports a Keycloak pbkdf2 hash given as secretData/credentialData', async () => {
    await bench.admin.users.create({
      realm: 'u-pw', username: 'imported', enabled: true,
      credentials: [{
        type: 'password',
        secretData: JSON.stringify({ value: 'JsfNbCOIdZUbyBJ+BT+VoGI91Ec2rWLOvkLPDaX8e9k=', salt: 'P5rtFkGtPfoaryJ6PizUJw==', additionalParameters: {} }),
        credentialData: JSON.stringify({ hashIterations: 27500, algorithm: 'pbkdf2-sha256', additionalParameters: {} }),
      }],
    });
    expect((await tokenRequest('u-pw', { grant_type: 'password', username: 'imported', password: 'password' })).status).toBe(200);
    expect((await call('POST', '/u-pw/users', { username: 'broken', credentials: [{ type: 'password', secretData: '{"value":1}', credentialData: '{}' }] })).status).toBe(400);
    expect((await call('POST', '/u-pw/users', { username: 'broken2', credentials: [{ type: 'otp' }] })).status).toBe(400);
    expect(await bench.admin.users.find({ realm: 'u-pw', username: 'broken', exact: true })).toEqual([]);
  });

  it('labels, orders and deletes credentials, and removes OTP', async () => {
    const otp = { type: 'otp', userLabel: 'phone', secretData: JSON.stringify({ value: 'ABCDEFGHIJKLMNOPQRST' }), credentialData: JSON.stringify({ subType: 'totp', digits: 6, counter: 0, period: 30, algorithm: 'HmacSHA1' }) };
    const { id } = await bench.admin.users.create({ realm: 'u-pw', username: 'multi', enabled: true, credentials: [{ type: 'password', value: 'multi-pass' }, otp] });
    let list = await bench.admin.users.getCredentials({ realm: 'u-pw', id });
    expect(list.map((c) => c.type)).toEqual(['password', 'otp']);
    const [password, totp] = list;
    expect(totp).toMatchObject({ userLabel: 'phone' });
    expect(totp).not.toHaveProperty('secretData');
    expect((await bench.admin.users.findOne({ realm: 'u-pw', id }))!.totp).toBe(true);
    // The OTP seed is a recoverable secret: sealed at rest.
    const stored = await db.selectFrom('credentials').select('secret_data').where('id', '=', totp!.id!).executeTakeFirstOrThrow();
    expect(stored.secret_data).toMatch(/^v1\./);

    await bench.admin.users.moveCredentialPositionUp({ realm: 'u-pw', id, credentialId: totp!.id! });
    expect((await bench.admin.users.getCredentials({ realm: 'u-pw', id })).map((c) => c.type)).toEqual(['otp', 'password']);
    await bench.admin.users.moveCredentialPositionDown({ realm: 'u-pw', id, credentialId: totp!.id!, newPreviousCredentialId: password!.id! });
    expect((await bench.admin.users.getCredentials({ realm: 'u-pw', id })).map((c) => c.type)).toEqual(['password', 'otp']);

    await bench.admin.users.updateCredentialLabel({ realm: 'u-pw', id, credentialId: password!.id! }, 'my password');
    list = await bench.admin.users.getCredentials({ realm: 'u-pw', id });
    expect(list[0]).toMatchObject({ userLabel: 'my password' });
    const blank = await bench.api(`/u-pw/users/${id}/credentials/${password!.id}/userLabel`, { method: 'PUT', body: '  ', headers: { 'content-type': 'text/plain' } });
    expect(blank.status).toBe(400);

    await bench.admin.users.removeTotp({ realm: 'u-pw', id });
    expect((await bench.admin.users.getCredentials({ realm: 'u-pw', id })).map((c) => c.type)).toEqual(['password']);
    expect((await bench.admin.users.findOne({ realm: 'u-pw', id }))!.totp).toBe(false);

    await bench.admin.users.deleteCredential({ realm: 'u-pw', id, credentialId: password!.id! });
    expect(await bench.admin.users.getCredentials({ realm: 'u-pw', id })).toEqual([]);
    expect((await call('DELETE', `/u-pw/users/${id}/credentials/${password!.id}`)).status).toBe(404);
    expect((await call('DELETE', `/u-pw/users/${id}/credentials/not-a-uuid`)).status).toBe(404);
    expect((await call('POST', `/u-pw/users/${id}/credentials/${crypto.randomUUID()}/moveToFirst`)).status).toBe(404);
  });
});

describe('groups of a user', () => {
  const ids: Record<string, string> = {};
  beforeAll(async () => {
    await bench.admin.realms.create({ realm: 'u-groups', enabled: true });
    ids.staff = await insertGroup('u-groups', 'staff');
    ids.agents = await insertGroup('u-groups', 'agents', ids.staff);
    ids.everyone = await insertGroup('u-groups', 'everyone');
    await db.insertInto('realm_default_groups').values({ realm_id: await realmId('u-groups'), group_id: ids.everyone }).execute();
  });

  it('joins the default groups and the groups named by path on creation', async () => {
    const { id } = await bench.admin.users.create({ realm: 'u-groups', username: 'grouped', groups: ['/staff/agents'] });
    const groups = await bench.admin.users.listGroups({ realm: 'u-groups', id });
    expect(groups).toEqual([
      { id: ids.agents, name: 'agents', path: '/staff/agents', parentId: ids.staff, subGroups: [] },
      { id: ids.everyone, name: 'everyone', path: '/everyone', subGroups: [] },
    ]);
    const bad = await call('POST', '/u-groups/users', { username: 'lost', groups: ['/staff/nobody'] });
    expect(bad).toMatchObject({ status: 400, body: { errorMessage: 'Unable to find group specified by path: /staff/nobody' } });
    expect(await bench.admin.users.find({ realm: 'u-groups', username: 'lost', exact: true })).toEqual([]);
  });

  it('adds and removes memberships, counts and searches them', async () => {
    const { id } = await bench.admin.users.create({ realm: 'u-groups', username: 'joiner' });
    await bench.admin.users.addToGroup({ realm: 'u-groups', id, groupId: ids.staff! });
    await bench.admin.users.addToGroup({ realm: 'u-groups', id, groupId: ids.staff! }); // idempotent
    expect(await bench.admin.users.countGroups({ realm: 'u-groups', id })).toEqual({ count: 2 });
    expect(await bench.admin.users.countGroups({ realm: 'u-groups', id, search: 'STA' })).toEqual({ count: 1 });
    expect((await bench.admin.users.listGroups({ realm: 'u-groups', id, search: 'sta' })).map((g) => g.name)).toEqual(['staff']);
    expect((await bench.admin.users.listGroups({ realm: 'u-groups', id, first: 1, max: 1 })).map((g) => g.name)).toEqual(['staff']);
    const [full] = await bench.admin.users.listGroups({ realm: 'u-groups', id, search: 'staff', briefRepresentation: false });
    expect(full).toMatchObject({ name: 'staff', path: '/staff', attributes: { tier: ['1'] }, realmRoles: [], clientRoles: {} });

    await bench.admin.users.delFromGroup({ realm: 'u-groups', id, groupId: ids.staff! });
    expect((await bench.admin.users.listGroups({ realm: 'u-groups', id })).map((g) => g.name)).toEqual(['everyone']);
    expect((await call('PUT', `/u-groups/users/${id}/groups/${crypto.randomUUID()}`)).status).toBe(404);
    expect((await call('PUT', `/u-groups/users/${id}/groups/nope`)).status).toBe(404);
    expect((await call('DELETE', `/u-groups/users/${id}/groups/${crypto.randomUUID()}`)).status).toBe(404);
  });
});

describe('sessions, logout and consents', () => {
  let userId: string;
  beforeAll(async () => {
    await bench.admin.realms.create({ realm: 'u-sess', enabled: true });
    userId = (await bench.admin.users.create({ realm: 'u-sess', username: 'sam', enabled: true, credentials: [{ type: 'password', value: 'sam-pass' }] })).id;
  });

  it('lists the sessions of password grants; logout ends them and their refresh tokens', async () => {
    const login = await (await tokenRequest('u-sess', { grant_type: 'password', username: 'sam', password: 'sam-pass' })).json() as { refresh_token: string; session_state: string };
    const adminCli = await clientUuid('u-sess', 'admin-cli');
    const sessions = await bench.admin.users.listSessions({ realm: 'u-sess', id: userId });
    expect(sessions).toEqual([{
      id: login.session_state, username: 'sam', userId, ipAddress: expect.any(String), start: expect.any(Number), lastAccess: expect.any(Number),
      rememberMe: false, clients: { [adminCli]: 'admin-cli' },
    }]);
    expect(Math.abs(sessions[0]!.start! - Date.now())).toBeLessThan(60_000);

    await bench.admin.users.logout({ realm: 'u-sess', id: userId });
    expect(await bench.admin.users.listSessions({ realm: 'u-sess', id: userId })).toEqual([]);
    const refresh = await tokenRequest('u-sess', { grant_type: 'refresh_token', refresh_token: login.refresh_token });
    expect(refresh.status).toBe(400);
    expect(await refresh.json()).toMatchObject({ error: 'invalid_grant' });
    expect((await bench.admin.users.findOne({ realm: 'u-sess', id: userId }))!.notBefore).toBeGreaterThan(0);
  });

  it('ends one session (online or offline) by its id, as Keycloak\'s DELETE /sessions/{id}', async () => {
    const grant = (scope: string) => tokenRequest('u-sess', { grant_type: 'password', username: 'sam', password: 'sam-pass', scope }).then((r) => r.json() as Promise<{ refresh_token: string; session_state: string }>);
    const first = await grant('openid');
    const second = await grant('openid');
    const offline = await grant('openid offline_access');
    await bench.admin.realms.deleteSession({ realm: 'u-sess', session: first.session_state, isOffline: false });
    expect((await tokenRequest('u-sess', { grant_type: 'refresh_token', refresh_token: first.refresh_token })).status).toBe(400);
    expect((await tokenRequest('u-sess', { grant_type: 'refresh_token', refresh_token: second.refresh_token })).status).toBe(200);
    // The offline session is another row of the same id: only isOffline=true ends it.
    expect(await call('DELETE', `/u-sess/sessions/${offline.session_state}?isOffline=true`)).toMatchObject({ status: 204 });
    expect((await tokenRequest('u-sess', { grant_type: 'refresh_token', refresh_token: offline.refresh_token })).status).toBe(400);
    expect(await call('DELETE', `/u-sess/sessions/${first.session_state}`)).toMatchObject({ status: 404, body: { errorMessage: 'Sesssion not found' } });
    expect(await call('DELETE', `/u-sess/sessions/no-such-session?isOffline=true`)).toMatchObject({ status: 404 });
    await bench.admin.users.logout({ realm: 'u-sess', id: userId });
  });

  it('makes offline tokens issued before a user logout stale (the user\'s not-before)', async () => {
    const solId = (await bench.admin.users.create({ realm: 'u-sess', username: 'sol', enabled: true, credentials: [{ type: 'password', value: 'sol-pass' }] })).id;
    const offline = await (await tokenRequest('u-sess', { grant_type: 'password', username: 'sol', password: 'sol-pass', scope: 'openid offline_access' })).json() as { refresh_token: string; access_token: string };
    // Not-before has second resolution: a token of the same second stays valid, as in Keycloak.
    await new Promise((resolve) => setTimeout(resolve, 1100));
    await bench.admin.users.logout({ realm: 'u-sess', id: solId });
    const refresh = await tokenRequest('u-sess', { grant_type: 'refresh_token', refresh_token: offline.refresh_token });
    expect(refresh.status).toBe(400);
    expect(await refresh.json()).toMatchObject({ error: 'invalid_grant' });
    // A token issued after the logout works.
    const fresh = await (await tokenRequest('u-sess', { grant_type: 'password', username: 'sol', password: 'sol-pass', scope: 'openid offline_access' })).json() as { refresh_token: string };
    expect((await tokenRequest('u-sess', { grant_type: 'refresh_token', refresh_token: fresh.refresh_token })).status).toBe(200);
  });

  it('lists offline sessions per client and revokes them with the consent', async () => {
    const offline = await (await tokenRequest('u-sess', { grant_type: 'password', username: 'sam', password: 'sam-pass', scope: 'openid offline_access' })).json() as { refresh_token: string };
    const adminCli = await clientUuid('u-sess', 'admin-cli');
    const sessions = await bench.admin.users.listOfflineSessions({ realm: 'u-sess', id: userId, clientId: adminCli });
    expect(sessions).toHaveLength(1);
    expect(sessions[0]).toMatchObject({ userId, clients: { [adminCli]: 'admin-cli' } });
    expect(await bench.admin.users.listOfflineSessions({ realm: 'u-sess', id: userId, clientId: await clientUuid('u-sess', 'broker') })).toEqual([]);
    expect((await call('GET', `/u-sess/users/${userId}/offline-sessions/${crypto.randomUUID()}`)).status).toBe(404);

    expect(await bench.admin.users.listConsents({ realm: 'u-sess', id: userId })).toEqual([
      { clientId: 'admin-cli', grantedClientScopes: [], createdDate: null, lastUpdatedDate: null, additionalGrants: [{ client: adminCli, key: 'Offline Token' }] },
    ]);
    await bench.admin.users.revokeConsent({ realm: 'u-sess', id: userId, clientId: 'admin-cli' });
    expect(await bench.admin.users.listOfflineSessions({ realm: 'u-sess', id: userId, clientId: adminCli })).toEqual([]);
    expect((await tokenRequest('u-sess', { grant_type: 'refresh_token', refresh_token: offline.refresh_token })).status).toBe(400);
    expect(await call('DELETE', `/u-sess/users/${userId}/consents/admin-cli`)).toMatchObject({ status: 404, body: { errorMessage: 'Consent nor offline token not found' } });
    expect(await call('DELETE', `/u-sess/users/${userId}/consents/no-such-client`)).toMatchObject({ status: 404, body: { errorMessage: 'Client not found' } });
  });

  it('lists stored consents with their scope names and ends the client sessions on revocation', async () => {
    const realm = await realmId('u-sess');
    const account = await clientUuid('u-sess', 'account');
    const profile = await db.selectFrom('client_scopes').select('id').where('realm_id', '=', realm).where('name', '=', 'profile').executeTakeFirstOrThrow();
    await db.insertInto('user_consents').values({ user_id: userId, client_id: account, realm_id: realm, granted_scopes: JSON.stringify([profile.id]) }).execute();
    const [consent] = await bench.admin.users.listConsents({ realm: 'u-sess', id: userId });
    expect(consent).toEqual({ clientId: 'account', grantedClientScopes: ['profile'], createdDate: expect.any(Number), lastUpdatedDate: expect.any(Number), additionalGrants: [] });

    // A session of the user with a client session of `account` (as a browser login would leave).
    await db.insertInto('user_sessions').values({ id: 'sess-account', offline: false, realm_id: realm, user_id: userId, login_username: 'sam', ip_address: null, auth_time: 1, expires_at: null }).execute();
    await db.insertInto('client_sessions').values({ user_session_id: 'sess-account', offline: false, client_id: account, realm_id: realm, grant_id: null, scope: 'openid', current_refresh_jti: null, latest_refresh_jti: null, rotated_from_jti: null, rotated_at: null, successor_sealed: null }).execute();
    await bench.admin.users.revokeConsent({ realm: 'u-sess', id: userId, clientId: 'account' });
    expect(await bench.admin.users.listConsents({ realm: 'u-sess', id: userId })).toEqual([]);
    const sessions = await bench.admin.users.listSessions({ realm: 'u-sess', id: userId });
    expect(sessions.find((s) => s.id === 'sess-account')).toMatchObject({ clients: {} });
  });
});

describe('identity provider links', () => {
  it('links, lists, refuses duplicates and unlinks', async () => {
    await bench.admin.realms.create({ realm: 'u-idp', enabled: true });
    const { id } = await bench.admin.users.create({ realm: 'u-idp', username: 'linked', enabled: true });
    expect((await bench.admin.users.findOne({ realm: 'u-idp', id }))).not.toHaveProperty('federatedIdentities');
    await insertIdentityProvider('u-idp', 'google');
    const link = { identityProvider: 'google', userId: 'g-123', userName: 'linked@gmail.com' };
    await bench.admin.users.addToFederatedIdentity({ realm: 'u-idp', id, federatedIdentityId: 'google', federatedIdentity: link });
    expect(await bench.admin.users.listFederatedIdentities({ realm: 'u-idp', id })).toEqual([link]);
    expect((await bench.admin.users.findOne({ realm: 'u-idp', id }))!.federatedIdentities).toEqual([link]);

    expect(await call('POST', `/u-idp/users/${id}/federated-identity/google`, link)).toMatchObject({ status: 409, body: { errorMessage: 'User is already linked with provider' } });
    expect((await call('POST', `/u-idp/users/${id}/federated-identity/nowhere`, link)).status).toBe(404);
    expect((await call('POST', `/u-idp/users/${id}/federated-identity/google`, { userName: 'x' })).status).toBe(400);
    expect((await call('POST', `/u-idp/users/${id}/federated-identity/google`, { userId: 'x'.repeat(5000) })).status).toBe(400);
    const { id: other } = await bench.admin.users.create({ realm: 'u-idp', username: 'other' });
    expect((await call('POST', `/u-idp/users/${other}/federated-identity/google`, link)).status).toBe(409);

    await bench.admin.users.delFromFederatedIdentity({ realm: 'u-idp', id, federatedIdentityId: 'google' });
    expect(await bench.admin.users.listFederatedIdentities({ realm: 'u-idp', id })).toEqual([]);
    expect(await call('DELETE', `/u-idp/users/${id}/federated-identity/google`)).toMatchObject({ status: 404, body: { errorMessage: 'Link not found' } });
  });
});

describe('e-mail actions', () => {
  it('validates like Keycloak, then fails: the realm cannot send e-mail', async () => {
    await bench.admin.realms.create({ realm: 'u-mail', enabled: true });
    const { id: noMail } = await bench.admin.users.create({ realm: 'u-mail', username: 'nomail', enabled: true });
    expect(await call('PUT', `/u-mail/users/${noMail}/execute-actions-email`, ['UPDATE_PASSWORD'])).toMatchObject({ status: 400, body: { errorMessage: 'User email missing' } });
    const { id } = await bench.admin.users.create({ realm: 'u-mail', username: 'mail', email: 'mail@example.com', enabled: true });
    expect(await call('PUT', `/u-mail/users/${id}/execute-actions-email`, ['NOPE'])).toMatchObject({ status: 400, body: { errorMessage: 'Provided invalid required actions' } });
    expect(await call('PUT', `/u-mail/users/${id}/execute-actions-email?client_id=ghost`, ['UPDATE_PASSWORD'])).toMatchObject({ status: 400, body: { errorMessage: "Client doesn't exist" } });
    expect(await call('PUT', `/u-mail/users/${id}/execute-actions-email?redirect_uri=https://x.example`, ['UPDATE_PASSWORD'])).toMatchObject({ status: 400, body: { errorMessage: 'Client id missing' } });
    expect(await call('PUT', `/u-mail/users/${id}/execute-actions-email`, 'UPDATE_PASSWORD')).toMatchObject({ status: 400 });
    // Keycloak answers 500 when the e-mail cannot be sent (here: no SMTP server configured).
    await expect(bench.admin.users.executeActionsEmail({ realm: 'u-mail', id, actions: ['UPDATE_PASSWORD', 'VERIFY_EMAIL'] }))
      .rejects.toMatchObject({ responseData: { errorMessage: 'Failed to send execute actions email: the realm has no SMTP server configured' } });
    expect(await call('PUT', `/u-mail/users/${id}/send-verify-email`)).toMatchObject({ status: 500, body: { errorMessage: 'Failed to send verify email' } });
    expect((await call('PUT', `/u-mail/users/${crypto.randomUUID()}/send-verify-email`)).status).toBe(404);
  });
});

describe('permissions', () => {
  let userId: string;
  const tokens: Record<string, string> = {};
  beforeAll(async () => {
    await bench.admin.realms.create({ realm: 'u-perm-a', enabled: true });
    await bench.admin.realms.create({ realm: 'u-perm-b', enabled: true });
    userId = (await bench.admin.users.create({ realm: 'u-perm-a', username: 'target', enabled: true })).id;
    tokens.view = await adminToken('u-perm-a', ['view-users']);
    tokens.query = await adminToken('u-perm-a', ['query-users']);
    tokens.manage = await adminToken('u-perm-a', ['manage-users']);
    tokens.none = await adminToken('u-perm-a', []);
    tokens.otherRealm = await adminToken('u-perm-b', ['realm-admin']);
  });

  it('lets view-users read but not write', async () => {
    expect((await call('GET', '/u-perm-a/users', undefined, tokens.view)).status).toBe(200);
    const read = await call('GET', `/u-perm-a/users/${userId}`, undefined, tokens.view);
    expect(read).toMatchObject({ status: 200, body: { access: { view: true, manage: false, mapRoles: false, manageGroupMembership: false, impersonate: false } } });
    expect((await call('GET', `/u-perm-a/users/${userId}/credentials`, undefined, tokens.view)).status).toBe(200);
    expect((await call('PUT', `/u-perm-a/users/${userId}`, { firstName: 'x' }, tokens.view)).status).toBe(403);
    expect((await call('POST', '/u-perm-a/users', { username: 'nope' }, tokens.view)).status).toBe(403);
    expect((await call('PUT', `/u-perm-a/users/${userId}/reset-password`, { value: 'x' }, tokens.view)).status).toBe(403);
    expect((await call('POST', `/u-perm-a/users/${userId}/logout`, undefined, tokens.view)).status).toBe(403);
    expect((await call('DELETE', `/u-perm-a/users/${userId}`, undefined, tokens.view)).status).toBe(403);
  });

  it('lets query-users list and count but not read a user', async () => {
    expect((await call('GET', '/u-perm-a/users?search=tar', undefined, tokens.query)).body.map((u: { username: string }) => u.username)).toEqual(['target']);
    expect((await call('GET', '/u-perm-a/users/count', undefined, tokens.query)).status).toBe(200);
    expect((await call('GET', `/u-perm-a/users/${userId}`, undefined, tokens.query)).status).toBe(403);
    expect((await call('GET', `/u-perm-a/users/${userId}/groups`, undefined, tokens.query)).status).toBe(403);
  });

  it('lets manage-users write', async () => {
    expect((await call('PUT', `/u-perm-a/users/${userId}`, { firstName: 'Managed' }, tokens.manage)).status).toBe(204);
    expect((await call('PUT', `/u-perm-a/users/${userId}/reset-password`, { value: 'pw-managed' }, tokens.manage)).status).toBe(204);
  });

  it('refuses callers without a users role, admins of another realm and anonymous callers', async () => {
    for (const token of [tokens.none!, tokens.otherRealm!]) {
      expect((await call('GET', '/u-perm-a/users', undefined, token)).status).toBe(403);
      expect((await call('GET', '/u-perm-a/users/count', undefined, token)).status).toBe(403);
      expect((await call('GET', `/u-perm-a/users/${userId}`, undefined, token)).status).toBe(403);
      expect((await call('POST', '/u-perm-a/users', { username: 'intruder' }, token)).status).toBe(403);
      expect((await call('PUT', `/u-perm-a/users/${userId}`, { firstName: 'x' }, token)).status).toBe(403);
      expect((await call('GET', `/u-perm-a/users/${userId}/sessions`, undefined, token)).status).toBe(403);
      expect((await call('DELETE', `/u-perm-a/users/${userId}/consents/account`, undefined, token)).status).toBe(403);
    }
    expect((await fetch(`${bench.server.url}/admin/realms/u-perm-a/users`)).status).toBe(401);
    expect(await bench.admin.users.findOne({ realm: 'u-perm-a', id: userId })).toMatchObject({ firstName: 'Managed' });
    expect(await bench.admin.users.find({ realm: 'u-perm-a', username: 'intruder' })).toEqual([]);
  });
});
