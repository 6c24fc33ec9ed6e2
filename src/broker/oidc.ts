// Logins through upstream OpenID Connect and OAuth 2.0 providers (Keycloak's OIDCIdentityProvider,
// KeycloakOIDCIdentityProvider, OAuth2IdentityProvider and the social providers): the
// authorization URL, the callback (state, error, code exchange), ID token validation, user info,
// and logout at the provider. Endpoints come from the config or from discovery; what a provider
// needs at login time (metadata, JWKS, client authentication) is cached per realm, alias and
// config content for ten minutes. Shared OAuth 2 machinery is in oauth2.ts.
import { createHash, createPublicKey, X509Certificate, type KeyObject } from 'node:crypto';

import {
  compactVerify, createLocalJWKSet, createRemoteJWKSet, customFetch as joseCustomFetch, decodeJwt, decodeProtectedHeader, errors as joseErrors,
  type CompactVerifyGetKey, type JWK, type JWSHeaderParameters,
} from 'jose';
import * as client from 'openid-client';

import {
  authorizationParameters, bearerGet, checkCallback, clientAuthentication, exchangeCode, httpAllowed,
  identityFromClaims, jsonObject, OAUTH_PROVIDER_IDS, oauth2Identity, oauthSettings, parseProtocolState, step, tokenFields, tokenResponseInspector,
  upstreamFetch, type LoginRequest, type OAuthSettings, type TokenSet, type UpstreamFetch, type UpstreamPolicy,
} from './oauth2.ts';
import { BrokerError, type BrokeredIdentity, type BrokerUrls, type IdentityProviderModel } from './types.ts';

/** Provider ids handled here: 'oidc', 'keycloak-oidc', 'oauth2', 'github', 'google', 'microsoft', 'facebook'. */
export function isOAuthProvider(providerId: string): boolean {
  return OAUTH_PROVIDER_IDS.has(providerId);
}

// ---------------------------------------------------------------------------------------------
// Provider runtime: resolved endpoints, keys and client authentication, cached

const CACHE_TTL_MS = 10 * 60_000;
const MAX_CACHED_PROVIDERS = 512;

/** Signature algorithms an ID token may use: asymmetric only (no `none`, no HMAC with a shared secret). */
const ASYMMETRIC_ALGS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA', 'Ed25519'];

type Provider = {
  settings: OAuthSettings;
  policy: UpstreamPolicy;
  /** Server metadata handed to openid-client (discovered or from the config). */
  metadata: client.ServerMetadata;
  /** Trusted ID token issuers (config.issuer list, else the discovered issuer). */
  issuers: string[];
  /** The provider promises an `iss` parameter on its authorization responses (RFC 9207). */
  issInResponse: boolean;
  /** Algorithms accepted for ID tokens, access tokens and signed user info. */
  algorithms: string[];
  /** Verification keys (JWKS or configured public key); undefined when there is none. */
  keys: CompactVerifyGetKey | undefined;
  auth: client.ClientAuth;
  /** Some endpoint is http:// (allowed by the policy): openid-client must be told. */
  insecure: boolean;
};

const cache = new Map<string, { expires: number; provider: Promise<Provider> }>();

function cacheKey(idp: IdentityProviderModel): string {
  const content = createHash('sha256')
    .update(JSON.stringify([idp.providerId, Object.entries(idp.config).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))]))
    .digest('base64url');
  return `${idp.row.realm_id}\u0000${idp.alias}\u0000${content}`;
}

/** Forget cached discovery/JWKS for a provider (called by admin updates). */
export function forgetOAuthProvider(realmId: string, alias: string): void {
  const prefix = `${realmId}\u0000${alias}\u0000`;
  for (const key of [...cache.keys()]) if (key.startsWith(prefix)) cache.delete(key);
}

function providerFor(idp: IdentityProviderModel): Promise<Provider> {
  const key = cacheKey(idp);
  const now = Date.now();
  const hit = cache.get(key);
  if (hit && hit.expires > now) return hit.provider;
  cache.delete(key);
  const provider = resolveProvider(idp);
  cache.set(key, { expires: now + CACHE_TTL_MS, provider });
  // A failure is not remembered: the next login tries again.
  provider.catch(() => { if (cache.get(key)?.provider === provider) cache.delete(key); });
  while (cache.size > MAX_CACHED_PROVIDERS) cache.delete(cache.keys().next().value!);
  return provider;
}

