// Password logins through Cisco Finesse (without SSO), hooked into authenticatePassword:
// - a local user linked to an enabled finesse provider (federated identity) is checked by
//   GET {finesse}/finesse/api/User/{loginId} with HTTP Basic, never against a local hash;
// - a login typed as the Finesse loginId of such a user finds that user locally;
// - a login unknown here (and to LDAP) is asked of every enabled finesse provider that creates
//   users, in alias order: the first that answers 200 gets the user created (or refreshed).
// Finesse failures (down, timing out, TLS refused, malformed XML) are thrown as
// FinesseUnavailableError / FinesseResponseError (the client logs their reasons); isFinesseFailure
// tells the caller which errors those are.
import type { RealmContext } from '../../realms/context.ts';
import type { User } from '../../store/schema.ts';
import { FinesseResponseError, FinesseUnavailableError, getFinesseUser, isValidFinesseId } from './client.ts';
import { realmFinesseProviders, type FinesseProviderConfig } from './config.ts';
import { upsertFinesseUser } from './users.ts';

export type FinessePasswordCheck =
  /** Finesse accepted the password: the user, refreshed from Finesse. */
  | { outcome: 'valid'; user: User }
  /** Finesse refused the password (401): a wrong password, counted by brute-force protection. */
  | { outcome: 'invalid' }
  /** Finesse does not know the linked loginId (404): an unknown user. */
  | { outcome: 'gone' }
  /** The user has no link to an enabled finesse provider: the local password applies. */
  | { outcome: 'not_finesse' };

export type FinesseUnknownLogin =
  /** A provider accepted the login: its user, created or refreshed. */
  | { outcome: 'valid'; user: User; provider: FinesseProviderConfig }
  /** A provider refused the password (401). There is no local user to count the failure on. */
  | { outcome: 'invalid' }
  /** No provider has the user (or none creates users, or the user could not be created). */
  | { outcome: 'none' };

/** Errors that mean "Finesse cannot answer this login now" (login failure finesse_unavailable). */
export function isFinesseFailure(error: unknown): error is FinesseUnavailableError | FinesseResponseError {
  return error instanceof FinesseUnavailableError || error instanceof FinesseResponseError;
}

/** A user linked to an enabled finesse provider whose Finesse loginId is `login`. */
export async function findUserByFinesseLoginId(realm: RealmContext, login: string): Promise<User | undefined> {
  if (login === '' || login.includes('\0')) return undefined;
  const providers = await realmFinesseProviders(realm);
  if (providers.length === 0) return undefined;
  const rows = await realm.db.selectFrom('federated_identities').innerJoin('users', 'users.id', 'federated_identities.user_id')
    .selectAll('users').select('federated_identities.identity_provider')
    .where('federated_identities.realm_id', '=', realm.id)
    .where('federated_identities.identity_provider', 'in', providers.map((p) => p.alias))
    .where('federated_identities.external_user_id', '=', login).execute();
  // Several providers may know one loginId: the first provider's user.
  for (const provider of providers) {
    const row = rows.find((r) => r.identity_provider === provider.alias);
    if (row) {
      const { identity_provider: _alias, ...user } = row;
      return user;
    }
  }
  return undefined;
}

/** The user's link to the first enabled finesse provider that has one. */
async function finesseLinkOf(realm: RealmContext, userId: string): Promise<{ provider: FinesseProviderConfig; loginId: string; loginName: string | null } | undefined> {
  const providers = await realmFinesseProviders(realm);
  if (providers.length === 0) return undefined;
  const links = await realm.db.selectFrom('federated_identities').select(['identity_provider', 'external_user_id', 'external_username'])
    .where('realm_id', '=', realm.id).where('user_id', '=', userId)
    .where('identity_provider', 'in', providers.map((p) => p.alias)).execute();
  for (const provider of providers) {
    const link = links.find((l) => l.identity_provider === provider.alias);
    if (link) return { provider, loginId: link.external_user_id, loginName: link.external_username };
  }
  return undefined;
}

/**
 * Checks the password of a user linked to an enabled finesse provider with a Basic GET of its
 * User document. The Basic user name is the login as typed when it names the user (username or
 * loginId: Finesse accepts both), else (a login by e-mail) the stored loginName.
 */
export async function checkFinessePassword(realm: RealmContext, user: User, login: string, password: string): Promise<FinessePasswordCheck> {
  const link = await finesseLinkOf(realm, user.id);
  if (!link) return { outcome: 'not_finesse' };
  // Finesse would refuse it; an empty password is never worth a request.
  if (password === '') return { outcome: 'invalid' };
  const typed = login.toLowerCase();
  const namesUser = typed === user.username.toLowerCase() || login === link.loginId || typed === link.loginName?.toLowerCase();
  const username = namesUser ? login : link.loginName ?? link.loginId;
  const answer = await getFinesseUser(link.provider, link.loginId, { basic: { username, password } });
  if (answer.status === 'unauthorized') return { outcome: 'invalid' };
  if (answer.status === 'not_found') return { outcome: 'gone' };
  const refreshed = await upsertFinesseUser(realm.db, realm.realm, link.provider, answer.user, { create: false });
  return { outcome: 'valid', user: refreshed ?? user };
}

/**
 * A login unknown locally, asked of each enabled finesse provider with createUsers (alias order)
 * with the typed login as both the User id and the Basic user name. A 401 goes on to the next
 * provider (Finesse answers 401, not 404, for credentials of a user it does not have). Providers
 * that cannot be reached are skipped; if no provider accepted the login, the first failure is
 * thrown, since an unreachable Finesse may hold the user.
 */
export async function finesseLoginForUnknownUser(realm: RealmContext, login: string, password: string): Promise<FinesseUnknownLogin> {
  if (password === '' || !isValidFinesseId(login)) return { outcome: 'none' };
  const providers = (await realmFinesseProviders(realm)).filter((p) => p.createUsers);
  let failure: FinesseUnavailableError | FinesseResponseError | undefined;
  let refused = false;
  for (const provider of providers) {
    let answer;
    try {
      answer = await getFinesseUser(provider, login, { basic: { username: login, password } });
    } catch (error) {
      if (!isFinesseFailure(error)) throw error;
      failure ??= error;
      continue;
    }
    if (answer.status === 'unauthorized') {
      refused = true;
      continue;
    }
    if (answer.status === 'not_found') continue;
    // A local user without the link holding the name is never taken over (logged): unknown here.
    const user = await upsertFinesseUser(realm.db, realm.realm, provider, answer.user, { create: true });
    return user ? { outcome: 'valid', user, provider } : { outcome: 'none' };
  }
  if (failure) throw failure;
  return refused ? { outcome: 'invalid' } : { outcome: 'none' };
}
