// One oidc-provider Provider per realm (and public origin), configured from the realm's stored
// settings. oidc-provider does the protocol; this file makes it answer like Keycloak: URL layout,
// token shape, token response fields, client authentication methods.
import Provider, { errors, type Configuration, type KoaContextWithOIDC } from 'oidc-provider';

import { authorizationResponseParams } from '../login/application-initiated-actions.ts';
import type { LoginEvent } from '../events/events.ts';
import type { ClientModel, RealmContext } from '../realms/context.ts';
import { ssoSessionLifespans } from '../realms/settings.ts';
import { findUserById } from '../store/users.ts';
import { createAdapterClass } from './adapter.ts';
import { createCookieSigner } from './cookie-signer.ts';
import { accessTokenLifespan, clientAllowsOrigin, redirectUriMatches } from './client-policy.ts';
import { completeCodeExchange, isCodeExchange, REPLACED_ID_TOKEN, userAccessTokenPayload } from './code-exchange.ts';
import { CLIENT_CREDENTIALS_PARAMETERS, clientCredentialsGrant } from './grants/client-credentials.ts';
import { passwordGrant, PASSWORD_GRANT_PARAMETERS, oauthError } from './grants/password.ts';
import { refreshTokenGrant, REFRESH_GRANT_PARAMETERS } from './grants/refresh-token.ts';
import { TOKEN_EXCHANGE_DUPES, TOKEN_EXCHANGE_GRANT, TOKEN_EXCHANGE_PARAMETERS, tokenExchangeGrant } from './grants/token-exchange.ts';
import { TokenRequestError } from './session-tokens.ts';
import { keycloakTokenResponse } from './token-endpoint.ts';
import { interactionPolicyFor, loadExistingGrantFor } from './sso-session.ts';
import { SESSION_COOKIE } from '../login/session-iframe.ts';

export { accessTokenLifespan, clientAllowsOrigin };

/**
 * oidc-provider issues JWT access tokens only for a resource server. Keycloak has no resource
 * indicators, so every access token is issued for this one internal resource and its audience
 * is then set by the protocol mappers, as Keycloak does.
 */
export const REALM_RESOURCE = 'urn:cloakroom:realm';

export const PROTOCOL_ROUTES = {
  authorization: '/protocol/openid-connect/auth',
  token: '/protocol/openid-connect/token',
  introspection: '/protocol/openid-connect/token/introspect',
  userinfo: '/protocol/openid-connect/userinfo',
  end_session: '/protocol/openid-connect/logout',
  jwks: '/protocol/openid-connect/certs',
  revocation: '/protocol/openid-connect/revoke',
  device_authorization: '/protocol/openid-connect/auth/device',
  code_verification: '/device',
  pushed_authorization_request: '/protocol/openid-connect/ext/par/request',
  backchannel_authentication: '/protocol/openid-connect/ext/ciba/auth',
  registration: '/clients-registrations/openid-connect',
} as const;

export type ProviderHooks = {
  onTokenIssued(realm: RealmContext, grantType: string, clientId: string | undefined, ipAddress: string): void;
  onGrantError(realm: RealmContext, grantType: string | undefined, clientId: string | undefined, error: Error, ipAddress: string): void;
  /** An error oidc-provider turned into a 500 (server_error): logged, never shown. */
  onServerError(realm: RealmContext, error: Error): void;
  /** Stores a login event (when the realm records that type). */
  event(realm: RealmContext, event: LoginEvent): void;
  /** HTML error page for errors oidc-provider cannot send back to the client (bad redirect URI...). */
  errorPage(realm: RealmContext, ctx: KoaContextWithOIDC, error: { error: string; error_description?: string }): Promise<void>;
};

/**
 * jose and oidc-provider insist on an audience; Keycloak leaves `aud` out when no mapper adds
 * one. A non-enumerable placeholder satisfies the check and is not serialized.
 */
function setAudience(payload: Record<string, unknown>, aud: unknown, fallback: string): void {
  if (aud !== undefined) {
    payload.aud = aud;
  } else {
    delete payload.aud;
    Object.defineProperty(payload, 'aud', { value: fallback, enumerable: false, configurable: true, writable: true });
  }
}