/** The URLs an admin typed into this provider's config (the admin API checked them against sslRequired). */
const ADMIN_URL_KEYS = ['authorizationUrl', 'tokenUrl', 'userInfoUrl', 'jwksUrl', 'logoutUrl', 'issuer', 'metadataDescriptorUrl', 'baseUrl', 'apiUrl'];

function policyFor(idp: IdentityProviderModel, settings: OAuthSettings): UpstreamPolicy {
  const adminHttp = ADMIN_URL_KEYS.some((key) => (idp.config[key] ?? '').split(',').some((url) => url.trim().toLowerCase().startsWith('http:')));
  return { timeoutMs: settings.timeoutMs, adminHttp };
}

async function resolveProvider(idp: IdentityProviderModel): Promise<Provider> {
  const settings = oauthSettings(idp);
  const policy = policyFor(idp, settings);
  const fetcher = upstreamFetch(policy);
  let metadata: client.ServerMetadata;
  let issuers = settings.issuers;
  if (settings.discovery) {
    const discovered = await step('discovery', () => discover(settings, policy, fetcher));
    metadata = {
      ...discovered,
      // Explicit config values win over discovered ones.
      ...(settings.authorizationUrl ? { authorization_endpoint: settings.authorizationUrl } : {}),
      ...(settings.tokenUrl ? { token_endpoint: settings.tokenUrl } : {}),
      ...(settings.userInfoUrl ? { userinfo_endpoint: settings.userInfoUrl } : {}),
      ...(settings.jwksUrl ? { jwks_uri: settings.jwksUrl } : {}),
      ...(settings.logoutUrl ? { end_session_endpoint: settings.logoutUrl } : {}),
    };
    if (issuers.length === 0) issuers = [discovered.issuer];
  } else {
    metadata = {
      // openid-client wants an issuer string; it checks nothing with it here (the `iss` response
      // parameter and the ID token are checked by us, client assertions carry their own audience).
      issuer: issuers.find((i) => !i.includes('{')) ?? settings.tokenUrl!,
      authorization_endpoint: settings.authorizationUrl!,
      token_endpoint: settings.tokenUrl!,
      ...(settings.userInfoUrl ? { userinfo_endpoint: settings.userInfoUrl } : {}),
      ...(settings.jwksUrl ? { jwks_uri: settings.jwksUrl } : {}),
      ...(settings.logoutUrl ? { end_session_endpoint: settings.logoutUrl } : {}),
    };
  }

  let insecure = false;
  for (const name of ['authorization_endpoint', 'token_endpoint', 'userinfo_endpoint', 'jwks_uri', 'end_session_endpoint'] as const) {
    const value = metadata[name];
    if (value === undefined) continue;
    let url: URL;
    try {
      url = new URL(value);
    } catch {
      throw new BrokerError('identity_provider_error', `${name} is not a URL`);
    }
    if (!httpAllowed(policy, url)) throw new BrokerError('identity_provider_error', `${name} is not an https URL`);
    if (url.protocol === 'http:') insecure = true;
  }

  const supported = metadata.id_token_signing_alg_values_supported;
  const algorithms = Array.isArray(supported) ? ASYMMETRIC_ALGS.filter((alg) => supported.includes(alg)) : ASYMMETRIC_ALGS;
  const issInResponse = metadata.authorization_response_iss_parameter_supported === true;
  // We check `iss` ourselves (issuer lists, tenant issuers), before openid-client sees the response.
  metadata = { ...metadata, authorization_response_iss_parameter_supported: false };

  const tokenEndpoint = metadata.token_endpoint!;
  const auth = await clientAuthentication(settings, idp.config, tokenEndpoint);
  return { settings, policy, metadata, issuers, issInResponse, algorithms, keys: verificationKeys(idp.config, metadata, settings, fetcher), auth, insecure };
}

