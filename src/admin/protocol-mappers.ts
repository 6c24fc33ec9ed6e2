// Admin REST API: protocol mappers of a client or of a client scope (Keycloak's
// ProtocolMappersResource, mounted under /clients/{id} and /client-scopes/{id}). Also the helpers
// clients.ts and client-scopes.ts use to create and replace mappers from a representation.
import { z } from 'zod';

import { newId } from '../crypto/random.ts';
import { protocolMapperRep, type ProtocolMapperRepresentation } from '../realms/representation.ts';
import type { Db } from '../store/db.ts';
import type { ProtocolMapper } from '../store/schema.ts';
import { UUID } from './realms.ts';
import { conflict, created, noContent, notFound, ok, type AdminRouter, type Permission, type RealmRequest } from './router.ts';

/** A client or a client scope: whatever owns mappers and scope mappings. */
export type MapperOwner = { kind: 'client' | 'scope'; id: string; realmId: string };

/** How a resource module mounts the shared sub-resources: its path, permissions and owner lookup. */
export type OwnerRoutes = {
  /** e.g. '/clients/:id' */
  path: string;
  view: Permission;
  manage: Permission;
  /** Loads the owner named by the path; throws 404 when it does not exist. */
  find(req: RealmRequest): Promise<MapperOwner>;
};

export const DUPLICATE_MAPPER = 'Protocol mapper exists with same name';

const ownerColumn = (owner: MapperOwner) => (owner.kind === 'client' ? 'client_id' : 'client_scope_id') as 'client_id' | 'client_scope_id';

/** Keycloak's ProtocolMapperRepresentation. */
export function mapperRepresentation(row: ProtocolMapper): Record<string, unknown> {
  return { id: row.id, name: row.name, protocol: row.protocol, protocolMapper: row.protocol_mapper, config: row.config };
}

export function listMappers(db: Db, owner: MapperOwner): Promise<ProtocolMapper[]> {
  return db.selectFrom('protocol_mappers').selectAll().where(ownerColumn(owner), '=', owner.id).orderBy('name').orderBy('id').execute();
}

/**
 * Adds mappers to an owner inside the caller's transaction. Names are unique per protocol and
 * owner (Keycloak's ModelDuplicateException, answered 409).
 */
export async function insertMappers(db: Db, owner: MapperOwner, mappers: ProtocolMapperRepresentation[]): Promise<string[]> {
  const existing = new Set((await listMappers(db, owner)).map((m) => `${m.protocol}\u0000${m.name}`));
  const ids: string[] = [];
  for (const mapper of mappers) {
    const key = `${mapper.protocol}\u0000${mapper.name}`;
    if (existing.has(key)) throw conflict(DUPLICATE_MAPPER);
    existing.add(key);
    // A given id is kept (exports round-trip) unless another mapper already has it (a copied client).
    let id = mapper.id && UUID.test(mapper.id) ? mapper.id.toLowerCase() : newId();
    if (mapper.id && await db.selectFrom('protocol_mappers').select('id').where('id', '=', id).executeTakeFirst()) id = newId();
    await db.insertInto('protocol_mappers').values({
      id, realm_id: owner.realmId, client_id: owner.kind === 'client' ? owner.id : null,
      client_scope_id: owner.kind === 'scope' ? owner.id : null, name: mapper.name, protocol: mapper.protocol,
      protocol_mapper: mapper.protocolMapper, config: JSON.stringify(mapper.config),
    }).execute();
    ids.push(id);
  }
  return ids;
}

/**
 * A client update carrying protocolMappers (RepresentationToModel.updateClientProtocolMappers):
 * mappers matched by protocol and name are updated, new ones added, the others removed.
 */
