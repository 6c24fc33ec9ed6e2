// The OAuth 2.0 side of identity brokering, shared by every OAuth-family provider (oidc,
// keycloak-oidc, oauth2 and the social ones): provider settings (Keycloak config keys plus the
// social presets), the upstream HTTP policy (timeouts, size limit, https), client authentication,
// the authorization request, the callback and code exchange (openid-client), and the plain OAuth 2
// identity built from a user-info JSON document. OpenID Connect specifics live in oidc.ts.
import { createPrivateKey, createPublicKey, randomBytes, type KeyObject } from 'node:crypto';

import { calculateJwkThumbprint, errors as joseErrors, exportJWK, SignJWT, type CryptoKey, type JWK } from 'jose';
import * as client from 'openid-client';
import { z } from 'zod';

import { readBoundedBody } from '../http/bounded-response.ts';
import { isLoopbackHost } from '../http/loopback.ts';
import { BrokerError, type BrokeredIdentity, type BrokerUrls, type IdentityProviderModel } from './types.ts';

/** Provider ids handled by the OAuth modules. */
export const OAUTH_PROVIDER_IDS = new Set(['oidc', 'keycloak-oidc', 'oauth2', 'github', 'google', 'microsoft', 'facebook']);

/** Providers that speak OpenID Connect (ID token, nonce, discovery). Google and Microsoft are used through their OIDC endpoints. */
const OPENID_PROVIDER_IDS = new Set(['oidc', 'keycloak-oidc', 'google', 'microsoft']);

/** Upstream answers are small JSON documents; anything larger is refused unread. */
const MAX_UPSTREAM_BYTES = 1024 * 1024;
/** Total time for one upstream request when the provider sets no connectTimeout/readTimeout. */
const DEFAULT_TIMEOUT_MS = 10_000;
const MAX_TIMEOUT_MS = 600_000;

// ---------------------------------------------------------------------------------------------
// Settings: the config map (Keycloak's OIDCIdentityProviderConfig / OAuth2IdentityProviderConfig
// names) over the provider's preset. Explicit config values win over presets.

export type ClientAuthMethod = 'client_secret_basic' | 'client_secret_post' | 'client_secret_jwt' | 'private_key_jwt';

export type OAuthSettings = {
  providerId: string;
  /** OpenID Connect: an ID token is required and validated. */
  openid: boolean;
  clientId: string;
  clientSecret: string | undefined;
  clientAuthMethod: ClientAuthMethod;
  authorizationUrl: string | undefined;
  tokenUrl: string | undefined;
  userInfoUrl: string | undefined;
  jwksUrl: string | undefined;
  logoutUrl: string | undefined;
  /** Trusted ID token issuers (Keycloak: config.issuer, comma separated); `{tenantid}` stands for the token's `tid`. */
  issuers: string[];
  /** Where to discover the endpoints when authorizationUrl/tokenUrl are not both set. */
  discovery: { kind: 'issuer' | 'descriptor'; url: string } | undefined;
  scope: string;
  /** Extra authorization request parameters of a preset (Google's hd, access_type). */
  presetParams: Record<string, string>;
  /** Claim paths of the identity. */
  claims: { id: string; username: string; email: string; givenName: string; familyName: string; fullName: string };
  /** Facebook: the username falls back to the e-mail, then the id (Keycloak's FacebookIdentityProvider). */
  usernameFallback: boolean;
  /** GitHub: where to look for the primary e-mail when the profile has none. */
  emailsUrl: string | undefined;
  /** Microsoft: the tenant id the `tid` claim must have (a GUID tenant), if any. */
  tenantId: string | undefined;
  /** Google: allowed `hd` claim values ('*' = any), when hostedDomain is set. */
  hostedDomains: string[] | undefined;
  timeoutMs: number;
};

const str = (config: Record<string, string>, key: string): string | undefined => {
  const value = config[key]?.trim();
  return value ? value : undefined;
};

const GUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

type Preset = Partial<Pick<OAuthSettings, 'authorizationUrl' | 'tokenUrl' | 'userInfoUrl' | 'jwksUrl' | 'emailsUrl' | 'usernameFallback' | 'tenantId' | 'hostedDomains'>> & {
  issuer?: string;
  scope?: string;
  claims?: Partial<OAuthSettings['claims']>;
  params?: Record<string, string>;
};

