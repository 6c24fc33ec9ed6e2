// Admin REST API: the realm's login events and admin events (query and clear) and the events
// configuration (kept in realms.settings under the RealmRepresentation field names). Events are
// written elsewhere: login events by src/events/events.ts, admin events by the admin router.
import { sql } from 'kysely';
import { z } from 'zod';

import { EVENT_TYPES } from '../events/events.ts';
import { UUID } from './realms.ts';
import { badRequest, noContent, ok, type AdminRouter, type RealmRequest } from './router.ts';

const OPERATION_TYPES = new Set(['CREATE', 'UPDATE', 'DELETE', 'ACTION']);
const RESOURCE_TYPES = new Set([
  'REALM', 'REALM_ROLE', 'REALM_ROLE_MAPPING', 'REALM_SCOPE_MAPPING', 'AUTH_FLOW', 'AUTH_EXECUTION_FLOW', 'AUTH_EXECUTION',
  'AUTHENTICATOR_CONFIG', 'REQUIRED_ACTION', 'IDENTITY_PROVIDER', 'IDENTITY_PROVIDER_MAPPER', 'PROTOCOL_MAPPER', 'USER',
  'USER_LOGIN_FAILURE', 'USER_SESSION', 'USER_FEDERATION_PROVIDER', 'USER_FEDERATION_MAPPER', 'GROUP', 'GROUP_MEMBERSHIP',
  'CLIENT', 'CLIENT_INITIAL_ACCESS_MODEL', 'CLIENT_ROLE', 'CLIENT_ROLE_MAPPING', 'CLIENT_SCOPE', 'CLIENT_SCOPE_MAPPING',
  'CLIENT_SCOPE_CLIENT_MAPPING', 'CLUSTER_NODE', 'COMPONENT', 'AUTHORIZATION_RESOURCE_SERVER', 'AUTHORIZATION_RESOURCE',
  'AUTHORIZATION_SCOPE', 'AUTHORIZATION_POLICY', 'CUSTOM', 'USER_PROFILE', 'ORGANIZATION', 'ORGANIZATION_MEMBERSHIP', 'USER_STORAGE',
]);

/** Every value of a repeatable query parameter. */
function queryValues(req: RealmRequest, name: string): string[] {
  const value = req.ctx.query[name];
  if (value === undefined) return [];
  return (Array.isArray(value) ? value : [value]).filter((v) => v !== '');
}

/** Keycloak's DateUtil.toStartOfDay / toEndOfDay: yyyy-MM-dd (UTC here) or epoch milliseconds. */
function parseDate(value: string | undefined, name: 'dateFrom' | 'dateTo'): Date | undefined {
  if (value === undefined || value === '') return undefined;
  const invalid = badRequest(`Invalid value for '${name}', expected format is yyyy-MM-dd or an Epoch timestamp`);
  if (/^\d+$/.test(value)) {
    const date = new Date(Number(value));
    if (Number.isNaN(date.getTime())) throw invalid;
    return date;
  }
  const match = /^(\d{4})-(\d{2})-(\d{2})$/.exec(value);
  if (!match) throw invalid;
  const [year, month, day] = [Number(match[1]), Number(match[2]), Number(match[3])];
  const start = new Date(Date.UTC(year, month - 1, day));
  if (start.getUTCFullYear() !== year || start.getUTCMonth() !== month - 1 || start.getUTCDate() !== day) throw invalid;
  return name === 'dateFrom' ? start : new Date(start.getTime() + 86_400_000 - 1);
}

function direction(req: RealmRequest): 'asc' | 'desc' {
  const value = req.query.direction;
  if (value === undefined || value === 'desc') return 'desc';
  if (value === 'asc') return 'asc';
  throw badRequest('Invalid value for sortDirection, expected value is asc or desc');
}

