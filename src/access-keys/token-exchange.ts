// Exchanging an access key for tokens, served by Cloakroom before oidc-provider:
// - grant_type=client_credentials at the token endpoint with the key id and secret as client
//   credentials (client_secret_basic or _post): no client registration, no refresh token, no
//   session; the hot path reads nothing from the database once the realm context is warm;
// - CXone's legacy JSON endpoint {issuer}/authentication/v1/token/access-key, which starts a user
//   session for the realm's legacy client and also refreshes its tokens.
// (The third way, CXone's password form, is the password grant: src/oidc/grants/password.ts.)
import crypto from 'node:crypto';
import type querystring from 'node:querystring';

import type { Context } from 'koa';
import { errors } from 'oidc-provider';

import type { LoginEvent } from '../events/events.ts';
import { readBasicAuthorization } from '../http/basic-auth.ts';
import { BodyError, readForm, readJson, singleValued } from '../http/body.ts';
import type { Logger } from '../observability/logger.ts';
import type { Metrics } from '../observability/metrics.ts';
import { accessTokenLifespan } from '../oidc/client-policy.ts';
import { refreshUserTokens } from '../oidc/grants/refresh-token.ts';
import { startSessionWithTokens } from '../oidc/grants/password.ts';
import { readClientCredentials } from '../oidc/introspection.ts';
import { signWithRealmKey } from '../oidc/realm-jwt.ts';
import { TokenRequestError } from '../oidc/session-tokens.ts';
import type { ClientModel, RealmContext } from '../realms/context.ts';
import type { RealmRegistry } from '../realms/registry.ts';
import { newId } from '../crypto/random.ts';
import { ACCESS_KEY_PATTERN, type AccessKeyFailure } from './access-keys.ts';
import { accessKeysOf, authenticateAccessKey, trackAccessKeyUse, type KeyEntry } from './key-lookup.ts';

/** CXone's legacy ("UserHub") endpoint, below the realm's issuer. */
export const LEGACY_ACCESS_KEY_ROUTE = '/authentication/v1/token/access-key';

/** Realm attribute naming the client that owns the legacy endpoint's sessions. */
export const LEGACY_CLIENT_ATTRIBUTE = 'cloakroom.accessKeys.legacyClientId';
export const DEFAULT_LEGACY_CLIENT_ID = 'cxone-access-key';

const JSON_LIMIT = 16 * 1024;

export type AccessKeyTokenServices = {
  registry: RealmRegistry;
  logger: Logger;
  metrics: Metrics;
  event(realm: RealmContext, event: LoginEvent): void;
};

/** CLIENT_LOGIN_ERROR errors: Keycloak's client-authentication errors where one matches. */
const CLIENT_LOGIN_ERRORS: Record<AccessKeyFailure, string> = {
  unknown_key: 'client_not_found',
  wrong_secret: 'invalid_client_credentials',
  key_disabled: 'client_disabled',
  key_expired: 'access_key_expired',
  user_disabled: 'user_disabled',
};

type Answer = { status: number; body: Record<string, unknown>; headers?: Record<string, string> };

const oauthError = (status: number, error: string, description: string, headers?: Record<string, string>): Answer => ({
  status, body: { error, error_description: description }, ...(headers ? { headers } : {}),
});

/** One answer for every key failure (unknown, wrong secret, disabled, expired, user disabled). */
const invalidKey = (basic: boolean): Answer => oauthError(401, 'invalid_client', 'Invalid client or Invalid client credentials',
  basic ? { 'www-authenticate': 'Basic realm="cloakroom"' } : undefined);

function send(ctx: Context, answer: Answer): void {
  ctx.status = answer.status;
  ctx.body = answer.body;
  ctx.set('Cache-Control', 'no-store');
  ctx.set('Pragma', 'no-cache');
  for (const [name, value] of Object.entries(answer.headers ?? {})) ctx.set(name, value);
}

export class AccessKeyTokens {
  readonly #services: AccessKeyTokenServices;

  constructor(services: AccessKeyTokenServices & { db: Parameters<typeof trackAccessKeyUse>[0] }) {
    this.#services = services;
    trackAccessKeyUse(services.db, services.logger);
  }