/** Keycloak's social providers, as endpoints and defaults (no network needed to build them). */
function presetFor(providerId: string, config: Record<string, string>): Preset {
  switch (providerId) {
    case 'github': {
      // Keycloak's GitHubIdentityProvider: baseUrl/apiUrl point at a GitHub Enterprise server.
      const base = (str(config, 'baseUrl') ?? 'https://github.com').replace(/\/+$/, '');
      const api = (str(config, 'apiUrl') ?? 'https://api.github.com').replace(/\/+$/, '');
      return {
        authorizationUrl: `${base}/login/oauth/authorize`, tokenUrl: `${base}/login/oauth/access_token`,
        userInfoUrl: `${api}/user`, emailsUrl: `${api}/user/emails`, scope: 'user:email',
        claims: { id: 'id', username: 'login', fullName: 'name' },
      };
    }
    case 'facebook': {
      const fields = ['id', 'name', 'email', 'first_name', 'last_name', ...(str(config, 'fetchedFields')?.split(',').map((f) => f.trim()).filter(Boolean) ?? [])];
      return {
        authorizationUrl: 'https://www.facebook.com/v18.0/dialog/oauth', tokenUrl: 'https://graph.facebook.com/v18.0/oauth/access_token',
        userInfoUrl: `https://graph.facebook.com/me?fields=${[...new Set(fields)].map(encodeURIComponent).join(',')}`, scope: 'email',
        claims: { id: 'id', username: 'username', givenName: 'first_name', familyName: 'last_name', fullName: 'name' },
        usernameFallback: true,
      };
    }
    case 'google': {
      const params: Record<string, string> = {};
      const hostedDomain = str(config, 'hostedDomain');
      if (hostedDomain) params.hd = hostedDomain;
      if (config.offlineAccess === 'true') params.access_type = 'offline';
      return {
        authorizationUrl: 'https://accounts.google.com/o/oauth2/v2/auth', tokenUrl: 'https://oauth2.googleapis.com/token',
        userInfoUrl: 'https://openidconnect.googleapis.com/v1/userinfo', jwksUrl: 'https://www.googleapis.com/oauth2/v3/certs',
        // Google's ID tokens carry either form.
        issuer: 'https://accounts.google.com,accounts.google.com', scope: 'openid profile email', params,
        ...(hostedDomain ? { hostedDomains: hostedDomain.split(',').map((d) => d.trim()).filter(Boolean) } : {}),
      };
    }
    case 'microsoft': {
      const tenant = str(config, 'tenantId') ?? 'common';
      const root = `https://login.microsoftonline.com/${encodeURIComponent(tenant)}`;
      return {
        authorizationUrl: `${root}/oauth2/v2.0/authorize`, tokenUrl: `${root}/oauth2/v2.0/token`,
        jwksUrl: `${root}/discovery/v2.0/keys`, userInfoUrl: 'https://graph.microsoft.com/oidc/userinfo',
        // Microsoft's issuer names the user's tenant: with 'common', 'organizations' or a domain name
        // as the tenant it cannot be known before the token arrives, so the issuer is checked against
        // the token's own `tid` (openid-client does the same for Entra ID); a GUID tenant pins `tid`.
        issuer: 'https://login.microsoftonline.com/{tenantid}/v2.0', scope: 'openid profile email',
        ...(GUID.test(tenant) ? { tenantId: tenant.toLowerCase() } : {}),
        // Keycloak's Microsoft provider identifies users by their Graph object id, which is the `oid` claim.
        claims: { id: 'oid' },
      };
    }
    default:
      return {};
  }
}

function timeoutMs(config: Record<string, string>): number {
  const read = (key: string): number | undefined => {
    const value = Number(str(config, key));
    return Number.isFinite(value) && value > 0 ? value : undefined;
  };
  const connect = read('connectTimeout');
  const answer = read('readTimeout');
  if (connect === undefined && answer === undefined) return DEFAULT_TIMEOUT_MS;
  return Math.min((connect ?? 0) + (answer ?? 0), MAX_TIMEOUT_MS);
}

