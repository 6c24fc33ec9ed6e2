// Brute-force protection with Keycloak's semantics (DefaultBruteForceProtector, 26.x): a failure
// count per user in login_failures, shared by every instance through the database, temporary
// lockouts (MULTIPLE or LINEAR wait, quick-login check, reset window), permanent lockout (the user
// is disabled with disabledReason=permanentLockout) and the mixed mode (N temporary lockouts,
// then permanent). The settings are the user's effective login authenticator's.
import type { LoginEvent } from '../events/events.ts';
import type { Db } from '../store/db.ts';
import type { User } from '../store/schema.ts';
import type { AuthenticatorSettings } from './authenticator-settings.ts';

export type LockoutState = 'none' | 'temporary' | 'permanent';

/** Keycloak's UserModel.DISABLED_REASON attribute and BruteForceProtector.DISABLED_BY_PERMANENT_LOCKOUT. */
export const DISABLED_REASON = 'disabledReason';
export const PERMANENT_LOCKOUT_REASON = 'permanentLockout';

/** Keycloak's UserLoginFailureModel. lastFailure in epoch ms, failedLoginNotBefore in epoch seconds. */
export type LoginFailureRecord = {
  numFailures: number; numTemporaryLockouts: number; lastFailure: number; lastIpFailure: string | null; failedLoginNotBefore: number;
};

export type RecordedFailure = { numFailures: number; newlyLocked?: 'temporary' | 'permanent'; failedLoginNotBefore?: number };

const CLEARED: LoginFailureRecord = { numFailures: 0, numTemporaryLockouts: 0, lastFailure: 0, lastIpFailure: null, failedLoginNotBefore: 0 };
/** Keycloak keeps failedLoginNotBefore in a Java int. */
const INT_MAX = 2 ** 31 - 1;

export async function findLoginFailure(db: Db, realmId: string, userId: string, lock = false): Promise<LoginFailureRecord | undefined> {
  let query = db.selectFrom('login_failures')
    .select(['num_failures', 'num_temporary_lockouts', 'last_failure', 'last_ip_failure', 'failed_login_not_before'])
    .where('realm_id', '=', realmId).where('user_id', '=', userId);
  if (lock) query = query.forUpdate();
  const row = await query.executeTakeFirst();
  // int8 columns: pg parses them to numbers, PGlite may hand out bigints.
  return row && {
    numFailures: Number(row.num_failures), numTemporaryLockouts: Number(row.num_temporary_lockouts),
    lastFailure: Number(row.last_failure), lastIpFailure: row.last_ip_failure, failedLoginNotBefore: Number(row.failed_login_not_before),
  };
}

/** Permanent lockout without temporary lockouts: no waits, no reset window, the count only grows. */
const permanentOnly = (s: AuthenticatorSettings): boolean => s.permanentLockout && s.maxTemporaryLockouts === 0;

export function disabledByPermanentLockout(user: Pick<User, 'enabled' | 'attributes'>): boolean {
  return !user.enabled && user.attributes[DISABLED_REASON]?.[0] === PERMANENT_LOCKOUT_REASON;
}

export function temporarilyLocked(failure: LoginFailureRecord, now = Date.now()): boolean {
  return Math.floor(now / 1000) < failure.failedLoginNotBefore;
}

/** Keycloak's isPermanentlyLockedOut: the marker, or the counters past the limit (its re-check for a race). */
export function permanentlyLocked(settings: AuthenticatorSettings, user: Pick<User, 'enabled' | 'attributes'>, failure: LoginFailureRecord | undefined): boolean {
  if (disabledByPermanentLockout(user)) return true;
  if (!settings.permanentLockout || !failure) return false;
  return failure.numTemporaryLockouts > settings.maxTemporaryLockouts
    || (settings.maxTemporaryLockouts === 0 && failure.numFailures >= settings.failureFactor);
}

function stateOf(settings: AuthenticatorSettings, user: Pick<User, 'enabled' | 'attributes'>, failure: LoginFailureRecord | undefined, now: number): LockoutState {
  if (!settings.bruteForceProtected) return 'none';
  if (permanentlyLocked(settings, user, failure)) return 'permanent';
  return failure && temporarilyLocked(failure, now) ? 'temporary' : 'none';
}

