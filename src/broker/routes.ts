// The broker's own endpoints, Keycloak's URL layout:
//   {issuer}/broker/{alias}/login?session_code={interaction}   sends the browser to the provider
//   {issuer}/broker/{alias}/endpoint                           OIDC redirect URI, SAML ACS and SLO
//   {issuer}/broker/{alias}/endpoint/descriptor                SAML SP metadata
//   {issuer}/broker/{alias}/endpoint/clients/{client}          IdP-initiated SAML, landing in {client}
//   {issuer}/broker/{alias}/token                              the user's stored provider tokens
// The provider's answer is validated here (protocol modules oidc.ts / saml.ts) and the identity it
// vouches for handed, under a new one-time id, to the login page of the interaction that started
// it ({issuer}/login-actions/{uid}/broker): only there is the interaction's cookie, so a callback
// replayed in another browser logs nobody in. That page finds or creates the user (first-login.ts).
import crypto from 'node:crypto';

import type { Context } from 'koa';
import { sql } from 'kysely';
import type Provider from 'oidc-provider';

import { readForm, BodyError } from '../http/body.ts';
import type { LoginPages } from '../login/routes.ts';
import { redirectUriMatches } from '../oidc/client-policy.ts';
import { PROTOCOL_ROUTES } from '../oidc/provider.ts';
import { endSsoSession } from '../oidc/session-end.ts';
import { bearerToken } from '../oidc/userinfo.ts';
import type { ClientModel, RealmContext } from '../realms/context.ts';
import { absoluteRedirectUris } from '../realms/context.ts';
import { consumeBrokerRequest, createBrokerRequest, findBrokerRequest, handOff, newBrokerRequestId, rememberSamlAssertion, type BrokerRequest } from './broker-requests.ts';
import { BROKER_PROTOCOLS, enabledBrokerProvider, type BrokerProvider } from './identity-providers.ts';
import { resumeAfterUpstreamLogout } from './logout.ts';
import { withCurrentSamlMetadata } from './saml-metadata.ts';
import { retrieveStoredToken } from './stored-token.ts';
import { BrokerError } from './types.ts';
import { brokerUrls } from './urls.ts';

// The protocol modules (openid-client, samlify and its schema validator) load at first use: an
// instance whose realms broker nothing never pays their memory.
const oauthProtocol = () => import('./oidc.ts');
const samlProtocol = () => import('./saml.ts');

const ALIAS = /^[\w.-]{1,255}$/;
const UID = /^[\w-]{1,64}$/;
/** Keycloak's attribute naming the URL segment of IdP-initiated SSO for a client. */
const IDP_INITIATED_NAME_ATTRIBUTE = 'saml_idp_initiated_sso_url_name';

/** The login page that takes a validated identity over ({issuer}/login-actions/{uid}/broker). */
function handoffUrl(issuer: string, interactionUid: string, handoffId: string): string {
  return `${new URL(issuer).pathname}/login-actions/${interactionUid}/broker?code=${encodeURIComponent(handoffId)}`;
}

function restartUrl(issuer: string, interactionUid: string | null): string | undefined {
  return interactionUid ? `${new URL(issuer).pathname}/login-actions/${interactionUid}/restart` : undefined;
}

