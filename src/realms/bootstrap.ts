// First start: the master realm, and the bootstrap admin when one is configured and no admin
// exists yet. Serialized by a transaction-level advisory lock so instances starting together
// create them once.
import { sql } from 'kysely';

import type { SecretBox } from '../crypto/secret-box.ts';
import type { Db } from '../store/db.ts';
import { addUsers, importRealmIn, parseRealmRepresentation } from './import.ts';

const BOOTSTRAP_LOCK = 0x636c6f616b01n; // "cloak" + 1

export type BootstrapResult = { masterCreated: boolean; adminCreated: boolean };

export async function bootstrap(db: Db, box: SecretBox, admin: { username: string; password: string } | undefined): Promise<BootstrapResult> {
  return db.transaction().execute(async (trx) => {
    await sql`SELECT pg_advisory_xact_lock(${BOOTSTRAP_LOCK.toString()}::bigint)`.execute(trx);
    let masterCreated = false;
    let master = await trx.selectFrom('realms').select('id').where('name', '=', 'master').executeTakeFirst();
    if (!master) {
      const { realmId } = await importRealmIn(trx, box, parseRealmRepresentation({ realm: 'master' }));
      master = { id: realmId };
      masterCreated = true;
    }
    if (!admin) return { masterCreated, adminCreated: false };

    const existingAdmin = await trx.selectFrom('user_roles')
      .innerJoin('roles', 'roles.id', 'user_roles.role_id')
      .select('user_roles.user_id')
      .where('roles.realm_id', '=', master.id).where('roles.client_id', 'is', null).where('roles.name', '=', 'admin')
      .executeTakeFirst();
    if (existingAdmin) return { masterCreated, adminCreated: false };
    const taken = await trx.selectFrom('users').select('id')
      .where('realm_id', '=', master.id).where(sql<string>`lower(username)`, '=', admin.username.toLowerCase())
      .executeTakeFirst();
    if (taken) throw new Error(`cannot create the bootstrap admin: user "${admin.username}" exists in master without the admin role`);

    // Created through the same path as an imported user, so roles and hashing stay in one place.
    await addUsers(trx, box, master.id, [{
      username: admin.username,
      enabled: true,
      emailVerified: false,
      // Keycloak 26 marks the bootstrap admin as temporary, to be replaced by a permanent one.
      attributes: { is_temporary_admin: ['true'] },
      credentials: [{ type: 'password', value: admin.password, temporary: false }],
      realmRoles: ['admin', 'create-realm', 'default-roles-master'],
    }]);
    return { masterCreated, adminCreated: true };
  });
}
