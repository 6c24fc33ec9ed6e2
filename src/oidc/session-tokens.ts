// A client joins a user session and gets its first token set: the code exchange and the password
// grant both end here. Asking for offline_access (with the role) binds the refresh token to the
// offline copy of the session, which outlives logout.
import crypto from 'node:crypto';

import type { RealmContext } from '../realms/context.ts';
import { offlineSessionLifespans, ssoSessionLifespans } from '../realms/settings.ts';
import type { UserSession } from '../store/schema.ts';
import { saveUserSession, startClientSession, type ClientSessionValues } from '../store/sessions.ts';
import { grantedScopeNames, issueUserTokens, loadUserTokenSubject, refreshTokenPayload, type IssuedTokens, type SignedAccessToken, type TokenSubjectData, type UserTokenRequest } from './user-tokens.ts';
import { signRefreshToken } from './realm-jwt.ts';

export class TokenRequestError extends Error {
  readonly error: string;
  readonly status: number;
  constructor(error: string, description: string, status = 400) {
    super(description);
    this.error = error;
    this.status = status;
  }
}

export type SessionStart = { id: string; userId: string; loginUsername: string; ipAddress: string | null; rememberMe: boolean; authTime: number };

/** Starts a user session (browser login or password grant), with a client's session in it when given. */
export function startUserSession(realm: RealmContext, s: SessionStart, client?: ClientSessionValues): Promise<UserSession> {
  return saveUserSession(realm.db, {
    ...s, realmId: realm.id, offline: false, lifespans: ssoSessionLifespans(realm.settings, s.rememberMe),
  }, client);
}

export type FirstTokens = Omit<UserTokenRequest, 'session'> & {
  /** The live session the client joins (code exchange), or one to start with it (password grant). */
  session: UserSession | { start: SessionStart };
  grantId: string | null;
  /** Already loaded for this request (the code exchange loads it for the access token). */
  data?: TokenSubjectData;
  /** The access token oidc-provider signed in a code exchange. */
  accessToken?: SignedAccessToken;
};

export async function issueFirstTokens(t: FirstTokens): Promise<IssuedTokens> {
  const data = t.data ?? await loadUserTokenSubject(t.realm, t.client, 'start' in t.session ? t.session.start.userId : t.session.user_id, t.scope);
  if (!data) throw new TokenRequestError('invalid_grant', 'User disabled or not found');
  const offline = data.scopes.some((s) => s.name === 'offline_access');
  if (offline && !data.subject.realmRoles.includes('offline_access')) {
    throw new TokenRequestError('not_allowed', 'Offline tokens not allowed for the user or client');
  }

  // The client session goes into the user session, or with offline_access into its offline copy;
  // each is saved by the statement that saves the session it joins.
  const jti = crypto.randomUUID();
  const client: ClientSessionValues = { clientUuid: t.client.id, grantId: t.grantId, scope: grantedScopeNames(data.scopes, t.scope), refreshJti: jti };
  let session: UserSession;
  if ('start' in t.session) {
    session = await startUserSession(t.realm, t.session.start, offline ? undefined : client);
  } else {
    session = t.session;
    if (!offline) await startClientSession(t.realm.db, { realmId: t.realm.id, id: session.id, offline: false, ...client });
  }
  if (offline) {
    session = await saveUserSession(t.realm.db, {
      realmId: t.realm.id, id: session.id, offline: true, userId: session.user_id, loginUsername: session.login_username,
      ipAddress: session.ip_address, rememberMe: false, authTime: session.auth_time, lifespans: offlineSessionLifespans(t.realm.settings),
    }, client);
  }

  const req: UserTokenRequest = { ...t, session };
  const now = Math.floor(Date.now() / 1000);
  const refreshPayload = refreshTokenPayload(req, data, now, jti);
  const refreshToken = await signRefreshToken(t.realm, refreshPayload);
  return issueUserTokens(req, data, { token: refreshToken, exp: refreshPayload.exp as number | undefined }, now, t.accessToken);
}
