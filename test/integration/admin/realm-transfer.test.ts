// POST /admin/realms/{realm}/partialImport and /partial-export, through the official admin client
// (realms.partialImport, realms.export) and raw requests for the error cases.
import crypto from 'node:crypto';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { SECRET_MASK } from '../../../src/store/sealed-config.ts';
import { richRealm } from '../../fixtures/rich-realm.ts';
import { passwordToken, startAdminBench, type AdminBench } from '../../support/admin.ts';
import { basicAuth, postForm } from '../../support/server.ts';

let bench: AdminBench;
beforeAll(async () => { bench = await startAdminBench(); }, 60_000);
afterAll(async () => { await bench?.stop(); });

type Json = Record<string, any>;
const byName = <T extends Json>(list: T[], key: string, value: string): T => list.find((item) => item[key] === value)!;
let realms = 0;
/** An empty realm with a unique name. */
async function emptyRealm(prefix: string): Promise<string> {
  const realm = `${prefix}-${++realms}`;
  await bench.admin.realms.create({ realm, enabled: true });
  return realm;
}

describe('partial export', () => {
  it('exports settings, scopes, identity providers and components with every secret masked', async () => {
    await bench.server.importRealm(richRealm('pe'));
    const rep = await bench.admin.realms.export({ realm: 'pe' }) as Json;
    expect(rep).toMatchObject({ realm: 'pe', displayName: 'Rich Realm', accessTokenLifespan: 600, defaultGroups: ['/customers'] });
    expect(rep).not.toHaveProperty('clients');
    expect(rep).not.toHaveProperty('roles');
    expect(rep).not.toHaveProperty('groups');
    expect(rep).not.toHaveProperty('users');
    expect(rep.clientScopes.map((s: Json) => s.name)).toContain('custom-scope');
    expect(rep.smtpServer.password).toBe(SECRET_MASK);
    expect(byName(rep.identityProviders, 'alias', 'google').config.clientSecret).toBe(SECRET_MASK);
    expect(rep.components['org.keycloak.storage.UserStorageProvider'][0].config.bindCredential).toEqual([SECRET_MASK]);
    // Scope mappings of clients go with the clients.
    expect(rep.scopeMappings).toEqual([{ clientScope: 'offline_access', roles: ['offline_access'] }]);
  });

  it('adds clients (secrets masked) with their service accounts, and roles and groups when asked', async () => {
    const rep = await bench.admin.realms.export({ realm: 'pe', exportClients: true, exportGroupsAndRoles: true }) as Json;
    const portal = byName(rep.clients, 'clientId', 'portal');
    expect(portal.secret).toBe(SECRET_MASK);
    expect(byName(rep.clients, 'clientId', 'backend').secret).toBe(SECRET_MASK);
    expect(rep.roles.client.portal.map((r: Json) => r.name)).toEqual(['manage', 'view']);
    expect(rep.groups.map((g: Json) => g.name)).toEqual(['customers', 'staff']);
    expect(rep.users).toEqual([expect.objectContaining({ username: 'service-account-portal', serviceAccountClientId: 'portal', clientRoles: { backend: ['read'] } })]);
    expect(rep.users[0]).not.toHaveProperty('credentials');
    expect(JSON.stringify(rep)).not.toMatch(/portal-secret-value|backend-secret|google-secret|corp-secret|ldap-bind-secret|smtp-pass/);

    const clientsOnly = await bench.admin.realms.export({ realm: 'pe', exportClients: true, exportGroupsAndRoles: false }) as Json;
    expect(clientsOnly).not.toHaveProperty('roles');
    expect(clientsOnly.users[0]).not.toHaveProperty('realmRoles');
  });

  it('round-trips through partial import into another realm', async () => {
    const exported = await bench.admin.realms.export({ realm: 'pe', exportClients: true, exportGroupsAndRoles: true }) as Json;
    const realm = await emptyRealm('copy');
    const result = await bench.admin.realms.partialImport({ realm, rep: { ...exported, ifResourceExists: 'SKIP' } });
    const added = (type: string): string[] => result.results.filter((r) => r.action === 'ADDED' && r.resourceType === type).map((r) => r.resourceName).sort();
    expect(added('CLIENT')).toEqual(['backend', 'portal', 'spa']);
    // The source realm's default role is an ordinary role here (the copy has its own default role).
    expect(added('REALM_ROLE')).toEqual(['app-admin', 'app-user', 'default-roles-pe']);
    expect(added('CLIENT_ROLE')).toEqual(['backend-->read', 'portal-->manage', 'portal-->view']);
    expect(added('GROUP')).toEqual(['customers', 'staff']);
    expect(added('IDP')).toEqual(['corp', 'google']);
    expect(added('USER')).toEqual(['service-account-portal']);
    // Built-in roles of the realm exist already and are skipped; built-in clients are left alone.
    expect(result.results.filter((r) => r.action === 'SKIPPED').map((r) => r.resourceName)).toEqual(expect.arrayContaining(['offline_access', 'realm-management-->manage-users']));
    expect(result.results.some((r) => r.resourceName === 'admin-cli')).toBe(false);
    expect(result.added).toBe(result.results.filter((r) => r.action === 'ADDED').length);
    expect(result.skipped).toBe(result.results.filter((r) => r.action === 'SKIPPED').length);
    expect(result.overwritten).toBe(0);

    const copy = await bench.admin.realms.export({ realm, exportClients: true, exportGroupsAndRoles: true }) as Json;
    const portal = byName(copy.clients, 'clientId', 'portal');
    expect(portal).toMatchObject({ serviceAccountsEnabled: true, protocolMappers: [expect.objectContaining({ name: 'audience backend' })] });
    // Keycloak gives imported clients new ids.
    expect(portal.id).not.toBe(byName(exported.clients, 'clientId', 'portal').id);
    expect(byName(result.results, 'resourceName', 'portal').id).toBe(portal.id);
    expect(byName(result.results, 'resourceName', 'portal-->view').id).toBe(portal.id);
    expect(byName(copy.roles.realm, 'name', 'app-admin').composites).toEqual({ realm: ['app-user'], client: { portal: ['manage'] } });
    expect(byName(copy.groups, 'name', 'staff').subGroups[0]).toMatchObject({ name: 'admins', realmRoles: ['app-admin'] });
    expect(copy.users).toEqual([expect.objectContaining({ username: 'service-account-portal', clientRoles: { backend: ['read'] } })]);
    // The masked secret was not taken for a secret: the client has a new one that works.
    const [portalClient] = await bench.admin.clients.find({ realm, clientId: 'portal' });
    const { value: secret } = await bench.admin.clients.getClientSecret({ realm, id: portalClient!.id! });
    expect(secret).toMatch(/^[A-Za-z0-9]{32}$/);
    const token = await postForm(`${bench.server.url}/realms/${realm}/protocol/openid-connect/token`, { grant_type: 'client_credentials' }, { authorization: basicAuth('portal', secret!) });
    expect(token.status).toBe(200);
  });
});

