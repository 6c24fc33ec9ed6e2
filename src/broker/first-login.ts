// From a brokered identity to a local user, as Keycloak's first broker login flow does it:
//   - a linked identity signs in its user (mappers re-applied under the provider's sync mode);
//   - a new identity creates a user, unless the provider is link-only;
//   - an identity whose e-mail (or username) belongs to an existing user is linked to it only when
//     the provider is trusted for e-mail and the e-mail matched; otherwise the user must first prove
//     the existing account (its password) before the link is made.
// Every change for one login is one transaction: a refused mapper leaves nothing half-created.
import { newId } from '../crypto/random.ts';
import type { RealmContext } from '../realms/context.ts';
import { giveNewUserDefaults } from '../realms/new-users.ts';
import type { Db } from '../store/db.ts';
import type { User } from '../store/schema.ts';
import { findUserById } from '../store/users.ts';
import { syncMode, type BrokerProvider } from './identity-providers.ts';
import { applyMapperOutcome, evaluateMappers } from './mappers.ts';
import type { BrokeredIdentity } from './types.ts';

export type BrokerLoginOutcome =
  | { kind: 'login'; user: User; created: boolean; linked: boolean }
  /** An existing account matches: the user signs in as `existing` to link. */
  | { kind: 'confirm-link'; existing: User; matchedBy: 'email' | 'username' }
  /** A Keycloak event error and the message key the user sees. */
  | { kind: 'refused'; error: string; messageKey: string; user?: User };

const MAX_USERNAME = 255;

/** The local username for a new user: the template mapper's, else the provider's username, else the e-mail, else alias.id. */
export function brokeredUsername(provider: BrokerProvider, identity: BrokeredIdentity, templated: string | undefined): string {
  const candidates = [templated, identity.username, identity.email, `${provider.alias}.${identity.id}`];
  const chosen = candidates.find((c) => typeof c === 'string' && c.trim() !== '' && !c.includes('\0'))!;
  return chosen.trim().toLowerCase().slice(0, MAX_USERNAME);
}

export async function brokerLogin(realm: RealmContext, provider: BrokerProvider, identity: BrokeredIdentity): Promise<BrokerLoginOutcome> {
  const outcome = evaluateMappers(provider.mappers, identity);
  const linked = await realm.db.selectFrom('federated_identities').select('user_id')
    .where('realm_id', '=', realm.id).where('identity_provider', '=', provider.alias).where('external_user_id', '=', identity.id)
    .executeTakeFirst();

  if (linked) {
    const user = await findUserById(realm.db, realm.id, linked.user_id);
    if (!user) return { kind: 'refused', error: 'user_not_found', messageKey: 'invalidUserMessage' };
    if (!user.enabled) return { kind: 'refused', error: 'user_disabled', messageKey: 'accountDisabledMessage', user };
    await realm.db.transaction().execute(async (trx) => {
      await updateLink(trx, realm, provider, identity, user.id);
      const mode = syncMode(provider);
      if (mode === 'FORCE') await updateProfileFields(trx, user.id, identity);
      await applyMapperOutcome(trx, realm.id, user.id, outcome, mode);
    });
    return { kind: 'login', user: (await findUserById(realm.db, realm.id, user.id))!, created: false, linked: false };
  }

  if (provider.row.link_only) return { kind: 'refused', error: 'identity_provider_login_failure', messageKey: 'identityProviderLinkOnlyMessage' };

  const username = brokeredUsername(provider, identity, outcome.username);
  const email = identity.email?.trim().toLowerCase() || undefined;
  const byEmail = email && !realm.settings.duplicateEmailsAllowed ? await userByEmail(realm, email) : undefined;
  if (byEmail) {
    if (provider.row.trust_email) {
      if (!byEmail.enabled) return { kind: 'refused', error: 'user_disabled', messageKey: 'accountDisabledMessage', user: byEmail };
      await linkExistingUser(realm, provider, identity, byEmail.id);
      return { kind: 'login', user: (await findUserById(realm.db, realm.id, byEmail.id))!, created: false, linked: true };
    }
    return { kind: 'confirm-link', existing: byEmail, matchedBy: 'email' };
  }
  const byUsername = await realm.db.selectFrom('users').selectAll().where('realm_id', '=', realm.id).where('username', '=', username).executeTakeFirst();
  // Application users (access keys) and service accounts never sign in through a provider.
  if (byUsername && (byUsername.application || byUsername.service_account_client_id !== null)) {
    return { kind: 'refused', error: 'username_in_use', messageKey: 'identityProviderUsernameTakenMessage' };
  }
  if (byUsername) return { kind: 'confirm-link', existing: byUsername, matchedBy: 'username' };

  const userId = newId();
  try {
    await realm.db.transaction().execute(async (trx) => {
      await trx.insertInto('users').values({
        id: userId, realm_id: realm.id, username, email: email ?? null, email_verified: Boolean(email && provider.row.trust_email), enabled: true,
        first_name: identity.firstName ?? null, last_name: identity.lastName ?? null, federation_link: null, service_account_client_id: null,
        application: false, attributes: JSON.stringify({}), required_actions: JSON.stringify(reviewProfileActions(email, identity)),
      }).execute();
      await insertLink(trx, realm, provider, identity, userId);
      await giveNewUserDefaults(trx, realm.realm, userId);
      await applyMapperOutcome(trx, realm.id, userId, outcome, 'import');
    });
  } catch (error) {
    // Another login created the same username or e-mail meanwhile: that account exists now.
    if (!isUniqueViolation(error)) throw error;
    const raced = await realm.db.selectFrom('users').selectAll().where('realm_id', '=', realm.id).where('username', '=', username).executeTakeFirst();
    if (raced) return { kind: 'confirm-link', existing: raced, matchedBy: 'username' };
    throw error;
  }
  return { kind: 'login', user: (await findUserById(realm.db, realm.id, userId))!, created: true, linked: false };
}