/** OpenID Connect discovery from the issuer (openid-client, which checks the issuer) or a metadata document URL. */
async function discover(settings: OAuthSettings, policy: UpstreamPolicy, fetcher: UpstreamFetch): Promise<client.ServerMetadata & { issuer: string }> {
  const { kind, url } = settings.discovery!;
  let target: URL;
  try {
    target = new URL(url);
  } catch {
    throw new BrokerError('identity_provider_error', 'discovery: the issuer is not a URL');
  }
  if (!httpAllowed(policy, target)) throw new BrokerError('identity_provider_error', 'discovery: the issuer is not an https URL');
  let metadata: Record<string, unknown>;
  if (kind === 'issuer') {
    const configuration = await client.discovery(target, settings.clientId, undefined, client.None(), {
      [client.customFetch]: fetcher,
      execute: target.protocol === 'http:' ? [client.allowInsecureRequests] : [],
      timeout: policy.timeoutMs / 1000,
    });
    metadata = { ...configuration.serverMetadata() };
  } else {
    const response = await fetcher(target.href, { method: 'GET', headers: { accept: 'application/json' }, redirect: 'manual' });
    if (response.status !== 200) throw new BrokerError('identity_provider_error', `discovery: unexpected HTTP status ${response.status}`);
    metadata = await jsonObject(response);
  }
  for (const name of ['issuer', 'authorization_endpoint', 'token_endpoint']) {
    if (typeof metadata[name] !== 'string' || metadata[name] === '') throw new BrokerError('identity_provider_error', `discovery: the metadata has no ${name}`);
  }
  for (const name of ['userinfo_endpoint', 'jwks_uri', 'end_session_endpoint']) {
    if (metadata[name] !== undefined && typeof metadata[name] !== 'string') delete metadata[name];
  }
  return metadata as client.ServerMetadata & { issuer: string };
}

/**
 * Keys for ID tokens: the JWKS (config jwksUrl or the discovered jwks_uri, unless useJwksUrl is
 * 'false'), else the configured publicKeySignatureVerifier (PEM key or certificate, bare base64,
 * or a JWK/JWKS), optionally pinned to publicKeySignatureVerifierKeyId.
 */
function verificationKeys(config: Record<string, string>, metadata: client.ServerMetadata, settings: OAuthSettings, fetcher: UpstreamFetch): CompactVerifyGetKey | undefined {
  if (config.useJwksUrl !== 'false' && metadata.jwks_uri) {
    return createRemoteJWKSet(new URL(metadata.jwks_uri), {
      timeoutDuration: settings.timeoutMs,
      [joseCustomFetch]: fetcher,
    }) as CompactVerifyGetKey;
  }
  const configured = config.publicKeySignatureVerifier?.trim();
  if (!configured) return undefined;
  const keyId = config.publicKeySignatureVerifierKeyId?.trim() || undefined;
  let resolve: CompactVerifyGetKey;
  try {
    if (configured.startsWith('{')) {
      const json = JSON.parse(configured) as { keys?: unknown };
      if (Array.isArray(json.keys)) {
        resolve = createLocalJWKSet(json as { keys: JWK[] }) as CompactVerifyGetKey;
      } else {
        const key = createPublicKey({ key: json as never, format: 'jwk' });
        resolve = async () => key;
      }
    } else {
      const key = publicKeyFromPem(configured);
      resolve = async () => key;
    }
  } catch {
    throw new BrokerError('identity_provider_error', 'publicKeySignatureVerifier is not a usable public key');
  }
  if (!keyId) return resolve;
  return async (header, token) => {
    if (header.kid !== keyId) throw new joseErrors.JWKSNoMatchingKey();
    return resolve(header, token);
  };
}

function publicKeyFromPem(value: string): KeyObject {
  if (value.includes('-----BEGIN CERTIFICATE')) return new X509Certificate(value).publicKey;
  if (value.includes('-----BEGIN')) return createPublicKey(value);
  // Keycloak keeps the bare base64 body: a SubjectPublicKeyInfo, or a certificate.
  const body = value.replace(/\s+/g, '').replace(/(.{64})/g, '$1\n');
  try {
    return createPublicKey(`-----BEGIN PUBLIC KEY-----\n${body}\n-----END PUBLIC KEY-----\n`);
  } catch {
    return new X509Certificate(`-----BEGIN CERTIFICATE-----\n${body}\n-----END CERTIFICATE-----\n`).publicKey;
  }
}

