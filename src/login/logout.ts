// RP-initiated logout at {issuer}/protocol/openid-connect/logout, as Keycloak 26 answers it:
// with a valid id_token_hint the session ends at once; without one the user confirms on a page
// first. post_logout_redirect_uri must be registered for the client (attribute
// post.logout.redirect.uris, '+' = the redirect URIs) and needs id_token_hint or client_id.
import type { Context } from 'koa';
import type Provider from 'oidc-provider';

import { brokerSessionsOf, forgetBrokerSessions, propagateLogout } from '../broker/logout.ts';
import { readForm, BodyError } from '../http/body.ts';
import { redirectUriMatches } from '../oidc/client-policy.ts';
import { verifyRealmSignedToken } from '../oidc/realm-jwt.ts';
import { endSsoSession } from '../oidc/session-end.ts';
import type { ClientModel, RealmContext } from '../realms/context.ts';
import { absoluteRedirectUris } from '../realms/context.ts';
import type { LoginPages } from './routes.ts';
import { SESSION_COOKIE } from './session-iframe.ts';

/** Post-logout redirect URIs of a client (Keycloak: '##'-separated attribute, '+' = redirect URIs). */
export function postLogoutRedirectUris(client: ClientModel): string[] {
  const configured = (client.row.attributes['post.logout.redirect.uris'] ?? '').split('##').filter(Boolean);
  const uris = configured.flatMap((uri) => (uri === '+' ? client.row.redirect_uris : [uri]));
  return absoluteRedirectUris(uris, client.row.root_url);
}

export function createLogoutRoute(pages: LoginPages) {
  const { deps } = pages;

  return async function logout(ctx: Context, realm: RealmContext, issuer: string, provider: Provider): Promise<void> {
    let params: Record<string, unknown> = ctx.query as Record<string, unknown>;
    if (ctx.method === 'POST') {
      try {
        params = { ...params, ...await readForm(ctx) };
      } catch (error) {
        if (error instanceof BodyError) return pages.errorPage(ctx, realm, 'invalidRequestMessage', error.status);
        throw error;
      }
    }
    const param = (name: string): string | undefined => (typeof params[name] === 'string' && params[name] !== '' ? params[name] as string : undefined);
    const locale = pages.locale(realm, ctx, param('ui_locales'));
    const idTokenHint = param('id_token_hint');
    const redirectUri = param('post_logout_redirect_uri');
    const state = param('state');
    let clientId = param('client_id');

    let hintSid: string | undefined;
    if (idTokenHint) {
      const claims = await verifyRealmSignedToken(realm, issuer, idTokenHint, { ignoreExpiration: true });
      if (!claims || claims.typ !== 'ID') return pages.errorPage(ctx, realm, 'invalidRequestMessage', 400, locale);
      const azp = typeof claims.azp === 'string' ? claims.azp : undefined;
      if (clientId && azp && clientId !== azp) return pages.errorPage(ctx, realm, 'invalidRequestMessage', 400, locale);
      clientId ??= azp;
      hintSid = typeof claims.sid === 'string' ? claims.sid : undefined;
    }
    let client: ClientModel | undefined;
    if (clientId) {
      client = await realm.client(clientId);
      if (!client) return pages.errorPage(ctx, realm, 'invalidRequestMessage', 400, locale);
    }
    if (redirectUri) {
      if (!client) return pages.errorPage(ctx, realm, 'missingParametersIdTokenHint', 400, locale);
      if (!redirectUriMatches(postLogoutRedirectUris(client), redirectUri)) return pages.errorPage(ctx, realm, 'invalidRedirectUriMessage', 400, locale);
    }

    // The browser's own SSO session (oidc-provider's cookie).
    const browserSession = await provider.Session.get(ctx as never);
    const browserSid = browserSession.accountId ? browserSession.uid : undefined;
    const binding = `logout:${browserSid ?? hintSid ?? ''}`;
    const confirmed = ctx.method === 'POST' && pages.csrfValid(realm, binding, params.csrf) && params.logout === 'yes';

    if (!idTokenHint && !confirmed && (browserSid || hintSid)) {
      const action = new URL(ctx.href);
      action.search = '';
      const hidden = new URLSearchParams({ ...(redirectUri ? { post_logout_redirect_uri: redirectUri } : {}), ...(state ? { state } : {}), ...(clientId ? { client_id: clientId } : {}) });
      return pages.render(ctx, realm, 'logout-confirm', {
        locale, csrf: pages.csrfToken(realm, binding),
        actions: { logout: `${action.pathname}${hidden.size > 0 ? `?${hidden}` : ''}` },
      });
    }

    const sids = [...new Set([hintSid, browserSid].filter((s): s is string => Boolean(s)))];
    const brokered = await brokerSessionsOf(realm, sids);
    for (const sid of sids) {
      const ended = await endSsoSession(realm, issuer, sid, deps.logger);
      if (ended.userId) deps.event(realm, { type: 'LOGOUT', clientId, userId: ended.userId, sessionId: sid, ipAddress: ctx.ip, details: { ...(redirectUri ? { redirect_uri: redirectUri } : {}) } });
    }
    if (browserSid) await browserSession.destroy().catch(() => undefined);
    ctx.cookies.set(SESSION_COOKIE, null, { path: new URL(issuer).pathname, httpOnly: false, signed: false, overwrite: true });

    const target = redirectUri ? new URL(redirectUri) : undefined;
    if (target && state) target.searchParams.set('state', state);
    // Sessions that came through an identity provider end there too (src/broker/logout.ts).
    if (brokered.length > 0) {
      await forgetBrokerSessions(realm, brokered.map((b) => b.sessionId));
      const upstream = await propagateLogout(realm, issuer, brokered, target?.href);
      if (upstream && 'redirect' in upstream) {
        ctx.status = 302;
        ctx.set('Cache-Control', 'no-store');
        return ctx.redirect(upstream.redirect);
      }
      if (upstream) return pages.render(ctx, realm, 'saml-post', { locale, postUrl: upstream.post.url, hidden: upstream.post.form });
    }

    if (target) {
      ctx.status = 302;
      ctx.set('Cache-Control', 'no-store');
      ctx.redirect(target.href);
      return;
    }
    return pages.render(ctx, realm, 'logged-out', { locale, message: { type: 'success', text: deps.pages.t(locale, 'successLogout') } });
  };
}
