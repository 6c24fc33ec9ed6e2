// Several Cloakroom instances on one PostgreSQL database, as behind a load balancer: realm changes
// reach every instance through LISTEN/NOTIFY, tokens verify on any instance, and first-start
// bootstrap runs once however many instances start together. PostgreSQL only (support/postgres.ts).
import crypto from 'node:crypto';

import { decodeProtectedHeader } from 'jose';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { rotateRealmKey } from '../../src/realms/keys.ts';
import { postgresForTests } from '../support/postgres.ts';
import { basicAuth, createTestDatabase, postForm, startTestServer, type TestDatabase, type TestServer } from '../support/server.ts';

const postgresAdmin = await postgresForTests('the multi-instance tests');

const PUBLIC_ORIGIN = 'https://sso.cloakroom.test';

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

async function kids(server: TestServer, realm: string): Promise<string[]> {
  const res = await fetch(`${server.url}/realms/${realm}/protocol/openid-connect/certs`);
  expect(res.status).toBe(200);
  return ((await res.json()) as { keys: Array<{ kid: string }> }).keys.map((k) => k.kid);
}

async function clientToken(server: TestServer, realm: string, clientId: string, secret: string): Promise<string> {
  const res = await postForm(`${server.url}/realms/${realm}/protocol/openid-connect/token`,
    { grant_type: 'client_credentials' }, { authorization: basicAuth(clientId, secret) });
  expect(res.status).toBe(200);
  return ((await res.json()) as { access_token: string }).access_token;
}

describe.skipIf(!postgresAdmin)('two instances on one database', () => {
  let database: TestDatabase;
  let server1: TestServer;
  let server2: TestServer;
  let realmId: string;

  beforeAll(async () => {
    database = await createTestDatabase(postgresAdmin);
    // Instances of one deployment share the master key that seals private keys and secrets, and
    // sit behind one public address (a load balancer), so they issue under the same issuer.
    const env = { CLOAKROOM_MASTER_KEY: crypto.randomBytes(32).toString('base64'), KC_HOSTNAME: PUBLIC_ORIGIN };
    server1 = await startTestServer({ database, keepDatabase: true, env });
    server2 = await startTestServer({ database, keepDatabase: true, env });
  });

  afterAll(async () => {
    await server1?.stop();
    await server2?.stop();
    await database?.drop();
  });

  it('serves a realm imported through the other instance at once (an unknown realm is not cached)', async () => {
    // Server 2 is asked first, while the realm does not exist yet.
    expect((await fetch(`${server2.url}/realms/shared/.well-known/openid-configuration`)).status).toBe(404);
    realmId = (await server1.importRealm({
      realm: 'shared',
      clients: [
        { clientId: 'svc', secret: 'svc-secret', serviceAccountsEnabled: true, standardFlowEnabled: false },
        { clientId: 'gateway', secret: 'gateway-secret', standardFlowEnabled: false },
      ],
    })).realmId;
    const res = await fetch(`${server2.url}/realms/shared/.well-known/openid-configuration`);
    expect(res.status).toBe(200);
    expect(((await res.json()) as { issuer: string }).issuer).toBe(`${PUBLIC_ORIGIN}/realms/shared`);
  });

  it('propagates a key rotation made on one instance to the cached realm of the other within 2 s', async () => {
    // Server 2 has the realm (and its key set) cached.
    expect((await fetch(`${server2.url}/realms/shared/.well-known/openid-configuration`)).status).toBe(200);
    const before = await kids(server2, 'shared');
    expect(before).toHaveLength(1);
    const oldKid = before[0]!;
    expect(decodeProtectedHeader(await clientToken(server2, 'shared', 'svc', 'svc-secret')).kid).toBe(oldKid);

    const { kid: newKid } = await rotateRealmKey(server1.store.db, server1.box, realmId, 'RS256', 3600);
    await server1.registry.realmChanged(realmId);

    const deadline = Date.now() + 2000;
    let seen = await kids(server2, 'shared');
    while (!seen.includes(newKid) && Date.now() < deadline) {
      await sleep(50);
      seen = await kids(server2, 'shared');
    }
    expect(seen).toContain(newKid);
    // The old key stays published (passive) so tokens it signed still verify.
    expect(seen).toContain(oldKid);
    // And server 2 now signs with the new active key.
    expect(decodeProtectedHeader(await clientToken(server2, 'shared', 'svc', 'svc-secret')).kid).toBe(newKid);
  });

  it('introspects a token issued by one instance as active on the other', async () => {
    const token = await clientToken(server1, 'shared', 'svc', 'svc-secret');
    const res = await postForm(`${server2.url}/realms/shared/protocol/openid-connect/token/introspect`,
      { token }, { authorization: basicAuth('gateway', 'gateway-secret') });
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({
      active: true, client_id: 'svc', azp: 'svc', username: 'service-account-svc', iss: `${PUBLIC_ORIGIN}/realms/shared`,
    });
  });
  it('locks an account after exactly failureFactor wrong passwords spread over both instances', async () => {
    await server1.importRealm({
      realm: 'lockout', bruteForceProtected: true, failureFactor: 7, quickLoginCheckMilliSeconds: 0, waitIncrementSeconds: 600, maxFailureWaitSeconds: 600,
      clients: [{ clientId: 'app', publicClient: true, directAccessGrantsEnabled: true, standardFlowEnabled: false }],
      users: [{ username: 'target', enabled: true, credentials: [{ type: 'password', value: 'Right-password-1', temporary: false }] }],
    });
    const attempt = (server: TestServer, password: string): Promise<Response> => postForm(`${server.url}/realms/lockout/protocol/openid-connect/token`,
      { grant_type: 'password', client_id: 'app', username: 'target', password });
    const answers = await Promise.all(Array.from({ length: 40 }, (_, i) => attempt(i % 2 === 0 ? server1 : server2, `wrong-${i}`)));
    expect(answers.map((r) => r.status)).toEqual(Array(40).fill(401));
    const row = await server1.store.db.selectFrom('login_failures').innerJoin('users', 'users.id', 'login_failures.user_id')
      .select(['num_failures', 'failed_login_not_before']).where('users.username', '=', 'target').executeTakeFirstOrThrow();
    expect(Number(row.num_failures)).toBe(7);
    expect(Number(row.failed_login_not_before)).toBeGreaterThan(Date.now() / 1000);
    // Locked on both instances, with the wrong-password answer.
    for (const server of [server1, server2]) {
      const locked = await attempt(server, 'Right-password-1');
      expect(locked.status).toBe(401);
      expect(await locked.json()).toEqual({ error: 'invalid_grant', error_description: 'Invalid user credentials' });
    }
  });
});

