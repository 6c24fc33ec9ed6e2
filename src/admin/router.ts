// The Admin REST API's plumbing: routes under {base}/admin, the caller's authentication, the
// target realm, JSON bodies validated with zod, Keycloak's status codes and error shapes, admin
// events, and telling every instance that a realm changed. Resource modules (users.ts, clients.ts...)
// only declare routes: path, the management role they need, and a handler returning a Reply.
import { Router } from '@koa/router';
import type { Context } from 'koa';
import { z, type ZodType } from 'zod';

import type { Config } from '../config.ts';
import type { SecretBox } from '../crypto/secret-box.ts';
import { newId } from '../crypto/random.ts';
import { BodyError, readJson, readText } from '../http/body.ts';
import { BadOriginError, publicOrigin } from '../http/origin.ts';
import type { Mailer } from '../mail/mailer.ts';
import type { Logger } from '../observability/logger.ts';
import type { RealmRegistry } from '../realms/registry.ts';
import { parseRealmSettings } from '../realms/settings.ts';
import type { Db, Store } from '../store/db.ts';
import { findRealmByName } from '../store/realms.ts';
import type { Realm } from '../store/schema.ts';
import { AdminAuth, AdminAuthError, authenticateAdmin, type ManagementRole } from './auth.ts';

export type AdminServices = {
  config: Config;
  db: Db;
  /** For jobs that take an advisory lock (LDAP sync). */
  store: Pick<Store, 'db' | 'tryWithLock'>;
  box: SecretBox;
  registry: RealmRegistry;
  logger: Logger;
  mailer: Mailer;
};

/** An error answered as Keycloak's admin resources do: the status and `{"errorMessage": ...}`. */
export class AdminError extends Error {
  readonly status: number;
  constructor(status: number, message: string) {
    super(message);
    this.status = status;
  }
}
/**
 * Keycloak's ErrorResponseException: `{"error", "error_description"}` with the status. Some admin
 * resources answer this shape, e.g. a password that breaks the policy (error = message key).
 */
export class AdminErrorResponse extends AdminError {
  readonly error: string;
  constructor(status: number, error: string, description: string) {
    super(status, description);
    this.error = error;
  }
}
/** Keycloak's ErrorRepresentation of one invalid field: `{"field", "errorMessage", "params"}`. */
export class AdminFieldError extends AdminError {
  readonly field: string;
  readonly params: string[];
  constructor(field: string, messageKey: string, params: string[] = []) {
    super(400, messageKey);
    this.field = field;
    this.params = params;
  }
}
export const notFound = (message: string): AdminError => new AdminError(404, message);
export const conflict = (message: string): AdminError => new AdminError(409, message);
export const badRequest = (message: string): AdminError => new AdminError(400, message);

export type Reply =
  | { status: 200; body: unknown }
  | { status: 201; location: string; body?: unknown }
  | { status: 204 };
export const ok = (body: unknown): Reply => ({ status: 200, body });
export const noContent = (): Reply => ({ status: 204 });
/**
 * 201 with `Location`. `id` is appended to the request path (the admin client takes the last
 * segment as the new resource's id); `path`, when given, is relative to the realm's admin URL.
 */
export const created = (id: string, path?: string): Reply => ({ status: 201, location: path ?? `./${encodeURIComponent(id)}` });
/** 201 with `Location` (as created) and a JSON body: for resources shown once (access key secrets). */
export const createdWithBody = (id: string, body: unknown): Reply => ({ status: 201, location: `./${encodeURIComponent(id)}`, body });

type Query = Record<string, string | undefined>;

export type ServerRequest = {
  ctx: Context;
  params: Record<string, string>;
  /** First value of each query parameter. */
  query: Query;
  auth: AdminAuth;
  services: AdminServices;
  db: Db;
  /** Reads the JSON body and validates it; 400 naming the field when it does not fit. */
  json<T>(schema: ZodType<T>): Promise<T>;
  /** The body as text (text/plain endpoints). */
  text(): Promise<string>;
  /** `first` and `max` as Keycloak reads them (`max` < 0 or absent with no default: no limit). */
  page(defaultMax: number | undefined): { first: number; max: number | undefined };
  bool(name: string): boolean | undefined;
  /**
   * What an admin event records as the representation: the JSON body by default; handlers of
   * bodies with secrets set a copy without them (routes marked secretBody record nothing unless set).
   */
  eventRepresentation?: unknown;
};