/** A Configuration for one login: openid-client's view of the provider, with our fetch. */
function configurationFor(provider: Provider, fetcher: UpstreamFetch): client.Configuration {
  const configuration = new client.Configuration(provider.metadata, provider.settings.clientId, undefined, provider.auth);
  configuration[client.customFetch] = fetcher;
  configuration.timeout = provider.policy.timeoutMs / 1000;
  if (provider.insecure) client.allowInsecureRequests(configuration);
  return configuration;
}

// ---------------------------------------------------------------------------------------------
// Login

/** Builds the authorization URL. protocolState is stored by the caller (sealed) and passed back to finishOAuthLogin. */
export async function startOAuthLogin(idp: IdentityProviderModel, urls: BrokerUrls, request: LoginRequest): Promise<{ url: string; protocolState: Record<string, string> }> {
  const provider = await providerFor(idp);
  const configuration = configurationFor(provider, upstreamFetch(provider.policy));
  const { params, protocolState } = await authorizationParameters(provider.settings, idp.config, urls, request);
  const url = client.buildAuthorizationUrl(configuration, params);
  return { url: url.href, protocolState: { ...protocolState } as Record<string, string> };
}

/**
 * Validates the callback (callbackUrl = the full URL the browser hit at urls.endpoint, with
 * code/state or error), exchanges the code, validates the ID token, fetches userinfo if
 * configured, returns the identity. Throws BrokerError on anything wrong (cancelled=true for
 * error=access_denied).
 */
export async function finishOAuthLogin(idp: IdentityProviderModel, urls: BrokerUrls, callbackUrl: URL, protocolState: Record<string, string>): Promise<BrokeredIdentity> {
  const state = parseProtocolState(protocolState);
  // State and upstream errors first: they need no network and no provider metadata.
  let callback = checkCallback(urls, callbackUrl, state);
  const provider = await providerFor(idp);
  const { settings } = provider;
  if (settings.openid && !state.nonce) throw new BrokerError('identity_provider_error', 'login state is incomplete');
  callback = checkIssuerParameter(provider, callback);

  const taken: { value?: string } = {};
  const fetcher = upstreamFetch(provider.policy, tokenResponseInspector(provider.metadata.token_endpoint!, taken));
  const tokens = await exchangeCode(configurationFor(provider, fetcher), callback, state, taken);
  if (!settings.openid) return oauth2Identity(idp.alias, settings, fetcher, tokens);

  if (!tokens.id_token) throw new BrokerError('identity_provider_error', 'token endpoint: no ID token in the answer');
  const idClaims = await step('ID token', () => validateIdToken(provider, idp.config, tokens.id_token!, state.nonce!));
  const userInfo = await step('user info endpoint', () => fetchUserInfo(provider, idp.config, fetcher, tokens, idClaims.sub as string));
  const claims = { ...idClaims, ...userInfo };
  const identity: BrokeredIdentity = { ...identityFromClaims(idp.alias, settings, claims), tokens: tokenFields(tokens) };
  if (idp.providerId === 'keycloak-oidc' || idp.config.isAccessTokenJWT === 'true') {
    const accessTokenClaims = await step('access token', () => verifiedAccessTokenClaims(provider, idp.config, tokens.access_token));
    if (accessTokenClaims) identity.accessTokenClaims = accessTokenClaims;
  }
  return identity;
}

/** RFC 9207: an `iss` on the authorization response must name the provider; it is removed before openid-client sees it. */
function checkIssuerParameter(provider: Provider, callback: URL): URL {
  const values = callback.searchParams.getAll('iss');
  if (values.length === 0) {
    if (provider.issInResponse) throw new BrokerError('identity_provider_error', 'the authorization response has no iss');
    return callback;
  }
  const iss = values[0]!;
  const known = provider.issuers.length > 0;
  if (values.length > 1 || (known && !provider.issuers.some((trusted) => issuerPattern(trusted).test(iss)))) {
    throw new BrokerError('identity_provider_error', 'the authorization response names another issuer');
  }
  const cleaned = new URL(callback);
  cleaned.searchParams.delete('iss');
  return cleaned;
}

