// LDAP sync against a real slapd through the Admin API (the official admin client's
// userStorageProvider calls): full and changed-users sync with Keycloak's result counts, removal
// or unlinking of users whose entry is gone, remove-imported-users and unlink-users, the group
// mapper's sync, a directory that is down or hung, periodic sync, a 3,000-entry sync in pages of
// 500, and (PostgreSQL only) one periodic sync across two instances on one database.
import crypto from 'node:crypto';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { startAdminBench, type AdminBench } from '../support/admin.ts';
import { postgresForTests } from '../support/postgres.ts';
import { createTestDatabase, startTestServer, type TestDatabase, type TestServer } from '../support/server.ts';
import { groupDn, groupLdif, ldifLine, ouLdif, personDn, personLdif, slapdAvailable, startSlapd, type Slapd } from '../support/slapd.ts';

const USER_STORAGE = 'org.keycloak.storage.UserStorageProvider';
const LDAP_MAPPER = 'org.keycloak.storage.ldap.mappers.LDAPStorageMapper';

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Waits for the clock's next second: entries written before then predate a sync started after. */
async function nextSecond(): Promise<void> {
  const now = Math.floor(Date.now() / 1000);
  while (Math.floor(Date.now() / 1000) <= now) await sleep(20);
}

async function eventually<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

const person = (uid: string, ou = 'people', mail = `${uid}@example.org`): string =>
  personLdif({ uid, cn: `${uid} Person`, sn: 'Person', mail, password: `${uid}-Pass-1`, ou });

function providerConfig(directory: Slapd, config: Record<string, string[]>): Record<string, string[]> {
  return {
    vendor: ['other'], connectionUrl: [directory.url], usersDn: [directory.peopleDn], bindDn: [directory.adminDn],
    bindCredential: [directory.adminPassword], editMode: ['READ_ONLY'], usernameLDAPAttribute: ['uid'], rdnLDAPAttribute: ['uid'],
    uuidLDAPAttribute: ['entryUUID'], userObjectClasses: ['inetOrgPerson, organizationalPerson'], searchScope: ['1'],
    enabled: ['true'], priority: ['0'], pagination: ['true'], batchSizeForSync: ['1000'], fullSyncPeriod: ['-1'], changedSyncPeriod: ['-1'],
    connectionTimeout: ['2000'], readTimeout: ['2000'], ...config,
  };
}

