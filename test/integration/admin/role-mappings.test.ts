// Role mappings of users and groups: direct mappings, available and effective roles (composites,
// groups and their ancestors), the token that follows, Keycloak's errors and permissions.
import crypto from 'node:crypto';

import type KcAdminClient from '@keycloak/keycloak-admin-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { addUsers } from '../../../src/realms/import.ts';
import { startAdminBench, type AdminBench } from '../../support/admin.ts';
import { postForm } from '../../support/server.ts';

let bench: AdminBench;
beforeAll(async () => { bench = await startAdminBench(); }, 60_000);
afterAll(async () => { await bench?.stop(); });

let realmCount = 0;
async function newRealm(extra: Record<string, unknown> = {}): Promise<string> {
  const realm = `mappings-${++realmCount}-${crypto.randomBytes(3).toString('hex')}`;
  await bench.server.importRealm({ realm, enabled: true, ...extra });
  return realm;
}

/** Inserts a user as a realm import does (for fixtures; the flows under test use the admin client). */
async function addUser(realm: string, user: Record<string, unknown>): Promise<string> {
  const { db } = bench.server.store;
  const { id } = await db.selectFrom('realms').select('id').where('name', '=', realm).executeTakeFirstOrThrow();
  const [userId] = await addUsers(db, bench.server.box, id, [{ enabled: true, ...user }]);
  return userId!;
}

async function realmAdminOf(realm: string, roles: string[]): Promise<KcAdminClient> {
  const username = `admin-${crypto.randomBytes(4).toString('hex')}`;
  const password = crypto.randomBytes(12).toString('base64url');
  await addUser(realm, { username, credentials: [{ type: 'password', value: password, temporary: false }], clientRoles: { 'realm-management': roles } });
  return bench.clientFor(realm, username, password);
}

async function clientUuidOf(realm: string, clientId: string): Promise<string> {
  const row = await bench.server.store.db.selectFrom('clients').innerJoin('realms', 'realms.id', 'clients.realm_id')
    .select('clients.id').where('realms.name', '=', realm).where('clients.client_id', '=', clientId).executeTakeFirstOrThrow();
  return row.id;
}

const names = (roles: Array<{ name?: string }>): string[] => roles.map((r) => r.name!);
const json = async (response: Response): Promise<Record<string, unknown>> => await response.json() as Record<string, unknown>;

const REALM = {
  roles: {
    realm: [
      { name: 'agent' },
      { name: 'reporting' },
      { name: 'supervisor', composite: true, composites: { realm: ['agent', 'reporting'] } },
    ],
    client: { crm: [{ name: 'crm-read' }, { name: 'crm-write' }, { name: 'crm-admin', composite: true, composites: { client: { crm: ['crm-read', 'crm-write'] } } }] },
  },
  clients: [{ clientId: 'crm', publicClient: true }, { clientId: 'tester', publicClient: true, directAccessGrantsEnabled: true, standardFlowEnabled: false }],
  groups: [{ name: 'floor', subGroups: [{ name: 'team-a' }] }],
};

