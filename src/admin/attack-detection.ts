// Admin REST API: attack detection (Keycloak's AttackDetectionResource): a user's brute-force
// state from login_failures, and unlocking one user or every user of the realm. Recording failures
// is the login side's job; this only reports and clears the stored state.
import type { Db } from '../store/db.ts';
import type { Realm, User } from '../store/schema.ts';
import { UUID } from './realms.ts';
import { noContent, ok, type AdminRouter } from './router.ts';

/** Keycloak's BruteForceProtector.DISABLED_BY_PERMANENT_LOCKOUT, kept in the `disabledReason` attribute. */
const PERMANENT_LOCKOUT_REASON = 'permanentLockout';
/** What Keycloak reports as failedLoginNotBefore for a permanent lockout (Java's Long.MAX_VALUE). */
const FOREVER = 2 ** 63;

type BruteForceSettings = { protected: boolean; permanentLockout: boolean; maxTemporaryLockouts: number; failureFactor: number };

function bruteForceSettings(realm: Realm): BruteForceSettings {
  const s = realm.settings as Record<string, unknown>;
  const int = (value: unknown, fallback: number): number => (typeof value === 'number' && Number.isInteger(value) ? value : fallback);
  return {
    protected: s.bruteForceProtected === true,
    permanentLockout: s.permanentLockout === true,
    maxTemporaryLockouts: int(s.maxTemporaryLockouts, 0),
    failureFactor: int(s.failureFactor, 30),
  };
}

type LoginFailure = {
  num_failures: number; num_temporary_lockouts: number; last_failure: number; last_ip_failure: string | null; failed_login_not_before: number;
};

async function findLoginFailure(db: Db, realmId: string, userId: string): Promise<LoginFailure | undefined> {
  const row = await db.selectFrom('login_failures')
    .select(['num_failures', 'num_temporary_lockouts', 'last_failure', 'last_ip_failure', 'failed_login_not_before'])
    .where('realm_id', '=', realmId).where('user_id', '=', userId).executeTakeFirst();
  // int8 columns: pg parses them to numbers, PGlite may hand out bigints.
  return row && {
    num_failures: Number(row.num_failures), num_temporary_lockouts: Number(row.num_temporary_lockouts),
    last_failure: Number(row.last_failure), last_ip_failure: row.last_ip_failure,
    failed_login_not_before: Number(row.failed_login_not_before),
  };
}

/** failed_login_not_before holds epoch seconds, as Keycloak's UserLoginFailureModel does. */
const temporarilyLocked = (failure: LoginFailure): boolean => Math.floor(Date.now() / 1000) < failure.failed_login_not_before;

function permanentlyLocked(settings: BruteForceSettings, user: User, failure: LoginFailure): boolean {
  if (!user.enabled && user.attributes.disabledReason?.[0] === PERMANENT_LOCKOUT_REASON) return true;
  if (!settings.permanentLockout) return false;
  return failure.num_temporary_lockouts > settings.maxTemporaryLockouts
    || (settings.maxTemporaryLockouts === 0 && failure.num_failures >= settings.failureFactor);
}

/** Keycloak's brute-force status of a user id (zeros when the realm is unprotected or nothing is stored). */
export async function bruteForceStatus(db: Db, realm: Realm, userId: string, user: User | undefined): Promise<Record<string, unknown>> {
  const status: Record<string, unknown> = {
    disabled: false, numFailures: 0, numTemporaryLockouts: 0, lastFailure: 0, lastIPFailure: 'n/a', failedLoginNotBefore: 0,
  };
  const settings = bruteForceSettings(realm);
  if (!settings.protected || !UUID.test(userId)) return status;
  const failure = await findLoginFailure(db, realm.id, userId);
  if (!failure) return status;
  const temporary = temporarilyLocked(failure);
  if (temporary || (user && permanentlyLocked(settings, user, failure))) {
    status.disabled = true;
    status.failedLoginNotBefore = temporary ? failure.failed_login_not_before : FOREVER;
  }
  return {
    ...status,
    numFailures: failure.num_failures,
    numTemporaryLockouts: failure.num_temporary_lockouts,
    lastFailure: failure.last_failure,
    lastIPFailure: failure.last_ip_failure ?? 'n/a',
  };
}

/**
 * What re-enabling a user does in Keycloak (UserResource.updateUser with enabled=true): a disabled
 * or temporarily locked user loses its login failures, and a permanent lockout's marker goes.
 * Returns the attributes without that marker when it was there.
 */
export async function releaseLockout(db: Db, realm: Realm, user: User): Promise<Record<string, string[]> | undefined> {
  const failure = await findLoginFailure(db, realm.id, user.id);
  if (failure && (!user.enabled || temporarilyLocked(failure))) await clearLoginFailures(db, realm.id, user.id);
  if (user.attributes.disabledReason?.[0] !== PERMANENT_LOCKOUT_REASON) return undefined;
  const { disabledReason: _dropped, ...attributes } = user.attributes;
  return attributes;
}

export async function clearLoginFailures(db: Db, realmId: string, userId?: string): Promise<void> {
  let query = db.deleteFrom('login_failures').where('realm_id', '=', realmId);
  if (userId !== undefined) query = query.where('user_id', '=', userId);
  await query.execute();
}

export function registerAttackDetectionRoutes(admin: AdminRouter): void {
  const { db } = admin.services;
  const base = '/attack-detection/brute-force/users';

  // Keycloak answers the zero status for an id that names no user (and stores nothing to find).
  admin.realm('get', `${base}/:userId`, { permission: 'view-users' }, async (req) => {
    const userId = req.params.userId ?? '';
    const user = UUID.test(userId)
      ? await db.selectFrom('users').selectAll().where('realm_id', '=', req.realm.id).where('id', '=', userId).executeTakeFirst()
      : undefined;
    return ok(await bruteForceStatus(db, req.realm, userId, user));
  });

  admin.realm('delete', `${base}/:userId`, { permission: 'manage-users', changesRealm: false }, async (req) => {
    const userId = req.params.userId ?? '';
    if (UUID.test(userId)) await clearLoginFailures(db, req.realm.id, userId);
    return noContent();
  });

  admin.realm('delete', base, { permission: 'manage-users', changesRealm: false }, async (req) => {
    await clearLoginFailures(db, req.realm.id);
    return noContent();
  });
}
