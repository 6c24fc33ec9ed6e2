// The storage layer against a real database: migrations, the oidc-provider adapter, realm import,
// signing keys and effective roles. PGlite in memory by default, a fresh PostgreSQL database when
// DATABASE_URL is set. The concurrent-migration test needs PostgreSQL (see support/postgres.ts).
import crypto from 'node:crypto';

import { sql } from 'kysely';
import pg from 'pg';
import type { AdapterPayload } from 'oidc-provider';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { migrations } from '../../migrations/index.ts';
import { verifyPassword, type StoredPassword } from '../../src/crypto/passwords.ts';
import { createSecretBox } from '../../src/crypto/secret-box.ts';
import { createAdapterClass, deleteExpiredPayloads } from '../../src/oidc/adapter.ts';
import { RealmContext } from '../../src/realms/context.ts';
import { ImportError, RealmExistsError, importRealm } from '../../src/realms/import.ts';
import { loadRealmKeys, rotateRealmKey } from '../../src/realms/keys.ts';
import { migrateToLatest, openStore, type Db, type Store } from '../../src/store/db.ts';
import { deleteRetiredKeys } from '../../src/store/keys.ts';
import { roleScopeIds, userGroupPaths } from '../../src/store/roles.ts';
import { saveUserSession, startClientSession } from '../../src/store/sessions.ts';
import { postgresForTests } from '../support/postgres.ts';
import { createTestDatabase, type TestDatabase } from '../support/server.ts';

const postgresAdmin = await postgresForTests('the concurrent migration test');

const box = createSecretBox(crypto.randomBytes(32));
let database: TestDatabase;
let store: Store;
let db: Db;
let firstMigration: string[];

beforeAll(async () => {
  database = await createTestDatabase();
  store = await openStore({ databaseUrl: database.url, pgliteDir: 'memory://' });
  db = store.db;
  firstMigration = await migrateToLatest(db);
});

afterAll(async () => {
  await store?.close();
  await database?.drop();
});

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

async function realmIdOf(name: string): Promise<string> {
  return (await db.selectFrom('realms').select('id').where('name', '=', name).executeTakeFirstOrThrow()).id;
}

async function clientUuid(realmId: string, clientId: string): Promise<string> {
  return (await db.selectFrom('clients').select('id').where('realm_id', '=', realmId).where('client_id', '=', clientId).executeTakeFirstOrThrow()).id;
}

async function userId(realmId: string, username: string): Promise<string> {
  return (await db.selectFrom('users').select('id').where('realm_id', '=', realmId).where('username', '=', username).executeTakeFirstOrThrow()).id;
}

describe('migrations', () => {
  it('applies every migration once; a second run is a no-op', async () => {
    expect(firstMigration).toEqual(Object.keys(migrations));
    expect(await migrateToLatest(db)).toEqual([]);
    const { rows } = await sql<{ name: string }>`SELECT name FROM kysely_migration ORDER BY name`.execute(db);
    expect(rows.map((r) => r.name)).toEqual(Object.keys(migrations).sort());
  });

  it('creates the core tables', async () => {
    const { rows } = await sql<{ table_name: string }>`
      SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'
    `.execute(db);
    expect(rows.map((r) => r.table_name)).toEqual(expect.arrayContaining([
      'realms', 'clients', 'users', 'credentials', 'roles', 'role_composites', 'groups', 'user_roles', 'group_roles',
      'user_groups', 'client_scopes', 'realm_default_client_scopes', 'client_client_scopes', 'protocol_mappers',
      'scope_mappings', 'signing_keys', 'oidc_payloads', 'events', 'admin_events', 'kysely_migration',
    ]));
  });
});

describe.skipIf(!postgresAdmin)('concurrent migrations (PostgreSQL)', () => {
  it('three instances migrating one fresh database at once all succeed, each migration recorded once', async () => {
    const fresh = await createTestDatabase(postgresAdmin);
    const stores: Store[] = [];
    try {
      for (let i = 0; i < 3; i++) stores.push(await openStore({ databaseUrl: fresh.url, pgliteDir: 'memory://', poolSize: 3 }));
      const results = await Promise.all(stores.map((s) => migrateToLatest(s.db)));
      // Between them the three applied each migration exactly once.
      expect(results.flat().sort()).toEqual(Object.keys(migrations).sort());
      const { rows } = await sql<{ name: string; n: number }>`
        SELECT name, count(*)::int AS n FROM kysely_migration GROUP BY name ORDER BY name
      `.execute(stores[0]!.db);
      expect(rows).toEqual(Object.keys(migrations).sort().map((name) => ({ name, n: 1 })));
      for (const s of stores) expect(await migrateToLatest(s.db)).toEqual([]);
    } finally {
      for (const s of stores) await s.close();
      await fresh.drop();
    }
  });
});

// Role-graph writers bump the realm's version at commit (migrations/0008), so the version row's
// lock is never held while a transaction goes on writing: two transactions creating the same
// groups in opposite orders (as concurrent LDAP imports may) wait on each other at most once.
describe.skipIf(!postgresAdmin)('role graph versions under concurrent writers (PostgreSQL)', () => {
  it('lets two open transactions write groups of one realm in opposite orders, and bumps once per commit', async () => {
    const fresh = await createTestDatabase(postgresAdmin);
    const writer = await openStore({ databaseUrl: fresh.url, pgliteDir: 'memory://', poolSize: 2 });
    const clients: pg.Client[] = [];
    try {
      await migrateToLatest(writer.db);
      const { realmId } = await importRealm(writer.db, box, { realm: 'concurrent' });
      const version = async () => Number((await writer.db.selectFrom('role_graph_versions').select('version').where('realm_id', '=', realmId).executeTakeFirstOrThrow()).version);
      const start = await version();
      for (let i = 0; i < 2; i++) {
        const client = new pg.Client({ connectionString: fresh.url, query_timeout: 5_000 });
        await client.connect();
        clients.push(client);
      }
      const [a, b] = clients as [pg.Client, pg.Client];
      const group = (client: pg.Client, name: string) => client.query(
        `INSERT INTO groups (id, realm_id, parent_id, name, description, attributes) VALUES (gen_random_uuid(), $1, NULL, $2, NULL, '{}')
         ON CONFLICT DO NOTHING`, [realmId, name]);
      await a.query('BEGIN');
      await b.query('BEGIN');
      await group(a, 'x');
      await group(b, 'y'); // would wait for a's version row if the bump came with the insert
      const aSecond = group(a, 'y'); // waits for b's uncommitted 'y'
      await b.query('COMMIT');
      await aSecond;
      await a.query('COMMIT');
      expect(await version()).toBe(start + 2);
    } finally {
      for (const client of clients) await client.end();
      await writer.close();
      await fresh.drop();
    }
  });
});

