// Admin REST API: client scopes (Keycloak's ClientScopesResource and ClientScopeResource), with
// their protocol mappers and role scope mappings (shared with clients).
import { z } from 'zod';

import { newId } from '../crypto/random.ts';
import { protocolMapperRep } from '../realms/representation.ts';
import type { Db } from '../store/db.ts';
import type { ClientScope } from '../store/schema.ts';
import { insertMappers, mapperRepresentation, registerProtocolMapperRoutes, type OwnerRoutes } from './protocol-mappers.ts';
import { UUID } from './realms.ts';
import { AdminError, badRequest, conflict, created, noContent, notFound, ok, type AdminRouter, type RealmRequest } from './router.ts';
import { registerScopeMappingRoutes } from './scope-mappings.ts';

/** Protocols Keycloak accepts for a client scope (its LoginProtocol providers, plus oid4vc). */
const PROTOCOLS = new Set(['openid-connect', 'saml', 'oid4vc']);

/** Printable ASCII without space, '"' and '\' (ClientScopeResource.scopeNamePattern). */
const SCOPE_NAME = /^[\x21\x23-\x5B\x5D-\x7E]+$/;

const attributeValue = z.union([z.string(), z.number(), z.boolean(), z.null()]).transform((v) => (v === null ? null : String(v)));

const clientScopeBody = z.object({
  id: z.string().nullish(),
  name: z.string().nullish(),
  description: z.string().nullish(),
  protocol: z.string().nullish(),
  attributes: z.record(z.string(), attributeValue).nullish(),
  protocolMappers: z.array(protocolMapperRep).nullish(),
}).loose();
type ClientScopeBody = z.infer<typeof clientScopeBody>;

/** Keycloak's ClientScopeRepresentation (protocolMappers only when there are some). */
export async function clientScopeRepresentations(db: Db, scopes: ClientScope[]): Promise<Record<string, unknown>[]> {
  const ids = scopes.map((s) => s.id);
  const mappers = ids.length === 0 ? [] : await db.selectFrom('protocol_mappers').selectAll()
    .where('client_scope_id', 'in', ids).orderBy('name').orderBy('id').execute();
  return scopes.map((scope) => {
    const own = mappers.filter((m) => m.client_scope_id === scope.id);
    return {
      id: scope.id, name: scope.name,
      ...(scope.description !== null ? { description: scope.description } : {}),
      protocol: scope.protocol,
      attributes: scope.attributes,
      ...(own.length > 0 ? { protocolMappers: own.map(mapperRepresentation) } : {}),
    };
  });
}

function validateName(name: string | null | undefined): asserts name is string {
  if (typeof name !== 'string' || !SCOPE_NAME.test(name)) throw badRequest(`Unexpected name "${name ?? 'null'}" for ClientScope`);
}

/** Dynamic scopes are a preview feature Keycloak keeps off by default: their attributes are refused. */
function validateDynamic(attributes: Record<string, string | null> | null | undefined): void {
  const regexp = attributes?.['dynamic.scope.regexp'];
  if (regexp) throw badRequest(`Unexpected value "${regexp}" for attribute dynamic.scope.regexp in ClientScope`);
  if (attributes?.['is.dynamic.scope']?.toLowerCase() === 'true') throw badRequest('Unexpected value "true" for attribute is.dynamic.scope in ClientScope');
}

function mergeAttributes(current: Record<string, string>, changes: ClientScopeBody['attributes']): Record<string, string> {
  const out = { ...current };
  for (const [key, value] of Object.entries(changes ?? {})) {
    if (value === null) delete out[key];
    else out[key] = value;
  }
  return out;
}

