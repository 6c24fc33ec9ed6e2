// Admin REST API: role scope mappings of a client or a client scope (Keycloak's ScopeMappedResource
// and ScopeMappedClientResource): which roles may appear in tokens issued to a client that does not
// have fullScopeAllowed. Table scope_mappings.
import { sql } from 'kysely';
import { z } from 'zod';

import type { Db } from '../store/db.ts';
import type { MapperOwner, OwnerRoutes } from './protocol-mappers.ts';
import { UUID } from './realms.ts';
import { noContent, notFound, ok, type AdminRouter, type RealmRequest } from './router.ts';

type RoleRow = { id: string; name: string; description: string | null; client_id: string | null; attributes: Record<string, string[]>; composite: boolean };

/** Keycloak's RoleRepresentation: brief (what scope-mapping lists answer) or with attributes. */
export function roleRepresentation(role: RoleRow, realmId: string, brief = true): Record<string, unknown> {
  return {
    id: role.id, name: role.name,
    ...(role.description !== null ? { description: role.description } : {}),
    composite: role.composite, clientRole: role.client_id !== null, containerId: role.client_id ?? realmId,
    ...(brief ? {} : { attributes: role.attributes }),
  };
}

/** Roles of one container (the realm: clientUuid null), by name, with their composite flag. */
export function rolesQuery(db: Db, realmId: string, clientUuid: string | null) {
  return db.selectFrom('roles')
    .select(['roles.id', 'roles.name', 'roles.description', 'roles.client_id', 'roles.attributes'])
    .select(sql<boolean>`exists (select 1 from role_composites rc where rc.parent_id = roles.id)`.as('composite'))
    .where('roles.realm_id', '=', realmId)
    .where('roles.client_id', clientUuid === null ? 'is' : '=', clientUuid)
    .orderBy('roles.name');
}

const ownerColumn = (owner: MapperOwner) => (owner.kind === 'client' ? 'client_id' : 'client_scope_id') as 'client_id' | 'client_scope_id';

/** Role ids directly scope-mapped to the owner. */
async function mappedRoleIds(db: Db, owner: MapperOwner): Promise<Set<string>> {
  const rows = await db.selectFrom('scope_mappings').select('role_id').where(ownerColumn(owner), '=', owner.id).execute();
  return new Set(rows.map((r) => r.role_id));
}

/**
 * Keycloak's hasScope: roles reachable from the owner's scope mappings through composites; a
 * client also has its own roles, and everything when fullScopeAllowed. `undefined` means all.
 */
export async function scopedRoleIds(db: Db, owner: MapperOwner): Promise<Set<string> | undefined> {
  if (owner.kind === 'client') {
    const client = await db.selectFrom('clients').select('full_scope_allowed').where('id', '=', owner.id).executeTakeFirst();
    if (client?.full_scope_allowed) return undefined;
  }
  const own = owner.kind === 'client' ? sql`UNION SELECT id FROM roles WHERE client_id = ${owner.id}` : sql``;
  const { rows } = await sql<{ id: string }>`
    WITH RECURSIVE allowed(id) AS (
      SELECT role_id FROM scope_mappings WHERE ${sql.ref(ownerColumn(owner))} = ${owner.id}
      ${own}
      UNION
      SELECT rc.child_id FROM role_composites rc JOIN allowed ON rc.parent_id = allowed.id
    )
    SELECT id FROM allowed
  `.execute(db);
  return new Set(rows.map((r) => r.id));
}

const roleList = z.array(z.object({ id: z.string().optional(), name: z.string().optional() }).loose());

/** A DELETE may come without a body (Keycloak then removes every mapping of the container). */
async function optionalRoleList(req: RealmRequest): Promise<z.infer<typeof roleList> | null> {
  const length = req.ctx.request.length;
  const hasBody = length !== undefined ? length > 0 : Boolean(req.ctx.get('transfer-encoding'));
  if (!hasBody) return null;
  return req.json(roleList.nullable());
}