describe('oidc-provider adapter', () => {
  let realmA: string;
  let realmB: string;
  const lookups: string[] = [];
  let A: ReturnType<typeof createAdapterClass>;
  let B: ReturnType<typeof createAdapterClass>;

  beforeAll(async () => {
    realmA = (await importRealm(db, box, { realm: 'adapter-a' })).realmId;
    realmB = (await importRealm(db, box, { realm: 'adapter-b' })).realmId;
    A = createAdapterClass(db, realmA, async (clientId) => {
      lookups.push(clientId);
      return clientId === 'known' ? { client_id: 'known', client_secret: 's' } as AdapterPayload : undefined;
    });
    B = createAdapterClass(db, realmB, async () => undefined);
  });

  async function row(realmId: string, model: string, id: string) {
    return db.selectFrom('oidc_payloads').selectAll()
      .where('realm_id', '=', realmId).where('model', '=', model).where('id', '=', id).executeTakeFirst();
  }

  it('round-trips a payload through upsert and find, scoped by model', async () => {
    const payload = { accountId: 'acc-1', uid: 'uid-1', exp: 123, loginTs: 100, kind: 'Session' } as AdapterPayload;
    await new A('Session').upsert('s1', payload, 60);
    expect(await new A('Session').find('s1')).toEqual(payload);
    expect(await new A('Session').findByUid('uid-1')).toEqual(payload);
    expect(await new A('Session').find('nope')).toBeUndefined();
    expect(await new A('Interaction').find('s1')).toBeUndefined();
    const stored = await row(realmA, 'Session', 's1');
    expect(stored?.uid).toBe('uid-1');
    const ttl = stored!.expires_at!.getTime() - Date.now();
    expect(ttl).toBeGreaterThan(55_000);
    expect(ttl).toBeLessThanOrEqual(60_000);
  });

  it('overwrites on a second upsert (payload, uid and expiry)', async () => {
    const Session = new A('Session');
    await Session.upsert('s2', { accountId: 'old', uid: 'uid-old' } as AdapterPayload, 60);
    await Session.upsert('s2', { accountId: 'new', uid: 'uid-new' } as AdapterPayload, 3600);
    expect(await Session.find('s2')).toEqual({ accountId: 'new', uid: 'uid-new' });
    expect(await Session.findByUid('uid-old')).toBeUndefined();
    expect(await Session.findByUid('uid-new')).toEqual({ accountId: 'new', uid: 'uid-new' });
    const rows = await db.selectFrom('oidc_payloads').select('expires_at').where('realm_id', '=', realmA).where('id', '=', 's2').execute();
    expect(rows).toHaveLength(1);
    expect(rows[0]!.expires_at!.getTime() - Date.now()).toBeGreaterThan(3500_000);
  });

  it('stores no expiry when expiresIn is absent', async () => {
    await new A('Grant').upsert('forever', { accountId: 'a' } as AdapterPayload, 0);
    expect((await row(realmA, 'Grant', 'forever'))?.expires_at).toBeNull();
    expect(await new A('Grant').find('forever')).toEqual({ accountId: 'a' });
  });

  it('hides a payload once it has expired', async () => {
    const Interaction = new A('Interaction');
    await Interaction.upsert('short', { uid: 'short-uid' } as AdapterPayload, 1);
    expect(await Interaction.find('short')).toBeDefined();
    await sleep(1100);
    expect(await Interaction.find('short')).toBeUndefined();
    expect(await Interaction.findByUid('short-uid')).toBeUndefined();

    await Interaction.upsert('past', { uid: 'past-uid' } as AdapterPayload, 600);
    await db.updateTable('oidc_payloads').set({ expires_at: new Date(Date.now() - 1000) })
      .where('realm_id', '=', realmA).where('id', '=', 'past').execute();
    expect(await Interaction.find('past')).toBeUndefined();
    expect(await Interaction.findByUid('past-uid')).toBeUndefined();
  });

  it('finds device codes by user code', async () => {
    const DeviceCode = new A('DeviceCode');
    const payload = { userCode: 'WDJB-MJHT', clientId: 'tv', grantId: 'dg' } as AdapterPayload;
    await DeviceCode.upsert('dc1', payload, 600);
    expect(await DeviceCode.findByUserCode('WDJB-MJHT')).toEqual(payload);
    expect(await DeviceCode.findByUserCode('XXXX-XXXX')).toBeUndefined();
    expect(await new A('AccessToken').findByUserCode('WDJB-MJHT')).toBeUndefined();
    expect(await new B('DeviceCode').findByUserCode('WDJB-MJHT')).toBeUndefined();
  });

  it('marks a payload consumed once; a second consume keeps the first time', async () => {
    const Code = new A('AuthorizationCode');
    await Code.upsert('code1', { grantId: 'gc', accountId: 'a' } as AdapterPayload, 60);
    expect((await Code.find('code1'))?.consumed).toBeUndefined();
    const before = Math.floor(Date.now() / 1000);
    await Code.consume('code1');
    const first = await Code.find('code1');
    expect(first?.consumed).toBeGreaterThanOrEqual(before);
    expect(first?.consumed).toBeLessThanOrEqual(Math.floor(Date.now() / 1000));
    expect(first).toMatchObject({ grantId: 'gc', accountId: 'a' });
    const consumedAt = (await row(realmA, 'AuthorizationCode', 'code1'))!.consumed_at!;
    expect(first!.consumed).toBe(Math.floor(consumedAt.getTime() / 1000));

    await sleep(30);
    await Code.consume('code1');
    expect((await row(realmA, 'AuthorizationCode', 'code1'))!.consumed_at!.getTime()).toBe(consumedAt.getTime());
    expect((await Code.find('code1'))?.consumed).toBe(first!.consumed);
  });

  it('sets consumed_at exactly once under 50 concurrent consumes', async () => {
    // A trigger records every change of consumed_at, so a second writer cannot hide behind an equal value.
    await sql`CREATE TABLE test_consume_audit (id text NOT NULL, consumed_at timestamptz)`.execute(db);
    await sql.raw(`
      CREATE FUNCTION test_consume_audit() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN INSERT INTO test_consume_audit VALUES (NEW.id, NEW.consumed_at); RETURN NEW; END $$
    `).execute(db);
    await sql`
      CREATE TRIGGER test_consume_audit AFTER UPDATE ON oidc_payloads FOR EACH ROW
      WHEN (OLD.consumed_at IS DISTINCT FROM NEW.consumed_at) EXECUTE FUNCTION test_consume_audit()
    `.execute(db);
    try {
      const Code = new A('AuthorizationCode');
      await Code.upsert('race', { grantId: 'gr' } as AdapterPayload, 60);
      const adapters = Array.from({ length: 50 }, () => new A('AuthorizationCode'));
      await Promise.all(adapters.map((adapter) => adapter.consume('race')));
      const { rows: audit } = await sql<{ consumed_at: Date }>`SELECT consumed_at FROM test_consume_audit WHERE id = 'race'`.execute(db);
      expect(audit).toHaveLength(1);
      const stored = (await row(realmA, 'AuthorizationCode', 'race'))!.consumed_at!;
      expect(stored.getTime()).toBe(new Date(audit[0]!.consumed_at).getTime());
      expect((await Code.find('race'))?.consumed).toBe(Math.floor(stored.getTime() / 1000));
    } finally {
      await sql`DROP TRIGGER test_consume_audit ON oidc_payloads`.execute(db);
      await sql`DROP FUNCTION test_consume_audit()`.execute(db);
      await sql`DROP TABLE test_consume_audit`.execute(db);
    }
  });

  it('destroys one payload and nothing else', async () => {
    const Token = new A('AccessToken');
    await Token.upsert('t-keep', { grantId: 'gd' } as AdapterPayload, 60);
    await Token.upsert('t-drop', { grantId: 'gd' } as AdapterPayload, 60);
    await Token.destroy('t-drop');
    expect(await Token.find('t-drop')).toBeUndefined();
    expect(await row(realmA, 'AccessToken', 't-drop')).toBeUndefined();
    expect(await Token.find('t-keep')).toEqual({ grantId: 'gd' });
  });

  it('revokeByGrantId removes every model of the grant, the Grant itself included, in one call', async () => {
    await new A('Grant').upsert('g1', { accountId: 'u', clientId: 'c', jti: 'g1' } as AdapterPayload, 600);
    await new A('AccessToken').upsert('at1', { grantId: 'g1' } as AdapterPayload, 60);
    await new A('RefreshToken').upsert('rt1', { grantId: 'g1' } as AdapterPayload, 600);
    await new A('AuthorizationCode').upsert('ac1', { grantId: 'g1' } as AdapterPayload, 60);
    await new A('Grant').upsert('g2', { accountId: 'u', clientId: 'c', jti: 'g2' } as AdapterPayload, 600);
    await new A('AccessToken').upsert('at2', { grantId: 'g2' } as AdapterPayload, 60);
    // Same grant id in another realm: not this realm's grant.
    await new B('Grant').upsert('g1', { accountId: 'u', jti: 'g1' } as AdapterPayload, 600);
    await new B('AccessToken').upsert('at1', { grantId: 'g1' } as AdapterPayload, 60);

    expect((await row(realmA, 'Grant', 'g1'))?.grant_id).toBe('g1');
    await new A('AccessToken').revokeByGrantId('g1');

    const left = await db.selectFrom('oidc_payloads').select(['model', 'id'])
      .where('realm_id', '=', realmA).where((eb) => eb.or([eb('grant_id', 'in', ['g1', 'g2']), eb('id', 'in', ['g1', 'g2'])]))
      .orderBy('model').orderBy('id').execute();
    expect(left).toEqual([{ model: 'AccessToken', id: 'at2' }, { model: 'Grant', id: 'g2' }]);
    expect(await new A('Grant').find('g1')).toBeUndefined();
    expect(await new A('RefreshToken').find('rt1')).toBeUndefined();
    expect(await new A('AuthorizationCode').find('ac1')).toBeUndefined();
    expect(await new B('Grant').find('g1')).toBeDefined();
    expect(await new B('AccessToken').find('at1')).toBeDefined();
  });

  it('keeps realms apart even for the same model and id', async () => {
    await new A('Session').upsert('shared', { accountId: 'in-a', uid: 'shared-uid' } as AdapterPayload, 60);
    expect(await new B('Session').find('shared')).toBeUndefined();
    expect(await new B('Session').findByUid('shared-uid')).toBeUndefined();
    await new B('Session').upsert('shared', { accountId: 'in-b', uid: 'shared-uid' } as AdapterPayload, 60);
    expect(await new A('Session').find('shared')).toEqual({ accountId: 'in-a', uid: 'shared-uid' });
    expect(await new B('Session').find('shared')).toEqual({ accountId: 'in-b', uid: 'shared-uid' });
    await new B('Session').consume('shared');
    await new B('Session').destroy('shared');
    expect(await new B('Session').find('shared')).toBeUndefined();
    const inA = await new A('Session').find('shared');
    expect(inA).toEqual({ accountId: 'in-a', uid: 'shared-uid' });
    expect(inA).not.toHaveProperty('consumed');
  });

  it('serves the Client model from the client lookup and refuses to store clients', async () => {
    const Client = new A('Client');
    expect(await Client.find('known')).toEqual({ client_id: 'known', client_secret: 's' });
    expect(await Client.find('unknown')).toBeUndefined();
    expect(lookups).toEqual(['known', 'unknown']);
    await expect(Client.upsert('dyn', { client_id: 'dyn' } as AdapterPayload, 0)).rejects.toThrow(/Admin API/);
    expect(await row(realmA, 'Client', 'dyn')).toBeUndefined();
  });

  it('deleteExpiredPayloads removes only expired rows', async () => {
    await db.deleteFrom('oidc_payloads').execute();
    const insert = (id: string, expires: Date | null) => db.insertInto('oidc_payloads').values({
      realm_id: realmA, model: 'Session', id, payload: JSON.stringify({ id }), grant_id: null, uid: null, user_code: null,
      expires_at: expires, consumed_at: null,
    }).execute();
    await insert('expired', new Date(Date.now() - 60_000));
    await insert('live', new Date(Date.now() + 60_000));
    await insert('eternal', null);
    expect(await deleteExpiredPayloads(db)).toBe(1);
    const ids = async () => (await db.selectFrom('oidc_payloads').select('id').orderBy('id').execute()).map((r) => r.id);
    expect(await ids()).toEqual(['eternal', 'live']);
    expect(await deleteExpiredPayloads(db, new Date(Date.now() + 120_000))).toBe(1);
    expect(await ids()).toEqual(['eternal']);
  });
});

