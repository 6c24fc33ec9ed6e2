// Access keys for application users (issue 6): the `application` user flag, the Admin API's
// /users/{id}/access-keys (secret shown once, digest at rest, rotation limit, expiry, permissions,
// cross-realm) and the self-service endpoint {base}/realms/{realm}/access-keys.
import crypto from 'node:crypto';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { checkAccessKey, digestSecret, findAccessKey } from '../../../src/access-keys/access-keys.ts';
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

const KEY = /^[A-Z2-7]{52}$/;

type Answer = { status: number; body: any; text: string; headers: Headers };

async function read(response: Response): Promise<Answer> {
  const text = await response.text();
  const isJson = response.headers.get('content-type')?.includes('json');
  return { status: response.status, body: isJson && text ? JSON.parse(text) : undefined, text, headers: response.headers };
}

/** An Admin API call as the bootstrap admin (or with `token`). */
async function call(method: string, path: string, body?: unknown, token?: string): Promise<Answer> {
  return read(await bench.api(path, { method, ...(body === undefined ? {} : { body: JSON.stringify(body) }), ...(token ? { token } : {}) }));
}

async function newRealm(prefix: string): Promise<string> {
  const realm = `${prefix}-${crypto.randomBytes(3).toString('hex')}`;
  await bench.admin.realms.create({ realm, enabled: true });
  return realm;
}

async function realmId(realm: string): Promise<string> {
  return (await db.selectFrom('realms').select('id').where('name', '=', realm).executeTakeFirstOrThrow()).id;
}

/** A user (application user unless `password` is given); returns its id. */
async function newUser(realm: string, username: string, password?: string): Promise<string> {
  const { id } = await bench.admin.users.create({
    realm, username, enabled: true,
    ...(password ? { credentials: [{ type: 'password', value: password, temporary: false }] } : { application: true } as object),
  });
  return id;
}

async function createKey(realm: string, userId: string, body: unknown = {}, token?: string): Promise<Answer> {
  return call('POST', `/${realm}/users/${userId}/access-keys`, body, token);
}

/** A token of a realm user holding the given realm-management roles. */
async function adminToken(realm: string, roles: string[]): Promise<string> {
  const username = `adm-${crypto.randomBytes(4).toString('hex')}`;
  const password = crypto.randomBytes(12).toString('base64url');
  const id = await newUser(realm, username, password);
  if (roles.length > 0) {
    const [management] = await bench.admin.clients.find({ realm, clientId: 'realm-management' });
    const available = await bench.admin.clients.listRoles({ realm, id: management!.id! });
    const wanted = available.filter((r) => roles.includes(r.name!)).map((r) => ({ id: r.id!, name: r.name! }));
    await bench.admin.users.addClientRoleMappings({ realm, id, clientUniqueId: management!.id!, roles: wanted });
  }
  return passwordToken(bench.server.url, realm, username, password);
}

function passwordGrant(realm: string, username: string, password: string): Promise<Response> {
  return postForm(`${bench.server.url}/realms/${realm}/protocol/openid-connect/token`, { grant_type: 'password', client_id: 'admin-cli', username, password });
}