describe('user role mappings', () => {
  it('adds, lists and removes realm and client mappings, with available and effective roles', async () => {
    const realm = await newRealm(REALM);
    const { admin } = bench;
    const id = await addUser(realm, { username: 'dana' });
    const crm = await clientUuidOf(realm, 'crm');
    const supervisor = (await admin.roles.findOneByName({ realm, name: 'supervisor' }))!;
    const crmAdmin = (await admin.clients.findRole({ realm, id: crm, roleName: 'crm-admin' }))!;

    // a new user holds the default role only
    expect(await admin.users.listRoleMappings({ realm, id })).toEqual({ realmMappings: [expect.objectContaining({ name: `default-roles-${realm}`, composite: true })] });
    await admin.users.addRealmRoleMappings({ realm, id, roles: [{ id: supervisor.id!, name: 'supervisor' }] });
    await admin.users.addClientRoleMappings({ realm, id, clientUniqueId: crm, roles: [{ id: crmAdmin.id!, name: 'crm-admin' }] });

    const mappings = await admin.users.listRoleMappings({ realm, id });
    expect(names(mappings.realmMappings!)).toEqual([`default-roles-${realm}`, 'supervisor']);
    expect(mappings.clientMappings).toEqual({ crm: { id: crm, client: 'crm', mappings: [expect.objectContaining({ name: 'crm-admin', clientRole: true, containerId: crm, composite: true })] } });
    expect(mappings.realmMappings![0]!.attributes).toBeUndefined();

    expect(names(await admin.users.listRealmRoleMappings({ realm, id }))).toEqual([`default-roles-${realm}`, 'supervisor']);
    // effective: composites expanded (default-roles brings offline_access and uma_authorization)
    expect(names(await admin.users.listCompositeRealmRoleMappings({ realm, id }))).toEqual([
      'agent', `default-roles-${realm}`, 'offline_access', 'reporting', 'supervisor', 'uma_authorization',
    ]);
    const full = await (await bench.api(`/${realm}/users/${id}/role-mappings/realm/composite?briefRepresentation=false`)).json() as Array<Record<string, unknown>>;
    expect(full[0]).toHaveProperty('attributes');
    // available: not directly mapped (agent is held through supervisor but still mappable)
    expect(names(await admin.users.listAvailableRealmRoleMappings({ realm, id }))).toEqual(['agent', 'manage-own-access-keys', 'offline_access', 'reporting', 'uma_authorization']);
    expect(names(await admin.users.listCompositeClientRoleMappings({ realm, id, clientUniqueId: crm }))).toEqual(['crm-admin', 'crm-read', 'crm-write']);
    expect(names(await admin.users.listAvailableClientRoleMappings({ realm, id, clientUniqueId: crm }))).toEqual(['crm-read', 'crm-write']);
    expect(names(await admin.users.listClientRoleMappings({ realm, id, clientUniqueId: crm }))).toEqual(['crm-admin']);

    await admin.users.delRealmRoleMappings({ realm, id, roles: [{ id: supervisor.id!, name: 'supervisor' }] });
    await admin.users.delClientRoleMappings({ realm, id, clientUniqueId: crm, roles: [{ id: crmAdmin.id!, name: 'crm-admin' }] });
    expect(await admin.users.listRoleMappings({ realm, id })).toEqual({ realmMappings: [expect.objectContaining({ name: `default-roles-${realm}` })] });

    // DELETE without a body removes every mapping of the container
    expect((await bench.api(`/${realm}/users/${id}/role-mappings/realm`, { method: 'DELETE' })).status).toBe(204);
    expect(await admin.users.listRoleMappings({ realm, id })).toEqual({});
  });

  it('answers 404 for unknown or malformed users, clients and roles, and 400 for wrong types', async () => {
    const realm = await newRealm(REALM);
    const id = await addUser(realm, { username: 'eve' });
    const crm = await clientUuidOf(realm, 'crm');
    const agent = (await bench.admin.roles.findOneByName({ realm, name: 'agent' }))!;
    const post = (path: string, body: unknown): Promise<Response> => bench.api(`/${realm}${path}`, { method: 'POST', body: JSON.stringify(body) });

    const unknownRole = await post(`/users/${id}/role-mappings/realm`, [{ id: crypto.randomUUID(), name: 'agent' }]);
    expect(unknownRole.status).toBe(404);
    expect(await json(unknownRole)).toEqual({ errorMessage: 'Role not found' });
    expect((await post(`/users/${id}/role-mappings/realm`, [{ id: 'not-a-uuid' }])).status).toBe(404);
    expect((await post(`/users/${id}/role-mappings/realm`, [{ id: agent.id, name: 'reporting' }])).status).toBe(404); // id and name disagree
    // a realm role is not a role of the client
    expect((await post(`/users/${id}/role-mappings/clients/${crm}`, [{ id: agent.id, name: 'agent' }])).status).toBe(404);
    expect((await post(`/users/${id}/role-mappings/realm`, { id: agent.id })).status).toBe(400);
    expect((await post(`/users/${id}/role-mappings/realm`, [{ id: 42 }])).status).toBe(400);

    for (const path of [
      `/users/${crypto.randomUUID()}/role-mappings`, '/users/not-a-uuid/role-mappings/realm', `/groups/${crypto.randomUUID()}/role-mappings/realm/composite`,
      `/users/${id}/role-mappings/clients/${crypto.randomUUID()}`, `/users/${id}/role-mappings/clients/not-a-uuid/available`,
    ]) {
      expect((await bench.api(`/${realm}${path}`)).status, path).toBe(404);
    }
    expect(await bench.admin.users.listRealmRoleMappings({ realm, id })).toEqual([expect.objectContaining({ name: `default-roles-${realm}` })]);
  });
  it('changes the roles of a service account in its next client-credentials token', async () => {
    const realm = await newRealm({ ...REALM, clients: [...REALM.clients, { clientId: 'robot', secret: 'robot-secret', serviceAccountsEnabled: true, standardFlowEnabled: false }] });
    const robot = await clientUuidOf(realm, 'robot');
    const serviceAccount = await bench.admin.clients.getServiceAccountUser({ realm, id: robot });
    const agent = (await bench.admin.roles.findOneByName({ realm, name: 'agent' }))!;
    const realmRoles = async (): Promise<string[]> => {
      const response = await postForm(`${bench.server.url}/realms/${realm}/protocol/openid-connect/token`, { grant_type: 'client_credentials', client_id: 'robot', client_secret: 'robot-secret' });
      const { access_token: token } = await response.json() as { access_token: string };
      return (JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()) as { realm_access?: { roles: string[] } }).realm_access?.roles ?? [];
    };
    expect(await realmRoles()).not.toContain('agent');
    await bench.admin.users.addRealmRoleMappings({ realm, id: serviceAccount.id!, roles: [{ id: agent.id!, name: 'agent' }] });
    expect(await realmRoles()).toContain('agent');
    await bench.admin.users.delRealmRoleMappings({ realm, id: serviceAccount.id!, roles: [{ id: agent.id!, name: 'agent' }] });
    expect(await realmRoles()).not.toContain('agent');
  });
});