describe('realm import', () => {
  it('creates the Keycloak defaults for {realm: "x"}', async () => {
    const result = await importRealm(db, box, { realm: 'x' });
    const realmId = result.realmId;
    expect(await realmIdOf('x')).toBe(realmId);

    const scopes = await db.selectFrom('client_scopes').select('name').where('realm_id', '=', realmId).execute();
    expect(scopes.map((s) => s.name)).toEqual(expect.arrayContaining([
      'profile', 'email', 'roles', 'web-origins', 'acr', 'basic', 'offline_access', 'address', 'phone', 'microprofile-jwt', 'service_account',
    ]));
    const realmDefaults = await db.selectFrom('realm_default_client_scopes')
      .innerJoin('client_scopes', 'client_scopes.id', 'realm_default_client_scopes.client_scope_id')
      .select(['client_scopes.name', 'realm_default_client_scopes.default_scope'])
      .where('realm_default_client_scopes.realm_id', '=', realmId).execute();
    expect(realmDefaults.filter((s) => s.default_scope).map((s) => s.name).sort())
      .toEqual(expect.arrayContaining(['acr', 'basic', 'email', 'profile', 'roles', 'web-origins']));
    expect(realmDefaults.filter((s) => !s.default_scope).map((s) => s.name))
      .toEqual(expect.arrayContaining(['address', 'microprofile-jwt', 'offline_access', 'phone']));

    const clients = await db.selectFrom('clients').select('client_id').where('realm_id', '=', realmId).orderBy('client_id').execute();
    expect(clients.map((c) => c.client_id)).toEqual(
      ['account', 'account-console', 'admin-cli', 'broker', 'realm-management', 'security-admin-console'],
    );

    const realmRoles = await db.selectFrom('roles').select('name').where('realm_id', '=', realmId).where('client_id', 'is', null).orderBy('name').execute();
    expect(realmRoles.map((r) => r.name)).toEqual(['default-roles-x', 'manage-own-access-keys', 'offline_access', 'uma_authorization']);

    const rm = await clientUuid(realmId, 'realm-management');
    const rmRoles = await db.selectFrom('roles').select(['id', 'name']).where('client_id', '=', rm).execute();
    expect(rmRoles.map((r) => r.name)).toEqual(expect.arrayContaining(
      ['realm-admin', 'manage-users', 'view-users', 'query-users', 'query-groups', 'manage-clients', 'view-realm', 'manage-realm'],
    ));
    const realmAdmin = rmRoles.find((r) => r.name === 'realm-admin')!;
    const adminChildren = await db.selectFrom('role_composites').innerJoin('roles', 'roles.id', 'role_composites.child_id')
      .select('roles.name').where('role_composites.parent_id', '=', realmAdmin.id).execute();
    expect(adminChildren.map((r) => r.name).sort()).toEqual(rmRoles.filter((r) => r.name !== 'realm-admin').map((r) => r.name).sort());

    const defaultRole = await db.selectFrom('roles').select('id').where('realm_id', '=', realmId).where('name', '=', 'default-roles-x').executeTakeFirstOrThrow();
    const defaultChildren = await db.selectFrom('role_composites').innerJoin('roles', 'roles.id', 'role_composites.child_id')
      .leftJoin('clients', 'clients.id', 'roles.client_id')
      .select(['roles.name', 'clients.client_id']).where('role_composites.parent_id', '=', defaultRole.id).execute();
    expect(defaultChildren.map((r) => `${r.client_id ?? ''}/${r.name}`).sort())
      .toEqual(['/offline_access', '/uma_authorization', 'account/manage-account', 'account/view-profile']);

    const keys = await db.selectFrom('signing_keys').selectAll().where('realm_id', '=', realmId).execute();
    expect(keys).toHaveLength(1);
    const key = keys[0]!;
    expect(key).toMatchObject({ alg: 'RS256', status: 'active', retire_at: null });
    expect(key.private_jwk_sealed.startsWith('v1.')).toBe(true);
    expect(key.private_jwk_sealed).not.toContain('"d":');
    const privateJwk = JSON.parse(box.open(key.private_jwk_sealed)) as Record<string, string>;
    expect(privateJwk).toMatchObject({ kty: 'RSA', kid: key.kid });
    expect(typeof privateJwk.d).toBe('string');
    expect(key.public_jwk).toMatchObject({ kty: 'RSA', kid: key.kid, n: privateJwk.n, e: privateJwk.e });
    expect(key.public_jwk).not.toHaveProperty('d');

    // Bearer-only built-ins get a secret, sealed at rest like every other.
    const broker = await db.selectFrom('clients').select('secret_sealed').where('realm_id', '=', realmId).where('client_id', '=', 'broker').executeTakeFirstOrThrow();
    expect(broker.secret_sealed?.startsWith('v1.')).toBe(true);
    expect(box.open(broker.secret_sealed!)).toBe(result.clientSecrets.broker);
  });

  it('refuses to import a realm name twice and leaves the first realm alone', async () => {
    const before = await realmIdOf('x');
    await expect(importRealm(db, box, { realm: 'x', clients: [{ clientId: 'late' }] })).rejects.toBeInstanceOf(RealmExistsError);
    const rows = await db.selectFrom('realms').select('id').where('name', '=', 'x').execute();
    expect(rows).toEqual([{ id: before }]);
    expect(await db.selectFrom('clients').select('id').where('client_id', '=', 'late').execute()).toEqual([]);
  });

  it('leaves nothing behind when an import fails half-way', async () => {
    const id = crypto.randomUUID();
    const count = async (table: 'clients' | 'roles' | 'users' | 'client_scopes' | 'signing_keys' | 'protocol_mappers') =>
      (await db.selectFrom(table).select(db.fn.countAll<number>().as('n')).where('realm_id', '=', id).executeTakeFirstOrThrow()).n;
    const rejected = importRealm(db, box, {
      id, realm: 'halfway',
      clients: [{ clientId: 'app', secret: 'app-secret' }],
      users: [{ username: 'ok-user' }, { username: 'bad-user', realmRoles: ['no-such-role'] }],
    });
    await expect(rejected).rejects.toBeInstanceOf(ImportError);
    await expect(rejected).rejects.toThrow(/no-such-role/);
    expect(await db.selectFrom('realms').select('id').where((eb) => eb.or([eb('name', '=', 'halfway'), eb('id', '=', id)])).execute()).toEqual([]);
    for (const table of ['clients', 'roles', 'users', 'client_scopes', 'signing_keys', 'protocol_mappers'] as const) {
      expect(Number(await count(table)), table).toBe(0);
    }
    // The name is free again.
    expect((await importRealm(db, box, { realm: 'halfway' })).realm).toBe('halfway');
  });

  describe('a realm with users, groups, composites and a service account', () => {
    let realmId: string;
    const kcSecretData = JSON.stringify({
      value: 'GbcXn5JEdNpblA2NnXwX60mm614FHjdbxhK1x7v6WwGc0E8ZrNvho7Se8upLt9+/NTHu2NmuWlWM1QwdOWfyHQ==',
      salt: 'YaIEcNqTNMS4fZ2iUKd/wg==', additionalParameters: {},
    });
    const kcCredentialData = JSON.stringify({ hashIterations: 27500, algorithm: 'pbkdf2-sha256', additionalParameters: {} });

    beforeAll(async () => {
      realmId = (await importRealm(db, box, {
        realm: 'rich',
        roles: {
          realm: [
            { name: 'lead', composite: true, composites: { realm: ['member'], client: { app: ['deploy'] } } },
            { name: 'member' },
            { name: 'eng-role' },
          ],
          client: { app: [{ name: 'deploy' }, { name: 'read' }] },
        },
        clients: [
          { clientId: 'app', secret: 'app-secret-123', standardFlowEnabled: false },
          { clientId: 'svc', secret: 'svc-secret', serviceAccountsEnabled: true, standardFlowEnabled: false },
        ],
        groups: [{
          name: 'eng', realmRoles: ['eng-role'],
          subGroups: [{ name: 'backend', clientRoles: { app: ['read'] }, subGroups: [{ name: 'db' }] }],
        }],
        users: [
          {
            username: 'Migrated', email: 'Migrated@Example.com', enabled: true,
            credentials: [{
              type: 'password', userLabel: 'kc', createdDate: 1_700_000_000_000,
              secretData: kcSecretData, credentialData: kcCredentialData,
            }],
          },
          {
            username: 'fresh', groups: ['/eng/backend'], realmRoles: ['lead'],
            credentials: [{ type: 'password', value: 'Plain-Passw0rd', temporary: true }],
          },
        ],
      })).realmId;
    });

    async function credentialOf(username: string): Promise<StoredPassword & { row: { user_label: string | null; created_at: Date } }> {
      const row = await db.selectFrom('credentials').selectAll().where('user_id', '=', await userId(realmId, username)).executeTakeFirstOrThrow();
      return {
        secretData: JSON.parse(row.secret_data) as StoredPassword['secretData'],
        credentialData: row.credential_data as StoredPassword['credentialData'],
        row,
      };
    }

    it('stores a Keycloak pbkdf2-sha256 credential as given, and it verifies', async () => {
      const cred = await credentialOf('migrated');
      expect(cred.secretData).toMatchObject({ value: JSON.parse(kcSecretData).value, salt: JSON.parse(kcSecretData).salt });
      expect(cred.credentialData).toMatchObject({ algorithm: 'pbkdf2-sha256', hashIterations: 27500 });
      expect(cred.row.user_label).toBe('kc');
      expect(cred.row.created_at.getTime()).toBe(1_700_000_000_000);
      expect(await verifyPassword('test', cred)).toBe(true);
      expect(await verifyPassword('wrong', cred)).toBe(false);
      // Keycloak stores usernames and e-mails lower-cased.
      const user = await db.selectFrom('users').select(['username', 'email']).where('id', '=', await userId(realmId, 'migrated')).executeTakeFirstOrThrow();
      expect(user).toEqual({ username: 'migrated', email: 'migrated@example.com' });
    });

    it('hashes a plain password value with argon2 and honours temporary', async () => {
      const cred = await credentialOf('fresh');
      expect(cred.credentialData.algorithm).toBe('argon2');
      expect(JSON.stringify(cred)).not.toContain('Plain-Passw0rd');
      expect(await verifyPassword('Plain-Passw0rd', cred)).toBe(true);
      expect(await verifyPassword('plain-passw0rd', cred)).toBe(false);
      const user = await db.selectFrom('users').select('required_actions').where('id', '=', await userId(realmId, 'fresh')).executeTakeFirstOrThrow();
      expect(user.required_actions).toEqual(['UPDATE_PASSWORD']);
    });

    it('creates nested groups with their roles and memberships', async () => {
      const groups = await db.selectFrom('groups').select(['id', 'name', 'parent_id']).where('realm_id', '=', realmId).execute();
      const byName = new Map(groups.map((g) => [g.name, g]));
      expect(byName.get('eng')?.parent_id).toBeNull();
      expect(byName.get('backend')?.parent_id).toBe(byName.get('eng')?.id);
      expect(byName.get('db')?.parent_id).toBe(byName.get('backend')?.id);
      const groupRoles = await db.selectFrom('group_roles').innerJoin('roles', 'roles.id', 'group_roles.role_id')
        .innerJoin('groups', 'groups.id', 'group_roles.group_id').leftJoin('clients', 'clients.id', 'roles.client_id')
        .select(['groups.name as group', 'roles.name as role', 'clients.client_id']).where('groups.realm_id', '=', realmId)
        .orderBy('groups.name').execute();
      expect(groupRoles).toEqual([
        { group: 'backend', role: 'read', client_id: 'app' },
        { group: 'eng', role: 'eng-role', client_id: null },
      ]);
      const membership = await db.selectFrom('user_groups').select('group_id').where('user_id', '=', await userId(realmId, 'fresh')).execute();
      expect(membership).toEqual([{ group_id: byName.get('backend')!.id }]);
    });

    it('creates the service account of a client with serviceAccountsEnabled', async () => {
      const svc = await clientUuid(realmId, 'svc');
      const user = await db.selectFrom('users').selectAll().where('service_account_client_id', '=', svc).executeTakeFirstOrThrow();
      expect(user).toMatchObject({ username: 'service-account-svc', realm_id: realmId, enabled: true });
      const roles = await db.selectFrom('user_roles').innerJoin('roles', 'roles.id', 'user_roles.role_id')
        .select('roles.name').where('user_roles.user_id', '=', user.id).execute();
      expect(roles.map((r) => r.name)).toEqual(['default-roles-rich']);
      const scopes = await db.selectFrom('client_client_scopes').innerJoin('client_scopes', 'client_scopes.id', 'client_client_scopes.client_scope_id')
        .select(['client_scopes.name', 'client_client_scopes.default_scope']).where('client_client_scopes.client_id', '=', svc).execute();
      expect(scopes).toContainEqual({ name: 'service_account', default_scope: true });
      // Only clients with a service account get one.
      expect(await db.selectFrom('users').select('id').where('service_account_client_id', '=', await clientUuid(realmId, 'app')).execute()).toEqual([]);
    });

    it('links composite roles, realm and client children', async () => {
      const links = await db.selectFrom('role_composites')
        .innerJoin('roles as parent', 'parent.id', 'role_composites.parent_id')
        .innerJoin('roles as child', 'child.id', 'role_composites.child_id')
        .leftJoin('clients', 'clients.id', 'child.client_id')
        .select(['child.name', 'clients.client_id'])
        .where('parent.realm_id', '=', realmId).where('parent.name', '=', 'lead').where('parent.client_id', 'is', null)
        .orderBy('child.name').execute();
      expect(links).toEqual([{ name: 'deploy', client_id: 'app' }, { name: 'member', client_id: null }]);
    });

    it('seals a given client secret', async () => {
      const app = await db.selectFrom('clients').select('secret_sealed').where('id', '=', await clientUuid(realmId, 'app')).executeTakeFirstOrThrow();
      expect(app.secret_sealed).not.toContain('app-secret-123');
      expect(box.open(app.secret_sealed!)).toBe('app-secret-123');
    });
  });
});