  /**
   * POST to the token endpoint (its parsed form body): answers client_credentials requests whose
   * client id is an access key id (the shape, and no registered client of that id), decided from
   * the Basic header when there is one, else from the form's client_id. False: not a key request.
   */
  async tokenEndpoint(ctx: Context, realm: RealmContext, issuer: string, parsed: querystring.ParsedUrlQuery): Promise<boolean> {
    const authorization = ctx.get('authorization') || undefined;
    const basic = authorization !== undefined ? readBasicAuthorization(authorization) : undefined;
    const clientId = basic === undefined ? parsed.client_id : 'error' in basic ? undefined : basic.clientId;
    if (typeof clientId !== 'string' || !(await this.#isKeyId(realm, clientId))) return false;
    let form: Record<string, unknown>;
    try {
      form = singleValued(parsed);
    } catch (error) {
      if (!(error instanceof BodyError)) throw error;
      send(ctx, oauthError(error.status, 'invalid_request', error.message));
      return true;
    }
    await this.#clientCredentials(ctx, realm, issuer, authorization, form);
    return true;
  }

  /** A key id is the shape of one and no client of the realm has it as clientId. */
  async #isKeyId(realm: RealmContext, clientId: string): Promise<boolean> {
    return ACCESS_KEY_PATTERN.test(clientId) && !(await realm.client(clientId));
  }

  async #clientCredentials(ctx: Context, realm: RealmContext, issuer: string, authorization: string | undefined, form: Record<string, unknown>): Promise<void> {
    const credentials = readClientCredentials(authorization, form);
    if (!credentials) {
      // A key id without its secret: what oidc-provider answers an unknown client.
      send(ctx, invalidKey(false));
      return;
    }
    if ('status' in credentials) {
      send(ctx, credentials);
      return;
    }
    if (authorization && typeof form.client_id === 'string' && form.client_id !== credentials.clientId) {
      send(ctx, oauthError(400, 'invalid_request', 'mismatch in body and authorization client ids'));
      return;
    }
    const keyId = credentials.clientId;
    const ipAddress = ctx.ip;
    const result = await authenticateAccessKey(realm, keyId, credentials.clientSecret);
    if (!result.ok) {
      this.#services.event(realm, {
        type: 'CLIENT_LOGIN_ERROR', clientId: keyId, userId: result.key?.userId, ipAddress,
        error: CLIENT_LOGIN_ERRORS[result.failure], details: { grant_type: form.grant_type, access_key_id: keyId },
      });
      send(ctx, invalidKey(authorization !== undefined));
      return;
    }
    const grantType = form.grant_type;
    if (typeof grantType !== 'string' || grantType === '') {
      send(ctx, oauthError(400, 'invalid_request', 'missing required parameter \'grant_type\''));
      return;
    }
    if (grantType !== 'client_credentials') {
      send(ctx, oauthError(400, 'unauthorized_client', 'Client not allowed to use this grant type'));
      return;
    }
    const body = await clientCredentialsTokens(realm, issuer, result.key, typeof form.scope === 'string' ? form.scope : undefined, ipAddress);
    if (!body) {
      // The user vanished or was disabled since the key was cached.
      this.#services.event(realm, { type: 'CLIENT_LOGIN_ERROR', clientId: keyId, userId: result.key.userId, ipAddress, error: 'user_disabled', details: { grant_type: grantType, access_key_id: keyId } });
      send(ctx, invalidKey(authorization !== undefined));
      return;
    }
    this.#services.metrics.tokensIssued.inc({ realm: realm.name, grant_type: 'client_credentials' });
    this.#services.event(realm, { type: 'CLIENT_LOGIN', clientId: keyId, userId: result.key.userId, ipAddress, details: { grant_type: grantType, access_key_id: keyId } });
    send(ctx, { status: 200, body });
  }

  /**
   * CXone's legacy endpoint: JSON {accessKeyId, accessKeySecret} starts a user session and answers
   * {access_token, token_type, expires_in, refresh_token, id_token, refresh_expires_in};
   * {grant_type: refresh_token, refresh_token} (JSON or form) refreshes those tokens.
   */
  async legacyEndpoint(ctx: Context, realm: RealmContext, issuer: string): Promise<void> {
    if (ctx.method !== 'POST') {
      send(ctx, oauthError(405, 'invalid_request', `${ctx.method} is not allowed here`));
      return;
    }
    let body: Record<string, unknown>;
    try {
      if (ctx.is('application/x-www-form-urlencoded')) {
        body = await readForm(ctx);
      } else {
        const json = await readJson(ctx, JSON_LIMIT);
        if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new BodyError(400, 'the body must be a JSON object');
        body = json as Record<string, unknown>;
      }
    } catch (error) {
      if (!(error instanceof BodyError)) throw error;
      send(ctx, oauthError(error.status, 'invalid_request', error.message));
      return;
    }

    const client = await this.#legacyClient(realm);
    if (!client) {
      send(ctx, oauthError(400, 'unauthorized_client', 'The access-key client of this realm is disabled'));
      return;
    }
    // A client created just now lives in a fresh context; the current one still caches its absence.
    const current = client.realm;
    const ipAddress = ctx.ip;
    try {
      if (body.grant_type === 'refresh_token') {
        const refreshed = await refreshUserTokens(current, this.#services.event, {
          client: client.model, issuer, ipAddress,
          refreshToken: typeof body.refresh_token === 'string' ? body.refresh_token : undefined, scope: undefined,
        });
        this.#services.metrics.tokensIssued.inc({ realm: realm.name, grant_type: 'refresh_token' });
        send(ctx, { status: 200, body: legacyShape(refreshed) });
        return;
      }
      if (body.grant_type !== undefined && body.grant_type !== 'access_key') {
        send(ctx, oauthError(400, 'unsupported_grant_type', 'Unsupported grant_type'));
        return;
      }
      const keyId = body.accessKeyId;
      const secret = body.accessKeySecret;
      if (typeof keyId !== 'string' || keyId === '' || typeof secret !== 'string') {
        send(ctx, oauthError(400, 'invalid_request', 'accessKeyId and accessKeySecret are required'));
        return;
      }
      const details = { grant_type: 'access_key', access_key_id: keyId };
      const result = await authenticateAccessKey(current, keyId, secret);
      if (!result.ok) {
        this.#services.event(current, {
          type: 'CLIENT_LOGIN_ERROR', clientId: client.model.clientId, userId: result.key?.userId, ipAddress,
          error: CLIENT_LOGIN_ERRORS[result.failure], details,
        });
        send(ctx, invalidKey(false));
        return;
      }
      const started = await startSessionWithTokens(current, {
        issuer, client: client.model, userId: result.key.userId, loginUsername: result.key.username, scope: 'openid', ipAddress,
      });
      this.#services.metrics.tokensIssued.inc({ realm: realm.name, grant_type: 'access_key' });
      this.#services.event(current, {
        type: 'CLIENT_LOGIN', clientId: client.model.clientId, userId: result.key.userId, sessionId: started.sessionId, ipAddress, details,
      });
      send(ctx, { status: 200, body: legacyShape(started.body) });
    } catch (error) {
      if (error instanceof TokenRequestError) {
        send(ctx, oauthError(error.status, error.error, error.message));
        return;
      }
      if (error instanceof errors.OIDCProviderError) {
        send(ctx, oauthError(error.status, error.error, error.error_description ?? error.message));
        return;
      }
      throw error;
    }
  }

  /**
   * The client the legacy endpoint's sessions belong to (client sessions reference a client row):
   * the realm attribute's client, created on first use when missing. Undefined when a client of
   * that id exists but cannot be used (disabled, not OpenID Connect).
   */
  async #legacyClient(realm: RealmContext): Promise<{ realm: RealmContext; model: ClientModel } | undefined> {
    const configured = realm.settings.attributes[LEGACY_CLIENT_ATTRIBUTE];
    const clientId = typeof configured === 'string' && configured.trim() !== '' ? configured.trim() : DEFAULT_LEGACY_CLIENT_ID;
    const model = await realm.client(clientId);
    if (model) return { realm, model };
    // Unusable clients are refused without a realm change: anyone can call this endpoint.
    if (!(await ensureLegacyClient(realm, clientId))) return undefined;
    // Created now, or by a concurrent request this context has not heard of yet.
    await this.#services.registry.realmChanged(realm.id);
    const fresh = await this.#services.registry.get(realm.name);
    const freshModel = await fresh?.client(clientId);
    return fresh && freshModel ? { realm: fresh, model: freshModel } : undefined;
  }
}

