// Brute-force protection end to end: the password grant over HTTP against a real server, realms
// configured through the official admin client, the state read back through attack detection.
// Each scenario has its own realm (its own lockout settings).
import crypto from 'node:crypto';

import type RealmRepresentation from '@keycloak/keycloak-admin-client/lib/defs/realmRepresentation.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { startAdminBench, type AdminBench } from '../support/admin.ts';
import { postForm } from '../support/server.ts';

let bench: AdminBench;
const CLIENT = 'app';
const PASSWORD = 'Right-Password-1';

beforeAll(async () => {
  bench = await startAdminBench();
}, 60_000);
afterAll(async () => { await bench?.stop(); });

type Grant = { status: number; text: string; body: { access_token?: string; error?: string; error_description?: string } };

async function grant(realm: string, username: string, password: string): Promise<Grant> {
  const res = await postForm(`${bench.server.url}/realms/${realm}/protocol/openid-connect/token`, {
    grant_type: 'password', client_id: CLIENT, username, password,
  });
  const text = await res.text();
  return { status: res.status, text, body: JSON.parse(text) as Grant['body'] };
}

const wrong = (realm: string, username: string): Promise<Grant> => grant(realm, username, `wrong-${crypto.randomBytes(4).toString('hex')}`);

/** A realm with these brute-force settings (quick-login check off unless given), a direct-grant client and users. */
async function realmWith(settings: RealmRepresentation, usernames: string[]): Promise<{ realm: string; ids: Record<string, string> }> {
  const realm = `bf-${crypto.randomBytes(4).toString('hex')}`;
  await bench.admin.realms.create({ realm, enabled: true, bruteForceProtected: true, quickLoginCheckMilliSeconds: 0, ...settings });
  await bench.admin.clients.create({ realm, clientId: CLIENT, publicClient: true, directAccessGrantsEnabled: true, standardFlowEnabled: false });
  const ids: Record<string, string> = {};
  for (const username of usernames) {
    ids[username] = (await bench.admin.users.create({
      realm, username, enabled: true, credentials: [{ type: 'password', value: PASSWORD, temporary: false }],
    })).id;
  }
  return { realm, ids };
}

const status = async (realm: string, id: string): Promise<Record<string, any>> =>
  (await bench.admin.attackDetection.findOne({ realm, id }))!;

/** Sleeps until a temporary lockout is over (failedLoginNotBefore is in epoch seconds). */
async function waitOut(realm: string, id: string): Promise<void> {
  const { failedLoginNotBefore } = await status(realm, id);
  const ms = failedLoginNotBefore * 1000 - Date.now() + 100;
  if (ms > 0) await new Promise((resolve) => setTimeout(resolve, ms));
}

describe('temporary lockout', () => {
  it('50 parallel wrong passwords count exactly failureFactor failures; the right one then gets the wrong-password answer', async () => {
    const { realm, ids } = await realmWith({ failureFactor: 5, waitIncrementSeconds: 600 }, ['victim']);
    const answers = await Promise.all(Array.from({ length: 50 }, () => wrong(realm, 'victim')));
    expect(new Set(answers.map((a) => `${a.status} ${a.text}`))).toEqual(new Set([
      `401 ${JSON.stringify({ error: 'invalid_grant', error_description: 'Invalid user credentials' })}`,
    ]));
    expect(await status(realm, ids.victim!)).toMatchObject({ numFailures: 5, numTemporaryLockouts: 1, disabled: true, lastIPFailure: expect.any(String) });

    const right = await grant(realm, 'victim', PASSWORD);
    expect(right.status).toBe(401);
    expect(right.text).toBe(answers[0]!.text);
    // Attempts while locked are not counted.
    expect((await status(realm, ids.victim!)).numFailures).toBe(5);
  });

  it('failures below the factor do not lock, and the right password clears them', async () => {
    const { realm, ids } = await realmWith({ failureFactor: 5 }, ['typo']);
    await Promise.all(Array.from({ length: 4 }, () => wrong(realm, 'typo')));
    expect(await status(realm, ids.typo!)).toMatchObject({ numFailures: 4, disabled: false });
    const right = await grant(realm, 'typo', PASSWORD);
    expect(right.status).toBe(200);
    expect(right.body.access_token).toBeTruthy();
    expect(await status(realm, ids.typo!)).toMatchObject({ numFailures: 0, disabled: false, lastIPFailure: 'n/a' });
  });

  // A 2 s wait ends 1 to 2 s after the failure (failedLoginNotBefore has whole seconds): time enough to see it.
  it('ends after the wait', async () => {
    const { realm, ids } = await realmWith({ failureFactor: 2, waitIncrementSeconds: 2, maxFailureWaitSeconds: 2 }, ['patient']);
    await wrong(realm, 'patient');
    await wrong(realm, 'patient');
    expect((await status(realm, ids.patient!)).disabled).toBe(true);
    expect((await grant(realm, 'patient', PASSWORD)).status).toBe(401);
    await waitOut(realm, ids.patient!);
    expect((await grant(realm, 'patient', PASSWORD)).status).toBe(200);
  });

  it('failures further apart than maxDeltaTimeSeconds do not add up', async () => {
    const { realm, ids } = await realmWith({ failureFactor: 2, maxDeltaTimeSeconds: 1 }, ['slow']);
    await wrong(realm, 'slow');
    await new Promise((resolve) => setTimeout(resolve, 1_200));
    await wrong(realm, 'slow');
    expect(await status(realm, ids.slow!)).toMatchObject({ numFailures: 1, disabled: false });
    expect((await grant(realm, 'slow', PASSWORD)).status).toBe(200);
  });

  it('attack detection unlocks one user, then all', async () => {
    const { realm, ids } = await realmWith({ failureFactor: 2, waitIncrementSeconds: 600 }, ['one', 'two']);
    for (const username of ['one', 'two']) {
      await wrong(realm, username);
      await wrong(realm, username);
      expect((await grant(realm, username, PASSWORD)).status).toBe(401);
    }
    await bench.admin.attackDetection.del({ realm, id: ids.one! });
    expect((await grant(realm, 'one', PASSWORD)).status).toBe(200);
    expect((await grant(realm, 'two', PASSWORD)).status).toBe(401);
    await bench.admin.attackDetection.delAll({ realm });
    expect((await grant(realm, 'two', PASSWORD)).status).toBe(200);
  });
});