describe('signing keys', () => {
  let realmId: string;
  beforeAll(async () => {
    realmId = (await importRealm(db, box, { realm: 'keys' })).realmId;
  });

  it('rotates: a new active key, the old one passive until retire_at, active listed first; retired keys are deleted', async () => {
    const [original] = await db.selectFrom('signing_keys').select('kid').where('realm_id', '=', realmId).execute();
    const { kid, demoted } = await rotateRealmKey(db, box, realmId, 'RS256', 3600);
    expect(demoted).toBe(1);
    expect(kid).not.toBe(original!.kid);

    const rows = await db.selectFrom('signing_keys').selectAll().where('realm_id', '=', realmId).execute();
    const active = rows.filter((r) => r.status === 'active');
    const passive = rows.filter((r) => r.status === 'passive');
    expect(active.map((r) => r.kid)).toEqual([kid]);
    expect(passive.map((r) => r.kid)).toEqual([original!.kid]);
    const retireIn = passive[0]!.retire_at!.getTime() - Date.now();
    expect(retireIn).toBeGreaterThan(3500_000);
    expect(retireIn).toBeLessThanOrEqual(3600_000);

    const keys = await loadRealmKeys(db, box, realmId);
    expect(keys.signing.map((k) => k.kid)).toEqual([kid, original!.kid]);
    expect(keys.published.map((k) => k.kid)).toEqual([kid, original!.kid]);
    expect(keys.signing[0]!.d).toBeDefined();
    expect(keys.published[0]!.d).toBeUndefined();

    // Not retired yet: nothing to delete.
    expect(await deleteRetiredKeys(db)).not.toContain(realmId);
    // Once retire_at has passed, the passive key leaves the published set and is deleted.
    await db.updateTable('signing_keys').set({ retire_at: new Date(Date.now() - 1000) }).where('kid', '=', original!.kid).execute();
    expect((await loadRealmKeys(db, box, realmId)).published.map((k) => k.kid)).toEqual([kid]);
    expect(await deleteRetiredKeys(db)).toEqual([realmId]);
    const after = await db.selectFrom('signing_keys').select(['kid', 'status']).where('realm_id', '=', realmId).execute();
    expect(after).toEqual([{ kid, status: 'active' }]);
  });

  it('keeps several rotations in newest-first order', async () => {
    const first = await rotateRealmKey(db, box, realmId, 'RS256', 600);
    await sleep(5);
    const second = await rotateRealmKey(db, box, realmId, 'RS256', 600);
    expect(second.demoted).toBe(1);
    const keys = await loadRealmKeys(db, box, realmId);
    expect(keys.signing[0]!.kid).toBe(second.kid);
    expect(keys.signing.map((k) => k.kid)).toContain(first.kid);
    const statuses = await db.selectFrom('signing_keys').select(['kid', 'status']).where('realm_id', '=', realmId).where('status', '=', 'active').execute();
    expect(statuses).toEqual([{ kid: second.kid, status: 'active' }]);
  });
});

