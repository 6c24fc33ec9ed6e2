// One oidc-provider Provider per realm (and public origin), configured from the realm's stored
// settings. oidc-provider does the protocol; this file makes it answer like Keycloak: URL layout,
// token shape, token response fields, client authentication methods.
import Provider, { errors, type Configuration, type KoaContextWithOIDC } from 'oidc-provider';

import type { ClientModel, RealmContext } from '../realms/context.ts';
import { findServiceAccountUserId } from '../store/clients.ts';
import { createAdapterClass } from './adapter.ts';
import { grantedScopes, loadSubject, mappersFor, scopeString, tokenClaims } from './keycloak-token.ts';

/**
 * oidc-provider issues JWT access tokens only for a resource server. Keycloak has no resource
 * indicators, so every access token is issued for this one internal resource and its audience
 * is then set by the protocol mappers, as Keycloak does.
 */
const REALM_RESOURCE = 'urn:cloakroom:realm';

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
};

/** Client attribute `access.token.lifespan` overrides the realm's accessTokenLifespan. */
export function accessTokenLifespan(realm: RealmContext, client: ClientModel | undefined): number {
  const override = Number.parseInt(client?.row.attributes['access.token.lifespan'] ?? '', 10);
  return Number.isFinite(override) && override > 0 ? override : realm.settings.accessTokenLifespan;
}

/** Origins allowed for CORS: webOrigins, with '+' meaning the origins of the redirect URIs. */
export function clientAllowsOrigin(client: ClientModel, origin: string): boolean {
  for (const entry of client.row.web_origins) {
    if (entry === '*' || entry === origin) return true;
    if (entry === '+') {
      for (const uri of client.row.redirect_uris) {
        try {
          if (new URL(uri.replace(/\*$/, '')).origin === origin) return true;
        } catch { /* relative or malformed redirect URI */ }
      }
    }
  }
  return false;
}

/**
 * jose and oidc-provider insist on an audience; Keycloak leaves `aud` out when no mapper adds
 * one. A non-enumerable placeholder satisfies the check and is not serialized.
 */
function setAudience(payload: Record<string, unknown>, aud: unknown, fallback: string): void {
  if (aud !== undefined) {
    payload.aud = aud;
  } else {
    delete payload.aud;
    Object.defineProperty(payload, 'aud', { value: fallback, enumerable: false, configurable: true });
  }
}

export function buildProvider(realm: RealmContext, issuer: string, hooks: ProviderHooks): Provider {
  const clientModel = async (clientId: string): Promise<ClientModel> => {
    const client = await realm.client(clientId);
    if (!client) throw new errors.InvalidClient('client not found');
    return client;
  };

  /** Service-account token content, cached per client and granted scope set for the context. */
  async function serviceAccountToken(ctx: KoaContextWithOIDC, client: ClientModel): Promise<{ claims: Record<string, unknown>; scope: string; sub: string }> {
    const requested = ctx.oidc.params?.scope as string | undefined;
    const scopes = grantedScopes(client, requested);
    const mappers = mappersFor(client, scopes);
    const base = await realm.memo(`service-account:${client.id}:${scopes.map((s) => s.id).join(',')}`, async () => {
      const user = await findServiceAccountUserId(realm.db, client.id);
      return user ? loadSubject(realm, client, user.id, scopes, mappers) : undefined;
    });
    if (!base) throw new errors.UnauthorizedClient('Client not enabled to retrieve service account');
    const ip = ctx.ip;
    const claims = tokenClaims({
      ...base,
      sessionNotes: { clientHost: ip, clientAddress: ip, client_id: client.clientId },
      acr: '1',
    }, mappers, 'access');
    return { claims, scope: scopeString(scopes, requested), sub: base.user.id };
  }

  const configuration: Configuration = {
    adapter: createAdapterClass(realm.db, realm.id, async (clientId) => (await realm.client(clientId))?.metadata as never),
    jwks: { keys: realm.keys.signing as never },
    cookies: { keys: [realm.box.derive(`cookies:${realm.id}`).toString('base64url')] },
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
      ClientCredentials: (ctx, token) => token.resourceServer?.accessTokenTTL ?? realm.settings.accessTokenLifespan,
      AccessToken: (ctx, token) => token.resourceServer?.accessTokenTTL ?? realm.settings.accessTokenLifespan,
    },
    formats: {
      customizers: {
        jwt: async (ctx, token, jwt) => {
          const client = await clientModel(token.clientId!);
          // Keycloak's header is {"alg","typ":"JWT","kid"}; oidc-provider's default typ is at+jwt.
          jwt.header = { typ: 'JWT' };
          const payload = jwt.payload as Record<string, unknown>;
          if (token.kind === 'ClientCredentials') {
            const { claims, scope, sub } = await serviceAccountToken(ctx as KoaContextWithOIDC, client);
            const { aud, ...rest } = claims;
            const shaped: Record<string, unknown> = {
              exp: payload.exp, iat: payload.iat, jti: payload.jti, iss: payload.iss,
              sub, typ: 'Bearer', azp: client.clientId,
              ...rest,
              scope,
              clientId: client.clientId,
              client_id: client.clientId,
            };
            setAudience(shaped, aud, client.clientId);
            jwt.payload = shaped;
            // The token response's `scope` is read from the token after it is signed.
            (token as { scope?: string }).scope = scope || undefined;
          }
        },
      },
    },
    renderError: async (ctx, out) => {
      ctx.type = 'json';
      ctx.body = out;
    },
  };

  const provider = new Provider(issuer, configuration);
  // The app in front rewrites Host and X-Forwarded-Proto to the realm's public origin.
  provider.proxy = true;

  provider.use(async (ctx, next) => {
    await next();
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
      if ('access_token' in body) {
        ctx.body = {
          access_token: body.access_token,
          expires_in: body.expires_in,
          refresh_expires_in: body.refresh_expires_in ?? 0,
          ...body,
          'not-before-policy': realm.realm.not_before,
        };
      }
    }
  });

  provider.on('grant.success', (ctx: KoaContextWithOIDC) => {
    hooks.onTokenIssued(realm, String(ctx.oidc.params?.grant_type ?? 'unknown'), ctx.oidc.client?.clientId, ctx.ip);
  });
  provider.on('grant.error', (ctx: KoaContextWithOIDC, error: Error) => {
    hooks.onGrantError(realm, ctx.oidc?.params?.grant_type as string | undefined, ctx.oidc?.client?.clientId, error, ctx.ip);
  });
  return provider;
}
