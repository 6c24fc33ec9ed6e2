import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { passwordToken, startAdminBench, type AdminBench } from '../../support/admin.ts';
import { postForm } from '../../support/server.ts';

let bench: AdminBench;
const PASSWORD = 'Secret-pw-1';

beforeAll(async () => { bench = await startAdminBench(); }, 60_000);
afterAll(async () => { await bench?.stop(); });

/** A realm (imported, independent of the users API) with users holding the given realm-management roles. */
async function realmWith(realm: string, admins: Record<string, string[]> = {}): Promise<{ id: string; tokens: Record<string, string> }> {
  const { realmId } = await bench.server.importRealm({
    realm, enabled: true,
    users: Object.entries(admins).map(([username, roles]) => ({
      username, enabled: true, credentials: [{ type: 'password', value: PASSWORD }],
      ...(roles.length > 0 ? { clientRoles: { 'realm-management': roles } } : {}),
    })),
  });
  const tokens: Record<string, string> = {};
  for (const username of Object.keys(admins)) tokens[username] = await passwordToken(bench.server.url, realm, username, PASSWORD);
  return { id: realmId, tokens };
}

async function until<T>(read: () => Promise<T>, done: (value: T) => boolean): Promise<T> {
  for (let i = 0; ; i++) {
    const value = await read();
    if (done(value) || i === 50) return value;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

describe('events configuration', () => {
  it('answers Keycloak\'s defaults, stores a PUT and validates it', async () => {
    const realm = 'ev-config';
    await realmWith(realm);
    const { admin } = bench;
    const defaults = await admin.realms.getConfigEvents({ realm });
    expect(defaults).toMatchObject({ eventsEnabled: false, eventsListeners: ['jboss-logging'], adminEventsEnabled: false, adminEventsDetailsEnabled: false });
    expect(defaults.eventsExpiration).toBeUndefined();
    // No chosen types: the types Keycloak saves by default.
    expect(defaults.enabledEventTypes).toEqual(expect.arrayContaining(['LOGIN', 'LOGIN_ERROR', 'CODE_TO_TOKEN', 'CLIENT_LOGIN', 'LOGOUT']));
    expect(defaults.enabledEventTypes).not.toContain('REFRESH_TOKEN');

    await admin.realms.updateConfigEvents({ realm }, {
      eventsEnabled: true, eventsExpiration: 3600, eventsListeners: ['jboss-logging', 'email'], enabledEventTypes: ['LOGIN', 'LOGIN_ERROR'],
      adminEventsEnabled: true, adminEventsDetailsEnabled: true,
    });
    expect(await admin.realms.getConfigEvents({ realm })).toEqual({
      eventsEnabled: true, eventsExpiration: 3600, eventsListeners: ['jboss-logging', 'email'], enabledEventTypes: ['LOGIN', 'LOGIN_ERROR'],
      adminEventsEnabled: true, adminEventsDetailsEnabled: true,
    });
    // The realm representation carries the same fields.
    expect(await admin.realms.findOne({ realm })).toMatchObject({ eventsEnabled: true, enabledEventTypes: ['LOGIN', 'LOGIN_ERROR'], adminEventsEnabled: true });
    // Keycloak: eventsEnabled and eventsExpiration are always taken from the body; the others only when given.
    await admin.realms.updateConfigEvents({ realm }, { adminEventsDetailsEnabled: false });
    expect(await admin.realms.getConfigEvents({ realm })).toMatchObject({
      eventsEnabled: false, enabledEventTypes: ['LOGIN', 'LOGIN_ERROR'], adminEventsEnabled: true, adminEventsDetailsEnabled: false,
    });
    expect((await admin.realms.getConfigEvents({ realm })).eventsExpiration).toBeUndefined();

    const put = async (body: unknown): Promise<[number, string]> => {
      const response = await bench.api(`/${realm}/events/config`, { method: 'PUT', body: JSON.stringify(body) });
      return [response.status, ((await response.json()) as { errorMessage: string }).errorMessage];
    };
    expect(await put({ eventsEnabled: true, enabledEventTypes: ['LOGIN', 'NOT_A_TYPE'] })).toEqual([400, 'Invalid event type: NOT_A_TYPE']);
    const [status, message] = await put({ eventsEnabled: 'yes' });
    expect(status).toBe(400);
    expect(message).toContain('eventsEnabled');
    expect((await put({ eventsExpiration: -1 }))[0]).toBe(400);
  });
});

describe('login events', () => {
  it('records a password-grant LOGIN (and LOGIN_ERROR) once events are on, and filters, pages and clears them', async () => {
    const realm = 'ev-login';
    const { id: realmId } = await realmWith(realm);
    const { admin } = bench;
    const { id: userId } = await admin.users.create({ realm, username: 'agent', enabled: true, credentials: [{ type: 'password', value: PASSWORD, temporary: false }] });
    await admin.realms.updateConfigEvents({ realm }, { eventsEnabled: true });

    await passwordToken(bench.server.url, realm, 'agent', PASSWORD);
    const failed = await postForm(`${bench.server.url}/realms/${realm}/protocol/openid-connect/token`, { grant_type: 'password', client_id: 'admin-cli', username: 'agent', password: 'wrong' });
    expect(failed.status).toBe(401);
    const events = await until(() => admin.realms.findEvents({ realm }), (list) => list.length >= 2);
    expect(events.map((e) => e.type)).toEqual(['LOGIN_ERROR', 'LOGIN']); // newest first
    const login = events[1]!;
    expect(login).toMatchObject({ type: 'LOGIN', realmId, clientId: 'admin-cli', userId, ipAddress: expect.any(String), details: expect.objectContaining({ username: 'agent' }) });
    expect(login.sessionId).toBeTruthy();
    expect(Math.abs(login.time! - Date.now())).toBeLessThan(60_000);
    expect(events[0]).toMatchObject({ type: 'LOGIN_ERROR', error: 'invalid_user_credentials', userId });

    const types = async (query: Record<string, unknown>): Promise<string[]> => (await admin.realms.findEvents({ realm, ...query } as never)).map((e) => e.type!);
    expect(await types({ type: 'LOGIN' })).toEqual(['LOGIN']);
    expect(await types({ type: ['LOGIN', 'LOGIN_ERROR'] })).toEqual(['LOGIN_ERROR', 'LOGIN']);
    expect(await types({ user: userId })).toEqual(['LOGIN_ERROR', 'LOGIN']);
    expect(await types({ user: 'not-a-uuid' })).toEqual([]);
    expect(await types({ client: 'admin-cli' })).toHaveLength(2);
    expect(await types({ client: 'account' })).toEqual([]);
    expect(await types({ ipAddress: login.ipAddress })).toHaveLength(2);
    expect(await types({ max: 1 })).toEqual(['LOGIN_ERROR']);
    expect(await types({ first: 1, max: 1 })).toEqual(['LOGIN']);
    expect(await types({ direction: 'asc' } as never)).toEqual(['LOGIN', 'LOGIN_ERROR']);
    const today = new Date().toISOString().slice(0, 10);
    expect(await types({ dateFrom: today, dateTo: today })).toHaveLength(2);
    expect(await types({ dateTo: '2000-01-01' })).toEqual([]);
    expect(await types({ dateFrom: String(Date.now() + 3_600_000) })).toEqual([]);
    for (const query of ['dateFrom=yesterday', 'dateTo=2024-02-30', 'type=NOPE', 'direction=sideways']) {
      expect((await bench.api(`/${realm}/events?${query}`)).status, query).toBe(400);
    }

    await admin.realms.clearEvents({ realm });
    expect(await admin.realms.findEvents({ realm })).toEqual([]);
  });

  it('pages with max 100 by default', async () => {
    const realm = 'ev-paging';
    const { id: realmId } = await realmWith(realm);
    const rows = Array.from({ length: 120 }, (_, i) => ({
      id: crypto.randomUUID(), realm_id: realmId, time: new Date(Date.UTC(2024, 0, 1) + i * 1000), type: 'LOGIN', client_id: 'app',
      user_id: null, session_id: null, ip_address: '10.0.0.1', error: null, details: '{}',
    }));
    await bench.server.store.db.insertInto('events').values(rows).execute();
    const page = await bench.admin.realms.findEvents({ realm });
    expect(page).toHaveLength(100);
    expect(page[0]!.time).toBe(Date.UTC(2024, 0, 1) + 119_000);
    expect(await bench.admin.realms.findEvents({ realm, max: -1 } as never)).toHaveLength(120);
    expect(await bench.admin.realms.findEvents({ realm, dateFrom: '2024-01-01', dateTo: '2024-01-01' } as never)).toHaveLength(100);
    expect(await bench.admin.realms.findEvents({ realm, dateFrom: '2024-01-02' } as never)).toHaveLength(0);
  });
});

describe('admin events', () => {
  it('records admin writes once enabled through PUT /events/config', async () => {
    const realm = 'ev-admin';
    const { id: realmId } = await realmWith(realm);
    const { admin } = bench;
    const master = await bench.server.store.db.selectFrom('realms').select('id').where('name', '=', 'master').executeTakeFirstOrThrow();
    const adminUser = await bench.server.store.db.selectFrom('users').select('id').where('realm_id', '=', master.id).where('username', '=', bench.adminUsername).executeTakeFirstOrThrow();
    const adminCli = await bench.server.store.db.selectFrom('clients').select('id').where('realm_id', '=', master.id).where('client_id', '=', 'admin-cli').executeTakeFirstOrThrow();

    await admin.components.create({ realm, name: 'before', providerId: 'rsa-generated', providerType: 'org.keycloak.keys.KeyProvider', config: {} });
    expect(await admin.realms.findAdminEvents({ realm })).toEqual([]);

    await admin.realms.updateConfigEvents({ realm }, { adminEventsEnabled: true, adminEventsDetailsEnabled: true });
    const { id: componentId } = await admin.components.create({ realm, name: 'after', providerId: 'rsa-generated', providerType: 'org.keycloak.keys.KeyProvider', config: { priority: ['100'] } });
    await admin.components.update({ realm, id: componentId }, { name: 'renamed' });
    await admin.identityProviders.create({ realm, alias: 'corp', providerId: 'oidc', config: { clientId: 'c', clientSecret: 'never-logged', authorizationUrl: 'https://a.example.com/auth', tokenUrl: 'https://a.example.com/token' } });
    await admin.components.del({ realm, id: componentId });

    const events = await admin.realms.findAdminEvents({ realm });
    expect(events.map((e) => `${e.operationType} ${e.resourceType} ${e.resourcePath}`)).toEqual([
      `DELETE COMPONENT components/${componentId}`,
      'CREATE IDENTITY_PROVIDER identity-provider/instances/corp',
      `UPDATE COMPONENT components/${componentId}`,
      `CREATE COMPONENT components/${componentId}`,
      // The change that turned admin events on is itself recorded, as in Keycloak.
      'UPDATE REALM events/config',
    ]);
    const create = events[3]!;
    expect(create).toMatchObject({ realmId, authDetails: { realmId: master.id, userId: adminUser.id, clientId: adminCli.id, ipAddress: expect.any(String) } });
    expect(Math.abs(create.time! - Date.now())).toBeLessThan(60_000);
    // Secrets never reach admin events.
    expect(JSON.stringify(events)).not.toContain('never-logged');

    const paths = async (query: Record<string, unknown>): Promise<string[]> => (await admin.realms.findAdminEvents({ realm, ...query } as never)).map((e) => `${e.operationType} ${e.resourcePath}`);
    expect(await paths({ operationTypes: 'CREATE' })).toEqual(['CREATE identity-provider/instances/corp', `CREATE components/${componentId}`]);
    expect(await paths({ operationTypes: ['UPDATE', 'DELETE'] })).toHaveLength(3);
    expect(await paths({ resourceTypes: 'IDENTITY_PROVIDER' })).toEqual(['CREATE identity-provider/instances/corp']);
    expect(await paths({ resourcePath: 'identity-provider/*' })).toEqual(['CREATE identity-provider/instances/corp']);
    expect(await paths({ resourcePath: `components/${componentId}` })).toHaveLength(3);
    expect(await paths({ authUser: adminUser.id })).toHaveLength(5);
    expect(await paths({ authUser: '00000000-0000-4000-8000-000000000000' })).toEqual([]);
    expect(await paths({ authRealm: master.id })).toHaveLength(5);
    expect(await paths({ authRealm: realmId })).toEqual([]);
    expect(await paths({ authClient: adminCli.id })).toHaveLength(5);
    expect(await paths({ authIpAddress: create.authDetails!.ipAddress })).toHaveLength(5);
    expect(await paths({ max: 1 })).toEqual([`DELETE components/${componentId}`]);
    expect(await paths({ first: 3 })).toEqual([`CREATE components/${componentId}`, 'UPDATE events/config']);
    const today = new Date().toISOString().slice(0, 10);
    expect(await paths({ dateFrom: today, dateTo: today })).toHaveLength(5);
    expect(await paths({ dateTo: '2000-12-31' })).toEqual([]);
    for (const query of ['operationTypes=READ', 'resourceTypes=NOPE', 'dateFrom=01/02/2024']) {
      expect((await bench.api(`/${realm}/admin-events?${query}`)).status, query).toBe(400);
    }

    await admin.realms.clearAdminEvents({ realm });
    // The DELETE itself may be recorded (as a REALM event); nothing before it remains.
    expect((await admin.realms.findAdminEvents({ realm })).filter((e) => e.resourceType !== 'REALM')).toEqual([]);
  });
});

describe('admin event details', () => {
  // Fails while src/admin/router.ts records request.body from a copy of the request object that
  // req.json() never writes to (see the report): representations are never stored.
  it('records the request body as the representation when adminEventsDetailsEnabled is on', async () => {
    const realm = 'ev-admin-details';
    await realmWith(realm);
    const { admin } = bench;
    await admin.realms.updateConfigEvents({ realm }, { adminEventsEnabled: true, adminEventsDetailsEnabled: true });
    await admin.identityProviders.create({ realm, alias: 'corp', providerId: 'oidc', config: { clientId: 'c', clientSecret: 'x', authorizationUrl: 'https://a.example.com/auth', tokenUrl: 'https://a.example.com/token' } });
    const { id } = await admin.identityProviders.createMapper({ realm, alias: 'corp', identityProviderMapper: { name: 'source', identityProviderMapper: 'hardcoded-attribute-idp-mapper', config: { attribute: 'source', 'attribute.value': 'corp' } } });
    const [event] = await admin.realms.findAdminEvents({ realm, resourceTypes: 'IDENTITY_PROVIDER_MAPPER' });
    expect(event).toMatchObject({ operationType: 'CREATE', resourcePath: `identity-provider/instances/corp/mappers/${id}` });
    expect(JSON.parse(event!.representation ?? 'null')).toMatchObject({ name: 'source', identityProviderMapper: 'hardcoded-attribute-idp-mapper', config: { attribute: 'source' } });
    // Turned off, the next write is recorded without it.
    await admin.realms.updateConfigEvents({ realm }, { adminEventsEnabled: true, adminEventsDetailsEnabled: false });
    await admin.identityProviders.delMapper({ realm, alias: 'corp', id });
    const [deleted] = await admin.realms.findAdminEvents({ realm, operationTypes: 'DELETE' });
    expect(deleted!.representation).toBeUndefined();
  });
});

describe('events permissions', () => {
  it('lets view-events read, manage-events write, and refuses others', async () => {
    const realm = 'ev-perms';
    const { tokens } = await realmWith(realm, { viewer: ['view-events'], manager: ['manage-events'], nobody: [], realmManager: ['manage-realm'] });
    const { tokens: other } = await realmWith('ev-perms-other', { otherAdmin: ['realm-admin'] });
    const status = async (token: string, method: string, path: string, body?: unknown): Promise<number> =>
      (await bench.api(`/${realm}${path}`, { method, token, ...(body !== undefined ? { body: JSON.stringify(body) } : {}) })).status;
    const reads = ['/events', '/events/config', '/admin-events'];
    const writes: [string, string, unknown?][] = [['PUT', '/events/config', { eventsEnabled: true }], ['DELETE', '/events'], ['DELETE', '/admin-events']];
    for (const path of reads) {
      expect(await status(tokens.viewer!, 'GET', path), path).toBe(200);
      expect(await status(tokens.manager!, 'GET', path), path).toBe(200);
      for (const refused of [tokens.nobody!, tokens.realmManager!, other.otherAdmin!]) expect(await status(refused, 'GET', path), path).toBe(403);
    }
    for (const [method, path, body] of writes) {
      for (const refused of [tokens.viewer!, tokens.nobody!, tokens.realmManager!, other.otherAdmin!]) expect(await status(refused, method, path, body), `${method} ${path}`).toBe(403);
    }
    expect((await bench.admin.realms.getConfigEvents({ realm })).eventsEnabled).toBe(false);
    for (const [method, path, body] of writes) expect(await status(tokens.manager!, method, path, body), `${method} ${path}`).toBe(204);
    expect((await bench.admin.realms.getConfigEvents({ realm })).eventsEnabled).toBe(true);
  });
});
