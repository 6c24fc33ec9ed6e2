// Groups through the official admin client and raw requests: hierarchy, search, moves,
// group-by-path, members, realm default groups, Keycloak's errors and permissions.
import crypto from 'node:crypto';

import type KcAdminClient from '@keycloak/keycloak-admin-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { addUsers } from '../../../src/realms/import.ts';
import { startAdminBench, type AdminBench } from '../../support/admin.ts';

let bench: AdminBench;
beforeAll(async () => { bench = await startAdminBench(); }, 60_000);
afterAll(async () => { await bench?.stop(); });

let realmCount = 0;
async function newRealm(extra: Record<string, unknown> = {}): Promise<string> {
  const realm = `groups-${++realmCount}-${crypto.randomBytes(3).toString('hex')}`;
  await bench.server.importRealm({ realm, enabled: true, ...extra });
  return realm;
}

/** Inserts a user as a realm import does (POST /users belongs to another module). */
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

const json = async (response: Response): Promise<Record<string, unknown>> => await response.json() as Record<string, unknown>;
const post = (path: string, body: unknown): Promise<Response> => bench.api(path, { method: 'POST', body: JSON.stringify(body) });
const put = (path: string, body: unknown): Promise<Response> => bench.api(path, { method: 'PUT', body: JSON.stringify(body) });

