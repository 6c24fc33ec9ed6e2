// Realm roles, client roles and roles by id through the official admin client and raw requests:
// CRUD, Keycloak's errors, composites, holders of a role, and who may do what.
import crypto from 'node:crypto';

import type KcAdminClient from '@keycloak/keycloak-admin-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { addUsers } from '../../../src/realms/import.ts';
import { startAdminBench, type AdminBench } from '../../support/admin.ts';

let bench: AdminBench;
beforeAll(async () => { bench = await startAdminBench(); }, 60_000);
afterAll(async () => { await bench?.stop(); });

let realmCount = 0;
/** A fresh realm (imported: users and clients come from the import, not from other endpoints). */
async function newRealm(extra: Record<string, unknown> = {}): Promise<string> {
  const realm = `roles-${++realmCount}-${crypto.randomBytes(3).toString('hex')}`;
  await bench.server.importRealm({ realm, enabled: true, ...extra });
  return realm;
}

/** A realm user holding the given realm-management roles, logged in through admin-cli. */
async function realmAdminOf(realm: string, roles: string[]): Promise<KcAdminClient> {
  const username = `admin-${crypto.randomBytes(4).toString('hex')}`;
  const password = crypto.randomBytes(12).toString('base64url');
  await addUser(realm, { username, credentials: [{ type: 'password', value: password, temporary: false }], clientRoles: { 'realm-management': roles } });
  return bench.clientFor(realm, username, password);
}

/** Inserts a user as a realm import does (POST /users belongs to another module). */
async function addUser(realm: string, user: Record<string, unknown>): Promise<string> {
  const { db } = bench.server.store;
  const { id } = await db.selectFrom('realms').select('id').where('name', '=', realm).executeTakeFirstOrThrow();
  const [userId] = await addUsers(db, bench.server.box, id, [{ enabled: true, ...user }]);
  return userId!;
}

async function clientUuidOf(realm: string, clientId: string): Promise<string> {
  const row = await bench.server.store.db.selectFrom('clients').innerJoin('realms', 'realms.id', 'clients.realm_id')
    .select('clients.id').where('realms.name', '=', realm).where('clients.client_id', '=', clientId).executeTakeFirstOrThrow();
  return row.id;
}

const json = async (response: Response): Promise<Record<string, unknown>> => await response.json() as Record<string, unknown>;

