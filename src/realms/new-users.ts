// What Keycloak's addUser gives every new user, whoever creates it (the Admin API, self-registration,
// a first login through an identity provider): the realm's default role and its default groups.
import { defaultRoleOf } from '../admin/realms.ts';
import type { Db } from '../store/db.ts';
import type { Realm } from '../store/schema.ts';

/** Grants the default role and joins the default groups (plus `groupIds`), inside the creating transaction. */
export async function giveNewUserDefaults(trx: Db, realm: Realm, userId: string, groupIds: Iterable<string> = []): Promise<void> {
  const defaultRole = await defaultRoleOf(trx, realm);
  if (defaultRole) await trx.insertInto('user_roles').values({ user_id: userId, role_id: defaultRole.id as string }).onConflict((oc) => oc.doNothing()).execute();
  const defaults = await trx.selectFrom('realm_default_groups').select('group_id').where('realm_id', '=', realm.id).execute();
  for (const groupId of new Set([...defaults.map((g) => g.group_id), ...groupIds])) {
    await trx.insertInto('user_groups').values({ user_id: userId, group_id: groupId }).onConflict((oc) => oc.doNothing()).execute();
  }
}
