// Admin REST API: attack detection. Recording login failures belongs to the login side, so the
// stored state (login_failures) is written straight to the database here.
import crypto from 'node:crypto';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import type { Db } from '../../../src/store/db.ts';
import { passwordToken, startAdminBench, type AdminBench } from '../../support/admin.ts';

let bench: AdminBench;
let db: Db;
let realmId: string;
const users: Record<string, string> = {};

beforeAll(async () => {
  bench = await startAdminBench();
  db = bench.server.store.db;
  await bench.admin.realms.create({ realm: 'ad', enabled: true, bruteForceProtected: true, failureFactor: 3 });
  await bench.admin.realms.create({ realm: 'ad-other', enabled: true });
  realmId = (await db.selectFrom('realms').select('id').where('name', '=', 'ad').executeTakeFirstOrThrow()).id;
  for (const name of ['locked', 'recent', 'clean', 'permanent']) {
    users[name] = (await bench.admin.users.create({ realm: 'ad', username: name, enabled: true })).id;
  }
}, 60_000);
afterAll(async () => { await bench?.stop(); });

const now = (): number => Math.floor(Date.now() / 1000);

async function storeFailure(user: string, values: { failures: number; lockouts?: number; notBefore?: number; ip?: string }): Promise<number> {
  const lastFailure = Date.now() - 5_000;
  await db.insertInto('login_failures').values({
    realm_id: realmId, user_id: users[user]!, num_failures: values.failures, num_temporary_lockouts: values.lockouts ?? 0,
    last_failure: lastFailure, last_ip_failure: values.ip ?? '10.0.0.7', failed_login_not_before: values.notBefore ?? 0,
  }).onConflict((oc) => oc.columns(['realm_id', 'user_id']).doUpdateSet({
    num_failures: values.failures, num_temporary_lockouts: values.lockouts ?? 0, last_failure: lastFailure, failed_login_not_before: values.notBefore ?? 0,
  })).execute();
  return lastFailure;
}

async function status(userId: string, token?: string): Promise<{ status: number; body: Record<string, unknown> }> {
  const response = await bench.api(`/ad/attack-detection/brute-force/users/${userId}`, token ? { token } : {});
  return { status: response.status, body: await response.json() as Record<string, unknown> };
}

const ZERO = { disabled: false, numFailures: 0, numTemporaryLockouts: 0, lastFailure: 0, lastIPFailure: 'n/a', failedLoginNotBefore: 0 };

describe('brute-force status', () => {
  it('reports a temporary lockout while it lasts', async () => {
    const notBefore = now() + 600;
    const lastFailure = await storeFailure('locked', { failures: 3, lockouts: 1, notBefore });
    expect(await bench.admin.attackDetection.findOne({ realm: 'ad', id: users.locked! })).toEqual({
      disabled: true, numFailures: 3, numTemporaryLockouts: 1, lastFailure, lastIPFailure: '10.0.0.7', failedLoginNotBefore: notBefore,
    });
  });

  it('reports failures without a lockout once the wait is over', async () => {
    await storeFailure('recent', { failures: 2, notBefore: now() - 10 });
    expect((await status(users.recent!)).body).toMatchObject({ disabled: false, numFailures: 2, failedLoginNotBefore: 0, lastIPFailure: '10.0.0.7' });
  });

  it('answers zeros when nothing is stored, for unknown and malformed ids too', async () => {
    expect(await status(users.clean!)).toEqual({ status: 200, body: ZERO });
    expect(await status(crypto.randomUUID())).toEqual({ status: 200, body: ZERO });
    expect(await status('not-a-uuid')).toEqual({ status: 200, body: ZERO });
  });

  it('answers zeros when the realm is not brute-force protected', async () => {
    await bench.admin.realms.update({ realm: 'ad' }, { bruteForceProtected: false });
    expect((await status(users.locked!)).body).toEqual(ZERO);
    await bench.admin.realms.update({ realm: 'ad' }, { bruteForceProtected: true });
    expect((await status(users.locked!)).body).toMatchObject({ disabled: true });
  });

  it('reports a permanent lockout (failure count or the disabled marker) with no end', async () => {
    await bench.admin.realms.update({ realm: 'ad' }, { permanentLockout: true });
    await storeFailure('permanent', { failures: 3 });
    const counted = (await status(users.permanent!)).body;
    expect(counted).toMatchObject({ disabled: true, numFailures: 3 });
    expect(counted.failedLoginNotBefore).toBeGreaterThan(9e18);
    await bench.admin.realms.update({ realm: 'ad' }, { permanentLockout: false });
    expect((await status(users.permanent!)).body).toMatchObject({ disabled: false });

    // Keycloak's permanent lockout disables the user with disabledReason=permanentLockout.
    await db.updateTable('users').set({ enabled: false, attributes: JSON.stringify({ disabledReason: ['permanentLockout'], keep: ['me'] }) })
      .where('id', '=', users.permanent!).execute();
    expect((await status(users.permanent!)).body).toMatchObject({ disabled: true });

    // Re-enabling the user clears its failures and the marker, as Keycloak's user update does.
    await bench.admin.users.update({ realm: 'ad', id: users.permanent! }, { enabled: true });
    expect((await status(users.permanent!)).body).toEqual(ZERO);
    expect(await bench.admin.users.findOne({ realm: 'ad', id: users.permanent! })).toMatchObject({ enabled: true, attributes: { keep: ['me'] } });
  });
});