/**
 * oidc-provider drops offline_access unless prompt=consent is asked for (OpenID Connect Core
 * 11); Keycloak grants it to any client that asks. An authorization request asking for it gets
 * prompt=consent added; the consent step approves itself for clients without consentRequired, so
 * the user sees nothing. Applied to the query before the request reaches the Provider.
 */
export function keepOfflineAccess(query: URLSearchParams): void {
  const scopes = (query.get('scope') ?? '').split(' ');
  const prompts = (query.get('prompt') ?? '').split(' ').filter(Boolean);
  if (!scopes.includes('offline_access') || prompts.includes('consent') || prompts.includes('none')) return;
  query.set('prompt', [...prompts, 'consent'].join(' '));
}

export function buildProvider(realm: RealmContext, issuer: string, hooks: ProviderHooks): Provider {
  const clientModel = async (clientId: string): Promise<ClientModel> => {
    const client = await realm.client(clientId);
    if (!client) throw new errors.InvalidClient('client not found');
    return client;
  };

  const issuerPath = new URL(issuer).pathname;
  const configuration: Configuration = {
    adapter: createAdapterClass(realm.db, realm.id, async (clientId) => (await realm.client(clientId))?.metadata as never),
    jwks: { keys: realm.keys.signing as never },
    cookies: {
      keys: createCookieSigner(realm.box.derive(`cookies:${realm.id}`).toString('base64url')),
      long: { signed: true, httpOnly: true, sameSite: 'lax' },
      short: { signed: true, httpOnly: true, sameSite: 'lax' },
    },
    routes: PROTOCOL_ROUTES,
    scopes: ['openid', 'offline_access', ...realm.scopeNames],
    clientDefaults: {
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
      id_token_signed_response_alg: realm.settings.defaultSignatureAlgorithm,
    },
    enabledJWA: {
      idTokenSigningAlgValues: ['RS256', 'ES256'],
      userinfoSigningAlgValues: ['RS256', 'ES256'],
    },
    conformIdTokenClaims: false,
    // A code is only ever exchanged for Cloakroom's own refresh token (see code-exchange.ts).
    issueRefreshToken: async () => false,
    findAccount: async (ctx, sub) => {
      // No read where the user was just read: at the resume of the login that signed this user
      // in (the login pages read them a moment ago), and in a code exchange, which reads the
      // session, its enabled user and their roles in one statement when it builds the access
      // token (code-exchange.ts). A user disabled in between gets no token: that statement refuses.
      const oidc = (ctx as KoaContextWithOIDC).oidc;
      const justSignedIn = oidc?.route === 'resume' && (oidc.result as { login?: { accountId?: string } } | undefined)?.login?.accountId === sub;
      if (!justSignedIn && !isCodeExchange(ctx as KoaContextWithOIDC)) {
        const user = await findUserById(realm.db, realm.id, sub);
        if (!user || !user.enabled) return undefined;
      }
      return { accountId: sub, claims: async () => ({ sub }) };
    },
    interactions: {
      policy: interactionPolicyFor(realm, hooks.event),
      // The login pages live under {issuer}/login-actions/{uid}; the interaction cookie's path is this URL's path.
      url: (ctx, interaction) => `${issuerPath}/login-actions/${interaction.uid}`,
    },
    loadExistingGrant: loadExistingGrantFor(realm, REALM_RESOURCE),
    pkce: {
      // Public clients must use PKCE (S256, the only method oidc-provider offers); confidential clients
      // must when their Keycloak attribute pkce.code.challenge.method asks for it.
      required: (ctx, client) => {
        if (client.clientAuthMethod === 'none') return true;
        return Boolean(realm.loadedClient(client.clientId)?.row.attributes['pkce.code.challenge.method']);
      },
    },
    // Keycloak's kc_idp_hint (straight to an identity provider), kc_action and the handoff of an IdP-initiated
    // SAML login (src/broker/routes.ts) reach the login pages through the interaction's params.
    // kc_action asks the user to run one required action (src/login/application-initiated-actions.ts).
    extraParams: ['kc_idp_hint', 'broker_handoff', 'kc_action'],
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      introspection: { enabled: true },
      revocation: { enabled: true },
      rpInitiatedLogout: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => REALM_RESOURCE,
        useGrantedResource: () => true,
        getResourceServerInfo: async (ctx, resource, client) => {
          if (resource !== REALM_RESOURCE) throw new errors.InvalidTarget('resource indicators are not supported');
          const model = await realm.client(client.clientId);
          return {
            scope: (client.scope as string | undefined) ?? 'openid',
            audience: client.clientId,
            accessTokenFormat: 'jwt',
            accessTokenTTL: accessTokenLifespan(realm, model),
            jwt: { sign: { alg: realm.settings.defaultSignatureAlgorithm } },
          };
        },
      },
    },
    // Keycloak answers CORS for the client's webOrigins. The client was loaded by client
    // authentication earlier in the same request, so the synchronous lookup finds it.
    clientBasedCORS: (ctx, origin, client) => {
      const model = realm.loadedClient(client.clientId);
      return model ? clientAllowsOrigin(model, origin) : false;
    },
    ttl: {
      AccessToken: (ctx, token) => token.resourceServer?.accessTokenTTL ?? realm.settings.accessTokenLifespan,
      AuthorizationCode: realm.settings.accessCodeLifespan || 60,
      // Only the (discarded) ID token of a code exchange or an implicit response uses this.
      IdToken: (ctx, token, client) => accessTokenLifespan(realm, realm.loadedClient(client.clientId)),
      Interaction: realm.settings.accessCodeLifespanLogin || 1800,
      // The SSO session's real lifetime is the user session's (sso-session.ts); this only bounds the row.
      Session: (ctx, session) => ssoSessionLifespans(realm.settings, !session.transient).max || 36000,
      Grant: (ctx, grant) => realm.loadedClient(grant.clientId ?? '')?.row.consent_required ? 365 * 86400 : ssoSessionLifespans(realm.settings, true).max || 36000,
    },
    formats: {
      customizers: {
        jwt: async (ctx, token, jwt) => {
          const client = await clientModel(token.clientId!);
          // Keycloak's header is {"alg","typ":"JWT","kid"}; oidc-provider's default typ is at+jwt.
          jwt.header = { typ: 'JWT' };
          const payload = jwt.payload as Record<string, unknown>;
          if (token.kind === 'AccessToken') {
            let shaped: Record<string, unknown>;
            try {
              shaped = await userAccessTokenPayload(realm, client, ctx as KoaContextWithOIDC, {
                jti: payload.jti as string, iat: payload.iat as number,
                sessionUid: (token as { sessionUid?: string }).sessionUid, accountId: token.accountId,
              });
            } catch (error) {
              if (error instanceof TokenRequestError) throw oauthError(error.error, error.message, error.status);
              throw error;
            }
            if (shaped.aud === undefined) setAudience(shaped, undefined, client.clientId);
            jwt.payload = shaped;
            (token as { scope?: string }).scope = (shaped.scope as string) || undefined;
          }
        },
      },
    },
    renderError: async (ctx, out) => {
      if (ctx.oidc?.route === 'authorization' || ctx.oidc?.route === 'resume') {
        await hooks.errorPage(realm, ctx as KoaContextWithOIDC, out);
        return;
      }
      ctx.type = 'json';
      ctx.body = out;
    },
  };

  const provider = new Provider(issuer, configuration);
  // The app in front rewrites Host and X-Forwarded-Proto to the realm's public origin.
  provider.proxy = true;

  // Keycloak redirect URIs may end in a '*' wildcard; everything else matches exactly.
  provider.Client.prototype.redirectUriAllowed = function redirectUriAllowed(this: { redirectUris?: string[] }, value: string): boolean {
    return redirectUriMatches(this.redirectUris ?? [], value);
  };

  // A code exchange's ID token is Cloakroom's own: see REPLACED_ID_TOKEN.
  const issueIdToken = provider.IdToken.prototype.issue;
  provider.IdToken.prototype.issue = function issue(this: { ctx?: KoaContextWithOIDC }, options?: { use?: string }) {
    if (options?.use === 'idtoken' && this.ctx && isCodeExchange(this.ctx)) return Promise.resolve(REPLACED_ID_TOKEN);
    return issueIdToken.call(this, options as Parameters<typeof issueIdToken>[0]);
  };

  provider.registerGrantType('client_credentials', clientCredentialsGrant(realm), CLIENT_CREDENTIALS_PARAMETERS);
  provider.registerGrantType('password', passwordGrant(realm, hooks.event), PASSWORD_GRANT_PARAMETERS);
  provider.registerGrantType('refresh_token', refreshTokenGrant(realm, hooks.event), REFRESH_GRANT_PARAMETERS);
  // RFC 8693 for Cisco Finesse SSO tokens; which clients may use it is the provider's allow-list.
  provider.registerGrantType(TOKEN_EXCHANGE_GRANT, tokenExchangeGrant(realm, hooks.event), TOKEN_EXCHANGE_PARAMETERS, TOKEN_EXCHANGE_DUPES);

  provider.use(async (ctx, next) => {
    await next();
    // Keycloak's CORS answers allow credentials (keycloak-js fetches with credentials: 'include').
    const allowedOrigin = ctx.response.get('Access-Control-Allow-Origin');
    if (allowedOrigin && allowedOrigin !== '*') {
      ctx.set('Access-Control-Allow-Credentials', 'true');
      ctx.vary('Origin');
    }
    const route = ctx.oidc?.route;
    if ((route === 'authorization' || route === 'resume') && ctx.oidc.session?.accountId && !ctx.oidc.session.destroyed) {
      // keycloak-js's session iframe compares this cookie's sid with its token's sid.
      const session = ctx.oidc.session;
      ctx.cookies.set(SESSION_COOKIE, `${realm.name}/${session.accountId}/${session.uid}`, {
        path: issuerPath, httpOnly: false, signed: false, sameSite: ctx.secure ? 'none' : 'lax', secure: ctx.secure, overwrite: true,
        ...(session.transient ? {} : { maxAge: ssoSessionLifespans(realm.settings, true).max * 1000 || undefined }),
      });
    }
    if (ctx.status === 200 && isCodeExchange(ctx as KoaContextWithOIDC)) {
      const joined = await completeCodeExchange(realm, ctx as KoaContextWithOIDC).catch((error: unknown) => {
        if (error instanceof TokenRequestError) {
          ctx.status = error.status;
          ctx.body = { error: error.error, error_description: error.message };
          return undefined;
        }
        throw error;
      });
      if (joined) hooks.event(realm, { type: 'CODE_TO_TOKEN', clientId: joined.clientId, userId: joined.userId, sessionId: joined.sessionId, ipAddress: ctx.ip });
    }
    // Keycloak's token response carries refresh_expires_in and not-before-policy.
    // RFC 6749 5.2 (and Keycloak) call a grant the client may not use unauthorized_client.
    if (ctx.oidc?.route === 'token' && ctx.status === 400 && (ctx.body as { error_description?: string })?.error_description === 'requested grant type is not allowed for this client') {
      ctx.body = {
        error: 'unauthorized_client',
        error_description: ctx.oidc.params?.grant_type === 'client_credentials'
          ? 'Client not enabled to retrieve service account'
          : 'Client not allowed to use this grant type',
      };
    }
    if (ctx.oidc?.route === 'token' && ctx.status === 200 && ctx.body && typeof ctx.body === 'object') {
      const body = ctx.body as Record<string, unknown>;
      if ('access_token' in body) ctx.body = keycloakTokenResponse(realm, body);
    }
  });

  // The outcome of a kc_action goes back with the code (authorization.success hands over the response's parameters).
  provider.on('authorization.success', (ctx: KoaContextWithOIDC, out?: Record<string, unknown>) => {
    if (out) Object.assign(out, authorizationResponseParams(ctx.oidc.params as Record<string, unknown>, ctx.oidc.result));
  });
  provider.on('server_error', (ctx: unknown, error: Error) => hooks.onServerError(realm, error));
  provider.on('grant.success', (ctx: KoaContextWithOIDC) => {
    hooks.onTokenIssued(realm, String(ctx.oidc.params?.grant_type ?? 'unknown'), ctx.oidc.client?.clientId, ctx.ip);
  });
  provider.on('grant.error', (ctx: KoaContextWithOIDC, error: Error) => {
    hooks.onGrantError(realm, ctx.oidc?.params?.grant_type as string | undefined, ctx.oidc?.client?.clientId, error, ctx.ip);
  });
  return provider;
}