describe.skipIf(!postgresAdmin)('instances starting together on a fresh database', () => {
  it('all come up, with one master realm and one bootstrap admin', async () => {
    const database = await createTestDatabase(postgresAdmin);
    const env = {
      CLOAKROOM_MASTER_KEY: crypto.randomBytes(32).toString('base64'),
      KC_BOOTSTRAP_ADMIN_USERNAME: 'admin',
      KC_BOOTSTRAP_ADMIN_PASSWORD: 'admin-password',
    };
    const started = await Promise.allSettled([0, 1, 2].map(() => startTestServer({ database, keepDatabase: true, env })));
    const servers = started.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []));
    try {
      expect(started.map((s) => (s.status === 'rejected' ? String(s.reason) : 'ok'))).toEqual(['ok', 'ok', 'ok']);
      for (const server of servers) {
        const res = await fetch(`${server.url}/realms/master`);
        expect(res.status).toBe(200);
      }
      const client = new pg.Client({ connectionString: database.url });
      await client.connect();
      try {
        const realms = await client.query<{ n: number }>(`SELECT count(*)::int AS n FROM realms WHERE name = 'master'`);
        expect(realms.rows[0]!.n).toBe(1);
        const admins = await client.query<{ id: string }>(`
          SELECT u.id FROM users u JOIN realms r ON r.id = u.realm_id WHERE r.name = 'master' AND lower(u.username) = 'admin'`);
        expect(admins.rows).toHaveLength(1);
        const roles = await client.query<{ name: string }>(`
          SELECT ro.name FROM user_roles ur JOIN roles ro ON ro.id = ur.role_id WHERE ur.user_id = $1 AND ro.client_id IS NULL ORDER BY ro.name`,
        [admins.rows[0]!.id]);
        expect(roles.rows.map((r) => r.name)).toContain('admin');
        const keys = await client.query<{ n: number }>(`
          SELECT count(*)::int AS n FROM signing_keys k JOIN realms r ON r.id = k.realm_id WHERE r.name = 'master' AND k.status = 'active'`);
        expect(keys.rows[0]!.n).toBe(1);
      } finally {
        await client.end();
      }
    } finally {
      for (const server of servers) await server.stop();
      await database.drop();
    }
  });
});
