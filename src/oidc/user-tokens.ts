// Tokens of a user session as Keycloak issues them: access token (typ Bearer), ID token (typ ID)
// and refresh token (typ Refresh or Offline), with the claims of the client's protocol mappers.
// Used by the authorization-code post-processing, the password grant and the refresh grant.
import crypto from 'node:crypto';

import type { ClientModel, ClientScopeModel, RealmContext } from '../realms/context.ts';
import { offlineSessionLifespans, ssoSessionLifespans, SESSION_IDLE_GRACE_SECONDS } from '../realms/settings.ts';
import type { EffectiveRole, UserRoleRefs } from '../store/roles.ts';
import type { User, UserSession } from '../store/schema.ts';
import { accessTokenLifespan } from './client-policy.ts';
import { grantedScopes, loadSubject, mappersFor, scopeString, subjectOf, tokenClaims, type SubjectBase } from './keycloak-token.ts';
import type { MapperModel } from './protocol-mappers.ts';
import { halfHash, signRefreshToken, signWithRealmKey } from './realm-jwt.ts';

export type UserTokenRequest = {
  realm: RealmContext;
  issuer: string;
  client: ClientModel;
  session: UserSession;
  /** Scope the client holds: the granted scope names (openid first when asked), space separated. */
  scope: string;
  acr: string;
  nonce?: string | undefined;
  ipAddress: string;
};

export type TokenSubjectData = {
  scopes: ClientScopeModel[];
  mappers: MapperModel[];
  subject: SubjectBase;
};

/** Scopes, mappers and the loaded subject; undefined when the user is gone or disabled. */
export async function loadUserTokenSubject(realm: RealmContext, client: ClientModel, userId: string, scope: string): Promise<TokenSubjectData | undefined> {
  const scopes = grantedScopes(client, scope);
  const mappers = mappersFor(client, scopes);
  const subject = await loadSubject(realm, client, userId, scopes, mappers);
  return subject ? { scopes, mappers, subject } : undefined;
}

/** As loadUserTokenSubject, for an enabled user whose effective roles were loaded with the session. */
export async function userTokenSubjectOf(realm: RealmContext, client: ClientModel, loaded: { user: User; roles: readonly EffectiveRole[] }, scope: string): Promise<TokenSubjectData> {
  const scopes = grantedScopes(client, scope);
  const mappers = mappersFor(client, scopes);
  return { scopes, mappers, subject: await subjectOf(realm, client, loaded.user, loaded.roles, scopes, mappers) };
}

/** As userTokenSubjectOf, for a user read with their role and group ids (expanded through the role graph). */
export async function userTokenSubjectOfRefs(realm: RealmContext, client: ClientModel, loaded: { user: User; roleRefs: UserRoleRefs }, scope: string): Promise<TokenSubjectData> {
  return userTokenSubjectOf(realm, client, { user: loaded.user, roles: await realm.effectiveRolesOf(loaded.roleRefs) }, scope);
}

/** Every granted scope name (the refresh token's `scope`, which the next refresh keeps). */
export function grantedScopeNames(scopes: ClientScopeModel[], requested: string): string {
  const openid = requested.split(' ').includes('openid');
  return [...(openid ? ['openid'] : []), ...scopes.map((s) => s.name)].join(' ');
}

function sessionNotes(req: UserTokenRequest): Record<string, string> {
  return { AUTH_TIME: String(req.session.auth_time), clientId: req.client.clientId };
}

const newJti = (): string => crypto.randomUUID();

/** Seconds since the epoch when the session hits its max lifespan (0: no limit). */
function sessionMaxExpiry(req: UserTokenRequest): number {
  const { settings } = req.realm;
  const lifespans = req.session.offline ? offlineSessionLifespans(settings) : ssoSessionLifespans(settings, req.session.remember_me);
  return lifespans.max > 0 ? Math.floor(req.session.started_at.getTime() / 1000) + lifespans.max : 0;
}

/** Keycloak's access token for a user session; `exp` capped by the session's max lifespan. */
export function accessTokenPayload(req: UserTokenRequest, data: TokenSubjectData, now: number, jti = newJti()): Record<string, unknown> {
  const maxExpiry = sessionMaxExpiry(req);
  let exp = now + accessTokenLifespan(req.realm, req.client);
  if (maxExpiry > 0) exp = Math.min(exp, maxExpiry);
  const { aud, ...claims } = tokenClaims({ ...data.subject, sessionNotes: sessionNotes(req), acr: req.acr }, data.mappers, 'access');
  const { auth_time: authTime, sub, ...rest } = claims;
  return {
    exp, iat: now,
    ...(authTime !== undefined ? { auth_time: authTime } : {}),
    jti, iss: req.issuer,
    ...(aud !== undefined ? { aud } : {}),
    ...(sub !== undefined ? { sub } : {}),
    typ: 'Bearer', azp: req.client.clientId, sid: req.session.id,
    ...rest,
    scope: scopeString(data.scopes, req.scope),
  };
}