describe('effective roles', () => {
  let realmId: string;
  let ids: Map<string, string>;
  /** A realm context as the server keeps one: its role graph stays cached between calls. */
  let realm: RealmContext;
  const effectiveUserRoles = async (username: string) => realm.effectiveUserRoles(await userId(realmId, username));

  beforeAll(async () => {
    realmId = (await importRealm(db, box, {
      realm: 'eff',
      roles: {
        realm: [
          { name: 'r1', composite: true, composites: { realm: ['r2'] } },
          { name: 'r2', composite: true, composites: { realm: ['r3'] } },
          { name: 'r3', composite: true, composites: { realm: ['r4'], client: { app: ['app-admin'] } } },
          { name: 'r4' },
          { name: 'parent-role' },
          { name: 'child-role' },
          { name: 'unused' },
        ],
        client: { app: [{ name: 'app-admin' }, { name: 'app-viewer' }], scoped: [{ name: 'own' }] },
      },
      clients: [
        { clientId: 'app', secret: 'x', standardFlowEnabled: false },
        { clientId: 'scoped', secret: 'y', standardFlowEnabled: false, fullScopeAllowed: false },
      ],
      groups: [
        {
          name: 'parent', realmRoles: ['parent-role'],
          subGroups: [{ name: 'child', realmRoles: ['child-role'], clientRoles: { app: ['app-viewer'] }, subGroups: [{ name: 'leaf' }] }],
        },
        { name: 'other' },
      ],
      scopeMappings: [
        { client: 'scoped', roles: ['r1'] },
        { clientScope: 'offline_access', roles: ['offline_access'] },
      ],
      users: [
        { username: 'alice', realmRoles: [], groups: ['/parent/child'] },
        { username: 'bob', realmRoles: ['r1'] },
        { username: 'carol', realmRoles: [], groups: ['/parent/child/leaf', '/other'] },
        { username: 'dave', realmRoles: [], groups: ['/parent'] },
      ],
    })).realmId;
    const roles = await db.selectFrom('roles').leftJoin('clients', 'clients.id', 'roles.client_id')
      .select(['roles.id', 'roles.name', 'clients.client_id']).where('roles.realm_id', '=', realmId).execute();
    ids = new Map(roles.map((r) => [`${r.client_id ?? ''}/${r.name}`, r.id]));
    realm = await RealmContext.load(db, box, await db.selectFrom('realms').selectAll().where('id', '=', realmId).executeTakeFirstOrThrow());
  });

  const names = (roles: ReadonlyArray<{ name: string; clientId: string | null }>): string[] =>
    roles.map((r) => `${r.clientId ?? ''}/${r.name}`).sort();

  it('inherits the roles of a subgroup and of every ancestor group', async () => {
    expect(names(await effectiveUserRoles('alice'))).toEqual(['/child-role', '/parent-role', 'app/app-viewer']);
    // Two levels below 'child': still gets child's and parent's roles.
    expect(names(await effectiveUserRoles('carol'))).toEqual(['/child-role', '/parent-role', 'app/app-viewer']);
    // Membership of the parent does not grant a subgroup's roles.
    expect(names(await effectiveUserRoles('dave'))).toEqual(['/parent-role']);
  });

  it('expands composites transitively (three levels, into client roles), realm roles first, each part by name', async () => {
    expect((await effectiveUserRoles('bob')).map((r) => `${r.clientId ?? ''}/${r.name}`))
      .toEqual(['/r1', '/r2', '/r3', '/r4', 'app/app-admin']);
  });

  // The graph stays in memory; writes from anywhere (here plain SQL, as LDAP and Finesse sync
  // write) bump the realm's graph version in the same transaction, and the next expansion reloads.
  it('sees every change to roles, composites, groups and group roles made behind its back', async () => {
    const version = async () => Number((await db.selectFrom('role_graph_versions').select('version').where('realm_id', '=', realmId).executeTakeFirstOrThrow()).version);
    expect(names(await effectiveUserRoles('bob'))).toEqual(['/r1', '/r2', '/r3', '/r4', 'app/app-admin']);
    const cached = await realm.roleGraph(0);

    const start = await version();
    await db.deleteFrom('role_composites').where('parent_id', '=', ids.get('/r2')!).where('child_id', '=', ids.get('/r3')!).execute();
    expect(await version()).toBe(start + 1);
    expect(names(await effectiveUserRoles('bob'))).toEqual(['/r1', '/r2']);
    expect(await realm.roleGraph(0)).not.toBe(cached);
    await db.insertInto('role_composites').values({ parent_id: ids.get('/r2')!, child_id: ids.get('/r3')! }).execute();
    expect(names(await effectiveUserRoles('bob'))).toEqual(['/r1', '/r2', '/r3', '/r4', 'app/app-admin']);

    // A client renamed: its roles carry the new clientId.
    await db.updateTable('clients').set({ client_id: 'app-renamed' }).where('realm_id', '=', realmId).where('client_id', '=', 'app').execute();
    expect(names(await effectiveUserRoles('bob'))).toContain('app-renamed/app-admin');
    await db.updateTable('clients').set({ client_id: 'app' }).where('realm_id', '=', realmId).where('client_id', '=', 'app-renamed').execute();

    // A role renamed; a new role mapped to a group; a group moved under another.
    await db.updateTable('roles').set({ name: 'r4-renamed' }).where('id', '=', ids.get('/r4')!).execute();
    expect(names(await effectiveUserRoles('bob'))).toContain('/r4-renamed');
    await db.updateTable('roles').set({ name: 'r4' }).where('id', '=', ids.get('/r4')!).execute();
    const other = (await db.selectFrom('groups').select('id').where('realm_id', '=', realmId).where('name', '=', 'other').executeTakeFirstOrThrow()).id;
    await db.insertInto('group_roles').values({ group_id: other, role_id: ids.get('/unused')! }).execute();
    expect(names(await effectiveUserRoles('carol'))).toEqual(['/child-role', '/parent-role', '/unused', 'app/app-viewer']);
    const parent = (await db.selectFrom('groups').select('id').where('realm_id', '=', realmId).where('name', '=', 'parent').executeTakeFirstOrThrow()).id;
    await db.updateTable('groups').set({ parent_id: parent }).where('id', '=', other).execute();
    expect(names(await effectiveUserRoles('carol'))).toEqual(['/child-role', '/parent-role', '/unused', 'app/app-viewer']);
    const before = await version();
    await db.deleteFrom('group_roles').where('group_id', '=', other).execute();
    await db.updateTable('groups').set({ parent_id: null }).where('id', '=', other).execute();
    expect(await version()).toBe(before + 2);
    expect(names(await effectiveUserRoles('carol'))).toEqual(['/child-role', '/parent-role', 'app/app-viewer']);

    // A user's own mappings are read with every expansion, not cached.
    await db.insertInto('user_roles').values({ user_id: await userId(realmId, 'dave'), role_id: ids.get('/r3')! }).execute();
    expect(names(await effectiveUserRoles('dave'))).toEqual(['/parent-role', '/r3', '/r4', 'app/app-admin']);
    await db.deleteFrom('user_roles').where('user_id', '=', await userId(realmId, 'dave')).execute();
  });

  it('keeps one version row per realm, gone with the realm', async () => {
    const { realmId: doomed } = await importRealm(db, box, { realm: 'eff-doomed', roles: { realm: [{ name: 'a', composite: true, composites: { realm: ['b'] } }, { name: 'b' }] } });
    expect(await db.selectFrom('role_graph_versions').select('version').where('realm_id', '=', doomed).executeTakeFirst()).toBeDefined();
    const context = await RealmContext.load(db, box, await db.selectFrom('realms').selectAll().where('id', '=', doomed).executeTakeFirstOrThrow());
    const before = await context.roleGraph(0);
    await db.deleteFrom('realms').where('id', '=', doomed).execute();
    expect(await db.selectFrom('role_graph_versions').select('version').where('realm_id', '=', doomed).executeTakeFirst()).toBeUndefined();
    // A request that read a version before the realm went gets the (empty) graph as it is now.
    const after = await context.roleGraph(before.version + 1);
    expect(after.version).toBe(0);
    expect(after.effectiveRoles([], [])).toEqual([]);
  });

  it('limits the role scope of a client to its scope mappings, composites expanded, plus its own roles', async () => {
    const scoped = await clientUuid(realmId, 'scoped');
    const offlineScope = (await db.selectFrom('client_scopes').select('id').where('realm_id', '=', realmId).where('name', '=', 'offline_access').executeTakeFirstOrThrow()).id;
    const expected = ['/r1', '/r2', '/r3', '/r4', 'app/app-admin', 'scoped/own'];
    const idsOf = (keys: string[]) => new Set(keys.map((k) => ids.get(k)!));
    expect(await roleScopeIds(db, scoped, [])).toEqual(idsOf(expected));
    expect(await roleScopeIds(db, scoped, [offlineScope])).toEqual(idsOf([...expected, '/offline_access']));
  });

  it('gives full group paths', async () => {
    expect(await userGroupPaths(db, await userId(realmId, 'alice'))).toEqual(['/parent/child']);
    expect(await userGroupPaths(db, await userId(realmId, 'carol'))).toEqual(['/other', '/parent/child/leaf']);
    expect(await userGroupPaths(db, await userId(realmId, 'bob'))).toEqual([]);
  });
});

