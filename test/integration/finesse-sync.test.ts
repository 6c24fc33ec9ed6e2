// Provisioning from Cisco Finesse against the HTTPS stand-in: a realm and a `finesse` identity
// provider with admin credentials configured through the official admin client, then
// POST .../identity-provider/instances/{alias}/finesse/sync: users and team groups created with
// memberships and roles, a second sync after a team change and a team rename, a user added in
// Finesse, a provisioned user signing in without being re-created, Finesse down or broken (error
// answers, nothing changed), missing admin credentials, wrong provider, permissions; periodic sync
// (syncPeriod) and, on PostgreSQL, one periodic sync per period across two instances.
import crypto from 'node:crypto';

import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { closeFinesseAgents, setFinesseLogger } from '../../src/federation/finesse/client.ts';
import { startAdminBench, type AdminBench } from '../support/admin.ts';
import { closedPort, startFinesse, type FinesseStandIn, type FinesseStandInUser } from '../support/finesse.ts';
import { postgresForTests } from '../support/postgres.ts';
import { createTestDatabase, postForm, startTestServer, type TestDatabase, type TestServer } from '../support/server.ts';

const CLIENT = 'desk';
const TEAMS = '/finesse-teams';

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

async function eventually<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

const agent = (n: number, team: { id: string; name: string }): FinesseStandInUser => ({
  loginId: `100${n}`, loginName: `Agent${n}`, password: `Agent-Pass-${n}`, firstName: `First${n}`, lastName: `Last${n}`,
  extension: `50${n}`, roles: ['Agent'], teamId: team.id, teamName: team.name,
});

type SyncAnswer = { status: number; body: Record<string, unknown> };

