// Exchanging access keys for tokens over real HTTP (issue 6): client_credentials with the key as
// client credentials, CXone's password form with a registered client, CXone's legacy JSON
// endpoint (and its refresh); failures, cache invalidation, events, timing, last-used batching.
// Keys are inserted straight into access_keys (generateAccessKey + digestSecret) so these tests do
// not depend on the Admin API for keys.
import { createRemoteJWKSet, decodeJwt, decodeProtectedHeader, jwtVerify, type JWTPayload } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { digestSecret, generateAccessKey } from '../../src/access-keys/access-keys.ts';
import { basicAuth, postForm, startTestServer, type TestServer } from '../support/server.ts';

let server: TestServer;
const REALM = 'cx-keys';
const OTHER = 'cx-other';
const APP = { clientId: 'cxone-app', secret: 'cxone-app-secret' };
/** A registered client whose clientId has the shape of a key id: oidc-provider keeps serving it. */
const KEY_SHAPED_CLIENT = { clientId: 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567ABCDEFGHIJKLMNOPQRST', secret: 'key-shaped-secret' };

const realmUrl = (realm = REALM) => `${server.url}/realms/${realm}`;
const tokenUrl = (realm = REALM) => `${realmUrl(realm)}/protocol/openid-connect/token`;
const legacyUrl = (realm = REALM) => `${realmUrl(realm)}/authentication/v1/token/access-key`;

type Json = Record<string, unknown>;
type Key = { id: string; secret: string };

const ids: Record<string, string> = {};

async function realmId(name: string): Promise<string> {
  const row = await server.store.db.selectFrom('realms').select('id').where('name', '=', name).executeTakeFirstOrThrow();
  return row.id;
}

async function userId(username: string, realm = REALM): Promise<string> {
  const row = await server.store.db.selectFrom('users').select('id')
    .where('realm_id', '=', await realmId(realm)).where('username', '=', username).executeTakeFirstOrThrow();
  return row.id;
}

/** A key stored as the Admin API stores it (digest only); the realm is told, as admin writes do. */
async function createKey(username: string, options: { realm?: string; enabled?: boolean; expiresAt?: Date } = {}): Promise<Key> {
  const realm = options.realm ?? REALM;
  const key = generateAccessKey();
  const rid = await realmId(realm);
  await server.store.db.insertInto('access_keys').values({
    id: key.id, realm_id: rid, user_id: await userId(username, realm), secret_digest: digestSecret(server.box, key.secret),
    label: 'test', enabled: options.enabled ?? true, expires_at: options.expiresAt ?? null,
  }).execute();
  await server.registry.realmChanged(rid);
  return key;
}

async function clientCredentials(key: Key, options: { method?: 'basic' | 'post'; realm?: string; extra?: Record<string, string> } = {}): Promise<{ status: number; body: Json; headers: Headers }> {
  const form = { grant_type: 'client_credentials', ...options.extra };
  const res = options.method === 'post'
    ? await postForm(tokenUrl(options.realm), { ...form, client_id: key.id, client_secret: key.secret })
    : await postForm(tokenUrl(options.realm), form, { authorization: basicAuth(key.id, key.secret) });
  return { status: res.status, body: await res.json() as Json, headers: res.headers };
}

async function passwordForm(key: Key, options: { realm?: string; scope?: string } = {}): Promise<{ status: number; body: Json }> {
  const res = await postForm(tokenUrl(options.realm), {
    grant_type: 'password', username: key.id, password: key.secret, ...(options.scope ? { scope: options.scope } : {}),
  }, { authorization: basicAuth(APP.clientId, APP.secret) });
  return { status: res.status, body: await res.json() as Json };
}

async function legacy(body: unknown, options: { realm?: string; form?: boolean } = {}): Promise<{ status: number; body: Json }> {
  const res = options.form
    ? await postForm(legacyUrl(options.realm), body as Record<string, string>)
    : await fetch(legacyUrl(options.realm), { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return { status: res.status, body: await res.json() as Json };
}

async function verified(token: string, realm = REALM): Promise<JWTPayload> {
  const jwks = createRemoteJWKSet(new URL(`${realmUrl(realm)}/protocol/openid-connect/certs`));
  const { payload } = await jwtVerify(token, jwks, { issuer: realmUrl(realm) });
  return payload;
}

type EventRow = { type: string; client_id: string | null; user_id: string | null; error: string | null; details: Json };

async function events(match: (e: EventRow) => boolean, count = 1): Promise<EventRow[]> {
  let found: EventRow[] = [];
  for (let i = 0; i < 40; i++) {
    const rows = await server.store.db.selectFrom('events').select(['type', 'client_id', 'user_id', 'error', 'details']).execute();
    found = rows.map((r) => ({ ...r, details: (typeof r.details === 'string' ? JSON.parse(r.details) : r.details) as Json })).filter(match);
    if (found.length >= count) return found;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return found;
}

const realmRep = (realm: string, extra: Json = {}) => ({
  realm,
  eventsEnabled: true,
  enabledEventTypes: ['CLIENT_LOGIN', 'CLIENT_LOGIN_ERROR', 'LOGIN', 'LOGIN_ERROR', 'REFRESH_TOKEN', 'REFRESH_TOKEN_ERROR'],
  roles: { realm: [{ name: 'bot' }, { name: 'reporting' }], client: { cim: [{ name: 'cim-reader' }] } },
  groups: [{ name: 'integrations', subGroups: [{ name: 'ivr' }] }],
  clients: [
    { clientId: APP.clientId, secret: APP.secret, directAccessGrantsEnabled: true, standardFlowEnabled: false },
    { clientId: 'cim', bearerOnly: true },
    { clientId: 'gateway', secret: 'gateway-secret', standardFlowEnabled: false },
    { clientId: KEY_SHAPED_CLIENT.clientId, secret: KEY_SHAPED_CLIENT.secret, serviceAccountsEnabled: true, standardFlowEnabled: false },
  ],
  users: [
    { username: 'ivr-bot', enabled: true, firstName: 'IVR', lastName: 'Bot', realmRoles: [`default-roles-${realm}`, 'bot'], clientRoles: { cim: ['cim-reader'] }, groups: ['/integrations/ivr'] },
    { username: 'report-bot', enabled: true, realmRoles: ['reporting'] },
    { username: 'parked-bot', enabled: false, realmRoles: ['bot'] },
    { username: `service-account-${KEY_SHAPED_CLIENT.clientId.toLowerCase()}`, serviceAccountClientId: KEY_SHAPED_CLIENT.clientId, enabled: true },
  ],
  ...extra,
});

/** Expertflow realms map group membership in a default scope; so does this one ('profile'). */
async function addGroupsMapper(realm: string): Promise<void> {
  const rid = await realmId(realm);
  const scope = await server.store.db.selectFrom('client_scopes').select('id').where('realm_id', '=', rid).where('name', '=', 'profile').executeTakeFirstOrThrow();
  await server.store.db.insertInto('protocol_mappers').values({
    id: crypto.randomUUID(), realm_id: rid, client_id: null, client_scope_id: scope.id, name: 'groups', protocol: 'openid-connect',
    protocol_mapper: 'oidc-group-membership-mapper',
    config: JSON.stringify({ 'claim.name': 'groups', 'full.path': 'true', 'access.token.claim': 'true', 'id.token.claim': 'true', 'userinfo.token.claim': 'true' }),
  }).execute();
  await server.registry.realmChanged(rid);
}

let key: Key;

beforeAll(async () => {
  server = await startTestServer();
  await server.importRealm(realmRep(REALM));
  await server.importRealm(realmRep(OTHER));
  await server.importRealm(realmRep('cx-custom-legacy', { attributes: { 'cloakroom.accessKeys.legacyClientId': 'ivr-legacy' } }));
  await server.importRealm(realmRep('cx-concurrent'));
  const disabledLegacy = realmRep('cx-disabled-legacy');
  await server.importRealm({ ...disabledLegacy, clients: [...disabledLegacy.clients, { clientId: 'cxone-access-key', enabled: false, publicClient: true }] });
  for (const realm of [REALM, OTHER, 'cx-custom-legacy', 'cx-concurrent', 'cx-disabled-legacy']) await addGroupsMapper(realm);
  ids.ivr = await userId('ivr-bot');
  key = await createKey('ivr-bot');
});

afterAll(async () => {
  await server?.stop();
});

function expectUserClaims(claims: JWTPayload, azp: string): void {
  expect(claims.sub).toBe(ids.ivr);
  expect(claims.azp).toBe(azp);
  expect(claims.typ).toBe('Bearer');
  expect(claims.preferred_username).toBe('ivr-bot');
  expect((claims.realm_access as { roles: string[] }).roles).toEqual(expect.arrayContaining(['bot', 'offline_access', 'uma_authorization']));
  expect((claims.resource_access as Record<string, { roles: string[] }>).cim?.roles).toEqual(['cim-reader']);
  expect(claims.groups).toEqual(['/integrations/ivr']);
}

describe('client_credentials with an access key', () => {
  it('issues a Keycloak-shaped token for the key user (client_secret_basic)', async () => {
    const { status, body } = await clientCredentials(key);
    expect(status, JSON.stringify(body)).toBe(200);
    expect(Object.keys(body)).toEqual(['access_token', 'expires_in', 'refresh_expires_in', 'token_type', 'not-before-policy', 'scope']);
    expect(body).toMatchObject({ expires_in: 300, refresh_expires_in: 0, token_type: 'Bearer', 'not-before-policy': 0 });
    expect(String(body.scope).split(' ')).toEqual(expect.arrayContaining(['profile', 'email']));
    expect(body).not.toHaveProperty('refresh_token');
    const token = body.access_token as string;
    expect(decodeProtectedHeader(token)).toMatchObject({ alg: 'RS256', typ: 'JWT' });
    const claims = await verified(token);
    expectUserClaims(claims, key.id);
    expect(claims.exp! - claims.iat!).toBe(300);
    expect(claims.scope).toBe(body.scope);
    expect(claims).not.toHaveProperty('sid');
    // Audience resolve names the clients the user holds roles of, as in Keycloak.
    expect(claims.aud).toEqual(['account', 'cim']);
  });

  it('takes the key as client_secret_post too', async () => {
    const { status, body } = await clientCredentials(key, { method: 'post' });
    expect(status, JSON.stringify(body)).toBe(200);
    expectUserClaims(decodeJwt(body.access_token as string), key.id);
  });

  it('adds optional realm scopes asked for', async () => {
    const { status, body } = await clientCredentials(key, { extra: { scope: 'phone' } });
    expect(status).toBe(200);
    expect(String(body.scope).split(' ')).toContain('phone');
    expect(decodeJwt(body.access_token as string).scope).toBe(body.scope);
  });

  it('gives a token that introspects as active', async () => {
    const { body } = await clientCredentials(key);
    const res = await postForm(`${tokenUrl()}/introspect`, { token: body.access_token as string }, { authorization: basicAuth('gateway', 'gateway-secret') });
    const answer = await res.json() as Json;
    expect(answer).toMatchObject({ active: true, sub: ids.ivr, client_id: key.id, username: 'ivr-bot', token_type: 'Bearer' });
  });

  it('gives each user their own roles', async () => {
    const reportKey = await createKey('report-bot');
    const { status, body } = await clientCredentials(reportKey);
    expect(status).toBe(200);
    const claims = decodeJwt(body.access_token as string);
    expect(claims.sub).toBe(await userId('report-bot'));
    expect((claims.realm_access as { roles: string[] }).roles).toContain('reporting');
    expect((claims.realm_access as { roles: string[] }).roles).not.toContain('bot');
    expect(claims).not.toHaveProperty('groups');
  });

  it('leaves a registered client whose id looks like a key to oidc-provider', async () => {
    for (const method of ['basic', 'post'] as const) {
      const { status, body } = await clientCredentials({ id: KEY_SHAPED_CLIENT.clientId, secret: KEY_SHAPED_CLIENT.secret }, { method });
      expect(status, JSON.stringify(body)).toBe(200);
      const claims = decodeJwt(body.access_token as string);
      expect(claims.azp).toBe(KEY_SHAPED_CLIENT.clientId);
      expect(claims.client_id).toBe(KEY_SHAPED_CLIENT.clientId);
    }
  });

  it('refuses other grant types and two authentication mechanisms', async () => {
    let res = await postForm(tokenUrl(), { grant_type: 'password', username: 'x', password: 'y' }, { authorization: basicAuth(key.id, key.secret) });
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ error: 'unauthorized_client' });
    res = await postForm(tokenUrl(), { grant_type: 'client_credentials', client_secret: key.secret }, { authorization: basicAuth(key.id, key.secret) });
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ error: 'invalid_request' });
    res = await postForm(tokenUrl(), {}, { authorization: basicAuth(key.id, key.secret) });
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ error: 'invalid_request' });
    res = await postForm(tokenUrl(), { grant_type: 'client_credentials', client_id: key.id });
    expect(res.status).toBe(401);
    expect(await res.json()).toMatchObject({ error: 'invalid_client' });
    res = await postForm(tokenUrl(), { grant_type: 'client_credentials', client_id: key.id, client_secret: key.secret, scope: 'a', extra: 'x' });
    expect(res.status).toBe(200);
    const twice = await fetch(tokenUrl(), {
      method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: `grant_type=client_credentials&client_id=${key.id}&client_secret=${key.secret}&scope=a&scope=b`,
    });
    expect(twice.status).toBe(400);
  });

  it('reads the form once and hands other requests on intact (client_secret_post)', async () => {
    // Not a key: the body read here is replayed to oidc-provider, which parses it as usual.
    const res = await postForm(tokenUrl(), { grant_type: 'password', client_id: APP.clientId, client_secret: APP.secret, username: 'nobody', password: 'x' });
    expect(res.status).toBe(401);
    expect(await res.json()).toMatchObject({ error: 'invalid_grant', error_description: 'Invalid user credentials' });
    const bad = await postForm(tokenUrl(), { grant_type: 'client_credentials', client_id: APP.clientId, client_secret: 'wrong' });
    expect(bad.status).toBe(401);
    expect(await bad.json()).toMatchObject({ error: 'invalid_client' });
    const chunked = await fetch(tokenUrl(), {
      method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, duplex: 'half',
      body: new ReadableStream({
        start(controller) {
          controller.enqueue(new TextEncoder().encode(`grant_type=password&client_id=${APP.clientId}&`));
          controller.enqueue(new TextEncoder().encode(`client_secret=${APP.secret}&username=nobody&password=x`));
          controller.close();
        },
      }),
    } as RequestInit);
    expect(chunked.status).toBe(401);
    expect(await chunked.json()).toMatchObject({ error: 'invalid_grant' });
    const oversized = await postForm(tokenUrl(), { grant_type: 'client_credentials', client_id: APP.clientId, pad: 'a'.repeat(60 * 1024) });
    expect(oversized.status).toBe(400);
    expect((await fetch(`${server.url}/health/ready`)).status).toBe(200);
  });
});