describe('groups', () => {
  it('creates, reads, updates and deletes groups and subgroups', async () => {
    const realm = await newRealm({ roles: { realm: [{ name: 'agent' }] } });
    const { admin } = bench;
    const { id } = await admin.groups.create({ realm, name: 'sales', description: 'Sales floor', attributes: { site: ['paris'] } });
    const { id: childId } = await admin.groups.createChildGroup({ realm, id }, { name: 'inbound' });
    await admin.groups.addRealmRoleMappings({ realm, id, roles: [{ id: (await admin.roles.findOneByName({ realm, name: 'agent' }))!.id!, name: 'agent' }] });

    const group = await admin.groups.findOne({ realm, id });
    expect(group).toEqual({
      id, name: 'sales', description: 'Sales floor', path: '/sales', subGroupCount: 1, subGroups: [],
      attributes: { site: ['paris'] }, realmRoles: ['agent'], clientRoles: {},
      access: { view: true, viewMembers: true, manage: true, manageMembers: true, manageMembership: true },
    });
    expect(await admin.groups.findOne({ realm, id: childId })).toMatchObject({ name: 'inbound', path: '/sales/inbound', parentId: id, subGroupCount: 0 });

    await admin.groups.update({ realm, id }, { name: 'sales-eu', attributes: { region: ['eu'] } });
    const updated = await admin.groups.findOne({ realm, id });
    // Keycloak replaces the attributes when sent and the description always.
    expect(updated).toMatchObject({ name: 'sales-eu', path: '/sales-eu', attributes: { region: ['eu'] } });
    expect(updated!.description).toBeUndefined();
    expect(await admin.groups.findOne({ realm, id: childId })).toMatchObject({ path: '/sales-eu/inbound' });

    await admin.groups.del({ realm, id });
    expect(await admin.groups.findOne({ realm, id })).toBeNull();
    expect(await admin.groups.findOne({ realm, id: childId })).toBeNull(); // subgroups go with their parent
  });

  it('answers Keycloak errors: 409 on names, 400 on bad bodies, 404 on unknown or malformed ids', async () => {
    const realm = await newRealm();
    const { id } = await bench.admin.groups.create({ realm, name: 'support' });
    const { id: other } = await bench.admin.groups.create({ realm, name: 'billing' });
    const dup = await post(`/${realm}/groups`, { name: 'support' });
    expect(dup.status).toBe(409);
    expect(await json(dup)).toEqual({ errorMessage: "Top level group named 'support' already exists." });
    await bench.admin.groups.createChildGroup({ realm, id }, { name: 'tier1' });
    const dupChild = await post(`/${realm}/groups/${id}/children`, { name: 'tier1' });
    expect(dupChild.status).toBe(409);
    expect(await json(dupChild)).toEqual({ errorMessage: "Sibling group named 'tier1' already exists." });
    const rename = await put(`/${realm}/groups/${other}`, { name: 'support' });
    expect(rename.status).toBe(409);
    expect(await json(rename)).toEqual({ errorMessage: "Sibling group named 'support' already exists." });

    for (const body of [{}, { name: '  ' }]) {
      const response = await post(`/${realm}/groups`, body);
      expect(response.status).toBe(400);
      expect(await json(response)).toEqual({ errorMessage: 'Group name is missing' });
    }
    expect((await put(`/${realm}/groups/${id}`, { id: other, name: 'support' })).status).toBe(400);
    const typed = await post(`/${realm}/groups`, { name: 'x', attributes: 'flat' });
    expect(typed.status).toBe(400);
    expect(String((await json(typed)).errorMessage)).toContain('attributes');
    expect((await post(`/${realm}/groups`, { name: 7 })).status).toBe(400);

    for (const path of [`/groups/${crypto.randomUUID()}`, '/groups/not-a-uuid', `/groups/not-a-uuid/children`, `/groups/${crypto.randomUUID()}/members`]) {
      expect((await bench.api(`/${realm}${path}`)).status).toBe(404);
    }
    expect((await put(`/${realm}/groups/${crypto.randomUUID()}`, { name: 'x' })).status).toBe(404);
    expect((await bench.api(`/${realm}/groups/not-a-uuid`, { method: 'DELETE' })).status).toBe(404);
    const missingChild = await post(`/${realm}/groups/${id}/children`, { id: crypto.randomUUID(), name: 'x' });
    expect(missingChild.status).toBe(404);
    expect((await post(`/${realm}/groups`, { id: 'not-a-uuid', name: 'x' })).status).toBe(404);
  });

  it('lists top-level groups with subgroup counts, and search results within their hierarchy', async () => {
    const realm = await newRealm({
      groups: [
        { name: 'Emea', attributes: { region: ['eu'] }, subGroups: [{ name: 'France', subGroups: [{ name: 'Paris Sales' }] }, { name: 'Spain' }] },
        { name: 'Americas', subGroups: [{ name: 'US Sales', attributes: { region: ['us'] } }] },
        { name: 'Back office' },
      ],
    });
    const top = await bench.admin.groups.find({ realm });
    expect(top.map((g) => [g.name, g.subGroupCount, g.subGroups])).toEqual([['Americas', 1, []], ['Back office', 0, []], ['Emea', 2, []]]);
    expect(top[0]!.attributes).toBeUndefined();
    expect((await bench.admin.groups.find({ realm, first: 1, max: 1 })).map((g) => g.name)).toEqual(['Back office']);

    const found = await bench.admin.groups.find({ realm, search: 'sales' });
    expect(found.map((g) => g.name)).toEqual(['Americas', 'Emea']);
    expect(found[0]!.subGroups!.map((g) => g.path)).toEqual(['/Americas/US Sales']);
    const emea = found[1]!;
    expect(emea.subGroups!.map((g) => g.name)).toEqual(['France']); // Spain is not on the way to a match
    expect(emea.subGroups![0]!.subGroups!.map((g) => g.path)).toEqual(['/Emea/France/Paris Sales']);

    expect((await bench.admin.groups.find({ realm, search: 'sales', exact: true }))).toEqual([]);
    expect((await bench.admin.groups.find({ realm, search: 'Spain', exact: true })).map((g) => g.subGroups!.map((s) => s.name))).toEqual([['Spain']]);
    const flat = await bench.admin.groups.find({ realm, search: 'sales', populateHierarchy: false, briefRepresentation: false });
    expect(flat.map((g) => g.path)).toEqual(['/Emea/France/Paris Sales', '/Americas/US Sales']);
    expect(flat[1]!.attributes).toEqual({ region: ['us'] });

    const byAttribute = await bench.admin.groups.find({ realm, q: 'region:us' });
    expect(byAttribute.map((g) => [g.name, g.subGroups!.map((s) => s.name)])).toEqual([['Americas', ['US Sales']]]);

    expect(await bench.admin.groups.count({ realm })).toEqual({ count: 7 });
    expect(await bench.admin.groups.count({ realm, top: true })).toEqual({ count: 3 });
    expect(await bench.admin.groups.count({ realm, search: 'SALES' })).toEqual({ count: 2 });
  });

  it('lists children with search and paging, and finds a group by path', async () => {
    const realm = await newRealm({ groups: [{ name: 'site', subGroups: Array.from({ length: 12 }, (_, i) => ({ name: `team-${String(i).padStart(2, '0')}` })) }] });
    const [site] = await bench.admin.groups.find({ realm });
    const firstPage = await bench.admin.groups.listSubGroups({ realm, parentId: site!.id! });
    expect(firstPage).toHaveLength(10); // Keycloak's default page of children
    expect(firstPage[0]).toMatchObject({ name: 'team-00', path: '/site/team-00', parentId: site!.id, subGroupCount: 0, attributes: {} });
    expect((await bench.admin.groups.listSubGroups({ realm, parentId: site!.id!, first: 10, max: 10 })).map((g) => g.name)).toEqual(['team-10', 'team-11']);
    expect((await bench.admin.groups.listSubGroups({ realm, parentId: site!.id!, search: 'M-1' })).map((g) => g.name)).toEqual(['team-10', 'team-11']);

    const byPath = await bench.api(`/${realm}/group-by-path/site/team-03`);
    expect(byPath.status).toBe(200);
    expect(await json(byPath)).toMatchObject({ name: 'team-03', path: '/site/team-03', parentId: site!.id, subGroupCount: 0, realmRoles: [] });
    expect(await json(await bench.api(`/${realm}/group-by-path/site`))).toMatchObject({ id: site!.id, subGroupCount: 12 });
    expect((await bench.api(`/${realm}/group-by-path/site/team-99`)).status).toBe(404);
    expect((await bench.api(`/${realm}/group-by-path/team-03`)).status).toBe(404);
  });

  it('moves groups under another group or to the top level, refusing cycles and clashes', async () => {
    const realm = await newRealm({ groups: [{ name: 'a', subGroups: [{ name: 'b', subGroups: [{ name: 'c' }] }] }, { name: 'x', subGroups: [{ name: 'b' }] }] });
    const [a, x] = await bench.admin.groups.find({ realm });
    const [b] = await bench.admin.groups.listSubGroups({ realm, parentId: a!.id! });
    const [c] = await bench.admin.groups.listSubGroups({ realm, parentId: b!.id! });

    const clash = await post(`/${realm}/groups/${x!.id}/children`, { id: b!.id, name: 'b' });
    expect(clash.status).toBe(409);
    expect(await json(clash)).toEqual({ errorMessage: "Sibling group named 'b' already exists." });
    const cycle = await post(`/${realm}/groups/${c!.id}/children`, { id: a!.id, name: 'a' });
    expect(cycle.status).toBe(400);

    // c to the top level, then under x
    expect((await post(`/${realm}/groups`, { id: c!.id, name: 'c' })).status).toBe(204);
    expect(await bench.admin.groups.findOne({ realm, id: c!.id! })).toMatchObject({ path: '/c' });
    expect((await bench.admin.groups.find({ realm })).map((g) => g.name)).toEqual(['a', 'c', 'x']);
    await bench.admin.groups.updateChildGroup({ realm, id: x!.id! }, { id: c!.id!, name: 'c' });
    expect(await bench.admin.groups.findOne({ realm, id: c!.id! })).toMatchObject({ path: '/x/c', parentId: x!.id });
    // a top-level name clash when moving to the top
    const toTop = await post(`/${realm}/groups`, { id: (await bench.admin.groups.listSubGroups({ realm, parentId: x!.id!, search: 'b', exact: true }))[0]!.id, name: 'b' });
    expect(toTop.status).toBe(204); // no top-level 'b' yet
    const again = await post(`/${realm}/groups`, { id: b!.id, name: 'b' });
    expect(again.status).toBe(409);
    expect(await json(again)).toEqual({ errorMessage: "Top level group named 'b' already exists." });
  });

  it('lists members with paging and brief representations', async () => {
    const realm = await newRealm({ groups: [{ name: 'team' }] });
    for (const username of ['zoe', 'adam', 'mia']) await addUser(realm, { username, email: `${username}@example.com`, attributes: { desk: ['1'] }, groups: ['/team'] });
    await addUser(realm, { username: 'outsider' });
    const [team] = await bench.admin.groups.find({ realm });
    const members = await bench.admin.groups.listMembers({ realm, id: team!.id! });
    expect(members.map((u) => u.username)).toEqual(['adam', 'mia', 'zoe']);
    expect(members[0]).toMatchObject({ email: 'adam@example.com', attributes: { desk: ['1'] } });
    const brief = await bench.admin.groups.listMembers({ realm, id: team!.id!, briefRepresentation: true, first: 1, max: 1 });
    expect(brief.map((u) => u.username)).toEqual(['mia']);
    expect(brief[0]!.attributes).toBeUndefined();
  });

  it('manages the realm default groups', async () => {
    const realm = await newRealm({ groups: [{ name: 'staff', subGroups: [{ name: 'new-hires' }] }] });
    const [staff] = await bench.admin.groups.find({ realm });
    const [newHires] = await bench.admin.groups.listSubGroups({ realm, parentId: staff!.id! });
    expect(await bench.admin.realms.getDefaultGroups({ realm })).toEqual([]);
    await bench.admin.realms.addDefaultGroup({ realm, id: newHires!.id! });
    await bench.admin.realms.addDefaultGroup({ realm, id: newHires!.id! }); // idempotent
    expect(await bench.admin.realms.getDefaultGroups({ realm })).toEqual([{ id: newHires!.id, name: 'new-hires', path: '/staff/new-hires', parentId: staff!.id, subGroups: [] }]);
    expect((await bench.api(`/${realm}/default-groups/${crypto.randomUUID()}`, { method: 'PUT' })).status).toBe(404);
    expect((await bench.api(`/${realm}/default-groups/nope`, { method: 'DELETE' })).status).toBe(404);
    await bench.admin.realms.removeDefaultGroup({ realm, id: newHires!.id! });
    expect(await bench.admin.realms.getDefaultGroups({ realm })).toEqual([]);
  });
});