describe('partial import', () => {
  const call = (realm: string, body: unknown, token?: string): Promise<Response> =>
    bench.api(`/${realm}/partialImport`, { method: 'POST', body: JSON.stringify(body), ...(token ? { token } : {}) });

  it('adds users with Keycloak hashes and plain passwords, who then sign in', async () => {
    const realm = await emptyRealm('users');
    const fixture = richRealm(realm);
    const bob = { ...byName(fixture.users as Json[], 'username', 'bob'), id: crypto.randomUUID(), groups: [] };
    const result = await bench.admin.realms.partialImport({
      realm, rep: {
        ifResourceExists: 'FAIL',
        users: [bob, { username: 'newbie', email: 'Newbie@Example.com', credentials: [{ type: 'password', value: 'Newbie-Pass-1' }] }],
      } as never,
    });
    expect(result).toMatchObject({ added: 2, skipped: 0, overwritten: 0 });
    expect(result.results).toEqual([
      { action: 'ADDED', resourceType: 'USER', resourceName: 'bob', id: bob.id },
      { action: 'ADDED', resourceType: 'USER', resourceName: 'newbie', id: expect.stringMatching(/^[0-9a-f-]{36}$/) },
    ]);
    expect(await passwordToken(bench.server.url, realm, 'bob', 'password')).toMatch(/^ey/);
    expect(await passwordToken(bench.server.url, realm, 'newbie', 'Newbie-Pass-1')).toMatch(/^ey/);
    const [newbie] = await bench.admin.users.find({ realm, username: 'newbie', exact: true });
    expect(newbie).toMatchObject({ email: 'newbie@example.com' });

    // The same user into another realm: its id is taken there, so it gets a new one.
    const elsewhere = await emptyRealm('users');
    const again = await bench.admin.realms.partialImport({ realm: elsewhere, rep: { users: [{ ...bob, realmRoles: [] }] } as never });
    expect(again.results).toEqual([{ action: 'ADDED', resourceType: 'USER', resourceName: 'bob', id: expect.not.stringMatching(bob.id) }]);
    expect(await passwordToken(bench.server.url, elsewhere, 'bob', 'password')).toMatch(/^ey/);
  });

  it('FAIL: answers 409 naming the existing resource and imports nothing', async () => {
    const realm = await emptyRealm('fail');
    await call(realm, { users: [{ username: 'taken', email: 'taken@example.com' }] });
    const cases: Array<[Json, string]> = [
      [{ users: [{ username: 'TAKEN' }] }, 'User with user name TAKEN already exists.'],
      [{ users: [{ username: 'other', email: 'taken@example.com' }] }, 'User with user name other already exists.'],
      [{ roles: { realm: [{ name: 'offline_access' }] } }, "Realm role 'offline_access' already exists."],
      [{ roles: { client: { 'realm-management': [{ name: 'view-users' }] } } }, "Client role 'view-users' for client 'realm-management' already exists."],
    ];
    for (const [body, message] of cases) {
      const response = await call(realm, { clients: [{ clientId: 'must-not-appear' }], groups: [{ name: 'nor-this' }], ...body });
      expect(response.status, JSON.stringify(body)).toBe(409);
      expect(await response.json()).toEqual({ errorMessage: message });
    }
    expect(await bench.admin.clients.find({ realm, clientId: 'must-not-appear' })).toEqual([]);
    expect(await bench.admin.groups.find({ realm })).toEqual([]);
    // A failure half-way (a duplicate inside the body) rolls back what came before it too.
    const duplicate = await call(realm, { clients: [{ clientId: 'must-not-appear' }], users: [{ username: 'x1' }, { username: 'X1' }] });
    expect(duplicate.status).toBe(400);
    expect(await bench.admin.clients.find({ realm, clientId: 'must-not-appear' })).toEqual([]);
    const missingClient = await call(realm, { roles: { client: { ghost: [{ name: 'r' }] } } });
    expect(missingClient.status).toBe(412);
    expect(await missingClient.json()).toEqual({ errorMessage: 'Can not import client roles for nonexistent client named ghost' });
    const badPolicy = await call(realm, { ifResourceExists: 'MAYBE', users: [] });
    expect(badPolicy.status).toBe(400);
    const unknownGroup = await call(realm, { users: [{ username: 'lost', groups: ['/nowhere'] }] });
    expect(unknownGroup.status).toBe(400);
    expect((await unknownGroup.json() as Json).errorMessage).toContain('group "/nowhere" does not exist');
  });

  it('SKIP keeps what exists; OVERWRITE replaces it', async () => {
    const realm = await emptyRealm('policy');
    const first = await bench.admin.realms.partialImport({ realm, rep: {
      ifResourceExists: 'FAIL',
      clients: [{ clientId: 'app', secret: 'app-secret-1', directAccessGrantsEnabled: true }],
      roles: { realm: [{ name: 'r1', description: 'one' }], client: { app: [{ name: 'c1' }] } },
      groups: [{ name: 'team', attributes: { v: ['1'] }, subGroups: [{ name: 'sub' }] }],
      identityProviders: [{ alias: 'idp', providerId: 'oidc', config: { clientId: 'a', clientSecret: 'idp-secret-1' } }],
      identityProviderMappers: [{ name: 'm', identityProviderAlias: 'idp', identityProviderMapper: 'hardcoded-attribute-idp-mapper', config: { attribute: 'a' } }],
      users: [{ username: 'u', firstName: 'Old', realmRoles: ['r1'], groups: ['/team/sub'], credentials: [{ type: 'password', value: 'Pass-word-1' }] }],
    } as never });
    expect(first).toMatchObject({ added: 7, skipped: 0, overwritten: 0 });
    const ids = Object.fromEntries(first.results.map((r) => [`${r.resourceType}:${r.resourceName}`, r.id]));

    const again = {
      clients: [{ clientId: 'app', secret: 'app-secret-2', directAccessGrantsEnabled: true }],
      roles: { realm: [{ name: 'r1', description: 'two' }], client: { app: [{ name: 'c1', description: 'new' }] } },
      groups: [{ name: 'team', attributes: { v: ['2'] } }],
      identityProviders: [{ alias: 'idp', providerId: 'oidc', config: { clientId: 'b', clientSecret: 'idp-secret-2' } }],
      identityProviderMappers: [{ name: 'm', identityProviderAlias: 'idp', identityProviderMapper: 'hardcoded-attribute-idp-mapper', config: { attribute: 'b' } }],
      users: [{ username: 'u', firstName: 'New', realmRoles: ['r1'], groups: ['/team'] }],
    };
    const skipped = await bench.admin.realms.partialImport({ realm, rep: { ...again, ifResourceExists: 'SKIP' } as never });
    expect(skipped).toMatchObject({ added: 0, skipped: 7, overwritten: 0 });
    expect(skipped.results.map((r) => r.id).sort()).toEqual(Object.values(ids).sort());
    expect((await bench.admin.users.find({ realm, username: 'u', exact: true }))[0]!.firstName).toBe('Old');

    const overwritten = await bench.admin.realms.partialImport({ realm, rep: { ...again, ifResourceExists: 'OVERWRITE' } as never });
    expect(overwritten).toMatchObject({ added: 0, skipped: 0, overwritten: 7 });
    const exported = await bench.admin.realms.export({ realm, exportClients: true, exportGroupsAndRoles: true }) as Json;
    expect(byName(exported.roles.realm, 'name', 'r1').description).toBe('two');
    expect(exported.roles.client.app).toEqual([expect.objectContaining({ name: 'c1', description: 'new' })]);
    expect(byName(exported.groups, 'name', 'team')).toMatchObject({ attributes: { v: ['2'] }, subGroups: [] });
    expect(byName(exported.identityProviders, 'alias', 'idp').config.clientId).toBe('b');
    expect(exported.identityProviderMappers).toEqual([expect.objectContaining({ name: 'm', config: { attribute: 'b' } })]);
    const [user] = await bench.admin.users.find({ realm, username: 'u', exact: true });
    expect(user).toMatchObject({ firstName: 'New' });
    // The old user (and its password) is gone; the client has its new secret.
    const login = await postForm(`${bench.server.url}/realms/${realm}/protocol/openid-connect/token`, { grant_type: 'password', username: 'u', password: 'Pass-word-1' }, { authorization: basicAuth('app', 'app-secret-2') });
    expect(login.status).toBe(401);
    expect((await login.json() as Json).error).toBe('invalid_grant');
  });

  it('overwrites the default role in place, so users keep it', async () => {
    const realm = await emptyRealm('defrole');
    await call(realm, { users: [{ username: 'keeper' }] });
    const name = `default-roles-${realm}`;
    const before = await bench.admin.roles.findOneByName({ realm, name });
    const result = await bench.admin.realms.partialImport({ realm, rep: {
      ifResourceExists: 'OVERWRITE', roles: { realm: [{ name: 'extra' }, { name, description: 'changed', composites: { realm: ['extra'] } }] },
    } as never });
    expect(result.results).toEqual(expect.arrayContaining([{ action: 'OVERWRITTEN', resourceType: 'REALM_ROLE', resourceName: name, id: before!.id }]));
    const [keeper] = await bench.admin.users.find({ realm, username: 'keeper', exact: true });
    const roles = await bench.admin.users.listRealmRoleMappings({ realm, id: keeper!.id! });
    expect(roles.map((r) => r.name)).toEqual([name]);
    const composites = await bench.admin.roles.getCompositeRolesForRealm({ realm, id: before!.id! });
    expect(composites.map((r) => r.name)).toEqual(['extra']);
  });
});

