// grant_type=client_credentials for clients with a service account, with Keycloak's token: the
// service-account user's roles and the client's mappers, no refresh or ID token. oidc-provider
// (or src/oidc/token-endpoint.ts, on the hot path) authenticates the client and checks the grant
// type is allowed; the token is built and signed here, as for the password and refresh grants, so
// it costs one signature and no model round trip.
import crypto from 'node:crypto';

import { errors, type KoaContextWithOIDC } from 'oidc-provider';

import type { ClientModel, RealmContext } from '../../realms/context.ts';
import { findServiceAccountUserId } from '../../store/clients.ts';
import { accessTokenLifespan } from '../client-policy.ts';
import { grantedScopes, loadSubject, mappersFor, scopeString, tokenClaims } from '../keycloak-token.ts';
import { signWithRealmKey } from '../realm-jwt.ts';
import { grantRequestOf, type GrantRequest } from './grant-request.ts';
import { oauthError } from './password.ts';

/** `resource` is accepted only to be refused, as before (Keycloak has no resource indicators). */
export const CLIENT_CREDENTIALS_PARAMETERS = ['scope', 'resource'];

/** Service-account token content, cached per client and granted scope set for the context. */
export async function serviceAccountClaims(realm: RealmContext, client: ClientModel, requested: string | undefined, ipAddress: string): Promise<{ claims: Record<string, unknown>; scope: string; sub: string }> {
  const scopes = grantedScopes(client, requested);
  const mappers = mappersFor(client, scopes);
  const base = await realm.memo(`service-account:${client.id}:${scopes.map((s) => s.id).join(',')}`, async () => {
    const user = await findServiceAccountUserId(realm.db, client.id);
    return user ? loadSubject(realm, client, user.id, scopes, mappers) : undefined;
  });
  if (!base) throw new errors.UnauthorizedClient('Client not enabled to retrieve service account');
  const claims = tokenClaims({
    ...base,
    sessionNotes: { clientHost: ipAddress, clientAddress: ipAddress, client_id: client.clientId },
    acr: '1',
  }, mappers, 'access');
  return { claims, scope: scopeString(scopes, requested), sub: base.user.id };
}

/**
 * A requested scope the client may not have, as oidc-provider's own grant checks it: a scope the
 * realm knows that is not on the client's list. Unknown scope names are ignored.
 */
function refusedScope(realm: RealmContext, client: ClientModel, requested: string | undefined): string | undefined {
  const allowed = client.metadata.scope as string | undefined;
  if (!allowed || !requested) return undefined;
  const allowList = new Set(allowed.split(' '));
  const known = new Set(['openid', 'offline_access', ...realm.scopeNames]);
  return requested.split(' ').find((s) => known.has(s) && !allowList.has(s));
}

export function clientCredentialsGrant(realm: RealmContext) {
  return async function clientCredentialsHandler(ctx: KoaContextWithOIDC): Promise<void> {
    ctx.body = await clientCredentialsTokens(realm, await grantRequestOf(realm, ctx));
  };
}

/** The token response of a client_credentials request, or an OAuth error thrown. */
export async function clientCredentialsTokens(realm: RealmContext, request: GrantRequest): Promise<Record<string, unknown>> {
  const { client, params } = request;
  if (params.resource !== undefined) throw new errors.InvalidTarget('resource indicators are not supported');
  const refused = refusedScope(realm, client, params.scope);
  if (refused) throw oauthError('invalid_scope', `Invalid scopes: ${params.scope}`);

  const { claims, scope, sub } = await serviceAccountClaims(realm, client, params.scope, request.ipAddress);
  const now = Math.floor(Date.now() / 1000);
  const lifespan = accessTokenLifespan(realm, client);
  const { aud, ...rest } = claims;
  const payload: Record<string, unknown> = {
    exp: now + lifespan, iat: now, jti: crypto.randomUUID(), iss: request.issuer,
    ...(aud !== undefined ? { aud } : {}),
    sub, typ: 'Bearer', azp: client.clientId,
    ...rest,
    scope,
    clientId: client.clientId,
    client_id: client.clientId,
  };
  return {
    access_token: await signWithRealmKey(realm, payload),
    expires_in: lifespan,
    refresh_expires_in: 0,
    token_type: 'Bearer',
    'not-before-policy': realm.realm.not_before,
    ...(scope ? { scope } : {}),
  };
}
