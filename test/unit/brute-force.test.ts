// Brute-force rules (Keycloak's DefaultBruteForceProtector) as pure functions, and the allowed
// client IP ranges of a login authenticator.
import { describe, expect, it } from 'vitest';

import { parseAuthenticatorSettings, type AuthenticatorSettings } from '../../src/login/authenticator-settings.ts';
import { applyFailure, lockoutEvent, lockoutWaitSeconds, permanentlyLocked, type LoginFailureRecord } from '../../src/login/brute-force.ts';
import { ipAllowed, isValidIpRange } from '../../src/login/ip-ranges.ts';

const settings = (overrides: Partial<AuthenticatorSettings>): AuthenticatorSettings =>
  parseAuthenticatorSettings({ bruteForceProtected: true, ...overrides });
const EMPTY: LoginFailureRecord = { numFailures: 0, numTemporaryLockouts: 0, lastFailure: 0, lastIpFailure: null, failedLoginNotBefore: 0 };

describe('lockoutWaitSeconds', () => {
  it('MULTIPLE waits waitIncrement × floor(count / failureFactor)', () => {
    const s = settings({ bruteForceStrategy: 'MULTIPLE', failureFactor: 3, waitIncrementSeconds: 60, maxFailureWaitSeconds: 900 });
    expect([1, 2, 3, 4, 5, 6, 9].map((n) => lockoutWaitSeconds(s, n, false))).toEqual([0, 0, 60, 60, 60, 120, 180]);
  });

  it('LINEAR waits waitIncrement × (1 + count − failureFactor)', () => {
    const s = settings({ bruteForceStrategy: 'LINEAR', failureFactor: 3, waitIncrementSeconds: 60, maxFailureWaitSeconds: 900 });
    expect([1, 2, 3, 4, 5, 6].map((n) => lockoutWaitSeconds(s, n, false))).toEqual([0, 0, 60, 120, 180, 240]);
  });

  it('caps the wait at maxFailureWaitSeconds', () => {
    const s = settings({ bruteForceStrategy: 'LINEAR', failureFactor: 1, waitIncrementSeconds: 100, maxFailureWaitSeconds: 250 });
    expect(lockoutWaitSeconds(s, 2, false)).toBe(200);
    expect(lockoutWaitSeconds(s, 3, false)).toBe(250);
    expect(lockoutWaitSeconds(s, 50, false)).toBe(250);
  });

  it('a quick failure below the threshold waits minimumQuickLoginWaitSeconds', () => {
    const s = settings({ failureFactor: 5, waitIncrementSeconds: 60, minimumQuickLoginWaitSeconds: 45 });
    expect(lockoutWaitSeconds(s, 2, true)).toBe(45);
    expect(lockoutWaitSeconds(s, 2, false)).toBe(0);
    // At the threshold the regular wait applies, quick or not.
    expect(lockoutWaitSeconds(s, 5, true)).toBe(60);
  });

  it('permanent-only lockout has no temporary wait except a quick failure (and no cap on it)', () => {
    const s = settings({ permanentLockout: true, maxTemporaryLockouts: 0, failureFactor: 3, minimumQuickLoginWaitSeconds: 2000, maxFailureWaitSeconds: 10 });
    expect(lockoutWaitSeconds(s, 3, false)).toBe(0);
    expect(lockoutWaitSeconds(s, 1, true)).toBe(2000);
  });
});

