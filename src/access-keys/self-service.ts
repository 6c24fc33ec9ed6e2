// Self-service access keys (CXone's "My Access Key"): a user holding the realm role
// manage-own-access-keys manages their own keys with their own bearer token, a token of the realm
// itself issued to any client.
//   GET  {base}/realms/{realm}/access-keys            list (never secrets)
//   POST {base}/realms/{realm}/access-keys            create: 201, the secret shown once
//   GET | PUT | DELETE {base}/realms/{realm}/access-keys/{keyId}
// Errors are OAuth JSON ({error, error_description}); another user's key is not found.
import type { Context } from 'koa';
import type { ZodType } from 'zod';

import { BodyError, readJson } from '../http/body.ts';
import { sessionBehindTokenAlive, verifyRealmToken } from '../oidc/introspection.ts';
import type { RealmContext } from '../realms/context.ts';
import type { RealmRegistry } from '../realms/registry.ts';
import {
  AccessKeyError, accessKeyRepresentation, accessKeyUpdateRep, createAccessKey, deleteAccessKey, findUserAccessKey,
  listAccessKeys, newAccessKeyRep, updateAccessKey,
} from './management.ts';

export const SELF_SERVICE_ROLE = 'manage-own-access-keys';

const BODY_LIMIT = 64 * 1024;

class SelfServiceError extends Error {
  readonly status: number;
  readonly error: string;
  constructor(status: number, error: string, description: string) {
    super(description);
    this.status = status;
    this.error = error;
  }
}

function send(ctx: Context, status: number, body: unknown): void {
  ctx.status = status;
  ctx.body = body;
  ctx.set('Cache-Control', 'no-store');
}

/** `/access-keys` -> undefined, `/access-keys/{id}` -> the id; anything else is not a route of ours. */
function keyIdOf(path: string): string | undefined | null {
  const match = /\/access-keys(?:\/([^/]+))?\/?$/.exec(path);
  if (!match) return null;
  if (match[1] === undefined) return undefined;
  try {
    return decodeURIComponent(match[1]);
  } catch {
    return '';
  }
}

const quoted = (value: string): string => value.replace(/["\\]/g, '\\$&');

/** The caller's user id, once the bearer token, its session, the user and the role check out. */
async function authenticate(ctx: Context, realm: RealmContext, issuer: string): Promise<string> {
  const [scheme, token] = (ctx.get('authorization') || '').split(' ');
  if (scheme?.toLowerCase() !== 'bearer' || !token) {
    ctx.set('WWW-Authenticate', `Bearer realm="${quoted(realm.name)}"`);
    throw new SelfServiceError(401, 'invalid_token', 'A bearer token is required');
  }
  const claims = await verifyRealmToken(realm, issuer, token);
  const live = claims && claims.typ === 'Bearer' && typeof claims.sub === 'string' && await sessionBehindTokenAlive(realm, claims);
  const user = live ? await realm.db.selectFrom('users').select(['id', 'enabled'])
    .where('realm_id', '=', realm.id).where('id', '=', claims.sub as string).executeTakeFirst() : undefined;
  if (!user?.enabled) {
    ctx.set('WWW-Authenticate', `Bearer realm="${quoted(realm.name)}", error="invalid_token"`);
    throw new SelfServiceError(401, 'invalid_token', 'Token verification failed');
  }
  // Read from the database, not the token: revoking the role takes effect at once.
  const roles = await realm.effectiveUserRoles(user.id);
  if (!roles.some((r) => r.clientId === null && r.name === SELF_SERVICE_ROLE)) {
    throw new SelfServiceError(403, 'access_denied', `The realm role ${SELF_SERVICE_ROLE} is required`);
  }
  return user.id;
}

/** The JSON body, validated; an optional body may be absent altogether. */
async function body<T>(ctx: Context, schema: ZodType<T>, optional: boolean): Promise<T> {
  const length = ctx.request.length;
  const raw = optional && !ctx.get('content-type') && (length === undefined || length === 0) ? {} : await readJson(ctx, BODY_LIMIT);
  const parsed = schema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const field = issue?.path.join('.');
    throw new SelfServiceError(400, 'invalid_request', field ? `Invalid value for field '${field}': ${issue!.message}` : issue?.message ?? 'Invalid request');
  }
  return parsed.data;
}

/**
 * Answers a self-service request under `{base}/realms/{realm}` (the path ends in `/access-keys`
 * or `/access-keys/{keyId}`). `registry` tells every instance that the realm's keys changed.
 */
export async function selfServiceAccessKeys(ctx: Context, realm: RealmContext, issuer: string, registry: Pick<RealmRegistry, 'realmChanged'>): Promise<void> {
  const keyId = keyIdOf(ctx.path);
  try {
    if (keyId === null) throw new SelfServiceError(404, 'not_found', 'Resource not found');
    const allowed = keyId === undefined ? ['GET', 'POST'] : ['GET', 'PUT', 'DELETE'];
    if (!allowed.includes(ctx.method)) {
      ctx.set('Allow', allowed.join(', '));
      throw new SelfServiceError(405, 'invalid_request', 'Method not allowed');
    }
    const userId = await authenticate(ctx, realm, issuer);
    if (keyId === undefined) {
      if (ctx.method === 'GET') return send(ctx, 200, await listAccessKeys(realm.db, realm.id, userId));
      const created = await createAccessKey(realm.db, realm.box, realm, userId, await body(ctx, newAccessKeyRep, true));
      await registry.realmChanged(realm.id);
      ctx.set('Location', `${issuer}/access-keys/${created.id}`);
      return send(ctx, 201, created);
    }
    if (ctx.method === 'GET') return send(ctx, 200, accessKeyRepresentation(await findUserAccessKey(realm.db, realm.id, userId, keyId)));
    if (ctx.method === 'PUT') await updateAccessKey(realm.db, realm, userId, keyId, await body(ctx, accessKeyUpdateRep, false));
    else await deleteAccessKey(realm.db, realm.id, userId, keyId);
    await registry.realmChanged(realm.id);
    ctx.status = 204;
    ctx.set('Cache-Control', 'no-store');
  } catch (error) {
    if (error instanceof SelfServiceError) return send(ctx, error.status, { error: error.error, error_description: error.message });
    if (error instanceof BodyError) return send(ctx, error.status, { error: 'invalid_request', error_description: error.message });
    if (error instanceof AccessKeyError) {
      const [status, code] = error.reason === 'not_found' ? [404, 'not_found'] : error.reason === 'limit' ? [409, 'conflict'] : [400, 'invalid_request'];
      return send(ctx, status, { error: code, error_description: error.message });
    }
    throw error;
  }
}
