// The authorization-code exchange: oidc-provider validates the code (PKCE, redirect URI, replay)
// and signs the access token, whose payload comes from here; the response is then completed
// Keycloak's way: our ID token, our refresh token bound to a new client session, session_state.
import type { KoaContextWithOIDC } from 'oidc-provider';

import type { ClientModel, RealmContext } from '../realms/context.ts';
import { findLiveSessionWithSubject } from '../store/sessions.ts';
import type { UserSession } from '../store/schema.ts';
import { issueFirstTokens, TokenRequestError } from './session-tokens.ts';
import { accessTokenPayload, userTokenSubjectOfRefs, type TokenSubjectData } from './user-tokens.ts';

/** An authorization-code exchange at the token endpoint: completed by completeCodeExchange. */
export function isCodeExchange(ctx: KoaContextWithOIDC): boolean {
  return ctx.oidc?.route === 'token' && ctx.oidc.params?.grant_type === 'authorization_code';
}

/**
 * What oidc-provider's ID token of a code exchange is replaced by while it builds its response:
 * completeCodeExchange answers with Cloakroom's own ID token, so signing oidc-provider's (an RSA
 * signature per login) would be wasted. It never leaves the server.
 */
export const REPLACED_ID_TOKEN = 'replaced-by-complete-code-exchange';

type CodeLike = { scope?: string; acr?: string; nonce?: string; sessionUid?: string; grantId?: string; accountId?: string };

/** What the access-token customizer computed, reused by the response step of the same request. */
type Prepared = { session: UserSession; data: TokenSubjectData; scope: string; acr: string; accessToken: Record<string, unknown> };
const prepared = new WeakMap<object, Prepared>();

/** The Keycloak access-token payload for a token oidc-provider issues to a user. */
export async function userAccessTokenPayload(realm: RealmContext, client: ClientModel, ctx: KoaContextWithOIDC, token: { jti: string; sessionUid?: string; accountId?: string; iat?: number }): Promise<Record<string, unknown>> {
  const code = ctx.oidc.entities.AuthorizationCode as CodeLike | undefined;
  const sid = token.sessionUid ?? code?.sessionUid;
  // The session, its user and their role ids: one statement.
  const found = sid ? await findLiveSessionWithSubject(realm.db, realm.id, sid) : undefined;
  if (!found || found.session.user_id !== token.accountId) throw new TokenRequestError('invalid_grant', 'Session not active');
  if (!found.subject) throw new TokenRequestError('invalid_grant', 'User disabled or not found');
  const { session } = found;
  const scope = code?.scope ?? String(ctx.oidc.params?.scope ?? 'openid');
  const data = await userTokenSubjectOfRefs(realm, client, found.subject, scope);
  const acr = code?.acr ?? '1';
  const now = token.iat ?? Math.floor(Date.now() / 1000);
  const payload = accessTokenPayload({ realm, issuer: ctx.oidc.issuer, client, session, scope, acr, ipAddress: ctx.ip }, data, now, token.jti);
  prepared.set(ctx, { session, data, scope, acr, accessToken: payload });
  return payload;
}

/** Completes a successful code exchange's response (ctx.body from oidc-provider). */
export async function completeCodeExchange(realm: RealmContext, ctx: KoaContextWithOIDC): Promise<{ userId: string; sessionId: string; clientId: string }> {
  const code = ctx.oidc.entities.AuthorizationCode as CodeLike | undefined;
  const state = prepared.get(ctx);
  const body = ctx.body as Record<string, unknown> | undefined;
  // A successful exchange always has all of these (the access-token customizer ran); answering
  // without them would hand out oidc-provider's unsigned placeholder ID token.
  if (!code || !state || !body || typeof body.access_token !== 'string') throw new Error('code exchange without its access token');
  const client = await realm.client(ctx.oidc.client!.clientId);
  if (!client) throw new TokenRequestError('invalid_client', 'Invalid client or Invalid client credentials', 401);
  const issued = await issueFirstTokens({
    realm, issuer: ctx.oidc.issuer, client, session: state.session, scope: state.scope, acr: state.acr,
    nonce: code.nonce, ipAddress: ctx.ip, grantId: code.grantId ?? null, data: state.data,
    accessToken: { token: body.access_token, payload: state.accessToken },
  });
  ctx.body = issued.body;
  return { userId: state.session.user_id, sessionId: state.session.id, clientId: client.clientId };
}
