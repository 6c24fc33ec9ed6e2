// The Koa app: routes and middleware, no listening and no globals. Realm protocol endpoints are
// handed to the realm's oidc-provider; the few Keycloak endpoints it does not have (or answers
// differently) are served here.
import crypto from 'node:crypto';
import querystring from 'node:querystring';

import Koa, { type Context } from 'koa';

import fs from 'node:fs/promises';
import path from 'node:path';

import { AccessKeyTokens, LEGACY_ACCESS_KEY_ROUTE } from './access-keys/token-exchange.ts';
import { selfServiceAccessKeys } from './access-keys/self-service.ts';
import { createAdminApi } from './admin/index.ts';
import { createBrokerRoutes } from './broker/routes.ts';
import { receiveBackchannelLogout } from './broker/backchannel-logout.ts';
import type { Config } from './config.ts';
import type { SecretBox } from './crypto/secret-box.ts';
import type { LoginEvent } from './events/events.ts';
import { createLogoutRoute } from './login/logout.ts';
import type { PageRenderer } from './login/pages.ts';
import type { Mailer } from './mail/mailer.ts';
import { createLoginRoutes, LoginPages } from './login/routes.ts';
import { isSessionIframeRoute, serveSessionIframe } from './login/session-iframe.ts';
import { revoke } from './oidc/revocation.ts';
import { bearerToken, userinfo } from './oidc/userinfo.ts';
import type { Logger } from './observability/logger.ts';
import type { Metrics } from './observability/metrics.ts';
import { introspect, type ProtocolResult } from './oidc/introspection.ts';
import { clientAllowsOrigin } from './oidc/client-policy.ts';
import { keepOfflineAccess, PROTOCOL_ROUTES } from './oidc/provider.ts';
import { answerDirectTokenRequest, directTokenRequest } from './oidc/token-endpoint.ts';
import type { RealmContext } from './realms/context.ts';
import type { RealmRegistry } from './realms/registry.ts';
import { BodyError, FORM_LIMIT, readBytes, readForm, replayRequest } from './http/body.ts';
import { clientAddress, forwardedClient, publicOrigin, BadOriginError } from './http/origin.ts';
import type { Store } from './store/db.ts';

export type AppServices = {
  config: Config;
  store: Store;
  box: SecretBox;
  registry: RealmRegistry;
  logger: Logger;
  metrics: Metrics;
  /** False while starting and once shutdown began: /health/ready answers 503. */
  isReady(): boolean;
  pages: PageRenderer;
  /** Realm e-mail (password reset, verification...). */
  mailer: Mailer;
  /** Where the themes live (views/<theme>/login, views/<theme>/resources). */
  viewsDir: string;
  event(realm: RealmContext, event: LoginEvent): void;
};

const RESOURCE_TYPES: Record<string, string> = { '.css': 'text/css; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.png': 'image/png', '.svg': 'image/svg+xml', '.ico': 'image/x-icon', '.woff2': 'font/woff2' };

/** Where upstream OpenID providers send back-channel logout tokens (Keycloak's LogoutEndpoint). */
const BACKCHANNEL_LOGOUT_ROUTE = '/protocol/openid-connect/logout/backchannel-logout';
/** Keycloak's self-registration entry (keycloak-js register()): an authorization request with prompt=create. */
const REGISTRATIONS_ROUTE = '/protocol/openid-connect/registrations';
const KNOWN_REALM_ROUTES = new Set<string>([...Object.values(PROTOCOL_ROUTES), REGISTRATIONS_ROUTE, BACKCHANNEL_LOGOUT_ROUTE, '/.well-known/openid-configuration']);

function sendJson(ctx: Context, status: number, body: unknown, headers?: Record<string, string>): void {
  ctx.status = status;
  ctx.body = body;
  ctx.set('Cache-Control', 'no-store');
  for (const [name, value] of Object.entries(headers ?? {})) ctx.set(name, value);
}

const oauthError = (ctx: Context, status: number, error: string, description: string): void =>
  sendJson(ctx, status, { error, error_description: description });

/** The form body, or undefined after answering 400/413 for a body that is not one. */
async function readFormOrAnswer(ctx: Context): Promise<Record<string, unknown> | undefined> {
  try {
    return await readForm(ctx);
  } catch (error) {
    if (error instanceof BodyError) {
      oauthError(ctx, error.status, 'invalid_request', error.message);
      return undefined;
    }
    throw error;
  }
}

function sendResult(ctx: Context, result: ProtocolResult): void {
  sendJson(ctx, result.status, result.body, result.headers);
}