function issuerPattern(trusted: string): RegExp {
  const escaped = trusted.replace(/[.*+?^${}()|[\]\\]/g, '\\$&').replace('\\{tenantid\\}', '[0-9a-fA-F-]{36}');
  return new RegExp(`^${escaped}$`);
}

// ---------------------------------------------------------------------------------------------
// Tokens

function clockTolerance(config: Record<string, string>): number {
  const skew = Number(config.allowedClockSkew);
  // 0 or unset: openid-client's default tolerance.
  return Number.isFinite(skew) && skew > 0 ? Math.min(skew, 3600) : 30;
}

/** The payload of a signed JWT, its signature checked unless the config turns that off (validateSignature=false). */
async function verifiedPayload(provider: Provider, config: Record<string, string>, jwt: string, what: string): Promise<Record<string, unknown>> {
  const parts = jwt.split('.');
  if (parts.length === 5) throw new BrokerError('identity_provider_error', `${what}: encrypted tokens are not supported`);
  if (parts.length !== 3) throw new BrokerError('identity_provider_error', `${what}: not a JWT`);
  let header: JWSHeaderParameters;
  let unverified: Record<string, unknown>;
  try {
    header = decodeProtectedHeader(jwt);
    unverified = decodeJwt(jwt) as Record<string, unknown>;
  } catch {
    throw new BrokerError('identity_provider_error', `${what}: malformed JWT`);
  }
  if (typeof header.alg !== 'string' || header.alg.toLowerCase() === 'none') throw new BrokerError('identity_provider_error', `${what}: signature algorithm not allowed`);
  // Keycloak's validateSignature=false: the token came straight from the token endpoint over TLS.
  if (config.validateSignature === 'false') return unverified;
  if (!ASYMMETRIC_ALGS.includes(header.alg)) throw new BrokerError('identity_provider_error', `${what}: signature algorithm not allowed`);
  if (!provider.keys) throw new BrokerError('identity_provider_error', `${what}: no key to check the signature (jwksUrl or publicKeySignatureVerifier)`);
  const { payload } = await compactVerify(jwt, provider.keys, { algorithms: provider.algorithms });
  const claims = JSON.parse(new TextDecoder().decode(payload)) as unknown;
  if (typeof claims !== 'object' || claims === null || Array.isArray(claims)) throw new BrokerError('identity_provider_error', `${what}: payload is not a JSON object`);
  return claims as Record<string, unknown>;
}

/** exp/nbf with the allowed clock skew (Keycloak's isActive), and the issuer when one is trusted. */
function checkTimesAndIssuer(provider: Provider, config: Record<string, string>, claims: Record<string, unknown>, what: string, options: { expOptional?: boolean } = {}): void {
  const now = Math.floor(Date.now() / 1000);
  const tolerance = clockTolerance(config);
  if (claims.exp !== undefined || !options.expOptional) {
    if (typeof claims.exp !== 'number') throw new BrokerError('identity_provider_error', `${what}: no exp`);
    if (now > claims.exp + tolerance) throw new BrokerError('identity_provider_error', `${what}: expired`);
  }
  if (claims.nbf !== undefined && (typeof claims.nbf !== 'number' || now + tolerance < claims.nbf)) throw new BrokerError('identity_provider_error', `${what}: not yet valid`);
  if (provider.issuers.length > 0) {
    const iss = claims.iss;
    const tid = typeof claims.tid === 'string' ? claims.tid : undefined;
    const ok = typeof iss === 'string' && provider.issuers.some((trusted) => trusted.includes('{tenantid}') ? tid !== undefined && iss === trusted.replace('{tenantid}', tid) : iss === trusted);
    if (!ok) throw new BrokerError('identity_provider_error', `${what}: wrong issuer`);
  }
  if (provider.settings.tenantId !== undefined && claims.tid !== provider.settings.tenantId) throw new BrokerError('identity_provider_error', `${what}: wrong tenant`);
}

