// Keycloak's stored-token endpoint: GET {issuer}/broker/{alias}/token with a user's access token
// returns the token response the provider gave at that user's last login, for providers with
// storeToken on. The caller's token must carry the `broker` client's `read-token` role.
import type { ProtocolResult } from '../oidc/introspection.ts';
import { sessionBehindTokenAlive, verifyRealmToken } from '../oidc/introspection.ts';
import type { RealmContext } from '../realms/context.ts';
import { enabledBrokerProvider } from './identity-providers.ts';

const error = (status: number, code: string, description: string): ProtocolResult => ({ status, body: { error: code, error_description: description } });

export async function retrieveStoredToken(realm: RealmContext, issuer: string, alias: string, token: string | undefined): Promise<ProtocolResult & { userId?: string; clientId?: string }> {
  const claims = token ? await verifyRealmToken(realm, issuer, token) : undefined;
  if (!claims || claims.typ !== 'Bearer' || typeof claims.sub !== 'string' || !await sessionBehindTokenAlive(realm, claims)) {
    return { ...error(401, 'invalid_token', 'Invalid token.'), headers: { 'WWW-Authenticate': 'Bearer error="invalid_token"' } };
  }
  const clientId = typeof claims.azp === 'string' ? claims.azp : undefined;
  const brokerRoles = ((claims.resource_access as Record<string, { roles?: unknown }> | undefined)?.broker?.roles);
  if (!Array.isArray(brokerRoles) || !brokerRoles.includes('read-token')) {
    return { ...error(403, 'access_denied', `Client [${clientId ?? ''}] not authorized to retrieve tokens from identity provider [${alias}].`), userId: claims.sub, ...(clientId ? { clientId } : {}) };
  }
  const provider = await enabledBrokerProvider(realm, alias);
  if (!provider || !provider.row.store_token) {
    return { ...error(400, 'invalid_request', `Identity Provider [${alias}] does not support this operation.`), userId: claims.sub, ...(clientId ? { clientId } : {}) };
  }
  const link = await realm.db.selectFrom('federated_identities').select('token_sealed')
    .where('realm_id', '=', realm.id).where('user_id', '=', claims.sub).where('identity_provider', '=', alias).executeTakeFirst();
  if (!link?.token_sealed) {
    return { ...error(400, 'invalid_request', `User [${claims.sub}] is not associated with identity provider [${alias}].`), userId: claims.sub, ...(clientId ? { clientId } : {}) };
  }
  return { status: 200, body: JSON.parse(realm.box.open(link.token_sealed)) as Record<string, unknown>, userId: claims.sub, ...(clientId ? { clientId } : {}) };
}