const CLIENT_AUTH_METHODS = new Set<string>(['client_secret_basic', 'client_secret_post', 'client_secret_jwt', 'private_key_jwt']);

export function oauthSettings(idp: IdentityProviderModel): OAuthSettings {
  const { config, providerId } = idp;
  const preset = presetFor(providerId, config);
  const openid = OPENID_PROVIDER_IDS.has(providerId);
  const clientId = str(config, 'clientId');
  if (!clientId) throw new BrokerError('identity_provider_error', 'identity provider has no clientId');
  const method = str(config, 'clientAuthMethod') ?? 'client_secret_post';
  if (!CLIENT_AUTH_METHODS.has(method)) throw new BrokerError('identity_provider_error', `unsupported clientAuthMethod ${sanitizeCode(method)}`);

  const authorizationUrl = str(config, 'authorizationUrl') ?? preset.authorizationUrl;
  const tokenUrl = str(config, 'tokenUrl') ?? preset.tokenUrl;
  let discovery: OAuthSettings['discovery'];
  if (openid && !(authorizationUrl && tokenUrl)) {
    const descriptor = str(config, 'metadataDescriptorUrl');
    const issuer = str(config, 'issuer')?.split(',')[0]?.trim();
    if (config.useMetadataDescriptorUrl === 'true' && descriptor) discovery = { kind: 'descriptor', url: descriptor };
    else if (issuer) discovery = { kind: 'issuer', url: issuer };
    else if (descriptor) discovery = { kind: 'descriptor', url: descriptor };
    else throw new BrokerError('identity_provider_error', 'identity provider has neither endpoints nor an issuer to discover them');
  } else if (!(authorizationUrl && tokenUrl)) {
    throw new BrokerError('identity_provider_error', 'identity provider has no authorizationUrl/tokenUrl');
  }

  // Keycloak: defaultScope, else the provider's default; OpenID Connect always asks for openid.
  const scopes = (str(config, 'defaultScope') ?? preset.scope ?? (openid ? 'openid' : '')).split(/\s+/).filter(Boolean);
  if (openid && !scopes.includes('openid')) scopes.unshift('openid');

  const defaultId = providerId === 'oauth2' || openid ? 'sub' : 'id';
  return {
    providerId, openid, clientId,
    clientSecret: config.clientSecret || undefined,
    clientAuthMethod: method as ClientAuthMethod,
    authorizationUrl, tokenUrl,
    userInfoUrl: str(config, 'userInfoUrl') ?? preset.userInfoUrl,
    jwksUrl: str(config, 'jwksUrl') ?? preset.jwksUrl,
    logoutUrl: str(config, 'logoutUrl'),
    issuers: (str(config, 'issuer') ?? preset.issuer ?? '').split(',').map((i) => i.trim()).filter(Boolean),
    discovery,
    scope: [...new Set(scopes)].join(' '),
    presetParams: preset.params ?? {},
    claims: {
      id: str(config, 'userIDClaim') ?? preset.claims?.id ?? defaultId,
      username: str(config, 'userNameClaim') ?? preset.claims?.username ?? 'preferred_username',
      email: str(config, 'emailClaim') ?? preset.claims?.email ?? 'email',
      givenName: str(config, 'givenNameClaim') ?? preset.claims?.givenName ?? 'given_name',
      familyName: str(config, 'familyNameClaim') ?? preset.claims?.familyName ?? 'family_name',
      fullName: str(config, 'fullNameClaim') ?? preset.claims?.fullName ?? 'name',
    },
    usernameFallback: preset.usernameFallback ?? openid,
    emailsUrl: preset.emailsUrl,
    tenantId: preset.tenantId,
    hostedDomains: preset.hostedDomains,
    timeoutMs: timeoutMs(config),
  };
}

// ---------------------------------------------------------------------------------------------
// Upstream HTTP: every request of openid-client, jose's JWKS fetch and our own GETs goes through
// one fetch with a deadline, a body size limit, no redirects, and https unless allowed.

/** An upstream answer we refuse before anything parses it. */
class UpstreamHttpError extends Error {}

export type UpstreamPolicy = {
  timeoutMs: number;
  /** An admin configured an http:// URL for this provider (the admin API checked it against sslRequired). */
  adminHttp: boolean;
};

