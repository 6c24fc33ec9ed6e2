// Hosted login pages: {issuer}/login-actions/{uid}[/step]. oidc-provider sends the browser here
// with an interaction (its cookie is scoped to this path); each step renders a page or finishes the
// interaction with a login or consent result and sends the browser back to the authorization
// endpoint. Every POST carries a CSRF token bound to the interaction.
import crypto from 'node:crypto';

import type { Context } from 'koa';
import type Provider from 'oidc-provider';

import { safeEqual } from '../crypto/random.ts';
import type { LoginEvent } from '../events/events.ts';
import { readForm, BodyError } from '../http/body.ts';
import type { Logger } from '../observability/logger.ts';
import { REALM_RESOURCE } from '../oidc/provider.ts';
import { endSsoSession } from '../oidc/session-end.ts';
import type { LoginResultExtras } from '../oidc/sso-session.ts';
import type { RealmContext } from '../realms/context.ts';
import { loginFlow } from '../realms/settings.ts';
import { authenticatePassword } from './authenticate.ts';
import { pageSecurityHeaders, type PageData, type PageName, type PageRenderer } from './pages.ts';

export type LoginDeps = {
  pages: PageRenderer;
  logger: Logger;
  event(realm: RealmContext, event: LoginEvent): void;
  /** KC_HTTP_RELATIVE_PATH ('' or '/auth'). */
  basePath: string;
};

type Interaction = Awaited<ReturnType<Provider['interactionDetails']>>;

const MAX_USERNAME = 255;
const MAX_PASSWORD = 1024;

/** Page plumbing shared by the login and logout pages. */
export class LoginPages {
  readonly deps: LoginDeps;
  constructor(deps: LoginDeps) {
    this.deps = deps;
  }

  /** CSRF token for forms bound to `binding` (an interaction uid, a session uid). */
  csrfToken(realm: RealmContext, binding: string): string {
    return crypto.createHmac('sha256', realm.box.derive(`csrf:${realm.id}`)).update(binding).digest('base64url');
  }

  csrfValid(realm: RealmContext, binding: string, presented: unknown): boolean {
    return typeof presented === 'string' && safeEqual(presented, this.csrfToken(realm, binding));
  }

  /** ui_locales first, then the browser's languages, among the realm's supported locales. */
  locale(realm: RealmContext, ctx: Context, uiLocales?: unknown): string {
    const { settings } = realm;
    const fallback = settings.defaultLocale || 'en';
    if (!settings.internationalizationEnabled) return fallback;
    const supported = settings.supportedLocales.length > 0 ? settings.supportedLocales : [fallback];
    const wanted = [
      ...(typeof uiLocales === 'string' ? uiLocales.split(' ') : []),
      ...ctx.acceptsLanguages(),
    ];
    for (const tag of wanted) {
      const found = supported.find((s) => s.toLowerCase() === tag.toLowerCase()) ?? supported.find((s) => s.toLowerCase() === tag.split('-')[0]?.toLowerCase());
      if (found) return found;
    }
    return fallback;
  }

  async render(ctx: Context, realm: RealmContext, page: PageName, data: Omit<PageData, 'realmName' | 'resourcesUrl'>, status = 200): Promise<void> {
    const theme = realm.settings.loginTheme || 'default';
    const html = await this.deps.pages.render(theme, page, {
      realmName: realm.name,
      ...(realm.realm.display_name ? { realmDisplayName: realm.realm.display_name } : {}),
      resourcesUrl: `${this.deps.basePath}/resources/login/${encodeURIComponent(theme)}`,
      loginWithEmailAllowed: realm.settings.loginWithEmailAllowed,
      ...data,
    });
    ctx.status = status;
    ctx.type = 'html';
    ctx.set(pageSecurityHeaders());
    ctx.body = html;
  }

  async errorPage(ctx: Context, realm: RealmContext, messageKey: string, status = 400, locale = 'en', redirectUrl?: string): Promise<void> {
    await this.render(ctx, realm, 'error', {
      locale, message: { type: 'error', text: this.deps.pages.t(locale, messageKey) }, ...(redirectUrl ? { redirectUrl } : {}),
    }, status);
  }
}

