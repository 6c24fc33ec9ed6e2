// Admin REST API: groups (hierarchy, search, moves, members), group-by-path and the realm's
// default groups. Permissions as Keycloak's GroupPermissions without fine-grained permissions:
// lists need query-groups, reading a group view-users, any change manage-users.
import { sql } from 'kysely';
import { z } from 'zod';

import { newId } from '../crypto/random.ts';
import type { Db } from '../store/db.ts';
import { findGroupIdByPath, groupPaths, isSelfOrDescendant, subGroupCounts, withAncestors } from '../store/groups.ts';
import type { Group } from '../store/schema.ts';
import { UUID } from './realms.ts';
import { badRequest, conflict, created, noContent, notFound, ok, type AdminRouter, type RealmRequest, type Reply } from './router.ts';
import { userRepresentation } from './users.ts';

const DEFAULT_MAX_MEMBERS = 100;
/** Keycloak's default page size of GET /groups/{id}/children. */
const DEFAULT_MAX_CHILDREN = 10;

const attributeMap = z.record(z.string(), z.union([z.array(z.string()), z.string()]))
  .transform((m) => Object.fromEntries(Object.entries(m).map(([k, v]) => [k, Array.isArray(v) ? v : [v]])));

const groupBody = z.object({
  id: z.string().nullish(),
  name: z.string().nullish(),
  description: z.string().nullish(),
  attributes: attributeMap.nullish(),
}).loose();
type GroupBody = z.infer<typeof groupBody>;

/** What the caller may do with groups (GroupRepresentation.access). */
export type GroupAccess = { view: boolean; viewMembers: boolean; manage: boolean; manageMembers: boolean; manageMembership: boolean };

export function groupAccess(req: RealmRequest): GroupAccess {
  const view = req.auth.can(req.realmRef, 'view-users');
  const manage = req.auth.can(req.realmRef, 'manage-users');
  return { view, viewMembers: view, manage, manageMembers: manage, manageMembership: manage };
}

type GroupRepresentation = Record<string, unknown> & { id: string; name: string; subGroups: GroupRepresentation[] };

/**
 * Keycloak's GroupRepresentation of each group, in order: id, name, description, path, parentId,
 * subGroups (empty: callers fill it where Keycloak does), and with `full` the attributes and role
 * names; `subGroupCount` and `access` when asked for.
 */
export async function groupRepresentations(db: Db, groups: readonly Group[], options: { full: boolean; subGroupCount?: boolean; access?: GroupAccess }): Promise<GroupRepresentation[]> {
  const ids = groups.map((g) => g.id);
  const paths = await groupPaths(db, ids);
  const counts = options.subGroupCount ? await subGroupCounts(db, ids) : undefined;
  const realmRoles = new Map<string, string[]>();
  const clientRoles = new Map<string, Record<string, string[]>>();
  if (options.full && ids.length > 0) {
    const mappings = await db.selectFrom('group_roles').innerJoin('roles', 'roles.id', 'group_roles.role_id')
      .leftJoin('clients', 'clients.id', 'roles.client_id')
      .select(['group_roles.group_id', 'roles.name', 'clients.client_id'])
      .where('group_roles.group_id', 'in', ids).orderBy('roles.name').execute();
    for (const m of mappings) {
      if (m.client_id === null) {
        const list = realmRoles.get(m.group_id) ?? [];
        list.push(m.name);
        realmRoles.set(m.group_id, list);
      } else {
        const byClient = clientRoles.get(m.group_id) ?? {};
        (byClient[m.client_id] ??= []).push(m.name);
        clientRoles.set(m.group_id, byClient);
      }
    }
  }
  return groups.map((g) => ({
    id: g.id,
    name: g.name,
    ...(g.description !== null ? { description: g.description } : {}),
    path: paths.get(g.id) ?? `/${g.name}`,
    ...(g.parent_id !== null ? { parentId: g.parent_id } : {}),
    ...(counts ? { subGroupCount: counts.get(g.id) ?? 0 } : {}),
    subGroups: [],
    ...(options.full ? { attributes: g.attributes, realmRoles: realmRoles.get(g.id) ?? [], clientRoles: clientRoles.get(g.id) ?? {} } : {}),
    ...(options.access ? { access: options.access } : {}),
  }));
}