/** The events configuration as GET answers it (Keycloak lists the saved-by-default types when none are chosen). */
function eventsConfig(settings: Record<string, unknown>): Record<string, unknown> {
  const chosen = Array.isArray(settings.enabledEventTypes) ? settings.enabledEventTypes as string[] : [];
  const expiration = typeof settings.eventsExpiration === 'number' ? settings.eventsExpiration : 0;
  return {
    eventsEnabled: settings.eventsEnabled === true,
    ...(expiration !== 0 ? { eventsExpiration: expiration } : {}),
    eventsListeners: Array.isArray(settings.eventsListeners) ? settings.eventsListeners : [],
    enabledEventTypes: chosen.length > 0 ? chosen : Object.entries(EVENT_TYPES).filter(([, saved]) => saved).map(([type]) => type),
    adminEventsEnabled: settings.adminEventsEnabled === true,
    adminEventsDetailsEnabled: settings.adminEventsDetailsEnabled === true,
  };
}

const eventsConfigRep = z.object({
  eventsEnabled: z.boolean().nullish(),
  eventsExpiration: z.number().int().min(0).nullish(),
  eventsListeners: z.array(z.string()).nullish(),
  enabledEventTypes: z.array(z.string()).nullish(),
  adminEventsEnabled: z.boolean().nullish(),
  adminEventsDetailsEnabled: z.boolean().nullish(),
}).loose();

