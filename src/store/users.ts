import type { Db } from './db.ts';
import type { User } from './schema.ts';

export function findUserById(db: Db, realmId: string, id: string): Promise<User | undefined> {
  return db.selectFrom('users').selectAll().where('realm_id', '=', realmId).where('id', '=', id).executeTakeFirst();
}