describe('clearing', () => {
  it('unlocks one user, then every user of the realm', async () => {
    await storeFailure('locked', { failures: 5, notBefore: now() + 600 });
    await storeFailure('recent', { failures: 1 });
    await bench.admin.attackDetection.del({ realm: 'ad', id: users.locked! });
    expect((await status(users.locked!)).body).toEqual(ZERO);
    expect((await status(users.recent!)).body).toMatchObject({ numFailures: 1 });
    expect((await bench.api(`/ad/attack-detection/brute-force/users/${crypto.randomUUID()}`, { method: 'DELETE' })).status).toBe(204);
    expect((await bench.api('/ad/attack-detection/brute-force/users/nonsense', { method: 'DELETE' })).status).toBe(204);

    await bench.admin.attackDetection.delAll({ realm: 'ad' });
    expect((await status(users.recent!)).body).toEqual(ZERO);
    expect(await db.selectFrom('login_failures').select('user_id').where('realm_id', '=', realmId).execute()).toEqual([]);
  });
});

describe('permissions', () => {
  async function adminToken(realm: string, roles: string[]): Promise<string> {
    const username = `adm-${crypto.randomBytes(4).toString('hex')}`;
    const password = crypto.randomBytes(12).toString('base64url');
    const { id } = await bench.admin.users.create({ realm, username, enabled: true, credentials: [{ type: 'password', value: password }] });
    const realmRow = await db.selectFrom('realms').select('id').where('name', '=', realm).executeTakeFirstOrThrow();
    const management = await db.selectFrom('clients').select('id').where('realm_id', '=', realmRow.id).where('client_id', '=', 'realm-management').executeTakeFirstOrThrow();
    for (const role of await db.selectFrom('roles').select('id').where('client_id', '=', management.id).where('name', 'in', roles).execute()) {
      await db.insertInto('user_roles').values({ user_id: id, role_id: role.id }).execute();
    }
    return passwordToken(bench.server.url, realm, username, password);
  }

  it('needs view-users to read and manage-users to clear; other realms get 403', async () => {
    await storeFailure('locked', { failures: 2, notBefore: now() + 600 });
    const viewer = await adminToken('ad', ['view-users']);
    const querier = await adminToken('ad', ['query-users']);
    const manager = await adminToken('ad', ['manage-users']);
    const outsider = await adminToken('ad-other', ['realm-admin']);
    const del = (path: string, token: string) => bench.api(`/ad/attack-detection/brute-force/users${path}`, { method: 'DELETE', token });

    expect((await status(users.locked!, viewer)).status).toBe(200);
    expect((await del(`/${users.locked}`, viewer)).status).toBe(403);
    expect((await del('', viewer)).status).toBe(403);
    expect((await status(users.locked!, querier)).status).toBe(403);
    expect((await status(users.locked!, outsider)).status).toBe(403);
    expect((await del(`/${users.locked}`, outsider)).status).toBe(403);
    expect((await del('', outsider)).status).toBe(403);
    expect((await status(users.locked!)).body).toMatchObject({ numFailures: 2 });

    expect((await status(users.locked!, manager)).status).toBe(200);
    expect((await del(`/${users.locked}`, manager)).status).toBe(204);
    expect((await status(users.locked!)).body).toEqual(ZERO);
  });
});