export type RealmRequest = ServerRequest & { realm: Realm; realmRef: { id: string; name: string } };

/** Who may call a route: management roles (any of them), or any admin of the realm. */
export type Permission = ManagementRole | ManagementRole[] | 'any-admin';

type RouteOptions = {
  permission: Permission;
  /** Largest accepted body (default 1 MiB; realm imports take more). */
  bodyLimit?: number;
  /** Keep the body out of admin events (passwords, secrets). */
  secretBody?: boolean;
  /** Admin event resource type; derived from the path when absent. */
  resourceType?: string;
  /** False for writes that change nothing a realm's cached context holds. Default true. */
  changesRealm?: boolean;
};

type Method = 'get' | 'post' | 'put' | 'delete';

const DEFAULT_BODY_LIMIT = 1024 * 1024;

function firstValues(query: Context['query']): Query {
  const out: Query = {};
  for (const [key, value] of Object.entries(query)) out[key] = Array.isArray(value) ? value[0] : value;
  return out;
}

function zodMessage(error: z.ZodError): string {
  const issue = error.issues[0];
  if (!issue) return 'Invalid representation';
  const field = issue.path.join('.');
  return field ? `Invalid value for field '${field}': ${issue.message}` : issue.message;
}

/** Keycloak's admin event resource types, by the first segment of the resource path. */
const RESOURCE_TYPES: Record<string, string> = {
  users: 'USER', clients: 'CLIENT', roles: 'REALM_ROLE', 'roles-by-id': 'REALM_ROLE', groups: 'GROUP',
  'client-scopes': 'CLIENT_SCOPE', 'identity-provider': 'IDENTITY_PROVIDER', components: 'COMPONENT',
  'user-storage': 'USER_STORAGE', 'attack-detection': 'USER_LOGIN_FAILURE', 'default-groups': 'REALM',
  'default-default-client-scopes': 'REALM_SCOPE_MAPPING', 'default-optional-client-scopes': 'REALM_SCOPE_MAPPING',
  'login-authenticators': 'AUTHENTICATOR_CONFIG', partialImport: 'REALM', 'logout-all': 'REALM',
};

function resourceTypeOf(resourcePath: string): string {
  const segments = resourcePath.split('/');
  if (segments.includes('role-mappings')) return segments.includes('clients') ? 'CLIENT_ROLE_MAPPING' : 'REALM_ROLE_MAPPING';
  if (segments.includes('protocol-mappers')) return 'PROTOCOL_MAPPER';
  if (segments.includes('scope-mappings')) return segments.includes('clients') ? 'CLIENT_SCOPE_MAPPING' : 'REALM_SCOPE_MAPPING';
  if (segments[0] === 'clients' && segments[2] === 'roles') return 'CLIENT_ROLE';
  if (segments[0] === 'groups' && segments[2] === 'members') return 'GROUP_MEMBERSHIP';
  if (segments[0] === 'users' && segments[2] === 'groups') return 'GROUP_MEMBERSHIP';
  return RESOURCE_TYPES[segments[0] ?? ''] ?? 'REALM';
}

const OPERATION_TYPES: Record<string, string> = { POST: 'CREATE', PUT: 'UPDATE', DELETE: 'DELETE' };

export class AdminRouter {
  readonly services: AdminServices;
  readonly router: Router;
  readonly #base: string;