/** http:// only for loopback hosts or when the admin configured http URLs for this provider. */
export function httpAllowed(policy: UpstreamPolicy, url: URL): boolean {
  if (url.protocol === 'https:') return true;
  return url.protocol === 'http:' && (policy.adminHttp || isLoopbackHost(url.hostname));
}

export type UpstreamFetch = (url: string, options: client.CustomFetchOptions | { method: string; headers: Headers | Record<string, string>; redirect?: 'manual'; signal?: AbortSignal; body?: client.FetchBody }) => Promise<Response>;

const NULL_BODY_STATUSES = new Set([101, 103, 204, 205, 304]);

export function upstreamFetch(policy: UpstreamPolicy, inspect?: (url: string, response: Response) => Promise<Response>): UpstreamFetch {
  return async (url, options) => {
    const target = new URL(url);
    if (!httpAllowed(policy, target)) throw new UpstreamHttpError('insecure (http) URL refused');
    const deadline = AbortSignal.timeout(policy.timeoutMs);
    const signal = options.signal ? AbortSignal.any([options.signal, deadline]) : deadline;
    const raw = await fetch(target, {
      method: options.method,
      headers: options.headers,
      body: options.body as BodyInit | null | undefined,
      redirect: 'manual',
      signal,
    });
    const body = await readLimited(raw);
    const response = new Response(NULL_BODY_STATUSES.has(raw.status) ? null : body, { status: raw.status, statusText: raw.statusText, headers: raw.headers });
    return inspect ? inspect(url, response) : response;
  };
}

async function readLimited(response: Response): Promise<Uint8Array<ArrayBuffer>> {
  const body = await readBoundedBody(response, MAX_UPSTREAM_BYTES);
  if (!body) throw new UpstreamHttpError('answer too large');
  return new Uint8Array(body);
}

/** GET a JSON (or JWT) document with a bearer token: user info, GitHub's e-mails. */
export async function bearerGet(fetcher: UpstreamFetch, url: string, accessToken: string): Promise<Response> {
  const response = await fetcher(url, {
    method: 'GET',
    headers: { authorization: `Bearer ${accessToken}`, accept: 'application/json, application/jwt', 'user-agent': 'Cloakroom' },
    redirect: 'manual',
  });
  if (response.status !== 200) throw new UpstreamHttpError(`HTTP ${response.status}`);
  return response;
}