/** Is the user locked now under these settings? (not protected → 'none'). Permanent = disabled by permanent lockout. */
export async function lockoutState(db: Db, realmId: string, user: User, settings: AuthenticatorSettings, now = Date.now()): Promise<LockoutState> {
  if (!settings.bruteForceProtected) return 'none';
  if (disabledByPermanentLockout(user)) return 'permanent';
  return stateOf(settings, user, await findLoginFailure(db, realmId, user.id), now);
}

type Wait = { seconds: number; quick: boolean; triggered: boolean };

function lockoutWait(settings: AuthenticatorSettings, count: number, quickFailure: boolean): Wait {
  let seconds = 0;
  if (!permanentOnly(settings) && settings.failureFactor > 0) {
    seconds = settings.bruteForceStrategy === 'MULTIPLE'
      ? settings.waitIncrementSeconds * Math.floor(count / settings.failureFactor)
      : settings.waitIncrementSeconds * (1 + count - settings.failureFactor);
  }
  let quick = false;
  if (seconds <= 0 && quickFailure) {
    seconds = settings.minimumQuickLoginWaitSeconds;
    quick = true;
  }
  if (seconds <= 0) return { seconds: 0, quick, triggered: false };
  // Permanent-only mode has no max wait (only the quick-login wait can apply there).
  if (!permanentOnly(settings)) seconds = Math.min(settings.maxFailureWaitSeconds, seconds);
  return { seconds, quick, triggered: true };
}

/** Pure wait computation for a failure count (MULTIPLE / LINEAR, quick-login minimum, max wait), for unit tests. */
export function lockoutWaitSeconds(settings: AuthenticatorSettings, count: number, quickFailure: boolean): number {
  return lockoutWait(settings, count, quickFailure).seconds;
}

/**
 * Keycloak's failure(): the state after one more counted failure at `now` (epoch ms). Pure; the
 * caller has checked that the account was not locked (failures during a lockout are not counted).
 */
export function applyFailure(settings: AuthenticatorSettings, before: LoginFailureRecord, ipAddress: string, now: number): { after: LoginFailureRecord; newlyLocked?: 'temporary' | 'permanent' } {
  const last = before.lastFailure;
  // A parallel failure may have been recorded with a later clock reading: simultaneous, not negative.
  const delta = last > 0 ? Math.max(0, now - last) : 0;
  // Failure reset time: a failure long after the previous one starts over (clearFailures resets every counter).
  let after = !permanentOnly(settings) && delta > settings.maxDeltaTimeSeconds * 1000 ? { ...CLEARED } : { ...before };
  after = { ...after, lastIpFailure: ipAddress, lastFailure: Math.max(after.lastFailure, now), numFailures: after.numFailures + 1 };

  let newlyLocked: 'temporary' | 'permanent' | undefined;
  const wait = lockoutWait(settings, after.numFailures, last > 0 && delta < settings.quickLoginCheckMilliSeconds);
  if (wait.triggered) {
    // Quick-login lockouts do not count towards maxTemporaryLockouts.
    if (!wait.quick) after.numTemporaryLockouts += 1;
    if (wait.quick || !settings.permanentLockout || after.numTemporaryLockouts <= settings.maxTemporaryLockouts) {
      const notBefore = Math.min(Math.floor(now / 1000) + wait.seconds, INT_MAX);
      after.failedLoginNotBefore = Math.max(after.failedLoginNotBefore, notBefore);
      newlyLocked = 'temporary';
    }
  }
  if (settings.permanentLockout && (after.numTemporaryLockouts > settings.maxTemporaryLockouts
    || (settings.maxTemporaryLockouts === 0 && after.numFailures >= settings.failureFactor))) {
    newlyLocked = 'permanent';
  }
  return newlyLocked ? { after, newlyLocked } : { after };
}