/** Keycloak-shaped client_credentials tokens for a key's user; undefined when the user is gone. */
export async function clientCredentialsTokens(realm: RealmContext, issuer: string, key: KeyEntry, requestedScope: string | undefined, ipAddress: string): Promise<Record<string, unknown> | undefined> {
  const content = await accessKeysOf(realm).tokenContent(key, requestedScope, ipAddress);
  if (!content) return undefined;
  const now = Math.floor(Date.now() / 1000);
  const expiresIn = accessTokenLifespan(realm, undefined);
  const payload = {
    exp: now + expiresIn, iat: now, jti: crypto.randomUUID(), iss: issuer,
    ...(content.aud !== undefined ? { aud: content.aud } : {}),
    sub: key.userId, typ: 'Bearer', azp: key.id,
    ...content.claims,
    scope: content.scope,
  };
  return {
    access_token: await signWithRealmKey(realm, payload),
    expires_in: expiresIn,
    refresh_expires_in: 0,
    token_type: 'Bearer',
    'not-before-policy': realm.realm.not_before,
    scope: content.scope,
  };
}

/** The legacy endpoint's answer: CXone's fields, taken from a Keycloak token response. */
function legacyShape(body: Record<string, unknown>): Record<string, unknown> {
  return {
    access_token: body.access_token,
    token_type: body.token_type,
    expires_in: body.expires_in,
    refresh_token: body.refresh_token,
    ...(body.id_token !== undefined ? { id_token: body.id_token } : {}),
    refresh_expires_in: body.refresh_expires_in,
  };
}