describe('group role mappings', () => {
  it('maps roles to groups; members and subgroups inherit them, also in their tokens', async () => {
    const realm = await newRealm(REALM);
    const { admin } = bench;
    const [floor] = await admin.groups.find({ realm });
    const [teamA] = await admin.groups.listSubGroups({ realm, parentId: floor!.id! });
    const supervisor = (await admin.roles.findOneByName({ realm, name: 'supervisor' }))!;
    const crm = await clientUuidOf(realm, 'crm');
    const crmRead = (await admin.clients.findRole({ realm, id: crm, roleName: 'crm-read' }))!;

    await admin.groups.addRealmRoleMappings({ realm, id: floor!.id!, roles: [{ id: supervisor.id!, name: 'supervisor' }] });
    await admin.groups.addClientRoleMappings({ realm, id: teamA!.id!, clientUniqueId: crm, roles: [{ id: crmRead.id!, name: 'crm-read' }] });
    expect(await admin.groups.listRoleMappings({ realm, id: floor!.id! })).toEqual({ realmMappings: [expect.objectContaining({ name: 'supervisor' })] });
    expect(names(await admin.groups.listRealmRoleMappings({ realm, id: teamA!.id! }))).toEqual([]);
    // a subgroup's effective roles include its ancestors' mappings, composites expanded
    expect(names(await admin.groups.listCompositeRealmRoleMappings({ realm, id: teamA!.id! }))).toEqual(['agent', 'reporting', 'supervisor']);
    expect(names(await admin.groups.listCompositeClientRoleMappings({ realm, id: teamA!.id!, clientUniqueId: crm }))).toEqual(['crm-read']);
    expect(names(await admin.groups.listAvailableRealmRoleMappings({ realm, id: floor!.id! }))).not.toContain('supervisor');

    // a user created with a password through the admin API, then put in the subgroup
    const password = crypto.randomBytes(12).toString('base64url');
    const { id } = await admin.users.create({ realm, username: 'agent-007', enabled: true, credentials: [{ type: 'password', value: password, temporary: false }] });
    await admin.users.addToGroup({ realm, id, groupId: teamA!.id! });
    expect(names(await admin.users.listCompositeRealmRoleMappings({ realm, id }))).toEqual(expect.arrayContaining(['agent', 'reporting', 'supervisor']));
    expect(names(await admin.users.listCompositeClientRoleMappings({ realm, id, clientUniqueId: crm }))).toEqual(['crm-read']);

    const response = await postForm(`${bench.server.url}/realms/${realm}/protocol/openid-connect/token`, { grant_type: 'password', client_id: 'tester', username: 'agent-007', password });
    const { access_token: token } = await response.json() as { access_token: string };
    const claims = JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()) as { realm_access: { roles: string[] }; resource_access: Record<string, { roles: string[] }> };
    expect(claims.realm_access.roles).toEqual(expect.arrayContaining(['agent', 'reporting', 'supervisor']));
    expect(claims.resource_access.crm!.roles).toEqual(['crm-read']);

    // removing the group's mapping takes the roles away again
    await admin.groups.delRealmRoleMappings({ realm, id: floor!.id!, roles: [{ id: supervisor.id!, name: 'supervisor' }] });
    expect(names(await admin.users.listCompositeRealmRoleMappings({ realm, id }))).not.toContain('agent');
  });
});

