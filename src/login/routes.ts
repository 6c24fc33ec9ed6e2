// Hosted login pages: {issuer}/login-actions/{uid}[/step]. oidc-provider sends the browser here
// with an interaction (its cookie is scoped to this path); each step renders a page or finishes the
// interaction with a login or consent result and sends the browser back to the authorization
// endpoint. Every POST carries a CSRF token bound to the interaction.
import crypto, { type KeyObject } from 'node:crypto';

import type { Context } from 'koa';
import type Provider from 'oidc-provider';

import { safeEqual } from '../crypto/random.ts';
import type { LoginEvent } from '../events/events.ts';
import { readForm, BodyError } from '../http/body.ts';
import type { Logger } from '../observability/logger.ts';
import { REALM_RESOURCE } from '../oidc/provider.ts';
import { endSsoSession } from '../oidc/session-end.ts';
import { CARRIED_LOGIN, type LoginResultExtras } from '../oidc/sso-session.ts';
import type { RealmContext } from '../realms/context.ts';
import { loginFlow } from '../realms/settings.ts';
import { findUserById } from '../store/users.ts';
import { createBrokerRequest } from '../broker/broker-requests.ts';
import { brokerLogin, linkExistingUser, type BrokerLoginOutcome } from '../broker/first-login.ts';
import { enabledBrokerProvider, loginPageProviders, type BrokerProvider } from '../broker/identity-providers.ts';
import { brokerSessionNote, takeBrokeredIdentity, type BrokerSessionNote } from '../broker/login-handoff.ts';
import { brokerLoginUrl } from '../broker/urls.ts';
import { BrokerError, type BrokeredIdentity } from '../broker/types.ts';
import type { User } from '../store/schema.ts';
import type { Mailer } from '../mail/mailer.ts';
import { createActionTokenPage } from './action-token-page.ts';
import { AIA_RESULT_KEY, requestedAction, type AiaOutcome } from './application-initiated-actions.ts';
import { authenticatePassword, type LoginFailure } from './authenticate.ts';
import { registerUser, registrationInput, type RegistrationValues } from './registration.ts';
import { lockoutEvent, lockoutState, recordLoginFailure, recordLoginSuccess } from './brute-force.ts';
import { realmLoginAuthenticator } from './login-authenticators.ts';
import { listOtpDevices, verifyOtp } from './otp.ts';
import { pageSecurityHeaders, type PageData, type PageName, type PageRenderer } from './pages.ts';
import { createResetCredentialsRoutes, resetPasswordAllowed } from './reset-credentials.ts';
import {
  enterRequiredAction, matchingDevices, pendingRequiredActions, renderRequiredAction, submitRequiredAction, type ActionPageContext,
} from './required-action-pages.ts';

export type LoginDeps = {
  pages: PageRenderer;
  logger: Logger;
  event(realm: RealmContext, event: LoginEvent): void;
  /** KC_HTTP_RELATIVE_PATH ('' or '/auth'). */
  basePath: string;
  mailer: Mailer;
};

type Interaction = Awaited<ReturnType<Provider['interactionDetails']>>;

/** Keycloak's cookie for the language chosen on the login pages. */
const LOCALE_COOKIE = 'KEYCLOAK_LOCALE';

const supportedLocales = (realm: RealmContext): string[] =>
  (realm.settings.supportedLocales.length > 0 ? realm.settings.supportedLocales : [realm.settings.defaultLocale || 'en']);

const MAX_USERNAME = 255;
const MAX_PASSWORD = 1024;

/** Page plumbing shared by the login and logout pages. */
export class LoginPages {
  readonly deps: LoginDeps;
  readonly #csrfKeys = new WeakMap<RealmContext, KeyObject>();
  constructor(deps: LoginDeps) {
    this.deps = deps;
  }

  /** CSRF token for forms bound to `binding` (an interaction uid, a session uid). */
  csrfToken(realm: RealmContext, binding: string): string {
    let key = this.#csrfKeys.get(realm);
    if (!key) {
      // Derived once per realm context: HKDF and a raw-key HMAC cost ~40 µs a call.
      key = crypto.createSecretKey(realm.box.derive(`csrf:${realm.id}`));
      this.#csrfKeys.set(realm, key);
    }
    return crypto.createHmac('sha256', key).update(binding).digest('base64url');
  }