describe('realm roles', () => {
  it('creates, reads, renames and deletes a role', async () => {
    const realm = await newRealm();
    const { admin } = bench;
    expect(await admin.roles.create({ realm, name: 'Supervisor', description: 'Leads agents', attributes: { level: ['2'] } })).toEqual({ roleName: 'Supervisor' });
    const created = await admin.roles.findOneByName({ realm, name: 'Supervisor' });
    expect(created).toMatchObject({ name: 'Supervisor', description: 'Leads agents', composite: false, clientRole: false, attributes: { level: ['2'] } });
    const { id: realmId } = (await admin.realms.findOne({ realm }))!;
    expect(created!.containerId).toBe(realmId);

    await admin.roles.updateByName({ realm, name: 'Supervisor' }, { name: 'Team Lead', description: 'Leads a team', attributes: { tier: ['gold'] } });
    expect(await admin.roles.findOneByName({ realm, name: 'Supervisor' })).toBeNull();
    const renamed = await admin.roles.findOneById({ realm, id: created!.id! });
    expect(renamed).toMatchObject({ name: 'Team Lead', description: 'Leads a team', attributes: { tier: ['gold'] } });

    // a name holding a slash: its Location is encoded; encoded slashes in paths are refused (as
    // Keycloak's HTTP layer does), so such a role is reached by id
    const slashed = await bench.api(`/${realm}/roles`, { method: 'POST', body: JSON.stringify({ name: 'ops/lead' }) });
    expect(slashed.headers.get('location')).toBe(`${bench.server.url}/admin/realms/${realm}/roles/ops%2Flead`);
    expect((await bench.api(`/${realm}/roles/ops%2Flead`)).status).toBe(400);
    const [opsLead] = await admin.roles.find({ realm, search: 'ops/' });
    expect(await admin.roles.findOneById({ realm, id: opsLead!.id! })).toMatchObject({ name: 'ops/lead' });

    await admin.roles.delByName({ realm, name: 'Team Lead' });
    expect(await admin.roles.findOneById({ realm, id: created!.id! })).toBeNull();
  });

  it('answers Keycloak errors: 409 duplicate, 400 missing name and wrong types, 404 unknown', async () => {
    const realm = await newRealm();
    await bench.admin.roles.create({ realm, name: 'agent' });
    const dup = await bench.api(`/${realm}/roles`, { method: 'POST', body: JSON.stringify({ name: 'agent' }) });
    expect(dup.status).toBe(409);
    expect(await json(dup)).toEqual({ errorMessage: 'Role with name agent already exists' });

    const noName = await bench.api(`/${realm}/roles`, { method: 'POST', body: JSON.stringify({ description: 'x' }) });
    expect(noName.status).toBe(400);
    const typed = await bench.api(`/${realm}/roles`, { method: 'POST', body: JSON.stringify({ name: 'x', description: 5 }) });
    expect(typed.status).toBe(400);
    expect(String((await json(typed)).errorMessage)).toContain('description');
    const typedAttributes = await bench.api(`/${realm}/roles`, { method: 'POST', body: JSON.stringify({ name: 'x', attributes: { a: [1] } }) });
    expect(typedAttributes.status).toBe(400);

    expect((await bench.api(`/${realm}/roles/nope`)).status).toBe(404);
    expect((await bench.api(`/${realm}/roles/nope`, { method: 'PUT', body: JSON.stringify({ name: 'nope' }) })).status).toBe(404);
    expect((await bench.api(`/${realm}/roles/nope`, { method: 'DELETE' })).status).toBe(404);
    expect((await bench.api(`/${realm}/roles-by-id/not-a-uuid`)).status).toBe(404);
    expect((await bench.api(`/${realm}/roles-by-id/${crypto.randomUUID()}`)).status).toBe(404);

    await bench.admin.roles.create({ realm, name: 'other' });
    const clash = await bench.api(`/${realm}/roles/other`, { method: 'PUT', body: JSON.stringify({ name: 'agent' }) });
    expect(clash.status).toBe(409);
    expect(await json(clash)).toEqual({ errorMessage: 'Role with name agent already exists' });
    const blank = await bench.api(`/${realm}/roles/other`, { method: 'PUT', body: JSON.stringify({ description: 'no name' }) });
    expect(blank.status).toBe(400);
  });

  it('refuses to delete the default role, by name and by id', async () => {
    const realm = await newRealm();
    const byName = await bench.api(`/${realm}/roles/default-roles-${realm}`, { method: 'DELETE' });
    expect(byName.status).toBe(400);
    expect(await json(byName)).toEqual({ errorMessage: `default-roles-${realm} is default role of the realm and cannot be removed.` });
    const role = await bench.admin.roles.findOneByName({ realm, name: `default-roles-${realm}` });
    expect(role).toMatchObject({ composite: true });
    expect((await bench.api(`/${realm}/roles-by-id/${role!.id}`, { method: 'DELETE' })).status).toBe(400);
    // Nor renamed (a Cloakroom restriction: the realm finds its default role by name).
    const rename = await bench.api(`/${realm}/roles-by-id/${role!.id}`, { method: 'PUT', body: JSON.stringify({ name: 'base' }) });
    expect(rename.status).toBe(400);
    expect((await bench.api(`/${realm}/roles/default-roles-${realm}`, { method: 'PUT', body: JSON.stringify({ name: `default-roles-${realm}`, description: 'Everyone' }) })).status).toBe(204);
    expect(await bench.admin.realms.findOne({ realm })).toMatchObject({ defaultRole: { id: role!.id, description: 'Everyone' } });
  });

  it('lists brief representations by name, with infix search and paging', async () => {
    const realm = await newRealm();
    for (const name of ['sales-agent', 'sales-lead', 'support-agent']) await bench.admin.roles.create({ realm, name, attributes: { a: ['1'] } });
    await bench.admin.roles.create({ realm, name: 'billing', description: 'Handles SALES invoices' });
    const all = await bench.admin.roles.find({ realm });
    expect(all.map((r) => r.name)).toEqual(['billing', `default-roles-${realm}`, 'manage-own-access-keys', 'offline_access', 'sales-agent', 'sales-lead', 'support-agent', 'uma_authorization']);
    expect(all.every((r) => r.attributes === undefined)).toBe(true);
    const full = await bench.admin.roles.find({ realm, briefRepresentation: false, search: 'AGENT' });
    expect(full.map((r) => r.name)).toEqual(['sales-agent', 'support-agent']);
    expect(full[0]!.attributes).toEqual({ a: ['1'] });
    // Keycloak's role search matches the description too.
    expect((await bench.admin.roles.find({ realm, search: 'sales' })).map((r) => r.name)).toEqual(['billing', 'sales-agent', 'sales-lead']);
    expect((await bench.admin.roles.find({ realm, first: 4, max: 2 })).map((r) => r.name)).toEqual(['sales-agent', 'sales-lead']);
  });

  it('creates a composite role with its composites (Keycloak 26) and manages composites', async () => {
    const realm = await newRealm({ clients: [{ clientId: 'crm', publicClient: true }] });
    const { admin } = bench;
    await admin.roles.create({ realm, name: 'read' });
    await admin.roles.create({ realm, name: 'write' });
    const created = await bench.api(`/${realm}/roles`, {
      method: 'POST', body: JSON.stringify({ name: 'editor', composite: true, composites: { realm: ['read', 'write'] } }),
    });
    expect(created.status).toBe(201);
    expect(created.headers.get('location')).toBe(`${bench.server.url}/admin/realms/${realm}/roles/editor`);
    const editor = (await admin.roles.findOneByName({ realm, name: 'editor' }))!;
    expect(editor.composite).toBe(true);
    expect((await admin.roles.getCompositeRoles({ id: editor.id!, realm })).map((r) => r.name)).toEqual(['read', 'write']);
    const missing = await bench.api(`/${realm}/roles`, { method: 'POST', body: JSON.stringify({ name: 'x', composite: true, composites: { realm: ['ghost'] } }) });
    expect(missing.status).toBe(404);
    expect(await json(missing)).toEqual({ errorMessage: 'Realm Role with name ghost does not exist' });

    const read = (await admin.roles.findOneByName({ realm, name: 'read' }))!;
    const self = await bench.api(`/${realm}/roles-by-id/${read.id}/composites`, { method: 'POST', body: JSON.stringify([{ id: read.id }]) });
    expect(self.status).toBe(400);
    const unknown = await bench.api(`/${realm}/roles/editor/composites`, { method: 'POST', body: JSON.stringify([{ id: crypto.randomUUID() }]) });
    expect(unknown.status).toBe(404);

    const write = (await admin.roles.findOneByName({ realm, name: 'write' }))!;
    await admin.roles.delCompositeRoles({ realm, id: editor.id! }, [{ id: write.id! }]);
    expect((await admin.roles.getCompositeRolesForRealm({ realm, id: editor.id! })).map((r) => r.name)).toEqual(['read']);
    const byName = await bench.api(`/${realm}/roles/editor/composites/realm`);
    expect((await byName.json() as Array<{ name: string }>).map((r) => r.name)).toEqual(['read']);
  });

  it('lists the users and groups holding a role directly', async () => {
    const realm = await newRealm({
      roles: { realm: [{ name: 'agent' }] },
      users: [
        { username: 'bob', realmRoles: ['agent'] },
        { username: 'alice', realmRoles: ['agent'], firstName: 'Alice' },
        { username: 'carol' },
      ],
      groups: [{ name: 'agents', realmRoles: ['agent'] }, { name: 'others' }],
    });
    const users = await bench.admin.roles.findUsersWithRole({ realm, name: 'agent' });
    expect(users.map((u) => u.username)).toEqual(['alice', 'bob']);
    expect(users[0]).toMatchObject({ firstName: 'Alice', enabled: true });
    expect((await bench.admin.roles.findUsersWithRole({ realm, name: 'agent', first: 1, max: 5 })).map((u) => u.username)).toEqual(['bob']);
    const groups = await (await bench.api(`/${realm}/roles/agent/groups`)).json() as Array<Record<string, unknown>>;
    expect(groups).toEqual([expect.objectContaining({ name: 'agents', path: '/agents', subGroups: [] })]);
    expect(groups[0]!.realmRoles).toBeUndefined();
    const full = await (await bench.api(`/${realm}/roles/agent/groups?briefRepresentation=false`)).json() as Array<Record<string, unknown>>;
    expect(full[0]).toMatchObject({ realmRoles: ['agent'], clientRoles: {}, attributes: {} });
    expect((await bench.api(`/${realm}/roles/ghost/users`)).status).toBe(404);
  });
});