  constructor(services: AdminServices) {
    this.services = services;
    this.#base = `${services.config.relativePath}/admin`;
    this.router = new Router({ prefix: this.#base });
  }

  /** Routes outside any realm (`/realms`, `/serverinfo`): the handler checks permissions itself. */
  server(method: Method, path: string, options: Omit<RouteOptions, 'permission'>, handler: (req: ServerRequest) => Promise<Reply>): void {
    this.router[method](path, async (ctx) => {
      await this.#answer(ctx, async () => {
        const auth = await this.#authenticate(ctx);
        return handler(this.#request(ctx, auth, options));
      }, undefined);
    });
  }

  /** Routes under `/realms/:realm`; `path` is relative to it ('' is the realm itself). */
  realm(method: Method, path: string, options: RouteOptions, handler: (req: RealmRequest) => Promise<Reply>): void {
    this.router[method](`/realms/:realm${path}`, async (ctx) => {
      let target: Realm | undefined;
      let request: RealmRequest | undefined;
      await this.#answer(ctx, async () => {
        const auth = await this.#authenticate(ctx);
        const realm = await findRealmByName(this.services.db, ctx.params.realm ?? '');
        // An admin of another realm learns nothing, not even whether the realm exists.
        if (!realm) throw auth.isSuperAdmin ? notFound('Realm not found.') : new AdminAuthError(403, 'HTTP 403 Forbidden');
        const realmRef = { id: realm.id, name: realm.name };
        if (options.permission === 'any-admin') {
          if (!auth.canAccess(realmRef)) throw new AdminAuthError(403, 'HTTP 403 Forbidden');
        } else {
          auth.require(realmRef, ...(Array.isArray(options.permission) ? options.permission : [options.permission]));
        }
        target = realm;
        request = Object.assign(this.#request(ctx, auth, options), { realm, realmRef });
        return handler(request);
      }, async (reply) => {
        if (!target || !request || ctx.method === 'GET') return;
        if (options.changesRealm !== false) await this.services.registry.realmChanged(target.id);
        await this.#recordAdminEvent(ctx, target, request, options, reply);
      });
    });
  }

