// Cross-realm isolation of the Admin API: an admin of realm A (or the super admin through A's
// URLs) must never read, change or delete realm B's objects by their ids, names or aliases; and
// what binds a master user to another realm (master's `<realm>-realm` clients and their roles)
// must not outlive, or be forged for, the realm it names.
import crypto from 'node:crypto';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { startAdminBench, type AdminBench } from '../../support/admin.ts';

let bench: AdminBench;
beforeAll(async () => { bench = await startAdminBench(); }, 60_000);
afterAll(async () => { await bench?.stop(); });

type Call = { status: number; body: any; location: string | null };

/** A raw admin call (super admin unless a token is given). */
async function call(method: string, path: string, body?: unknown, token?: string): Promise<Call> {
  const response = await bench.api(path, {
    method, ...(token ? { token } : {}),
    ...(body === undefined ? {} : { body: typeof body === 'string' ? body : JSON.stringify(body) }),
  });
  const text = await response.text();
  let parsed: unknown = text;
  try { parsed = text === '' ? undefined : JSON.parse(text); } catch { /* plain text */ }
  return { status: response.status, body: parsed, location: response.headers.get('location') };
}

async function created(path: string, body: unknown): Promise<string> {
  const res = await call('POST', path, body);
  expect(res.status, `${path}: ${JSON.stringify(res.body)}`).toBe(201);
  return res.location!.split('/').pop()!;
}

/** One of every kind of object an id can name, in a new realm. */
type Seeded = {
  realm: string; realmId: string; roleId: string; clientUuid: string; clientRoleId: string; mapperId: string;
  scopeId: string; groupId: string; childGroupId: string; userId: string; credentialId: string;
  idpInternalId: string; idpMapperId: string; componentId: string;
};

async function seed(realm: string): Promise<Seeded> {
  await created('', { realm, enabled: true });
  const realmId = (await call('GET', `/${realm}`)).body.id as string;
  await created(`/${realm}/roles`, { name: 'role' });
  const roleId = (await call('GET', `/${realm}/roles/role`)).body.id as string;
  const clientUuid = await created(`/${realm}/clients`, {
    clientId: 'app', publicClient: false, secret: `${realm}-client-secret`,
    protocolMappers: [{ name: 'aud', protocol: 'openid-connect', protocolMapper: 'oidc-audience-mapper', config: { 'included.client.audience': 'app' } }],
  });
  await created(`/${realm}/clients/${clientUuid}/roles`, { name: 'client-role' });
  const clientRoleId = (await call('GET', `/${realm}/clients/${clientUuid}/roles/client-role`)).body.id as string;
  const mapperId = (await call('GET', `/${realm}/clients/${clientUuid}/protocol-mappers/models`)).body[0].id as string;
  const scopeId = await created(`/${realm}/client-scopes`, { name: 'scope', protocol: 'openid-connect' });
  const groupId = await created(`/${realm}/groups`, { name: 'group' });
  const childGroupId = await created(`/${realm}/groups/${groupId}/children`, { name: 'child' });
  const userId = await created(`/${realm}/users`, {
    username: 'someone', enabled: true,
    credentials: [{
      type: 'otp', userLabel: 'phone', secretData: JSON.stringify({ value: 'JBSWY3DPEHPK3PXP' }),
      credentialData: JSON.stringify({ subType: 'totp', digits: 6, counter: 0, period: 30, algorithm: 'HmacSHA1' }),
    }],
  });
  const credentialId = (await call('GET', `/${realm}/users/${userId}/credentials`)).body[0].id as string;
  await created(`/${realm}/identity-provider/instances`, {
    alias: 'corp', providerId: 'oidc',
    config: { clientId: 'corp', clientSecret: 'corp-secret', authorizationUrl: 'https://idp.example.com/auth', tokenUrl: 'https://idp.example.com/token' },
  });
  const idpInternalId = (await call('GET', `/${realm}/identity-provider/instances/corp`)).body.internalId as string;
  const idpMapperId = await created(`/${realm}/identity-provider/instances/corp/mappers`, {
    name: 'dept', identityProviderAlias: 'corp', identityProviderMapper: 'hardcoded-attribute-idp-mapper', config: { attribute: 'dept', 'attribute.value': 'x' },
  });
  expect((await call('POST', `/${realm}/users/${userId}/federated-identity/corp`, { identityProvider: 'corp', userId: 'ext-1', userName: 'ext' })).status).toBe(204);
  const componentId = await created(`/${realm}/components`, {
    name: 'hmac', providerId: 'hmac-generated', providerType: 'org.keycloak.keys.KeyProvider', parentId: realmId, config: { secret: ['component-secret'] },
  });
  return { realm, realmId, roleId, clientUuid, clientRoleId, mapperId, scopeId, groupId, childGroupId, userId, credentialId, idpInternalId, idpMapperId, componentId };
}

