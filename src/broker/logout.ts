// Logout of a brokered session reaches its identity provider, as Keycloak does it:
//   - OIDC with backchannelSupported: a server-side call to the provider's logout URL;
//   - OIDC otherwise, and SAML: the browser goes to the provider's logout (end_session_endpoint,
//     SAML LogoutRequest) and comes back to {issuer}/broker/{alias}/endpoint[/logout_response],
//     which continues to where the application asked to go after logout.
// Only the first brokered session of a browser is taken through its provider (a browser has one
// SSO session; a second would need chaining that no client asks for).
import type { RealmContext } from '../realms/context.ts';
import { consumeBrokerRequest, createBrokerRequest, findBrokerRequest, newBrokerRequestId } from './broker-requests.ts';
import { BROKER_PROTOCOLS, enabledBrokerProvider } from './identity-providers.ts';
import { withCurrentSamlMetadata } from './saml-metadata.ts';
import { brokerUrls } from './urls.ts';

export type BrokerSession = { sessionId: string; alias: string; data: { idToken?: string; nameId?: string; nameIdFormat?: string; sessionIndex?: string } };
export type UpstreamLogout = { redirect: string } | { post: { url: string; form: Record<string, string> } };

/** The brokered sessions among `sessionIds`. */
export async function brokerSessionsOf(realm: RealmContext, sessionIds: string[]): Promise<BrokerSession[]> {
  if (sessionIds.length === 0) return [];
  const rows = await realm.db.selectFrom('broker_sessions').select(['session_id', 'identity_provider', 'data_sealed'])
    .where('realm_id', '=', realm.id).where('session_id', 'in', sessionIds).execute();
  return rows.map((row) => ({
    sessionId: row.session_id, alias: row.identity_provider,
    data: row.data_sealed ? JSON.parse(realm.box.open(row.data_sealed)) as BrokerSession['data'] : {},
  }));
}

/**
 * Tells the sessions' providers. Returns where to send the browser (the provider's logout, which
 * returns to us and then goes on to `continueTo`), or undefined when nothing needs the browser.
 */
export async function propagateLogout(realm: RealmContext, issuer: string, sessions: BrokerSession[], continueTo: string | undefined): Promise<UpstreamLogout | undefined> {
  let browserLogout: UpstreamLogout | undefined;
  for (const session of sessions) {
    const stored = await enabledBrokerProvider(realm, session.alias);
    if (!stored) continue;
    const idp = BROKER_PROTOCOLS[stored.providerId] === 'saml' ? await withCurrentSamlMetadata(realm, stored) : stored;
    const urls = brokerUrls(issuer, idp.alias);
    if (BROKER_PROTOCOLS[idp.providerId] === 'oauth') {
      const oidc = await import('./oidc.ts');
      if (idp.config.backchannelSupported === 'true') {
        await oidc.upstreamBackchannelLogout(idp, { ...(session.data.idToken ? { idToken: session.data.idToken } : {}) });
        continue;
      }
      if (browserLogout) continue;
      const state = await continuation(realm, idp.alias, continueTo);
      const url = await oidc.upstreamLogoutUrl(idp, { ...(session.data.idToken ? { idToken: session.data.idToken } : {}), postLogoutRedirectUri: `${urls.endpoint}/logout_response`, state });
      if (url) browserLogout = { redirect: url };
      continue;
    }
    if (browserLogout || !session.data.nameId) continue;
    const saml = await import('./saml.ts');
    const relayState = newBrokerRequestId();
    const message = await saml.startSamlLogout(realm, idp, urls, {
      nameId: session.data.nameId, relayState,
      ...(session.data.nameIdFormat ? { nameIdFormat: session.data.nameIdFormat } : {}),
      ...(session.data.sessionIndex ? { sessionIndex: session.data.sessionIndex } : {}),
    }).catch(() => undefined);
    if (!message) continue;
    // The IdP's LogoutResponse must answer this LogoutRequest (InResponseTo) and carry this RelayState.
    await createBrokerRequest(realm, { id: relayState, alias: idp.alias, interactionUid: null, protocol: { kind: 'logout', continueTo: continueTo ?? '', requestId: message.requestId } });
    browserLogout = 'redirect' in message ? { redirect: message.redirect } : { post: message.post };
  }
  return browserLogout;
}

/** The stored "where to go after the provider's logout" (a broker request without an interaction). */
async function continuation(realm: RealmContext, alias: string, continueTo: string | undefined): Promise<string> {
  return createBrokerRequest(realm, { alias, interactionUid: null, protocol: { kind: 'logout', continueTo: continueTo ?? '' } });
}

/**
 * Back from the provider's logout: where to go now ('' = our logged-out page); undefined for an
 * unknown or used state, or a SAML LogoutResponse that answers another request.
 */
export async function resumeAfterUpstreamLogout(realm: RealmContext, alias: string, state: string | undefined, inResponseTo?: string): Promise<string | undefined> {
  const request = state ? await findBrokerRequest(realm, alias, state) : undefined;
  if (!request || request.protocol.kind !== 'logout') return undefined;
  if (inResponseTo !== undefined && request.protocol.requestId !== undefined && inResponseTo !== request.protocol.requestId) return undefined;
  if (!await consumeBrokerRequest(realm, request.id)) return undefined;
  return request.protocol.continueTo ?? '';
}

/** Drops what is kept of upstream sessions once their user session is gone. */
export async function forgetBrokerSessions(realm: RealmContext, sessionIds: string[]): Promise<void> {
  if (sessionIds.length === 0) return;
  await realm.db.deleteFrom('broker_sessions').where('realm_id', '=', realm.id).where('session_id', 'in', sessionIds).execute();
}