export function registerEventsRoutes(admin: AdminRouter): void {
  const { db } = admin.services;

  admin.realm('get', '/events/config', { permission: 'view-events' }, async (req) => ok(eventsConfig(req.realm.settings as Record<string, unknown>)));

  admin.realm('put', '/events/config', { permission: 'manage-events' }, async (req) => {
    const body = await req.json(eventsConfigRep);
    for (const type of body.enabledEventTypes ?? []) {
      if (!(type in EVENT_TYPES)) throw badRequest(`Invalid event type: ${type}`);
    }
    // Keycloak's RealmManager.updateRealmEventsConfig: eventsEnabled and eventsExpiration are
    // always set (absent = off / 0), the other fields only when given.
    const patch: Record<string, unknown> = { eventsEnabled: body.eventsEnabled ?? false, eventsExpiration: body.eventsExpiration ?? 0 };
    if (body.eventsListeners) patch.eventsListeners = [...new Set(body.eventsListeners)];
    if (body.enabledEventTypes) patch.enabledEventTypes = [...new Set(body.enabledEventTypes)];
    if (body.adminEventsEnabled !== undefined && body.adminEventsEnabled !== null) patch.adminEventsEnabled = body.adminEventsEnabled;
    if (body.adminEventsDetailsEnabled !== undefined && body.adminEventsDetailsEnabled !== null) patch.adminEventsDetailsEnabled = body.adminEventsDetailsEnabled;
    // One statement: concurrent realm updates keep their own fields.
    await db.updateTable('realms')
      .set({ settings: sql`settings || ${JSON.stringify(patch)}::jsonb`, updated_at: new Date() })
      .where('id', '=', req.realm.id).execute();
    return noContent();
  });

  admin.realm('get', '/events', { permission: 'view-events' }, async (req) => {
    const { first, max } = req.page(100);
    let query = db.selectFrom('events').selectAll().where('realm_id', '=', req.realm.id);
    const types = queryValues(req, 'type');
    for (const type of types) if (!(type in EVENT_TYPES)) throw badRequest(`Invalid event type: ${type}`);
    if (types.length > 0) query = query.where('type', 'in', types);
    if (req.query.client !== undefined) query = query.where('client_id', '=', req.query.client);
    if (req.query.user !== undefined) {
      if (!UUID.test(req.query.user)) return ok([]);
      query = query.where('user_id', '=', req.query.user);
    }
    if (req.query.ipAddress !== undefined) query = query.where('ip_address', '=', req.query.ipAddress);
    const from = parseDate(req.query.dateFrom, 'dateFrom');
    const to = parseDate(req.query.dateTo, 'dateTo');
    if (from) query = query.where('time', '>=', from);
    if (to) query = query.where('time', '<=', to);
    const order = direction(req);
    query = query.orderBy('time', order).orderBy('id', order);
    if (first > 0) query = query.offset(first);
    if (max !== undefined) query = query.limit(max);
    const rows = await query.execute();
    return ok(rows.map((row) => ({
      id: row.id,
      time: new Date(row.time).getTime(),
      type: row.type,
      realmId: row.realm_id,
      ...(row.client_id !== null ? { clientId: row.client_id } : {}),
      ...(row.user_id !== null ? { userId: row.user_id } : {}),
      ...(row.session_id !== null ? { sessionId: row.session_id } : {}),
      ...(row.ip_address !== null ? { ipAddress: row.ip_address } : {}),
      ...(row.error !== null ? { error: row.error } : {}),
      ...(row.details && Object.keys(row.details).length > 0 ? { details: stringDetails(row.details) } : {}),
    })));
  });

  admin.realm('delete', '/events', { permission: 'manage-events', changesRealm: false }, async (req) => {
    await db.deleteFrom('events').where('realm_id', '=', req.realm.id).execute();
    return noContent();
  });

  admin.realm('get', '/admin-events', { permission: 'view-events' }, async (req) => {
    const { first, max } = req.page(100);
    let query = db.selectFrom('admin_events').selectAll().where('realm_id', '=', req.realm.id);
    const operations = queryValues(req, 'operationTypes');
    for (const op of operations) if (!OPERATION_TYPES.has(op)) throw badRequest(`Invalid operation type: ${op}`);
    if (operations.length > 0) query = query.where('operation_type', 'in', operations);
    const resources = queryValues(req, 'resourceTypes');
    for (const type of resources) if (!RESOURCE_TYPES.has(type)) throw badRequest(`Invalid resource type: ${type}`);
    if (resources.length > 0) query = query.where('resource_type', 'in', resources);
    const { authRealm, authUser, authClient, authIpAddress, resourcePath } = req.query;
    if (authRealm !== undefined) {
      if (!UUID.test(authRealm)) return ok([]);
      query = query.where('auth_realm_id', '=', authRealm);
    }
    if (authUser !== undefined) {
      if (!UUID.test(authUser)) return ok([]);
      query = query.where('auth_user_id', '=', authUser);
    }
    if (authClient !== undefined) query = query.where('auth_client_id', '=', authClient); // the client's uuid, as Keycloak stores it
    if (authIpAddress !== undefined) query = query.where('ip_address', '=', authIpAddress);
    if (resourcePath !== undefined && resourcePath !== '') {
      const pattern = resourcePath.replace(/[\\%_]/g, '\\$&').replaceAll('*', '%');
      query = query.where('resource_path', 'like', pattern);
    }
    const from = parseDate(req.query.dateFrom, 'dateFrom');
    const to = parseDate(req.query.dateTo, 'dateTo');
    if (from) query = query.where('time', '>=', from);
    if (to) query = query.where('time', '<=', to);
    const order = direction(req);
    query = query.orderBy('time', order).orderBy('id', order);
    if (first > 0) query = query.offset(first);
    if (max !== undefined) query = query.limit(max);
    const rows = await query.execute();
    return ok(rows.map((row) => ({
      id: row.id,
      time: new Date(row.time).getTime(),
      realmId: row.realm_id,
      authDetails: {
        ...(row.auth_realm_id !== null ? { realmId: row.auth_realm_id } : {}),
        ...(row.auth_client_id !== null ? { clientId: row.auth_client_id } : {}),
        ...(row.auth_user_id !== null ? { userId: row.auth_user_id } : {}),
        ...(row.ip_address !== null ? { ipAddress: row.ip_address } : {}),
      },
      operationType: row.operation_type,
      resourceType: row.resource_type,
      resourcePath: row.resource_path,
      ...(row.representation !== null ? { representation: JSON.stringify(row.representation) } : {}),
      ...(row.error !== null ? { error: row.error } : {}),
    })));
  });

  admin.realm('delete', '/admin-events', { permission: 'manage-events', changesRealm: false }, async (req) => {
    await db.deleteFrom('admin_events').where('realm_id', '=', req.realm.id).execute();
    return noContent();
  });
}

/** Keycloak's event details are Map<String, String>. */
function stringDetails(details: Record<string, unknown>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [key, value] of Object.entries(details)) {
    if (value === null || value === undefined) continue;
    out[key] = typeof value === 'string' ? value : JSON.stringify(value);
  }
  return out;
}