export function createBrokerRoutes(pages: LoginPages) {
  const { deps } = pages;

  /** Handles {issuer}/broker/{rest}. */
  return async function broker(ctx: Context, realm: RealmContext, issuer: string, provider: Provider, rest: string): Promise<void> {
    const match = /^\/([^/]+)\/(login|endpoint|token)(\/descriptor|\/clients\/[^/]+|\/logout_response)?$/.exec(rest);
    let alias: string;
    try {
      alias = decodeURIComponent(match?.[1] ?? '');
    } catch {
      alias = '';
    }
    const locale = pages.locale(realm, ctx);
    if (!match || !ALIAS.test(alias)) return pages.errorPage(ctx, realm, 'identityProviderNotFoundMessage', 404, locale);
    const stored = await enabledBrokerProvider(realm, alias);
    if (!stored) return pages.errorPage(ctx, realm, 'identityProviderNotFoundMessage', 404, locale);
    const urls = brokerUrls(issuer, alias);
    const protocol = BROKER_PROTOCOLS[stored.providerId]!;
    const [, , action, tail] = match as unknown as [string, string, string, string | undefined];
    const idp = protocol === 'saml' && action !== 'token'
      ? await withCurrentSamlMetadata(realm, stored, (reason) => deps.logger.warn({ realm: realm.name, identityProvider: alias, reason }, 'could not refresh SAML metadata; using the stored config'))
      : stored;

    /** IDENTITY_PROVIDER_LOGIN_ERROR and a page with the way back to the login. */
    const fail = async (error: BrokerError, interactionUid: string | null, clientId?: string | null, shownMessageKey?: string): Promise<void> => {
      deps.event(realm, {
        type: 'IDENTITY_PROVIDER_LOGIN_ERROR', clientId: clientId ?? undefined, ipAddress: ctx.ip, error: error.error,
        details: { identity_provider: alias, reason: error.reason },
      });
      deps.logger.info({ realm: realm.name, identityProvider: alias, error: error.error, reason: error.reason }, 'identity provider login failed');
      const messageKey = shownMessageKey ?? (error.cancelled ? 'identityProviderCancelledMessage'
        : error.error === 'identity_provider_error' ? 'identityProviderUnavailableMessage'
          : error.error === 'expired_code' ? 'identityProviderLoginTimeoutMessage' : 'identityProviderAuthenticationFailedMessage');
      const loginUrl = restartUrl(issuer, interactionUid);
      const status = error.error === 'identity_provider_error' ? 502 : 400;
      return pages.render(ctx, realm, 'error', {
        locale, message: { type: 'error', text: deps.pages.t(locale, messageKey) }, ...(loginUrl ? { loginUrl } : {}),
      }, status);
    };

    if (action === 'token') {
      if (ctx.method !== 'GET' || tail) return pages.errorPage(ctx, realm, 'invalidRequestMessage', 405, locale);
      const result = await retrieveStoredToken(realm, issuer, alias, bearerToken(ctx.get('authorization') || undefined, {}));
      deps.event(realm, {
        type: result.status === 200 ? 'IDENTITY_PROVIDER_RETRIEVE_TOKEN' : 'IDENTITY_PROVIDER_RETRIEVE_TOKEN_ERROR', clientId: result.clientId, userId: result.userId, ipAddress: ctx.ip,
        ...(result.status === 200 ? {} : { error: String(result.body.error) }), details: { identity_provider: alias },
      });
      ctx.status = result.status;
      ctx.set('Cache-Control', 'no-store');
      for (const [name, value] of Object.entries(result.headers ?? {})) ctx.set(name, value);
      ctx.body = result.body;
      return;
    }
    if (action === 'login') {
      if (ctx.method !== 'GET' || tail) return pages.errorPage(ctx, realm, 'invalidRequestMessage', 405, locale);
      return startLogin(idp, ctx.query.session_code);
    }
    if (tail === '/descriptor') {
      if (protocol !== 'saml') return pages.errorPage(ctx, realm, 'identityProviderNotFoundMessage', 404, locale);
      ctx.type = 'application/xml';
      ctx.set('Cache-Control', 'no-store');
      ctx.body = await (await samlProtocol()).samlSpMetadata(realm, idp, urls);
      return;
    }
    if (ctx.method !== 'GET' && ctx.method !== 'POST') return pages.errorPage(ctx, realm, 'invalidRequestMessage', 405, locale);
    let form: Record<string, unknown> = {};
    if (ctx.method === 'POST') {
      try {
        form = await readForm(ctx);
      } catch (error) {
        if (error instanceof BodyError) return pages.errorPage(ctx, realm, 'invalidRequestMessage', error.status, locale);
        throw error;
      }
    }
    const param = (name: string): string | undefined => {
      const value = form[name] ?? (ctx.query as Record<string, unknown>)[name];
      return typeof value === 'string' && value !== '' ? value : undefined;
    };

    if (protocol === 'oauth') {
      if (tail === '/logout_response') return afterUpstreamLogout(param('state'));
      if (tail) return pages.errorPage(ctx, realm, 'invalidRequestMessage', 404, locale);
      return oauthCallback(idp, param('state'));
    }
    if (tail?.startsWith('/clients/')) return idpInitiated(idp, decodeSegment(tail.slice('/clients/'.length)), param('SAMLResponse'));
    if (param('SAMLRequest') || (param('SAMLResponse') && (ctx.method === 'GET' || isLogoutResponse(param('SAMLResponse')!)))) {
      return samlLogoutMessage(idp);
    }
    return samlCallback(idp, param('SAMLResponse'), param('RelayState'));

    // --- start ----------------------------------------------------------------------------------

    async function startLogin(idp: BrokerProvider, sessionCode: unknown): Promise<void> {
      const uid = typeof sessionCode === 'string' && UID.test(sessionCode) ? sessionCode : undefined;
      const interaction = uid ? await provider.Interaction.find(uid) : undefined;
      if (!uid || !interaction || interaction.prompt?.name !== 'login') {
        return pages.errorPage(ctx, realm, 'identityProviderLoginTimeoutMessage', 400, locale);
      }
      const clientId = String(interaction.params.client_id ?? '');
      if (idp.row.link_only) return fail(new BrokerError('identity_provider_login_failure', 'provider is link-only'), uid, clientId, 'identityProviderLinkOnlyMessage');
      const params = interaction.params as Record<string, unknown>;
      const loginHint = typeof params.login_hint === 'string' ? params.login_hint.slice(0, 255) : undefined;
      const id = newBrokerRequestId();
      try {
        if (protocol === 'oauth') {
          const { url, protocolState } = await (await oauthProtocol()).startOAuthLogin(idp, urls, {
            state: id,
            ...(loginHint ? { loginHint } : {}),
            ...(typeof params.prompt === 'string' ? { prompt: params.prompt } : {}),
            ...(typeof params.ui_locales === 'string' ? { uiLocales: params.ui_locales } : {}),
          });
          await createBrokerRequest(realm, { id, alias: idp.alias, interactionUid: uid, clientId, protocol: protocolState });
          ctx.status = 303;
          return ctx.redirect(url);
        }
        const request = await (await samlProtocol()).startSamlLogin(realm, idp, urls, { relayState: id, ...(loginHint ? { loginHint } : {}), forceAuthn: params.prompt === 'login' });
        await createBrokerRequest(realm, { id, alias: idp.alias, interactionUid: uid, clientId, protocol: { requestId: request.requestId } });
        return sendSamlMessage(request);
      } catch (error) {
        if (error instanceof BrokerError) return fail(error, uid, clientId);
        throw error;
      }
    }

    async function sendSamlMessage(message: { redirect: string } | { post: { url: string; form: Record<string, string> } }): Promise<void> {
      if ('redirect' in message) {
        ctx.status = 303;
        return ctx.redirect(message.redirect);
      }
      return pages.render(ctx, realm, 'saml-post', { locale, postUrl: message.post.url, hidden: message.post.form });
    }

    // --- callbacks ------------------------------------------------------------------------------

    /** The request a callback answers, used up; undefined (and the failure answered) otherwise. */
    async function takeRequest(state: string | undefined): Promise<BrokerRequest | undefined> {
      const request = state ? await findBrokerRequest(realm, alias, state) : undefined;
      if (!request) {
        await fail(new BrokerError('invalid_request', state ? 'unknown, expired or used state' : 'missing state'), null);
        return undefined;
      }
      if (!await consumeBrokerRequest(realm, request.id)) {
        await fail(new BrokerError('expired_code', 'state already used'), request.interactionUid, request.clientId);
        return undefined;
      }
      return request;
    }

    async function oauthCallback(idp: BrokerProvider, state: string | undefined): Promise<void> {
      const request = await takeRequest(state);
      if (!request) return;
      try {
        const identity = await (await oauthProtocol()).finishOAuthLogin(idp, urls, new URL(ctx.href), request.protocol);
        return await passOn(request, await handOff(realm, request, identity));
      } catch (error) {
        if (error instanceof BrokerError) return fail(error, request.interactionUid, request.clientId);
        throw error;
      }
    }

    async function samlCallback(idp: BrokerProvider, samlResponse: string | undefined, relayState: string | undefined): Promise<void> {
      if (ctx.method !== 'POST' || !samlResponse) return fail(new BrokerError('invalid_saml_response', 'no SAMLResponse posted'), null);
      // An unsolicited response belongs at .../endpoint/clients/{client}: here it has no RelayState of ours.
      const request = await takeRequest(relayState);
      if (!request) return;
      try {
        const identity = await (await samlProtocol()).finishSamlLogin(realm, idp, urls, samlResponse, {
          requestId: request.protocol.requestId, destination: urls.endpoint,
          rememberAssertion: (id, notOnOrAfter) => rememberSamlAssertion(realm, alias, id, notOnOrAfter),
        });
        return await passOn(request, await handOff(realm, request, identity));
      } catch (error) {
        if (error instanceof BrokerError) return fail(error, request.interactionUid, request.clientId);
        throw error;
      }
    }

    /** IdP-initiated SAML: the login starts at the client's authorization request, carrying the handoff. */
    async function idpInitiated(idp: BrokerProvider, clientName: string | undefined, samlResponse: string | undefined): Promise<void> {
      if (ctx.method !== 'POST' || !samlResponse) return fail(new BrokerError('invalid_saml_response', 'no SAMLResponse posted'), null);
      const client = clientName ? await idpInitiatedClient(realm, clientName) : undefined;
      const redirectUri = client ? landingRedirectUri(client) : undefined;
      if (!client || !redirectUri) return fail(new BrokerError('client_not_found', 'no enabled client with a redirect URI for this IdP-initiated login'), null);
      try {
        const identity = await (await samlProtocol()).finishSamlLogin(realm, idp, urls, samlResponse, {
          requestId: undefined, destination: `${urls.endpoint}/clients/${encodeURIComponent(clientName!)}`,
          rememberAssertion: (id, notOnOrAfter) => rememberSamlAssertion(realm, alias, id, notOnOrAfter),
        });
        const handoffId = await createBrokerRequest(realm, { alias, interactionUid: null, clientId: client.clientId, identity });
        const query = new URLSearchParams({
          client_id: client.clientId, redirect_uri: redirectUri, response_type: 'code', scope: 'openid', kc_idp_hint: alias, broker_handoff: handoffId,
          // The asserted identity signs in even where the browser has another user's SSO session.
          prompt: 'login',
        });
        // Public clients must send PKCE; this code is only ever a way into the client, not redeemed by us.
        query.set('code_challenge', crypto.createHash('sha256').update(crypto.randomBytes(32)).digest('base64url'));
        query.set('code_challenge_method', 'S256');
        ctx.status = 303;
        return ctx.redirect(`${new URL(issuer).pathname}${PROTOCOL_ROUTES.authorization}?${query}`);
      } catch (error) {
        if (error instanceof BrokerError) return fail(error, null, client.clientId);
        throw error;
      }
    }

    async function passOn(request: BrokerRequest, handoffId: string): Promise<void> {
      deps.event(realm, { type: 'IDENTITY_PROVIDER_RESPONSE', clientId: request.clientId ?? undefined, ipAddress: ctx.ip, details: { identity_provider: alias } });
      ctx.status = 303;
      return ctx.redirect(handoffUrl(issuer, request.interactionUid!, handoffId));
    }

    // --- SAML single logout -----------------------------------------------------------------------

    async function samlLogoutMessage(idp: BrokerProvider): Promise<void> {
      const binding = ctx.method === 'GET' ? 'redirect' : 'post';
      try {
        const message = await (await samlProtocol()).receiveSamlLogout(realm, idp, urls, {
          binding, query: stringRecord(ctx.query as Record<string, unknown>), form: stringRecord(form), rawQuery: ctx.querystring,
        });
        if (message.kind === 'response') return afterUpstreamLogout(message.relayState, message.inResponseTo ?? '');
        const ended = await endBrokeredSessions(realm, issuer, alias, message.nameId, message.sessionIndexes, deps.logger);
        for (const session of ended) {
          deps.event(realm, { type: 'LOGOUT', userId: session.userId, sessionId: session.sessionId, ipAddress: ctx.ip, details: { identity_provider: alias, reason: 'identity provider logout' } });
        }
        return sendSamlMessage(await message.respond(param('RelayState')));
      } catch (error) {
        if (error instanceof BrokerError) return fail(error, null);
        throw error;
      }
    }

    /** Ends a logout that went through the provider: on to the application, or our logged-out page. */
    async function afterUpstreamLogout(state: string | undefined, inResponseTo?: string): Promise<void> {
      const continueTo = await resumeAfterUpstreamLogout(realm, alias, state, inResponseTo);
      if (continueTo === undefined) return pages.errorPage(ctx, realm, 'invalidRequestMessage', 400, locale);
      if (continueTo) {
        ctx.status = 302;
        return ctx.redirect(continueTo);
      }
      return pages.render(ctx, realm, 'logged-out', { locale, message: { type: 'success', text: deps.pages.t(locale, 'successLogout') } });
    }
  };
}

