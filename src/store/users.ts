import type { Db } from './db.ts';
import type { User } from './schema.ts';

export function findUserById(db: Db, realmId: string, id: string): Promise<User | undefined> {
  return db.selectFrom('users').selectAll().where('realm_id', '=', realmId).where('id', '=', id).executeTakeFirst();
}

/**
 * A user who may log in with `login`: username (case-insensitive) or, when the realm allows it,
 * e-mail. Service-account users never log in interactively.
 */
export async function findUserByLogin(db: Db, realmId: string, login: string, allowEmail: boolean): Promise<User | undefined> {
  const lower = login.toLowerCase();
  const rows = await db.selectFrom('users').selectAll()
    .where('realm_id', '=', realmId)
    .where('service_account_client_id', 'is', null)
    .where((eb) => allowEmail
      ? eb.or([eb(eb.fn('lower', ['username']), '=', lower), eb(eb.fn('lower', ['email']), '=', lower)])
      : eb(eb.fn('lower', ['username']), '=', lower))
    .limit(3)
    .execute();
  // A username match wins; an e-mail shared by several users (duplicateEmailsAllowed) names nobody.
  const byUsername = rows.find((u) => u.username.toLowerCase() === lower);
  if (byUsername) return byUsername;
  return rows.length === 1 ? rows[0] : undefined;
}

export function findPasswordCredential(db: Db, userId: string): Promise<{ id: string; secret_data: string; credential_data: unknown } | undefined> {
  return db.selectFrom('credentials').select(['id', 'secret_data', 'credential_data'])
    .where('user_id', '=', userId).where('type', '=', 'password')
    .orderBy('priority').orderBy('created_at', 'desc').limit(1).executeTakeFirst();
}

export async function replacePasswordHash(db: Db, credentialId: string, secretData: string, credentialData: string): Promise<void> {
  await db.updateTable('credentials').set({ secret_data: secretData, credential_data: credentialData })
    .where('id', '=', credentialId).execute();
}
