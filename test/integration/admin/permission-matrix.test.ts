// Every Admin API resource, called by an admin of another realm, by a user of the realm without
// management roles, and by the realm's own realm-admin: the first two get 403 (nothing leaks,
// nothing changes), the last one does not.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { passwordToken, startAdminBench, type AdminBench } from '../../support/admin.ts';

let bench: AdminBench;
const ids: Record<string, string> = {};
const tokens: Record<'otherRealmAdmin' | 'plainUser' | 'realmAdmin', () => Promise<string>> = {} as never;

async function makeUser(realm: string, username: string, managementRoles: string[]): Promise<() => Promise<string>> {
  const { admin } = bench;
  const { id } = await admin.users.create({ realm, username, enabled: true, credentials: [{ type: 'password', value: `${username}-pw`, temporary: false }] });
  if (managementRoles.length > 0) {
    const [management] = await admin.clients.find({ realm, clientId: 'realm-management' });
    const roles = (await admin.clients.listRoles({ realm, id: management!.id! })).filter((r) => managementRoles.includes(r.name!));
    await admin.users.addClientRoleMappings({ realm, id, clientUniqueId: management!.id!, roles: roles.map((r) => ({ id: r.id!, name: r.name! })) });
  }
  return () => passwordToken(bench.server.url, realm, username, `${username}-pw`);
}

beforeAll(async () => {
  bench = await startAdminBench();
  const { admin } = bench;
  await admin.realms.create({ realm: 'tenant-a', enabled: true });
  await admin.realms.create({ realm: 'tenant-b', enabled: true });
  const realm = 'tenant-a';
  ids.user = (await admin.users.create({ realm, username: 'agent-1', enabled: true })).id;
  ids.group = (await admin.groups.create({ realm, name: 'agents' })).id;
  ids.client = (await admin.clients.create({ realm, clientId: 'crm', serviceAccountsEnabled: true })).id;
  await admin.roles.create({ realm, name: 'supervisor' });
  ids.role = (await admin.roles.findOneByName({ realm, name: 'supervisor' }))!.id!;
  ids.scope = (await admin.clientScopes.find({ realm })).find((s) => s.name === 'profile')!.id!;
  await admin.identityProviders.create({ realm, alias: 'corp', providerId: 'oidc', config: { clientId: 'x', clientSecret: 'y', authorizationUrl: 'https://idp.example.com/auth', tokenUrl: 'https://idp.example.com/token' } });
  ids.component = (await admin.components.create({ realm, name: 'rsa', providerId: 'rsa-generated', providerType: 'org.keycloak.keys.KeyProvider', config: { priority: ['100'] } })).id;
  tokens.otherRealmAdmin = await makeUser('tenant-b', 'b-admin', ['realm-admin']);
  tokens.plainUser = await makeUser(realm, 'a-user', []);
  tokens.realmAdmin = await makeUser(realm, 'a-admin', ['realm-admin']);
}, 120_000);
afterAll(async () => { await bench?.stop(); });

type Call = [method: 'GET' | 'POST' | 'PUT' | 'DELETE', path: () => string, body?: unknown];

