// Admin REST API: attack detection (Keycloak's AttackDetectionResource): a user's brute-force
// state from login_failures, and unlocking one user or every user of the realm. Recording failures
// is the login side's job; this only reports and clears the stored state.
import {
  DISABLED_REASON, PERMANENT_LOCKOUT_REASON, findLoginFailure, permanentlyLocked, temporarilyLocked,
} from '../login/brute-force.ts';
import { authenticatorSettings, loginAuthenticatorFor } from '../login/login-authenticators.ts';
import type { Db } from '../store/db.ts';
import type { Realm, User } from '../store/schema.ts';
import { UUID } from './realms.ts';
import { noContent, ok, type AdminRouter } from './router.ts';

/** What Keycloak reports as failedLoginNotBefore for a permanent lockout (Java's Long.MAX_VALUE). */
const FOREVER = 2 ** 63;

/**
 * Keycloak's brute-force status of a user id under the user's effective login authenticator
 * (zeros when it is unprotected or nothing is stored).
 */
export async function bruteForceStatus(db: Db, realm: Realm, userId: string, user: User | undefined): Promise<Record<string, unknown>> {
  const status: Record<string, unknown> = {
    disabled: false, numFailures: 0, numTemporaryLockouts: 0, lastFailure: 0, lastIPFailure: 'n/a', failedLoginNotBefore: 0,
  };
  if (!UUID.test(userId)) return status;
  // No user, no stored failures (they go with the user); the realm default decides then.
  const settings = user ? (await loginAuthenticatorFor(db, realm, user)).settings : authenticatorSettings(realm, undefined);
  if (!settings.bruteForceProtected) return status;
  const failure = await findLoginFailure(db, realm.id, userId);
  if (!failure) return status;
  const temporary = temporarilyLocked(failure);
  if (temporary || (user && permanentlyLocked(settings, user, failure))) {
    status.disabled = true;
    status.failedLoginNotBefore = temporary ? failure.failedLoginNotBefore : FOREVER;
  }
  return {
    ...status,
    numFailures: failure.numFailures,
    numTemporaryLockouts: failure.numTemporaryLockouts,
    lastFailure: failure.lastFailure,
    lastIPFailure: failure.lastIpFailure ?? 'n/a',
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
  if (user.attributes[DISABLED_REASON]?.[0] !== PERMANENT_LOCKOUT_REASON) return undefined;
  const { [DISABLED_REASON]: _dropped, ...attributes } = user.attributes;
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
