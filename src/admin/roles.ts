// Admin REST API: realm roles (/roles), client roles (/clients/{id}/roles) and roles by id
// (/roles-by-id): CRUD, composites, and who holds a role. Permissions as Keycloak's RolePermissions:
// realm roles are viewed with view-realm and changed with manage-realm, client roles with
// view-clients / manage-clients; listing is open to any admin with a query role.
import { z } from 'zod';

import { newId } from '../crypto/random.ts';
import type { Db } from '../store/db.ts';
import type { Realm, User } from '../store/schema.ts';
import { AdminAuthError, MANAGEMENT_ROLES, type AdminAuth, type ManagementRole } from './auth.ts';
import { groupRepresentations } from './groups.ts';
import { UUID, defaultRoleOf } from './realms.ts';
import { badRequest, conflict, created, noContent, notFound, ok, type AdminRouter, type Permission, type RealmRequest, type Reply } from './router.ts';
import { userRepresentation } from './users.ts';

/** Keycloak's default page size for member lists. */
const DEFAULT_MAX_RESULTS = 100;

/** Role attributes: Keycloak's Map<String, List<String>>; a lone string is taken as a one-value list. */
export const attributeMap = z.record(z.string(), z.union([z.array(z.string()), z.string()]))
  .transform((m) => Object.fromEntries(Object.entries(m).map(([k, v]) => [k, Array.isArray(v) ? v : [v]])));

const roleBody = z.object({
  name: z.string().nullish(),
  description: z.string().nullish(),
  attributes: attributeMap.nullish(),
  composite: z.boolean().nullish(),
  composites: z.object({
    realm: z.array(z.string()).nullish(),
    client: z.record(z.string(), z.array(z.string())).nullish(),
  }).loose().nullish(),
}).loose();

/** A list of RoleRepresentations naming roles (by id, and/or by name where the container is known). */
export const roleRefs = z.array(z.object({ id: z.string().nullish(), name: z.string().nullish() }).loose());

export function roleQuery(db: Db) {
  return db.selectFrom('roles').leftJoin('clients', 'clients.id', 'roles.client_id')
    .select(['roles.id', 'roles.realm_id', 'roles.client_id', 'roles.name', 'roles.description', 'roles.attributes', 'clients.client_id as owner'])
    .select((eb) => eb.exists(eb.selectFrom('role_composites').select('role_composites.child_id')
      .whereRef('role_composites.parent_id', '=', 'roles.id')).as('composite'));
}
/** A role row with its client's clientId (`owner`, null for realm roles) and whether it is composite. */
export type RoleRow = Awaited<ReturnType<ReturnType<typeof roleQuery>['executeTakeFirstOrThrow']>>;

/** Keycloak's RoleRepresentation; `brief` leaves out the attributes (toBriefRepresentation). */
export function roleRepresentation(role: RoleRow, brief: boolean): Record<string, unknown> {
  return {
    id: role.id,
    name: role.name,
    ...(role.description !== null ? { description: role.description } : {}),
    composite: Boolean(role.composite),
    clientRole: role.client_id !== null,
    containerId: role.client_id ?? role.realm_id,
    ...(brief ? {} : { attributes: role.attributes }),
  };
}

export function findRoleById(db: Db, realmId: string, id: string): Promise<RoleRow | undefined> {
  if (!UUID.test(id)) return Promise.resolve(undefined);
  return roleQuery(db).where('roles.realm_id', '=', realmId).where('roles.id', '=', id).executeTakeFirst();
}

function findRoleByName(db: Db, realmId: string, clientUuid: string | null, name: string): Promise<RoleRow | undefined> {
  return roleQuery(db).where('roles.realm_id', '=', realmId)
    .where('roles.client_id', clientUuid === null ? 'is' : '=', clientUuid).where('roles.name', '=', name).executeTakeFirst();
}

/**
 * The roles a RoleRepresentation[] body names inside one container (the realm's roles when
 * `clientUuid` is null): by id, by name, or both (then they must agree). 404 `Role not found`.
 */
