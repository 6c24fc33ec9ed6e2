// Group queries the Admin API needs: full paths, lookup by path, ancestry (to refuse cycles),
// subgroup counts and a group's effective roles.
import { sql } from 'kysely';

import type { Db } from './db.ts';

/** Depth bound of the recursive walks: a guard, trees are never this deep. */
const MAX_DEPTH = 1000;

/** Full paths ('/parent/child') of the given groups, by id. */
export async function groupPaths(db: Db, ids: readonly string[]): Promise<Map<string, string>> {
  if (ids.length === 0) return new Map();
  const { rows } = await sql<{ id: string; path: string }>`
    WITH RECURSIVE chain(leaf, parent_id, path, depth) AS (
      SELECT g.id, g.parent_id, '/' || g.name, 0 FROM groups g WHERE g.id IN (${sql.join([...new Set(ids)])})
      UNION ALL
      SELECT c.leaf, p.parent_id, '/' || p.name || c.path, c.depth + 1
      FROM chain c JOIN groups p ON p.id = c.parent_id WHERE c.depth < ${MAX_DEPTH}
    )
    SELECT leaf AS id, path FROM chain WHERE parent_id IS NULL
  `.execute(db);
  return new Map(rows.map((r) => [r.id, r.path]));
}

/**
 * The group at `path` ('/parent/child'; leading and trailing slashes optional), walking down from
 * the top level and only into groups whose path is a prefix of the wanted one.
 */
export async function findGroupIdByPath(db: Db, realmId: string, path: string): Promise<string | undefined> {
  const trimmed = path.replace(/^\/+/, '').replace(/\/+$/, '');
  if (!trimmed) return undefined;
  const wanted = `/${trimmed}`;
  const { rows } = await sql<{ id: string }>`
    WITH RECURSIVE tree(id, path) AS (
      SELECT id, '/' || name FROM groups
      WHERE realm_id = ${realmId} AND parent_id IS NULL
        AND (${wanted} = '/' || name OR starts_with(${wanted}, '/' || name || '/'))
      UNION ALL
      SELECT g.id, t.path || '/' || g.name FROM groups g JOIN tree t ON g.parent_id = t.id
      WHERE ${wanted} = t.path || '/' || g.name OR starts_with(${wanted}, t.path || '/' || g.name || '/')
    )
    SELECT id FROM tree WHERE path = ${wanted} LIMIT 1
  `.execute(db);
  return rows[0]?.id;
}

/** Whether `candidateId` is `groupId` itself or one of its descendants. */
export async function isSelfOrDescendant(db: Db, groupId: string, candidateId: string): Promise<boolean> {
  const { rows } = await sql<{ id: string }>`
    WITH RECURSIVE up(id, parent_id, depth) AS (
      SELECT id, parent_id, 0 FROM groups WHERE id = ${candidateId}
      UNION ALL
      SELECT g.id, g.parent_id, up.depth + 1 FROM groups g JOIN up ON g.id = up.parent_id WHERE up.depth < ${MAX_DEPTH}
    )
    SELECT id FROM up WHERE id = ${groupId} LIMIT 1
  `.execute(db);
  return rows.length > 0;
}

/** The ids of the given groups and of all their ancestors. */
export async function withAncestors(db: Db, ids: readonly string[]): Promise<string[]> {
  if (ids.length === 0) return [];
  const { rows } = await sql<{ id: string }>`
    WITH RECURSIVE up(id) AS (
      SELECT id FROM groups WHERE id IN (${sql.join([...new Set(ids)])})
      UNION
      SELECT g.parent_id FROM groups g JOIN up ON g.id = up.id WHERE g.parent_id IS NOT NULL
    )
    SELECT id FROM up
  `.execute(db);
  return rows.map((r) => r.id);
}

/** Number of direct subgroups of each given group (absent: none). */
export async function subGroupCounts(db: Db, ids: readonly string[]): Promise<Map<string, number>> {
  if (ids.length === 0) return new Map();
  const rows = await db.selectFrom('groups').select(['parent_id', (eb) => eb.fn.countAll<string>().as('count')])
    .where('parent_id', 'in', [...new Set(ids)]).groupBy('parent_id').execute();
  return new Map(rows.map((r) => [r.parent_id!, Number(r.count)]));
}
