// A realm's role graph in memory: its roles (with their client's clientId), composite edges, the
// group tree and group role mappings. A user's effective roles are then their direct role and
// group ids (read from the database with every token, so mapping changes apply at once) expanded
// here, instead of a recursive query joining the realm's role tables on every token.
//
// The graph carries the realm's role_graph_versions.version, which triggers bump with every change
// to those tables (migrations/0008): whoever reads a user's ids reads the version in the same
// statement and asks for a graph at least that new (RealmContext.roleGraph).
import type { Db } from '../store/db.ts';
import { loadRoleGraphRow, type EffectiveRole, type RoleGraphRow } from '../store/roles.ts';

type RoleNode = { role: EffectiveRole; children: string[] };

/** Expansions kept per distinct (roles, groups) set; most users of a realm share a few. */
const MAX_MEMOIZED_EXPANSIONS = 1024;

/** PostgreSQL's C collation order (UTF-8 bytes), which the SQL version of this ordering used. */
function byteOrder(a: string, b: string): number {
  return a === b ? 0 : Buffer.compare(Buffer.from(a), Buffer.from(b));
}

function roleOrder(a: EffectiveRole, b: EffectiveRole): number {
  if (a.clientId !== b.clientId) {
    if (a.clientId === null) return -1;
    if (b.clientId === null) return 1;
    return byteOrder(a.clientId, b.clientId);
  }
  return byteOrder(a.name, b.name);
}

export class RoleGraph {
  readonly version: number;
  readonly #roles = new Map<string, RoleNode>();
  readonly #groupParents = new Map<string, string | null>();
  readonly #groupRoles = new Map<string, string[]>();
  readonly #expansions = new Map<string, readonly EffectiveRole[]>();

  private constructor(row: RoleGraphRow) {
    this.version = Number(row.version);
    for (const [id, name, clientId] of row.roles) this.#roles.set(id, { role: Object.freeze({ id, name, clientId }), children: [] });
    for (const [parent, child] of row.composites) this.#roles.get(parent)?.children.push(child);
    for (const [id, parent] of row.groups) this.#groupParents.set(id, parent);
    for (const [group, role] of row.group_roles) {
      const list = this.#groupRoles.get(group);
      if (list) list.push(role);
      else this.#groupRoles.set(group, [role]);
    }
  }

  static async load(db: Db, realmId: string): Promise<RoleGraph> {
    return new RoleGraph(await loadRoleGraphRow(db, realmId));
  }

  /**
   * Effective roles of a user with these direct roles and groups, as Keycloak computes them: the
   * roles, those of each group and its ancestors, every composite expanded transitively. Realm
   * roles first, then by client id; by name within each. The result is shared: do not mutate it.
   */
  effectiveRoles(roleIds: readonly string[], groupIds: readonly string[]): readonly EffectiveRole[] {
    const key = `${[...roleIds].sort().join(',')}|${[...groupIds].sort().join(',')}`;
    const known = this.#expansions.get(key);
    if (known) return known;

    const granted = new Set<string>();
    const pending = [...roleIds];
    const seenGroups = new Set<string>();
    for (const memberOf of groupIds) {
      // A group and its ancestors; the seen set also stops a cycle the data should never hold.
      let group: string | null | undefined = memberOf;
      while (group && !seenGroups.has(group)) {
        seenGroups.add(group);
        pending.push(...(this.#groupRoles.get(group) ?? []));
        group = this.#groupParents.get(group);
      }
    }
    for (let id = pending.pop(); id !== undefined; id = pending.pop()) {
      if (granted.has(id)) continue;
      granted.add(id);
      pending.push(...(this.#roles.get(id)?.children ?? []));
    }
    const roles = Object.freeze([...granted].flatMap((id) => {
      const node = this.#roles.get(id);
      return node ? [node.role] : [];
    }).sort(roleOrder));

    if (this.#expansions.size >= MAX_MEMOIZED_EXPANSIONS) this.#expansions.clear();
    this.#expansions.set(key, roles);
    return roles;
  }
}