/** Keycloak's ID token: aud is the client (plus id-token audience mappers), no roles by default. */
export function idTokenPayload(req: UserTokenRequest, data: TokenSubjectData, now: number, exp: number, accessToken: string | undefined): Record<string, unknown> {
  const { aud, ...claims } = tokenClaims({ ...data.subject, sessionNotes: sessionNotes(req), acr: req.acr }, data.mappers, 'id');
  const audiences = [req.client.clientId, ...(aud === undefined ? [] : Array.isArray(aud) ? aud as string[] : [aud as string])];
  const unique = [...new Set(audiences)];
  const { auth_time: authTime, sub, ...rest } = claims;
  return {
    exp, iat: now,
    ...(authTime !== undefined ? { auth_time: authTime } : {}),
    jti: newJti(), iss: req.issuer,
    aud: unique.length === 1 ? unique[0] : unique,
    sub: sub ?? data.subject.user.id,
    typ: 'ID', azp: req.client.clientId,
    ...(req.nonce !== undefined ? { nonce: req.nonce } : {}),
    sid: req.session.id,
    ...(accessToken ? { at_hash: halfHash(accessToken) } : {}),
    ...rest,
  };
}

/**
 * Refresh token lifetime: the session's idle timeout from now (the client's own idle/max when
 * shorter), capped by the session max. Offline tokens without a max have none (exp omitted).
 */
export function refreshTokenExpiry(req: UserTokenRequest, now: number): number | undefined {
  const { settings } = req.realm;
  const lifespans = req.session.offline ? offlineSessionLifespans(settings) : ssoSessionLifespans(settings, req.session.remember_me);
  const maxExpiry = sessionMaxExpiry(req);
  if (req.session.offline && maxExpiry === 0) return undefined;
  let idle = lifespans.idle - SESSION_IDLE_GRACE_SECONDS;
  const clientIdle = Number.parseInt(req.client.row.attributes['client.session.idle.timeout'] ?? '', 10) || settings.clientSessionIdleTimeout;
  if (!req.session.offline && clientIdle > 0) idle = Math.min(idle, clientIdle);
  let exp = now + idle;
  if (maxExpiry > 0) exp = Math.min(exp, maxExpiry);
  return exp;
}

export function refreshTokenPayload(req: UserTokenRequest, data: TokenSubjectData, now: number, jti: string): Record<string, unknown> {
  const exp = refreshTokenExpiry(req, now);
  return {
    ...(exp !== undefined ? { exp } : {}),
    iat: now, jti, iss: req.issuer, aud: req.issuer, sub: data.subject.user.id,
    typ: req.session.offline ? 'Offline' : 'Refresh',
    azp: req.client.clientId, sid: req.session.id,
    scope: grantedScopeNames(data.scopes, req.scope),
  };
}

/** An access token oidc-provider already signed (code exchange), with its payload. */
export type SignedAccessToken = { token: string; payload: Record<string, unknown> };

export type IssuedTokens = {
  body: Record<string, unknown>;
  accessTokenJti: string;
};

/**
 * Signs the token set for one response. `refreshToken` is the already signed refresh token
 * (the rotation state must know its jti before the response goes out).
 */
export async function issueUserTokens(req: UserTokenRequest, data: TokenSubjectData, refresh: { token: string; exp: number | undefined }, now = Math.floor(Date.now() / 1000), signed?: SignedAccessToken): Promise<IssuedTokens> {
  const accessPayload = signed?.payload ?? accessTokenPayload(req, data, now);
  const accessToken = signed?.token ?? await signWithRealmKey(req.realm, accessPayload);
  const wantsIdToken = req.scope.split(' ').includes('openid');
  const idToken = wantsIdToken
    ? await signWithRealmKey(req.realm, idTokenPayload(req, data, now, accessPayload.exp as number, accessToken), req.client.metadata.id_token_signed_response_alg as string)
    : undefined;
  return {
    accessTokenJti: accessPayload.jti as string,
    body: {
      access_token: accessToken,
      expires_in: (accessPayload.exp as number) - now,
      refresh_expires_in: refresh.exp === undefined ? 0 : refresh.exp - now,
      refresh_token: refresh.token,
      token_type: 'Bearer',
      ...(idToken ? { id_token: idToken } : {}),
      'not-before-policy': req.realm.realm.not_before,
      session_state: req.session.id,
      scope: accessPayload.scope,
    },
  };
}

