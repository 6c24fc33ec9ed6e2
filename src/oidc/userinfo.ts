// The userinfo endpoint, answered by Cloakroom: oidc-provider only serves tokens issued without a
// resource server, and ours are all issued for the realm resource. Keycloak's rules: a Bearer
// access token of this realm, its user session alive, the user enabled; the claims are those of the
// client's mappers with userinfo.token.claim.
import { ACCESS_KEY_PATTERN } from '../access-keys/access-keys.ts';
import { accessKeysOf } from '../access-keys/key-lookup.ts';
import type { ClientModel, RealmContext } from '../realms/context.ts';
import { findLiveUserSession } from '../store/sessions.ts';
import { verifyRealmToken, type ProtocolResult } from './introspection.ts';
import { tokenClaims } from './keycloak-token.ts';
import { loadUserTokenSubject } from './user-tokens.ts';

const invalidToken = (description: string): ProtocolResult => ({
  status: 401,
  body: { error: 'invalid_token', error_description: description },
  headers: { 'www-authenticate': `Bearer realm="cloakroom", error="invalid_token", error_description="${description}"` },
});

/** The bearer token from the Authorization header or (POST) the access_token form field. */
export function bearerToken(authorization: string | undefined, form: Record<string, unknown>): string | undefined {
  if (authorization) {
    const [scheme, value] = authorization.split(' ');
    return scheme?.toLowerCase() === 'bearer' && value ? value : undefined;
  }
  return typeof form.access_token === 'string' && form.access_token !== '' ? form.access_token : undefined;
}

export async function userinfo(realm: RealmContext, issuer: string, token: string | undefined): Promise<ProtocolResult> {
  if (!token) return { status: 401, body: { error: 'invalid_request', error_description: 'Token not provided' }, headers: { 'www-authenticate': 'Bearer realm="cloakroom"' } };
  const claims = await verifyRealmToken(realm, issuer, token);
  if (!claims || claims.typ !== 'Bearer' || typeof claims.azp !== 'string' || typeof claims.sub !== 'string') return invalidToken('Token verification failed');
  const client = await realm.client(claims.azp) ?? await accessKeyClient(realm, claims.azp, claims.sub);
  if (!client) return invalidToken('Client not found');
  if (typeof claims.sid === 'string') {
    const key = { realmId: realm.id, id: claims.sid, tokenIssuedAt: claims.iat ?? 0 };
    const online = await findLiveUserSession(realm.db, { ...key, offline: false });
    const session = online ?? await findLiveUserSession(realm.db, { ...key, offline: true });
    if (!session || session.user_id !== claims.sub) return invalidToken('User session not found or doesn\'t have client attached on it');
  }
  const data = await loadUserTokenSubject(realm, client, claims.sub, String(claims.scope ?? ''));
  if (!data) return invalidToken('User not found or disabled');
  const { aud: _aud, ...mapped } = tokenClaims({
    ...data.subject,
    sessionNotes: { AUTH_TIME: String(claims.auth_time ?? '') },
    acr: String(claims.acr ?? '1'),
  }, data.mappers, 'userinfo');
  return { status: 200, body: { sub: claims.sub, ...mapped }, headers: { 'cache-control': 'no-store' } };
}

/**
 * Tokens of an access key exchanged as client credentials name the key as `azp`: the key must
 * still be usable by the token's user, and the realm's default scopes stand in for the client.
 */
async function accessKeyClient(realm: RealmContext, keyId: string, userId: string): Promise<ClientModel | undefined> {
  if (!ACCESS_KEY_PATTERN.test(keyId)) return undefined;
  const keys = accessKeysOf(realm);
  const key = await keys.key(keyId);
  const usable = key && key.userId === userId && key.enabled && key.userEnabled && (!key.expiresAt || key.expiresAt.getTime() > Date.now());
  return usable ? (await keys.profile()).client : undefined;
}