/** Keycloak's SearchQueryUtils.getFields: `key:value key2:"value with spaces"`. */
function searchQueryFields(q: string): Array<[string, string]> {
  const fields: Array<[string, string]> = [];
  for (const match of q.matchAll(/\s*(?:"([^"]*)"|([^:\s]+))\s*:\s*(?:"([^"]*)"|(\S+))/g)) {
    fields.push([match[1] ?? match[2] ?? '', match[3] ?? match[4] ?? '']);
  }
  return fields;
}

const likePattern = (search: string): string => `%${search.toLowerCase().replace(/[\\%_]/g, '\\$&')}%`;

export function registerGroupsRoutes(admin: AdminRouter): void {
  const { db } = admin.services;

  async function findGroup(realmId: string, id: string | null | undefined): Promise<Group | undefined> {
    if (!id || !UUID.test(id)) return undefined;
    return db.selectFrom('groups').selectAll().where('realm_id', '=', realmId).where('id', '=', id).executeTakeFirst();
  }

  async function groupOf(req: RealmRequest): Promise<Group> {
    const group = await findGroup(req.realm.id, req.params.groupId);
    if (!group) throw notFound('Could not find group by id');
    return group;
  }

  /** A sibling (same parent, other id) already named `name`. */
  async function siblingNamed(realmId: string, parentId: string | null, name: string, except?: string): Promise<boolean> {
    let query = db.selectFrom('groups').select('id').where('realm_id', '=', realmId)
      .where('parent_id', parentId === null ? 'is' : '=', parentId).where('name', '=', name);
    if (except) query = query.where('id', '!=', except);
    return (await query.executeTakeFirst()) !== undefined;
  }

  const requireName = (body: GroupBody): string => {
    if (!body.name || body.name.trim() === '') throw badRequest('Group name is missing');
    return body.name;
  };

  const duplicate = (message: string) => (error: unknown): never => {
    if ((error as { code?: unknown }).code === '23505') throw conflict(message);
    throw error;
  };

  async function createGroup(req: RealmRequest, parentId: string | null, body: GroupBody, name: string, conflictMessage: string): Promise<string> {
    if (await siblingNamed(req.realm.id, parentId, name)) throw conflict(conflictMessage);
    const id = newId();
    await db.insertInto('groups').values({
      id, realm_id: req.realm.id, parent_id: parentId, name,
      description: body.description ?? null, attributes: JSON.stringify(body.attributes ?? {}),
    }).execute().catch(duplicate(conflictMessage));
    return id;
  }

  /** Moves `child` under `parent` (null: top level), refusing cycles and name clashes. */
  async function moveGroup(req: RealmRequest, child: Group, parent: Group | null, conflictMessage: string): Promise<void> {
    const parentId = parent?.id ?? null;
    if (child.parent_id === parentId || child.id === parentId) return; // Keycloak: nothing to do
    if (parent && await isSelfOrDescendant(db, child.id, parent.id)) throw badRequest('A group cannot be moved under one of its own subgroups');
    if (await siblingNamed(req.realm.id, parentId, child.name, child.id)) throw conflict(conflictMessage);
    await db.updateTable('groups').set({ parent_id: parentId }).where('id', '=', child.id).execute().catch(duplicate(conflictMessage));
  }

  admin.realm('get', '/groups', { permission: 'query-groups' }, async (req) => {
    // Without fine-grained permissions Keycloak shows only groups the caller may view.
    if (!req.auth.can(req.realmRef, 'view-users')) return ok([]);
    const { first, max } = req.page(undefined);
    const { search, q } = req.query;
    const exact = req.bool('exact') === true;
    const full = req.bool('briefRepresentation') === false;
    const withCount = req.bool('subGroupsCount') !== false;
    let query = db.selectFrom('groups').selectAll().where('realm_id', '=', req.realm.id);
    if (q !== undefined) {
      for (const [key, value] of searchQueryFields(q)) {
        query = query.where(sql<boolean>`attributes @> jsonb_build_object(${key}::text, jsonb_build_array(${value}::text))`);
      }
    } else if (search !== undefined) {
      const term = search.trim();
      query = exact ? query.where('name', '=', term) : query.where((eb) => eb(eb.fn('lower', ['name']), 'like', likePattern(term)));
    } else {
      query = query.where('parent_id', 'is', null);
    }
    query = query.orderBy('name').orderBy('id').offset(first);
    if (max !== undefined) query = query.limit(max);
    const matched = await query.execute();
    const access = groupAccess(req);
    const searching = q !== undefined || search !== undefined;
    if (!searching || req.bool('populateHierarchy') === false) {
      return ok(await groupRepresentations(db, matched, { full, subGroupCount: withCount, access }));
    }
    // Keycloak's populateGroupHierarchyFromSubGroups: each match under its ancestors, from the
    // top level down, with only the branches that lead to matches.
    const ids = await withAncestors(db, matched.map((g) => g.id));
    const tree = ids.length === 0 ? [] : await db.selectFrom('groups').selectAll().where('id', 'in', ids).orderBy('name').orderBy('id').execute();
    const reps = await groupRepresentations(db, tree, { full, subGroupCount: withCount, access });
    const byId = new Map(reps.map((rep) => [rep.id, rep]));
    const roots: GroupRepresentation[] = [];
    tree.forEach((group, i) => {
      const parent = group.parent_id !== null ? byId.get(group.parent_id) : undefined;
      if (parent) parent.subGroups.push(reps[i]!);
      else roots.push(reps[i]!);
    });
    return ok(roots);
  });

  admin.realm('get', '/groups/count', { permission: 'query-groups' }, async (req) => {
    let query = db.selectFrom('groups').select((eb) => eb.fn.countAll<string>().as('count')).where('realm_id', '=', req.realm.id);
    const search = req.query.search;
    if (search !== undefined) query = query.where((eb) => eb(eb.fn('lower', ['name']), 'like', likePattern(search.trim())));
    else if (req.bool('top') === true) query = query.where('parent_id', 'is', null);
    const { count } = await query.executeTakeFirstOrThrow();
    return ok({ count: Number(count) });
  });

  // A new top-level group (201), or an existing one (its id in the body) moved to the top level (204).
  admin.realm('post', '/groups', { permission: 'manage-users' }, async (req) => {
    const body = await req.json(groupBody);
    const name = requireName(body);
    if (body.id !== undefined && body.id !== null) {
      const child = await findGroup(req.realm.id, body.id);
      if (!child) throw notFound('Could not find child by id');
      await moveGroup(req, child, null, `Top level group named '${child.name}' already exists.`);
      return noContent();
    }
    return created(await createGroup(req, null, body, name, `Top level group named '${name}' already exists.`));
  });

  admin.realm('get', '/groups/:groupId', { permission: 'view-users' }, async (req) => {
    const [rep] = await groupRepresentations(db, [await groupOf(req)], { full: true, subGroupCount: true, access: groupAccess(req) });
    return ok(rep);
  });

  admin.realm('put', '/groups/:groupId', { permission: 'manage-users' }, async (req) => {
    const group = await groupOf(req);
    const body = await req.json(groupBody);
    const name = requireName(body);
    if (body.id !== undefined && body.id !== null && body.id !== group.id) throw badRequest('Invalid group id');
    const message = `Sibling group named '${name}' already exists.`;
    if (name !== group.name && await siblingNamed(req.realm.id, group.parent_id, name, group.id)) throw conflict(message);
    // Keycloak's GroupResource.updateGroup: attributes replaced when sent, description always.
    await db.updateTable('groups').set({
      name,
      description: body.description ?? null,
      ...(body.attributes ? { attributes: JSON.stringify(body.attributes) } : {}),
    }).where('id', '=', group.id).execute().catch(duplicate(message));
    return noContent();
  });

  admin.realm('delete', '/groups/:groupId', { permission: 'manage-users' }, async (req) => {
    const group = await groupOf(req);
    await db.deleteFrom('groups').where('id', '=', group.id).execute(); // subgroups cascade
    return noContent();
  });

  admin.realm('get', '/groups/:groupId/children', { permission: 'view-users' }, async (req) => {
    const group = await groupOf(req);
    const first = Math.max(0, Number.parseInt(req.query.first ?? '', 10) || 0);
    const maxParam = Number.parseInt(req.query.max ?? '', 10);
    const max = Number.isNaN(maxParam) ? DEFAULT_MAX_CHILDREN : maxParam;
    let query = db.selectFrom('groups').selectAll().where('parent_id', '=', group.id);
    const search = req.query.search;
    if (search !== undefined && search !== '') {
      query = req.bool('exact') === true ? query.where('name', '=', search) : query.where((eb) => eb(eb.fn('lower', ['name']), 'like', likePattern(search)));
    }
    query = query.orderBy('name').orderBy('id').offset(first);
    if (max >= 0) query = query.limit(max);
    return ok(await groupRepresentations(db, await query.execute(), {
      full: req.bool('briefRepresentation') !== true,
      subGroupCount: req.bool('subGroupsCount') !== false,
      access: groupAccess(req),
    }));
  });

  // A new subgroup (201), or an existing group (its id in the body) moved under this one (204).
  admin.realm('post', '/groups/:groupId/children', { permission: 'manage-users' }, async (req) => {
    const group = await groupOf(req);
    const body = await req.json(groupBody);
    const name = requireName(body);
    if (body.id !== undefined && body.id !== null) {
      const child = await findGroup(req.realm.id, body.id);
      if (!child) throw notFound('Could not find child by id');
      await moveGroup(req, child, group, `Sibling group named '${child.name}' already exists.`);
      return noContent();
    }
    const id = await createGroup(req, group.id, body, name, `Sibling group named '${name}' already exists.`);
    return created(id, `groups/${id}`);
  });

  admin.realm('get', '/groups/:groupId/members', { permission: 'view-users' }, async (req) => {
    const group = await groupOf(req);
    const { first, max } = req.page(DEFAULT_MAX_MEMBERS);
    let query = db.selectFrom('users').innerJoin('user_groups', 'user_groups.user_id', 'users.id').selectAll('users')
      .where('user_groups.group_id', '=', group.id).orderBy('users.username').offset(first);
    if (max !== undefined) query = query.limit(max);
    const brief = req.bool('briefRepresentation') === true;
    const reps = [];
    for (const user of await query.execute()) reps.push(await userRepresentation(db, user, { brief }));
    return ok(reps);
  });

  admin.realm('get', '/group-by-path/*path', { permission: 'view-users' }, async (req) => {
    const id = await findGroupIdByPath(db, req.realm.id, req.params.path ?? '');
    const group = id ? await findGroup(req.realm.id, id) : undefined;
    if (!group) throw notFound('Group path does not exist');
    const [rep] = await groupRepresentations(db, [group], { full: true, subGroupCount: true });
    return ok(rep);
  });

  // Realm default groups: joined by every new user.
  admin.realm('get', '/default-groups', { permission: 'view-realm' }, async (req) => {
    const groups = await db.selectFrom('groups').innerJoin('realm_default_groups', 'realm_default_groups.group_id', 'groups.id')
      .selectAll('groups').where('realm_default_groups.realm_id', '=', req.realm.id).orderBy('groups.name').execute();
    const reps = await groupRepresentations(db, groups, { full: false });
    return ok(reps.sort((a, b) => String(a.path).localeCompare(String(b.path))));
  });

  const defaultGroupOf = async (req: RealmRequest): Promise<Group> => {
    const group = await findGroup(req.realm.id, req.params.groupId);
    if (!group) throw notFound('Group not found');
    return group;
  };

  admin.realm('put', '/default-groups/:groupId', { permission: 'manage-realm' }, async (req): Promise<Reply> => {
    const group = await defaultGroupOf(req);
    await db.insertInto('realm_default_groups').values({ realm_id: req.realm.id, group_id: group.id })
      .onConflict((oc) => oc.doNothing()).execute();
    return noContent();
  });

  admin.realm('delete', '/default-groups/:groupId', { permission: 'manage-realm' }, async (req): Promise<Reply> => {
    const group = await defaultGroupOf(req);
    await db.deleteFrom('realm_default_groups').where('realm_id', '=', req.realm.id).where('group_id', '=', group.id).execute();
    return noContent();
  });
}
