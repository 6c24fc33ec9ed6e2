// Username + password authentication of a realm user, shared by the hosted login pages and the
// password grant. Unknown users cost one argon2 run like known ones, so timing reveals nothing;
// a disabled account is only reported once its password was right.
import { burnVerify, hashPassword, needsRehash, parseStoredPassword, verifyPassword } from '../crypto/passwords.ts';
import type { RealmContext } from '../realms/context.ts';
import { argon2Params } from '../realms/settings.ts';
import type { User } from '../store/schema.ts';
import { findPasswordCredential, findUserByLogin, replacePasswordHash } from '../store/users.ts';

/** Keycloak's event error names. */
export type LoginFailure = 'user_not_found' | 'invalid_user_credentials' | 'user_disabled';

export type PasswordAuthentication =
  | { ok: true; user: User }
  | { ok: false; error: LoginFailure; user?: User };

export async function authenticatePassword(realm: RealmContext, login: string, password: string): Promise<PasswordAuthentication> {
  const params = argon2Params(realm.settings);
  // PostgreSQL text cannot hold NUL: no user has such a name, and it must not reach a query.
  const user = login === '' || login.includes('\0') ? undefined : await findUserByLogin(realm.db, realm.id, login, realm.settings.loginWithEmailAllowed);
  // Application users sign in only with access keys: a stored password is never usable (same cost as a missing one).
  const credential = user && !user.application ? await findPasswordCredential(realm.db, user.id) : undefined;
  if (!user || !credential) {
    await burnVerify(params);
    return user ? { ok: false, error: 'invalid_user_credentials', user } : { ok: false, error: 'user_not_found' };
  }

  let stored;
  try {
    stored = parseStoredPassword(credential.secret_data, credential.credential_data as object);
  } catch {
    // An unreadable stored hash is a failed login, not a server error.
    await burnVerify(params);
    return { ok: false, error: 'invalid_user_credentials', user };
  }
  if (!(await verifyPassword(password, stored))) return { ok: false, error: 'invalid_user_credentials', user };
  if (!user.enabled) return { ok: false, error: 'user_disabled', user };

  // Imported Keycloak hashes (pbkdf2*, older argon2 parameters) move to the realm's argon2id now.
  if (needsRehash(stored, params)) {
    const rehashed = await hashPassword(password, params);
    await replacePasswordHash(realm.db, credential.id, JSON.stringify(rehashed.secretData), JSON.stringify(rehashed.credentialData));
  }
  return { ok: true, user };
}