function decodeSegment(segment: string): string | undefined {
  try {
    return decodeURIComponent(segment);
  } catch {
    return undefined;
  }
}

function stringRecord(source: Record<string, unknown>): Record<string, string> {
  return Object.fromEntries(Object.entries(source).filter((e): e is [string, string] => typeof e[1] === 'string'));
}

/** A POSTed SAMLResponse that is a LogoutResponse (single logout) rather than a login Response. */
function isLogoutResponse(samlResponse: string): boolean {
  const head = Buffer.from(samlResponse.slice(0, 2048), 'base64').toString('utf8');
  return /<(?:[\w-]+:)?LogoutResponse[\s>]/.test(head);
}

/** The client an IdP-initiated login lands in: Keycloak's URL-name attribute, else the client id itself. */
async function idpInitiatedClient(realm: RealmContext, name: string): Promise<ClientModel | undefined> {
  const byAttribute = await realm.db.selectFrom('clients').select('client_id').where('realm_id', '=', realm.id)
    .where(sql<string>`attributes->>${IDP_INITIATED_NAME_ATTRIBUTE}`, '=', name).executeTakeFirst();
  const client = await realm.client(byAttribute?.client_id ?? name);
  return client?.row.enabled && client.row.standard_flow_enabled ? client : undefined;
}

