import { sql } from 'kysely';

import { preparedStatement, runPrepared, type Db } from './db.ts';

export type EffectiveRole = { id: string; name: string; clientId: string | null };

/**
 * The recursive CTEs `member_groups` and `granted` (role ids) of the user in parameter
 * `userParam`: direct mappings, roles of their groups and of the groups' ancestors, composites
 * expanded transitively. For a `WITH RECURSIVE` list (the refresh statement embeds them too).
 */
export function effectiveRoleCtes(userParam: string): string {
  return `member_groups(id) AS (
      SELECT group_id FROM user_groups WHERE user_id = ${userParam}
      UNION
      SELECT g.parent_id FROM groups g JOIN member_groups m ON g.id = m.id WHERE g.parent_id IS NOT NULL
    ),
    granted(role_id) AS (
      SELECT role_id FROM user_roles WHERE user_id = ${userParam}
      UNION
      SELECT role_id FROM group_roles WHERE group_id IN (SELECT id FROM member_groups)
      UNION
      SELECT rc.child_id FROM role_composites rc JOIN granted ON rc.parent_id = granted.role_id
    )`;
}

/** `granted` joined to the roles' names and client ids (columns r.id, r.name, c.client_id). */
export const GRANTED_ROLES_FROM = 'granted JOIN roles r ON r.id = granted.role_id LEFT JOIN clients c ON c.id = r.client_id';

const EFFECTIVE_USER_ROLES = preparedStatement('effective-user-roles', `
  WITH RECURSIVE ${effectiveRoleCtes('$1::uuid')}
  SELECT r.id, r.name, c.client_id AS "clientId" FROM ${GRANTED_ROLES_FROM}
  ORDER BY c.client_id NULLS FIRST, r.name`);

/** A user's effective roles, realm roles first, then by client id and name. One round trip. */
export function effectiveUserRoles(db: Db, userId: string): Promise<EffectiveRole[]> {
  return runPrepared<EffectiveRole>(db, EFFECTIVE_USER_ROLES, [userId]);
}

/**
 * Role ids a client may put in tokens when fullScopeAllowed is off: its own scope mappings and
 * those of the given client scopes, composites expanded. The client's own roles are always in scope.
 */
export async function roleScopeIds(db: Db, clientUuid: string, scopeIds: string[]): Promise<Set<string>> {
  const scopeList = scopeIds.length > 0 ? sql.join(scopeIds) : sql`NULL`;
  const { rows } = await sql<{ id: string }>`
    WITH RECURSIVE allowed(id) AS (
      SELECT role_id FROM scope_mappings WHERE client_id = ${clientUuid} OR client_scope_id IN (${scopeList})
      UNION
      SELECT id FROM roles WHERE client_id = ${clientUuid}
      UNION
      SELECT rc.child_id FROM role_composites rc JOIN allowed ON rc.parent_id = allowed.id
    )
    SELECT id FROM allowed
  `.execute(db);
  return new Set(rows.map((r) => r.id));
}

/** Full paths ('/parent/child') of the user's groups. */
export async function userGroupPaths(db: Db, userId: string): Promise<string[]> {
  const { rows } = await sql<{ path: string }>`
    WITH RECURSIVE chain(leaf, id, parent_id, path) AS (
      SELECT g.id, g.id, g.parent_id, '/' || g.name FROM groups g JOIN user_groups ug ON ug.group_id = g.id WHERE ug.user_id = ${userId}
      UNION ALL
      SELECT c.leaf, p.id, p.parent_id, '/' || p.name || c.path FROM chain c JOIN groups p ON p.id = c.parent_id
    )
    SELECT path FROM chain WHERE parent_id IS NULL ORDER BY path
  `.execute(db);
  return rows.map((r) => r.path);
}

/** A role by container (null: realm role) and name. */
export async function findRole(db: Db, realmId: string, container: string | null, name: string): Promise<string | undefined> {
  const query = db.selectFrom('roles').select('id').where('realm_id', '=', realmId).where('name', '=', name);
  return (await (container === null ? query.where('client_id', 'is', null) : query.where('client_id', '=', container)).executeTakeFirst())?.id;
}

/**
 * Where a mapped role lives, as Keycloak's KeycloakModelUtils.getRoleFromString reads it: the realm
 * role of that name if there is one, else `clientId.role` of an existing client, else a realm role.
 */
export async function roleContainer(db: Db, realmId: string, spec: string): Promise<{ container: string | null; name: string }> {
  if (await findRole(db, realmId, null, spec)) return { container: null, name: spec };
  const dot = spec.lastIndexOf('.');
  if (dot > 0 && dot < spec.length - 1) {
    const client = await db.selectFrom('clients').select('id').where('realm_id', '=', realmId).where('client_id', '=', spec.slice(0, dot)).executeTakeFirst();
    if (client) return { container: client.id, name: spec.slice(dot + 1) };
  }
  return { container: null, name: spec };
}