describe('application users', () => {
  it('round-trips the application flag and filters users by it', async () => {
    const realm = await newRealm('ak-app');
    const bot = await newUser(realm, 'ivr-bot');
    const human = await newUser(realm, 'alice', 'Secret-123');

    expect(await bench.admin.users.findOne({ realm, id: bot })).toMatchObject({ username: 'ivr-bot', application: true });
    // Other users keep Keycloak's exact representation: no `application` field at all.
    expect(await bench.admin.users.findOne({ realm, id: human })).not.toHaveProperty('application');

    const apps = await call('GET', `/${realm}/users?application=true`);
    expect(apps.body.map((u: { username: string }) => u.username)).toEqual(['ivr-bot']);
    expect(apps.body[0]).toMatchObject({ application: true });
    const humans = await call('GET', `/${realm}/users?application=false`);
    expect(humans.body.map((u: { username: string }) => u.username)).toEqual(['alice']);
    expect((await call('GET', `/${realm}/users?application=true&briefRepresentation=true`)).body).toEqual([expect.objectContaining({ username: 'ivr-bot', application: true })]);
    expect((await call('GET', `/${realm}/users?application=true&search=ivr`)).body).toHaveLength(1);
    expect((await call('GET', `/${realm}/users?application=true&search=alice`)).body).toHaveLength(0);
    expect((await call('GET', `/${realm}/users/count?application=true`)).body).toBe(1);
    expect((await call('GET', `/${realm}/users/count?application=false`)).body).toBe(1);
    expect((await call('GET', `/${realm}/users/count`)).body).toBe(2);

    // PUT without the field keeps it; PUT false turns the user back into a regular one.
    expect((await call('PUT', `/${realm}/users/${bot}`, { firstName: 'Ivy' })).status).toBe(204);
    expect(await bench.admin.users.findOne({ realm, id: bot })).toMatchObject({ firstName: 'Ivy', application: true });
    expect((await call('PUT', `/${realm}/users/${bot}`, { application: false })).status).toBe(204);
    expect(await bench.admin.users.findOne({ realm, id: bot })).not.toHaveProperty('application');
    const row = await db.selectFrom('users').select('application').where('id', '=', bot).executeTakeFirstOrThrow();
    expect(row.application).toBe(false);
    expect((await call('PUT', `/${realm}/users/${bot}`, { application: 'yes' })).status).toBe(400);
  });

  it('refuses passwords and identity provider links for application users', async () => {
    const realm = await newRealm('ak-nopw');
    const created = await call('POST', `/${realm}/users`, { username: 'bot-a', enabled: true, application: true, credentials: [{ type: 'password', value: 'pw-123456' }] });
    expect(created.status).toBe(400);
    expect(created.body.errorMessage).toMatch(/Application users cannot have a password/);
    expect(await db.selectFrom('users').select('id').where('username', '=', 'bot-a').where('realm_id', '=', await realmId(realm)).executeTakeFirst()).toBeUndefined();
    const linked = await call('POST', `/${realm}/users`, { username: 'bot-b', application: true, federatedIdentities: [{ identityProvider: 'x', userId: 'y' }] });
    expect(linked.status).toBe(400);

    const bot = await newUser(realm, 'bot-c');
    expect((await call('PUT', `/${realm}/users/${bot}`, { credentials: [{ type: 'password', value: 'pw-123456' }] })).status).toBe(400);
    expect((await call('PUT', `/${realm}/users/${bot}/reset-password`, { type: 'password', value: 'pw-123456', temporary: false })).status).toBe(400);
    expect(await db.selectFrom('credentials').select('id').where('user_id', '=', bot).execute()).toEqual([]);
  });

  it('makes a stored password unusable while the user is an application user', async () => {
    const realm = await newRealm('ak-login');
    const id = await newUser(realm, 'integration', 'Passw0rd!');
    expect((await passwordGrant(realm, 'integration', 'Passw0rd!')).status).toBe(200);

    expect((await call('PUT', `/${realm}/users/${id}`, { application: true })).status).toBe(204);
    const refused = await passwordGrant(realm, 'integration', 'Passw0rd!');
    expect(refused.status).toBe(401);
    expect(await refused.json()).toMatchObject({ error: 'invalid_grant' });
    // The credential is kept (unusable), so turning the flag off restores the password.
    expect(await db.selectFrom('credentials').select('type').where('user_id', '=', id).execute()).toEqual([{ type: 'password' }]);
    expect((await call('PUT', `/${realm}/users/${id}`, { application: false })).status).toBe(204);
    expect((await passwordGrant(realm, 'integration', 'Passw0rd!')).status).toBe(200);
  });
});