/** Links the identity to a user who proved the existing account (or matched a trusted e-mail), applying the mappers as for a new user. */
export async function linkExistingUser(realm: RealmContext, provider: BrokerProvider, identity: BrokeredIdentity, userId: string): Promise<void> {
  const outcome = evaluateMappers(provider.mappers, identity);
  await realm.db.transaction().execute(async (trx) => {
    // A user has at most one link per provider (Keycloak's rule): a new identity replaces the old link.
    await trx.deleteFrom('federated_identities').where('user_id', '=', userId).where('identity_provider', '=', provider.alias).execute();
    await insertLink(trx, realm, provider, identity, userId);
    await applyMapperOutcome(trx, realm.id, userId, outcome, 'import');
  });
}

async function userByEmail(realm: RealmContext, email: string): Promise<User | undefined> {
  return realm.db.selectFrom('users').selectAll().where('realm_id', '=', realm.id).where('email', '=', email)
    .where('service_account_client_id', 'is', null).where('application', '=', false).executeTakeFirst();
}

function storedToken(realm: RealmContext, provider: BrokerProvider, identity: BrokeredIdentity): string | null {
  return provider.row.store_token && identity.tokens ? realm.box.seal(JSON.stringify(identity.tokens)) : null;
}

async function insertLink(trx: Db, realm: RealmContext, provider: BrokerProvider, identity: BrokeredIdentity, userId: string): Promise<void> {
  await trx.insertInto('federated_identities').values({
    realm_id: realm.id, user_id: userId, identity_provider: provider.alias, external_user_id: identity.id,
    external_username: identity.username ?? null, token_sealed: storedToken(realm, provider, identity),
  }).execute();
}

async function updateLink(trx: Db, realm: RealmContext, provider: BrokerProvider, identity: BrokeredIdentity, userId: string): Promise<void> {
  const token = storedToken(realm, provider, identity);
  await trx.updateTable('federated_identities')
    .set({ external_username: identity.username ?? null, ...(token ? { token_sealed: token } : {}) })
    .where('user_id', '=', userId).where('identity_provider', '=', provider.alias).execute();
}

/** FORCE sync: the provider's e-mail and names overwrite the local ones (Keycloak's updateBrokeredUser). */
async function updateProfileFields(trx: Db, userId: string, identity: BrokeredIdentity): Promise<void> {
  const set: { email?: string; first_name?: string; last_name?: string } = {};
  if (identity.email) set.email = identity.email.trim().toLowerCase();
  if (identity.firstName) set.first_name = identity.firstName;
  if (identity.lastName) set.last_name = identity.lastName;
  if (Object.keys(set).length > 0) await trx.updateTable('users').set(set).where('id', '=', userId).execute();
}

function isUniqueViolation(error: unknown): boolean {
  return typeof error === 'object' && error !== null && (error as { code?: unknown }).code === '23505';
}

/**
 * Keycloak's default first broker login flow reviews the profile when the provider left out what the
 * default user profile requires (Review Profile, mode `missing`): e-mail, first and last name. Here
 * the account is made first and the same "Update Account Information" page follows at once (it also
 * refuses an e-mail another account holds).
 */
function reviewProfileActions(email: string | undefined, identity: BrokeredIdentity): string[] {
  return !email || !identity.firstName?.trim() || !identity.lastName?.trim() ? ['UPDATE_PROFILE'] : [];
}