let a: Seeded;
let b: Seeded;
/** A realm-admin of realm A. */
let aAdminToken: string;

beforeAll(async () => {
  a = await seed('xr-a');
  b = await seed('xr-b');
  aAdminToken = await (await bench.realmAdmin('xr-a', ['realm-admin'])).getAccessToken() as string;
}, 60_000);

/** Everything realm B holds, as the super admin reads it through B's own URLs. */
async function snapshotOfB(): Promise<unknown> {
  const paths = [
    `/${b.realm}/roles/role`, `/${b.realm}/roles/role/composites`, `/${b.realm}/clients/${b.clientUuid}`,
    `/${b.realm}/clients/${b.clientUuid}/roles/client-role`, `/${b.realm}/clients/${b.clientUuid}/scope-mappings`,
    `/${b.realm}/client-scopes/${b.scopeId}`, `/${b.realm}/client-scopes/${b.scopeId}/scope-mappings`,
    `/${b.realm}/groups/${b.groupId}`, `/${b.realm}/groups/${b.childGroupId}`, `/${b.realm}/groups/${b.groupId}/role-mappings`,
    `/${b.realm}/groups/${b.groupId}/members`, `/${b.realm}/users/${b.userId}`, `/${b.realm}/users/${b.userId}/credentials`,
    `/${b.realm}/users/${b.userId}/groups`, `/${b.realm}/users/${b.userId}/role-mappings`, `/${b.realm}/users/${b.userId}/federated-identity`,
    `/${b.realm}/identity-provider/instances/corp`, `/${b.realm}/identity-provider/instances/corp/mappers`,
    `/${b.realm}/components?parent=${b.realmId}`, `/${b.realm}/default-groups`, `/${b.realm}/default-default-client-scopes`,
  ];
  const out: Record<string, unknown> = {};
  for (const path of paths) out[path] = (await call('GET', path)).body;
  return out;
}

