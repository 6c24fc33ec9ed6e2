// Back-channel logout from an upstream OpenID Connect provider (Keycloak's LogoutEndpoint
// backchannel-logout, `{issuer}/protocol/openid-connect/logout/backchannel-logout`): the provider
// POSTs a logout token; the realm's enabled OIDC providers whose issuer it names check it, and the
// brokered sessions it names end (its `sid`: the session signed in with that upstream session;
// else its `sub`: every session of that upstream user), with back-channel logout to our own clients.
import { decodeJwt } from 'jose';

import type { Logger } from '../observability/logger.ts';
import type { LoginEvent } from '../events/events.ts';
import { endSsoSession } from '../oidc/session-end.ts';
import type { RealmContext } from '../realms/context.ts';
import { brokerProviders, BROKER_PROTOCOLS } from './identity-providers.ts';
import { BrokerError } from './types.ts';

export type BackchannelLogoutResult = { status: number; body?: Record<string, string> };

const invalid = (description: string): BackchannelLogoutResult => ({ status: 400, body: { error: 'invalid_request', error_description: description } });

export async function receiveBackchannelLogout(
  realm: RealmContext, issuer: string, form: Record<string, unknown>, logger: Logger, record: (event: LoginEvent) => void,
): Promise<BackchannelLogoutResult> {
  const token = form.logout_token;
  if (typeof token !== 'string' || token === '' || Array.isArray(form.logout_token)) return invalid('No logout token');
  let iss: unknown;
  try {
    iss = decodeJwt(token).iss;
  } catch {
    return invalid('The logout token is invalid');
  }
  if (typeof iss !== 'string' || iss === '') return invalid('The logout token is invalid');

  const oidc = await import('./oidc.ts');
  const candidates = (await brokerProviders(realm)).filter((p) => p.row.enabled && BROKER_PROTOCOLS[p.providerId] === 'oauth');
  // Every provider of that issuer whose checks the token passes (several may share one upstream client).
  const reasons: string[] = [];
  let accepted = false;
  for (const provider of candidates) {
    if (!(await oidc.providerIssues(provider, iss))) continue;
    let named: { sid?: string; sub?: string };
    try {
      named = await oidc.validateLogoutToken(provider, token);
    } catch (error) {
      if (!(error instanceof BrokerError)) throw error;
      reasons.push(`${provider.alias}: ${error.reason}`);
      continue;
    }
    let query = realm.db.selectFrom('broker_sessions').select(['session_id', 'user_id'])
      .where('realm_id', '=', realm.id).where('identity_provider', '=', provider.alias);
    if (named.sid) query = query.where('external_session', '=', named.sid);
    if (named.sub) query = query.where('external_user_id', '=', named.sub);
    const sessions = await query.execute();
    for (const session of sessions) {
      await endSsoSession(realm, issuer, session.session_id, logger);
      record({ type: 'LOGOUT', userId: session.user_id, sessionId: session.session_id, details: { identity_provider: provider.alias, reason: 'back-channel logout from the identity provider' } });
    }
    logger.info({ realm: realm.name, identityProvider: provider.alias, sessions: sessions.length }, 'back-channel logout from an identity provider');
    accepted = true;
  }
  if (accepted) return { status: 200 };
  if (reasons.length > 0) logger.warn({ realm: realm.name, reasons }, 'logout token refused');
  return invalid('There was no valid identity provider for the logout token');
}