/**
 * Records one failed login (wrong password or wrong OTP) atomically and applies Keycloak's rules.
 * newlyLocked tells the caller to emit USER_DISABLED_BY_TEMPORARY_LOCKOUT / USER_DISABLED_BY_PERMANENT_LOCKOUT
 * (see lockoutEvent).
 *
 * One transaction per failure: the user row is locked first (the order a user delete's cascade
 * takes), then the login_failures row. Parallel failures therefore apply one after the other and
 * each re-checks the lockout under the lock, so exactly the failures before the lock are counted
 * however many requests passed the pre-password check together.
 */
export async function recordLoginFailure(db: Db, realmId: string, user: User, settings: AuthenticatorSettings, ipAddress: string, now?: number): Promise<RecordedFailure> {
  if (!settings.bruteForceProtected) return { numFailures: 0 };
  return db.transaction().execute(async (trx) => {
    const current = await trx.selectFrom('users').select(['enabled', 'attributes'])
      .where('realm_id', '=', realmId).where('id', '=', user.id).forNoKeyUpdate().executeTakeFirst();
    // A deleted user has nothing to count; a disabled one cannot log in (Keycloak refuses it before the password).
    if (!current || !current.enabled) return { numFailures: 0 };
    await trx.insertInto('login_failures').values({ realm_id: realmId, user_id: user.id })
      .onConflict((oc) => oc.columns(['realm_id', 'user_id']).doNothing()).execute();
    const before = (await findLoginFailure(trx, realmId, user.id, true)) ?? { ...CLEARED };
    // The time of the failure is read under the lock, so failures are stamped in the order they apply.
    const at = now ?? Date.now();
    if (stateOf(settings, current, before, at) !== 'none') return { numFailures: before.numFailures };

    const { after, newlyLocked } = applyFailure(settings, before, ipAddress, at);
    await trx.updateTable('login_failures').set({
      num_failures: after.numFailures, num_temporary_lockouts: after.numTemporaryLockouts, last_failure: after.lastFailure,
      last_ip_failure: after.lastIpFailure, failed_login_not_before: after.failedLoginNotBefore,
    }).where('realm_id', '=', realmId).where('user_id', '=', user.id).execute();
    if (newlyLocked === 'permanent') {
      await trx.updateTable('users').set({
        enabled: false, attributes: JSON.stringify({ ...current.attributes, [DISABLED_REASON]: [PERMANENT_LOCKOUT_REASON] }),
      }).where('id', '=', user.id).execute();
    }
    const result: RecordedFailure = { numFailures: after.numFailures, failedLoginNotBefore: after.failedLoginNotBefore };
    if (newlyLocked) result.newlyLocked = newlyLocked;
    return result;
  });
}

/** Successful login: Keycloak's success handling (clearFailures: every counter of the user, temporary lockouts included). */
export async function recordLoginSuccess(db: Db, realmId: string, userId: string, settings: AuthenticatorSettings): Promise<void> {
  if (!settings.bruteForceProtected) return;
  // A cleared row reads like no row (the attack-detection status is all zeros either way).
  await db.deleteFrom('login_failures').where('realm_id', '=', realmId).where('user_id', '=', userId).execute();
}

/** Keycloak's BruteForceProtector.sendEvent for a new lockout (no client: Keycloak sends it outside the request). */
export function lockoutEvent(userId: string, ipAddress: string, recorded: RecordedFailure): LoginEvent | undefined {
  if (!recorded.newlyLocked) return undefined;
  const details: Record<string, unknown> = { reason: 'brute_force_attack detected', num_failures: String(recorded.numFailures) };
  if (recorded.newlyLocked === 'temporary' && recorded.failedLoginNotBefore !== undefined) {
    // Keycloak writes a LocalDateTime (no zone); ours is UTC.
    details.not_before = new Date(recorded.failedLoginNotBefore * 1000).toISOString().slice(0, 19);
  }
  return {
    type: recorded.newlyLocked === 'permanent' ? 'USER_DISABLED_BY_PERMANENT_LOCKOUT' : 'USER_DISABLED_BY_TEMPORARY_LOCKOUT',
    userId, ipAddress, details,
  };
}
