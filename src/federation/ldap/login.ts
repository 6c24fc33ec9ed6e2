// Password logins through LDAP, as Keycloak's UserStorageManager and LDAPStorageProvider do them:
// a login unknown locally is looked up in the realm's enabled LDAP providers (priority order) and
// the entry imported at once, before any password check (so the brute-force protection counts
// the failures of imported users like any other); a user linked to a provider is checked by a bind
// as its entry's DN (or, when it has a local password, e.g. one set while the provider is UNSYNCED,
// against that hash only, as Keycloak's isValid), and refreshed from the entry when it matches.
// Local users never reach this module. Directory failures throw LdapUnavailableError.
import { ResultCodeError } from 'ldapts';

import { burnVerify, parseStoredPassword, verifyPassword } from '../../crypto/passwords.ts';
import { UUID } from '../../crypto/random.ts';
import type { RealmContext } from '../../realms/context.ts';
import { argon2Params } from '../../realms/settings.ts';
import type { User } from '../../store/schema.ts';
import { findPasswordCredential } from '../../store/users.ts';
import { ldapBindResult } from './client.ts';
import { USER_STORAGE_PROVIDER_TYPE, realmLdapProviders } from './config.ts';
import { findLdapEntry, findLdapEntryByDn, hasControlCharacters, ldapUuid } from './directory.ts';
import { LDAP_ENTRY_DN, LdapImportConflictError, ldapIdOf, upsertFederatedUser } from './federation.ts';
import { ldapLog } from './log.ts';
import { LdapMappingError, ldapAttributesToRead, mapLdapUser, msadBindOutcome } from './mappers.ts';
import { LdapUnavailableError, type LdapEntry, type LdapProviderConfig } from './types.ts';

/** A user found in LDAP and imported for this login; its entry spares the bind step a second search. */
export type LdapImport = { user: User; entry: LdapEntry; provider: LdapProviderConfig };

export type LdapPasswordCheck =
  /** The bind worked: the user, refreshed from its entry (it may now be disabled). */
  | { outcome: 'valid'; user: User }
  /** The directory refused the password. */
  | { outcome: 'invalid' }
  /** The entry is gone from LDAP (the local user was removed, unless the provider is UNSYNCED). */
  | { outcome: 'gone' }
  /** The user's provider is disabled: no login (Keycloak shows such users as disabled). */
  | { outcome: 'provider_disabled' }
  /** The federation link names no LDAP provider of the realm: the local password applies. */
  | { outcome: 'not_ldap' };


/**
 * Imports the user a login (username, or e-mail when the realm allows it) names in the first
 * provider that has it. undefined when none does, or when the entry cannot be imported (a local
 * user has the name: Keycloak reports a conflict; here the login is an unknown user). Providers
 * that cannot be reached are skipped; if nobody was found, their LdapUnavailableError is thrown,
 * as an unreachable directory may hold the user.
 */
export async function importLdapUserForLogin(realm: RealmContext, login: string): Promise<LdapImport | undefined> {
  if (login.trim() === '' || hasControlCharacters(login)) return undefined;
  const providers = await realmLdapProviders(realm);
  let unavailable: LdapUnavailableError | undefined;
  for (const provider of providers) {
    let entry: LdapEntry | undefined;
    try {
      entry = await findLdapEntry(provider, login, { byEmail: realm.settings.loginWithEmailAllowed, attributes: ldapAttributesToRead(provider) });
    } catch (error) {
      const failure = asUnavailable(provider, error);
      unavailable ??= failure;
      continue;
    }
    if (!entry) continue;
    try {
      // importEnabled=false keeps Keycloak's users in memory only; sessions here need a local user, so they are imported alike.
      const mapped = await mapLdapUser(provider, entry);
      const { user } = await upsertFederatedUser(realm.db, realm.realm, provider, mapped);
      return { user, entry, provider };
    } catch (error) {
      if (error instanceof LdapImportConflictError || error instanceof LdapMappingError) {
        ldapLog().warn({ realm: realm.name, provider: provider.name, dn: entry.dn, reason: error.message }, 'LDAP user not imported');
        return undefined;
      }
      throw error;
    }
  }
  if (unavailable) throw unavailable;
  return undefined;
}

/**
 * A search the directory answered with an error (insufficient access, no such base DN...): the
 * provider cannot serve logins now, like an unreachable one. Anything else is rethrown.
 */
function asUnavailable(provider: LdapProviderConfig, error: unknown): LdapUnavailableError {
  if (error instanceof LdapUnavailableError) return error;
  if (error instanceof ResultCodeError) {
    ldapLog().warn({ provider: provider.name, err: error.message }, 'LDAP user search failed');
    return new LdapUnavailableError(provider.id, `LDAP provider "${provider.name}" answered the user search with an error: ${error.message}`, { cause: error });
  }
  throw error;
}