describe('refused keys', () => {
  const INVALID = { error: 'invalid_client', error_description: 'Invalid client or Invalid client credentials' };

  async function refusedEverywhere(bad: Key, realm = REALM): Promise<void> {
    for (const method of ['basic', 'post'] as const) {
      const { status, body, headers } = await clientCredentials(bad, { method, realm });
      expect(status, JSON.stringify(body)).toBe(401);
      expect(body).toEqual(INVALID);
      if (method === 'basic') expect(headers.get('www-authenticate')).toContain('Basic');
    }
    const password = await passwordForm(bad, { realm });
    expect(password.body.error).toBe('invalid_grant');
    const legacyAnswer = await legacy({ accessKeyId: bad.id, accessKeySecret: bad.secret }, { realm });
    expect(legacyAnswer.status).toBe(401);
    expect(legacyAnswer.body).toEqual(INVALID);
  }

  it('refuses an unknown key and a wrong secret with the same answer', async () => {
    await refusedEverywhere({ id: generateAccessKey().id, secret: key.secret });
    await refusedEverywhere({ id: key.id, secret: generateAccessKey().secret });
    expect((await passwordForm({ id: key.id, secret: 'wrong' })).status).toBe(401);
  });

  it('refuses a disabled key', async () => {
    await refusedEverywhere(await createKey('ivr-bot', { enabled: false }));
  });

  it('refuses an expired key and accepts one not yet expired', async () => {
    await refusedEverywhere(await createKey('ivr-bot', { expiresAt: new Date(Date.now() - 1000) }));
    const later = await createKey('ivr-bot', { expiresAt: new Date(Date.now() + 3_600_000) });
    expect((await clientCredentials(later)).status).toBe(200);
  });

  it('refuses the key of a disabled user', async () => {
    const parked = await createKey('parked-bot');
    for (const method of ['basic', 'post'] as const) {
      const { status, body } = await clientCredentials(parked, { method });
      expect(status).toBe(401);
      expect(body).toEqual(INVALID);
    }
    // The password form says so once the secret is right, as a password login does.
    const password = await passwordForm(parked);
    expect(password.status).toBe(400);
    expect(password.body).toMatchObject({ error: 'invalid_grant', error_description: 'Account disabled' });
    expect((await legacy({ accessKeyId: parked.id, accessKeySecret: parked.secret })).status).toBe(401);
  });

  it('refuses a key at another realm', async () => {
    await refusedEverywhere(key, OTHER);
    const otherKey = await createKey('ivr-bot', { realm: OTHER });
    expect((await clientCredentials(otherKey, { realm: OTHER })).status).toBe(200);
    await refusedEverywhere(otherKey, REALM);
  });

  it('stops a key the moment it is disabled, deleted or its user disabled (realm change)', async () => {
    const rid = await realmId(REALM);
    const db = server.store.db;
    const live = await createKey('report-bot');
    // On PostgreSQL the realm change also comes back through LISTEN/NOTIFY: let it land first.
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect((await clientCredentials(live)).status).toBe(200);

    // The hot path reads nothing: a database change the realm is not told about is not seen...
    await db.updateTable('access_keys').set({ enabled: false }).where('id', '=', live.id).execute();
    expect((await clientCredentials(live)).status, 'served from the realm context').toBe(200);
    // ...and the realm change every admin write makes ends the key at once.
    await server.registry.realmChanged(rid);
    expect((await clientCredentials(live)).status).toBe(401);
    expect((await passwordForm(live)).status).toBe(401);

    await db.updateTable('access_keys').set({ enabled: true }).where('id', '=', live.id).execute();
    await server.registry.realmChanged(rid);
    expect((await clientCredentials(live)).status).toBe(200);

    const reportId = await userId('report-bot');
    await db.updateTable('users').set({ enabled: false }).where('id', '=', reportId).execute();
    await server.registry.realmChanged(rid);
    expect((await clientCredentials(live)).status).toBe(401);
    await db.updateTable('users').set({ enabled: true }).where('id', '=', reportId).execute();
    await server.registry.realmChanged(rid);
    expect((await clientCredentials(live)).status).toBe(200);

    await db.deleteFrom('access_keys').where('id', '=', live.id).execute();
    await server.registry.realmChanged(rid);
    await refusedEverywhere(live);
  });
});