export async function resolveRoleRefs(db: Db, realmId: string, clientUuid: string | null, refs: z.infer<typeof roleRefs>): Promise<RoleRow[]> {
  const roles: RoleRow[] = [];
  for (const ref of refs) {
    const role = ref.id ? await findRoleById(db, realmId, ref.id) : ref.name ? await findRoleByName(db, realmId, clientUuid, ref.name) : undefined;
    if (!role || role.client_id !== clientUuid || (ref.name && ref.name !== role.name)) throw notFound('Role not found');
    roles.push(role);
  }
  return roles;
}

const ADMIN_ROLE_NAMES: ReadonlySet<string> = new Set([...MANAGEMENT_ROLES, 'admin', 'create-realm']);

/**
 * Keycloak's RolePermissions.checkAdminRoles: an admin role (a management role of a realm, or the
 * master realm's admin / create-realm) may only be handed out, as a mapping or a composite, by an
 * admin who holds that permission: role mappings are no way to escalate privileges.
 */
export function mayGrant(auth: AdminAuth, realm: Realm, role: { name: string; owner: string | null }): boolean {
  if (!ADMIN_ROLE_NAMES.has(role.name) || auth.isSuperAdmin) return true;
  if (role.owner === null) {
    if (realm.name !== 'master') return true;
    return role.name === 'create-realm' && auth.canCreateRealm;
  }
  let managed: { id: string; name: string } | undefined;
  if (realm.name !== 'master' && role.owner === 'realm-management') managed = { id: realm.id, name: realm.name };
  else if (realm.name === 'master' && role.owner.endsWith('-realm')) managed = { id: '', name: role.owner.slice(0, -'-realm'.length) };
  if (!managed) return true;
  if (role.name.startsWith('query-')) return true;
  return (MANAGEMENT_ROLES as readonly string[]).includes(role.name) && auth.can(managed, role.name as ManagementRole);
}

const forbidden = (): AdminAuthError => new AdminAuthError(403, 'HTTP 403 Forbidden');

/** Keycloak's requireMapComposite: manage the child's container, and hold it if it is an admin role. */
function requireMapComposite(req: RealmRequest, child: RoleRow): void {
  const manage: ManagementRole = child.client_id === null ? 'manage-realm' : 'manage-clients';
  if (!req.auth.can(req.realmRef, manage) || !mayGrant(req.auth, req.realm, child)) throw forbidden();
}

const viewRole = (role: RoleRow): ManagementRole => (role.client_id === null ? 'view-realm' : 'view-clients');
const manageRole = (role: RoleRow): ManagementRole => (role.client_id === null ? 'manage-realm' : 'manage-clients');

function duplicate(error: unknown, name: string | null | undefined): never {
  if ((error as { code?: unknown }).code === '23505') throw conflict(`Role with name ${name} already exists`);
  throw error;
}

/** A role's direct composites, optionally only realm roles (null) or one client's roles. */
function composites(db: Db, role: RoleRow, container?: string | null) {
  let query = roleQuery(db).innerJoin('role_composites as link', 'link.child_id', 'roles.id').where('link.parent_id', '=', role.id);
  if (container !== undefined) query = query.where('roles.client_id', container === null ? 'is' : '=', container);
  return query.orderBy('roles.name');
}