describe.skipIf(!slapdAvailable('ldap sync'))('LDAP sync', () => {
  let bench: AdminBench;
  let slapd: Slapd;
  const realm = `sync-${crypto.randomBytes(4).toString('hex')}`;
  let realmId: string;
  let providerId: string;

  const sync = (action: 'triggerFullSync' | 'triggerChangedUsersSync', id = providerId) =>
    bench.admin.userStorageProvider.sync({ realm, id, action });
  const findUser = async (username: string) => (await bench.admin.users.find({ realm, username, exact: true }))[0];
  /** The provider's users, by username. */
  const linkedUsernames = async (id = providerId): Promise<string[]> => {
    const rows = await bench.server.store.db.selectFrom('users').select('username').where('realm_id', '=', realmId)
      .where('federation_link', '=', id).orderBy('username').execute();
    return rows.map((r) => r.username);
  };
  const componentConfig = async (id = providerId): Promise<Record<string, string[]>> =>
    (await bench.admin.components.findOne({ realm, id }))!.config as Record<string, string[]>;
  const updateProvider = async (config: Record<string, string[]>): Promise<void> => {
    const current = (await bench.admin.components.findOne({ realm, id: providerId }))!;
    await bench.admin.components.update({ realm, id: providerId }, { ...current, config: { ...current.config, ...config } });
  };

  beforeAll(async () => {
    [slapd, bench] = await Promise.all([startSlapd({ tls: false }), startAdminBench()]);
    await bench.admin.realms.create({ realm, enabled: true });
    realmId = (await bench.admin.realms.findOne({ realm }))!.id!;
    ({ id: providerId } = await bench.admin.components.create({
      realm, name: 'corp-ldap', providerId: 'ldap', providerType: USER_STORAGE, parentId: realmId, config: providerConfig(slapd, {}),
    }));
    // A local user holding the name of an LDAP entry: that entry fails every sync (Keycloak's
    // "already exists in Keycloak database but is not linked").
    await bench.admin.users.create({ realm, username: 'taken', enabled: true });
    await slapd.add(['p1', 'p2', 'p3', 'p4', 'p5', 'taken'].map((uid) => person(uid)));
    await nextSecond();
  }, 60_000);

  afterAll(async () => {
    await bench?.stop();
    await slapd?.destroy();
  });

  it('imports every entry with a full sync, with Keycloak\'s counts, and refreshes them at the next one', async () => {
    const first = await sync('triggerFullSync');
    expect(first).toEqual({
      ignored: false, added: 5, updated: 0, removed: 0, failed: 1,
      status: '5 imported users, 0 updated users, 1 users failed sync! See server log for more details',
    });
    expect(await linkedUsernames()).toEqual(['p1', 'p2', 'p3', 'p4', 'p5']);
    const [entry] = await slapd.search('(uid=p1)', ['entryUUID']);
    const p1 = (await findUser('p1'))!;
    expect(p1).toMatchObject({ username: 'p1', email: 'p1@example.org', firstName: 'p1 Person', lastName: 'Person', federationLink: providerId });
    expect(p1.attributes).toMatchObject({ LDAP_ID: [entry!.entryUUID], LDAP_ENTRY_DN: [personDn('p1')] });
    // The local user keeps its own identity.
    expect((await findUser('taken'))!.federationLink).toBeUndefined();
    // lastSync in the component config, as Keycloak keeps it (epoch seconds).
    const lastSync = Number((await componentConfig()).lastSync?.[0]);
    expect(lastSync).toBeGreaterThan(Date.now() / 1000 - 60);

    expect(await sync('triggerFullSync')).toMatchObject({ ignored: false, added: 0, updated: 5, removed: 0, failed: 1 });
  });

  it('syncs only modified and new entries with a changed-users sync', async () => {
    await slapd.modify([ldifLine('dn', personDn('p1')), 'changetype: modify', 'replace: mail', 'mail: p1.new@example.org'].join('\n'));
    await slapd.add(person('p6'));
    await nextSecond();
    const result = await sync('triggerChangedUsersSync');
    expect(result).toEqual({ ignored: false, added: 1, updated: 1, removed: 0, failed: 0, status: '1 imported users, 1 updated users' });
    expect((await findUser('p1'))!.email).toBe('p1.new@example.org');
    expect(await findUser('p6')).toMatchObject({ federationLink: providerId, email: 'p6@example.org' });
    // Nothing changed since: nothing to do.
    expect(await sync('triggerChangedUsersSync')).toMatchObject({ added: 0, updated: 0, removed: 0, failed: 0 });
  });

  it('removes the users whose entry is gone at a full sync, or unlinks them when removeMissingUsers is false', async () => {
    await slapd.delete(personDn('p2'));
    const removed = await sync('triggerFullSync');
    expect(removed).toMatchObject({ added: 0, updated: 5, removed: 1, failed: 1 });
    expect(removed.status).toBe('0 imported users, 5 updated users, 1 removed users, 1 users failed sync! See server log for more details');
    expect(await findUser('p2')).toBeUndefined();

    await updateProvider({ 'cloakroom.removeMissingUsers': ['false'] });
    await slapd.delete(personDn('p3'));
    expect(await sync('triggerFullSync')).toMatchObject({ added: 0, updated: 4, removed: 1, failed: 1 });
    const p3 = (await findUser('p3'))!;
    expect(p3.federationLink).toBeUndefined();
    expect(p3.attributes?.LDAP_ID).toBeUndefined();
    expect(p3.attributes?.LDAP_ENTRY_DN).toBeUndefined();
    expect(await linkedUsernames()).toEqual(['p1', 'p4', 'p5', 'p6']);
  });

  it('removes the imported users, or unlinks them, on demand', async () => {
    await bench.admin.userStorageProvider.removeImportedUsers({ realm, id: providerId });
    expect(await linkedUsernames()).toEqual([]);
    expect(await findUser('p1')).toBeUndefined();
    // Local users stay (p3 was unlinked above).
    expect(await findUser('p3')).toBeDefined();
    expect(await findUser('taken')).toBeDefined();

    expect(await sync('triggerFullSync')).toMatchObject({ added: 4, updated: 0, removed: 0, failed: 1 });
    expect(await linkedUsernames()).toEqual(['p1', 'p4', 'p5', 'p6']);

    await bench.admin.userStorageProvider.unlinkUsers({ realm, id: providerId });
    expect(await linkedUsernames()).toEqual([]);
    const p1 = (await findUser('p1'))!;
    expect(p1.federationLink).toBeUndefined();
    // Keycloak's unlinkUsers clears the link only.
    expect(p1.attributes?.LDAP_ID).toHaveLength(1);
    // Now local users hold the entries' names: every entry fails, as in Keycloak.
    expect(await sync('triggerFullSync')).toMatchObject({ added: 0, updated: 0, removed: 0, failed: 5 });

    // Back to a clean state for the next tests.
    for (const username of ['p1', 'p3', 'p4', 'p5', 'p6']) await bench.admin.users.del({ realm, id: (await findUser(username))!.id! });
    expect(await sync('triggerFullSync')).toMatchObject({ added: 4, failed: 1 });
  });

  it('answers Keycloak\'s errors and ignores disabled providers', async () => {
    const post = (path: string) => bench.api(`/${realm}/user-storage/${path}`, { method: 'POST' });
    const unknown = await post(`${crypto.randomUUID()}/sync?action=triggerFullSync`);
    expect(unknown.status).toBe(404);
    expect(await unknown.json()).toEqual({ errorMessage: 'Could not find component' });
    const [mapper] = await bench.admin.components.find({ realm, parent: providerId, type: LDAP_MAPPER });
    expect((await post(`${mapper!.id}/sync?action=triggerFullSync`)).status).toBe(404);
    expect((await post(`${mapper!.id}/remove-imported-users`)).status).toBe(404);
    const missing = await post(`${providerId}/sync`);
    expect(missing.status).toBe(400);
    expect(await missing.json()).toEqual({ errorMessage: 'Missing action' });
    const wrong = await post(`${providerId}/sync?action=everything`);
    expect(wrong.status).toBe(400);
    expect(await wrong.json()).toEqual({ errorMessage: 'Unknown action: everything' });
    expect(await bench.admin.userStorageProvider.name({ realm, id: providerId })).toEqual({ id: providerId, name: 'corp-ldap' });

    // Keycloak's UserStorageProviderResource wants manage-users.
    const viewer = await bench.realmAdmin(realm, ['view-users']);
    await expect(viewer.userStorageProvider.sync({ realm, id: providerId, action: 'triggerFullSync' })).rejects.toMatchObject({ response: { status: 403 } });
    const manager = await bench.realmAdmin(realm, ['manage-users']);
    expect(await manager.userStorageProvider.sync({ realm, id: providerId, action: 'triggerChangedUsersSync' })).toMatchObject({ ignored: false });

    await updateProvider({ enabled: ['false'] });
    expect(await sync('triggerFullSync')).toEqual({
      ignored: true, added: 0, updated: 0, removed: 0, failed: 0, status: "Synchronization ignored as it's already in progress",
    });
    await updateProvider({ enabled: ['true'] });
  });

  it('answers an error, changes nothing and stays up when the directory is down or hung, and syncs again once it is back', async () => {
    const before = await linkedUsernames();
    const lastSync = (await componentConfig()).lastSync;
    const post = () => bench.api(`/${realm}/user-storage/${providerId}/sync?action=triggerFullSync`, { method: 'POST' });

    await slapd.stop();
    try {
      const down = await post();
      expect(down.status).toBe(500);
      expect(await down.json()).toMatchObject({ error: 'unknown_error', error_description: expect.stringContaining('LDAP sync failed') });
      expect((await fetch(`${bench.server.url}/health/ready`)).status).toBe(200);
      expect(await linkedUsernames()).toEqual(before);
      expect((await componentConfig()).lastSync).toEqual(lastSync);
    } finally {
      await slapd.start();
    }

    slapd.pause();
    try {
      // Connections open but nothing answers: the read timeout (2 s) ends it.
      const hung = await post();
      expect(hung.status).toBe(500);
      expect(await linkedUsernames()).toEqual(before);
    } finally {
      slapd.resume();
    }

    expect(await sync('triggerFullSync')).toMatchObject({ ignored: false, updated: 4, failed: 1 });
  });

  it('syncs the group mapper\'s LDAP groups into local groups under its path', async () => {
    await slapd.add([
      groupLdif({ cn: 'team-b-sub', members: [personDn('p4')] }),
      groupLdif({ cn: 'team-a', members: [personDn('p1')], description: 'Team A' }),
      groupLdif({ cn: 'team-b', members: [personDn('p5'), groupDn('team-b-sub')] }),
    ]);
    await bench.admin.groups.create({ realm, name: 'ldap' });
    const { id: mapperId } = await bench.admin.components.create({
      realm, name: 'groups', providerId: 'group-ldap-mapper', providerType: LDAP_MAPPER, parentId: providerId,
      config: {
        'groups.dn': [slapd.groupsDn], 'group.name.ldap.attribute': ['cn'], 'group.object.classes': ['groupOfNames'],
        'preserve.group.inheritance': ['true'], 'membership.ldap.attribute': ['member'], 'membership.attribute.type': ['DN'],
        'membership.user.ldap.attribute': ['uid'], mode: ['READ_ONLY'], 'user.roles.retrieve.strategy': ['LOAD_GROUPS_BY_MEMBER_ATTRIBUTE'],
        'groups.path': ['/ldap'], 'mapped.group.attributes': ['description'], 'drop.non.existing.groups.during.sync': ['false'],
      },
    });
    const mappersSync = (direction: 'fedToKeycloak' | 'keycloakToFed') =>
      bench.admin.userStorageProvider.mappersSync({ realm, parentId: providerId, id: mapperId, direction });

    expect(await mappersSync('fedToKeycloak')).toEqual({
      ignored: false, added: 3, updated: 0, removed: 0, failed: 0, status: '3 imported groups, 0 updated groups, 0 removed groups',
    });
    const sub = await bench.api(`/${realm}/group-by-path/ldap/team-b/team-b-sub`).then((r) => r.json());
    expect(sub).toMatchObject({ name: 'team-b-sub', path: '/ldap/team-b/team-b-sub' });
    const teamA = await bench.api(`/${realm}/group-by-path/ldap/team-a`).then((r) => r.json()) as { attributes?: Record<string, string[]> };
    expect(teamA.attributes).toEqual({ description: ['Team A'] });
    expect(await mappersSync('fedToKeycloak')).toMatchObject({ added: 0, updated: 3, removed: 0 });

    // Local groups under the path that LDAP does not have go when the mapper says so.
    const ldapGroup = await bench.api(`/${realm}/group-by-path/ldap`).then((r) => r.json()) as { id: string };
    await bench.admin.groups.createChildGroup({ realm, id: ldapGroup.id }, { name: 'stray' });
    const mapper = (await bench.admin.components.findOne({ realm, id: mapperId }))!;
    await bench.admin.components.update({ realm, id: mapperId }, { ...mapper, config: { ...mapper.config, 'drop.non.existing.groups.during.sync': ['true'] } });
    expect(await mappersSync('fedToKeycloak')).toMatchObject({ added: 0, updated: 3, removed: 1 });
    expect((await bench.api(`/${realm}/group-by-path/ldap/stray`)).status).toBe(404);
    expect((await bench.api(`/${realm}/group-by-path/ldap/team-a`)).status).toBe(200);

    // READ_ONLY mappers write nothing to LDAP: Keycloak's empty result.
    expect(await mappersSync('keycloakToFed')).toEqual({
      ignored: false, added: 0, updated: 0, removed: 0, failed: 0, status: '0 groups imported to LDAP, 0 groups updated to LDAP, 0 groups removed from LDAP',
    });
    const bad = await bench.api(`/${realm}/user-storage/${providerId}/mappers/${mapperId}/sync?direction=sideways`, { method: 'POST' });
    expect(bad.status).toBe(400);
    expect(await bad.json()).toEqual({ errorMessage: 'Unknown direction: sideways' });
    const orphan = await bench.api(`/${realm}/user-storage/${providerId}/mappers/${crypto.randomUUID()}/sync?direction=fedToKeycloak`, { method: 'POST' });
    expect(orphan.status).toBe(404);

    // A user sync runs the mapper sync first and gives the users their LDAP groups.
    expect(await sync('triggerFullSync')).toMatchObject({ updated: 4, failed: 1 });
    const p4 = (await findUser('p4'))!;
    expect((await bench.admin.users.listGroups({ realm, id: p4.id! })).map((g) => g.path)).toEqual(['/ldap/team-b/team-b-sub']);
  });

  it('runs changed-users syncs by itself every changedSyncPeriod seconds', async () => {
    await updateProvider({ changedSyncPeriod: ['1'] });
    try {
      await slapd.add(person('p7'));
      const p7 = await eventually('the periodic sync to import p7', () => findUser('p7'));
      expect(p7.federationLink).toBe(providerId);
    } finally {
      await updateProvider({ changedSyncPeriod: ['-1'] });
    }
  });

  it('imports only one of two new entries sharing an e-mail address (the other fails, as in Keycloak)', async () => {
    await slapd.add([ouLdif('dup'), person('dup1', 'dup', 'same@example.org'), person('dup2', 'dup', 'Same@Example.org')]);
    const dupRealm = `${realm}-dup`;
    await bench.admin.realms.create({ realm: dupRealm, enabled: true });
    const dupRealmId = (await bench.admin.realms.findOne({ realm: dupRealm }))!.id!;
    const { id } = await bench.admin.components.create({
      realm: dupRealm, name: 'dup', providerId: 'ldap', providerType: USER_STORAGE, parentId: dupRealmId,
      config: providerConfig(slapd, { usersDn: [`ou=dup,${slapd.baseDn}`] }),
    });
    expect(await bench.admin.userStorageProvider.sync({ realm: dupRealm, id, action: 'triggerFullSync' })).toMatchObject({ added: 1, failed: 1 });
    expect(await bench.admin.users.find({ realm: dupRealm, email: 'same@example.org' })).toHaveLength(1);
  });

  it('imports 3,000 entries in pages of 500', async () => {
    await slapd.add(ouLdif('bulk'));
    const entries = Array.from({ length: 3000 }, (_, i) => person(`bulk${String(i).padStart(5, '0')}`, 'bulk'));
    await slapd.bulkAdd(entries);
    const bulkRealm = `${realm}-bulk`;
    await bench.admin.realms.create({ realm: bulkRealm, enabled: true });
    const bulkRealmId = (await bench.admin.realms.findOne({ realm: bulkRealm }))!.id!;
    const { id } = await bench.admin.components.create({
      realm: bulkRealm, name: 'bulk', providerId: 'ldap', providerType: USER_STORAGE, parentId: bulkRealmId,
      config: providerConfig(slapd, { usersDn: [`ou=bulk,${slapd.baseDn}`], batchSizeForSync: ['500'] }),
    });
    const result = await bench.admin.userStorageProvider.sync({ realm: bulkRealm, id, action: 'triggerFullSync' });
    expect(result).toEqual({ ignored: false, added: 3000, updated: 0, removed: 0, failed: 0, status: '3000 imported users, 0 updated users' });
    expect(await bench.admin.users.count({ realm: bulkRealm })).toBe(3000);
  }, 300_000);
});