/** Keycloak's OIDCIdentityProvider.validateToken plus the nonce: signature, times, issuer, audience, authorized party. */
async function validateIdToken(provider: Provider, config: Record<string, string>, idToken: string, nonce: string): Promise<Record<string, unknown>> {
  const claims = await verifiedPayload(provider, config, idToken, 'ID token');
  checkTimesAndIssuer(provider, config, claims, 'ID token');
  const { clientId } = provider.settings;
  const aud = claims.aud;
  const audiences = typeof aud === 'string' ? [aud] : Array.isArray(aud) && aud.every((a) => typeof a === 'string') ? aud as string[] : [];
  if (!audiences.includes(clientId)) throw new BrokerError('identity_provider_error', 'ID token: wrong audience');
  if (claims.azp !== undefined ? claims.azp !== clientId : audiences.length > 1) throw new BrokerError('identity_provider_error', 'ID token: issued for another client');
  if (claims.nonce !== nonce) throw new BrokerError('identity_provider_error', 'ID token: nonce mismatch');
  if (typeof claims.sub !== 'string' || claims.sub === '') throw new BrokerError('identity_provider_error', 'ID token: no sub');
  const hostedDomains = provider.settings.hostedDomains;
  if (hostedDomains && !hostedDomains.includes('*') && !(typeof claims.hd === 'string' && hostedDomains.includes(claims.hd))) {
    throw new BrokerError('identity_provider_error', 'ID token: hosted domain not allowed');
  }
  return claims;
}

/** The user info document (JSON, or a JWT whose signature is checked like the ID token's); its sub must be the ID token's. */
async function fetchUserInfo(provider: Provider, config: Record<string, string>, fetcher: UpstreamFetch, tokens: TokenSet, sub: string): Promise<Record<string, unknown>> {
  const endpoint = provider.metadata.userinfo_endpoint;
  if (config.disableUserInfo === 'true' || !endpoint) return {};
  const response = await bearerGet(fetcher, endpoint, tokens.access_token);
  const contentType = response.headers.get('content-type')?.split(';')[0]?.trim().toLowerCase();
  const info = contentType === 'application/jwt'
    ? await verifiedPayload(provider, config, (await response.text()).trim(), 'signed user info')
    : await jsonObject(response);
  if (info.sub !== sub) throw new BrokerError('identity_provider_error', 'user info endpoint: subject differs from the ID token');
  return info;
}

/** keycloak-oidc (or isAccessTokenJWT): the upstream access token's claims, when it is a JWT, verified like Keycloak's validateToken(token, ignoreAudience). */
async function verifiedAccessTokenClaims(provider: Provider, config: Record<string, string>, accessToken: string): Promise<Record<string, unknown> | undefined> {
  if (accessToken.split('.').length !== 3) return undefined;
  let header: JWSHeaderParameters;
  try {
    header = decodeProtectedHeader(accessToken);
  } catch {
    return undefined;
  }
  if (header.alg === undefined) return undefined;
  const claims = await verifiedPayload(provider, config, accessToken, 'access token');
  checkTimesAndIssuer(provider, config, claims, 'access token');
  return claims;
}

// ---------------------------------------------------------------------------------------------
// Logout at the provider

async function logoutEndpoint(idp: IdentityProviderModel): Promise<string | undefined> {
  if (!isOAuthProvider(idp.providerId)) return undefined;
  const configured = idp.config.logoutUrl?.trim();
  if (configured) return configured;
  let settings: OAuthSettings;
  try {
    settings = oauthSettings(idp);
  } catch {
    return undefined;
  }
  if (!settings.openid || !settings.discovery) return undefined;
  try {
    return (await providerFor(idp)).metadata.end_session_endpoint;
  } catch {
    return undefined;
  }
}

/**
 * Front-channel logout at the upstream provider: the URL to send the browser to
 * (end_session_endpoint / config.logoutUrl with id_token_hint when sendIdTokenOnLogout != 'false',
 * client_id when sendClientIdOnLogout, post_logout_redirect_uri, state), or undefined if the
 * provider has none.
 */
