import type { Db } from './db.ts';
import type { Client, ProtocolMapper } from './schema.ts';

export function findClientByClientId(db: Db, realmId: string, clientId: string): Promise<Client | undefined> {
  return db.selectFrom('clients').selectAll().where('realm_id', '=', realmId).where('client_id', '=', clientId).executeTakeFirst();
}

export type ClientScopeLink = { id: string; name: string; attributes: Record<string, string>; defaultScope: boolean };

export async function listClientScopeLinks(db: Db, clientUuid: string): Promise<ClientScopeLink[]> {
  const rows = await db.selectFrom('client_client_scopes')
    .innerJoin('client_scopes', 'client_scopes.id', 'client_client_scopes.client_scope_id')
    .select(['client_scopes.id', 'client_scopes.name', 'client_scopes.attributes', 'client_client_scopes.default_scope'])
    .where('client_client_scopes.client_id', '=', clientUuid)
    .orderBy('client_scopes.name')
    .execute();
  return rows.map((r) => ({ id: r.id, name: r.name, attributes: r.attributes, defaultScope: r.default_scope }));
}

/** Mappers owned by the client itself and by the given client scopes. */
export function listProtocolMappers(db: Db, clientUuid: string, scopeIds: string[]): Promise<ProtocolMapper[]> {
  return db.selectFrom('protocol_mappers').selectAll()
    .where((eb) => eb.or([
      eb('client_id', '=', clientUuid),
      ...(scopeIds.length > 0 ? [eb('client_scope_id', 'in', scopeIds)] : []),
    ]))
    .orderBy('name')
    .execute();
}

export function findServiceAccountUserId(db: Db, clientUuid: string): Promise<{ id: string } | undefined> {
  return db.selectFrom('users').select('id').where('service_account_client_id', '=', clientUuid).executeTakeFirst();
}