export function createLoginRoutes(pages: LoginPages) {
  const { deps } = pages;
  const t = (locale: string, key: string): string => deps.pages.t(locale, key);

  /** Handles {issuer}/login-actions/{rest}. */
  return async function loginActions(ctx: Context, realm: RealmContext, issuer: string, provider: Provider, rest: string): Promise<void> {
    const match = /^\/([\w-]{1,64})(?:\/(username|password|login|consent|restart))?$/.exec(rest);
    if (!match) return pages.errorPage(ctx, realm, 'invalidRequestMessage', 404);
    const [, uid, step] = match as unknown as [string, string, string | undefined];
    const isPost = ctx.method === 'POST';
    if (isPost ? !['username', 'password', 'login', 'consent'].includes(step ?? '') : ctx.method !== 'GET' && ctx.method !== 'HEAD') {
      return pages.errorPage(ctx, realm, 'invalidRequestMessage', 405);
    }

    let interaction: Interaction;
    try {
      interaction = await provider.interactionDetails(ctx.req, ctx.res);
    } catch {
      // No interaction cookie (cookies off, another browser) or the interaction expired.
      return pages.errorPage(ctx, realm, 'cookieNotFoundMessage', 400);
    }
    if (interaction.uid !== uid) return pages.errorPage(ctx, realm, 'cookieNotFoundMessage', 400);

    const params = interaction.params as Record<string, unknown>;
    const locale = pages.locale(realm, ctx, params.ui_locales);
    const clientId = String(params.client_id ?? '');
    const client = await realm.client(clientId);
    const loginBase = `${new URL(issuer).pathname}/login-actions/${uid}`;
    const csrf = pages.csrfToken(realm, uid);
    const singlePage = loginFlow(realm.settings) === 'username-password';
    const actions = {
      username: `${loginBase}/username`, password: `${loginBase}/password`, login: `${loginBase}/login`,
      consent: `${loginBase}/consent`, restart: `${loginBase}/restart`,
    };
    const common = { locale, csrf, actions, rememberMeAllowed: realm.settings.rememberMe };

    const finish = async (result: Record<string, unknown>): Promise<void> => {
      const returnTo = await provider.interactionResult(ctx.req, ctx.res, result, { mergeWithLastSubmission: false });
      ctx.status = 303;
      ctx.redirect(returnTo);
    };

    let form: Record<string, unknown> = {};
    if (isPost) {
      try {
        form = await readForm(ctx);
      } catch (error) {
        if (error instanceof BodyError) return pages.errorPage(ctx, realm, 'invalidRequestMessage', error.status, locale);
        throw error;
      }
      if (!pages.csrfValid(realm, uid, form.csrf)) {
        deps.event(realm, { type: 'LOGIN_ERROR', clientId, ipAddress: ctx.ip, error: 'invalid_code', details: { reason: 'csrf token missing or wrong' } });
        return pages.errorPage(ctx, realm, 'pageExpiredMessage1', 403, locale);
      }
    }
    const text = (name: string, max: number): string => {
      const value = form[name];
      return typeof value === 'string' ? value.slice(0, max) : '';
    };

    if (interaction.prompt.name === 'consent') {
      // Clients without consentRequired approve themselves (e.g. prompt=consent added for offline_access).
      if (!client?.row.consent_required || (isPost && step === 'consent' && form.accept === 'yes')) {
        return finish({ consent: { grantId: await grantConsent(provider, interaction) } });
      }
      if (isPost && step === 'consent') {
        deps.event(realm, { type: 'LOGIN_ERROR', clientId, userId: interaction.session?.accountId, ipAddress: ctx.ip, error: 'consent_denied' });
        return finish({ error: 'access_denied', error_description: 'User denied consent' });
      }
      const details = interaction.prompt.details as { missingOIDCScope?: string[] };
      const scopes = (details.missingOIDCScope ?? []).filter((s) => s !== 'openid').map((name) => ({ name }));
      return pages.render(ctx, realm, 'consent', { ...common, clientName: client.row.name || client.clientId, scopes });
    }
    if (interaction.prompt.name !== 'login') return pages.errorPage(ctx, realm, 'invalidRequestMessage', 400, locale);

    const loginHint = typeof params.login_hint === 'string' ? params.login_hint.slice(0, MAX_USERNAME) : '';
    if (!isPost) {
      return pages.render(ctx, realm, singlePage ? 'login' : 'login-username', { ...common, username: step === 'restart' ? '' : loginHint });
    }

    const username = text('username', MAX_USERNAME).trim();
    const rememberMe = realm.settings.rememberMe && form.rememberMe === 'on';
    if (step === 'username') {
      if (!username) return pages.render(ctx, realm, 'login-username', { ...common, errors: { username: t(locale, 'missingUsernameMessage') } }, 400);
      // Known or not, every username gets the password page: nothing is revealed here.
      return pages.render(ctx, realm, 'login-password', { ...common, username, rememberMe });
    }
    if (step !== 'password' && step !== 'login') return pages.errorPage(ctx, realm, 'invalidRequestMessage', 400, locale);

    const page: PageName = step === 'login' ? 'login' : 'login-password';
    if (!username) return pages.render(ctx, realm, step === 'login' ? 'login' : 'login-username', { ...common, errors: { username: t(locale, 'missingUsernameMessage') } }, 400);
    const password = text('password', MAX_PASSWORD);
    if (!password) return pages.render(ctx, realm, page, { ...common, username, rememberMe, errors: { password: t(locale, 'missingPasswordMessage') } }, 400);

    const details = { auth_method: 'openid-connect', auth_type: 'code', redirect_uri: String(params.redirect_uri ?? ''), username };
    const result = await authenticatePassword(realm, username, password);
    if (!result.ok) {
      deps.event(realm, { type: 'LOGIN_ERROR', clientId, userId: result.user?.id, ipAddress: ctx.ip, error: result.error, details });
      const messageKey = result.error === 'user_disabled' ? 'accountDisabledMessage' : 'invalidUserMessage';
      return pages.render(ctx, realm, page, { ...common, username, rememberMe, errors: { password: t(locale, messageKey) } }, 401);
    }
    const { user } = result;
    if (user.required_actions.length > 0) {
      // Required actions (update password, configure OTP...) come with the login authenticators.
      deps.event(realm, { type: 'LOGIN_ERROR', clientId, userId: user.id, ipAddress: ctx.ip, error: 'resolve_required_actions', details });
      return pages.render(ctx, realm, page, { ...common, username, message: { type: 'error', text: t(locale, 'accountNotSetUpMessage') } }, 403);
    }

    // Another user on this browser: their SSO session ends before this one starts.
    const previous = interaction.session;
    if (previous?.accountId && previous.accountId !== user.id && previous.uid) {
      await endSsoSession(realm, issuer, previous.uid, deps.logger);
      deps.event(realm, { type: 'LOGOUT', userId: previous.accountId, sessionId: previous.uid, ipAddress: ctx.ip, details: { reason: 'another user logged in' } });
      interaction.session = undefined;
      await interaction.save(Math.max(interaction.exp - Math.floor(Date.now() / 1000), 1));
    }
    const extras: LoginResultExtras = { username, ipAddress: ctx.ip };
    return finish({
      login: { accountId: user.id, remember: rememberMe, ts: Math.floor(Date.now() / 1000), acr: '1', amr: ['pwd'], ...extras },
    });
  };
}

/** Adds what the client asked for to its grant (the one of this session, or a new one). */
async function grantConsent(provider: Provider, interaction: Interaction): Promise<string> {
  const { prompt: { details }, params, session } = interaction;
  const accountId = session!.accountId;
  let grant = interaction.grantId ? await provider.Grant.find(interaction.grantId) : undefined;
  grant ??= new provider.Grant({ accountId, clientId: String(params.client_id) });
  const missing = details as { missingOIDCScope?: string[]; missingOIDCClaims?: string[]; missingResourceScopes?: Record<string, string[]> };
  const scope = typeof params.scope === 'string' ? params.scope : 'openid';
  grant.addOIDCScope(missing.missingOIDCScope?.join(' ') || scope);
  if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
  for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes ?? {})) grant.addResourceScope(indicator, scopes.join(' '));
  grant.addResourceScope(REALM_RESOURCE, scope);
  return grant.save();
}
