// Ending an SSO session (logout, another user logging in on the same browser): the user session
// and its client sessions go, so every refresh token of it dies and introspection reports its
// access tokens inactive; oidc-provider's Session row and grants go too; clients that registered a
// back-channel logout URL are told (OpenID Connect Back-Channel Logout 1.0, as Keycloak sends it).
// Offline sessions are separate rows and survive.
import crypto from 'node:crypto';

import type { Logger } from '../observability/logger.ts';
import type { RealmContext } from '../realms/context.ts';
import { deleteUserSession } from '../store/sessions.ts';
import { signWithRealmKey } from './realm-jwt.ts';

const BACKCHANNEL_TIMEOUT_MS = 5000;

export type EndedSession = { userId: string | undefined; clientIds: string[] };

export async function endSsoSession(realm: RealmContext, issuer: string, sid: string, logger: Logger): Promise<EndedSession> {
  const key = { realmId: realm.id, id: sid, offline: false };
  const clients = await realm.db.selectFrom('client_sessions')
    .innerJoin('clients', 'clients.id', 'client_sessions.client_id')
    .select(['clients.client_id as clientId', 'clients.attributes as attributes'])
    .where('client_sessions.realm_id', '=', realm.id).where('client_sessions.user_session_id', '=', sid)
    .where('client_sessions.offline', '=', false)
    .execute();
  const session = await realm.db.selectFrom('user_sessions').select('user_id')
    .where('realm_id', '=', realm.id).where('id', '=', sid).where('offline', '=', false).executeTakeFirst();
  const grants = await deleteUserSession(realm.db, key);
  await realm.db.deleteFrom('oidc_payloads').where('realm_id', '=', realm.id)
    .where((eb) => eb.or([
      eb.and([eb('model', '=', 'Session'), eb('uid', '=', sid)]),
      ...(grants.length > 0 ? [eb('grant_id', 'in', grants)] : []),
    ]))
    .execute();

  for (const client of clients) {
    const url = (client.attributes as Record<string, string>)['backchannel.logout.url'];
    if (url && session) void sendBackchannelLogout(realm, issuer, client.clientId, client.attributes as Record<string, string>, session.user_id, sid, logger);
  }
  return { userId: session?.user_id, clientIds: clients.map((c) => c.clientId) };
}

/**
 * Ends every SSO session of the user but `except` (Keycloak's logoutOtherSessions and the admin
 * user logout); offline sessions stay. Returns how many ended.
 */
export async function endUserSessions(realm: RealmContext, issuer: string, userId: string, logger: Logger, except?: string): Promise<number> {
  const sessions = await realm.db.selectFrom('user_sessions').select('id')
    .where('realm_id', '=', realm.id).where('user_id', '=', userId).where('offline', '=', false).execute();
  let ended = 0;
  for (const session of sessions) {
    if (session.id === except) continue;
    await endSsoSession(realm, issuer, session.id, logger);
    ended++;
  }
  return ended;
}

async function sendBackchannelLogout(realm: RealmContext, issuer: string, clientId: string, attributes: Record<string, string>, userId: string, sid: string, logger: Logger): Promise<void> {
  const url = attributes['backchannel.logout.url']!;
  const now = Math.floor(Date.now() / 1000);
  const includeSid = attributes['backchannel.logout.session.required'] !== 'false';
  const token = await signWithRealmKey(realm, {
    iat: now, exp: now + 120, jti: crypto.randomUUID(), iss: issuer, aud: clientId, sub: userId, typ: 'Logout',
    ...(includeSid ? { sid } : {}),
    events: { 'http://schemas.openid.net/event/backchannel-logout': {} },
  });
  try {
    const response = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ logout_token: token }),
      signal: AbortSignal.timeout(BACKCHANNEL_TIMEOUT_MS),
      redirect: 'manual',
    });
    if (!response.ok) logger.warn({ realm: realm.name, clientId, status: response.status }, 'back-channel logout refused');
  } catch (err) {
    logger.warn({ realm: realm.name, clientId, err: (err as Error).message }, 'back-channel logout failed');
  }
}