describe('applyFailure', () => {
  const t0 = 1_700_000_000_000;

  it('locks temporarily at failureFactor and records the address', () => {
    const s = settings({ failureFactor: 2, waitIncrementSeconds: 30, quickLoginCheckMilliSeconds: 0 });
    const first = applyFailure(s, EMPTY, '10.0.0.1', t0);
    expect(first.newlyLocked).toBeUndefined();
    expect(first.after).toMatchObject({ numFailures: 1, lastFailure: t0, lastIpFailure: '10.0.0.1', failedLoginNotBefore: 0 });
    const second = applyFailure(s, first.after, '10.0.0.2', t0 + 5_000);
    expect(second.newlyLocked).toBe('temporary');
    expect(second.after).toMatchObject({ numFailures: 2, numTemporaryLockouts: 1, failedLoginNotBefore: Math.floor(t0 / 1000) + 5 + 30 });
  });

  it('starts over after maxDeltaTimeSeconds without failures', () => {
    const s = settings({ failureFactor: 3, maxDeltaTimeSeconds: 60, quickLoginCheckMilliSeconds: 0 });
    const before = { ...EMPTY, numFailures: 2, numTemporaryLockouts: 1, lastFailure: t0 };
    expect(applyFailure(s, before, 'ip', t0 + 60_000).after.numFailures).toBe(3);
    expect(applyFailure(s, before, 'ip', t0 + 60_001).after).toMatchObject({ numFailures: 1, numTemporaryLockouts: 0 });
  });

  it('a quick failure locks for the minimum without counting a temporary lockout', () => {
    const s = settings({ failureFactor: 10, quickLoginCheckMilliSeconds: 1000, minimumQuickLoginWaitSeconds: 60 });
    const { after, newlyLocked } = applyFailure(s, { ...EMPTY, numFailures: 1, lastFailure: t0 }, 'ip', t0 + 500);
    expect(newlyLocked).toBe('temporary');
    expect(after).toMatchObject({ numFailures: 2, numTemporaryLockouts: 0, failedLoginNotBefore: Math.floor((t0 + 500) / 1000) + 60 });
  });

  it('a failure stamped before the previous one (parallel requests) is simultaneous, not quicker than zero', () => {
    const s = settings({ failureFactor: 5, quickLoginCheckMilliSeconds: 0, minimumQuickLoginWaitSeconds: 60 });
    const { after, newlyLocked } = applyFailure(s, { ...EMPTY, numFailures: 1, lastFailure: t0 + 10 }, 'ip', t0);
    expect(newlyLocked).toBeUndefined();
    expect(after).toMatchObject({ numFailures: 2, lastFailure: t0 + 10, failedLoginNotBefore: 0 });
  });

  it('permanent-only: locks permanently at failureFactor and ignores the reset window', () => {
    const s = settings({ permanentLockout: true, failureFactor: 3, maxDeltaTimeSeconds: 1, quickLoginCheckMilliSeconds: 0 });
    const before = { ...EMPTY, numFailures: 2, lastFailure: t0 };
    const { after, newlyLocked } = applyFailure(s, before, 'ip', t0 + 3_600_000);
    expect(newlyLocked).toBe('permanent');
    expect(after.numFailures).toBe(3);
    expect(permanentlyLocked(s, { enabled: true, attributes: {} }, after)).toBe(true);
  });

  it('mixed: the lockout after maxTemporaryLockouts is permanent', () => {
    const s = settings({ permanentLockout: true, maxTemporaryLockouts: 1, failureFactor: 2, quickLoginCheckMilliSeconds: 0 });
    const first = applyFailure(s, { ...EMPTY, numFailures: 1, lastFailure: t0 }, 'ip', t0 + 1000);
    expect(first.newlyLocked).toBe('temporary');
    expect(first.after.numTemporaryLockouts).toBe(1);
    // MULTIPLE keeps a wait above zero past the factor: the next counted failure locks again.
    const second = applyFailure(s, first.after, 'ip', t0 + 120_000);
    expect(second.newlyLocked).toBe('permanent');
    expect(second.after.numTemporaryLockouts).toBe(2);
    // The permanent lockout sets no new temporary wait.
    expect(second.after.failedLoginNotBefore).toBe(first.after.failedLoginNotBefore);
  });

  it('describes a new lockout as Keycloak\'s event', () => {
    expect(lockoutEvent('u1', '10.0.0.9', { numFailures: 2 })).toBeUndefined();
    expect(lockoutEvent('u1', '10.0.0.9', { numFailures: 5, newlyLocked: 'temporary', failedLoginNotBefore: 1_700_000_060 })).toEqual({
      type: 'USER_DISABLED_BY_TEMPORARY_LOCKOUT', userId: 'u1', ipAddress: '10.0.0.9',
      details: { reason: 'brute_force_attack detected', num_failures: '5', not_before: '2023-11-14T22:14:20' },
    });
    expect(lockoutEvent('u1', 'ip', { numFailures: 3, newlyLocked: 'permanent' })?.type).toBe('USER_DISABLED_BY_PERMANENT_LOCKOUT');
  });
});