const postgresAdmin = await postgresForTests('the LDAP periodic sync across instances');

describe.skipIf(!postgresAdmin || !slapdAvailable('ldap periodic sync across instances'))('LDAP periodic sync on two instances', () => {
  let database: TestDatabase;
  let bench: AdminBench;
  let second: TestServer;
  let slapd: Slapd;

  beforeAll(async () => {
    database = await createTestDatabase(postgresAdmin);
    const env = { CLOAKROOM_MASTER_KEY: crypto.randomBytes(32).toString('base64') };
    [slapd, bench] = await Promise.all([startSlapd({ tls: false }), startAdminBench({ database, keepDatabase: true, env })]);
    second = await startTestServer({ database, keepDatabase: true, env });
  }, 60_000);

  afterAll(async () => {
    await bench?.stop();
    await second?.stop();
    await database?.drop();
    await slapd?.destroy();
  });

  /** cloakroom_ldap_periodic_syncs_total of one instance, summed over labels matching `mode`. */
  async function periodicRuns(server: TestServer, mode: string): Promise<number> {
    const text = await (await fetch(`${server.url}/metrics`)).text();
    let total = 0;
    for (const line of text.split('\n')) {
      if (line.startsWith('cloakroom_ldap_periodic_syncs_total{') && line.includes(`mode="${mode}"`) && line.includes('outcome="success"')) {
        total += Number(line.slice(line.lastIndexOf(' ') + 1));
      }
    }
    return total;
  }

  it('runs a due periodic full sync on exactly one instance', async () => {
    await slapd.add(['q1', 'q2', 'q3'].map((uid) => person(uid)));
    const realm = `periodic-${crypto.randomBytes(4).toString('hex')}`;
    await bench.admin.realms.create({ realm, enabled: true });
    const realmId = (await bench.admin.realms.findOne({ realm }))!.id!;
    const { id } = await bench.admin.components.create({
      realm, name: 'ldap', providerId: 'ldap', providerType: USER_STORAGE, parentId: realmId,
      config: providerConfig(slapd, { fullSyncPeriod: ['3600'] }),
    });
    const config = async () => (await bench.admin.components.findOne({ realm, id }))!.config as Record<string, string[]>;
    // Both instances see the new provider (a realm change) and find its first full sync due.
    const stamp = await eventually('the periodic full sync', async () => (await config())['cloakroom.lastFullSync']?.[0]);
    expect(Number(stamp)).toBeGreaterThan(0);
    expect((await bench.admin.users.find({ realm })).map((u) => u.username).sort()).toEqual(['q1', 'q2', 'q3']);
    // Give the other instance time for a few scans: it must find the sync done, not run it again.
    await sleep(3000);
    const runs = await periodicRuns(bench.server, 'full') + await periodicRuns(second, 'full');
    expect(runs).toBe(1);
    expect((await config())['cloakroom.lastFullSync']?.[0]).toBe(stamp);
  }, 60_000);
});