  csrfValid(realm: RealmContext, binding: string, presented: unknown): boolean {
    return typeof presented === 'string' && safeEqual(presented, this.csrfToken(realm, binding));
  }

  /**
   * Keycloak's LocaleSelector among the realm's supported locales: `kc_locale` (the language menu;
   * remembered in the KEYCLOAK_LOCALE cookie), that cookie, `ui_locales`, the browser's languages.
   */
  locale(realm: RealmContext, ctx: Context, uiLocales?: unknown): string {
    const { settings } = realm;
    const fallback = settings.defaultLocale || 'en';
    if (!settings.internationalizationEnabled) return fallback;
    const supported = supportedLocales(realm);
    const pick = (tag: string): string | undefined =>
      supported.find((s) => s.toLowerCase() === tag.toLowerCase()) ?? supported.find((s) => s.toLowerCase() === tag.split('-')[0]?.toLowerCase());
    const chosen = typeof ctx.query.kc_locale === 'string' ? pick(ctx.query.kc_locale) : undefined;
    if (chosen) {
      ctx.cookies.set(LOCALE_COOKIE, chosen, { path: `${this.deps.basePath}/realms/${realm.name}/`, httpOnly: true, sameSite: 'lax', signed: false, overwrite: true });
      return chosen;
    }
    const wanted = [
      ctx.cookies.get(LOCALE_COOKIE) ?? '',
      ...(typeof uiLocales === 'string' ? uiLocales.split(' ') : []),
      ...ctx.acceptsLanguages(),
    ];
    for (const tag of wanted) {
      const found = tag === '' ? undefined : pick(tag);
      if (found) return found;
    }
    return fallback;
  }