export async function upstreamLogoutUrl(idp: IdentityProviderModel, request: { idToken?: string; postLogoutRedirectUri: string; state?: string }): Promise<string | undefined> {
  const endpoint = await logoutEndpoint(idp);
  if (!endpoint) return undefined;
  let url: URL;
  try {
    url = new URL(endpoint);
  } catch {
    return undefined;
  }
  if (request.state) url.searchParams.set('state', request.state);
  if (idp.config.sendIdTokenOnLogout !== 'false' && request.idToken) url.searchParams.set('id_token_hint', request.idToken);
  if (idp.config.sendClientIdOnLogout === 'true' && idp.config.clientId) url.searchParams.set('client_id', idp.config.clientId);
  url.searchParams.set('post_logout_redirect_uri', request.postLogoutRedirectUri);
  return url.href;
}

/**
 * Back-channel logout at the upstream provider when config.backchannelSupported === 'true': a
 * server-side GET of the logout URL with id_token_hint (Keycloak's
 * OIDCIdentityProvider.backchannelLogout behaviour). Never throws; returns whether the provider
 * answered 2xx.
 */
export async function upstreamBackchannelLogout(idp: IdentityProviderModel, request: { idToken?: string }): Promise<boolean> {
  try {
    if (idp.config.backchannelSupported !== 'true' || !request.idToken) return false;
    const endpoint = await logoutEndpoint(idp);
    if (!endpoint) return false;
    const url = new URL(endpoint);
    url.searchParams.set('id_token_hint', request.idToken);
    const settings = oauthSettings(idp);
    const response = await upstreamFetch(policyFor(idp, settings))(url.href, { method: 'GET', headers: { accept: '*/*' }, redirect: 'manual' });
    return response.status >= 200 && response.status < 300;
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------------------------------------
// Back-channel logout from the provider (OpenID Connect Back-Channel Logout 1.0)

const BACKCHANNEL_LOGOUT_EVENT = 'http://schemas.openid.net/event/backchannel-logout';

/** Whether this provider may have issued a token naming `iss` (its trusted or discovered issuers). */
export async function providerIssues(idp: IdentityProviderModel, iss: string): Promise<boolean> {
  if (!isOAuthProvider(idp.providerId)) return false;
  try {
    const provider = await providerFor(idp);
    return provider.settings.openid && provider.issuers.some((trusted) => issuerPattern(trusted).test(iss));
  } catch {
    return false;
  }
}

/**
 * A logout token of this provider, as Keycloak's LogoutTokenValidation checks it: signature with
 * the provider's keys, issuer, audience (our client id), iat, exp when present, the back-channel
 * logout event, a sid or a sub, and no nonce. Returns the sid and sub; throws BrokerError.
 */
export async function validateLogoutToken(idp: IdentityProviderModel, jwt: string): Promise<{ sid?: string; sub?: string }> {
  const provider = await step('discovery', () => providerFor(idp));
  // Always signed: unlike an ID token fetched from the token endpoint, anyone can post one here
  // (validateSignature=false does not apply).
  const claims = await step('logout token', () => verifiedPayload(provider, { ...idp.config, validateSignature: 'true' }, jwt, 'logout token'));
  checkTimesAndIssuer(provider, idp.config, claims, 'logout token', { expOptional: true });
  const aud = claims.aud;
  const audiences = typeof aud === 'string' ? [aud] : Array.isArray(aud) ? aud.filter((a): a is string => typeof a === 'string') : [];
  if (!audiences.includes(provider.settings.clientId)) throw new BrokerError('identity_provider_error', 'logout token: wrong audience');
  if (typeof claims.iat !== 'number') throw new BrokerError('identity_provider_error', 'logout token: no iat');
  const events = claims.events as Record<string, unknown> | undefined;
  const event = typeof events === 'object' && events !== null ? events[BACKCHANNEL_LOGOUT_EVENT] : undefined;
  if (typeof event !== 'object' || event === null || Array.isArray(event)) throw new BrokerError('identity_provider_error', 'logout token: no back-channel logout event');
  if (claims.nonce !== undefined) throw new BrokerError('identity_provider_error', 'logout token: must not have a nonce');
  const sid = typeof claims.sid === 'string' && claims.sid !== '' ? claims.sid : undefined;
  const sub = typeof claims.sub === 'string' && claims.sub !== '' ? claims.sub : undefined;
  if (!sid && !sub) throw new BrokerError('identity_provider_error', 'logout token: neither sid nor sub');
  return { ...(sid ? { sid } : {}), ...(sub ? { sub } : {}) };
}