describe('user sessions', () => {
  let realmA: string;
  let realmB: string;
  let userA: string;
  let userB: string;
  let appA: string;
  let appB: string;

  beforeAll(async () => {
    const realm = (name: string) => ({
      realm: name, clients: [{ clientId: 'app', secret: 's', standardFlowEnabled: false }], users: [{ username: 'u', enabled: true }],
    });
    realmA = (await importRealm(db, box, realm('sessions-a'))).realmId;
    realmB = (await importRealm(db, box, realm('sessions-b'))).realmId;
    [userA, userB] = await Promise.all([userId(realmA, 'u'), userId(realmB, 'u')]);
    [appA, appB] = await Promise.all([clientUuid(realmA, 'app'), clientUuid(realmB, 'app')]);
  });

  const newSession = (realmId: string, user: string, id: string, lifespans = { idle: 1800, max: 36_000 }) => ({
    id, offline: false, realmId, userId: user, loginUsername: 'u', ipAddress: '127.0.0.1', rememberMe: false, authTime: 1_700_000_000, lifespans,
  });
  const clientSession = (sessionId: string, clientUuid: string) => db.selectFrom('client_sessions').selectAll()
    .where('user_session_id', '=', sessionId).where('client_id', '=', clientUuid).executeTakeFirst();
  const seconds = (a: Date, b: Date) => Math.round((a.getTime() - b.getTime()) / 1000);

  it('starts a session with its first client session in one statement, expiring after the idle lifespan', async () => {
    const id = crypto.randomUUID();
    const saved = await saveUserSession(db, newSession(realmA, userA, id), { clientUuid: appA, grantId: 'g1', scope: 'openid', refreshJti: 'jti-1' });
    expect(saved).toMatchObject({ id, offline: false, realm_id: realmA, user_id: userA, login_username: 'u', auth_time: 1_700_000_000 });
    expect(seconds(saved.expires_at!, saved.started_at)).toBe(1800);
    expect(await clientSession(id, appA)).toMatchObject({ realm_id: realmA, grant_id: 'g1', scope: 'openid', current_refresh_jti: 'jti-1', latest_refresh_jti: 'jti-1', refresh_use_count: 0 });
  });

  it('renews a session (same id, same realm): keeps its start, caps the expiry at start + max, restarts the client\'s rotation', async () => {
    const id = crypto.randomUUID();
    const first = await saveUserSession(db, newSession(realmA, userA, id), { clientUuid: appA, grantId: 'g1', scope: 'openid', refreshJti: 'jti-1' });
    await db.updateTable('client_sessions').set({ refresh_use_count: 3, rotated_from_jti: 'jti-0' }).where('user_session_id', '=', id).execute();
    await sleep(20);
    const renewed = await saveUserSession(db, { ...newSession(realmA, userA, id, { idle: 1800, max: 60 }), authTime: 1_700_000_100 }, { clientUuid: appA, grantId: 'g2', scope: 'openid email', refreshJti: 'jti-2' });
    expect(renewed.started_at).toEqual(first.started_at);
    expect(renewed.auth_time).toBe(1_700_000_100);
    expect(seconds(renewed.expires_at!, first.started_at)).toBe(60);
    expect(await clientSession(id, appA)).toMatchObject({ grant_id: 'g2', scope: 'openid email', current_refresh_jti: 'jti-2', refresh_use_count: 0, rotated_from_jti: null });
  });

  it('refuses the id of another realm\'s session, with or without a client, and leaves that session alone', async () => {
    const id = crypto.randomUUID();
    const original = await saveUserSession(db, newSession(realmA, userA, id), { clientUuid: appA, grantId: 'g1', scope: 'openid', refreshJti: 'jti-1' });
    await expect(saveUserSession(db, newSession(realmB, userB, id))).rejects.toThrow();
    await expect(saveUserSession(db, newSession(realmB, userB, id), { clientUuid: appB, grantId: 'gb', scope: 'openid', refreshJti: 'jti-b' })).rejects.toThrow();
    const stored = await db.selectFrom('user_sessions').selectAll().where('id', '=', id).execute();
    expect(stored).toEqual([original]);
    expect(await clientSession(id, appB)).toBeUndefined();
  });

  it('joins a client to a live session, and restarts its rotation when it joins again', async () => {
    const id = crypto.randomUUID();
    await saveUserSession(db, newSession(realmA, userA, id));
    expect(await clientSession(id, appA)).toBeUndefined();
    await startClientSession(db, { realmId: realmA, id, offline: false, clientUuid: appA, grantId: null, scope: 'openid', refreshJti: 'j1' });
    await db.updateTable('client_sessions').set({ refresh_use_count: 2, successor_sealed: 'sealed' }).where('user_session_id', '=', id).execute();
    await startClientSession(db, { realmId: realmA, id, offline: false, clientUuid: appA, grantId: 'g', scope: 'openid profile', refreshJti: 'j2' });
    expect(await clientSession(id, appA)).toMatchObject({ grant_id: 'g', scope: 'openid profile', current_refresh_jti: 'j2', latest_refresh_jti: 'j2', refresh_use_count: 0, successor_sealed: null });
  });
});