describe('client roles', () => {
  it('does CRUD under a client and composites across containers', async () => {
    const realm = await newRealm({ clients: [{ clientId: 'crm', publicClient: true }] });
    const clientUuid = await clientUuidOf(realm, 'crm');
    const created = await bench.api(`/${realm}/clients/${clientUuid}/roles`, { method: 'POST', body: JSON.stringify({ name: 'crm-user', description: 'uses the CRM' }) });
    expect(created.status).toBe(201);
    expect(created.headers.get('location')).toBe(`${bench.server.url}/admin/realms/${realm}/clients/${clientUuid}/roles/crm-user`);
    const dup = await bench.api(`/${realm}/clients/${clientUuid}/roles`, { method: 'POST', body: JSON.stringify({ name: 'crm-user' }) });
    expect(dup.status).toBe(409);
    expect(await json(dup)).toEqual({ errorMessage: 'Role with name crm-user already exists' });

    const role = await json(await bench.api(`/${realm}/clients/${clientUuid}/roles/crm-user`));
    expect(role).toMatchObject({ name: 'crm-user', description: 'uses the CRM', clientRole: true, containerId: clientUuid, composite: false, attributes: {} });
    // A realm role of the same name is a different role.
    expect((await bench.api(`/${realm}/roles/crm-user`)).status).toBe(404);
    const list = await (await bench.api(`/${realm}/clients/${clientUuid}/roles`)).json() as Array<{ name: string }>;
    expect(list.map((r) => r.name)).toEqual(['crm-user']);

    await bench.admin.roles.create({ realm, name: 'staff' });
    const staff = (await bench.admin.roles.findOneByName({ realm, name: 'staff' }))!;
    await bench.admin.roles.createComposite({ realm, roleId: staff.id! }, [{ id: String(role.id) }]);
    expect((await bench.admin.roles.getCompositeRolesForClient({ realm, id: staff.id!, clientId: clientUuid })).map((r) => r.name)).toEqual(['crm-user']);
    expect((await bench.admin.roles.getCompositeRolesForRealm({ realm, id: staff.id! }))).toEqual([]);
    const composites = await (await bench.api(`/${realm}/roles/staff/composites/clients/${clientUuid}`)).json() as Array<{ name: string }>;
    expect(composites.map((r) => r.name)).toEqual(['crm-user']);
    expect((await bench.api(`/${realm}/roles/staff/composites/clients/${crypto.randomUUID()}`)).status).toBe(404);

    expect((await bench.api(`/${realm}/clients/${clientUuid}/roles/crm-user`, { method: 'PUT', body: JSON.stringify({ name: 'crm-agent' }) })).status).toBe(204);
    expect((await bench.api(`/${realm}/clients/${clientUuid}/roles/crm-agent`, { method: 'DELETE' })).status).toBe(204);
    expect((await bench.api(`/${realm}/clients/${clientUuid}/roles/crm-agent`)).status).toBe(404);

    expect((await bench.api(`/${realm}/clients/${crypto.randomUUID()}/roles`)).status).toBe(404);
    expect((await bench.api(`/${realm}/clients/not-a-uuid/roles`)).status).toBe(404);
  });
});

