import type { Db } from './db.ts';
import type { Insertable } from 'kysely';

import type { SigningKey, SigningKeyTable } from './schema.ts';

/** Keys still published: the active ones and passive ones not yet past their retirement. */
export function listPublishedKeys(db: Db, realmId: string): Promise<SigningKey[]> {
  return db.selectFrom('signing_keys').selectAll()
    .where('realm_id', '=', realmId)
    .where((eb) => eb.or([eb('retire_at', 'is', null), eb('retire_at', '>', new Date())]))
    // Newest first: oidc-provider signs with the first key that fits the algorithm.
    .orderBy('status', 'asc').orderBy('created_at', 'desc')
    .execute();
}

export async function insertKey(db: Db, key: Insertable<SigningKeyTable>): Promise<void> {
  await db.insertInto('signing_keys').values(key).execute();
}

/** Demotes the realm's active keys of one algorithm; they stay published until retireAt. */
export async function demoteActiveKeys(db: Db, realmId: string, alg: string, retireAt: Date): Promise<number> {
  const rows = await db.updateTable('signing_keys').set({ status: 'passive', retire_at: retireAt })
    .where('realm_id', '=', realmId).where('alg', '=', alg).where('status', '=', 'active')
    .returning('kid').execute();
  return rows.length;
}

export async function deleteRetiredKeys(db: Db, now = new Date()): Promise<string[]> {
  const rows = await db.deleteFrom('signing_keys').where('status', '=', 'passive').where('retire_at', '<=', now)
    .returning('realm_id').execute();
  return [...new Set(rows.map((r) => r.realm_id))];
}
