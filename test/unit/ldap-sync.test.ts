// LDAP sync without a directory: Keycloak's SynchronizationResult status text, and when the
// periodic scheduler finds a provider's full or changed-users sync due.
import { describe, expect, it } from 'vitest';

import { dueSync } from '../../src/federation/ldap/sync-scheduler.ts';
import { ignoredSyncResult, ldapSyncLockKey, syncResult } from '../../src/federation/ldap/sync.ts';

describe('sync results', () => {
  it('words the status as Keycloak\'s getStatus()', () => {
    expect(syncResult({ added: 3, updated: 1, removed: 0, failed: 0 }).status).toBe('3 imported users, 1 updated users');
    expect(syncResult({ added: 0, updated: 2, removed: 1, failed: 0 }).status).toBe('0 imported users, 2 updated users, 1 removed users');
    expect(syncResult({ added: 1, updated: 0, removed: 0, failed: 2 }).status)
      .toBe('1 imported users, 0 updated users, 2 users failed sync! See server log for more details');
    expect(ignoredSyncResult()).toEqual({
      ignored: true, added: 0, updated: 0, removed: 0, failed: 0, status: "Synchronization ignored as it's already in progress",
    });
  });

  it('gives each provider its own advisory lock key in the signed 64-bit range', () => {
    const a = ldapSyncLockKey('6f3c2d9e-1a2b-4c5d-8e9f-0a1b2c3d4e5f');
    expect(a).toBe(ldapSyncLockKey('6f3c2d9e-1a2b-4c5d-8e9f-0a1b2c3d4e5f'));
    expect(a).not.toBe(ldapSyncLockKey('7f3c2d9e-1a2b-4c5d-8e9f-0a1b2c3d4e5f'));
    expect(a >= -(2n ** 63n) && a < 2n ** 63n).toBe(true);
  });
});

describe('periodic sync schedule', () => {
  const now = 1_000_000;
  const config = (values: Record<string, string>): Record<string, string[]> =>
    Object.fromEntries(Object.entries(values).map(([k, v]) => [k, [v]]));

  it('finds nothing due without positive periods', () => {
    expect(dueSync(config({ fullSyncPeriod: '-1', changedSyncPeriod: '-1' }), now)).toEqual({ due: undefined, nextAt: undefined });
    expect(dueSync(config({}), now)).toEqual({ due: undefined, nextAt: undefined });
    expect(dueSync(config({ fullSyncPeriod: 'often' }), now)).toEqual({ due: undefined, nextAt: undefined });
  });

  it('runs a never-run sync at once and the next one a period after the last', () => {
    expect(dueSync(config({ fullSyncPeriod: '3600' }), now)).toEqual({ due: 'full', nextAt: 3600 });
    expect(dueSync(config({ fullSyncPeriod: '3600', 'cloakroom.lastFullSync': String(now - 100) }), now))
      .toEqual({ due: undefined, nextAt: now + 3500 });
    expect(dueSync(config({ changedSyncPeriod: '60', lastSync: String(now - 60) }), now)).toEqual({ due: 'changed', nextAt: now });
  });

  it('prefers a due full sync over a due changed-users sync, and times changed syncs from any sync', () => {
    const both = config({ fullSyncPeriod: '600', changedSyncPeriod: '60', lastSync: String(now - 120), 'cloakroom.lastFullSync': String(now - 700) });
    expect(dueSync(both, now).due).toBe('full');
    // A full sync moved lastSync too: the changed-users sync waits a period from it.
    const afterFull = config({ fullSyncPeriod: '600', changedSyncPeriod: '60', lastSync: String(now - 10), 'cloakroom.lastFullSync': String(now - 10) });
    expect(dueSync(afterFull, now)).toEqual({ due: undefined, nextAt: now + 50 });
  });

  it('skips disabled providers and providers without import, as Keycloak', () => {
    expect(dueSync(config({ fullSyncPeriod: '60', enabled: 'false' }), now).due).toBeUndefined();
    expect(dueSync(config({ changedSyncPeriod: '60', importEnabled: 'false' }), now).due).toBeUndefined();
  });
});
