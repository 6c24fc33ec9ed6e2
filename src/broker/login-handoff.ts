// The login page's side of brokering: taking over the identity a provider callback validated
// (bound to this login's interaction, usable once), and what the user session remembers of the
// upstream session for logout.
import type { RealmContext } from '../realms/context.ts';
import { consumeBrokerRequest, findBrokerRequest } from './broker-requests.ts';
import { BROKER_PROTOCOLS, enabledBrokerProvider, type BrokerProvider } from './identity-providers.ts';
import type { BrokeredIdentity } from './types.ts';

/** Kept with the login result and then in broker_sessions: which upstream session a user session came from. */
export type BrokerSessionNote = {
  alias: string;
  /** SAML NameID / OIDC subject. */
  externalUserId: string;
  /** SAML SessionIndex / OIDC sid. */
  externalSession?: string;
  /** Sealed JSON: the id_token (OIDC id_token_hint) or the NameID details (SAML LogoutRequest). */
  dataSealed?: string;
};

export type TakenIdentity = { provider: BrokerProvider; identity: BrokeredIdentity } | { error: string; reason: string; messageKey: string };

export async function takeBrokeredIdentity(realm: RealmContext, handoffId: string, login: { uid: string; clientId: string }): Promise<TakenIdentity> {
  const expired = { error: 'expired_code', messageKey: 'identityProviderLoginTimeoutMessage' };
  const request = await findBrokerRequest(realm, undefined, handoffId);
  if (!request?.identity) return { ...expired, reason: 'unknown, expired or used broker handoff' };
  // Only the login that went to the provider takes its answer; an IdP-initiated one, the login of its client.
  const bound = request.interactionUid === login.uid || (request.interactionUid === null && request.clientId === login.clientId);
  if (!bound) return { ...expired, reason: 'broker handoff of another login' };
  if (!await consumeBrokerRequest(realm, request.id)) return { ...expired, reason: 'broker handoff already used' };
  const provider = await enabledBrokerProvider(realm, request.alias);
  if (!provider) return { error: 'identity_provider_not_found', reason: `identity provider ${request.alias} is gone or disabled`, messageKey: 'identityProviderNotFoundMessage' };
  return { provider, identity: request.identity };
}

export function brokerSessionNote(realm: RealmContext, provider: BrokerProvider, identity: BrokeredIdentity): BrokerSessionNote {
  if (BROKER_PROTOCOLS[provider.providerId] === 'saml') {
    const externalUserId = identity.nameId ?? identity.id;
    return {
      alias: provider.alias, externalUserId, ...(identity.sessionIndex ? { externalSession: identity.sessionIndex } : {}),
      dataSealed: realm.box.seal(JSON.stringify({ nameId: externalUserId, nameIdFormat: identity.nameIdFormat, sessionIndex: identity.sessionIndex })),
    };
  }
  const sid = identity.claims?.sid;
  return {
    alias: provider.alias, externalUserId: identity.id, ...(typeof sid === 'string' ? { externalSession: sid } : {}),
    ...(identity.tokens?.id_token ? { dataSealed: realm.box.seal(JSON.stringify({ idToken: identity.tokens.id_token })) } : {}),
  };
}
