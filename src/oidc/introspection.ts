// Token introspection as Keycloak answers it. oidc-provider refuses to introspect its own JWT
// access tokens, so Cloakroom verifies them itself: signature against the realm's keys, issuer,
// expiry, the realm's not-before, and (for tokens of a user session) that the session still lives.
import type { JWTPayload } from 'jose';

import { safeEqual } from '../crypto/random.ts';
import { readBasicAuthorization } from '../http/basic-auth.ts';
import type { ClientModel, RealmContext } from '../realms/context.ts';
import { findClientSession, findLiveUserSession } from '../store/sessions.ts';
import { verifyRealmSignedToken, verifyRefreshToken } from './realm-jwt.ts';

export type ProtocolResult = { status: number; body: Record<string, unknown>; headers?: Record<string, string> };

const oauthError = (status: number, error: string, description: string, headers?: Record<string, string>): ProtocolResult => ({
  status, body: { error, error_description: description }, ...(headers ? { headers } : {}),
});

const INACTIVE: ProtocolResult = { status: 200, body: { active: false } };

export type ClientCredentials = { clientId: string; clientSecret: string };

/** Client credentials from HTTP Basic (form-url-encoded, RFC 6749 2.3.1) or the form body. */
export function readClientCredentials(authorization: string | undefined, form: Record<string, unknown>): ClientCredentials | ProtocolResult | undefined {
  const bodyId = typeof form.client_id === 'string' ? form.client_id : undefined;
  const bodySecret = typeof form.client_secret === 'string' ? form.client_secret : undefined;
  if (authorization !== undefined) {
    const basic = readBasicAuthorization(authorization);
    if ('error' in basic) return oauthError(400, 'invalid_request', basic.error);
    if (bodySecret !== undefined) return oauthError(400, 'invalid_request', 'client authentication must only be provided using one mechanism');
    return { clientId: basic.clientId, clientSecret: basic.secret };
  }
  if (bodyId !== undefined && bodySecret !== undefined) return { clientId: bodyId, clientSecret: bodySecret };
  return undefined;
}

const UNAUTHORIZED = oauthError(401, 'invalid_client', 'Authentication failed.', { 'www-authenticate': 'Basic realm="cloakroom"' });

/** A confidential client of this realm whose secret matches; anything else is invalid_client. */
export async function authenticateClient(realm: RealmContext, credentials: ClientCredentials | undefined): Promise<ClientModel | ProtocolResult> {
  if (!credentials) return UNAUTHORIZED;
  const client = await realm.client(credentials.clientId);
  if (!client) return UNAUTHORIZED;
  if (client.row.public_client) return oauthError(403, 'invalid_request', 'Client not allowed.');
  if (!client.secret || !safeEqual(client.secret, credentials.clientSecret)) return UNAUTHORIZED;
  return client;
}

/** The token's claims when it is an unexpired token of this realm issued after its not-before. */
export async function verifyRealmToken(realm: RealmContext, issuer: string, token: string): Promise<JWTPayload | undefined> {
  const payload = await verifyRealmSignedToken(realm, issuer, token);
  if (!payload || typeof payload.iat !== 'number' || payload.iat < realm.realm.not_before) return undefined;
  return payload;
}

/**
 * Keycloak reports a token of an ended session as inactive. Offline tokens live on the offline
 * session; a refresh token also needs its client session, and with rotation on only the current
 * or newest token is active.
 */
export async function sessionBehindTokenAlive(realm: RealmContext, claims: JWTPayload): Promise<boolean> {
  if (typeof claims.sid !== 'string') return claims.typ === 'Bearer'; // service-account tokens have no session
  const offline = claims.typ === 'Offline';
  const key = { realmId: realm.id, id: claims.sid, offline, tokenIssuedAt: typeof claims.iat === 'number' ? claims.iat : 0 };
  let session = await findLiveUserSession(realm.db, key);
  if (!session && (claims.typ === 'Bearer' || claims.typ === 'ID')) session = await findLiveUserSession(realm.db, { ...key, offline: true });
  if (!session || session.user_id !== claims.sub) return false;
  if (claims.typ !== 'Refresh' && claims.typ !== 'Offline') return true;
  const client = typeof claims.azp === 'string' ? await realm.client(claims.azp) : undefined;
  const clientSession = client ? await findClientSession(realm.db, key, client.id) : undefined;
  if (!clientSession) return false;
  if (!realm.settings.revokeRefreshToken) return true;
  const inUse = clientSession.current_refresh_jti === claims.jti && clientSession.refresh_use_count <= realm.settings.refreshTokenMaxReuse;
  return inUse || clientSession.latest_refresh_jti === claims.jti;
}

export async function introspect(realm: RealmContext, issuer: string, authorization: string | undefined, form: Record<string, unknown>): Promise<ProtocolResult> {
  const credentials = readClientCredentials(authorization, form);
  if (credentials && 'status' in credentials) return credentials;
  const client = await authenticateClient(realm, credentials);
  if ('status' in client) return client;
  const token = form.token;
  if (typeof token !== 'string' || token === '') return oauthError(400, 'invalid_request', 'Token not provided.');
  const claims = await verifyRealmToken(realm, issuer, token) ?? await verifyRefreshToken(realm, issuer, token);
  if (!claims || !['Bearer', 'ID', 'Refresh', 'Offline'].includes(String(claims.typ))) return INACTIVE;
  if (!(await sessionBehindTokenAlive(realm, claims))) return INACTIVE;
  return {
    status: 200,
    body: {
      ...claims,
      client_id: claims.azp,
      ...(typeof claims.preferred_username === 'string' ? { username: claims.preferred_username } : {}),
      token_type: claims.typ,
      active: true,
    },
  };
}