describe('admin access keys', () => {
  it('shows the secret once and stores only its digest', async () => {
    const realm = await newRealm('ak-once');
    await bench.admin.realms.update({ realm }, { adminEventsEnabled: true, adminEventsDetailsEnabled: true });
    const userId = await newUser(realm, 'bot');
    const before = Date.now();
    const created = await createKey(realm, userId, { label: 'IVR prod' });
    expect(created.status).toBe(201);
    const key = created.body;
    expect(key).toEqual({ id: expect.stringMatching(KEY), secret: expect.stringMatching(KEY), label: 'IVR prod', createdAt: expect.any(Number), expiresAt: null, enabled: true });
    expect(key.id).not.toBe(key.secret);
    expect(key.createdAt).toBeGreaterThanOrEqual(before - 1000);
    expect(created.headers.get('location')).toBe(`${bench.server.url}/admin/realms/${realm}/users/${userId}/access-keys/${key.id}`);

    const list = await call('GET', `/${realm}/users/${userId}/access-keys`);
    expect(list.status).toBe(200);
    expect(list.body).toEqual([{ id: key.id, label: 'IVR prod', createdAt: key.createdAt, lastUsedAt: null, expiresAt: null, enabled: true }]);
    expect(list.text).not.toContain(key.secret);
    const one = await call('GET', `/${realm}/users/${userId}/access-keys/${key.id}`);
    expect(one.body).toEqual(list.body[0]);
    expect(one.text).not.toContain(key.secret);

    // At rest: an HMAC digest under the server key, never the secret.
    const row = await db.selectFrom('access_keys').selectAll().where('id', '=', key.id).executeTakeFirstOrThrow();
    expect(row.secret_digest).not.toBe(key.secret);
    expect(row.secret_digest).toBe(digestSecret(bench.server.box, key.secret));
    expect(JSON.stringify(row)).not.toContain(key.secret);
    expect(row).toMatchObject({ realm_id: await realmId(realm), user_id: userId, label: 'IVR prod', enabled: true, expires_at: null });
    const stored = await findAccessKey(db, await realmId(realm), key.id);
    expect(checkAccessKey(bench.server.box, stored, key.secret, stored!.user_enabled)).toBeUndefined();
    expect(checkAccessKey(bench.server.box, stored, key.id, true)).toBe('wrong_secret');

    // The create is an admin event like any other; the secret is not in it.
    const events = await db.selectFrom('admin_events').select(['operation_type', 'resource_path', 'representation']).where('realm_id', '=', await realmId(realm))
      .where('resource_path', 'like', '%access-keys%').execute();
    expect(events).toEqual([{ operation_type: 'CREATE', resource_path: `users/${userId}/access-keys/${key.id}`, representation: { label: 'IVR prod' } }]);
    expect(JSON.stringify(events)).not.toContain(key.secret);
  });

  it('creates a key without a body, relabels, disables and deletes it', async () => {
    const realm = await newRealm('ak-crud');
    const userId = await newUser(realm, 'bot');
    const response = await fetch(`${bench.server.url}/admin/realms/${realm}/users/${userId}/access-keys`, {
      method: 'POST', headers: { authorization: `Bearer ${await bench.admin.getAccessToken()}` },
    });
    expect(response.status).toBe(201);
    const key = await response.json() as { id: string; label: string | null };
    expect(key.label).toBeNull();
    const path = `/${realm}/users/${userId}/access-keys/${key.id}`;

    expect((await call('PUT', path, { label: 'renamed' })).status).toBe(204);
    expect((await call('GET', path)).body).toMatchObject({ label: 'renamed', enabled: true });
    expect((await call('PUT', path, { enabled: false })).status).toBe(204);
    expect((await call('GET', path)).body).toMatchObject({ label: 'renamed', enabled: false });
    expect((await call('PUT', path, { label: null, enabled: true })).status).toBe(204);
    expect((await call('GET', path)).body).toMatchObject({ label: null, enabled: true });
    expect((await call('PUT', path, { enabled: 'no' })).status).toBe(400);
    expect((await call('PUT', path, { label: 'x'.repeat(256) })).status).toBe(400);

    expect((await call('DELETE', path)).status).toBe(204);
    expect((await call('GET', path)).status).toBe(404);
    expect((await call('DELETE', path)).status).toBe(404);
    expect((await call('PUT', path, { enabled: true })).status).toBe(404);
    expect(await db.selectFrom('access_keys').select('id').where('id', '=', key.id).executeTakeFirst()).toBeUndefined();
  });

  it('rotates with two active keys: a third is refused until one is disabled', async () => {
    const realm = await newRealm('ak-rotate');
    const userId = await newUser(realm, 'bot');
    const first = (await createKey(realm, userId, { label: 'old' })).body;
    const second = (await createKey(realm, userId, { label: 'new' })).body;
    expect(second.id).not.toBe(first.id);

    const third = await createKey(realm, userId, { label: 'one too many' });
    expect(third.status).toBe(409);
    expect(third.body.errorMessage).toMatch(/maximum number of active access keys \(2\)/);
    expect(await db.selectFrom('access_keys').select('id').where('user_id', '=', userId).execute()).toHaveLength(2);

    // Retire the old key: a new one can be made, the old one cannot come back while two are active.
    expect((await call('PUT', `/${realm}/users/${userId}/access-keys/${first.id}`, { enabled: false })).status).toBe(204);
    const replacement = await createKey(realm, userId, { label: 'newer' });
    expect(replacement.status).toBe(201);
    const reenable = await call('PUT', `/${realm}/users/${userId}/access-keys/${first.id}`, { enabled: true });
    expect(reenable.status).toBe(409);
    // Relabelling a disabled key is no enabling.
    expect((await call('PUT', `/${realm}/users/${userId}/access-keys/${first.id}`, { label: 'retired' })).status).toBe(204);
    expect((await call('DELETE', `/${realm}/users/${userId}/access-keys/${second.id}`)).status).toBe(204);
    expect((await call('PUT', `/${realm}/users/${userId}/access-keys/${first.id}`, { enabled: true })).status).toBe(204);

    // Expired keys do not count as active.
    await db.updateTable('access_keys').set({ expires_at: new Date(Date.now() - 1000) }).where('id', '=', first.id).execute();
    expect((await createKey(realm, userId)).status).toBe(201);
    expect((await createKey(realm, userId)).status).toBe(409);
    const listed = (await call('GET', `/${realm}/users/${userId}/access-keys`)).body as Array<{ id: string }>;
    expect(listed).toHaveLength(3);
    expect(listed.map((k) => k.id)).toContain(first.id);
  });

  it('takes the limit from the realm attribute and holds it under concurrent creates', async () => {
    const realm = await newRealm('ak-limit');
    await bench.admin.realms.update({ realm }, { attributes: { 'cloakroom.accessKeys.maxActivePerUser': '3' } });
    const userId = await newUser(realm, 'bot');
    const answers = await Promise.all(Array.from({ length: 6 }, () => createKey(realm, userId)));
    expect(answers.filter((a) => a.status === 201)).toHaveLength(3);
    expect(answers.filter((a) => a.status === 409)).toHaveLength(3);
    expect(await db.selectFrom('access_keys').select('id').where('user_id', '=', userId).execute()).toHaveLength(3);

    await bench.admin.realms.update({ realm }, { attributes: { 'cloakroom.accessKeys.maxActivePerUser': '0' } });
    const other = await newUser(realm, 'bot-2');
    expect((await createKey(realm, other)).status).toBe(409);
  });

  it('validates the expiry', async () => {
    const realm = await newRealm('ak-expiry');
    const userId = await newUser(realm, 'bot');
    for (const expiresAt of [Date.now() - 60_000, new Date(Date.now() - 60_000).toISOString(), 'tomorrow', '1735689600000', 1.5e12 + 0.5, true, 9e15]) {
      const answer = await createKey(realm, userId, { expiresAt });
      expect(answer.status, String(expiresAt)).toBe(400);
      expect(answer.body.errorMessage).toContain('expiresAt');
    }
    const iso = new Date(Date.now() + 86_400_000).toISOString();
    const byIso = await createKey(realm, userId, { expiresAt: iso });
    expect(byIso.status).toBe(201);
    expect(byIso.body.expiresAt).toBe(Date.parse(iso));
    const ms = Date.now() + 3_600_000;
    const byMs = await createKey(realm, userId, { expiresAt: ms });
    expect(byMs.body.expiresAt).toBe(ms);
    expect((await call('GET', `/${realm}/users/${userId}/access-keys/${byMs.body.id}`)).body.expiresAt).toBe(ms);
    const row = await db.selectFrom('access_keys').select('expires_at').where('id', '=', byMs.body.id).executeTakeFirstOrThrow();
    expect(new Date(row.expires_at!).getTime()).toBe(ms);
  });

  it('needs view-users to read and manage-users to write, in the realm itself', async () => {
    const realm = await newRealm('ak-perm');
    const other = await newRealm('ak-perm-other');
    const userId = await newUser(realm, 'bot');
    const key = (await createKey(realm, userId)).body;
    const base = `/${realm}/users/${userId}/access-keys`;

    const viewer = await adminToken(realm, ['view-users']);
    expect((await call('GET', base, undefined, viewer)).status).toBe(200);
    expect((await call('GET', `${base}/${key.id}`, undefined, viewer)).status).toBe(200);
    expect((await createKey(realm, userId, {}, viewer)).status).toBe(403);
    expect((await call('PUT', `${base}/${key.id}`, { enabled: false }, viewer)).status).toBe(403);
    expect((await call('DELETE', `${base}/${key.id}`, undefined, viewer)).status).toBe(403);

    const querier = await adminToken(realm, ['query-users']);
    expect((await call('GET', base, undefined, querier)).status).toBe(403);
    const nobody = await adminToken(realm, []);
    expect((await call('GET', base, undefined, nobody)).status).toBe(403);
    const foreign = await adminToken(other, ['manage-users', 'view-users']);
    for (const [method, path] of [['GET', base], ['POST', base], ['GET', `${base}/${key.id}`], ['PUT', `${base}/${key.id}`], ['DELETE', `${base}/${key.id}`]] as const) {
      expect((await call(method, path, method === 'PUT' ? { enabled: false } : method === 'POST' ? {} : undefined, foreign)).status, `${method} ${path}`).toBe(403);
    }
    expect((await fetch(`${bench.server.url}/admin/realms${base}`)).status).toBe(401);

    const manager = await adminToken(realm, ['manage-users']);
    const made = await createKey(realm, userId, {}, manager);
    expect(made.status).toBe(201);
    expect((await call('PUT', `${base}/${made.body.id}`, { enabled: false }, manager)).status).toBe(204);
    expect((await call('DELETE', `${base}/${made.body.id}`, undefined, manager)).status).toBe(204);
    expect((await call('GET', `${base}/${key.id}`, undefined, manager)).body).toMatchObject({ id: key.id, enabled: true });
  });

  it('finds a key only under its own realm and user', async () => {
    const realmA = await newRealm('ak-xa');
    const realmB = await newRealm('ak-xb');
    const userA = await newUser(realmA, 'bot');
    const userB = await newUser(realmB, 'bot');
    const userA2 = await newUser(realmA, 'bot-2');
    const key = (await createKey(realmA, userA)).body;

    for (const [realm, user] of [[realmB, userB], [realmA, userA2]] as const) {
      const path = `/${realm}/users/${user}/access-keys/${key.id}`;
      expect((await call('GET', path)).status).toBe(404);
      expect((await call('PUT', path, { enabled: false })).status).toBe(404);
      expect((await call('DELETE', path)).status).toBe(404);
    }
    // realm A's user under realm B's URLs is no user at all.
    expect((await call('GET', `/${realmB}/users/${userA}/access-keys`)).status).toBe(404);
    expect((await createKey(realmB, userA)).status).toBe(404);
    expect((await call('GET', `/${realmA}/users/not-a-uuid/access-keys`)).status).toBe(404);
    expect((await call('GET', `/${realmA}/users/${userA}/access-keys/not-a-key`)).status).toBe(404);
    expect((await call('GET', `/${realmA}/users/${userA}/access-keys/${key.id}`)).body).toMatchObject({ id: key.id, enabled: true });
    expect(await findAccessKey(db, await realmId(realmB), key.id)).toBeUndefined();
  });

  it('deletes the keys with their user', async () => {
    const realm = await newRealm('ak-del');
    const userId = await newUser(realm, 'bot');
    const key = (await createKey(realm, userId)).body;
    await bench.admin.users.del({ realm, id: userId });
    expect(await db.selectFrom('access_keys').select('id').where('id', '=', key.id).executeTakeFirst()).toBeUndefined();
  });
});

