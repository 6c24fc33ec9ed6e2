// grant_type=password (Keycloak's "direct access grants"): username and password at the token
// endpoint, for confidential and public clients with directAccessGrantsEnabled. Creates a user
// session like a browser login, without the SSO cookie.
import crypto from 'node:crypto';

import { errors, type KoaContextWithOIDC } from 'oidc-provider';

import type { LoginEvent } from '../../events/events.ts';
import { authenticatePassword } from '../../login/authenticate.ts';
import type { RealmContext } from '../../realms/context.ts';
import { findLiveUserSession } from '../../store/sessions.ts';
import { issueFirstTokens, startUserSession, TokenRequestError } from '../session-tokens.ts';

export const PASSWORD_GRANT_PARAMETERS = ['username', 'password', 'scope', 'totp'];

export type GrantEvents = (realm: RealmContext, event: LoginEvent) => void;

/** An OAuth error with Keycloak's status code (401 for bad user credentials). */
export function oauthError(error: string, description: string, status = 400): errors.OIDCProviderError {
  const err = new errors.OIDCProviderError(status, error);
  err.error_description = description;
  return err;
}

export function passwordGrant(realm: RealmContext, record: GrantEvents) {
  return async function passwordGrantHandler(ctx: KoaContextWithOIDC): Promise<void> {
    const params = ctx.oidc.params as Record<string, string | undefined>;
    const client = await realm.client(ctx.oidc.client!.clientId);
    if (!client) throw new errors.InvalidClient('client not found');
    const base = { clientId: client.clientId, ipAddress: ctx.ip };
    const username = params.username ?? '';
    if (username === '') throw new errors.InvalidRequest('Missing parameter: username');
    const password = params.password ?? '';

    const result = await authenticatePassword(realm, username, password);
    const details = { auth_method: 'openid-connect', grant_type: 'password', username };
    if (!result.ok) {
      record(realm, { ...base, type: 'LOGIN_ERROR', userId: result.user?.id, error: result.error, details });
      if (result.error === 'user_disabled') throw oauthError('invalid_grant', 'Account disabled');
      throw oauthError('invalid_grant', 'Invalid user credentials', 401);
    }
    const { user } = result;
    if (user.required_actions.length > 0) {
      record(realm, { ...base, type: 'LOGIN_ERROR', userId: user.id, error: 'resolve_required_actions', details });
      throw oauthError('invalid_grant', 'Account is not fully set up');
    }

    const sessionId = crypto.randomUUID();
    await startUserSession(realm, {
      id: sessionId, userId: user.id, loginUsername: username, ipAddress: ctx.ip, rememberMe: false,
      authTime: Math.floor(Date.now() / 1000),
    });
    const session = await findLiveUserSession(realm.db, { realmId: realm.id, id: sessionId, offline: false });
    if (!session) throw new Error('session vanished right after creation');
    try {
      const issued = await issueFirstTokens({
        realm, issuer: ctx.oidc.issuer, client, session, scope: params.scope ?? '', acr: '1', ipAddress: ctx.ip, grantId: null,
      });
      ctx.body = issued.body;
    } catch (error) {
      if (error instanceof TokenRequestError) throw oauthError(error.error, error.message, error.status);
      throw error;
    }
    record(realm, { ...base, type: 'LOGIN', userId: user.id, sessionId, details });
  };
}