/** The client's home: its base URL when a redirect URI allows it, else its first exact redirect URI. */
function landingRedirectUri(client: ClientModel): string | undefined {
  const registered = absoluteRedirectUris(client.row.redirect_uris, client.row.root_url);
  const base = client.row.base_url ? absoluteRedirectUris([client.row.base_url], client.row.root_url)[0] : undefined;
  if (base && redirectUriMatches(registered, base)) return base;
  return registered.find((uri) => !uri.includes('*'));
}

/** Ends the user sessions an IdP's LogoutRequest names (by NameID, narrowed to the session indexes given). */
async function endBrokeredSessions(realm: RealmContext, issuer: string, alias: string, nameId: string, sessionIndexes: string[], logger: LoginPages['deps']['logger']): Promise<{ userId: string; sessionId: string }[]> {
  let query = realm.db.selectFrom('broker_sessions').select(['session_id', 'user_id'])
    .where('realm_id', '=', realm.id).where('identity_provider', '=', alias).where('external_user_id', '=', nameId);
  if (sessionIndexes.length > 0) query = query.where('external_session', 'in', sessionIndexes);
  const rows = await query.execute();
  for (const row of rows) await endSsoSession(realm, issuer, row.session_id, logger);
  return rows.map((r) => ({ userId: r.user_id, sessionId: r.session_id }));
}