describe('role mapping permissions', () => {
  it('needs view-users to read and manage-users to write, and refuses other realms', async () => {
    const realm = await newRealm(REALM);
    const id = await addUser(realm, { username: 'frank' });
    const [floor] = await bench.admin.groups.find({ realm });
    const agent = (await bench.admin.roles.findOneByName({ realm, name: 'agent' }))!;
    const viewer = await realmAdminOf(realm, ['view-users']);
    expect(await viewer.users.listRoleMappings({ realm, id })).toHaveProperty('realmMappings');
    expect(await viewer.groups.listRoleMappings({ realm, id: floor!.id! })).toEqual({});
    // nothing is mappable for an admin who may not map
    expect(await viewer.users.listAvailableRealmRoleMappings({ realm, id })).toEqual([]);
    await expect(viewer.users.addRealmRoleMappings({ realm, id, roles: [{ id: agent.id!, name: 'agent' }] })).rejects.toMatchObject({ response: { status: 403 } });
    await expect(viewer.groups.addRealmRoleMappings({ realm, id: floor!.id!, roles: [{ id: agent.id!, name: 'agent' }] })).rejects.toMatchObject({ response: { status: 403 } });

    const manager = await realmAdminOf(realm, ['manage-users']);
    await manager.users.addRealmRoleMappings({ realm, id, roles: [{ id: agent.id!, name: 'agent' }] });
    expect(names(await manager.users.listRealmRoleMappings({ realm, id }))).toContain('agent');

    const outsider = await realmAdminOf(await newRealm(), ['realm-admin']);
    await expect(outsider.users.listRoleMappings({ realm, id })).rejects.toMatchObject({ response: { status: 403 } });
    await expect(outsider.users.addRealmRoleMappings({ realm, id, roles: [{ id: agent.id!, name: 'agent' }] })).rejects.toMatchObject({ response: { status: 403 } });
    await expect(outsider.groups.listCompositeRealmRoleMappings({ realm, id: floor!.id! })).rejects.toMatchObject({ response: { status: 403 } });
  });

  it('lets a manage-users admin hand out only the admin roles it holds', async () => {
    const realm = await newRealm(REALM);
    const id = await addUser(realm, { username: 'grace' });
    const management = await clientUuidOf(realm, 'realm-management');
    const manager = await realmAdminOf(realm, ['manage-users', 'view-clients']);
    const roles = await manager.clients.listRoles({ realm, id: management });
    const role = (name: string): { id: string; name: string } => ({ id: roles.find((r) => r.name === name)!.id!, name });

    const available = names(await manager.users.listAvailableClientRoleMappings({ realm, id, clientUniqueId: management }));
    expect(available).toEqual(expect.arrayContaining(['manage-users', 'view-users', 'query-users', 'query-groups']));
    expect(available).not.toContain('realm-admin');
    expect(available).not.toContain('manage-realm');

    await manager.users.addClientRoleMappings({ realm, id, clientUniqueId: management, roles: [role('view-users'), role('query-clients')] });
    await expect(manager.users.addClientRoleMappings({ realm, id, clientUniqueId: management, roles: [role('realm-admin')] })).rejects.toMatchObject({ response: { status: 403 } });
    await expect(manager.users.addClientRoleMappings({ realm, id, clientUniqueId: management, roles: [role('manage-realm')] })).rejects.toMatchObject({ response: { status: 403 } });
    expect(names(await manager.users.listClientRoleMappings({ realm, id, clientUniqueId: management }))).toEqual(['query-clients', 'view-users']);
    // the realm's own realm-admin may grant anything of its realm
    const realmAdmin = await realmAdminOf(realm, ['realm-admin']);
    await realmAdmin.users.addClientRoleMappings({ realm, id, clientUniqueId: management, roles: [role('manage-realm')] });
    expect(names(await manager.users.listClientRoleMappings({ realm, id, clientUniqueId: management }))).toContain('manage-realm');
  });
});