export function registerRolesRoutes(admin: AdminRouter): void {
  const { db } = admin.services;

  /** Realm or client: where the roles of a route live and which management roles guard them. */
  type Container = {
    prefix: string;
    /** The client's uuid, or null for realm roles; 404 for an unknown client. */
    resolve(req: RealmRequest): Promise<string | null>;
    list: Permission;
    view: ManagementRole;
    manage: ManagementRole;
  };
  const containers: Container[] = [
    {
      prefix: '/roles',
      resolve: async () => null,
      list: ['view-realm', 'query-users', 'query-clients', 'query-realms', 'query-groups'],
      view: 'view-realm',
      manage: 'manage-realm',
    },
    {
      prefix: '/clients/:clientUuid/roles',
      async resolve(req) {
        const id = req.params.clientUuid ?? '';
        const client = UUID.test(id)
          ? await db.selectFrom('clients').select('id').where('realm_id', '=', req.realm.id).where('id', '=', id).executeTakeFirst()
          : undefined;
        if (!client) throw notFound('Could not find client');
        return client.id;
      },
      list: 'query-clients',
      view: 'view-clients',
      manage: 'manage-clients',
    },
  ];

  for (const container of containers) {
    const { prefix } = container;
    const roleOf = async (req: RealmRequest): Promise<RoleRow> => {
      const clientUuid = await container.resolve(req);
      const role = await findRoleByName(db, req.realm.id, clientUuid, req.params.roleName ?? '');
      if (!role) throw notFound('Could not find role');
      return role;
    };

    admin.realm('get', prefix, { permission: container.list }, async (req) => {
      const clientUuid = await container.resolve(req);
      const { first, max } = req.page(undefined);
      const search = req.query.search?.trim();
      let query = roleQuery(db).where('roles.realm_id', '=', req.realm.id)
        .where('roles.client_id', clientUuid === null ? 'is' : '=', clientUuid);
      if (search) {
        const pattern = `%${search.toLowerCase().replace(/[\\%_]/g, '\\$&')}%`;
        query = query.where((eb) => eb.or([
          eb(eb.fn('lower', ['roles.name']), 'like', pattern),
          eb(eb.fn('lower', ['roles.description']), 'like', pattern),
        ]));
      }
      query = query.orderBy('roles.name').offset(first);
      if (max !== undefined) query = query.limit(max);
      const brief = req.bool('briefRepresentation') !== false;
      return ok((await query.execute()).map((r) => roleRepresentation(r, brief)));
    });

    admin.realm('post', prefix, { permission: container.manage }, async (req) => {
      const clientUuid = await container.resolve(req);
      const body = await req.json(roleBody);
      if (body.name === undefined || body.name === null || body.name.trim() === '') throw badRequest('role has no name');
      const name = body.name;
      if (await findRoleByName(db, req.realm.id, clientUuid, name)) throw conflict(`Role with name ${name} already exists`);
      // Keycloak 26 also takes the composites of a composite role on creation (by name).
      const children: RoleRow[] = [];
      if (body.composite === true && body.composites) {
        for (const childName of body.composites.realm ?? []) {
          const child = await findRoleByName(db, req.realm.id, null, childName);
          if (!child) throw notFound(`Realm Role with name ${childName} does not exist`);
          children.push(child);
        }
        for (const [clientId, names] of Object.entries(body.composites.client ?? {})) {
          const client = await db.selectFrom('clients').select('id').where('realm_id', '=', req.realm.id).where('client_id', '=', clientId).executeTakeFirst();
          if (!client) continue; // Keycloak skips unknown clients
          for (const childName of names) {
            const child = await findRoleByName(db, req.realm.id, client.id, childName);
            if (!child) throw notFound(`Client Role with name ${childName} does not exist`);
            children.push(child);
          }
        }
        for (const child of children) requireMapComposite(req, child);
      }
      const id = newId();
      try {
        await db.transaction().execute(async (trx) => {
          await trx.insertInto('roles').values({
            id, realm_id: req.realm.id, client_id: clientUuid, name,
            description: body.description ?? null, attributes: JSON.stringify(body.attributes ?? {}),
          }).execute();
          for (const child of children) {
            await trx.insertInto('role_composites').values({ parent_id: id, child_id: child.id }).onConflict((oc) => oc.doNothing()).execute();
          }
        });
      } catch (error) {
        duplicate(error, name);
      }
      return created(name);
    });

    admin.realm('get', `${prefix}/:roleName`, { permission: container.view }, async (req) => ok(roleRepresentation(await roleOf(req), false)));

    admin.realm('put', `${prefix}/:roleName`, { permission: container.manage }, async (req) => {
      const role = await roleOf(req);
      return updateRole(req, role, await req.json(roleBody));
    });

    admin.realm('delete', `${prefix}/:roleName`, { permission: container.manage }, async (req) => {
      const role = await roleOf(req);
      if (role.id === (await defaultRoleOf(db, req.realm))?.id) throw badRequest(`${role.name} is default role of the realm and cannot be removed.`);
      await db.deleteFrom('roles').where('id', '=', role.id).execute();
      return noContent();
    });

    admin.realm('get', `${prefix}/:roleName/users`, { permission: container.view }, async (req) => {
      req.auth.require(req.realmRef, 'query-users');
      return usersInRole(req, await roleOf(req));
    });

    admin.realm('get', `${prefix}/:roleName/groups`, { permission: container.view }, async (req) => {
      const role = await roleOf(req);
      const { first, max } = req.page(DEFAULT_MAX_RESULTS);
      let query = db.selectFrom('groups').innerJoin('group_roles', 'group_roles.group_id', 'groups.id').selectAll('groups')
        .where('group_roles.role_id', '=', role.id).orderBy('groups.name').offset(first);
      if (max !== undefined) query = query.limit(max);
      return ok(await groupRepresentations(db, await query.execute(), { full: req.bool('briefRepresentation') === false }));
    });

    admin.realm('get', `${prefix}/:roleName/composites`, { permission: container.view }, async (req) => {
      const role = await roleOf(req);
      return ok((await composites(db, role).execute()).map((r) => roleRepresentation(r, true)));
    });
    admin.realm('post', `${prefix}/:roleName/composites`, { permission: container.manage }, async (req) => addComposites(req, await roleOf(req)));
    admin.realm('delete', `${prefix}/:roleName/composites`, { permission: container.manage }, async (req) => deleteComposites(req, await roleOf(req)));
    admin.realm('get', `${prefix}/:roleName/composites/realm`, { permission: container.view }, async (req) => {
      const role = await roleOf(req);
      return ok((await composites(db, role, null).execute()).map((r) => roleRepresentation(r, true)));
    });
    admin.realm('get', `${prefix}/:roleName/composites/clients/:targetClient`, { permission: container.view }, async (req) => {
      const role = await roleOf(req);
      return clientComposites(req, role);
    });
  }

  // Roles by id: the permission depends on the role's container, so it is checked per request.
  const byId = async (req: RealmRequest, need: (role: RoleRow) => ManagementRole): Promise<RoleRow> => {
    const role = await findRoleById(db, req.realm.id, req.params.roleId ?? '');
    if (!role) throw notFound('Could not find role with id');
    req.auth.require(req.realmRef, need(role));
    return role;
  };

  admin.realm('get', '/roles-by-id/:roleId', { permission: 'any-admin' }, async (req) => ok(roleRepresentation(await byId(req, viewRole), false)));

  admin.realm('put', '/roles-by-id/:roleId', { permission: 'any-admin' }, async (req) => {
    const role = await byId(req, manageRole);
    return updateRole(req, role, await req.json(roleBody));
  });

  admin.realm('delete', '/roles-by-id/:roleId', { permission: 'any-admin' }, async (req) => {
    const role = await byId(req, manageRole);
    // The stored id: the path's may differ in case.
    if (role.id === (await defaultRoleOf(db, req.realm))?.id) throw badRequest(`${role.name} is default role of the realm and cannot be removed.`);
    await db.deleteFrom('roles').where('id', '=', role.id).execute();
    return noContent();
  });

  admin.realm('get', '/roles-by-id/:roleId/composites', { permission: 'any-admin' }, async (req) => {
    const role = await byId(req, viewRole);
    let query = composites(db, role);
    const search = req.query.search?.trim();
    if (search) query = query.where((eb) => eb(eb.fn('lower', ['roles.name']), 'like', `%${search.toLowerCase().replace(/[\\%_]/g, '\\$&')}%`));
    // Only the children the caller may view, then the page (as Keycloak filters before paginating).
    const visible = (await query.execute()).filter((child) => req.auth.can(req.realmRef, viewRole(child)));
    const { first, max } = req.page(undefined);
    return ok(visible.slice(first, max === undefined ? undefined : first + max).map((r) => roleRepresentation(r, true)));
  });
  admin.realm('post', '/roles-by-id/:roleId/composites', { permission: 'any-admin' }, async (req) => addComposites(req, await byId(req, manageRole)));
  admin.realm('delete', '/roles-by-id/:roleId/composites', { permission: 'any-admin' }, async (req) => deleteComposites(req, await byId(req, manageRole)));
  admin.realm('get', '/roles-by-id/:roleId/composites/realm', { permission: 'any-admin' }, async (req) => {
    const role = await byId(req, viewRole);
    return ok((await composites(db, role, null).execute()).map((r) => roleRepresentation(r, true)));
  });
  admin.realm('get', '/roles-by-id/:roleId/composites/clients/:targetClient', { permission: 'any-admin' }, async (req) => {
    return clientComposites(req, await byId(req, viewRole));
  });

  /** PUT: name required (renaming allowed), description replaced, attributes replaced when sent. */
  async function updateRole(req: RealmRequest, role: RoleRow, body: z.infer<typeof roleBody>): Promise<Reply> {
    if (body.name === undefined || body.name === null || body.name.trim() === '') throw badRequest('role has no name');
    const name = body.name;
    if (name !== role.name) {
      // Management roles are found by name (auth.ts): renaming one to or from an admin role's name
      // hands out or takes away that role, so it needs what granting it needs.
      if (!mayGrant(req.auth, req.realm, role) || !mayGrant(req.auth, req.realm, { name, owner: role.owner })) throw forbidden();
      // Keycloak allows it, but the realm finds its default role by name (realms.ts defaultRoleOf).
      if (role.id === (await defaultRoleOf(db, req.realm))?.id) throw badRequest("The realm's default role cannot be renamed");
      if (await findRoleByName(db, req.realm.id, role.client_id, name)) throw conflict(`Role with name ${name} already exists`);
    }
    try {
      await db.updateTable('roles').set({
        name,
        description: body.description ?? null,
        ...(body.attributes ? { attributes: JSON.stringify(body.attributes) } : {}),
      }).where('id', '=', role.id).execute();
    } catch (error) {
      duplicate(error, name);
    }
    return noContent();
  }

  async function addComposites(req: RealmRequest, role: RoleRow): Promise<Reply> {
    const refs = await req.json(roleRefs);
    const children: RoleRow[] = [];
    for (const ref of refs) {
      const child = ref.id ? await findRoleById(db, req.realm.id, ref.id) : undefined;
      if (!child) throw notFound('Could not find composite role');
      if (child.id === role.id) throw badRequest('A role cannot be a composite of itself');
      requireMapComposite(req, child);
      children.push(child);
    }
    if (children.length > 0) {
      await db.insertInto('role_composites').values(children.map((child) => ({ parent_id: role.id, child_id: child.id })))
        .onConflict((oc) => oc.doNothing()).execute();
    }
    return noContent();
  }

  async function deleteComposites(req: RealmRequest, role: RoleRow): Promise<Reply> {
    const refs = await req.json(roleRefs);
    const ids: string[] = [];
    for (const ref of refs) {
      const child = ref.id ? await findRoleById(db, req.realm.id, ref.id) : undefined;
      if (!child) throw notFound('Could not find composite role');
      ids.push(child.id);
    }
    if (ids.length > 0) await db.deleteFrom('role_composites').where('parent_id', '=', role.id).where('child_id', 'in', ids).execute();
    return noContent();
  }

  async function clientComposites(req: RealmRequest, role: RoleRow): Promise<Reply> {
    const id = req.params.targetClient ?? '';
    const client = UUID.test(id)
      ? await db.selectFrom('clients').select('id').where('realm_id', '=', req.realm.id).where('id', '=', id).executeTakeFirst()
      : undefined;
    if (!client) throw notFound('Could not find client');
    return ok((await composites(db, role, client.id).execute()).map((r) => roleRepresentation(r, true)));
  }

  /** Users with a direct mapping of the role (Keycloak's getRoleMembersStream), by username. */
  async function usersInRole(req: RealmRequest, role: RoleRow): Promise<Reply> {
    const { first, max } = req.page(DEFAULT_MAX_RESULTS);
    let query = db.selectFrom('users').innerJoin('user_roles', 'user_roles.user_id', 'users.id').selectAll('users')
      .where('user_roles.role_id', '=', role.id).orderBy('users.username').offset(first);
    if (max !== undefined) query = query.limit(max);
    const brief = req.bool('briefRepresentation') === true;
    const users: User[] = await query.execute();
    const reps = [];
    for (const user of users) reps.push(await userRepresentation(db, user, { brief }));
    return ok(reps);
  }
}