describe('ids of another realm through this realm\'s URLs', () => {
  it('never reach realm B, for the super admin and for realm A\'s realm-admin', async () => {
    const before = await snapshotOfB();
    const A = `/${a.realm}`;
    const attempts: Array<[string, string, unknown?]> = [
      // users
      ['GET', `${A}/users/${b.userId}`], ['PUT', `${A}/users/${b.userId}`, { firstName: 'Mallory' }], ['DELETE', `${A}/users/${b.userId}`],
      ['GET', `${A}/users/${b.userId}/credentials`], ['DELETE', `${A}/users/${a.userId}/credentials/${b.credentialId}`],
      ['PUT', `${A}/users/${a.userId}/credentials/${b.credentialId}/userLabel`, 'stolen'],
      ['POST', `${A}/users/${a.userId}/credentials/${b.credentialId}/moveToFirst`],
      ['PUT', `${A}/users/${a.userId}/groups/${b.groupId}`], ['DELETE', `${A}/users/${b.userId}/groups/${b.groupId}`],
      ['GET', `${A}/users/${a.userId}/offline-sessions/${b.clientUuid}`],
      ['POST', `${A}/users/${b.userId}/federated-identity/corp`, { identityProvider: 'corp', userId: 'ext-2' }],
      ['DELETE', `${A}/users/${b.userId}/federated-identity/corp`],
      // role mappings: B's roles to A's user and group, B's user and group through A
      ['POST', `${A}/users/${a.userId}/role-mappings/realm`, [{ id: b.roleId, name: 'role' }]],
      ['POST', `${A}/users/${a.userId}/role-mappings/realm`, [{ id: b.roleId }]],
      ['POST', `${A}/users/${a.userId}/role-mappings/clients/${b.clientUuid}`, [{ id: b.clientRoleId, name: 'client-role' }]],
      ['POST', `${A}/users/${a.userId}/role-mappings/clients/${a.clientUuid}`, [{ id: b.clientRoleId }]],
      ['POST', `${A}/groups/${a.groupId}/role-mappings/realm`, [{ id: b.roleId }]],
      ['POST', `${A}/users/${b.userId}/role-mappings/realm`, [{ id: a.roleId }]],
      ['DELETE', `${A}/groups/${b.groupId}/role-mappings/realm`],
      // groups: moves, reads, members, defaults
      ['POST', `${A}/groups/${a.groupId}/children`, { id: b.groupId, name: 'group' }],
      ['POST', `${A}/groups/${a.groupId}/children`, { id: b.childGroupId, name: 'child' }],
      ['POST', `${A}/groups`, { id: b.childGroupId, name: 'child' }],
      ['POST', `${A}/groups/${b.groupId}/children`, { id: a.groupId, name: 'group' }],
      ['GET', `${A}/groups/${b.groupId}`], ['PUT', `${A}/groups/${b.groupId}`, { name: 'renamed' }], ['DELETE', `${A}/groups/${b.childGroupId}`],
      ['GET', `${A}/groups/${b.groupId}/members`], ['PUT', `${A}/default-groups/${b.groupId}`], ['DELETE', `${A}/default-groups/${b.groupId}`],
      // roles: by id, composites, client roles
      ['GET', `${A}/roles-by-id/${b.roleId}`], ['PUT', `${A}/roles-by-id/${b.roleId}`, { name: 'renamed' }], ['DELETE', `${A}/roles-by-id/${b.clientRoleId}`],
      ['POST', `${A}/roles-by-id/${a.roleId}/composites`, [{ id: b.roleId }]], ['POST', `${A}/roles/role/composites`, [{ id: b.clientRoleId }]],
      ['POST', `${A}/roles-by-id/${b.roleId}/composites`, [{ id: a.roleId }]],
      ['GET', `${A}/roles/role/composites/clients/${b.clientUuid}`],
      ['GET', `${A}/clients/${b.clientUuid}/roles`], ['DELETE', `${A}/clients/${b.clientUuid}/roles/client-role`],
      // clients, their scopes, mappers and scope mappings
      ['GET', `${A}/clients/${b.clientUuid}`], ['PUT', `${A}/clients/${b.clientUuid}`, { description: 'x' }], ['DELETE', `${A}/clients/${b.clientUuid}`],
      ['GET', `${A}/clients/${b.clientUuid}/client-secret`], ['POST', `${A}/clients/${b.clientUuid}/client-secret`],
      ['PUT', `${A}/clients/${a.clientUuid}/default-client-scopes/${b.scopeId}`], ['PUT', `${A}/clients/${b.clientUuid}/optional-client-scopes/${a.scopeId}`],
      ['GET', `${A}/clients/${a.clientUuid}/protocol-mappers/models/${b.mapperId}`],
      ['PUT', `${A}/clients/${a.clientUuid}/protocol-mappers/models/${b.mapperId}`, { name: 'aud', protocol: 'openid-connect', protocolMapper: 'oidc-audience-mapper', config: {} }],
      ['DELETE', `${A}/clients/${a.clientUuid}/protocol-mappers/models/${b.mapperId}`],
      ['POST', `${A}/clients/${a.clientUuid}/scope-mappings/realm`, [{ id: b.roleId }]],
      ['POST', `${A}/clients/${a.clientUuid}/scope-mappings/clients/${b.clientUuid}`, [{ name: 'client-role' }]],
      ['POST', `${A}/client-scopes/${a.scopeId}/scope-mappings/realm`, [{ id: b.roleId }]],
      ['POST', `${A}/client-scopes/${b.scopeId}/scope-mappings/realm`, [{ id: a.roleId }]],
      ['GET', `${A}/clients/${a.clientUuid}/evaluate-scopes/generate-example-access-token?userId=${b.userId}`],
      ['GET', `${A}/clients/${a.clientUuid}/evaluate-scopes/scope-mappings/${b.clientUuid}/granted`],
      // client scopes and realm defaults
      ['GET', `${A}/client-scopes/${b.scopeId}`], ['PUT', `${A}/client-scopes/${b.scopeId}`, { description: 'x' }], ['DELETE', `${A}/client-scopes/${b.scopeId}`],
      ['PUT', `${A}/default-default-client-scopes/${b.scopeId}`], ['DELETE', `${A}/default-optional-client-scopes/${b.scopeId}`],
      // identity providers (by internal id) and their mappers
      ['GET', `${A}/identity-provider/instances/${b.idpInternalId}`], ['DELETE', `${A}/identity-provider/instances/${b.idpInternalId}`],
      ['GET', `${A}/identity-provider/instances/corp/mappers/${b.idpMapperId}`],
      ['PUT', `${A}/identity-provider/instances/corp/mappers/${b.idpMapperId}`, { name: 'dept' }],
      ['DELETE', `${A}/identity-provider/instances/corp/mappers/${b.idpMapperId}`],
      // components, as themselves and as parents
      ['GET', `${A}/components/${b.componentId}`], ['PUT', `${A}/components/${b.componentId}`, { name: 'x' }], ['DELETE', `${A}/components/${b.componentId}`],
      ['GET', `${A}/components/${b.componentId}/sub-component-types?type=org.keycloak.storage.ldap.mappers.LDAPStorageMapper`],
      ['POST', `${A}/components`, { name: 'k', providerId: 'hmac-generated', providerType: 'org.keycloak.keys.KeyProvider', parentId: b.componentId, config: {} }],
      ['POST', `${A}/components`, { name: 'k', providerId: 'hmac-generated', providerType: 'org.keycloak.keys.KeyProvider', parentId: b.realmId, config: {} }],
      ['PUT', `${A}/components/${a.componentId}`, { parentId: b.realmId }], ['PUT', `${A}/components/${a.componentId}`, { parentId: b.componentId }],
    ];
    for (const token of [undefined, aAdminToken]) {
      for (const [method, path, body] of attempts) {
        const res = await call(method, path, body, token);
        expect([400, 404], `${method} ${path} as ${token ? 'realm-admin of A' : 'super admin'}: ${res.status} ${JSON.stringify(res.body)}`).toContain(res.status);
      }
    }
    expect(await snapshotOfB()).toEqual(before);
    // Lists under A name nothing of B.
    for (const path of [`/${a.realm}/components?parent=${b.realmId}`, `/${a.realm}/users?search=id:${b.userId}`]) {
      expect((await call('GET', path)).body).toEqual([]);
    }
  });

  it('new objects may not take the ids of realm B\'s', async () => {
    const before = await snapshotOfB();
    const A = `/${a.realm}`;
    const reuse: Array<[string, unknown]> = [
      [`${A}/clients`, { id: b.clientUuid, clientId: 'app-copy' }],
      [`${A}/client-scopes`, { id: b.scopeId, name: 'scope-copy', protocol: 'openid-connect' }],
      [`${A}/components`, { id: b.componentId, name: 'k', providerId: 'hmac-generated', providerType: 'org.keycloak.keys.KeyProvider', config: {} }],
      [`${A}/identity-provider/instances`, { alias: 'copy', internalId: b.idpInternalId, providerId: 'oidc', config: { clientId: 'x', authorizationUrl: 'https://i.example.com/a', tokenUrl: 'https://i.example.com/t' } }],
      [`${A}/users`, { username: 'cred-thief', credentials: [{ id: b.credentialId, type: 'otp', secretData: '{"value":"AAAA"}', credentialData: '{}' }] }],
    ];
    for (const [path, body] of reuse) {
      const res = await call('POST', path, body);
      if (res.status === 201) expect(res.location!.split('/').pop(), path).not.toBe((body as { id?: string }).id);
      else expect(res.status, `${path}: ${JSON.stringify(res.body)}`).toBe(409);
    }
    expect(await snapshotOfB()).toEqual(before);
  });
});