describe('self-service access keys', () => {
  async function selfServiceUser(realm: string, username: string, withRole: boolean): Promise<{ id: string; token: string }> {
    const password = crypto.randomBytes(12).toString('base64url');
    const id = await newUser(realm, username, password);
    if (withRole) {
      const role = await bench.admin.roles.findOneByName({ realm, name: 'manage-own-access-keys' });
      await bench.admin.users.addRealmRoleMappings({ realm, id, roles: [{ id: role!.id!, name: role!.name! }] });
    }
    return { id, token: await passwordToken(bench.server.url, realm, username, password) };
  }

  async function self(realm: string, method: string, token: string | undefined, keyId?: string, body?: unknown): Promise<Answer> {
    const headers: Record<string, string> = token ? { authorization: `Bearer ${token}` } : {};
    if (body !== undefined) headers['content-type'] = 'application/json';
    const url = `${bench.server.url}/realms/${realm}/access-keys${keyId === undefined ? '' : `/${keyId}`}`;
    return read(await fetch(url, { method, headers, ...(body === undefined ? {} : { body: JSON.stringify(body) }) }));
  }

  it('gives every new realm the manage-own-access-keys role', async () => {
    const realm = await newRealm('ak-role');
    const role = await bench.admin.roles.findOneByName({ realm, name: 'manage-own-access-keys' });
    expect(role).toMatchObject({ name: 'manage-own-access-keys', description: 'Manage own access keys', composite: false, clientRole: false });
  });

  it('lets a user with the role manage their own keys', async () => {
    const realm = await newRealm('ak-self');
    const me = await selfServiceUser(realm, 'agent', true);

    const created = await self(realm, 'POST', me.token, undefined, { label: 'my laptop script' });
    expect(created.status).toBe(201);
    expect(created.body).toEqual({ id: expect.stringMatching(KEY), secret: expect.stringMatching(KEY), label: 'my laptop script', createdAt: expect.any(Number), expiresAt: null, enabled: true });
    expect(created.headers.get('location')).toBe(`${bench.server.url}/realms/${realm}/access-keys/${created.body.id}`);
    const row = await db.selectFrom('access_keys').selectAll().where('id', '=', created.body.id).executeTakeFirstOrThrow();
    expect(row.user_id).toBe(me.id);
    expect(row.secret_digest).toBe(digestSecret(bench.server.box, created.body.secret));

    const list = await self(realm, 'GET', me.token);
    expect(list.status).toBe(200);
    expect(list.body).toEqual([{ id: created.body.id, label: 'my laptop script', createdAt: created.body.createdAt, lastUsedAt: null, expiresAt: null, enabled: true }]);
    expect(list.text).not.toContain(created.body.secret);
    expect((await self(realm, 'GET', me.token, created.body.id)).body).toEqual(list.body[0]);

    // Without a body, then the limit of two active keys.
    expect((await self(realm, 'POST', me.token)).status).toBe(201);
    const third = await self(realm, 'POST', me.token, undefined, {});
    expect(third.status).toBe(409);
    expect(third.body).toMatchObject({ error: 'conflict', error_description: expect.stringContaining('maximum') });

    expect((await self(realm, 'PUT', me.token, created.body.id, { enabled: false })).status).toBe(204);
    expect((await self(realm, 'GET', me.token, created.body.id)).body).toMatchObject({ enabled: false });
    expect((await self(realm, 'POST', me.token, undefined, { expiresAt: Date.now() - 1 })).body).toMatchObject({ error: 'invalid_request' });
    expect((await self(realm, 'PUT', me.token, created.body.id, { enabled: 'x' })).status).toBe(400);
    expect((await self(realm, 'DELETE', me.token, created.body.id)).status).toBe(204);
    expect((await self(realm, 'GET', me.token, created.body.id)).status).toBe(404);
    expect((await self(realm, 'GET', me.token)).body).toHaveLength(1);
    expect((await self(realm, 'PATCH', me.token)).status).toBe(405);
  });

  it('hides other users\' keys and refuses users without the role', async () => {
    const realm = await newRealm('ak-self-x');
    const me = await selfServiceUser(realm, 'agent', true);
    const colleague = await selfServiceUser(realm, 'colleague', true);
    const theirs = (await self(realm, 'POST', colleague.token)).body;
    const adminMade = (await createKey(realm, me.id)).body;

    expect((await self(realm, 'GET', me.token)).body.map((k: { id: string }) => k.id)).toEqual([adminMade.id]);
    for (const method of ['GET', 'PUT', 'DELETE']) {
      const answer = await self(realm, method, me.token, theirs.id, method === 'PUT' ? { enabled: false } : undefined);
      expect(answer.status, method).toBe(404);
      expect(answer.body).toMatchObject({ error: 'not_found' });
    }
    expect((await self(realm, 'GET', colleague.token, theirs.id)).body).toMatchObject({ enabled: true });

    const plain = await selfServiceUser(realm, 'plain', false);
    const refused = await self(realm, 'GET', plain.token);
    expect(refused.status).toBe(403);
    expect(refused.body).toMatchObject({ error: 'access_denied', error_description: expect.any(String) });
    expect((await self(realm, 'POST', plain.token, undefined, {})).status).toBe(403);

    // The role is read at each request: revoking it locks the user out at once.
    const role = await bench.admin.roles.findOneByName({ realm, name: 'manage-own-access-keys' });
    await bench.admin.users.delRealmRoleMappings({ realm, id: me.id, roles: [{ id: role!.id!, name: role!.name! }] });
    expect((await self(realm, 'GET', me.token)).status).toBe(403);
  });

  it('needs a valid bearer token of the realm itself', async () => {
    const realm = await newRealm('ak-self-t');
    const elsewhere = await newRealm('ak-self-t2');
    const other = await selfServiceUser(elsewhere, 'agent', true);
    const missing = await self(realm, 'GET', undefined);
    expect(missing.status).toBe(401);
    expect(missing.body).toMatchObject({ error: 'invalid_token' });
    expect(missing.headers.get('www-authenticate')).toMatch(/^Bearer/);
    expect((await self(realm, 'GET', 'not.a.token')).status).toBe(401);
    expect((await self(realm, 'GET', other.token)).status).toBe(401);
    expect((await self(elsewhere, 'GET', other.token)).status).toBe(200);

    // A disabled user's token no longer works.
    await bench.admin.users.update({ realm: elsewhere, id: other.id }, { enabled: false });
    expect((await self(elsewhere, 'GET', other.token)).status).toBe(401);
  });
});
