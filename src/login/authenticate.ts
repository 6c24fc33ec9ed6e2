// Username + password authentication of a realm user, shared by the hosted login pages and the
// password grant, under the user's effective login authenticator (lockout, allowed IP ranges).
// Unknown users and locked accounts cost one argon2 run like a real check, so timing reveals
// nothing; what needs the right password (disabled account, address not allowed) is only
// reported once the password was right.
import type { LoginEvent } from '../events/events.ts';
import { burnVerify, hashPassword, needsRehash, parseStoredPassword, verifyPassword } from '../crypto/passwords.ts';
import { checkFinessePassword, findUserByFinesseLoginId, finesseLoginForUnknownUser, isFinesseFailure, type FinessePasswordCheck } from '../federation/finesse/login.ts';
import { checkLdapPassword, importLdapUserForLogin, type LdapImport } from '../federation/ldap/login.ts';
import { LdapUnavailableError } from '../federation/ldap/types.ts';
import type { RealmContext } from '../realms/context.ts';
import { argon2Params } from '../realms/settings.ts';
import type { UserRoleRefs } from '../store/roles.ts';
import type { User } from '../store/schema.ts';
import { findPasswordCredential, findUserForPasswordLogin, replacePasswordHash } from '../store/users.ts';
import { lockoutEvent, lockoutState, recordLoginFailure, recordLoginSuccess } from './brute-force.ts';
import { ipAllowed } from './ip-ranges.ts';
import { realmLoginAuthenticator, type EffectiveAuthenticator } from './login-authenticators.ts';

/**
 * Keycloak's event error names, plus Cloakroom's ip_not_allowed, ldap_unavailable (the LDAP
 * directory that holds or may hold the user cannot be reached) and finesse_unavailable (likewise
 * Cisco Finesse, or it answered something unusable). A locked account is
 * user_temporarily_disabled, or user_disabled for a permanent lockout (Keycloak's), with `locked` set.
 */
export type LoginFailure = 'user_not_found' | 'invalid_user_credentials' | 'user_disabled' | 'user_temporarily_disabled' | 'ip_not_allowed' | 'ldap_unavailable' | 'finesse_unavailable';

/** A remote user store (LDAP, Cisco Finesse) that holds or may hold the user cannot answer. */
export type StoreUnavailable = 'ldap_unavailable' | 'finesse_unavailable';

