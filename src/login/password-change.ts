// Setting a user's password under a login authenticator's rules, with Keycloak's history
// semantics (PasswordCredentialProvider, HistoryPasswordPolicyProvider, AgePasswordPolicyProvider):
// the current password keeps its credential row (id, priority) and gets the new hash; the old
// hash moves to a `password-history` credential (Keycloak's type), trimmed to the policy's depth.
// History credentials are never used to log in (findPasswordCredential reads type 'password').
// Users of an LDAP provider follow its edit mode (see changePassword).
import { hashPassword, parseStoredPassword, verifyPassword, type StoredPassword } from '../crypto/passwords.ts';
import { newId } from '../crypto/random.ts';
import type { SecretBox } from '../crypto/secret-box.ts';
import { hasFinesseLink } from '../federation/finesse/users.ts';
import { LdapPasswordError, ldapProviderOfUser, ldapReadOnlyError, updateLdapPassword } from '../federation/ldap/password.ts';
import type { LdapProviderConfig } from '../federation/ldap/types.ts';
import { argon2Params, parseRealmSettings } from '../realms/settings.ts';
import type { Db } from '../store/db.ts';
import type { Realm, User } from '../store/schema.ts';
import type { AuthenticatorSettings } from './authenticator-settings.ts';
import { checkPassword, historyPolicy, parsePasswordPolicy, policyOrder, type PolicyEntry, type PolicyViolation } from './password-policy.ts';

export const PASSWORD = 'password';
export const PASSWORD_HISTORY = 'password-history';

/** The message of a refused change for a Finesse user (messages_*.json and password-policy.ts). */
export const FINESSE_PASSWORD_MESSAGE = 'finessePasswordManagedMessage';

export type PasswordChangeResult = { ok: true } | { ok: false; violation: PolicyViolation };

const DAY_MS = 86_400_000;

type StoredRow = { id: string; secret_data: string; credential_data: unknown; created_at: Date };

async function matches(password: string, row: StoredRow): Promise<boolean> {
  try {
    return await verifyPassword(password, parseStoredPassword(row.secret_data, row.credential_data as object));
  } catch {
    return false; // an unreadable stored hash matches nothing
  }
}

async function anyMatches(password: string, rows: StoredRow[]): Promise<boolean> {
  for (const row of rows) if (await matches(password, row)) return true;
  return false;
}

function storedOfType(db: Db, userId: string, type: string): Promise<StoredRow[]> {
  return db.selectFrom('credentials').select(['id', 'secret_data', 'credential_data', 'created_at'])
    .where('user_id', '=', userId).where('type', '=', type).orderBy('priority').orderBy('created_at', 'desc').execute();
}

const newestFirst = (a: StoredRow, b: StoredRow): number => new Date(b.created_at).getTime() - new Date(a.created_at).getTime();

/**
 * The first rule `password` breaks for `user`, in Keycloak's order: the stateless rules, plus
 * passwordHistory(N) (not the current password nor the N-1 newest history entries) and
 * passwordAge(days) (not the current password nor a history entry set within that many days).
 */
export async function passwordViolation(
  db: Db, user: Pick<User, 'id' | 'username' | 'email'>, password: string, entries: PolicyEntry[], now: Date = new Date(),
): Promise<PolicyViolation | undefined> {
  const stateless = checkPassword(entries, { password, username: user.username, email: user.email });
  const { depth, ageDays } = historyPolicy(entries);
  let current: StoredRow[] | undefined;
  let history: StoredRow[] | undefined;
  const currentRows = async (): Promise<StoredRow[]> => (current ??= await storedOfType(db, user.id, PASSWORD));
  const historyRows = async (): Promise<StoredRow[]> => (history ??= (await storedOfType(db, user.id, PASSWORD_HISTORY)).sort(newestFirst));
  for (const id of policyOrder(entries)) {
    if (stateless?.rule === id) return stateless;
    if (id === 'passwordHistory' && depth !== -1) {
      const recent = depth > 1 ? (await historyRows()).slice(0, depth - 1) : [];
      if (await anyMatches(password, await currentRows()) || await anyMatches(password, recent)) {
        return { rule: id, messageKey: 'invalidPasswordHistoryMessage', params: [String(depth)] };
      }
    }
    if (id === 'passwordAge' && ageDays !== -1) {
      const since = now.getTime() - ageDays * DAY_MS;
      const recent = ageDays > 0 ? (await historyRows()).filter((row) => new Date(row.created_at).getTime() > since) : [];
      if (await anyMatches(password, await currentRows()) || await anyMatches(password, recent)) {
        return { rule: id, messageKey: 'invalidPasswordGenericMessage', params: [String(ageDays)] };
      }
    }
  }
  return stateless;
}

/**
 * Stores a new password hash as Keycloak's PasswordCredentialProvider.createCredential does: the
 * existing password credential keeps its id and priority and gets the hash (created now, label
 * cleared); the old hash becomes a password-history credential when the policy keeps history
 * (passwordHistory > 1 or passwordAge > 0); history beyond the newest N-1 and older than the age
 * window is deleted. Runs in the caller's transaction.
 */