/** `..` segments, raw or percent-encoded, never name a resource here. */
const hasDotSegment = (url: string): boolean => {
  const path = url.split('?')[0] ?? '';
  return /(^|\/)(\.|%2e){2}(\/|$)/i.test(path) || /%2f|%5c/i.test(path);
};

/** Methods of each route served by oidc-provider; anything else gets JSON 404/405 here. */
const PROVIDER_METHODS = new Map<string, string[]>([
  ['/.well-known/openid-configuration', ['GET', 'HEAD']],
  [PROTOCOL_ROUTES.authorization, ['GET', 'POST']],
  [PROTOCOL_ROUTES.token, ['POST']],
  [PROTOCOL_ROUTES.userinfo, ['GET', 'POST']],
  [PROTOCOL_ROUTES.end_session, ['GET', 'POST']],
  [PROTOCOL_ROUTES.jwks, ['GET', 'HEAD']],
  [PROTOCOL_ROUTES.revocation, ['POST']],
]);

export function createApp(services: AppServices): Koa {
  const { config, store, registry, logger, metrics } = services;
  const base = config.relativePath;
  const realmPattern = new RegExp(`^${base.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}/realms/([^/?#]+)(/[^?#]*)?$`);
  const app = new Koa();
  const loginPages = new LoginPages({ pages: services.pages, logger, event: services.event, basePath: base, mailer: services.mailer });
  const loginActions = createLoginRoutes(loginPages);
  const broker = createBrokerRoutes(loginPages);
  const logout = createLogoutRoute(loginPages);
  const accessKeyTokens = new AccessKeyTokens({ db: store.db, registry, logger, metrics, event: services.event });

  // Request id, timing, metrics and the last-resort error handler.
  app.use(async (ctx, next) => {
    const started = process.hrtime.bigint();
    const incoming = ctx.get('x-request-id');
    const requestId = /^[\w.\-]{1,64}$/.test(incoming) ? incoming : crypto.randomUUID();
    ctx.state.requestId = requestId;
    ctx.state.route = 'unmatched';
    // ctx.ip for every handler here: the proxy's client address only when proxy headers are trusted.
    ctx.request.ip = clientAddress(ctx, config);
    ctx.set('X-Request-Id', requestId);
    try {
      await next();
    } catch (error) {
      logger.error({ err: error, requestId, method: ctx.method, path: ctx.path }, 'request failed');
      ctx.respond = true;
      oauthError(ctx, 500, 'server_error', 'Internal server error');
    } finally {
      const status = String(ctx.respond === false ? ctx.res.statusCode : ctx.status);
      const labels = { method: ctx.method, route: ctx.state.route as string, status };
      metrics.httpRequests.inc(labels);
      metrics.httpDuration.observe(labels, Number(process.hrtime.bigint() - started) / 1e9);
      logger.debug({ requestId, method: ctx.method, route: labels.route, status }, 'request');
    }
  });

  app.use(async (ctx, next) => {
    if (hasDotSegment(ctx.url)) {
      oauthError(ctx, 400, 'invalid_request', 'Invalid path');
      return;
    }
    const path = ctx.path;
    if (path === `${base}/health/live`) {
      ctx.state.route = '/health/live';
      sendJson(ctx, 200, { status: 'UP', checks: [] });
      return;
    }
    if (path === `${base}/health/ready` || path === `${base}/health`) {
      ctx.state.route = '/health/ready';
      let up = services.isReady();
      if (up) up = await store.ping().then(() => true, () => false);
      sendJson(ctx, up ? 200 : 503, { status: up ? 'UP' : 'DOWN', checks: [{ name: 'database', status: up ? 'UP' : 'DOWN' }] });
      return;
    }
    if (path === `${base}/metrics`) {
      ctx.state.route = '/metrics';
      ctx.type = metrics.registry.contentType;
      ctx.body = await metrics.registry.metrics();
      return;
    }
    if (path.startsWith(`${base}/resources/login/`)) {
      ctx.state.route = '/resources/login/*';
      return serveThemeResource(ctx, services.viewsDir, path.slice(`${base}/resources/login/`.length));
    }
    const match = realmPattern.exec(path);
    if (!match) return next();

    let realmName: string;
    try {
      realmName = decodeURIComponent(match[1]!);
    } catch {
      oauthError(ctx, 400, 'invalid_request', 'Invalid realm name');
      return;
    }
    const rest = match[2] ?? '';
    ctx.state.route = `/realms/:realm${KNOWN_REALM_ROUTES.has(rest) ? rest : rest === '' ? '' : '/*'}`;
    let origin: string;
    try {
      origin = publicOrigin(ctx, config);
    } catch (error) {
      if (error instanceof BadOriginError) {
        oauthError(ctx, 400, 'invalid_request', error.message);
        return;
      }
      throw error;
    }

    const realm = await registry.get(realmName);
    if (!realm) {
      sendJson(ctx, 404, { error: 'Realm does not exist', error_description: 'Realm does not exist' });
      return;
    }
    const issuer = `${origin}${base}/realms/${realm.name}`;

    if (rest === '' || rest === '/') {
      if (ctx.method !== 'GET' && ctx.method !== 'HEAD') return methodNotAllowed(ctx);
      sendJson(ctx, 200, publicRealmInfo(realm, issuer));
      return;
    }
    if (rest === PROTOCOL_ROUTES.introspection) {
      if (ctx.method !== 'POST') return methodNotAllowed(ctx);
      const form = await readFormOrAnswer(ctx);
      if (!form) return;
      sendResult(ctx, await introspect(realm, issuer, ctx.get('authorization') || undefined, form));
      return;
    }
    if (rest === '/access-keys' || /^\/access-keys\/[^/]+$/.test(rest)) {
      ctx.state.route = rest === '/access-keys' ? '/realms/:realm/access-keys' : '/realms/:realm/access-keys/:id';
      return selfServiceAccessKeys(ctx, realm, issuer, registry);
    }
    if (rest.startsWith('/broker/')) {
      ctx.state.route = '/realms/:realm/broker';
      return broker(ctx, realm, issuer, registry.provider(realm, issuer), rest.slice('/broker'.length));
    }
    if (rest.startsWith('/login-actions/')) {
      ctx.state.route = '/realms/:realm/login-actions';
      return loginActions(ctx, realm, issuer, registry.provider(realm, issuer), rest.slice('/login-actions'.length));
    }
    if (isSessionIframeRoute(rest)) {
      ctx.state.route = '/realms/:realm/protocol/openid-connect/iframes';
      return serveSessionIframe(ctx, realm, rest);
    }
    if (rest === BACKCHANNEL_LOGOUT_ROUTE) {
      if (ctx.method !== 'POST') return methodNotAllowed(ctx);
      const form = await readFormOrAnswer(ctx);
      if (!form) return;
      const result = await receiveBackchannelLogout(realm, issuer, form, logger, (event) => services.event(realm, { ...event, ipAddress: ctx.ip }));
      return sendJson(ctx, result.status, result.body ?? {});
    }
    if (rest === PROTOCOL_ROUTES.end_session) {
      if (ctx.method !== 'GET' && ctx.method !== 'POST') return methodNotAllowed(ctx);
      return logout(ctx, realm, issuer, registry.provider(realm, issuer));
    }
    if (rest === PROTOCOL_ROUTES.userinfo) {
      if (ctx.method === 'OPTIONS') return corsPreflight(ctx);
      if (ctx.method !== 'GET' && ctx.method !== 'POST') return methodNotAllowed(ctx);
      const form = ctx.method === 'POST' ? await readFormOrAnswer(ctx) : {};
      if (!form) return;
      const result = await userinfo(realm, issuer, bearerToken(ctx.get('authorization') || undefined, form));
      allowOriginFromToken(ctx, result.status === 200 ? ctx.get('authorization') : undefined);
      sendResult(ctx, result);
      return;
    }
    if (rest === PROTOCOL_ROUTES.revocation) {
      if (ctx.method === 'OPTIONS') return dispatchToProvider(ctx, realm, issuer, origin, rest);
      if (ctx.method !== 'POST') return methodNotAllowed(ctx);
      const form = await readFormOrAnswer(ctx);
      if (!form) return;
      const result = await revoke(realm, issuer, ctx.get('authorization') || undefined, form);
      if (result.revoked) services.event(realm, { type: 'REVOKE_GRANT', clientId: result.revoked.clientId, userId: result.revoked.userId, sessionId: result.revoked.sessionId, ipAddress: ctx.ip });
      await allowClientOrigin(ctx, realm, typeof form.client_id === 'string' ? form.client_id : undefined);
      sendResult(ctx, { status: result.status, body: result.body, ...(result.headers ? { headers: result.headers } : {}) });
      return;
    }
    if (rest === '/.well-known/oauth-authorization-server') {
      // RFC 8414 metadata: the same document as OIDC discovery.
      return dispatchToProvider(ctx, realm, issuer, origin, '/.well-known/openid-configuration');
    }
    if (rest.startsWith(`${PROTOCOL_ROUTES.authorization}/`) && /^\/[\w-]{1,64}$/.test(rest.slice(PROTOCOL_ROUTES.authorization.length))) {
      // Where the login pages send the browser back to (oidc-provider's resume route).
      if (ctx.method !== 'GET') return methodNotAllowed(ctx);
      return dispatchToProvider(ctx, realm, issuer, origin, rest);
    }
    const registration = rest === REGISTRATIONS_ROUTE;
    if ((rest === PROTOCOL_ROUTES.authorization || registration) && (ctx.method === 'GET' || ctx.method === 'POST')) {
      // Keycloak takes the authorization request as GET or as a POSTed form; the Provider gets a GET.
      // Its registrations endpoint is the same request starting at the registration page (prompt=create).
      const query = new URLSearchParams(ctx.querystring);
      if (registration) query.set('prompt', 'create');
      if (ctx.method === 'POST') {
        const form = await readFormOrAnswer(ctx);
        if (!form) return;
        for (const [name, value] of Object.entries(form)) if (typeof value === 'string' && !query.has(name)) query.set(name, value);
        ctx.req.method = 'GET';
      }
      keepOfflineAccess(query);
      ctx.querystring = query.toString();
      return dispatchToProvider(ctx, realm, issuer, origin, PROTOCOL_ROUTES.authorization);
    }
    if (rest === PROTOCOL_ROUTES.token && ctx.method === 'POST') {
      // oidc-provider answers bodies that are no form (as Keycloak would: invalid_request).
      if (!ctx.is('application/x-www-form-urlencoded')) return dispatchToProvider(ctx, realm, issuer, origin, rest);
      let raw: Buffer;
      try {
        raw = await readBytes(ctx.req, FORM_LIMIT);
      } catch (error) {
        if (!(error instanceof BodyError)) throw error;
        // oidc-provider's answer to a body over its limit.
        return oauthError(ctx, 400, 'invalid_request', 'failed to parse the request body');
      }
      // Access keys as client credentials, then the hot path of src/oidc/token-endpoint.ts; the rest
      // goes to oidc-provider with the body replayed.
      const form = querystring.parse(raw.toString('utf8'));
      if (await accessKeyTokens.tokenEndpoint(ctx, realm, issuer, form)) return;
      const authorization = ctx.get('authorization') || undefined;
      const direct = await directTokenRequest(realm, issuer, ctx.ip, { authorization, origin: ctx.get('origin') || undefined }, form);
      if (direct) return sendResult(ctx, await answerDirectTokenRequest(realm, registry.hooks, direct, authorization));
      return dispatchToProvider(ctx, realm, issuer, origin, rest, replayRequest(ctx.req, raw));
    }
    if (rest === LEGACY_ACCESS_KEY_ROUTE) {
      ctx.state.route = `/realms/:realm${LEGACY_ACCESS_KEY_ROUTE}`;
      return accessKeyTokens.legacyEndpoint(ctx, realm, issuer);
    }
    const methods = PROVIDER_METHODS.get(rest);
    if (methods) {
      // CORS preflights are answered by oidc-provider for the routes that allow CORS.
      if (!methods.includes(ctx.method) && ctx.method !== 'OPTIONS') return methodNotAllowed(ctx);
      return dispatchToProvider(ctx, realm, issuer, origin, rest);
    }
    return next();
  });

  const admin = createAdminApi({ config, db: store.db, store, box: services.box, registry, logger, mailer: services.mailer });
  app.use(admin.middleware());
  app.use(admin.allowedMethods());

  app.use(async (ctx) => {
    sendJson(ctx, 404, { error: 'not_found', error_description: 'Resource not found' });
  });

  /** CORS for userinfo: the origins the access token allows (its allowed-origins claim). */
  function allowOriginFromToken(ctx: Context, authorization: string | undefined): void {
    const origin = ctx.get('origin');
    if (!origin || !authorization) return;
    try {
      const payload = JSON.parse(Buffer.from(authorization.split(' ')[1]?.split('.')[1] ?? '', 'base64url').toString('utf8')) as { 'allowed-origins'?: unknown };
      const allowed = Array.isArray(payload['allowed-origins']) ? payload['allowed-origins'] : [];
      if (allowed.includes(origin) || allowed.includes('*')) {
        ctx.set('Access-Control-Allow-Origin', origin);
        ctx.set('Access-Control-Allow-Credentials', 'true');
        ctx.set('Vary', 'Origin');
      }
    } catch { /* not a JWT: no CORS */ }
  }

  async function allowClientOrigin(ctx: Context, realm: RealmContext, clientId: string | undefined): Promise<void> {
    const origin = ctx.get('origin');
    if (!origin || !clientId) return;
    const client = await realm.client(clientId);
    if (client && clientAllowsOrigin(client, origin)) {
      ctx.set('Access-Control-Allow-Origin', origin);
      ctx.set('Access-Control-Allow-Credentials', 'true');
      ctx.set('Vary', 'Origin');
    }
  }

  function corsPreflight(ctx: Context): void {
    const origin = ctx.get('origin');
    ctx.status = 204;
    if (origin) {
      ctx.set('Access-Control-Allow-Origin', origin);
      ctx.set('Access-Control-Allow-Credentials', 'true');
      ctx.set('Access-Control-Allow-Methods', 'GET, POST');
      ctx.set('Access-Control-Allow-Headers', ctx.get('access-control-request-headers') || 'authorization, content-type');
      ctx.set('Access-Control-Max-Age', '3600');
      ctx.set('Vary', 'Origin');
    }
  }

  function methodNotAllowed(ctx: Context): void {
    oauthError(ctx, 405, 'invalid_request', `${ctx.method} is not allowed here`);
  }

  /**
   * Hands the raw request to the realm's Provider, mounted at the realm's issuer path; `request`
   * replaces it when its body was already read here.
   */
  async function dispatchToProvider(ctx: Context, realm: RealmContext, issuer: string, origin: string, rest: string, request = ctx.req): Promise<void> {
    const provider = registry.provider(realm, issuer);
    const req = request as typeof ctx.req & { originalUrl?: string };
    const query = ctx.querystring ? `?${ctx.querystring}` : '';
    const mount = `${base}/realms/${encodeURIComponent(realm.name)}`;
    req.originalUrl = `${mount}${rest}${query}`;
    req.url = `${rest}${query}`;
    // The Provider trusts these (provider.proxy): they carry the public origin computed above.
    const { host, protocol } = new URL(origin);
    req.headers.host = host;
    req.headers['x-forwarded-host'] = host;
    req.headers['x-forwarded-proto'] = protocol.slice(0, -1);
    // The client address oidc-provider sees: the proxy's, only when proxy headers are trusted.
    const forwardedFor = config.proxyHeaders === 'forwarded' ? forwardedClient(ctx.get('forwarded')) : undefined;
    if (forwardedFor) req.headers['x-forwarded-for'] = forwardedFor;
    else if (config.proxyHeaders !== 'xforwarded') delete req.headers['x-forwarded-for'];
    ctx.respond = false;
    await registry.handler(provider)(req, ctx.res);
  }

  return app;
}

