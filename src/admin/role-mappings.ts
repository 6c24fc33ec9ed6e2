// Admin REST API: role mappings of users (/users/{id}/role-mappings) and of groups
// (/groups/{id}/role-mappings), one implementation for both (Keycloak's RoleMapperResource and
// ClientRoleMappingsResource): direct mappings, what may still be mapped, effective roles.
import { z } from 'zod';

import type { Db } from '../store/db.ts';
import { roleGraphVersion } from '../store/roles.ts';
import { tokenSubjectCached } from '../store/users.ts';
import { AdminAuthError } from './auth.ts';
import { UUID } from './realms.ts';
import { mayGrant, resolveRoleRefs, roleQuery, roleRefs, roleRepresentation, type RoleRow } from './roles.ts';
import { noContent, notFound, ok, type AdminRouter, type RealmRequest, type Reply } from './router.ts';

/** Whose mappings a route manages; `cached`: a service account, whose roles the realm context caches. */
type Mapper = { kind: 'user' | 'group'; id: string; cached: boolean };

type MapperKind = {
  segment: 'users' | 'groups';
  kind: Mapper['kind'];
  notFoundMessage: string;
};

const MAPPER_KINDS: MapperKind[] = [
  { segment: 'users', kind: 'user', notFoundMessage: 'User not found' },
  { segment: 'groups', kind: 'group', notFoundMessage: 'Could not find group by id' },
];

/** The roles mapped directly to the user or group, optionally in one container (null: realm roles). */
function directRoles(db: Db, mapper: Mapper, clientUuid?: string | null) {
  let query = mapper.kind === 'user'
    ? roleQuery(db).innerJoin('user_roles as m', 'm.role_id', 'roles.id').where('m.user_id', '=', mapper.id)
    : roleQuery(db).innerJoin('group_roles as m', 'm.role_id', 'roles.id').where('m.group_id', '=', mapper.id);
  if (clientUuid !== undefined) query = query.where('roles.client_id', clientUuid === null ? 'is' : '=', clientUuid);
  return query.orderBy('roles.name');
}

/** Effective role ids: users through their groups too; groups through their ancestors. */
async function effectiveRoleIds(req: RealmRequest, mapper: Mapper): Promise<string[]> {
  const realm = await req.services.registry.get(req.realm.name);
  if (!realm) throw notFound('Realm not found');
  const roles = mapper.kind === 'group'
    ? (await realm.roleGraph(await roleGraphVersion(realm.db, realm.id))).effectiveRoles([], [mapper.id])
    : await realm.effectiveUserRoles(mapper.id);
  return roles.map((r) => r.id);
}

async function grant(db: Db, mapper: Mapper, roles: RoleRow[]): Promise<void> {
  if (roles.length === 0) return;
  if (mapper.kind === 'user') {
    await db.insertInto('user_roles').values(roles.map((r) => ({ user_id: mapper.id, role_id: r.id }))).onConflict((oc) => oc.doNothing()).execute();
  } else {
    await db.insertInto('group_roles').values(roles.map((r) => ({ group_id: mapper.id, role_id: r.id }))).onConflict((oc) => oc.doNothing()).execute();
  }
}

async function revoke(db: Db, mapper: Mapper, roles: RoleRow[]): Promise<void> {
  if (roles.length === 0) return;
  const ids = roles.map((r) => r.id);
  if (mapper.kind === 'user') await db.deleteFrom('user_roles').where('user_id', '=', mapper.id).where('role_id', 'in', ids).execute();
  else await db.deleteFrom('group_roles').where('group_id', '=', mapper.id).where('role_id', 'in', ids).execute();
}

/** Keycloak's canMapRole: manage-users, and holding an admin role to hand it out. */
function canMap(req: RealmRequest, role: RoleRow): boolean {
  return req.auth.can(req.realmRef, 'manage-users') && mayGrant(req.auth, req.realm, role);
}

function requireMap(req: RealmRequest, roles: RoleRow[]): void {
  if (!roles.every((role) => canMap(req, role))) throw new AdminAuthError(403, 'HTTP 403 Forbidden');
}

/** The body of a DELETE, which may be absent (Keycloak: no body removes every mapping). */
async function optionalRoleRefs(req: RealmRequest): Promise<z.infer<typeof roleRefs> | null> {
  const length = req.ctx.request.length;
  const chunked = req.ctx.get('transfer-encoding') !== '';
  if (length === 0 || (length === undefined && !chunked)) return null;
  return req.json(roleRefs.nullable());
}