describe('permissions', () => {
  it('needs manage-realm for both; query-groups / view-clients for roles, groups and clients in the export', async () => {
    const realm = await emptyRealm('perm');
    const other = await emptyRealm('other');
    const body = JSON.stringify({ users: [{ username: 'p1' }] });
    const status = async (client: Awaited<ReturnType<AdminBench['realmAdmin']>>, path: string, init: RequestInit = { method: 'POST' }): Promise<number> =>
      (await bench.api(path, { ...init, token: await client.getAccessToken() })).status;

    const manager = await bench.realmAdmin(realm, ['manage-realm']);
    expect(await status(manager, `/${realm}/partialImport`, { method: 'POST', body })).toBe(200);
    expect(await status(manager, `/${realm}/partial-export`)).toBe(200);
    expect(await status(manager, `/${realm}/partial-export?exportGroupsAndRoles=true`)).toBe(403);
    expect(await status(manager, `/${realm}/partial-export?exportClients=true`)).toBe(403);

    const full = await bench.realmAdmin(realm, ['manage-realm', 'view-users', 'view-clients']);
    expect(await status(full, `/${realm}/partial-export?exportGroupsAndRoles=true&exportClients=true`)).toBe(200);

    const viewer = await bench.realmAdmin(realm, ['view-realm', 'manage-users', 'view-clients']);
    expect(await status(viewer, `/${realm}/partialImport`, { method: 'POST', body })).toBe(403);
    expect(await status(viewer, `/${realm}/partial-export`)).toBe(403);

    const stranger = await bench.realmAdmin(other, ['realm-admin']);
    expect(await status(stranger, `/${realm}/partialImport`, { method: 'POST', body })).toBe(403);
    expect(await status(stranger, `/${realm}/partial-export`)).toBe(403);
    expect(await status(stranger, `/${other}/partial-export`)).toBe(200);
    expect((await bench.admin.users.find({ realm, username: 'p1', exact: true }))).toHaveLength(1);
  });
});
