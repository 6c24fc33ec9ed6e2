import type { Db } from './db.ts';
import type { Realm } from './schema.ts';

export function findRealmByName(db: Db, name: string): Promise<Realm | undefined> {
  return db.selectFrom('realms').selectAll().where('name', '=', name).executeTakeFirst();
}

export function findRealmById(db: Db, id: string): Promise<Realm | undefined> {
  return db.selectFrom('realms').selectAll().where('id', '=', id).executeTakeFirst();
}

export function listRealms(db: Db): Promise<Realm[]> {
  return db.selectFrom('realms').selectAll().orderBy('name').execute();
}

export async function setRealmNotBefore(db: Db, realmId: string, notBefore: number): Promise<void> {
  await db.updateTable('realms').set({ not_before: notBefore, updated_at: new Date() }).where('id', '=', realmId).execute();
}