describe("CXone's password form", () => {
  it('issues password-grant tokens for the key user to the registered client', async () => {
    const { status, body } = await passwordForm(key, { scope: 'openid' });
    expect(status, JSON.stringify(body)).toBe(200);
    expect(body).toMatchObject({ token_type: 'Bearer', expires_in: 300, refresh_expires_in: 1800 });
    const access = await verified(body.access_token as string);
    expectUserClaims(access, APP.clientId);
    expect(access.sid).toBe(body.session_state);
    const idToken = await verified(body.id_token as string);
    expect(idToken).toMatchObject({ typ: 'ID', aud: APP.clientId, azp: APP.clientId, sub: ids.ivr, sid: body.session_state });
    // A session like a password login's: refreshable at the token endpoint.
    const session = await server.store.db.selectFrom('user_sessions').select(['user_id', 'login_username']).where('id', '=', body.session_state as string).executeTakeFirstOrThrow();
    expect(session).toEqual({ user_id: ids.ivr, login_username: 'ivr-bot' });
    const refreshed = await postForm(tokenUrl(), { grant_type: 'refresh_token', refresh_token: body.refresh_token as string }, { authorization: basicAuth(APP.clientId, APP.secret) });
    expect(refreshed.status).toBe(200);
    expectUserClaims(decodeJwt((await refreshed.json() as Json).access_token as string), APP.clientId);
  });

  it('takes the registered client as client_secret_post too', async () => {
    const res = await postForm(tokenUrl(), { grant_type: 'password', client_id: APP.clientId, client_secret: APP.secret, username: key.id, password: key.secret });
    expect(res.status).toBe(200);
    expectUserClaims(decodeJwt((await res.json() as Json).access_token as string), APP.clientId);
  });

  it('needs the registered client and its direct access grants', async () => {
    const noClient = await postForm(tokenUrl(), { grant_type: 'password', username: key.id, password: key.secret });
    expect(noClient.status).toBe(400);
    const wrongSecret = await postForm(tokenUrl(), { grant_type: 'password', username: key.id, password: key.secret }, { authorization: basicAuth(APP.clientId, 'nope') });
    expect(wrongSecret.status).toBe(401);
    expect(await wrongSecret.json()).toMatchObject({ error: 'invalid_client' });
    const noGrant = await postForm(tokenUrl(), { grant_type: 'password', username: key.id, password: key.secret }, { authorization: basicAuth('gateway', 'gateway-secret') });
    expect(noGrant.status).toBe(400);
    expect(await noGrant.json()).toMatchObject({ error: 'unauthorized_client' });
  });
});