const calls: Call[] = [
  ['GET', () => ''],
  ['PUT', () => '', { displayName: 'x' }],
  ['GET', () => '/keys'],
  ['POST', () => '/logout-all'],
  ['DELETE', () => '/sessions/no-such-session'],
  ['GET', () => '/default-default-client-scopes'],
  ['POST', () => '/partial-export'],
  ['POST', () => '/partialImport', { ifResourceExists: 'SKIP', roles: { realm: [{ name: 'x' }] } }],
  ['GET', () => '/users'],
  ['GET', () => '/users/count'],
  ['POST', () => '/users', { username: 'intruder' }],
  ['GET', () => `/users/${ids.user}`],
  ['PUT', () => `/users/${ids.user}`, { firstName: 'x' }],
  ['DELETE', () => `/users/${ids.user}`],
  ['PUT', () => `/users/${ids.user}/reset-password`, { type: 'password', value: 'x', temporary: false }],
  ['GET', () => `/users/${ids.user}/credentials`],
  ['GET', () => `/users/${ids.user}/groups`],
  ['PUT', () => `/users/${ids.user}/groups/${ids.group}`],
  ['GET', () => `/users/${ids.user}/role-mappings`],
  ['POST', () => `/users/${ids.user}/role-mappings/realm`, [{ id: ids.role, name: 'supervisor' }]],
  ['GET', () => `/users/${ids.user}/sessions`],
  ['POST', () => `/users/${ids.user}/logout`],
  ['GET', () => `/users/${ids.user}/consents`],
  ['GET', () => `/users/${ids.user}/federated-identity`],
  ['GET', () => `/attack-detection/brute-force/users/${ids.user}`],
  ['DELETE', () => '/attack-detection/brute-force/users'],
  ['GET', () => '/roles'],
  ['POST', () => '/roles', { name: 'intruder' }],
  ['GET', () => '/roles/supervisor'],
  ['PUT', () => '/roles/supervisor', { name: 'supervisor', description: 'x' }],
  ['GET', () => `/roles-by-id/${ids.role}`],
  ['GET', () => '/roles/supervisor/users'],
  ['GET', () => '/groups'],
  ['POST', () => '/groups', { name: 'intruders' }],
  ['GET', () => `/groups/${ids.group}`],
  ['PUT', () => `/groups/${ids.group}`, { name: 'agents' }],
  ['GET', () => `/groups/${ids.group}/members`],
  ['GET', () => `/groups/${ids.group}/role-mappings`],
  ['GET', () => '/group-by-path/agents'],
  ['GET', () => '/default-groups'],
  ['GET', () => '/clients'],
  ['POST', () => '/clients', { clientId: 'intruder' }],
  ['GET', () => `/clients/${ids.client}`],
  ['PUT', () => `/clients/${ids.client}`, { clientId: 'crm', description: 'x' }],
  ['GET', () => `/clients/${ids.client}/client-secret`],
  ['POST', () => `/clients/${ids.client}/client-secret`],
  ['GET', () => `/clients/${ids.client}/service-account-user`],
  ['GET', () => `/clients/${ids.client}/roles`],
  ['GET', () => `/clients/${ids.client}/protocol-mappers/models`],
  ['GET', () => `/clients/${ids.client}/scope-mappings`],
  ['GET', () => `/clients/${ids.client}/default-client-scopes`],
  ['GET', () => `/clients/${ids.client}/user-sessions`],
  ['GET', () => '/client-scopes'],
  ['GET', () => `/client-scopes/${ids.scope}`],
  ['PUT', () => `/client-scopes/${ids.scope}`, { name: 'profile', description: 'x' }],
  ['GET', () => `/client-scopes/${ids.scope}/protocol-mappers/models`],
  ['GET', () => '/identity-provider/instances'],
  ['POST', () => '/identity-provider/instances', { alias: 'intruder', providerId: 'oidc' }],
  ['GET', () => '/identity-provider/instances/corp'],
  ['GET', () => '/identity-provider/instances/corp/mappers'],
  ['GET', () => '/components'],
  ['GET', () => `/components/${ids.component}`],
  ['GET', () => '/events'],
  ['GET', () => '/events/config'],
  ['GET', () => '/admin-events'],
  ['DELETE', () => ''],
];

async function call(token: string, [method, path, body]: Call): Promise<number> {
  const response = await bench.api(`/tenant-a${path()}`, { method, token, ...(body !== undefined ? { body: JSON.stringify(body) } : {}) });
  await response.arrayBuffer();
  return response.status;
}

describe('permission matrix', () => {
  it('refuses every resource of realm A to an admin of realm B', async () => {
    const token = await tokens.otherRealmAdmin();
    const allowed: string[] = [];
    for (const entry of calls) {
      const status = await call(token, entry);
      if (status !== 403) allowed.push(`${entry[0]} ${entry[1]()} -> ${status}`);
    }
    expect(allowed).toEqual([]);
    // Nothing changed: the realm and its user are still there.
    expect(await bench.admin.users.findOne({ realm: 'tenant-a', id: ids.user! })).not.toBeNull();
  });

  it('refuses every resource to a user of the realm without management roles', async () => {
    const token = await tokens.plainUser();
    const allowed: string[] = [];
    for (const entry of calls) {
      const status = await call(token, entry);
      if (status !== 403) allowed.push(`${entry[0]} ${entry[1]()} -> ${status}`);
    }
    expect(allowed).toEqual([]);
  });

  it('lets the realm admin of A read every resource of A', async () => {
    const token = await tokens.realmAdmin();
    const refused: string[] = [];
    for (const entry of calls.filter(([method]) => method === 'GET')) {
      const status = await call(token, entry);
      if (status !== 200) refused.push(`${entry[0]} ${entry[1]()} -> ${status}`);
    }
    expect(refused).toEqual([]);
  });

  it('does not list realm A to the admin of realm B', async () => {
    const token = await tokens.otherRealmAdmin();
    const response = await fetch(`${bench.server.url}/admin/realms`, { headers: { authorization: `Bearer ${token}` } });
    const realms = await response.json() as Array<{ realm: string }>;
    expect(realms.map((r) => r.realm)).toEqual(['tenant-b']);
  });
});
