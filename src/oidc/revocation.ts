// RFC 7009 revocation, answered by Cloakroom for the tokens it issues itself. Revoking a refresh
// token ends its client session (Keycloak: online or offline), so every refresh token of that
// client in that session dies. JWT access tokens cannot be recalled (they expire after the
// realm's short access-token lifespan), and are refused with unsupported_token_type rather than
// a 200 that would claim otherwise.
import type { RealmContext } from '../realms/context.ts';
import { deleteClientSession } from '../store/sessions.ts';
import { authenticateClient, readClientCredentials, verifyRealmToken, type ProtocolResult } from './introspection.ts';
import { verifyRefreshToken } from './realm-jwt.ts';

const error = (status: number, code: string, description: string): ProtocolResult => ({ status, body: { error: code, error_description: description } });

export async function revoke(realm: RealmContext, issuer: string, authorization: string | undefined, form: Record<string, unknown>): Promise<ProtocolResult & { revoked?: { clientId: string; userId: string; sessionId: string } }> {
  const credentials = readClientCredentials(authorization, form);
  if (credentials && 'status' in credentials) return credentials;
  let clientId: string;
  let clientUuid: string;
  if (credentials) {
    const client = await authenticateClient(realm, credentials);
    if ('status' in client) return client;
    clientId = client.clientId;
    clientUuid = client.id;
  } else {
    // Public clients identify themselves with client_id alone.
    const client = typeof form.client_id === 'string' ? await realm.client(form.client_id) : undefined;
    if (!client || !client.row.public_client) return error(401, 'invalid_client', 'Authentication failed.');
    clientId = client.clientId;
    clientUuid = client.id;
  }
  const token = form.token;
  if (typeof token !== 'string' || token === '') return error(400, 'invalid_request', 'Token not provided');

  const refresh = await verifyRefreshToken(realm, issuer, token);
  if (refresh && typeof refresh.sid === 'string' && (refresh.typ === 'Refresh' || refresh.typ === 'Offline')) {
    if (refresh.azp !== clientId) return error(400, 'invalid_request', 'Unmatching clients');
    await deleteClientSession(realm.db, { realmId: realm.id, id: refresh.sid, offline: refresh.typ === 'Offline' }, clientUuid);
    return { status: 200, body: {}, revoked: { clientId, userId: String(refresh.sub), sessionId: refresh.sid } };
  }
  if (await verifyRealmToken(realm, issuer, token)) {
    return error(400, 'unsupported_token_type', 'Access tokens cannot be revoked; revoke the refresh token or log the session out');
  }
  // Unknown or foreign tokens: RFC 7009 2.2 answers 200.
  return { status: 200, body: {} };
}