export async function storePasswordHash(
  trx: Db, realmId: string, userId: string, stored: { secretData: string; credentialData: string }, entries: PolicyEntry[], now: Date = new Date(),
): Promise<void> {
  const { depth, ageDays } = historyPolicy(entries);
  const keepAgeDays = Math.max(0, ageDays);
  const all = await trx.selectFrom('credentials').selectAll().where('user_id', '=', userId)
    .orderBy('priority').orderBy('created_at').orderBy('id').execute();
  const current = all.filter((c) => c.type === PASSWORD).sort((a, b) => a.priority - b.priority || newestFirst(a, b))[0];
  let lastPriority = all.reduce((max, c) => Math.max(max, c.priority), 0);
  let moved: string | undefined;
  if (!current) {
    await trx.insertInto('credentials').values({
      id: newId(), realm_id: realmId, user_id: userId, type: PASSWORD, user_label: null,
      secret_data: stored.secretData, credential_data: stored.credentialData, priority: lastPriority + 10, created_at: now,
    }).execute();
    lastPriority += 10;
  } else {
    // Replaced rather than updated: created_at is insert-only in the schema, and it must say when
    // this password was set (forceExpiredPasswordChange reads it).
    await trx.deleteFrom('credentials').where('id', '=', current.id).execute();
    await trx.insertInto('credentials').values({
      id: current.id, realm_id: realmId, user_id: userId, type: PASSWORD, user_label: null,
      secret_data: stored.secretData, credential_data: stored.credentialData, priority: current.priority, created_at: now,
    }).execute();
    if (depth > 1 || keepAgeDays > 0) {
      moved = newId();
      // The history entry keeps the old password's creation date (Keycloak copies the model).
      await trx.insertInto('credentials').values({
        id: moved, realm_id: realmId, user_id: userId, type: PASSWORD_HISTORY, user_label: current.user_label,
        secret_data: current.secret_data, credential_data: JSON.stringify(current.credential_data), priority: lastPriority + 10,
        created_at: current.created_at,
      }).execute();
    }
  }
  const history = (await trx.selectFrom('credentials').select(['id', 'created_at']).where('user_id', '=', userId)
    .where('type', '=', PASSWORD_HISTORY).execute()).sort((a, b) => new Date(b.created_at).getTime() - new Date(a.created_at).getTime());
  const oldest = now.getTime() - keepAgeDays * DAY_MS;
  const stale = history.slice(Math.max(0, depth - 1))
    .filter((row) => row.id !== moved && new Date(row.created_at).getTime() < oldest).map((row) => row.id);
  if (stale.length > 0) await trx.deleteFrom('credentials').where('id', 'in', stale).execute();
}

/** The argon2 parameters for the authenticator: its hashIterations policy, the realm's memory and parallelism. */
function hashParams(realm: Pick<Realm, 'settings'>, settings: AuthenticatorSettings) {
  return argon2Params(parseRealmSettings({ ...realm.settings, passwordPolicy: settings.passwordPolicy }));
}

export type PasswordChangeOptions = {
  /** Ask for a new password at the next login (UPDATE_PASSWORD); otherwise that action is removed. */
  temporary?: boolean;
  /** false: the policy is not checked (imports). */
  enforcePolicy?: boolean;
  /** Opens LDAP providers' bind credentials: required to change the password of an LDAP-federated user. */
  box?: SecretBox;
  /** An administrator sets the password (Keycloak's isAdminRequest: no AD password-policy hints). */
  adminRequest?: boolean;
};

/** Rules that compare with stored hashes: a WRITABLE LDAP user's old passwords live in LDAP, so they cannot apply. */
const HISTORY_RULES = new Set(['passwordHistory', 'passwordAge']);

/**
 * Sets a user's password under the authenticator's rules: the policy (unless enforcePolicy is
 * false) including history, then the hash with the realm's argon2 parameters, the credential
 * swap with history, and the required actions: temporary adds UPDATE_PASSWORD, otherwise it is
 * removed. One transaction (the caller's, when `db` already is one).
 *
 * LDAP-federated users (federation link to an LDAP provider of the realm; `options.box` needed),
 * per the provider's edit mode as Keycloak's LDAPStorageProvider.updateCredential:
 * READ_ONLY throws LdapPasswordError 'read-only' before anything else; WRITABLE checks the rules
 * without passwordHistory/passwordAge, writes the password to LDAP (src/federation/ldap/password.ts)
 * and stores no local hash (a stale local one is removed: it would win at login); UNSYNCED is
 * a local user here (the local hash then decides its logins). A directory that cannot be reached
 * throws LdapUnavailableError, a refusal LdapPasswordError ('rejected'; AD's password policy
 * refusal comes back as the invalidPasswordGenericMessage violation, as Keycloak's).
 */