describe('master\'s per-realm admin clients', () => {
  /** A master user holding the master realm role `create-realm`. */
  async function creator(): Promise<{ username: string; password: string; token: () => Promise<string> }> {
    const username = `creator-${crypto.randomBytes(4).toString('hex')}`;
    const password = crypto.randomBytes(12).toString('base64url');
    const userId = await created('/master/users', { username, enabled: true, credentials: [{ type: 'password', value: password, temporary: false }] });
    const role = (await call('GET', '/master/roles/create-realm')).body;
    expect((await call('POST', `/master/users/${userId}/role-mappings/realm`, [{ id: role.id, name: role.name }])).status).toBe(204);
    return { username, password, token: async () => (await bench.clientFor('master', username, password)).getAccessToken() as Promise<string> };
  }

  it('do not outlive their realm: a new realm of the same name owes nothing to the old one\'s admins', async () => {
    const alice = await creator();
    expect((await call('POST', '', { realm: 'xr-reborn', enabled: true }, await alice.token())).status).toBe(201);
    expect((await call('GET', '/xr-reborn/users', undefined, await alice.token())).status).toBe(200);
    expect((await call('DELETE', '/xr-reborn')).status).toBe(204);
    expect((await call('GET', '/master/clients?clientId=xr-reborn-realm')).body).toEqual([]);

    // Someone else's realm, later, under the same name.
    expect((await call('POST', '', { realm: 'xr-reborn', enabled: true })).status).toBe(201);
    expect((await call('GET', '/xr-reborn/users', undefined, await alice.token())).status).toBe(403);
    // And a creator can make it again after it is gone (no leftover client in the way).
    expect((await call('DELETE', '/xr-reborn')).status).toBe(204);
    const bob = await creator();
    expect((await call('POST', '', { realm: 'xr-reborn', enabled: true }, await bob.token())).status).toBe(201);
    expect((await call('GET', '/xr-reborn/users', undefined, await bob.token())).status).toBe(200);
    expect((await call('GET', '/xr-reborn/users', undefined, await alice.token())).status).toBe(403);
  });

  it('follow their realm\'s rename, and a rename cannot take over another name\'s admin client', async () => {
    const carol = await creator();
    expect((await call('POST', '', { realm: 'xr-old', enabled: true }, await carol.token())).status).toBe(201);
    expect((await call('PUT', '/xr-old', { realm: 'xr-new' })).status).toBe(204);
    expect((await call('GET', '/xr-new/users', undefined, await carol.token())).status).toBe(200);
    expect((await call('GET', '/master/clients?clientId=xr-new-realm')).body).toHaveLength(1);
    expect((await call('GET', '/master/clients?clientId=xr-old-realm')).body).toEqual([]);
    expect((await call('POST', '', { realm: 'xr-old', enabled: true })).status).toBe(201);
    expect((await call('GET', '/xr-old/users', undefined, await carol.token())).status).toBe(403);

    // A master client already named `<new name>-realm` blocks the rename, whoever asks.
    await created('/master/clients', { clientId: 'xr-target-realm', bearerOnly: true });
    expect((await call('PUT', '/xr-new', { realm: 'xr-target' }, await carol.token())).status).toBe(409);
    expect((await call('PUT', '/xr-old', { realm: 'xr-target' })).status).toBe(409);
    expect((await call('GET', '/xr-new')).body.realm).toBe('xr-new');
    expect((await call('GET', '/xr-new/users', undefined, await carol.token())).status).toBe(200);
  });

  it('cannot be forged by a master admin who only manages master\'s clients and users', async () => {
    await created('', { realm: 'xr-victim', enabled: true });
    // A master admin in Keycloak's model: roles of master's own `master-realm` client.
    const masterRealmClient = await created('/master/clients', { clientId: 'master-realm', bearerOnly: true });
    for (const name of ['manage-clients', 'manage-users']) await created(`/master/clients/${masterRealmClient}/roles`, { name });
    const roles = (await call('GET', `/master/clients/${masterRealmClient}/roles`)).body as Array<{ id: string; name: string }>;
    const username = `mgr-${crypto.randomBytes(4).toString('hex')}`;
    const password = crypto.randomBytes(12).toString('base64url');
    const userId = await created('/master/users', { username, enabled: true, credentials: [{ type: 'password', value: password, temporary: false }] });
    expect((await call('POST', `/master/users/${userId}/role-mappings/clients/${masterRealmClient}`, roles)).status).toBe(204);
    const token = await (await bench.clientFor('master', username, password)).getAccessToken() as string;
    expect((await call('GET', '/master/clients', undefined, token)).status).toBe(200);

    // Naming a client `xr-victim-realm` outright...
    expect((await call('POST', '/master/clients', { clientId: 'xr-victim-realm', bearerOnly: true }, token)).status).toBe(403);
    // ...or renaming one whose (harmless-looking) roles the admin already holds.
    const decoy = (await call('POST', '/master/clients', { clientId: 'decoy', bearerOnly: true }, token)).location!.split('/').pop()!;
    expect((await call('POST', `/master/clients/${decoy}/roles`, { name: 'manage-users' }, token)).status).toBe(201);
    const decoyRole = (await call('GET', `/master/clients/${decoy}/roles/manage-users`, undefined, token)).body;
    expect((await call('POST', `/master/users/${userId}/role-mappings/clients/${decoy}`, [decoyRole], token)).status).toBe(204);
    expect((await call('PUT', `/master/clients/${decoy}`, { clientId: 'xr-victim-realm' }, token)).status).toBe(403);
    expect((await call('GET', '/master/clients?clientId=xr-victim-realm')).body).toEqual([]);
    expect((await call('GET', '/xr-victim/users', undefined, token)).status).toBe(403);
    // The super admin still may (Keycloak's master realm holds one such client per realm).
    expect((await call('PUT', `/master/clients/${decoy}`, { clientId: 'xr-decoy-realm' })).status).toBe(204);
  });
});