export function registerScopeMappingRoutes(admin: AdminRouter, owners: OwnerRoutes): void {
  const { db } = admin.services;
  const base = `${owners.path}/scope-mappings`;
  const view = { permission: owners.view };
  const manage = { permission: owners.manage };

  async function roleClient(req: RealmRequest): Promise<{ id: string; clientId: string }> {
    const id = req.params.roleClient ?? '';
    const client = UUID.test(id)
      ? await db.selectFrom('clients').select(['id', 'client_id']).where('realm_id', '=', req.realm.id).where('id', '=', id).executeTakeFirst()
      : undefined;
    if (!client) throw notFound('Could not find client');
    return { id: client.id, clientId: client.client_id };
  }

  /** Roles of a container split by whether the owner has them in scope. */
  async function partition(owner: MapperOwner, realmId: string, clientUuid: string | null): Promise<{ inScope: RoleRow[]; outOfScope: RoleRow[] }> {
    const [roles, scoped] = await Promise.all([rolesQuery(db, realmId, clientUuid).execute(), scopedRoleIds(db, owner)]);
    const has = (r: RoleRow) => scoped === undefined || scoped.has(r.id);
    return { inScope: roles.filter(has), outOfScope: roles.filter((r) => !has(r)) };
  }

  async function addMappings(owner: MapperOwner, roleIds: string[]): Promise<void> {
    for (const roleId of roleIds) {
      await db.insertInto('scope_mappings')
        .values({ client_id: owner.kind === 'client' ? owner.id : null, client_scope_id: owner.kind === 'scope' ? owner.id : null, role_id: roleId })
        .onConflict((oc) => oc.doNothing()).execute();
    }
  }

  async function removeMappings(owner: MapperOwner, roleIds: string[]): Promise<void> {
    if (roleIds.length === 0) return;
    await db.deleteFrom('scope_mappings').where(ownerColumn(owner), '=', owner.id).where('role_id', 'in', roleIds).execute();
  }

  admin.realm('get', base, view, async (req) => {
    const owner = await owners.find(req);
    const rows = await db.selectFrom('scope_mappings')
      .innerJoin('roles', 'roles.id', 'scope_mappings.role_id')
      .leftJoin('clients', 'clients.id', 'roles.client_id')
      .select(['roles.id', 'roles.name', 'roles.description', 'roles.client_id', 'roles.attributes', 'clients.client_id as clientClientId'])
      .select(sql<boolean>`exists (select 1 from role_composites rc where rc.parent_id = roles.id)`.as('composite'))
      .where(owner.kind === 'client' ? 'scope_mappings.client_id' : 'scope_mappings.client_scope_id', '=', owner.id)
      .orderBy('roles.name').execute();
    const realmMappings = rows.filter((r) => r.client_id === null).map((r) => roleRepresentation(r, req.realm.id));
    const clientMappings: Record<string, { id: string; client: string; mappings: unknown[] }> = {};
    for (const row of rows) {
      if (row.client_id === null || row.clientClientId === null) continue;
      (clientMappings[row.clientClientId] ??= { id: row.client_id, client: row.clientClientId, mappings: [] }).mappings.push(roleRepresentation(row, req.realm.id));
    }
    // Keycloak leaves out empty parts of a MappingsRepresentation.
    return ok({
      ...(realmMappings.length > 0 ? { realmMappings } : {}),
      ...(Object.keys(clientMappings).length > 0 ? { clientMappings } : {}),
    });
  });

  // Realm roles.
  admin.realm('get', `${base}/realm`, view, async (req) => {
    const owner = await owners.find(req);
    const mapped = await mappedRoleIds(db, owner);
    const roles = await rolesQuery(db, req.realm.id, null).execute();
    return ok(roles.filter((r) => mapped.has(r.id)).map((r) => roleRepresentation(r, req.realm.id)));
  });

  admin.realm('get', `${base}/realm/available`, view, async (req) => {
    const owner = await owners.find(req);
    const { outOfScope } = await partition(owner, req.realm.id, null);
    return ok(outOfScope.map((r) => roleRepresentation(r, req.realm.id)));
  });

  admin.realm('get', `${base}/realm/composite`, view, async (req) => {
    const owner = await owners.find(req);
    const brief = req.bool('briefRepresentation') ?? true;
    const { inScope } = await partition(owner, req.realm.id, null);
    return ok(inScope.map((r) => roleRepresentation(r, req.realm.id, brief)));
  });

  /** The roles of a body, by id as Keycloak looks them up (realm.getRoleById); 404 for any unknown. */
  const realmRoleIds = async (realmId: string, body: Array<{ id?: string | undefined }>): Promise<string[]> => {
    const ids: string[] = [];
    for (const role of body) {
      const found = role.id && UUID.test(role.id)
        ? await db.selectFrom('roles').select('id').where('realm_id', '=', realmId).where('id', '=', role.id).executeTakeFirst()
        : undefined;
      if (!found) throw notFound('Role not found');
      ids.push(found.id);
    }
    return ids;
  };

  admin.realm('post', `${base}/realm`, manage, async (req) => {
    const owner = await owners.find(req);
    const body = await req.json(roleList);
    await addMappings(owner, await realmRoleIds(req.realm.id, body));
    return noContent();
  });

  admin.realm('delete', `${base}/realm`, manage, async (req) => {
    const owner = await owners.find(req);
    const body = await optionalRoleList(req);
    if (body === null) {
      const realmRoles = await rolesQuery(db, req.realm.id, null).execute();
      await removeMappings(owner, realmRoles.map((r) => r.id));
      return noContent();
    }
    await removeMappings(owner, await realmRoleIds(req.realm.id, body));
    return noContent();
  });

  // Roles of one client.
  const clientBase = `${base}/clients/:roleClient`;

  admin.realm('get', clientBase, view, async (req) => {
    const owner = await owners.find(req);
    const target = await roleClient(req);
    const mapped = await mappedRoleIds(db, owner);
    const roles = await rolesQuery(db, req.realm.id, target.id).execute();
    return ok(roles.filter((r) => mapped.has(r.id)).map((r) => roleRepresentation(r, req.realm.id)));
  });

  admin.realm('get', `${clientBase}/available`, view, async (req) => {
    const owner = await owners.find(req);
    const target = await roleClient(req);
    const { outOfScope } = await partition(owner, req.realm.id, target.id);
    return ok(outOfScope.map((r) => roleRepresentation(r, req.realm.id)));
  });

  admin.realm('get', `${clientBase}/composite`, view, async (req) => {
    const owner = await owners.find(req);
    const target = await roleClient(req);
    const brief = req.bool('briefRepresentation') ?? true;
    const { inScope } = await partition(owner, req.realm.id, target.id);
    return ok(inScope.map((r) => roleRepresentation(r, req.realm.id, brief)));
  });

  /** Client roles are named in the body (Keycloak: scopedClient.getRole(name)). */
  async function clientRoleIds(target: { id: string }, realmId: string, body: z.infer<typeof roleList>): Promise<string[]> {
    const ids: string[] = [];
    for (const role of body) {
      const found = role.name
        ? await db.selectFrom('roles').select('id').where('realm_id', '=', realmId).where('client_id', '=', target.id).where('name', '=', role.name).executeTakeFirst()
        : undefined;
      if (!found) throw notFound('Role not found');
      ids.push(found.id);
    }
    return ids;
  }

  admin.realm('post', clientBase, manage, async (req) => {
    const owner = await owners.find(req);
    const target = await roleClient(req);
    await addMappings(owner, await clientRoleIds(target, req.realm.id, await req.json(roleList)));
    return noContent();
  });

  admin.realm('delete', clientBase, manage, async (req) => {
    const owner = await owners.find(req);
    const target = await roleClient(req);
    const body = await optionalRoleList(req);
    const ids = body === null
      ? (await rolesQuery(db, req.realm.id, target.id).execute()).map((r) => r.id)
      : await clientRoleIds(target, req.realm.id, body);
    await removeMappings(owner, ids);
    return noContent();
  });
}