describe('permanentlyLocked', () => {
  const s = settings({ permanentLockout: false });
  it('is the disabledReason marker of a disabled user', () => {
    expect(permanentlyLocked(s, { enabled: false, attributes: { disabledReason: ['permanentLockout'] } }, undefined)).toBe(true);
    expect(permanentlyLocked(s, { enabled: false, attributes: {} }, undefined)).toBe(false);
    // Re-enabled by an admin: the stale marker no longer locks.
    expect(permanentlyLocked(s, { enabled: true, attributes: { disabledReason: ['permanentLockout'] } }, undefined)).toBe(false);
  });
});

describe('ipAllowed', () => {
  it('allows everything without ranges', () => {
    expect(ipAllowed([], '203.0.113.7')).toBe(true);
    expect(ipAllowed([], 'garbage')).toBe(true);
  });

  it('matches IPv4 CIDR blocks and single addresses', () => {
    const ranges = ['10.0.0.0/8', '192.168.1.10'];
    expect(ipAllowed(ranges, '10.200.3.4')).toBe(true);
    expect(ipAllowed(ranges, '192.168.1.10')).toBe(true);
    expect(ipAllowed(ranges, '192.168.1.11')).toBe(false);
    expect(ipAllowed(ranges, '11.0.0.1')).toBe(false);
    expect(ipAllowed(['0.0.0.0/0'], '8.8.8.8')).toBe(true);
  });

  it('matches IPv6 blocks and addresses', () => {
    expect(ipAllowed(['2001:db8::/32'], '2001:db8:1::5')).toBe(true);
    expect(ipAllowed(['2001:db8::/32'], '2001:db9::1')).toBe(false);
    expect(ipAllowed(['::1'], '::1')).toBe(true);
    expect(ipAllowed(['::1'], '127.0.0.1')).toBe(false);
  });

  it('treats an IPv4-mapped IPv6 address as its IPv4 address, on either side', () => {
    expect(ipAllowed(['127.0.0.0/8'], '::ffff:127.0.0.1')).toBe(true);
    expect(ipAllowed(['10.0.0.0/8'], '::ffff:127.0.0.1')).toBe(false);
    expect(ipAllowed(['::ffff:10.0.0.0/104'], '10.1.2.3')).toBe(true);
    expect(ipAllowed(['::ffff:10.0.0.1'], '::ffff:10.0.0.1')).toBe(true);
    expect(ipAllowed(['::/0'], '192.0.2.1')).toBe(true);
  });

  it('never lets a broken range or address through', () => {
    expect(ipAllowed(['not-an-ip', '10.0.0.0/33', '10.1/8', '10.0.0.0/8/1', '1.2.3.4/-1'], '10.0.0.1')).toBe(false);
    expect(ipAllowed(['10.0.0.0/8'], '')).toBe(false);
    expect(ipAllowed(['10.0.0.0/8'], 'localhost')).toBe(false);
    expect(ipAllowed(['bad', '10.0.0.0/8'], '10.9.9.9')).toBe(true);
  });

  it('validates ranges for the settings', () => {
    expect(['10.0.0.0/8', '1.2.3.4', ' 192.168.0.0/16 ', '::1', '2001:db8::/32', '::ffff:10.0.0.0/104'].every(isValidIpRange)).toBe(true);
    expect(['', '10.0.0.0/', '10.0.0.256', '2001:db8::/129', '0x7f.1', '10.0.0.0/8 x'].some(isValidIpRange)).toBe(false);
  });
});