describe('management roles cannot be renamed into existence', () => {
  it('a manage-clients admin cannot rename realm-management roles to or from an admin role it lacks', async () => {
    await created('', { realm: 'xr-esc', enabled: true });
    const token = await (await bench.realmAdmin('xr-esc', ['manage-clients'])).getAccessToken() as string;
    const [management] = (await call('GET', '/xr-esc/clients?clientId=realm-management', undefined, token)).body as Array<{ id: string }>;
    const base = `/xr-esc/clients/${management!.id}/roles`;
    expect((await call('GET', '/xr-esc/users', undefined, token)).status).toBe(403);
    expect((await call('PUT', `${base}/realm-admin`, { name: 'realm-admin-old' }, token)).status).toBe(403);
    expect((await call('PUT', `${base}/manage-users`, { name: 'manage-users-old' }, token)).status).toBe(403);
    // Its own role renamed to one it does not hold, through either route.
    expect((await call('PUT', `${base}/view-users`, { name: 'view-users-2' })).status).toBe(204);
    expect((await call('PUT', `${base}/manage-clients`, { name: 'view-users' }, token)).status).toBe(403);
    const own = (await call('GET', `${base}/manage-clients`, undefined, token)).body;
    expect((await call('PUT', `/xr-esc/roles-by-id/${own.id}`, { name: 'view-users' }, token)).status).toBe(403);
    expect((await call('GET', '/xr-esc/users', undefined, token)).status).toBe(403);
    // Ordinary roles, and descriptions of its own, stay editable.
    expect((await call('PUT', `${base}/manage-clients`, { name: 'manage-clients', description: 'mine' }, token)).status).toBe(204);
    const app = (await call('POST', '/xr-esc/clients', { clientId: 'plain' }, token)).location!.split('/').pop()!;
    expect((await call('POST', `/xr-esc/clients/${app}/roles`, { name: 'reader' }, token)).status).toBe(201);
    expect((await call('PUT', `/xr-esc/clients/${app}/roles/reader`, { name: 'writer' }, token)).status).toBe(204);
  });
});