export async function jsonObject(response: Response): Promise<Record<string, unknown>> {
  let json: unknown;
  try {
    json = await response.json();
  } catch {
    throw new UpstreamHttpError('answer is not JSON');
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new UpstreamHttpError('answer is not a JSON object');
  return json as Record<string, unknown>;
}

// ---------------------------------------------------------------------------------------------
// Errors: a short reason naming the step and what went wrong, never a token, code or secret.

export function sanitizeCode(value: string): string {
  return /^[\w.-]{1,64}$/.test(value) ? value : 'invalid';
}

/** openid-client error codes whose own message says less than it could. */
const CLIENT_ERROR_TEXT: Record<string, string> = {
  OAUTH_RESPONSE_IS_NOT_JSON: 'answer is not JSON',
  OAUTH_PARSE_ERROR: 'answer is not valid JSON',
  OAUTH_HTTP_REQUEST_FORBIDDEN: 'insecure (http) URL refused',
  OAUTH_JSON_ATTRIBUTE_COMPARISON: 'the metadata names another issuer',
};

function describe(error: unknown): string {
  if (error instanceof UpstreamHttpError) return error.message;
  if (error instanceof client.ResponseBodyError) return `error ${sanitizeCode(error.error)} (HTTP ${error.status})`;
  if (error instanceof client.WWWAuthenticateChallengeError) {
    const code = error.cause.find((challenge) => typeof challenge.parameters.error === 'string')?.parameters.error;
    return code ? `error ${sanitizeCode(code)} (HTTP ${error.status})` : `HTTP ${error.status} with a WWW-Authenticate challenge`;
  }
  const err = error as { name?: unknown; code?: unknown; message?: unknown; cause?: unknown } | null;
  const name = typeof err?.name === 'string' ? err.name : '';
  if (name === 'TimeoutError' || name === 'AbortError' || name === 'JWKSTimeout') return 'timed out';
  // Wrapped timeouts: openid-client keeps the original error as the cause.
  const cause = err?.cause as { name?: unknown; code?: unknown; status?: unknown } | undefined;
  if (cause && (cause.name === 'TimeoutError' || cause.name === 'AbortError')) return 'timed out';
  if (error instanceof TypeError && err?.message === 'fetch failed') {
    const code = typeof cause?.code === 'string' ? cause.code : '';
    return code ? `cannot connect (${sanitizeCode(code)})` : 'cannot connect';
  }
  if (error instanceof client.ClientError && error.code === 'OAUTH_RESPONSE_IS_NOT_CONFORM' && cause instanceof Response) {
    return `unexpected HTTP status ${cause.status}`;
  }
  if (error instanceof client.ClientError && error.code !== undefined && CLIENT_ERROR_TEXT[error.code]) return CLIENT_ERROR_TEXT[error.code]!;
  // openid-client's and jose's messages are fixed texts (values go into `cause`), safe to show.
  const message = typeof err?.message === 'string' ? err.message : '';
  if ((error instanceof client.ClientError || error instanceof joseErrors.JOSEError || name === 'OperationProcessingError' || name === 'UnsupportedOperationError') && message) {
    return message.replace(/[^\x20-\x7e]/g, '').slice(0, 120);
  }
  return 'unexpected failure';
}

/** Runs one step against the provider; any failure becomes an identity_provider_error naming the step. */
export async function step<T>(what: string, run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (error) {
    if (error instanceof BrokerError) throw error;
    throw new BrokerError('identity_provider_error', `${what}: ${describe(error)}`, { cause: error });
  }
}

// ---------------------------------------------------------------------------------------------
// Client authentication

const HMAC_ALGS = new Set(['HS256', 'HS384', 'HS512']);

/** The private key of private_key_jwt: a PEM (PKCS#8/PKCS#1/SEC1) or a JWK. */
async function signingKey(pemOrJwk: string, configuredAlg: string | undefined): Promise<{ key: KeyObject | CryptoKey; alg: string; kid: string }> {
  let key: KeyObject;
  let kid: string | undefined;
  if (pemOrJwk.trim().startsWith('{')) {
    const jwk = JSON.parse(pemOrJwk) as JWK;
    kid = jwk.kid;
    key = createPrivateKey({ key: jwk as never, format: 'jwk' });
  } else {
    key = createPrivateKey(pemOrJwk);
  }
  const publicJwk = await exportJWK(createPublicKey(key));
  const type = key.asymmetricKeyType;
  const alg = configuredAlg
    ?? (type === 'ec' ? ({ 'P-256': 'ES256', 'P-384': 'ES384', 'P-521': 'ES512' } as Record<string, string>)[publicJwk.crv ?? ''] ?? 'ES256'
      : type === 'ed25519' ? 'EdDSA' : 'RS256');
  kid ??= await calculateJwkThumbprint(publicJwk);
  if (alg.startsWith('HS') || alg === 'none') throw new BrokerError('identity_provider_error', 'clientAssertionSigningAlg does not fit private_key_jwt');
  return { key, alg, kid };
}

/**
 * openid-client's ClientAuth for the configured method. The JWT methods are ours: Keycloak sends
 * the token URL (or clientAssertionAudience) as `aud` and lets the admin choose the algorithm,
 * while openid-client's own sign HS256 only and use the issuer as audience.
 */
export async function clientAuthentication(settings: OAuthSettings, config: Record<string, string>, tokenEndpoint: string): Promise<client.ClientAuth> {
  const secret = settings.clientSecret;
  const audience = str(config, 'clientAssertionAudience') ?? tokenEndpoint;
  const assertion = (sign: (jwt: SignJWT) => Promise<string>): client.ClientAuth => async (_as, metadata, body) => {
    const now = Math.floor(Date.now() / 1000);
    const jwt = new SignJWT({ jti: randomBytes(16).toString('base64url') })
      .setIssuer(metadata.client_id).setSubject(metadata.client_id).setAudience(audience)
      .setIssuedAt(now).setExpirationTime(now + 60);
    body.set('client_id', metadata.client_id);
    body.set('client_assertion_type', 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer');
    body.set('client_assertion', await sign(jwt));
  };
  switch (settings.clientAuthMethod) {
    case 'client_secret_basic':
      return secret ? client.ClientSecretBasic(secret) : client.None();
    case 'client_secret_post':
      return secret ? client.ClientSecretPost(secret) : client.None();
    case 'client_secret_jwt': {
      if (!secret) throw new BrokerError('identity_provider_error', 'client_secret_jwt needs a clientSecret');
      const alg = str(config, 'clientAssertionSigningAlg') ?? 'HS256';
      if (!HMAC_ALGS.has(alg)) throw new BrokerError('identity_provider_error', 'clientAssertionSigningAlg does not fit client_secret_jwt');
      const key = new TextEncoder().encode(secret);
      return assertion((jwt) => jwt.setProtectedHeader({ alg, typ: 'JWT' }).sign(key));
    }
    case 'private_key_jwt': {
      const pem = config.clientAssertionSigningKey;
      if (!pem) throw new BrokerError('identity_provider_error', 'private_key_jwt needs a clientAssertionSigningKey');
      let signer: Awaited<ReturnType<typeof signingKey>>;
      try {
        signer = await signingKey(pem, str(config, 'clientAssertionSigningAlg'));
      } catch (error) {
        if (error instanceof BrokerError) throw error;
        throw new BrokerError('identity_provider_error', 'clientAssertionSigningKey is not a usable private key');
      }
      return assertion((jwt) => jwt.setProtectedHeader({ alg: signer.alg, kid: signer.kid, typ: 'JWT' }).sign(signer.key));
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Authorization request and callback

export type LoginRequest = { state: string; loginHint?: string; prompt?: string; uiLocales?: string };

/** What finishOAuthLogin needs back: stored sealed by the broker. */
const protocolStateSchema = z.object({
  state: z.string().min(1),
  nonce: z.string().min(1).optional(),
  codeVerifier: z.string().min(43).max(128).optional(),
});
export type ProtocolState = z.infer<typeof protocolStateSchema>;

export function parseProtocolState(value: Record<string, string>): ProtocolState {
  const parsed = protocolStateSchema.safeParse(value);
  if (!parsed.success) throw new BrokerError('identity_provider_error', 'login state is incomplete');
  return parsed.data;
}

/** The authorization request's parameters (Keycloak's AbstractOAuth2IdentityProvider.createAuthorizationUrl). */
export async function authorizationParameters(settings: OAuthSettings, config: Record<string, string>, urls: BrokerUrls, request: LoginRequest): Promise<{ params: Record<string, string>; protocolState: ProtocolState }> {
  const params: Record<string, string> = {
    ...settings.presetParams,
    response_type: 'code',
    client_id: settings.clientId,
    redirect_uri: urls.endpoint,
    state: request.state,
  };
  if (settings.scope) params.scope = settings.scope;
  const protocolState: ProtocolState = { state: request.state };
  if (settings.openid) {
    protocolState.nonce = client.randomNonce();
    params.nonce = protocolState.nonce;
  }
  // Keycloak: the provider's configured prompt wins; otherwise the client's own prompt is forwarded.
  const configuredPrompt = str(config, 'prompt');
  const prompt = configuredPrompt && configuredPrompt !== 'unspecified' ? configuredPrompt : request.prompt;
  if (prompt) params.prompt = prompt;
  if (config.loginHint === 'true' && request.loginHint) params.login_hint = request.loginHint;
  if (config.uiLocales === 'true' && request.uiLocales) params.ui_locales = request.uiLocales;
  if (config.pkceEnabled === 'true') {
    const verifier = client.randomPKCECodeVerifier();
    protocolState.codeVerifier = verifier;
    if (config.pkceMethod === 'plain') {
      params.code_challenge = verifier;
      params.code_challenge_method = 'plain';
    } else {
      params.code_challenge = await client.calculatePKCECodeChallenge(verifier);
      params.code_challenge_method = 'S256';
    }
  }
  return { params, protocolState };
}

/**
 * The checks before any code exchange: the state is ours, the provider did not answer with an
 * error, there is a code. Returns the callback parameters rebased onto our endpoint URL (the
 * redirect_uri of the token request must be the one of the authorization request).
 */
export function checkCallback(urls: BrokerUrls, callbackUrl: URL, state: ProtocolState): URL {
  const params = callbackUrl.searchParams;
  if (params.getAll('state').length !== 1 || params.get('state') !== state.state) {
    throw new BrokerError('identity_provider_error', 'state mismatch');
  }
  const error = params.get('error');
  if (error !== null) {
    const code = sanitizeCode(error);
    throw new BrokerError('identity_provider_error', `upstream error: ${code}`, { cancelled: code === 'access_denied' || code === 'login_required' });
  }
  if (params.getAll('code').length !== 1 || !params.get('code')) throw new BrokerError('identity_provider_error', 'no authorization code in the callback');
  const rebased = new URL(urls.endpoint);
  rebased.search = callbackUrl.search;
  rebased.hash = '';
  return rebased;
}

export type TokenSet = { access_token: string; token_type: string; id_token?: string; refresh_token?: string; expires_in?: number; scope?: string };

/**
 * The code exchange through openid-client (client authentication, PKCE, state and `iss`
 * response checks, token response shape). The ID token is taken out of the token response before
 * openid-client sees it: oidc.ts validates it itself, because openid-client checks no signature
 * of a token-endpoint ID token and demands one exact issuer, while Keycloak's config allows
 * issuer lists, tenant issuers, configured public keys and signature checks turned off.
 */
export async function exchangeCode(configuration: client.Configuration, callback: URL, state: ProtocolState, takenIdToken: { value?: string }): Promise<TokenSet> {
  const result = await step('token endpoint', () => client.authorizationCodeGrant(configuration, callback, {
    expectedState: state.state,
    ...(state.codeVerifier ? { pkceCodeVerifier: state.codeVerifier } : {}),
    idTokenExpected: false,
  }));
  const tokens: TokenSet = { access_token: result.access_token, token_type: result.token_type };
  if (takenIdToken.value) tokens.id_token = takenIdToken.value;
  if (typeof result.refresh_token === 'string') tokens.refresh_token = result.refresh_token;
  if (typeof result.expires_in === 'number') tokens.expires_in = result.expires_in;
  if (typeof result.scope === 'string') tokens.scope = result.scope;
  return tokens;
}

/**
 * A fetch inspector for the token endpoint's answer: keeps `id_token` aside (see exchangeCode),
 * and turns a 200 carrying only an `error` (GitHub answers so) into the 400 it stands for, so the
 * reason names the provider's error code.
 */
export function tokenResponseInspector(tokenEndpoint: string, taken: { value?: string }): (url: string, response: Response) => Promise<Response> {
  const endpoint = new URL(tokenEndpoint).href;
  return async (url, response) => {
    if (new URL(url).href !== endpoint || response.status !== 200) return response;
    let json: unknown;
    try {
      json = JSON.parse(await response.clone().text());
    } catch {
      return response;
    }
    if (typeof json !== 'object' || json === null || Array.isArray(json)) return response;
    const { id_token: idToken, ...rest } = json as Record<string, unknown>;
    if (typeof rest.error === 'string' && rest.access_token === undefined) {
      return new Response(JSON.stringify(rest), { status: 400, headers: { 'content-type': 'application/json' } });
    }
    if (typeof idToken !== 'string') return response;
    taken.value = idToken;
    return new Response(JSON.stringify(rest), { status: response.status, headers: response.headers });
  };
}

// ---------------------------------------------------------------------------------------------
// Claims: dotted paths into a JSON document (Keycloak's OAuth2 claim names and mapper paths)

/** `address.locality`, `emails[0].value`; `\.` is a literal dot. */
export function claimAt(json: unknown, path: string): unknown {
  let current = json;
  for (const raw of path.split(/(?<!\\)\./)) {
    const segment = raw.replace(/\\\./g, '.');
    const match = /^(.*?)((?:\[\d+\])*)$/.exec(segment)!;
    const name = match[1]!;
    if (name !== '') {
      if (typeof current !== 'object' || current === null || Array.isArray(current) || !Object.hasOwn(current, name)) return undefined;
      current = (current as Record<string, unknown>)[name];
    }
    for (const index of match[2]!.matchAll(/\[(\d+)\]/g)) {
      if (!Array.isArray(current)) return undefined;
      current = current[Number(index[1])];
    }
  }
  return current;
}

/** A claim as a string: strings and numbers (GitHub and Facebook ids are numbers). */
export function claimString(json: unknown, path: string): string | undefined {
  const value = claimAt(json, path);
  if (typeof value === 'string') return value === '' ? undefined : value;
  if (typeof value === 'number' && Number.isFinite(value)) return String(value);
  return undefined;
}

/** Keycloak's BrokeredIdentityContext.setName: the last word is the last name. */
export function splitFullName(name: string): { firstName: string; lastName?: string } {
  const trimmed = name.trim();
  const i = trimmed.lastIndexOf(' ');
  return i === -1 ? { firstName: trimmed } : { firstName: trimmed.slice(0, i).trim(), lastName: trimmed.slice(i + 1) };
}

/** The identity fields from a claim set, with Keycloak's fallbacks (full name split, username from e-mail or id). */
export function identityFromClaims(alias: string, settings: OAuthSettings, claims: Record<string, unknown>): BrokeredIdentity {
  const id = claimString(claims, settings.claims.id);
  if (!id) throw new BrokerError('identity_provider_error', `no user id (${settings.claims.id}) in the provider's answer`);
  const email = claimString(claims, settings.claims.email);
  let firstName = claimString(claims, settings.claims.givenName);
  let lastName = claimString(claims, settings.claims.familyName);
  if (firstName === undefined && lastName === undefined) {
    const full = claimString(claims, settings.claims.fullName);
    if (full) ({ firstName, lastName } = splitFullName(full));
  }
  let username = claimString(claims, settings.claims.username);
  if (username === undefined && settings.usernameFallback) username = email ?? id;
  return {
    alias, id,
    ...(username !== undefined ? { username } : {}),
    ...(email !== undefined ? { email } : {}),
    ...(firstName ? { firstName } : {}),
    ...(lastName ? { lastName } : {}),
    claims,
  };
}

// ---------------------------------------------------------------------------------------------
// Plain OAuth 2 (oauth2, github, facebook): the identity is the user-info document.

const githubEmails = z.array(z.object({ email: z.string(), primary: z.boolean().optional(), verified: z.boolean().optional() }).loose());

export async function oauth2Identity(alias: string, settings: OAuthSettings, fetcher: UpstreamFetch, tokens: TokenSet): Promise<BrokeredIdentity> {
  if (!settings.userInfoUrl) throw new BrokerError('identity_provider_error', 'identity provider has no userInfoUrl');
  const userInfoUrl = settings.userInfoUrl;
  const profile = await step('user info endpoint', async () => jsonObject(await bearerGet(fetcher, userInfoUrl, tokens.access_token)));
  if (settings.emailsUrl && claimString(profile, settings.claims.email) === undefined) {
    // GitHub hides private addresses from /user; Keycloak then takes the primary verified one of /user/emails.
    const emailsUrl = settings.emailsUrl;
    const primary = await step('e-mail endpoint', async () => {
      const parsed = githubEmails.safeParse(await (await bearerGet(fetcher, emailsUrl, tokens.access_token)).json().catch(() => undefined));
      return parsed.success ? parsed.data.find((e) => e.primary && e.verified)?.email : undefined;
    });
    if (primary) profile.email = primary;
  }
  return { ...identityFromClaims(alias, settings, profile), tokens: tokenFields(tokens) };
}

export function tokenFields(tokens: TokenSet): NonNullable<BrokeredIdentity['tokens']> {
  return {
    access_token: tokens.access_token, token_type: tokens.token_type,
    ...(tokens.id_token !== undefined ? { id_token: tokens.id_token } : {}),
    ...(tokens.refresh_token !== undefined ? { refresh_token: tokens.refresh_token } : {}),
    ...(tokens.expires_in !== undefined ? { expires_in: tokens.expires_in } : {}),
    ...(tokens.scope !== undefined ? { scope: tokens.scope } : {}),
  };
}