describe('provisioning from Cisco Finesse', () => {
  let bench: AdminBench;
  let finesse: FinesseStandIn;
  const realm = `fsync-${crypto.randomBytes(4).toString('hex')}`;
  const SALES = { id: '500', name: 'Sales' };
  const SUPPORT = { id: '501', name: 'Support' };
  const A1 = agent(1, SALES);
  const A2 = agent(2, SUPPORT);
  const BOSS: FinesseStandInUser = {
    loginId: '2001', loginName: 'Boss', password: 'Boss-Pass-1', firstName: 'Big', lastName: 'Boss', extension: '5900',
    roles: ['Agent', 'Supervisor'], teamId: SALES.id, teamName: SALES.name, supervisedTeams: [SALES, SUPPORT],
  };

  const sync = async (alias = 'finesse', token?: string): Promise<SyncAnswer> => {
    const res = await bench.api(`/${realm}/identity-provider/instances/${alias}/finesse/sync`, { method: 'POST', ...(token ? { token } : {}) });
    const text = await res.text();
    return { status: res.status, body: text ? JSON.parse(text) as Record<string, unknown> : {} };
  };
  const findUser = async (username: string, realmName = realm) => (await bench.admin.users.find({ realm: realmName, username, exact: true }))[0];
  const groupsOf = async (id: string): Promise<string[]> => (await bench.admin.users.listGroups({ realm, id })).map((g) => g.path!).sort();
  const realmRolesOf = async (id: string): Promise<string[]> => (await bench.admin.users.listRealmRoleMappings({ realm, id })).map((r) => r.name!).sort();
  const teamGroups = async () => {
    const parent = (await bench.admin.groups.find({ realm, search: 'finesse-teams', exact: true }))[0]!;
    const children = await bench.admin.groups.listSubGroups({ realm, parentId: parent.id!, max: 100 });
    return children.map((g) => ({ id: g.id!, name: g.name!, teamId: g.attributes?.['finesse.teamId']?.[0] })).sort((a, b) => a.name.localeCompare(b.name));
  };
  const userCount = async (): Promise<number> => Number(await bench.admin.users.count({ realm }));

  beforeAll(async () => {
    setFinesseLogger({ warn: () => {} });
    [finesse, bench] = await Promise.all([startFinesse(), startAdminBench()]);
    finesse.addTeam(SALES);
    finesse.addTeam(SUPPORT);
    for (const user of [A1, A2, BOSS]) finesse.addUser(user);
    await bench.admin.realms.create({ realm, enabled: true });
    await bench.admin.clients.create({ realm, clientId: CLIENT, publicClient: true, directAccessGrantsEnabled: true, standardFlowEnabled: false });
    await bench.admin.identityProviders.create({
      realm, alias: 'finesse', providerId: 'finesse', enabled: true,
      config: {
        finesseUrls: finesse.url, caBundle: finesse.caPem, connectTimeout: '2000', readTimeout: '3000',
        finesseAdminUsername: finesse.adminUsername, finesseAdminPassword: finesse.adminPassword,
      },
    });
  });

  afterAll(async () => {
    await bench?.stop();
    await finesse?.stop();
    await closeFinesseAgents();
  });

  it('creates every user and one group per team, with memberships and roles', async () => {
    const answer = await sync();
    expect(answer).toEqual({
      status: 200,
      body: { ignored: false, added: 3, updated: 0, failed: 0, teams: 2, status: '3 imported users, 0 updated users, 2 teams' },
    });
    // Read with the admin credentials only.
    expect(finesse.requests.filter((r) => r.path === '/finesse/api/Users' || r.path === '/finesse/api/Teams'))
      .toEqual([expect.objectContaining({ auth: 'basic', username: finesse.adminUsername, status: 200 }), expect.objectContaining({ auth: 'basic', username: finesse.adminUsername, status: 200 })]);
    expect(finesse.requests.some((r) => r.path.startsWith('/finesse/api/User/'))).toBe(false);

    expect(await teamGroups()).toEqual([
      { id: expect.any(String), name: 'Sales', teamId: '500' },
      { id: expect.any(String), name: 'Support', teamId: '501' },
    ]);
    const a1 = (await findUser('agent1'))!;
    expect(a1).toMatchObject({ firstName: 'First1', lastName: 'Last1', enabled: true });
    expect(a1.attributes).toMatchObject({ 'finesse.loginId': ['1001'], 'finesse.loginName': ['Agent1'], 'finesse.extension': ['501'], 'finesse.teamId': ['500'] });
    expect(await bench.admin.users.listFederatedIdentities({ realm, id: a1.id! })).toEqual([{ identityProvider: 'finesse', userId: '1001', userName: 'Agent1' }]);
    expect(await groupsOf(a1.id!)).toEqual([`${TEAMS}/Sales`]);
    expect(await realmRolesOf(a1.id!)).toContain('agent');
    expect(await realmRolesOf(a1.id!)).not.toContain('supervisor');
    // No password is stored for provisioned users.
    expect(await bench.admin.users.getCredentials({ realm, id: a1.id! })).toEqual([]);

    const a2 = (await findUser('agent2'))!;
    expect(await groupsOf(a2.id!)).toEqual([`${TEAMS}/Support`]);
    const boss = (await findUser('boss'))!;
    expect(await groupsOf(boss.id!)).toEqual([`${TEAMS}/Sales`, `${TEAMS}/Support`]);
    expect(await realmRolesOf(boss.id!)).toEqual(expect.arrayContaining(['agent', 'supervisor']));
  });

  it('moves memberships, renames a renamed team\'s group and counts updates on the next sync', async () => {
    const before = await teamGroups();
    const salesId = before.find((g) => g.teamId === '500')!.id;
    const a1Id = (await findUser('agent1'))!.id!;
    // Agent1 moves to Support; team 500 is renamed.
    Object.assign(finesse.users.get('1001')!, { teamId: SUPPORT.id, teamName: SUPPORT.name });
    finesse.teams.set('500', { id: '500', name: 'Inside Sales' });
    Object.assign(finesse.users.get('2001')!, { teamName: 'Inside Sales', supervisedTeams: [{ id: '500', name: 'Inside Sales' }, SUPPORT] });

    expect(await sync()).toEqual({
      status: 200,
      body: { ignored: false, added: 0, updated: 3, failed: 0, teams: 2, status: '0 imported users, 3 updated users, 2 teams' },
    });
    expect(await teamGroups()).toEqual([
      { id: salesId, name: 'Inside Sales', teamId: '500' },
      { id: before.find((g) => g.teamId === '501')!.id, name: 'Support', teamId: '501' },
    ]);
    expect((await findUser('agent1'))!.id).toBe(a1Id);
    expect(await groupsOf(a1Id)).toEqual([`${TEAMS}/Support`]);
    expect((await findUser('agent1'))!.attributes).toMatchObject({ 'finesse.teamId': ['501'] });
    expect(await groupsOf((await findUser('boss'))!.id!)).toEqual([`${TEAMS}/Inside Sales`, `${TEAMS}/Support`]);
  });

  it('keeps groups apart when two teams swap names', async () => {
    const before = await teamGroups();
    finesse.teams.set('500', { id: '500', name: 'Support' });
    finesse.teams.set('501', { id: '501', name: 'Inside Sales' });
    for (const user of finesse.users.values()) {
      if (user.teamId === '500') user.teamName = 'Support';
      else if (user.teamId === '501') user.teamName = 'Inside Sales';
      user.supervisedTeams = user.supervisedTeams?.map((t) => ({ id: t.id, name: t.id === '500' ? 'Support' : 'Inside Sales' }));
    }
    expect(await sync()).toMatchObject({ status: 200, body: { added: 0, updated: 3, failed: 0, teams: 2 } });
    expect(await teamGroups()).toEqual([
      { id: before.find((g) => g.teamId === '501')!.id, name: 'Inside Sales', teamId: '501' },
      { id: before.find((g) => g.teamId === '500')!.id, name: 'Support', teamId: '500' },
    ]);
    // Agent1 (team 501) stays in its team's group, now named Inside Sales.
    expect(await groupsOf((await findUser('agent1'))!.id!)).toEqual([`${TEAMS}/Inside Sales`]);
    // Back to the earlier names for the tests below.
    finesse.teams.set('500', { id: '500', name: 'Inside Sales' });
    finesse.teams.set('501', { id: '501', name: 'Support' });
    for (const user of finesse.users.values()) {
      if (user.teamId === '500') user.teamName = 'Inside Sales';
      else if (user.teamId === '501') user.teamName = 'Support';
      user.supervisedTeams = user.supervisedTeams?.map((t) => ({ id: t.id, name: t.id === '500' ? 'Inside Sales' : 'Support' }));
    }
    expect(await sync()).toMatchObject({ status: 200, body: { updated: 3, failed: 0 } });
  });

  it('adds a user added in Finesse at the next sync; a user whose name a local user holds fails, the sync goes on', async () => {
    finesse.addUser(agent(4, SUPPORT));
    await bench.admin.users.create({ realm, username: 'agent5', enabled: true });
    finesse.addUser(agent(5, SUPPORT));
    expect(await sync()).toEqual({
      status: 200,
      body: {
        ignored: false, added: 1, updated: 3, failed: 1, teams: 2,
        status: '1 imported users, 3 updated users, 2 teams, 1 users failed sync! See server log for more details',
      },
    });
    const a4 = (await findUser('agent4'))!;
    expect(await groupsOf(a4.id!)).toEqual([`${TEAMS}/Support`]);
    // The local agent5 is not taken over.
    const local = (await findUser('agent5'))!;
    expect(await bench.admin.users.listFederatedIdentities({ realm, id: local.id! })).toEqual([]);
    expect(await groupsOf(local.id!)).toEqual([]);
    finesse.users.delete('1005');
  });

  it('lets a provisioned user sign in with the password grant without creating it again', async () => {
    const before = (await findUser('agent4'))!;
    const count = await userCount();
    const res = await postForm(`${bench.server.url}/realms/${realm}/protocol/openid-connect/token`, {
      grant_type: 'password', client_id: CLIENT, username: 'Agent4', password: 'Agent-Pass-4',
    });
    expect(res.status).toBe(200);
    expect(finesse.requests).toContainEqual(expect.objectContaining({ path: expect.stringMatching(/^\/finesse\/api\/User\//), auth: 'basic', status: 200 }));
    expect((await findUser('agent4'))!.id).toBe(before.id);
    expect(await userCount()).toBe(count);
  });

  it('answers 503 when Finesse is down and 502 when it answers garbage, changing nothing', async () => {
    const count = await userCount();
    const groups = await teamGroups();
    const stamp = async () => (await bench.admin.identityProviders.findOne({ realm, alias: 'finesse' }))!.config!['cloakroom.lastSync'];
    const lastSync = await stamp();
    expect(Number(lastSync)).toBeGreaterThan(0);
    // Changes in Finesse that must not arrive half-way.
    finesse.teams.set('500', { id: '500', name: 'Renamed Meanwhile' });
    try {
      finesse.mode = 'down-5xx';
      const down = await sync();
      expect(down.status).toBe(503);
      expect(down.body.errorMessage).toMatch(/^Finesse sync failed: .*unavailable/);
      finesse.mode = 'broken-xml';
      const broken = await sync();
      expect(broken.status).toBe(502);
      expect(broken.body.errorMessage).toMatch(/^Finesse sync failed: unusable answer from Finesse/);
    } finally {
      finesse.mode = 'normal';
      finesse.teams.set('500', { id: '500', name: 'Inside Sales' });
    }
    expect(await userCount()).toBe(count);
    expect(await teamGroups()).toEqual(groups);
    expect(await stamp()).toBe(lastSync);
  });

  it('answers 503 within the timeouts when no Finesse server listens', async () => {
    await bench.admin.identityProviders.create({
      realm, alias: 'finesse-dead', providerId: 'finesse', enabled: true,
      config: { finesseUrls: `https://127.0.0.1:${await closedPort()}`, caBundle: finesse.caPem, connectTimeout: '1000', readTimeout: '1000', finesseAdminUsername: 'a', finesseAdminPassword: 'b' },
    });
    const answer = await sync('finesse-dead');
    expect(answer.status).toBe(503);
    expect(answer.body.errorMessage).toMatch(/connection refused/);
  });

  it('answers 502 when Finesse refuses the admin credentials', async () => {
    await bench.admin.identityProviders.create({
      realm, alias: 'finesse-wrong-admin', providerId: 'finesse', enabled: true,
      config: { finesseUrls: finesse.url, caBundle: finesse.caPem, finesseAdminUsername: finesse.adminUsername, finesseAdminPassword: 'not-it' },
    });
    const answer = await sync('finesse-wrong-admin');
    expect(answer).toEqual({ status: 502, body: { errorMessage: 'Finesse sync failed: unusable answer from Finesse: the admin credentials were refused (HTTP 401)' } });
  });

  it('refuses providers without admin credentials, other provider types and unknown aliases', async () => {
    await bench.admin.identityProviders.create({
      realm, alias: 'finesse-noadmin', providerId: 'finesse', enabled: true, config: { finesseUrls: finesse.url, caBundle: finesse.caPem },
    });
    const requests = finesse.requests.length;
    expect(await sync('finesse-noadmin')).toEqual({
      status: 400,
      body: { errorMessage: 'Identity provider finesse-noadmin has no Finesse admin credentials (finesseAdminUsername, finesseAdminPassword) to sync with' },
    });
    expect(finesse.requests.length).toBe(requests);

    await bench.admin.identityProviders.create({
      realm, alias: 'corp-oidc', providerId: 'oidc', enabled: true,
      config: { clientId: 'x', clientSecret: 'y', authorizationUrl: 'https://idp.example/auth', tokenUrl: 'https://idp.example/token' },
    });
    expect(await sync('corp-oidc')).toEqual({ status: 400, body: { errorMessage: 'Identity provider corp-oidc is not a Finesse provider' } });
    expect(await sync('nope')).toEqual({ status: 404, body: { errorMessage: 'Could not find identity provider' } });

    await bench.admin.identityProviders.create({
      realm, alias: 'finesse-off', providerId: 'finesse', enabled: false,
      config: { finesseUrls: finesse.url, finesseAdminUsername: 'a', finesseAdminPassword: 'b' },
    });
    expect(await sync('finesse-off')).toEqual({ status: 400, body: { errorMessage: 'Identity provider finesse-off is disabled' } });
  });

  it('needs manage-users', async () => {
    const viewer = await bench.realmAdmin(realm, ['view-users', 'manage-identity-providers']);
    expect((await sync('finesse', await viewer.getAccessToken())).status).toBe(403);
    const manager = await bench.realmAdmin(realm, ['manage-users']);
    expect(await sync('finesse', await manager.getAccessToken())).toMatchObject({ status: 200, body: { ignored: false, added: 0, failed: 0 } });
  });

  it('ignores a sync asked for while one of the same provider runs', async () => {
    // Finesse answers after 1.5 s (within the 3 s read timeout): the first sync holds the lock meanwhile.
    finesse.slowMs = 1500;
    finesse.mode = 'slow';
    try {
      const answers = await Promise.all([sync(), sleep(200).then(() => sync())]);
      expect(answers.map((a) => a.status)).toEqual([200, 200]);
      expect(answers.map((a) => a.body.ignored).sort()).toEqual([false, true]);
      expect(answers.find((a) => a.body.ignored)!.body).toEqual({
        ignored: true, added: 0, updated: 0, failed: 0, teams: 0, status: "Synchronization ignored as it's already in progress",
      });
    } finally {
      finesse.mode = 'normal';
    }
  });

  it('runs periodic syncs (syncPeriod) that pick up new Finesse users', async () => {
    const periodicRealm = `${realm}-periodic`;
    await bench.admin.realms.create({ realm: periodicRealm, enabled: true });
    const other = await startFinesse();
    try {
      other.addTeam(SALES);
      other.addUser(agent(7, SALES));
      await bench.admin.identityProviders.create({
        realm: periodicRealm, alias: 'finesse', providerId: 'finesse', enabled: true,
        config: {
          finesseUrls: other.url, caBundle: other.caPem, connectTimeout: '2000', readTimeout: '3000', syncPeriod: '1',
          finesseAdminUsername: other.adminUsername, finesseAdminPassword: other.adminPassword,
        },
      });
      const a7 = await eventually('the periodic sync to create agent7', () => findUser('agent7', periodicRealm));
      expect(a7.attributes).toMatchObject({ 'finesse.loginId': ['1007'] });
      other.addUser(agent(8, SALES));
      await eventually('a later periodic sync to create agent8', () => findUser('agent8', periodicRealm));
      expect(other.requests.filter((r) => r.path === '/finesse/api/Users').length).toBeGreaterThanOrEqual(2);
    } finally {
      // No periodic sync left running against a stopped stand-in.
      await bench.admin.identityProviders.del({ realm: periodicRealm, alias: 'finesse' });
      await other.stop();
    }
  });
});

const postgresAdmin = await postgresForTests('the Finesse periodic sync across instances');

describe.skipIf(!postgresAdmin)('Finesse periodic sync on two instances', () => {
  let database: TestDatabase;
  let bench: AdminBench;
  let second: TestServer;
  let finesse: FinesseStandIn;

  beforeAll(async () => {
    setFinesseLogger({ warn: () => {} });
    database = await createTestDatabase(postgresAdmin);
    const env = { CLOAKROOM_MASTER_KEY: crypto.randomBytes(32).toString('base64') };
    [finesse, bench] = await Promise.all([startFinesse(), startAdminBench({ database, keepDatabase: true, env })]);
    second = await startTestServer({ database, keepDatabase: true, env });
  }, 60_000);

  afterAll(async () => {
    await bench?.stop();
    await second?.stop();
    await database?.drop();
    await finesse?.stop();
    await closeFinesseAgents();
  });

  /** cloakroom_finesse_periodic_syncs_total{outcome="success"} of one instance. */
  async function periodicRuns(server: TestServer): Promise<number> {
    const text = await (await fetch(`${server.url}/metrics`)).text();
    let total = 0;
    for (const line of text.split('\n')) {
      if (line.startsWith('cloakroom_finesse_periodic_syncs_total{') && line.includes('outcome="success"')) total += Number(line.slice(line.lastIndexOf(' ') + 1));
    }
    return total;
  }
  const usersRequests = (): number => finesse.requests.filter((r) => r.path === '/finesse/api/Users').length;

  it('runs each due periodic sync on exactly one instance', async () => {
    finesse.addTeam({ id: '700', name: 'Night' });
    for (const n of [1, 2, 3]) finesse.addUser(agent(n, { id: '700', name: 'Night' }));
    const realm = `fperiodic-${crypto.randomBytes(4).toString('hex')}`;
    await bench.admin.realms.create({ realm, enabled: true });
    const realmId = (await bench.admin.realms.findOne({ realm }))!.id!;
    // A long period: the first sync is due at once, the next one only when the test says so.
    await bench.admin.identityProviders.create({
      realm, alias: 'finesse', providerId: 'finesse', enabled: true,
      config: {
        finesseUrls: finesse.url, caBundle: finesse.caPem, syncPeriod: '3600',
        finesseAdminUsername: finesse.adminUsername, finesseAdminPassword: finesse.adminPassword,
      },
    });
    const stampOf = async () => (await bench.admin.identityProviders.findOne({ realm, alias: 'finesse' }))!.config!['cloakroom.lastSync'];
    // Both instances see the new provider (a realm change) and find its first sync due.
    const stamp = await eventually('the first periodic sync', stampOf);
    expect((await bench.admin.users.find({ realm })).map((u) => u.username).sort()).toEqual(['agent1', 'agent2', 'agent3']);
    // Time for several scans of both instances: neither may run it again within the period.
    await sleep(3000);
    expect(usersRequests()).toBe(1);
    expect(await periodicRuns(bench.server) + await periodicRuns(second)).toBe(1);

    // The next period: the stamp moved back by one period, both instances told to look.
    finesse.addUser(agent(4, { id: '700', name: 'Night' }));
    const previous = JSON.stringify({ 'cloakroom.lastSync': String(Number(stamp) - 3600) });
    await bench.server.store.db.updateTable('identity_providers').set({ config: sql`config || ${previous}::jsonb` })
      .where('realm_id', '=', realmId).where('alias', '=', 'finesse').execute();
    await bench.server.registry.realmChanged(realmId);
    await eventually('the second periodic sync', async () => (Number(await stampOf()) >= Number(stamp) ? true : undefined));
    expect((await bench.admin.users.find({ realm, username: 'agent4', exact: true })).length).toBe(1);
    await sleep(3000);
    expect(usersRequests()).toBe(2);
    expect(await periodicRuns(bench.server) + await periodicRuns(second)).toBe(2);
  }, 60_000);
});
