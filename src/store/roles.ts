import { sql } from 'kysely';

import { preparedStatement, runPrepared, type Db } from './db.ts';

export type EffectiveRole = { id: string; name: string; clientId: string | null };

// The role graph (roles, composites, group tree, group roles) is expanded in memory by
// src/realms/role-graph.ts; these statements read it and a user's entry points into it.

/** One snapshot of the whole graph (one statement, so one consistent view). */
const ROLE_GRAPH = preparedStatement('role-graph', `
  SELECT
    coalesce((SELECT version FROM role_graph_versions WHERE realm_id = $1), 0) AS version,
    (SELECT coalesce(json_agg(json_build_array(r.id, r.name, c.client_id)), '[]')
      FROM roles r LEFT JOIN clients c ON c.id = r.client_id WHERE r.realm_id = $1) AS roles,
    (SELECT coalesce(json_agg(json_build_array(rc.parent_id, rc.child_id)), '[]')
      FROM role_composites rc JOIN roles p ON p.id = rc.parent_id WHERE p.realm_id = $1) AS composites,
    (SELECT coalesce(json_agg(json_build_array(g.id, g.parent_id)), '[]') FROM groups g WHERE g.realm_id = $1) AS groups,
    (SELECT coalesce(json_agg(json_build_array(gr.group_id, gr.role_id)), '[]')
      FROM group_roles gr JOIN groups g ON g.id = gr.group_id WHERE g.realm_id = $1) AS group_roles`);

/** A realm's role graph as rows: [id, name, clientId], [parent, child], [group, parent], [group, role]. */
export type RoleGraphRow = {
  version: number;
  roles: Array<[string, string, string | null]>;
  composites: Array<[string, string]>;
  groups: Array<[string, string | null]>;
  group_roles: Array<[string, string]>;
};

/**
 * Select-list columns for a user's direct role and group ids with the realm's graph version, for
 * SQL expressions naming the user's id and realm id; read them back with roleRefsOf.
 */
export function roleRefColumns(userId: string, realmId: string): string {
  return `ARRAY(SELECT role_id FROM user_roles WHERE user_id = ${userId}) AS role_ids,
    ARRAY(SELECT group_id FROM user_groups WHERE user_id = ${userId}) AS group_ids,
    coalesce((SELECT version FROM role_graph_versions WHERE realm_id = ${realmId}), 0) AS role_graph_version`;
}

/** The columns of roleRefColumns in a result row. */
export type RoleRefRow = { role_ids: string[]; group_ids: string[]; role_graph_version: number };

export function roleRefsOf(row: RoleRefRow): UserRoleRefs {
  return { roleIds: row.role_ids, groupIds: row.group_ids, graphVersion: Number(row.role_graph_version) };
}

const USER_ROLE_REFS = preparedStatement('user-role-refs', `SELECT ${roleRefColumns('$2', '$1')}`);

/** The realm's current graph version, for expansions that read no user (a group's roles). */
export async function roleGraphVersion(db: Db, realmId: string): Promise<number> {
  const row = await db.selectFrom('role_graph_versions').select('version').where('realm_id', '=', realmId).executeTakeFirst();
  return Number(row?.version ?? 0);
}

export type UserRoleRefs = { roleIds: string[]; groupIds: string[]; graphVersion: number };

export async function userRoleRefs(db: Db, realmId: string, userId: string): Promise<UserRoleRefs> {
  const [row] = await runPrepared<RoleRefRow>(db, USER_ROLE_REFS, [realmId, userId]);
  return row ? roleRefsOf(row) : { roleIds: [], groupIds: [], graphVersion: 0 };
}

export async function loadRoleGraphRow(db: Db, realmId: string): Promise<RoleGraphRow> {
  const [row] = await runPrepared<RoleGraphRow>(db, ROLE_GRAPH, [realmId]);
  return row ?? { version: 0, roles: [], composites: [], groups: [], group_roles: [] };
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