export type PasswordAuthentication =
  | {
    ok: true; user: User; authenticator: EffectiveAuthenticator;
    /** The user has an OTP device (the caller then lists them). */
    hasOtp: boolean;
    /** The user's role and group ids, when the login lookup read them with the user. */
    roleRefs?: UserRoleRefs;
  }
  | { ok: false; error: 'user_not_found'; user?: undefined; authenticator?: undefined; locked?: undefined; newlyLocked?: undefined; lockoutEvent?: undefined }
  /** LDAP federation / Cisco Finesse: the store is unreachable (user unknown locally, or linked to that store). */
  | { ok: false; error: StoreUnavailable; user?: User; authenticator?: EffectiveAuthenticator; locked?: undefined; newlyLocked?: undefined; lockoutEvent?: undefined }
  | {
    ok: false;
    error: Exclude<LoginFailure, 'user_not_found' | StoreUnavailable>;
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
  const unusable = login === '' || login.includes('\0');
  // The password credential comes along, for a local user's hash check below.
  const candidate = unusable ? undefined : await findUserForPasswordLogin(realm.db, realm.id, login, realm.settings.loginWithEmailAllowed);
  let found = candidate?.user;
  // --- Cisco Finesse (src/federation/finesse/login.ts): a login by Finesse loginId -------------
  // Agents may type their loginId instead of their loginName: a local lookup of the link, so the
  // lockout check below still comes before any call to Finesse.
  if (!found && !unusable) found = await findUserByFinesseLoginId(realm, login);
  // --- end Cisco Finesse ----------------------------------------------------------------------
  // --- LDAP federation (src/federation/ldap/login.ts) ---------------------------------------
  // A login unknown here is looked up in the realm's LDAP providers and the user imported before
  // the password check, as Keycloak does (so brute-force protection counts its failures too).
  // Users found locally never trigger a lookup: local users work while LDAP is down.
  let ldapImport: LdapImport | undefined;
  if (!found && !unusable) {
    try {
      ldapImport = await importLdapUserForLogin(realm, login);
    } catch (error) {
      if (error instanceof LdapUnavailableError) return { ok: false, error: 'ldap_unavailable' };
      throw error;
    }
    found = ldapImport?.user;
  }
  // --- end LDAP federation ------------------------------------------------------------------
  // --- Cisco Finesse (src/federation/finesse/login.ts): a login unknown here ----------------
  // Asked of the finesse providers that create users (Basic GET of /finesse/api/User/{login}); a
  // 200 creates (or refreshes) the user and stands for a right password below. A 401 creates
  // nothing: without a local user there is nothing to count the failure on, so it is answered as
  // an unknown user (as is a 404).
  let finesseVerified = false;
  if (!found && !unusable) {
    try {
      const asked = await finesseLoginForUnknownUser(realm, login, password);
      if (asked.outcome === 'valid') {
        found = asked.user;
        finesseVerified = true;
      }
    } catch (error) {
      if (isFinesseFailure(error)) return { ok: false, error: 'finesse_unavailable' };
      throw error;
    }
  }
  // --- end Cisco Finesse ----------------------------------------------------------------------
  if (!found) {
    await burnVerify(params);
    return { ok: false, error: 'user_not_found' };
  }
  const user = found;
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

  // --- Cisco Finesse (src/federation/finesse/login.ts) ---------------------------------------
  // A user linked to an enabled finesse provider is checked by Finesse (Basic GET of its User
  // document), never against a local hash, and nothing is stored: 401 takes the wrong-credentials
  // path (counted), 404 is an unknown user, 200 refreshes the user (names, roles, teams) and
  // continues as a right local password. Users without such a link never reach Finesse.
  if (!user.application) {
    let checked: FinessePasswordCheck;
    try {
      checked = finesseVerified ? { outcome: 'valid', user } : await checkFinessePassword(realm, user, login, password);
    } catch (error) {
      if (isFinesseFailure(error)) return { ok: false, error: 'finesse_unavailable', user, authenticator };
      throw error;
    }
    if (checked.outcome === 'gone') return { ok: false, error: 'user_not_found' };
    if (checked.outcome === 'invalid') return wrongCredentials();
    if (checked.outcome === 'valid') {
      const finesseUser = checked.user;
      if (!finesseUser.enabled) return { ok: false, error: 'user_disabled', user: finesseUser, authenticator };
      if (!ipAllowed(settings.allowedIpRanges, ipAddress)) return { ok: false, error: 'ip_not_allowed', user: finesseUser, authenticator };
      if (options.clearFailuresOnSuccess !== false) await recordLoginSuccess(realm.db, realm.id, finesseUser.id, settings);
      return { ok: true, user: finesseUser, authenticator, hasOtp: await hasOtpDevice(realm, finesseUser.id) };
    }
    // 'not_finesse': no link to an enabled finesse provider; LDAP or the local password applies.
  }
  // --- end Cisco Finesse ----------------------------------------------------------------------

  // --- LDAP federation (src/federation/ldap/login.ts) ---------------------------------------
  // A user linked to an LDAP provider is checked by a bind to the directory, never against a local
  // hash; a wrong password takes the wrong-credentials path above (counted), a right one refreshes
  // the user from its entry (it may come back disabled) and continues as a right local password.
  if (user.federation_link !== null && !user.application) {
    let checked;
    try {
      checked = await checkLdapPassword(realm, user, password, ldapImport);
    } catch (error) {
      if (error instanceof LdapUnavailableError) return { ok: false, error: 'ldap_unavailable', user, authenticator };
      throw error;
    }
    if (checked.outcome === 'gone') return { ok: false, error: 'user_not_found' };
    if (checked.outcome === 'provider_disabled') return { ok: false, error: 'invalid_user_credentials', user, authenticator };
    if (checked.outcome === 'invalid') return wrongCredentials();
    if (checked.outcome === 'valid') {
      const ldapUser = checked.user;
      if (!ldapUser.enabled) return { ok: false, error: 'user_disabled', user: ldapUser, authenticator };
      if (!ipAllowed(settings.allowedIpRanges, ipAddress)) return { ok: false, error: 'ip_not_allowed', user: ldapUser, authenticator };
      if (options.clearFailuresOnSuccess !== false) await recordLoginSuccess(realm.db, realm.id, ldapUser.id, settings);
      return { ok: true, user: ldapUser, authenticator, hasOtp: await hasOtpDevice(realm, ldapUser.id) };
    }
    // 'not_ldap': the link names no LDAP provider; the local password applies.
  }
  // --- end LDAP federation ------------------------------------------------------------------

  // Application users sign in only with access keys: a stored password is never usable (same cost as a missing one).
  const credential = user.application ? undefined
    : candidate?.user.id === user.id ? candidate.password ?? undefined
    : await findPasswordCredential(realm.db, user.id);
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
  const roleRefs = candidate?.user.id === user.id ? candidate.roleRefs : undefined;
  return { ok: true, user, authenticator, hasOtp: Boolean(credential.has_otp), ...(roleRefs ? { roleRefs } : {}) };
}

/** Whether the user has an OTP device (federated users have no password credential to ask with). */
async function hasOtpDevice(realm: RealmContext, userId: string): Promise<boolean> {
  const row = await realm.db.selectFrom('credentials').select('id').where('user_id', '=', userId).where('type', '=', 'otp').limit(1).executeTakeFirst();
  return row !== undefined;
}
