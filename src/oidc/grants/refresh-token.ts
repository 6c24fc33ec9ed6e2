// grant_type=refresh_token with Keycloak's semantics: the token is bound to a live user session
// and to the client session of `azp`; realms with revokeRefreshToken rotate with reuse detection
// (src/store/sessions.ts useRefreshToken), optionally with Cloakroom's grace window for repeats.
import crypto from 'node:crypto';

import { decodeJwt } from 'jose';
import { errors, type KoaContextWithOIDC } from 'oidc-provider';

import { UUID } from '../../crypto/random.ts';
import type { ClientModel, RealmContext } from '../../realms/context.ts';
import { offlineSessionLifespans, refreshReuseGraceSeconds, ssoSessionLifespans } from '../../realms/settings.ts';
import { refreshUserSession, refuseRefreshToken, useRefreshToken } from '../../store/sessions.ts';
import { signRefreshToken, verifyRefreshToken } from '../realm-jwt.ts';
import { issueUserTokens, refreshTokenPayload, userTokenSubjectOfRefs, type UserTokenRequest } from '../user-tokens.ts';
import { grantRequestOf, type GrantRequest } from './grant-request.ts';
import { oauthError, type GrantEvents } from './password.ts';

export const REFRESH_GRANT_PARAMETERS = ['refresh_token', 'scope'];

const REUSE_MESSAGES = {
  no_client_session: "Session doesn't have required client",
  stale_token: 'Stale token',
  reuse_exceeded: 'Maximum allowed refresh token reuse exceeded',
} as const;

export function refreshTokenGrant(realm: RealmContext, record: GrantEvents) {
  return async function refreshTokenGrantHandler(ctx: KoaContextWithOIDC): Promise<void> {
    ctx.body = await refreshGrantTokens(realm, record, await grantRequestOf(realm, ctx));
  };
}

/** The token response of a refresh_token grant request, or an OAuth error thrown. */
export function refreshGrantTokens(realm: RealmContext, record: GrantEvents, { client, issuer, ipAddress, params }: GrantRequest): Promise<Record<string, unknown>> {
  return refreshUserTokens(realm, record, { client, issuer, ipAddress, refreshToken: params.refresh_token, scope: params.scope });
}

export type RefreshRequest = {
  /** The authenticated client the token must belong to (its `azp`). */
  client: ClientModel;
  issuer: string;
  ipAddress: string;
  refreshToken: string | undefined;
  scope: string | undefined;
};

/**
 * The refresh itself, for the token endpoint and for CXone's legacy access-key endpoint: the
 * token response body, or an OAuth error (oidc-provider's error classes) thrown.
 */
export async function refreshUserTokens(realm: RealmContext, record: GrantEvents, request: RefreshRequest): Promise<Record<string, unknown>> {
  const { client, issuer, ipAddress } = request;
  const presented = request.refreshToken;
  if (!presented) throw new errors.InvalidRequest('Missing parameter: refresh_token');

  let userId: string | undefined;
  let sessionId: string | undefined;
  const fail = (description: string, reason: string): never => {
    record(realm, { type: 'REFRESH_TOKEN_ERROR', clientId: client.clientId, userId, sessionId, ipAddress, error: reason, details: { reason: description } });
    throw oauthError('invalid_grant', description);
  };

  const claims = await verifyRefreshToken(realm, issuer, presented);
  if (!claims || typeof claims.jti !== 'string' || typeof claims.sid !== 'string' || typeof claims.sub !== 'string') return fail('Invalid refresh token', 'invalid_token');
  if (claims.typ !== 'Refresh' && claims.typ !== 'Offline') return fail('Invalid refresh token', 'invalid_token');
  if (!UUID.test(claims.sub)) return fail('Invalid refresh token', 'invalid_token');
  userId = claims.sub;
  sessionId = claims.sid;
  if (claims.azp !== client.clientId) return fail("Invalid refresh token. Token client and authorized client don't match", 'invalid_token');
  if ((claims.iat ?? 0) < realm.realm.not_before) return fail('Stale token', 'invalid_token');

  // The requested scope may only narrow what the token holds; checked before the token is used.
  const held = String(claims.scope ?? '').split(' ').filter(Boolean);
  let scope = held.join(' ');
  if (request.scope) {
    const asked = request.scope.split(' ').filter(Boolean);
    const extra = asked.filter((s) => !held.includes(s));
    if (extra.length > 0) throw new errors.InvalidScope('Invalid scopes: ' + request.scope, extra.join(' '));
    scope = asked.join(' ');
  }

  const offline = claims.typ === 'Offline';
  const key = { realmId: realm.id, id: claims.sid, offline, tokenIssuedAt: claims.iat ?? 0 };
  const grace = refreshReuseGraceSeconds(realm.settings);
  const rotate = realm.settings.revokeRefreshToken;
  const newJti = crypto.randomUUID();
  // Session, user, roles and (without a grace window) the rotation: one statement.
  const refreshed = await refreshUserSession(realm.db, {
    key, userId: claims.sub, clientUuid: client.id,
    lifespans: (rememberMe) => offline ? offlineSessionLifespans(realm.settings) : ssoSessionLifespans(realm.settings, rememberMe),
    clientSession: !rotate ? { kind: 'touch' }
      : grace > 0 ? { kind: 'later' }
      : { kind: 'rotate', jti: claims.jti, newJti, maxReuse: realm.settings.refreshTokenMaxReuse },
  });
  if (!refreshed) return fail(offline ? 'Offline user session not found' : 'Session not active', 'invalid_token');
  const { session } = refreshed;
  if (!refreshed.subject) return fail('User disabled', 'user_disabled');
  const use = { key, clientUuid: client.id, jti: claims.jti, graceSeconds: grace };
  if (refreshed.clientSessionUsed === false) {
    const refused = rotate ? await refuseRefreshToken(realm.db, use) : { ok: false as const, reason: 'no_client_session' as const };
    if (!refused.ok) return fail(REUSE_MESSAGES[refused.reason], 'invalid_token');
  }
  const data = await userTokenSubjectOfRefs(realm, client, refreshed.subject, scope);

  const req: UserTokenRequest = { realm, issuer, client, session, scope, acr: '1', ipAddress };
  const now = Math.floor(Date.now() / 1000);
  const successorPayload = refreshTokenPayload(req, data, now, newJti);
  let successor = await signRefreshToken(realm, successorPayload);
  let successorExp = successorPayload.exp as number | undefined;
  let repeatOf: string | undefined;

  if (refreshed.clientSessionUsed === undefined) {
    // A grace window: the rotation stores the sealed successor for repeats, so it comes after signing.
    const used = await useRefreshToken(realm.db, { ...use, newJti, maxReuse: realm.settings.refreshTokenMaxReuse, successorSealed: realm.box.seal(successor) });
    if (!used.ok) return fail(REUSE_MESSAGES[used.reason], 'invalid_token');
    repeatOf = used.repeatOf;
  }
  if (repeatOf) {
    // A repeat inside the grace window: the successor handed out the first time.
    successor = realm.box.open(repeatOf);
    successorExp = decodeJwt(successor).exp;
  }

  const issued = await issueUserTokens(req, data, { token: successor, exp: successorExp }, now);
  record(realm, { type: 'REFRESH_TOKEN', clientId: client.clientId, userId, sessionId, ipAddress, details: { refresh_token_id: claims.jti, updated_refresh_token_id: repeatOf ? undefined : newJti, refresh_token_type: claims.typ } });
  return issued.body;
}