  /** The language menu of the login pages: `page` again with kc_locale, when the realm offers more than one. */
  localeLinks(realm: RealmContext, page: string, current: string): NonNullable<PageData['locales']> {
    if (!realm.settings.internationalizationEnabled) return [];
    const supported = supportedLocales(realm);
    if (supported.length < 2) return [];
    return supported.map((tag) => {
      const label = this.deps.pages.t(current, `locale_${tag}`);
      return { tag, label: label === `locale_${tag}` ? tag : label, url: `${page}?kc_locale=${encodeURIComponent(tag)}`, current: tag === current };
    });
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

  /** CXone tells users whenever their password changes. Sent in the background; failures are logged. */
  notifyPasswordChanged(realm: RealmContext, user: User, locale: string): void {
    if (!user.email) return;
    this.deps.mailer.send(realm, {
      to: user.email, template: 'password-updated', locale,
      data: {
        realmName: realm.name, ...(realm.realm.display_name ? { realmDisplayName: realm.realm.display_name } : {}),
        user: { username: user.username, firstName: user.first_name, lastName: user.last_name, email: user.email },
      },
    }).catch((err: unknown) => this.deps.logger.warn({ err, realm: realm.name, userId: user.id }, 'could not send the password-changed e-mail'));
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
  // --- forgot password and e-mailed links (reset-credentials.ts, action-token-page.ts) ---
  const resetCredentials = createResetCredentialsRoutes(pages);
  const actionTokenPage = createActionTokenPage(pages);

  /** Handles {issuer}/login-actions/{rest}. */
  return async function loginActions(ctx: Context, realm: RealmContext, issuer: string, provider: Provider, rest: string): Promise<void> {
    // E-mailed links need no interaction (they may be opened in another browser).
    if (rest === '/action-token') return actionTokenPage(ctx, realm, issuer);
    const match = /^\/([\w-]{1,64})(?:\/(username|password|login|consent|restart|otp|action|reset-credentials|broker|broker-link|registration))?$/.exec(rest);
    if (!match) return pages.errorPage(ctx, realm, 'invalidRequestMessage', 404);
    const [, uid, step] = match as unknown as [string, string, string | undefined];
    const isPost = ctx.method === 'POST';
    if (isPost ? !['username', 'password', 'login', 'consent', 'otp', 'action', 'reset-credentials', 'broker-link', 'registration'].includes(step ?? '') : ctx.method !== 'GET' && ctx.method !== 'HEAD') {
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
      consent: `${loginBase}/consent`, restart: `${loginBase}/restart`, otp: `${loginBase}/otp`, action: `${loginBase}/action`,
      brokerLink: `${loginBase}/broker-link`,
      ...(resetPasswordAllowed(realm) ? { resetCredentials: `${loginBase}/reset-credentials` } : {}),
      ...(realm.settings.registrationAllowed ? { registration: `${loginBase}/registration` } : {}),
    };
    const identityProviders = (await loginPageProviders(realm)).map((p) => ({
      alias: p.alias, displayName: p.row.display_name || p.alias, loginUrl: brokerLoginUrl(issuer, p.alias, uid),
    }));
    const common = { locale, csrf, actions, rememberMeAllowed: realm.settings.rememberMe, identityProviders, locales: pages.localeLinks(realm, loginBase, locale) };

    const finish = async (result: Record<string, unknown>): Promise<void> => {
      // provider.interactionResult(...) on the interaction this request already read: it would read
      // the interaction (and its session) again. Merged with the last step's result as oidc-provider
      // merges it, so what that step answered (prompt=login or create, a kc_action outcome) stays
      // answered after a consent step; a login carried over is marked, its session already started.
      const { [CARRIED_LOGIN]: _mark, ...previous } = (interaction.lastSubmission ?? {}) as Record<string, unknown>;
      interaction.result = { ...previous, ...result, ...(previous.login && !('login' in result) ? { [CARRIED_LOGIN]: true } : {}) };
      await interaction.save(Math.max(interaction.exp - Math.floor(Date.now() / 1000), 1));
      ctx.status = 303;
      ctx.redirect(interaction.returnTo);
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
    // prompt=create (registration) is a login that starts on the registration page.
    if (interaction.prompt.name !== 'login' && interaction.prompt.name !== 'create') return pages.errorPage(ctx, realm, 'invalidRequestMessage', 400, locale);

    if (step === 'reset-credentials') {
      return resetCredentials({
        ctx, realm, issuer, locale, csrf, clientId, formAction: `${loginBase}/reset-credentials`, loginUrl: actions.restart,
        ...(isPost ? { form } : { username: typeof params.login_hint === 'string' ? params.login_hint : '' }),
      });
    }

    const loginHint = typeof params.login_hint === 'string' ? params.login_hint.slice(0, MAX_USERNAME) : '';
    const flow = flowState(interaction);
    // kc_action (application-initiated-actions.ts): with a live SSO session the login prompt may
    // ask only for the action (reason kc_action) or for the password first (kc_action_reauthenticate).
    const aiaAction = requestedAction(realm.settings, params)?.alias;
    const aiaState: Pick<FlowState, 'aia'> = aiaAction ? { aia: { action: aiaAction } } : {};
    const ssoUserId = interaction.session?.accountId;
    const reasons = interaction.prompt.reasons;
    const aiaReasonsOnly = ssoUserId !== undefined && aiaAction !== undefined
      && reasons.every((r) => r === 'kc_action' || r === 'kc_action_reauthenticate');
    const reauthenticate = aiaReasonsOnly && reasons.includes('kc_action_reauthenticate');

    // --- identity brokering (src/broker/): a provider's validated identity arrives here --------
    const handoff = step === 'broker' ? ctx.query.code
      : !flow && !step && typeof params.broker_handoff === 'string' ? params.broker_handoff : undefined;
    if (handoff !== undefined && ctx.method === 'GET') {
      const taken = await takeBrokeredIdentity(realm, typeof handoff === 'string' ? handoff : '', { uid, clientId });
      if ('error' in taken) {
        deps.event(realm, { type: 'IDENTITY_PROVIDER_LOGIN_ERROR', clientId, ipAddress: ctx.ip, error: taken.error, details: { reason: taken.reason } });
        return pages.render(ctx, realm, 'error', { locale, loginUrl: actions.restart, message: { type: 'error', text: t(locale, taken.messageKey) } }, 400);
      }
      return brokeredLogin(taken.provider, taken.identity);
    }
    if (flow?.link && step !== 'restart') {
      // An existing account matched: the user proves it before the link is made.
      if (isPost && step === 'broker-link') return confirmLink(flow, flow.link);
      return renderLink(flow);
    }
    if (step === 'broker-link') return pages.errorPage(ctx, realm, 'invalidRequestMessage', 400, locale);
    if (!flow && !step && !isPost && typeof params.kc_idp_hint === 'string' && params.kc_idp_hint !== '') {
      // kc_idp_hint skips the login page for an enabled provider; an unknown hint shows the page.
      const hinted = await enabledBrokerProvider(realm, params.kc_idp_hint);
      if (hinted && !hinted.row.link_only) {
        ctx.status = 303;
        return ctx.redirect(brokerLoginUrl(issuer, hinted.alias, uid));
      }
    }
    // --- end identity brokering ---------------------------------------------------------------

    // The signed-in user runs the action their application asked for; no login is repeated.
    if (!flow && aiaReasonsOnly && !reauthenticate && !isPost && !step) {
      const user = await findUserById(realm.db, realm.id, ssoUserId);
      if (user?.enabled) {
        const state: FlowState = { userId: user.id, username: user.username, rememberMe: false, amr: [], stage: 'actions', entered: [], sso: true, ...aiaState };
        const authenticator = await realmLoginAuthenticator(realm, user);
        return continueFlow(state, actionPageFor(user, authenticator));
      }
    }

    // After the password: the OTP step and required actions of the user authenticated so far.
    if (flow && !flow.link && step !== 'restart') {
      const user = await findUserById(realm.db, realm.id, flow.userId);
      if (!user || !user.enabled) return restartFlow();
      const authenticator = await realmLoginAuthenticator(realm, user);
      const page = actionPageFor(user, authenticator);
      if (flow.stage === 'otp') {
        if (isPost && step === 'otp') return submitOtp(flow, page);
        return renderOtp(page);
      }
      if (isPost && step === 'action') {
        const [current] = await pendingRequiredActions(realm, user, authenticator, undefined, { brokered: flow.broker !== undefined });
        // A stale form (another tab already completed it) just shows what is due now.
        if (current && form.requiredAction === current) {
          const outcome = await submitRequiredAction({ ...page, hidden: { requiredAction: current } }, current, form);
          if (outcome === 'rendered') return;
          if (outcome === 'cancelled') return finish({ error: 'access_denied', error_description: 'User declined the required action' });
          // The user had the requested action pending: it ran in its turn, not cancellable.
          if (flow.aia?.action === current && !flow.aia.status) return continueFlow(await savedFlow({ ...flow, aia: { action: current, status: 'success' } }), page);
        } else if (!current && flow.aia && !flow.aia.status && form.requiredAction === flow.aia.action) {
          return submitRequestedAction(flow, { ...page, hidden: { requiredAction: flow.aia.action }, applicationInitiated: true }, flow.aia.action);
        }
      }
      return continueFlow(flow, page);
    }
    if (flow && step === 'restart') await saveFlow(undefined);

    // Self-registration (registration.ts): the login page's link, the registrations endpoint and prompt=create.
    if (step === 'registration' || (!step && !isPost && interaction.prompt.name === 'create')) {
      if (!realm.settings.registrationAllowed) return pages.errorPage(ctx, realm, 'registrationNotAllowedMessage', 400, locale);
      return isPost ? submitRegistration() : renderRegistration();
    }

    // A login too old for the requested action: the same user enters their password again.
    const reauthenticating = reauthenticate ? await findUserById(realm.db, realm.id, ssoUserId) : undefined;
    if (!isPost) {
      if (reauthenticating) {
        return pages.render(ctx, realm, 'login-password', { ...common, username: reauthenticating.username, message: { type: 'info', text: t(locale, 'reauthenticate') } });
      }
      return pages.render(ctx, realm, singlePage ? 'login' : 'login-username', { ...common, username: step === 'restart' ? '' : loginHint });
    }

    const username = reauthenticating?.username ?? text('username', MAX_USERNAME).trim();
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
    // Failures are cleared only once every factor succeeded, so OTP guesses count towards a lockout.
    const result = await authenticatePassword(realm, username, password, ctx.ip, { clearFailuresOnSuccess: false });
    if (!result.ok) {
      deps.event(realm, { type: 'LOGIN_ERROR', clientId, userId: result.user?.id, ipAddress: ctx.ip, error: result.error, details });
      if (result.lockoutEvent) deps.event(realm, { ...result.lockoutEvent, clientId });
      // Only a correct password of a disabled (not locked) account learns that it is disabled.
      const messageKey = result.error === 'user_disabled' && !result.locked ? 'accountDisabledMessage' : FAILURE_MESSAGES[result.error] ?? 'invalidUserMessage';
      const unavailable = result.error === 'ldap_unavailable' || result.error === 'finesse_unavailable';
      return pages.render(ctx, realm, page, { ...common, username, rememberMe, errors: { password: t(locale, messageKey) } }, unavailable ? 503 : 401);
    }
    const { user, authenticator } = result;
    const devices = result.hasOtp ? matchingDevices(await listOtpDevices(realm.db, user.id), authenticator) : [];
    const state: FlowState = { userId: user.id, username, rememberMe, amr: ['pwd'], stage: devices.length > 0 ? 'otp' : 'actions', entered: [], ...aiaState };
    const actionPage = actionPageFor(user, authenticator);
    // The flow state is saved before a page shows: the OTP page here, and continueFlow saves a
    // state (none entered yet) before its first required action. A login that finishes now
    // saves only its result.
    if (state.stage === 'otp') {
      await saveFlow(state);
      return renderOtp(actionPage);
    }
    await recordLoginSuccess(realm.db, realm.id, user.id, authenticator.settings);
    return continueFlow(state, actionPage);

    // --- registration ---------------------------------------------------------------------------

    async function renderRegistration(values?: RegistrationValues, errors?: Record<string, string>): Promise<void> {
      return pages.render(ctx, realm, 'register', {
        ...common, registrationEmailAsUsername: realm.settings.registrationEmailAsUsername,
        registration: values ?? { username: '', email: '', firstName: '', lastName: '' }, ...(errors ? { errors } : {}),
      }, errors ? 400 : 200);
    }

    /** Creates the user and signs them in: their required actions (and a requested kc_action) follow. */
    async function submitRegistration(): Promise<void> {
      const input = registrationInput(form, realm.settings.registrationEmailAsUsername);
      const { password: _password, passwordConfirm: _confirm, ...values } = input;
      const details = {
        auth_method: 'openid-connect', auth_type: 'code', register_method: 'form', redirect_uri: String(params.redirect_uri ?? ''),
        username: input.username, email: input.email, first_name: input.firstName, last_name: input.lastName,
      };
      const outcome = await registerUser(realm, input);
      if (!outcome.ok) {
        deps.event(realm, { type: 'REGISTER_ERROR', clientId, ipAddress: ctx.ip, error: outcome.error, details });
        // Arguments that name a field (error-person-name-invalid-character) show its label.
        const errors = Object.fromEntries(Object.entries(outcome.errors).map(([field, e]) => [field, deps.pages.t(locale, e.key, ...e.params.map((p) => t(locale, p)))]));
        return renderRegistration(values, errors);
      }
      const { user, authenticator } = outcome;
      deps.event(realm, { type: 'REGISTER', clientId, userId: user.id, ipAddress: ctx.ip, details });
      const state: FlowState = { userId: user.id, username: user.username, rememberMe: false, amr: ['pwd'], stage: 'actions', entered: [], ...aiaState };
      return continueFlow(state, actionPageFor(user, authenticator));
    }

    // --- steps after the password -------------------------------------------------------------

    /** The required-action pages' context for this user; their SSO session on this browser is the one kept. */
    function actionPageFor(user: User, authenticator: ActionPageContext['authenticator']): ActionPageContext {
      const currentSessionId = interaction.session?.accountId === user.id ? interaction.session.uid : undefined;
      return { pages, ctx, realm, user, authenticator, locale, csrf, formAction: actions.action, clientId, issuer, ...(currentSessionId ? { currentSessionId } : {}) };
    }

    async function saveFlow(next: FlowState | undefined): Promise<void> {
      interaction.result = next ? { [FLOW_KEY]: next } : undefined;
      await interaction.save(Math.max(interaction.exp - Math.floor(Date.now() / 1000), 1));
    }

    async function savedFlow(next: FlowState): Promise<FlowState> {
      await saveFlow(next);
      return next;
    }

    async function restartFlow(): Promise<void> {
      await saveFlow(undefined);
      return pages.render(ctx, realm, singlePage ? 'login' : 'login-username', { ...common, username: '', message: { type: 'error', text: t(locale, 'invalidUserMessage') } }, 400);
    }

    async function renderOtp(actionPage: ActionPageContext, error?: string): Promise<void> {
      const devices = matchingDevices(await listOtpDevices(realm.db, actionPage.user.id), actionPage.authenticator);
      return pages.render(ctx, realm, 'login-otp', {
        ...common, username: actionPage.user.username,
        devices: devices.map((d) => ({ id: d.id, label: d.label || t(locale, 'defaultOtpLabel') })),
        ...(error ? { errors: { totp: error } } : {}),
      }, error ? 401 : 200);
    }

    async function submitOtp(state: FlowState, actionPage: ActionPageContext): Promise<void> {
      const { user, authenticator } = actionPage;
      const code = text('totp', 16).replace(/\s+/g, '');
      const devices = matchingDevices(await listOtpDevices(realm.db, user.id), authenticator);
      const chosen = typeof form.selectedCredentialId === 'string' && devices.some((d) => d.id === form.selectedCredentialId) ? form.selectedCredentialId : undefined;
      const otpDetails = { auth_method: 'openid-connect', auth_type: 'code', redirect_uri: String(params.redirect_uri ?? ''), username: user.username };
      if (!code) return renderOtp(actionPage, t(locale, 'missingTotpMessage'));
      // A locked account cannot try codes either; it sees the same answer as a wrong code.
      const locked = (await lockoutState(realm.db, realm.id, user, authenticator.settings)) !== 'none';
      const verified = locked ? { ok: false as const } : await verifyOtp(realm.db, realm.box, {
        userId: user.id, code, settings: authenticator.settings, ...(chosen ? { credentialId: chosen } : {}),
      });
      if (!verified.ok || !devices.some((d) => d.id === verified.credentialId)) {
        deps.event(realm, { type: 'LOGIN_ERROR', clientId, userId: user.id, ipAddress: ctx.ip, error: locked ? 'user_temporarily_disabled' : 'invalid_totp', details: otpDetails });
        if (!locked) {
          const event = lockoutEvent(user.id, ctx.ip, await recordLoginFailure(realm.db, realm.id, user, authenticator.settings, ctx.ip));
          if (event) deps.event(realm, { ...event, clientId });
        }
        return renderOtp(actionPage, t(locale, 'invalidTotpMessage'));
      }
      await recordLoginSuccess(realm.db, realm.id, user.id, authenticator.settings);
      const next: FlowState = { ...state, amr: [...state.amr, 'otp'], stage: 'actions' };
      await saveFlow(next);
      return continueFlow(next, actionPage);
    }

    /**
     * Required actions, then the one the application asked for (kc_action), then the login's
     * result. A state whose actions were entered is a saved one.
     */
    async function continueFlow(state: FlowState, actionPage: ActionPageContext): Promise<void> {
      const [current] = await pendingRequiredActions(realm, actionPage.user, actionPage.authenticator, undefined, { brokered: state.broker !== undefined });
      if (current === undefined && state.aia && !state.aia.status) {
        const requested = state.aia.action;
        if (!state.entered.includes(requested)) {
          await enterRequiredAction(actionPage, requested);
          await saveFlow({ ...state, entered: [...state.entered, requested] });
        }
        return renderRequiredAction({ ...actionPage, hidden: { requiredAction: requested }, applicationInitiated: true }, requested);
      }
      if (current === undefined) return finishLogin(state, actionPage.user);
      if (!state.entered.includes(current)) {
        await enterRequiredAction(actionPage, current);
        await saveFlow({ ...state, entered: [...state.entered, current] });
      }
      return renderRequiredAction({ ...actionPage, hidden: { requiredAction: current } }, current);
    }

    /** The requested action's form: done, cancelled (the login still completes), or shown again with its errors. */
    async function submitRequestedAction(state: FlowState, actionPage: ActionPageContext, action: string): Promise<void> {
      let status: AiaOutcome['status'];
      if (form['cancel-aia'] === 'true') {
        deps.event(realm, {
          type: 'CUSTOM_REQUIRED_ACTION_ERROR', clientId, userId: actionPage.user.id, ipAddress: ctx.ip, error: 'rejected_by_user',
          details: { custom_required_action: action },
        });
        status = 'cancelled';
      } else {
        const outcome = await submitRequiredAction(actionPage, action, form);
        if (outcome === 'rendered') return;
        status = outcome === 'done' ? 'success' : 'cancelled';
      }
      return continueFlow(await savedFlow({ ...state, aia: { action, status } }), actionPage);
    }

    // --- identity brokering ------------------------------------------------------------------

    async function brokerFailure(alias: string, error: string, reason: string, messageKey: string, userId?: string): Promise<void> {
      deps.event(realm, { type: 'IDENTITY_PROVIDER_LOGIN_ERROR', clientId, userId, ipAddress: ctx.ip, error, details: { identity_provider: alias, reason } });
      await saveFlow(undefined);
      return pages.render(ctx, realm, 'error', { locale, loginUrl: actions.restart, message: { type: 'error', text: t(locale, messageKey) } }, 400);
    }

    async function brokeredLogin(provider: BrokerProvider, identity: BrokeredIdentity): Promise<void> {
      const details = { identity_provider: provider.alias, identity_provider_identity: identity.username ?? identity.id };
      let outcome: BrokerLoginOutcome;
      try {
        outcome = await brokerLogin(realm, provider, identity);
      } catch (error) {
        if (error instanceof BrokerError) return brokerFailure(provider.alias, error.error, error.reason, 'identityProviderUnexpectedErrorMessage');
        throw error;
      }
      if (outcome.kind === 'refused') return brokerFailure(provider.alias, outcome.error, `${provider.alias}: ${outcome.error}`, outcome.messageKey, outcome.user?.id);
      if (outcome.kind === 'confirm-link') {
        const handoffId = await createBrokerRequest(realm, { alias: provider.alias, interactionUid: uid, clientId, identity });
        const state: FlowState = {
          userId: outcome.existing.id, username: outcome.existing.username, rememberMe: false, amr: [], stage: 'actions', entered: [], ...aiaState,
          link: { alias: provider.alias, handoffId, providerName: provider.row.display_name || provider.alias },
        };
        await saveFlow(state);
        return renderLink(state);
      }
      const { user } = outcome;
      if (outcome.created) {
        deps.event(realm, { type: 'REGISTER', clientId, userId: user.id, ipAddress: ctx.ip, details: { ...details, register_method: 'broker', username: user.username } });
      }
      if (outcome.linked) deps.event(realm, { type: 'FEDERATED_IDENTITY_LINK', clientId, userId: user.id, ipAddress: ctx.ip, details });
      deps.event(realm, { type: outcome.created || outcome.linked ? 'IDENTITY_PROVIDER_FIRST_LOGIN' : 'IDENTITY_PROVIDER_LOGIN', clientId, userId: user.id, ipAddress: ctx.ip, details });
      const state: FlowState = {
        userId: user.id, username: user.username, rememberMe: false, amr: ['fed'], stage: 'actions', entered: [], ...aiaState,
        broker: brokerSessionNote(realm, provider, identity),
      };
      await saveFlow(state);
      const authenticator = await realmLoginAuthenticator(realm, user);
      return continueFlow(state, actionPageFor(user, authenticator));
    }

    async function renderLink(state: FlowState, error?: string): Promise<void> {
      return pages.render(ctx, realm, 'login-broker-link', {
        ...common, username: state.username, providerName: state.link?.providerName ?? '', loginUrl: actions.restart,
        ...(error ? { errors: { password: error } } : {}),
      }, error ? 401 : 200);
    }

    async function confirmLink(state: FlowState, link: NonNullable<FlowState['link']>): Promise<void> {
      const password = text('password', MAX_PASSWORD);
      if (!password) return renderLink(state, t(locale, 'missingPasswordMessage'));
      const linkDetails = { auth_method: 'openid-connect', auth_type: 'code', username: state.username, identity_provider: link.alias };
      const result = await authenticatePassword(realm, state.username, password, ctx.ip, { clearFailuresOnSuccess: false });
      if (!result.ok || result.user.id !== state.userId) {
        deps.event(realm, { type: 'LOGIN_ERROR', clientId, userId: state.userId, ipAddress: ctx.ip, error: result.ok ? 'invalid_user_credentials' : result.error, details: linkDetails });
        if (!result.ok && result.lockoutEvent) deps.event(realm, { ...result.lockoutEvent, clientId });
        const key = !result.ok ? FAILURE_MESSAGES[result.error] ?? 'invalidUserMessage' : 'invalidUserMessage';
        return renderLink(state, t(locale, key));
      }
      const taken = await takeBrokeredIdentity(realm, link.handoffId, { uid, clientId });
      if ('error' in taken) return brokerFailure(link.alias, taken.error, taken.reason, taken.messageKey, state.userId);
      const { provider, identity } = taken;
      try {
        await linkExistingUser(realm, provider, identity, result.user.id);
      } catch (error) {
        if (error instanceof BrokerError) return brokerFailure(link.alias, error.error, error.reason, 'identityProviderUnexpectedErrorMessage', state.userId);
        throw error;
      }
      const details = { identity_provider: link.alias, identity_provider_identity: identity.username ?? identity.id };
      deps.event(realm, { type: 'FEDERATED_IDENTITY_LINK', clientId, userId: result.user.id, ipAddress: ctx.ip, details });
      deps.event(realm, { type: 'IDENTITY_PROVIDER_FIRST_LOGIN', clientId, userId: result.user.id, ipAddress: ctx.ip, details });
      const user = (await findUserById(realm.db, realm.id, result.user.id))!;
      const devices = result.hasOtp ? matchingDevices(await listOtpDevices(realm.db, user.id), result.authenticator) : [];
      const next: FlowState = {
        userId: user.id, username: user.username, rememberMe: false, amr: ['pwd', 'fed'], stage: devices.length > 0 ? 'otp' : 'actions', entered: [], ...aiaState,
        broker: brokerSessionNote(realm, provider, identity),
      };
      await saveFlow(next);
      const actionPage = actionPageFor(user, result.authenticator);
      if (next.stage === 'actions') await recordLoginSuccess(realm.db, realm.id, user.id, result.authenticator.settings);
      return next.stage === 'otp' ? renderOtp(actionPage) : continueFlow(next, actionPage);
    }

    async function finishLogin(state: FlowState, user: { id: string; enabled: boolean }): Promise<void> {
      if (!user.enabled) return restartFlow();
      const requested: Record<string, AiaOutcome> = state.aia ? { [AIA_RESULT_KEY]: { action: state.aia.action, status: state.aia.status ?? 'error' } } : {};
      // Signed in before this request: only the action's outcome; the SSO session stays as it is.
      if (state.sso) return finish(requested);
      // Another user on this browser: their SSO session ends before this one starts.
      const previous = interaction.session;
      if (previous?.accountId && previous.accountId !== user.id && previous.uid) {
        await endSsoSession(realm, issuer, previous.uid, deps.logger);
        deps.event(realm, { type: 'LOGOUT', userId: previous.accountId, sessionId: previous.uid, ipAddress: ctx.ip, details: { reason: 'another user logged in' } });
        interaction.session = undefined;
        await interaction.save(Math.max(interaction.exp - Math.floor(Date.now() / 1000), 1));
      }
      const extras: LoginResultExtras = { username: state.username, ipAddress: ctx.ip, ...(state.broker ? { broker: state.broker } : {}) };
      // prompt=create is answered by this login, whether the user registered or signed in instead.
      const created = String(params.prompt ?? '').split(' ').includes('create') ? { create: {} } : {};
      return finish({
        login: { accountId: user.id, remember: state.rememberMe, ts: Math.floor(Date.now() / 1000), acr: '1', amr: state.amr, ...extras },
        ...requested, ...created,
      });
    }
  };
}

/**
 * What a failed password step shows besides "Invalid username or password." (which every other
 * failure shows, so nothing is revealed): an address outside the authenticator's ranges, and a
 * user directory (LDAP, Cisco Finesse) that cannot be reached.
 */
const FAILURE_MESSAGES: Partial<Record<LoginFailure, string>> = {
  ip_not_allowed: 'ipNotAllowedMessage',
  ldap_unavailable: 'ldapUnavailableMessage',
  finesse_unavailable: 'finesseUnavailableMessage',
};

/** Where the login flow keeps its progress: in the interaction (server side), under this key. */
const FLOW_KEY = 'cloakroom';

type FlowState = {
  userId: string;
  username: string;
  rememberMe: boolean;
  /** Authentication methods used so far (pwd, otp). */
  amr: string[];
  stage: 'otp' | 'actions';
  /** Required actions already shown once (VERIFY_EMAIL sends its mail on entry). */
  entered: string[];
  /** Signed in through an identity provider: the upstream session, for logout. */
  broker?: BrokerSessionNote;
  /** An identity provider's identity waits to be linked to this (existing) user, who must sign in first. */
  link?: { alias: string; handoffId: string; providerName: string };
  /** The action the application asked for (kc_action) and, once it ran or was cancelled, how it ended. */
  aia?: { action: string; status?: AiaOutcome['status'] };
  /** The user was signed in before this request (SSO session): the flow ends without a new login. */
  sso?: boolean;
};

function flowState(interaction: Interaction): FlowState | undefined {
  const stored = (interaction.result as Record<string, unknown> | undefined)?.[FLOW_KEY] as FlowState | undefined;
  return stored && typeof stored.userId === 'string' ? stored : undefined;
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