export async function changePassword(
  db: Db, realm: Pick<Realm, 'id' | 'settings'>, user: Pick<User, 'id' | 'username' | 'email'>, password: string,
  settings: AuthenticatorSettings, options: PasswordChangeOptions = {},
): Promise<PasswordChangeResult> {
  const entries = parsePasswordPolicy(settings.passwordPolicy);
  // Cisco Finesse users sign in with their Finesse password: a local one would never be read.
  if (await hasFinesseLink(db, realm.id, user.id)) return { ok: false, violation: { rule: 'finesse', messageKey: FINESSE_PASSWORD_MESSAGE, params: [] } };
  const provider = await federatedProvider(db, realm.id, user.id, options.box);
  // Keycloak refuses a read-only user before any rule is looked at.
  if (provider?.config.editMode === 'READ_ONLY') throw ldapReadOnlyError(provider.config);
  if (provider?.config.editMode === 'WRITABLE') {
    if (options.enforcePolicy !== false) {
      const violation = await passwordViolation(db, user, password, entries.filter((e) => !HISTORY_RULES.has(e.id)));
      if (violation) return { ok: false, violation };
    }
    try {
      await updateLdapPassword(provider.config, provider.user, password, { adminRequest: options.adminRequest === true, mustChange: options.temporary === true });
    } catch (error) {
      if (error instanceof LdapPasswordError && error.messageKey) return { ok: false, violation: { rule: 'ldap', messageKey: error.messageKey, params: [] } };
      throw error;
    }
    const write = async (trx: Db): Promise<void> => {
      const row = await trx.selectFrom('users').select('required_actions').where('id', '=', user.id).forUpdate().executeTakeFirst();
      if (!row) throw new Error('user not found');
      await trx.deleteFrom('credentials').where('user_id', '=', user.id).where('type', '=', PASSWORD).execute();
      await setRequiredActions(trx, user.id, row.required_actions, options.temporary === true);
    };
    if (db.isTransaction) await write(db);
    else await db.transaction().execute(write);
    return { ok: true };
  }
  if (options.enforcePolicy !== false) {
    const violation = await passwordViolation(db, user, password, entries);
    if (violation) return { ok: false, violation };
  }
  const stored: StoredPassword = await hashPassword(password, hashParams(realm, settings));
  const write = async (trx: Db): Promise<void> => {
    // The user's row lock serializes concurrent changes of one user's password.
    const row = await trx.selectFrom('users').select('required_actions').where('id', '=', user.id).forUpdate().executeTakeFirst();
    if (!row) throw new Error('user not found');
    await storePasswordHash(trx, realm.id, user.id, { secretData: JSON.stringify(stored.secretData), credentialData: JSON.stringify(stored.credentialData) }, entries);
    await setRequiredActions(trx, user.id, row.required_actions, options.temporary === true);
  };
  if (db.isTransaction) await write(db);
  else await db.transaction().execute(write);
  return { ok: true };
}

/** temporary adds UPDATE_PASSWORD, a permanent password removes it. */
async function setRequiredActions(trx: Db, userId: string, current: string[], temporary: boolean): Promise<void> {
  const actions = temporary ? [...new Set([...current, 'UPDATE_PASSWORD'])] : current.filter((a) => a !== 'UPDATE_PASSWORD');
  if (actions.length !== current.length || actions.some((a, i) => a !== current[i])) {
    await trx.updateTable('users').set({ required_actions: JSON.stringify(actions) }).where('id', '=', userId).execute();
  }
}

/** The LDAP provider of a federated user (undefined for local users and links to no LDAP provider). */
async function federatedProvider(
  db: Db, realmId: string, userId: string, box: SecretBox | undefined,
): Promise<{ config: LdapProviderConfig; user: Pick<User, 'username' | 'attributes' | 'enabled'> } | undefined> {
  const row = await db.selectFrom('users').select(['username', 'attributes', 'enabled', 'federation_link']).where('id', '=', userId).executeTakeFirst();
  if (!row || row.federation_link === null) return undefined;
  // Without the box, an LDAP user's password would silently become a local hash.
  if (!box) throw new Error('changePassword: options.box is required for federated users');
  const config = await ldapProviderOfUser(db, box, realmId, row.federation_link);
  if (config === 'disabled') {
    throw new LdapPasswordError('provider-disabled', row.federation_link, 'the user\'s LDAP provider is disabled', {
      keycloakMessage: 'the user\'s LDAP provider is disabled',
    });
  }
  return config ? { config, user: row } : undefined;
}

/** When the current password was set (its credential's creation date), for forceExpiredPasswordChange. */
export async function passwordSetAt(db: Db, userId: string): Promise<Date | undefined> {
  const row = await db.selectFrom('credentials').select('created_at').where('user_id', '=', userId).where('type', '=', PASSWORD)
    .orderBy('priority').orderBy('created_at', 'desc').limit(1).executeTakeFirst();
  return row ? new Date(row.created_at) : undefined;
}
