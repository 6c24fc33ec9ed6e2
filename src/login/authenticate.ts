// Username + password authentication of a realm user, shared by the hosted login pages and the
// password grant, under the user's effective login authenticator (lockout, allowed IP ranges).
// Unknown users and locked accounts cost one argon2 run like a real check, so timing reveals
// nothing; what needs the right password (disabled account, address not allowed) is only
// reported once the password was right.
import type { LoginEvent } from '../events/events.ts';
import { burnVerify, hashPassword, needsRehash, parseStoredPassword, verifyPassword } from '../crypto/passwords.ts';
import type { RealmContext } from '../realms/context.ts';
import { argon2Params } from '../realms/settings.ts';
import type { User } from '../store/schema.ts';
import { findPasswordCredential, findUserByLogin, replacePasswordHash } from '../store/users.ts';
import { lockoutEvent, lockoutState, recordLoginFailure, recordLoginSuccess } from './brute-force.ts';
import { ipAllowed } from './ip-ranges.ts';
import { realmLoginAuthenticator, type EffectiveAuthenticator } from './login-authenticators.ts';

/**
 * Keycloak's event error names, plus Cloakroom's ip_not_allowed. A locked account is
 * user_temporarily_disabled, or user_disabled for a permanent lockout (Keycloak's), with `locked` set.
 */
export type LoginFailure = 'user_not_found' | 'invalid_user_credentials' | 'user_disabled' | 'user_temporarily_disabled' | 'ip_not_allowed';

export type PasswordAuthentication =
  | { ok: true; user: User; authenticator: EffectiveAuthenticator; /** The user has an OTP device (the caller then lists them). */ hasOtp: boolean }
  | { ok: false; error: 'user_not_found'; user?: undefined; authenticator?: undefined; locked?: undefined; newlyLocked?: undefined; lockoutEvent?: undefined }
  | {
    ok: false;
    error: Exclude<LoginFailure, 'user_not_found'>;
    user: User;
    authenticator: EffectiveAuthenticator;
    /** Set when the account was locked before this attempt: show the wrong-password message. */
    locked?: 'temporary' | 'permanent';
    /** This wrong password locked the account: emit `lockoutEvent`. */
    newlyLocked?: 'temporary' | 'permanent';
    lockoutEvent?: LoginEvent;
  };

export type PasswordOptions = {
  /**
   * Clear the user's login failures when the password is right (default). A caller with a second
   * factor still to come passes false and calls recordLoginSuccess once that succeeds too:
   * otherwise every right password would reset the count and OTP guesses would never lock.
   */
  clearFailuresOnSuccess?: boolean;
};

export async function authenticatePassword(realm: RealmContext, login: string, password: string, ipAddress: string, options: PasswordOptions = {}): Promise<PasswordAuthentication> {
  const params = argon2Params(realm.settings);
  // PostgreSQL text cannot hold NUL: no user has such a name, and it must not reach a query.
  const user = login === '' || login.includes('\0') ? undefined : await findUserByLogin(realm.db, realm.id, login, realm.settings.loginWithEmailAllowed);
  if (!user) {
    await burnVerify(params);
    return { ok: false, error: 'user_not_found' };
  }
  const authenticator = await realmLoginAuthenticator(realm, user);
  const { settings } = authenticator;

  // A locked account is refused without looking at the password (Keycloak checks before it), and
  // the attempt is not counted.
  const lockout = await lockoutState(realm.db, realm.id, user, settings);
  if (lockout !== 'none') {
    await burnVerify(params);
    return { ok: false, error: lockout === 'temporary' ? 'user_temporarily_disabled' : 'user_disabled', user, authenticator, locked: lockout };
  }

  const wrongCredentials = async (): Promise<PasswordAuthentication> => {
    // Application users never sign in with a password, and a disabled account cannot sign in at
    // all: neither counts towards a lockout (Keycloak refuses a disabled user before its password).
    if (user.application || !user.enabled) return { ok: false, error: 'invalid_user_credentials', user, authenticator };
    const recorded = await recordLoginFailure(realm.db, realm.id, user, settings, ipAddress);
    const event = lockoutEvent(user.id, ipAddress, recorded);
    return event && recorded.newlyLocked
      ? { ok: false, error: 'invalid_user_credentials', user, authenticator, newlyLocked: recorded.newlyLocked, lockoutEvent: event }
      : { ok: false, error: 'invalid_user_credentials', user, authenticator };
  };

  // Application users sign in only with access keys: a stored password is never usable (same cost as a missing one).
  const credential = user.application ? undefined : await findPasswordCredential(realm.db, user.id);
  if (!credential) {
    await burnVerify(params);
    return wrongCredentials();
  }
  let stored;
  try {
    stored = parseStoredPassword(credential.secret_data, credential.credential_data as object);
  } catch {
    // An unreadable stored hash is a failed login, not a server error.
    await burnVerify(params);
    return wrongCredentials();
  }
  if (!(await verifyPassword(password, stored))) return wrongCredentials();
  if (!user.enabled) return { ok: false, error: 'user_disabled', user, authenticator };
  // After the password, so the answer tells nothing to someone without it; not a brute-force failure.
  if (!ipAllowed(settings.allowedIpRanges, ipAddress)) return { ok: false, error: 'ip_not_allowed', user, authenticator };

  if (options.clearFailuresOnSuccess !== false) await recordLoginSuccess(realm.db, realm.id, user.id, settings);
  // Imported Keycloak hashes (pbkdf2*, older argon2 parameters) move to the realm's argon2id now.
  if (needsRehash(stored, params)) {
    const rehashed = await hashPassword(password, params);
    await replacePasswordHash(realm.db, credential.id, JSON.stringify(rehashed.secretData), JSON.stringify(rehashed.credentialData));
  }
  return { ok: true, user, authenticator, hasOtp: Boolean(credential.has_otp) };
}