describe('permanent lockout', () => {
  /** Events are written off the request path: polls for a moment. */
  async function eventsOf(realm: string, type: string, userId: string, match: (e: Record<string, any>) => boolean = () => true): Promise<Array<Record<string, any>>> {
    for (let i = 0; i < 40; i++) {
      const events = (await bench.admin.realms.findEvents({ realm, type: type as never })).filter((e) => e.userId === userId && match(e));
      if (events.length > 0) return events;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    return [];
  }

  it('disables the user, stores the event, and re-enabling unlocks', async () => {
    const { realm, ids } = await realmWith({
      permanentLockout: true, failureFactor: 3, eventsEnabled: true,
      enabledEventTypes: ['LOGIN', 'LOGIN_ERROR', 'USER_DISABLED_BY_PERMANENT_LOCKOUT', 'USER_DISABLED_BY_TEMPORARY_LOCKOUT'],
    }, ['perm']);
    await bench.admin.users.update({ realm, id: ids.perm! }, { attributes: { team: ['blue'] } });
    for (let i = 0; i < 3; i++) await wrong(realm, 'perm');

    const user = await bench.admin.users.findOne({ realm, id: ids.perm! });
    expect(user?.enabled).toBe(false);
    expect(user?.attributes).toEqual({ team: ['blue'], disabledReason: ['permanentLockout'] });
    const [event] = await eventsOf(realm, 'USER_DISABLED_BY_PERMANENT_LOCKOUT', ids.perm!);
    expect(event?.details).toMatchObject({ reason: 'brute_force_attack detected', num_failures: '3' });

    // Locked, not "Account disabled": the same answer as a wrong password, and Keycloak's event error.
    const right = await grant(realm, 'perm', PASSWORD);
    expect(right).toMatchObject({ status: 401, body: { error: 'invalid_grant', error_description: 'Invalid user credentials' } });
    expect(await eventsOf(realm, 'LOGIN_ERROR', ids.perm!, (e) => e.error === 'user_disabled')).toHaveLength(1);
    expect(await eventsOf(realm, 'LOGIN_ERROR', ids.perm!, (e) => e.error === 'invalid_user_credentials')).toHaveLength(3);

    await bench.admin.users.update({ realm, id: ids.perm! }, { enabled: true });
    expect((await bench.admin.users.findOne({ realm, id: ids.perm! }))?.attributes).toEqual({ team: ['blue'] });
    expect((await grant(realm, 'perm', PASSWORD)).status).toBe(200);
  });

  it('mixed: after maxTemporaryLockouts temporary lockouts the next one is permanent', async () => {
    const { realm, ids } = await realmWith({
      permanentLockout: true, maxTemporaryLockouts: 1, failureFactor: 2, waitIncrementSeconds: 2, maxFailureWaitSeconds: 2,
      eventsEnabled: true, enabledEventTypes: ['USER_DISABLED_BY_TEMPORARY_LOCKOUT', 'USER_DISABLED_BY_PERMANENT_LOCKOUT'],
    }, ['mixed']);
    await wrong(realm, 'mixed');
    await wrong(realm, 'mixed');
    expect(await status(realm, ids.mixed!)).toMatchObject({ disabled: true, numTemporaryLockouts: 1 });
    expect((await bench.admin.users.findOne({ realm, id: ids.mixed! }))?.enabled).toBe(true);
    expect(await eventsOf(realm, 'USER_DISABLED_BY_TEMPORARY_LOCKOUT', ids.mixed!)).toHaveLength(1);

    await waitOut(realm, ids.mixed!);
    await wrong(realm, 'mixed');
    expect((await bench.admin.users.findOne({ realm, id: ids.mixed! }))?.enabled).toBe(false);
    expect(await status(realm, ids.mixed!)).toMatchObject({ disabled: true, numTemporaryLockouts: 2 });
    expect(await eventsOf(realm, 'USER_DISABLED_BY_PERMANENT_LOCKOUT', ids.mixed!)).toHaveLength(1);
    expect((await grant(realm, 'mixed', PASSWORD)).status).toBe(401);
  });
});