describe("CXone's legacy access-key endpoint", () => {
  it('answers CXone fields, creating the legacy client on first use', async () => {
    const { status, body } = await legacy({ accessKeyId: key.id, accessKeySecret: key.secret });
    expect(status, JSON.stringify(body)).toBe(200);
    expect(Object.keys(body).sort()).toEqual(['access_token', 'expires_in', 'id_token', 'refresh_expires_in', 'refresh_token', 'token_type']);
    expect(body).toMatchObject({ token_type: 'Bearer', expires_in: 300 });
    const access = await verified(body.access_token as string);
    expectUserClaims(access, 'cxone-access-key');
    expect(await verified(body.id_token as string)).toMatchObject({ typ: 'ID', aud: 'cxone-access-key', sub: ids.ivr });

    const client = await server.store.db.selectFrom('clients').selectAll()
      .where('realm_id', '=', await realmId(REALM)).where('client_id', '=', 'cxone-access-key').executeTakeFirstOrThrow();
    expect(client).toMatchObject({ public_client: true, standard_flow_enabled: false, direct_access_grants_enabled: false, full_scope_allowed: true, enabled: true });
    const scopes = await server.store.db.selectFrom('client_client_scopes').innerJoin('client_scopes', 'client_scopes.id', 'client_client_scopes.client_scope_id')
      .select('client_scopes.name').where('client_client_scopes.client_id', '=', client.id).where('default_scope', '=', true).execute();
    expect(scopes.map((s) => s.name).sort()).toEqual(['acr', 'basic', 'email', 'profile', 'roles', 'web-origins']);
  });

  it('refreshes with grant_type=refresh_token as JSON and as a form', async () => {
    const first = await legacy({ accessKeyId: key.id, accessKeySecret: key.secret });
    const second = await legacy({ grant_type: 'refresh_token', refresh_token: first.body.refresh_token });
    expect(second.status, JSON.stringify(second.body)).toBe(200);
    expect(Object.keys(second.body).sort()).toEqual(['access_token', 'expires_in', 'id_token', 'refresh_expires_in', 'refresh_token', 'token_type']);
    expect(decodeJwt(second.body.access_token as string).sid).toBe(decodeJwt(first.body.access_token as string).sid);
    const third = await legacy({ grant_type: 'refresh_token', refresh_token: second.body.refresh_token as string }, { form: true });
    expect(third.status, JSON.stringify(third.body)).toBe(200);
    expectUserClaims(decodeJwt(third.body.access_token as string), 'cxone-access-key');

    const bad = await legacy({ grant_type: 'refresh_token', refresh_token: 'not-a-token' });
    expect(bad.status).toBe(400);
    expect(bad.body).toMatchObject({ error: 'invalid_grant' });
    // Another client's refresh token is not this endpoint's.
    const app = await passwordForm(key);
    const foreign = await legacy({ grant_type: 'refresh_token', refresh_token: app.body.refresh_token });
    expect(foreign.status).toBe(400);
    expect(foreign.body).toMatchObject({ error: 'invalid_grant' });
    // The legacy client has no grant at the token endpoint itself.
    const direct = await postForm(tokenUrl(), { grant_type: 'refresh_token', client_id: 'cxone-access-key', refresh_token: first.body.refresh_token as string });
    expect(direct.status).toBe(400);
  });

  it('uses the client named by the realm attribute', async () => {
    const customKey = await createKey('ivr-bot', { realm: 'cx-custom-legacy' });
    const { status, body } = await legacy({ accessKeyId: customKey.id, accessKeySecret: customKey.secret }, { realm: 'cx-custom-legacy' });
    expect(status, JSON.stringify(body)).toBe(200);
    expect(decodeJwt(body.access_token as string).azp).toBe('ivr-legacy');
  });

  it('creates the client once when first uses come together', async () => {
    const realm = 'cx-concurrent';
    const k = await createKey('ivr-bot', { realm });
    const answers = await Promise.all(Array.from({ length: 6 }, () => legacy({ accessKeyId: k.id, accessKeySecret: k.secret }, { realm })));
    expect(answers.map((a) => a.status)).toEqual([200, 200, 200, 200, 200, 200]);
    const rows = await server.store.db.selectFrom('clients').select('id').where('realm_id', '=', await realmId(realm)).where('client_id', '=', 'cxone-access-key').execute();
    expect(rows).toHaveLength(1);
  });

  it('refuses to work through a disabled legacy client', async () => {
    const realm = 'cx-disabled-legacy';
    const k = await createKey('ivr-bot', { realm });
    const answer = await legacy({ accessKeyId: k.id, accessKeySecret: k.secret }, { realm });
    expect(answer.status).toBe(400);
    expect(answer.body).toMatchObject({ error: 'unauthorized_client' });
    // The other two ways do not need it.
    expect((await clientCredentials(k, { realm })).status).toBe(200);
  });

  it('refuses malformed requests', async () => {
    expect((await legacy({ accessKeyId: key.id })).status).toBe(400);
    expect((await legacy({ grant_type: 'password' })).body).toMatchObject({ error: 'unsupported_grant_type' });
    const notJson = await fetch(legacyUrl(), { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{' });
    expect(notJson.status).toBe(400);
    const array = await legacy([key.id, key.secret]);
    expect(array.status).toBe(400);
    const get = await fetch(legacyUrl());
    expect(get.status).toBe(405);
  });
});

describe('events', () => {
  it('records each use and failure with the key id and never the secret', async () => {
    const evented = await createKey('ivr-bot');
    expect((await clientCredentials(evented)).status).toBe(200);
    expect((await clientCredentials({ id: evented.id, secret: key.secret })).status).toBe(401);
    expect((await passwordForm(evented)).status).toBe(200);
    expect((await passwordForm({ id: evented.id, secret: key.secret })).status).toBe(401);
    expect((await legacy({ accessKeyId: evented.id, accessKeySecret: evented.secret })).status).toBe(200);
    expect((await legacy({ accessKeyId: evented.id, accessKeySecret: key.secret })).status).toBe(401);

    const mine = (e: EventRow) => e.details.access_key_id === evented.id;
    const rows = await events(mine, 6);
    const summary = rows.map((e) => [e.type, e.client_id, e.user_id, e.error]);
    expect(summary).toEqual(expect.arrayContaining([
      ['CLIENT_LOGIN', evented.id, ids.ivr, null],
      ['CLIENT_LOGIN_ERROR', evented.id, ids.ivr, 'invalid_client_credentials'],
      ['LOGIN', APP.clientId, ids.ivr, null],
      ['LOGIN_ERROR', APP.clientId, ids.ivr, 'invalid_user_credentials'],
      ['CLIENT_LOGIN', 'cxone-access-key', ids.ivr, null],
      ['CLIENT_LOGIN_ERROR', 'cxone-access-key', ids.ivr, 'invalid_client_credentials'],
    ]));
    const unknown = generateAccessKey();
    expect((await clientCredentials(unknown)).status).toBe(401);
    const [miss] = await events((e) => e.details.access_key_id === unknown.id);
    expect(miss).toMatchObject({ type: 'CLIENT_LOGIN_ERROR', client_id: unknown.id, user_id: null, error: 'client_not_found' });

    const all = JSON.stringify(await server.store.db.selectFrom('events').selectAll().execute());
    for (const secret of [evented.secret, key.secret, unknown.secret]) expect(all).not.toContain(secret);
  });
});

describe('constant time', () => {
  it('takes comparable time for an unknown key and a wrong secret', async () => {
    const unknown = { id: generateAccessKey().id, secret: generateAccessKey().secret };
    const wrong = { id: key.id, secret: generateAccessKey().secret };
    const time = async (k: Key): Promise<number> => {
      const started = process.hrtime.bigint();
      const res = await postForm(tokenUrl(), { grant_type: 'client_credentials' }, { authorization: basicAuth(k.id, k.secret) });
      await res.arrayBuffer();
      expect(res.status).toBe(401);
      return Number(process.hrtime.bigint() - started) / 1e6;
    };
    for (let i = 0; i < 5; i++) await Promise.all([time(unknown), time(wrong)]);
    const unknownTimes: number[] = [];
    const wrongTimes: number[] = [];
    // Interleaved, so load on the machine hits both alike.
    for (let i = 0; i < 50; i++) {
      unknownTimes.push(await time(unknown));
      wrongTimes.push(await time(wrong));
    }
    const median = (values: number[]) => values.sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
    const [a, b] = [median(unknownTimes), median(wrongTimes)];
    if (process.env.TEST_TIMING) console.log(`access-key timing medians: unknown ${a} ms, wrong secret ${b} ms`);
    // Generous against CI noise: within a factor of 3, or within 3 ms of each other. (A password
    // check would differ by tens of milliseconds.)
    expect(Math.max(a, b) / Math.min(a, b) < 3 || Math.abs(a - b) < 3, `unknown ${a} ms, wrong secret ${b} ms`).toBe(true);
  });
});

describe('last used', () => {
  it('is written at most once a minute per key', async () => {
    const fresh = await createKey('ivr-bot');
    const lastUsed = async () => (await server.store.db.selectFrom('access_keys').select('last_used_at').where('id', '=', fresh.id).executeTakeFirstOrThrow()).last_used_at;
    expect(await lastUsed()).toBeNull();
    const before = Date.now();
    expect((await clientCredentials(fresh)).status).toBe(200);
    let first = await lastUsed();
    for (let i = 0; i < 40 && first === null; i++) {
      await new Promise((resolve) => setTimeout(resolve, 25));
      first = await lastUsed();
    }
    expect(first).not.toBeNull();
    expect(new Date(first!).getTime()).toBeGreaterThanOrEqual(before - 1000);
    // Sentinel: a second write would overwrite it.
    const sentinel = new Date('2020-01-01T00:00:00Z');
    await server.store.db.updateTable('access_keys').set({ last_used_at: sentinel }).where('id', '=', fresh.id).execute();
    expect((await clientCredentials(fresh)).status).toBe(200);
    expect((await passwordForm(fresh)).status).toBe(200);
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(new Date((await lastUsed())!).toISOString()).toBe(sentinel.toISOString());
  });
});