describe('group permissions', () => {
  it('lets view-users read but not write, and refuses admins of other realms', async () => {
    const realm = await newRealm({ groups: [{ name: 'ops' }] });
    const [ops] = await bench.admin.groups.find({ realm });
    const viewer = await realmAdminOf(realm, ['view-users']);
    expect((await viewer.groups.find({ realm })).map((g) => [g.name, g.access])).toEqual([
      ['ops', { view: true, viewMembers: true, manage: false, manageMembers: false, manageMembership: false }],
    ]);
    expect(await viewer.groups.findOne({ realm, id: ops!.id! })).toMatchObject({ name: 'ops' });
    await expect(viewer.groups.create({ realm, name: 'new' })).rejects.toMatchObject({ response: { status: 403 } });
    await expect(viewer.groups.update({ realm, id: ops!.id! }, { name: 'renamed' })).rejects.toMatchObject({ response: { status: 403 } });
    await expect(viewer.groups.del({ realm, id: ops!.id! })).rejects.toMatchObject({ response: { status: 403 } });
    await expect(viewer.groups.createChildGroup({ realm, id: ops!.id! }, { name: 'child' })).rejects.toMatchObject({ response: { status: 403 } });
    await expect(viewer.realms.addDefaultGroup({ realm, id: ops!.id! })).rejects.toMatchObject({ response: { status: 403 } });

    // query-groups lists nothing without view-users, as Keycloak without fine-grained permissions
    const querier = await realmAdminOf(realm, ['query-groups']);
    expect(await querier.groups.find({ realm })).toEqual([]);
    expect(await querier.groups.count({ realm })).toEqual({ count: 1 });
    await expect(querier.groups.findOne({ realm, id: ops!.id! })).rejects.toMatchObject({ response: { status: 403 } });

    const manager = await realmAdminOf(realm, ['manage-users']);
    const { id } = await manager.groups.create({ realm, name: 'made-by-manager' });
    expect(await manager.groups.findOne({ realm, id })).toMatchObject({ name: 'made-by-manager' });

    const outsider = await realmAdminOf(await newRealm(), ['realm-admin']);
    await expect(outsider.groups.find({ realm })).rejects.toMatchObject({ response: { status: 403 } });
    await expect(outsider.groups.findOne({ realm, id: ops!.id! })).rejects.toMatchObject({ response: { status: 403 } });
    await expect(outsider.groups.create({ realm, name: 'intruders' })).rejects.toMatchObject({ response: { status: 403 } });
    const token = await outsider.getAccessToken();
    expect((await bench.api(`/${realm}/group-by-path/ops`, { token })).status).toBe(403);
    expect((await bench.api(`/${realm}/default-groups`, { token })).status).toBe(403);
  });
});

describe('default groups and new users', () => {
  it('puts a user created through the admin API into the default groups', async () => {
    const realm = await newRealm({ groups: [{ name: 'everyone' }, { name: 'other' }] });
    const groups = await bench.admin.groups.find({ realm });
    const everyone = groups.find((g) => g.name === 'everyone')!;
    await bench.admin.realms.addDefaultGroup({ realm, id: everyone.id! });
    const { id } = await bench.admin.users.create({ realm, username: 'newcomer', enabled: true });
    expect((await bench.admin.groups.listMembers({ realm, id: everyone.id! })).map((u) => u.id)).toEqual([id]);
    expect(await bench.admin.groups.listMembers({ realm, id: groups.find((g) => g.name === 'other')!.id! })).toEqual([]);
  });
});