export async function replaceMappers(db: Db, owner: MapperOwner, mappers: ProtocolMapperRepresentation[]): Promise<void> {
  const existing = new Map((await listMappers(db, owner)).map((m) => [`${m.protocol}\u0000${m.name}`, m]));
  const added: ProtocolMapperRepresentation[] = [];
  for (const mapper of mappers) {
    const key = `${mapper.protocol}\u0000${mapper.name}`;
    const current = existing.get(key);
    if (!current) {
      added.push(mapper);
      continue;
    }
    existing.delete(key);
    await db.updateTable('protocol_mappers')
      .set({ protocol_mapper: mapper.protocolMapper, config: JSON.stringify(mapper.config) })
      .where('id', '=', current.id).execute();
  }
  const stale = [...existing.values()].map((m) => m.id);
  if (stale.length > 0) await db.deleteFrom('protocol_mappers').where('id', 'in', stale).execute();
  await insertMappers(db, owner, added);
}

async function findMapper(db: Db, owner: MapperOwner, mapperId: string | undefined): Promise<ProtocolMapper> {
  const row = mapperId && UUID.test(mapperId)
    ? await db.selectFrom('protocol_mappers').selectAll().where(ownerColumn(owner), '=', owner.id).where('id', '=', mapperId).executeTakeFirst()
    : undefined;
  if (!row) throw notFound('Model not found');
  return row;
}

export function registerProtocolMapperRoutes(admin: AdminRouter, owners: OwnerRoutes): void {
  const { db } = admin.services;
  const base = `${owners.path}/protocol-mappers`;

  admin.realm('get', `${base}/models`, { permission: owners.view }, async (req) => {
    const owner = await owners.find(req);
    return ok((await listMappers(db, owner)).map(mapperRepresentation));
  });

  admin.realm('get', `${base}/protocol/:protocol`, { permission: owners.view }, async (req) => {
    const owner = await owners.find(req);
    return ok((await listMappers(db, owner)).filter((m) => m.protocol === req.params.protocol).map(mapperRepresentation));
  });

  admin.realm('post', `${base}/models`, { permission: owners.manage }, async (req) => {
    const owner = await owners.find(req);
    const mapper = await req.json(protocolMapperRep);
    const [id] = await db.transaction().execute((trx) => insertMappers(trx, owner, [mapper]));
    return created(id!);
  });

  admin.realm('post', `${base}/add-models`, { permission: owners.manage }, async (req) => {
    const owner = await owners.find(req);
    const mappers = await req.json(z.array(protocolMapperRep));
    await db.transaction().execute((trx) => insertMappers(trx, owner, mappers));
    return noContent();
  });

  admin.realm('get', `${base}/models/:mapperId`, { permission: owners.view }, async (req) => {
    const owner = await owners.find(req);
    return ok(mapperRepresentation(await findMapper(db, owner, req.params.mapperId)));
  });

  admin.realm('put', `${base}/models/:mapperId`, { permission: owners.manage }, async (req) => {
    const owner = await owners.find(req);
    const current = await findMapper(db, owner, req.params.mapperId);
    const mapper = await req.json(protocolMapperRep);
    // Keycloak updates the mapper type and config; a new name must stay unique like on create.
    if (mapper.name !== current.name) {
      const taken = await db.selectFrom('protocol_mappers').select('id').where(ownerColumn(owner), '=', owner.id)
        .where('protocol', '=', current.protocol).where('name', '=', mapper.name).executeTakeFirst();
      if (taken) throw conflict(DUPLICATE_MAPPER);
    }
    await db.updateTable('protocol_mappers')
      .set({ name: mapper.name, protocol_mapper: mapper.protocolMapper, config: JSON.stringify(mapper.config) })
      .where('id', '=', current.id).execute();
    return noContent();
  });

  admin.realm('delete', `${base}/models/:mapperId`, { permission: owners.manage }, async (req) => {
    const owner = await owners.find(req);
    const current = await findMapper(db, owner, req.params.mapperId);
    await db.deleteFrom('protocol_mappers').where('id', '=', current.id).execute();
    return noContent();
  });
}