/** Whether `password` matches a local password credential (an unreadable hash matches nothing). */
async function localPasswordMatches(password: string, credential: { secret_data: string; credential_data: unknown }): Promise<boolean> {
  try {
    return await verifyPassword(password, parseStoredPassword(credential.secret_data, credential.credential_data as object));
  } catch {
    return false;
  }
}

/** The user's entry: at its LDAP_ENTRY_DN, else by its username; it must carry the user's LDAP_ID. */
export async function ldapEntryOfUser(provider: LdapProviderConfig, user: Pick<User, 'username' | 'attributes'>): Promise<LdapEntry | undefined> {
  const attributes = ldapAttributesToRead(provider);
  const known = ldapIdOf(user);
  const matches = (entry: LdapEntry | undefined): entry is LdapEntry => entry !== undefined && (known === undefined || ldapUuid(provider, entry) === known);
  const dn = user.attributes[LDAP_ENTRY_DN]?.[0];
  const byDn = dn ? await findLdapEntryByDn(provider, dn, { attributes }) : undefined;
  if (matches(byDn)) return byDn;
  const byName = await findLdapEntry(provider, user.username, { byEmail: false, attributes });
  return matches(byName) ? byName : undefined;
}

/**
 * Checks a federated user's password with a bind as its entry's DN, or against its local password
 * credential when it has one (LDAP then only says the entry still exists). `imported` is the entry
 * the login just imported (no second search, no second refresh). With the msad mapper on a WRITABLE
 * provider, AD's "password expired / must change" bind errors let the user in with
 * UPDATE_PASSWORD required, and "account disabled" disables the user (Keycloak's mapper).
 */
export async function checkLdapPassword(realm: RealmContext, user: User, password: string, imported?: LdapImport): Promise<LdapPasswordCheck> {
  const link = user.federation_link;
  if (link === null) return { outcome: 'not_ldap' };
  const provider = imported?.provider ?? (await realmLdapProviders(realm)).find((p) => p.id === link);
  if (!provider) {
    // A disabled provider's users cannot log in; a link to something else is not ours.
    const component = UUID.test(link)
      ? await realm.db.selectFrom('components').select('id').where('realm_id', '=', realm.id).where('id', '=', link)
        .where('provider_type', '=', USER_STORAGE_PROVIDER_TYPE).where('provider_id', '=', 'ldap').executeTakeFirst()
      : undefined;
    if (!component) return { outcome: 'not_ldap' };
    await burnVerify(argon2Params(realm.settings));
    return { outcome: 'provider_disabled' };
  }

  let entry: LdapEntry | undefined;
  try {
    entry = imported?.entry ?? await ldapEntryOfUser(provider, user);
  } catch (error) {
    throw asUnavailable(provider, error);
  }
  if (!entry) {
    // Keycloak removes the local user of a vanished entry when it next meets it.
    if (provider.editMode !== 'UNSYNCED') {
      await realm.db.deleteFrom('users').where('id', '=', user.id).where('federation_link', '=', provider.id).execute();
      ldapLog().warn({ realm: realm.name, provider: provider.name, userId: user.id }, 'LDAP entry gone: local user removed');
    }
    return { outcome: 'gone' };
  }

  // Keycloak's LDAPStorageProvider.isValid: a password configured locally (set while the provider
  // is UNSYNCED, or imported with the user) is the user's password, and LDAP is not asked.
  const local = await findPasswordCredential(realm.db, user.id);
  let adOutcome: ReturnType<typeof msadBindOutcome>;
  if (local) {
    if (!await localPasswordMatches(password, local)) return { outcome: 'invalid' };
  } else {
    const bind = await ldapBindResult(provider, entry.dn, password);
    adOutcome = bind.ok ? undefined : msadBindOutcome(provider, bind.diagnostic);
    if (!bind.ok && !adOutcome) return { outcome: 'invalid' };
  }
  if (imported && !adOutcome) return { outcome: 'valid', user: imported.user };

  try {
    const mapped = await mapLdapUser(provider, entry);
    if (adOutcome === 'update-password') mapped.requiredActions = [...new Set([...mapped.requiredActions, 'UPDATE_PASSWORD'])];
    if (adOutcome === 'disabled') {
      mapped.enabled = false;
      mapped.mapped.enabled = true;
    }
    const { user: refreshed } = await upsertFederatedUser(realm.db, realm.realm, provider, mapped);
    return { outcome: 'valid', user: refreshed };
  } catch (error) {
    // The password was right; a refresh that cannot be applied leaves the user as it was.
    if (error instanceof LdapImportConflictError || error instanceof LdapMappingError) {
      ldapLog().warn({ realm: realm.name, provider: provider.name, userId: user.id, reason: error.message }, 'LDAP user not refreshed');
      return { outcome: 'valid', user };
    }
    throw error;
  }
}