/**
 * Creates the legacy endpoint's client when the realm has none of that id, as a minimal Keycloak
 * client: public, no browser or password flows (so only the legacy endpoint issues or refreshes
 * its tokens), full scope, the realm's default client scopes. Concurrent first uses insert once.
 * True when a usable client of that id exists now; false when one exists that cannot be used
 * (disabled, or another protocol).
 */
async function ensureLegacyClient(realm: RealmContext, clientId: string): Promise<boolean> {
  return realm.db.transaction().execute(async (trx) => {
    const existing = await trx.selectFrom('clients').select(['enabled', 'protocol'])
      .where('realm_id', '=', realm.id).where('client_id', '=', clientId).executeTakeFirst();
    if (existing) return existing.enabled && existing.protocol === 'openid-connect';
    const id = newId();
    const inserted = await trx.insertInto('clients').values({
      id, realm_id: realm.id, client_id: clientId, name: 'CXone access-key endpoint',
      description: `Owns the sessions of ${LEGACY_ACCESS_KEY_ROUTE} (created by Cloakroom on first use)`,
      enabled: true, protocol: 'openid-connect', public_client: true, bearer_only: false, client_authenticator_type: 'client-secret',
      secret_sealed: null, standard_flow_enabled: false, implicit_flow_enabled: false, direct_access_grants_enabled: false,
      service_accounts_enabled: false, consent_required: false, full_scope_allowed: true, frontchannel_logout: false,
      root_url: null, base_url: null, admin_url: null, redirect_uris: JSON.stringify([]), web_origins: JSON.stringify([]),
      attributes: JSON.stringify({}), extra: JSON.stringify({}),
    }).onConflict((oc) => oc.columns(['realm_id', 'client_id']).doNothing()).returning('id').executeTakeFirst();
    if (!inserted) return true; // another request created it meanwhile
    const defaults = await trx.selectFrom('realm_default_client_scopes')
      .innerJoin('client_scopes', 'client_scopes.id', 'realm_default_client_scopes.client_scope_id')
      .select(['client_scopes.id', 'realm_default_client_scopes.default_scope'])
      .where('realm_default_client_scopes.realm_id', '=', realm.id).where('client_scopes.protocol', '=', 'openid-connect').execute();
    if (defaults.length > 0) {
      await trx.insertInto('client_client_scopes')
        .values(defaults.map((scope) => ({ client_id: id, client_scope_id: scope.id, default_scope: scope.default_scope })))
        .execute();
    }
    return true;
  });
}