  async #authenticate(ctx: Context): Promise<AdminAuth> {
    const { db, registry, config } = this.services;
    const origin = publicOrigin(ctx, config);
    return authenticateAdmin(db, registry, (realm) => `${origin}${config.relativePath}/realms/${realm.name}`, ctx.get('authorization') || undefined);
  }

  #request(ctx: Context, auth: AdminAuth, options: Omit<RouteOptions, 'permission'>): ServerRequest {
    const query = firstValues(ctx.query);
    const request: ServerRequest = {
      ctx, params: { ...(ctx.params as Record<string, string>) }, query, auth, services: this.services, db: this.services.db,
      async json(schema) {
        const body = await readJson(ctx, options.bodyLimit ?? DEFAULT_BODY_LIMIT);
        const parsed = schema.safeParse(body);
        if (!parsed.success) throw badRequest(zodMessage(parsed.error));
        if (!options.secretBody) request.eventRepresentation ??= body;
        return parsed.data;
      },
      text: () => readText(ctx, options.bodyLimit ?? DEFAULT_BODY_LIMIT),
      page(defaultMax) {
        const first = Number.parseInt(query.first ?? '', 10);
        const max = Number.parseInt(query.max ?? '', 10);
        const effectiveMax = Number.isNaN(max) ? defaultMax : max < 0 ? undefined : max;
        return { first: Number.isNaN(first) || first < 0 ? 0 : first, max: effectiveMax };
      },
      bool(name) {
        const value = query[name];
        return value === undefined || value === '' ? undefined : value.toLowerCase() === 'true';
      },
    };
    return request;
  }

  async #answer(ctx: Context, run: () => Promise<Reply>, after: ((reply: Reply) => Promise<void>) | undefined): Promise<void> {
    ctx.state.route = `/admin${ctx.routerPath ?? ''}`.replace(this.#base, '');
    ctx.set('Cache-Control', 'no-cache');
    let reply: Reply;
    try {
      reply = await run();
    } catch (error) {
      this.#answerError(ctx, error);
      return;
    }
    if (reply.status === 201) {
      const origin = publicOrigin(ctx, this.services.config);
      const location = reply.location.startsWith('./')
        ? `${origin}${ctx.path.replace(/\/$/, '')}/${reply.location.slice(2)}`
        : `${origin}${this.#base}/realms/${encodeURIComponent(ctx.params.realm ?? '')}/${reply.location}`;
      ctx.set('Location', location);
    }
    ctx.status = reply.status;
    if (reply.status === 200) ctx.body = reply.body === undefined ? null : reply.body;
    // Keycloak sends no body with 201 (Koa would send "Created").
    if (reply.status === 201) ctx.body = reply.body === undefined ? '' : reply.body;
    if (after) {
      try {
        await after(reply);
      } catch (error) {
        this.services.logger.warn({ err: error, path: ctx.path }, 'admin request succeeded but its follow-up failed');
      }
    }
  }

  #answerError(ctx: Context, error: unknown): void {
    const send = (status: number, body: Record<string, unknown>): void => {
      ctx.status = status;
      ctx.body = body;
    };
    if (error instanceof AdminFieldError) return send(error.status, { field: error.field, errorMessage: error.message, params: error.params });
    if (error instanceof AdminErrorResponse) return send(error.status, { error: error.error, error_description: error.message });
    if (error instanceof AdminError) return send(error.status, { errorMessage: error.message });
    if (error instanceof AdminAuthError) return send(error.status, { error: error.message });
    if (error instanceof BodyError) return send(error.status, { errorMessage: error.message });
    if (error instanceof BadOriginError) return send(400, { errorMessage: error.message });
    // Database constraint errors that slipped past a handler's own checks.
    const code = (error as { code?: unknown }).code;
    if (code === '23505') return send(409, { errorMessage: 'Conflict detected. See logs for details' });
    if (code === '23503') return send(400, { errorMessage: 'A referenced resource does not exist' });
    if (code === '22P02') return send(404, { error: 'HTTP 404 Not Found' }); // malformed uuid in the path
    if (code === '22021' || code === '22P05') return send(400, { errorMessage: 'A value contains a character that cannot be stored' }); // NUL
    if (code === '22001' || code === '22003') return send(400, { errorMessage: 'A value is out of range or too long' });
    throw error;
  }

  async #recordAdminEvent(ctx: Context, realm: Realm, request: RealmRequest, options: RouteOptions, reply: Reply): Promise<void> {
    // Settings as the write left them: the PUT that turns admin events on is recorded too.
    const current = await this.services.db.selectFrom('realms').select('settings').where('id', '=', realm.id).executeTakeFirst();
    if (!current) return; // the realm itself was deleted
    const settings = parseRealmSettings(current.settings);
    if (!settings.adminEventsEnabled) return;
    const prefix = `${this.#base}/realms/${encodeURIComponent(realm.name)}/`;
    let resourcePath = ctx.path.startsWith(prefix) ? ctx.path.slice(prefix.length) : '';
    if (reply.status === 201 && ctx.method === 'POST') {
      const location = String(ctx.response.get('Location') ?? '');
      const realmBase = `/realms/${encodeURIComponent(realm.name)}/`;
      const at = location.indexOf(realmBase);
      if (at >= 0) resourcePath = location.slice(at + realmBase.length);
    }
    const operation = ctx.method === 'POST' && reply.status !== 201 ? 'ACTION' : OPERATION_TYPES[ctx.method] ?? 'ACTION';
    const includeBody = settings.adminEventsDetailsEnabled && request.eventRepresentation !== undefined;
    // Keycloak records the client's uuid, not its clientId.
    const { realmId: authRealmId, clientId } = request.auth.identity;
    const authClient = clientId === undefined ? undefined : await this.services.db.selectFrom('clients').select('id')
      .where('realm_id', '=', authRealmId).where('client_id', '=', clientId).executeTakeFirst();
    await this.services.db.insertInto('admin_events').values({
      id: newId(),
      realm_id: realm.id,
      operation_type: operation,
      resource_type: options.resourceType ?? resourceTypeOf(resourcePath),
      resource_path: resourcePath,
      auth_realm_id: request.auth.identity.realmId,
      auth_client_id: authClient?.id ?? null,
      auth_user_id: request.auth.identity.userId,
      ip_address: ctx.ip,
      representation: includeBody ? JSON.stringify(request.eventRepresentation) : null,
      error: null,
    }).execute();
  }

  middleware(): ReturnType<Router['routes']> {
    return this.router.routes();
  }

  allowedMethods(): ReturnType<Router['allowedMethods']> {
    return this.router.allowedMethods();
  }
}
