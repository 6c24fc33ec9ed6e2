// Login authenticators: which password rules, lockout and MFA requirement apply to a user. The
// user's own assignment wins, then the nearest group's (a subgroup before its parent), then the
// realm default. The default's Keycloak fields are the realm settings themselves (one source of
// truth for realm JSON and the Admin API); its row only keeps Cloakroom's extras (mfa, IP ranges).
import { sql } from 'kysely';

import { newId } from '../crypto/random.ts';
import type { RealmContext } from '../realms/context.ts';
import type { Db } from '../store/db.ts';
import type { LoginAuthenticator, Realm, User } from '../store/schema.ts';
import {
  EXTRA_FIELDS, REALM_MIRRORED_FIELDS, parseAuthenticatorSettings, type AuthenticatorSettings,
} from './authenticator-settings.ts';

export type EffectiveAuthenticator = { id: string; name: string; isDefault: boolean; settings: AuthenticatorSettings };

export const DEFAULT_AUTHENTICATOR_NAME = 'default';
export const DEFAULT_AUTHENTICATOR_DESCRIPTION = 'Realm default (the realm password policy, brute force and OTP settings)';

function pick(source: Record<string, unknown>, fields: readonly string[]): Record<string, unknown> {
  return Object.fromEntries(fields.filter((f) => source[f] !== undefined).map((f) => [f, source[f]]));
}

/** Settings of an authenticator row: the realm's Keycloak fields for the default, its own config otherwise. */
export function authenticatorSettings(realm: Pick<Realm, 'settings'>, row: Pick<LoginAuthenticator, 'is_default' | 'config'> | undefined): AuthenticatorSettings {
  if (!row || row.is_default) {
    return parseAuthenticatorSettings({ ...pick(realm.settings, REALM_MIRRORED_FIELDS), ...pick(row?.config ?? {}, EXTRA_FIELDS) });
  }
  return parseAuthenticatorSettings(row.config);
}

/** The realm's default authenticator row, created on first use. */
export async function ensureDefaultAuthenticator(db: Db, realmId: string): Promise<LoginAuthenticator> {
  const existing = await db.selectFrom('login_authenticators').selectAll().where('realm_id', '=', realmId).where('is_default', '=', true).executeTakeFirst();
  if (existing) return existing;
  // A named authenticator may already use the name: the default then gets a suffixed one.
  const taken = await db.selectFrom('login_authenticators').select('id').where('realm_id', '=', realmId)
    .where(sql`lower(name)`, '=', DEFAULT_AUTHENTICATOR_NAME).executeTakeFirst();
  await db.insertInto('login_authenticators').values({
    id: newId(), realm_id: realmId, name: taken ? `${DEFAULT_AUTHENTICATOR_NAME}-${Date.now()}` : DEFAULT_AUTHENTICATOR_NAME,
    description: DEFAULT_AUTHENTICATOR_DESCRIPTION, is_default: true, config: JSON.stringify({}),
  }).onConflict((oc) => oc.column('realm_id').where('is_default', '=', true).doNothing()).execute();
  return db.selectFrom('login_authenticators').selectAll().where('realm_id', '=', realmId).where('is_default', '=', true).executeTakeFirstOrThrow();
}

/**
 * loginAuthenticatorFor through the realm's cached context: a realm without named authenticators
 * (most) needs no query. The context is rebuilt whenever an authenticator or the realm changes.
 */
export async function realmLoginAuthenticator(realm: RealmContext, user: Pick<User, 'id' | 'login_authenticator_id'>): Promise<EffectiveAuthenticator> {
  const rows = await realm.memo('login-authenticators', () => realm.db.selectFrom('login_authenticators').selectAll().where('realm_id', '=', realm.id).execute());
  if (rows.some((row) => !row.is_default)) return loginAuthenticatorFor(realm.db, realm.realm, user);
  const row = rows[0];
  return { id: row?.id ?? '', name: row?.name ?? DEFAULT_AUTHENTICATOR_NAME, isDefault: true, settings: authenticatorSettings(realm.realm, row) };
}

/**
 * The authenticator that applies to `user` now. Reads the database on every call: an assignment
 * or a changed authenticator applies at the user's next login on every instance.
 */
export async function loginAuthenticatorFor(db: Db, realm: Realm, user: Pick<User, 'id' | 'login_authenticator_id'>): Promise<EffectiveAuthenticator> {
  const row = await sql<LoginAuthenticator>`
    WITH RECURSIVE chain AS (
      SELECT g.id, g.parent_id, g.login_authenticator_id, g.name, 0 AS depth
        FROM user_groups ug JOIN groups g ON g.id = ug.group_id WHERE ug.user_id = ${user.id}
      UNION ALL
      SELECT p.id, p.parent_id, p.login_authenticator_id, p.name, c.depth + 1
        FROM groups p JOIN chain c ON p.id = c.parent_id
    )
    SELECT la.* FROM login_authenticators la
     WHERE la.realm_id = ${realm.id}
       AND la.id = coalesce(
         ${user.login_authenticator_id}::uuid,
         (SELECT login_authenticator_id FROM chain WHERE login_authenticator_id IS NOT NULL ORDER BY depth, name, id LIMIT 1),
         (SELECT id FROM login_authenticators WHERE realm_id = ${realm.id} AND is_default))
  `.execute(db);
  const found = row.rows[0];
  if (!found) return { id: '', name: DEFAULT_AUTHENTICATOR_NAME, isDefault: true, settings: authenticatorSettings(realm, undefined) };
  return { id: found.id, name: found.name, isDefault: found.is_default, settings: authenticatorSettings(realm, found) };
}