export function registerRoleMappingsRoutes(admin: AdminRouter): void {
  const { db } = admin.services;

  for (const { segment, kind, notFoundMessage } of MAPPER_KINDS) {
    const base = `/${segment}/:ownerId/role-mappings`;

    const mapperOf = async (req: RealmRequest): Promise<Mapper> => {
      const id = req.params.ownerId ?? '';
      if (!UUID.test(id)) throw notFound(notFoundMessage);
      if (kind === 'group') {
        const group = await db.selectFrom('groups').select('id').where('realm_id', '=', req.realm.id).where('id', '=', id).executeTakeFirst();
        if (!group) throw notFound(notFoundMessage);
        return { kind, id: group.id, cached: false };
      }
      const user = await db.selectFrom('users').select(['id', 'service_account_client_id']).where('realm_id', '=', req.realm.id).where('id', '=', id).executeTakeFirst();
      if (!user) throw notFound(notFoundMessage);
      return { kind, id: user.id, cached: await tokenSubjectCached(db, user) };
    };

    // The realm context caches the subjects of service accounts and access-key users (and group
    // members may be either), so those changes drop it; other users' mappings are read per token.
    const writeOptions = { permission: 'manage-users', changesRealm: kind === 'group' } as const;
    const changed = async (req: RealmRequest, mapper: Mapper): Promise<void> => {
      if (mapper.kind === 'user' && mapper.cached) await req.services.registry.realmChanged(req.realm.id);
    };

    const clientOf = async (req: RealmRequest): Promise<string> => {
      const id = req.params.clientUuid ?? '';
      const client = UUID.test(id)
        ? await db.selectFrom('clients').select('id').where('realm_id', '=', req.realm.id).where('id', '=', id).executeTakeFirst()
        : undefined;
      if (!client) throw notFound('Client not found');
      return client.id;
    };

    // {realmMappings, clientMappings: {clientId: {id, client, mappings}}}, empty parts left out.
    admin.realm('get', base, { permission: 'view-users' }, async (req) => {
      const roles = await directRoles(db, await mapperOf(req)).execute();
      const realmMappings = roles.filter((r) => r.client_id === null).map((r) => roleRepresentation(r, true));
      const clientMappings: Record<string, { id: string; client: string; mappings: unknown[] }> = {};
      for (const role of roles) {
        if (role.client_id === null || role.owner === null) continue;
        (clientMappings[role.owner] ??= { id: role.client_id, client: role.owner, mappings: [] }).mappings.push(roleRepresentation(role, true));
      }
      return ok({
        ...(realmMappings.length > 0 ? { realmMappings } : {}),
        ...(Object.keys(clientMappings).length > 0 ? { clientMappings } : {}),
      });
    });

    // One container's mappings: realm roles (clientUuid null) or one client's roles.
    const routes = (path: string, containerOf: (req: RealmRequest) => Promise<string | null>): void => {
      admin.realm('get', path, { permission: 'view-users' }, async (req) => {
        const mapper = await mapperOf(req);
        const rows = await directRoles(db, mapper, await containerOf(req)).execute();
        return ok(rows.map((r) => roleRepresentation(r, true)));
      });

      admin.realm('post', path, writeOptions, async (req): Promise<Reply> => {
        const mapper = await mapperOf(req);
        const container = await containerOf(req);
        const roles = await resolveRoleRefs(db, req.realm.id, container, await req.json(roleRefs));
        requireMap(req, roles);
        await grant(db, mapper, roles);
        await changed(req, mapper);
        return noContent();
      });

      admin.realm('delete', path, writeOptions, async (req): Promise<Reply> => {
        const mapper = await mapperOf(req);
        const container = await containerOf(req);
        const refs = await optionalRoleRefs(req);
        const roles = refs === null
          ? await directRoles(db, mapper, container).execute()
          : await resolveRoleRefs(db, req.realm.id, container, refs);
        requireMap(req, roles);
        await revoke(db, mapper, roles);
        await changed(req, mapper);
        return noContent();
      });

      // Roles of the container not mapped directly that the caller may map.
      admin.realm('get', `${path}/available`, { permission: 'view-users' }, async (req) => {
        const mapper = await mapperOf(req);
        const container = await containerOf(req);
        const direct = new Set((await directRoles(db, mapper, container).execute()).map((r) => r.id));
        const all = await roleQuery(db).where('roles.realm_id', '=', req.realm.id)
          .where('roles.client_id', container === null ? 'is' : '=', container).orderBy('roles.name').execute();
        return ok(all.filter((r) => !direct.has(r.id) && canMap(req, r)).map((r) => roleRepresentation(r, true)));
      });

      // Effective roles of the container: composites expanded, group (and ancestor) mappings included.
      admin.realm('get', `${path}/composite`, { permission: 'view-users' }, async (req) => {
        const mapper = await mapperOf(req);
        const container = await containerOf(req);
        const ids = await effectiveRoleIds(req, mapper);
        if (ids.length === 0) return ok([]);
        const rows = await roleQuery(db).where('roles.realm_id', '=', req.realm.id)
          .where('roles.client_id', container === null ? 'is' : '=', container)
          .where('roles.id', 'in', ids).orderBy('roles.name').execute();
        const brief = req.bool('briefRepresentation') !== false;
        return ok(rows.map((r) => roleRepresentation(r, brief)));
      });
    };

    routes(`${base}/realm`, async () => null);
    routes(`${base}/clients/:clientUuid`, clientOf);
  }
}