describe('role permissions', () => {
  it('follows Keycloak: listing for any query role, reading with view-realm, writing with manage-realm', async () => {
    const realm = await newRealm({ roles: { realm: [{ name: 'agent' }] } });
    const viewer = await realmAdminOf(realm, ['view-users']);
    expect((await viewer.roles.find({ realm })).map((r) => r.name)).toContain('agent');
    await expect(viewer.roles.findOneByName({ realm, name: 'agent' })).rejects.toMatchObject({ response: { status: 403 } });
    await expect(viewer.roles.create({ realm, name: 'x' })).rejects.toMatchObject({ response: { status: 403 } });

    const realmManager = await realmAdminOf(realm, ['manage-realm']);
    await realmManager.roles.create({ realm, name: 'made-by-manager' });
    expect(await realmManager.roles.findOneByName({ realm, name: 'made-by-manager' })).toMatchObject({ name: 'made-by-manager' });
    // users of a role also need query-users
    await expect(realmManager.roles.findUsersWithRole({ realm, name: 'agent' })).rejects.toMatchObject({ response: { status: 403 } });

    const other = await newRealm();
    const outsider = await realmAdminOf(other, ['realm-admin']);
    await expect(outsider.roles.find({ realm })).rejects.toMatchObject({ response: { status: 403 } });
    const agent = (await bench.admin.roles.findOneByName({ realm, name: 'agent' }))!;
    await expect(outsider.roles.findOneById({ realm, id: agent.id! })).rejects.toMatchObject({ response: { status: 403 } });
    await expect(outsider.roles.delByName({ realm, name: 'agent' })).rejects.toMatchObject({ response: { status: 403 } });
  });

  it('guards client roles with the clients permissions and admin roles against escalation', async () => {
    const realm = await newRealm({ clients: [{ clientId: 'crm', publicClient: true }] });
    const clientUuid = await clientUuidOf(realm, 'crm');
    const clientManager = await realmAdminOf(realm, ['manage-clients']);
    await expect(clientManager.roles.create({ realm, name: 'x' })).rejects.toMatchObject({ response: { status: 403 } });
    await clientManager.clients.createRole({ realm, id: clientUuid, name: 'crm-user' });
    expect((await clientManager.clients.listRoles({ realm, id: clientUuid })).map((r) => r.name)).toEqual(['crm-user']);

    // Composites: the child's container must be managed, and an admin role only by who holds it.
    const builder = await realmAdminOf(realm, ['manage-realm', 'manage-clients']);
    await builder.roles.create({ realm, name: 'bundle' });
    const bundle = (await builder.roles.findOneByName({ realm, name: 'bundle' }))!;
    const managementUuid = await clientUuidOf(realm, 'realm-management');
    const manageUsers = await json(await bench.api(`/${realm}/clients/${managementUuid}/roles/manage-users`));
    const crmUser = await json(await bench.api(`/${realm}/clients/${clientUuid}/roles/crm-user`));
    const composites = `/${realm}/roles-by-id/${bundle.id}/composites`;
    const builderToken = await builder.getAccessToken();
    expect((await bench.api(composites, { method: 'POST', token: builderToken, body: JSON.stringify([{ id: crmUser.id }]) })).status).toBe(204);
    const escalate = await bench.api(composites, { method: 'POST', token: builderToken, body: JSON.stringify([{ id: manageUsers.id }]) });
    expect(escalate.status).toBe(403);
    const realmOnly = await realmAdminOf(realm, ['manage-realm']);
    await realmOnly.roles.create({ realm, name: 'bundle-2' });
    const bundle2 = (await realmOnly.roles.findOneByName({ realm, name: 'bundle-2' }))!;
    const clientChild = await bench.api(`/${realm}/roles-by-id/${bundle2.id}/composites`, { method: 'POST', token: await realmOnly.getAccessToken(), body: JSON.stringify([{ id: crmUser.id }]) });
    expect(clientChild.status).toBe(403);
    // the bootstrap admin holds everything
    expect((await bench.api(composites, { method: 'POST', body: JSON.stringify([{ id: manageUsers.id }]) })).status).toBe(204);
    expect((await builder.roles.getCompositeRoles({ realm, id: bundle.id! })).map((r) => r.name)).toEqual(['crm-user', 'manage-users']);
    // by id, only the composites the caller may view are listed
    expect((await realmOnly.roles.getCompositeRoles({ realm, id: bundle.id! })).map((r) => r.name)).toEqual([]);
  });
});