/** {base}/resources/login/{theme}/{file}: the theme's static files, falling back to the default theme. */
async function serveThemeResource(ctx: Context, viewsDir: string, rest: string): Promise<void> {
  const match = /^([a-z0-9][a-z0-9_-]{0,63})\/([\w-]{1,64}\.(css|js|png|svg|ico|woff2))$/.exec(rest);
  if (!match || (ctx.method !== 'GET' && ctx.method !== 'HEAD')) {
    sendJson(ctx, 404, { error: 'not_found', error_description: 'Resource not found' });
    return;
  }
  const [, theme, file] = match as unknown as [string, string, string];
  for (const dir of [theme, 'default']) {
    try {
      const body = await fs.readFile(path.join(viewsDir, dir, 'resources', file));
      ctx.type = RESOURCE_TYPES[path.extname(file)] ?? 'application/octet-stream';
      ctx.set('Cache-Control', 'public, max-age=3600');
      ctx.set('X-Content-Type-Options', 'nosniff');
      ctx.body = body;
      return;
    } catch { /* try the default theme */ }
  }
  sendJson(ctx, 404, { error: 'not_found', error_description: 'Resource not found' });
}

/** GET {base}/realms/{realm}: Keycloak's PublishedRealmRepresentation. */
function publicRealmInfo(realm: RealmContext, issuer: string): Record<string, unknown> {
  const rsa = realm.keys.published.find((k) => k.kty === 'RSA');
  let publicKey: string | undefined;
  if (rsa) {
    publicKey = crypto.createPublicKey({ key: rsa as crypto.JsonWebKey, format: 'jwk' })
      .export({ type: 'spki', format: 'der' }).toString('base64');
  }
  return {
    realm: realm.name,
    public_key: publicKey,
    'token-service': `${issuer}/protocol/openid-connect`,
    'account-service': `${issuer}/account`,
    'tokens-not-before': realm.realm.not_before,
  };
}