export function registerClientScopesRoutes(admin: AdminRouter): void {
  const { db } = admin.services;
  const view = ['view-clients', 'view-realm'] as const;

  async function findScope(req: RealmRequest): Promise<ClientScope> {
    const id = req.params.id ?? '';
    const scope = UUID.test(id)
      ? await db.selectFrom('client_scopes').selectAll().where('realm_id', '=', req.realm.id).where('id', '=', id).executeTakeFirst()
      : undefined;
    if (!scope) throw notFound('Could not find client scope');
    return scope;
  }

  const owners: OwnerRoutes = {
    path: '/client-scopes/:id',
    view: [...view],
    manage: 'manage-clients',
    async find(req) {
      const scope = await findScope(req);
      return { kind: 'scope', id: scope.id, realmId: req.realm.id };
    },
  };
  registerProtocolMapperRoutes(admin, owners);
  registerScopeMappingRoutes(admin, owners);

  admin.realm('get', '/client-scopes', { permission: [...view] }, async (req) => {
    const scopes = await db.selectFrom('client_scopes').selectAll().where('realm_id', '=', req.realm.id).orderBy('name').execute();
    return ok(await clientScopeRepresentations(db, scopes));
  });

  admin.realm('post', '/client-scopes', { permission: 'manage-clients' }, async (req) => {
    const body = await req.json(clientScopeBody);
    validateName(body.name);
    if (!body.protocol || !PROTOCOLS.has(body.protocol)) throw badRequest('Unexpected protocol');
    validateDynamic(body.attributes);
    const name = body.name;
    const id = await db.transaction().execute(async (trx) => {
      const taken = await trx.selectFrom('client_scopes').select('id').where('realm_id', '=', req.realm.id).where('name', '=', name).executeTakeFirst();
      const scopeId = body.id && UUID.test(body.id) ? body.id.toLowerCase() : newId();
      const idTaken = body.id && await trx.selectFrom('client_scopes').select('id').where('id', '=', scopeId).executeTakeFirst();
      if (taken || idTaken) throw conflict(`Client Scope ${name} already exists`);
      await trx.insertInto('client_scopes').values({
        id: scopeId, realm_id: req.realm.id, name, description: body.description ?? null, protocol: body.protocol!,
        attributes: JSON.stringify(mergeAttributes({}, body.attributes)),
      }).execute();
      if (body.protocolMappers) await insertMappers(trx, { kind: 'scope', id: scopeId, realmId: req.realm.id }, body.protocolMappers);
      return scopeId;
    });
    return created(id);
  });

  admin.realm('get', '/client-scopes/:id', { permission: [...view] }, async (req) => {
    const [rep] = await clientScopeRepresentations(db, [await findScope(req)]);
    return ok(rep);
  });

  // RepresentationToModel.updateClientScope: name, description, protocol and attributes when sent.
  admin.realm('put', '/client-scopes/:id', { permission: 'manage-clients' }, async (req) => {
    const scope = await findScope(req);
    const body = await req.json(clientScopeBody);
    if (body.name != null) validateName(body.name);
    if (body.protocol != null && !PROTOCOLS.has(body.protocol)) throw badRequest('Unexpected protocol');
    validateDynamic(body.attributes);
    const name = body.name ?? scope.name;
    if (name !== scope.name) {
      const taken = await db.selectFrom('client_scopes').select('id').where('realm_id', '=', req.realm.id).where('name', '=', name).executeTakeFirst();
      if (taken) throw conflict(`Client Scope ${name} already exists`);
    }
    await db.updateTable('client_scopes').set({
      name,
      description: body.description ?? scope.description,
      protocol: body.protocol ?? scope.protocol,
      attributes: JSON.stringify(mergeAttributes(scope.attributes, body.attributes)),
    }).where('id', '=', scope.id).execute();
    return noContent();
  });

  // Keycloak 26 removes the scope's links to clients and realm defaults with it (ON DELETE
  // CASCADE here), but refuses to delete the realm's last client scope.
  admin.realm('delete', '/client-scopes/:id', { permission: 'manage-clients' }, async (req) => {
    const scope = await findScope(req);
    const count = await db.selectFrom('client_scopes').select((eb) => eb.fn.countAll<number>().as('n')).where('realm_id', '=', req.realm.id).executeTakeFirstOrThrow();
    if (Number(count.n) <= 1) throw new AdminError(403, 'You are not allowed to delete all the client scopes.');
    await db.deleteFrom('client_scopes').where('id', '=', scope.id).execute();
    return noContent();
  });
}