describe('ids spelled in upper case', () => {
  // PostgreSQL compares uuids case-insensitively; checks done on the strings must not differ.
  it('do not slip past the default-role and component-cycle checks', async () => {
    await created('', { realm: 'xr-case', enabled: true });
    const realm = (await call('GET', '/xr-case')).body;
    expect((await call('DELETE', `/xr-case/roles-by-id/${realm.defaultRole.id.toUpperCase()}`)).status).toBe(400);
    expect((await call('GET', `/xr-case/roles-by-id/${realm.defaultRole.id}`)).status).toBe(200);

    const type = { providerId: 'hmac-generated', providerType: 'org.keycloak.keys.KeyProvider' };
    const parent = await created('/xr-case/components', { name: 'parent', ...type, parentId: realm.id, config: {} });
    const child = await created('/xr-case/components', { name: 'child', ...type, parentId: parent, config: {} });
    expect((await call('PUT', `/xr-case/components/${parent}`, { parentId: child.toUpperCase() })).status).toBe(400);
    expect((await call('GET', `/xr-case/components/${parent}`)).body.parentId).toBe(realm.id);
  });
});

describe('secrets', () => {
  it('the realm\'s SMTP password is masked as Keycloak does, and a PUT of the mask keeps it', async () => {
    await created('', { realm: 'xr-smtp', enabled: true });
    const smtpServer = { host: 'smtp.example.com', port: '587', from: 'noreply@example.com', auth: 'true', user: 'mailer', password: 'smtp-pass' };
    expect((await call('PUT', '/xr-smtp', { smtpServer })).status).toBe(204);
    const rep = (await call('GET', '/xr-smtp')).body;
    expect(rep.smtpServer).toEqual({ ...smtpServer, password: '**********' });
    const listed = ((await call('GET', '')).body as Array<{ realm: string; smtpServer?: Record<string, string> }>).find((r) => r.realm === 'xr-smtp');
    expect(listed?.smtpServer?.password).toBe('**********');
    const stored = async () => (await bench.server.store.db.selectFrom('realms').select('settings').where('name', '=', 'xr-smtp').executeTakeFirstOrThrow()).settings as { smtpServer: Record<string, string> };

    // What the admin console does: PUT back what it read, with one field changed.
    expect((await call('PUT', '/xr-smtp', { ...rep, smtpServer: { ...rep.smtpServer, from: 'desk@example.com' } })).status).toBe(204);
    // The password rests sealed (src/mail/smtp-config.ts).
    const { password: _password, ...readable } = smtpServer;
    expect((await stored()).smtpServer).toEqual({ ...readable, from: 'desk@example.com', passwordSealed: expect.stringMatching(/^v1\./) });
    expect(bench.server.box.open((await stored()).smtpServer.passwordSealed!)).toBe('smtp-pass');
    expect((await call('PUT', '/xr-smtp', { smtpServer: { ...smtpServer, password: 'new-pass' } })).status).toBe(204);
    expect(bench.server.box.open((await stored()).smtpServer.passwordSealed!)).toBe('new-pass');
  });
});

describe('NUL characters', () => {
  it('answer 400 (never 500) wherever they reach the database', async () => {
    await created('', { realm: 'xr-nul', enabled: true });
    const answers = [
      await call('GET', '/%00/users'),
      await call('GET', '/xr-nul/groups?search=%00'),
      await call('GET', '/xr-nul/roles/%00'),
      await call('GET', '/xr-nul/clients?clientId=%00'),
      await call('GET', '/xr-nul/identity-provider/instances/%00'),
      await call('POST', '/xr-nul/groups', { name: 'a\u0000' }),
      await call('POST', '/xr-nul/roles', { name: 'r\u0000' }),
      await call('PUT', '/xr-nul', { displayName: 'x\u0000' }),
    ];
    for (const answer of answers) expect([400, 404]).toContain(answer.status);
    expect(answers[5]).toMatchObject({ status: 400, body: { errorMessage: expect.any(String) } });
  });
});
