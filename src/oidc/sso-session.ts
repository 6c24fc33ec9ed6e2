// How oidc-provider's browser session maps onto Cloakroom's user sessions. oidc-provider keeps
// the SSO cookie and its Session row; the user_sessions row (same id: the session's uid) carries
// Keycloak's lifecycle: idle and max lifespans, remember-me, logout. The login prompt gets one
// more check, which starts the user session right after a login and otherwise asks for a new
// login when the user session has ended. Two more checks serve kc_action (application-initiated
// actions, src/login/application-initiated-actions.ts): a login too old for the action asks for
// the password again, and an action not yet run in this request sends the user to its page.
import { interactionPolicy, type Configuration, type KoaContextWithOIDC } from 'oidc-provider';

import type { BrokerSessionNote } from '../broker/login-handoff.ts';
import { aiaOutcome, maxAuthAge, requestedAction } from '../login/application-initiated-actions.ts';
import type { LoginEvent } from '../events/events.ts';
import type { RealmContext } from '../realms/context.ts';
import { ssoSessionLifespans } from '../realms/settings.ts';
import { touchUserSession } from '../store/sessions.ts';
import { startUserSession } from './session-tokens.ts';

/** What the login pages put into oidc-provider's login result besides accountId. */
export type LoginResultExtras = { username: string; ipAddress: string; /** Signed in through an identity provider. */ broker?: BrokerSessionNote };

type LoginResult = { accountId: string; remember?: boolean; ts?: number } & Partial<LoginResultExtras>;

/**
 * Marks an interaction result whose `login` was carried over from an earlier step of the same
 * authorization (the login pages merge each result with the last one, as oidc-provider's
 * mergeWithLastSubmission does, so requested prompts stay answered): that login's user session
 * already started.
 */
export const CARRIED_LOGIN = 'cloakroomCarriedLogin';

export function interactionPolicyFor(realm: RealmContext, record: (realm: RealmContext, event: LoginEvent) => void): ReturnType<typeof interactionPolicy.base> {
  const policy = interactionPolicy.base();
  // prompt=create (OpenID Connect Prompt Create; Keycloak's registrations endpoint): the login pages
  // start at the registration page. A requestable prompt is pending until the interaction result
  // names it: the login pages add `create` to any login of such a request.
  policy.add(new interactionPolicy.Prompt({ name: 'create', requestable: true }), 0);
  const login = policy.get('login');
  login?.checks.add(new interactionPolicy.Check('sso_session_ended', 'the SSO session has ended', async (ctx: KoaContextWithOIDC) => {
    const session = ctx.oidc.session;
    if (!session?.accountId) return interactionPolicy.Check.NO_NEED_TO_PROMPT; // no_session asks for a login
    const result = ctx.oidc.result as { login?: LoginResult; [CARRIED_LOGIN]?: boolean } | undefined;
    const fresh = result?.[CARRIED_LOGIN] ? undefined : result?.login;
    if (fresh && fresh.accountId === session.accountId) {
      await startUserSession(realm, {
        id: session.uid, userId: session.accountId, loginUsername: fresh.username ?? '', ipAddress: fresh.ipAddress ?? ctx.ip,
        rememberMe: !session.transient, authTime: session.loginTs ?? Math.floor(Date.now() / 1000),
      });
      if (fresh.broker) await recordBrokerSession(realm, session.uid, session.accountId, fresh.broker);
      record(realm, loginEvent(ctx, session.accountId, session.uid, fresh.username, fresh.broker));
      return interactionPolicy.Check.NO_NEED_TO_PROMPT;
    }
    const alive = await touchUserSession(realm.db, { realmId: realm.id, id: session.uid, offline: false }, (remember) => ssoSessionLifespans(realm.settings, remember));
    if (!alive || alive.user_id !== session.accountId) return interactionPolicy.Check.REQUEST_PROMPT;
    // Keycloak's acr: "1" right after an authentication, "0" when the SSO cookie was reused. A
    // request resuming from another step (consent) keeps what its first pass decided.
    if (!ctx.oidc.result) {
      session.acr = '0';
      record(realm, loginEvent(ctx, session.accountId, session.uid, alive.login_username));
    }
    return interactionPolicy.Check.NO_NEED_TO_PROMPT;
  }));
  login?.checks.add(new interactionPolicy.Check('kc_action_reauthenticate', 'the requested action needs a fresh login', 'login_required', async (ctx: KoaContextWithOIDC) => {
    const { session, result } = ctx.oidc;
    if (!session?.accountId || (result as { login?: unknown } | undefined)?.login || aiaOutcome(result)) return interactionPolicy.Check.NO_NEED_TO_PROMPT;
    const action = requestedAction(realm.settings, ctx.oidc.params as Record<string, unknown>);
    if (!action) return interactionPolicy.Check.NO_NEED_TO_PROMPT;
    return session.past(await maxAuthAge(realm, action, session.accountId));
  }));
  login?.checks.add(new interactionPolicy.Check('kc_action', 'the requested action needs the end-user', 'interaction_required', (ctx: KoaContextWithOIDC) => {
    if (aiaOutcome(ctx.oidc.result)) return interactionPolicy.Check.NO_NEED_TO_PROMPT;
    return requestedAction(realm.settings, ctx.oidc.params as Record<string, unknown>) !== undefined;
  }));
  return policy;
}

/**
 * Clients without consentRequired never see a consent page: their grant covers whatever they ask
 * for. Clients with it keep the grant the user consented to (Keycloak's user consents).
 */
export function loadExistingGrantFor(realm: RealmContext, resource: string): NonNullable<Configuration['loadExistingGrant']> {
  return async (ctx) => {
    const clientId = ctx.oidc.client!.clientId;
    const accountId = ctx.oidc.session!.accountId!;
    const grantId = (ctx.oidc.result as { consent?: { grantId?: string } } | undefined)?.consent?.grantId
      || ctx.oidc.session!.grantIdFor(clientId);
    const client = await realm.client(clientId);
    let grant = grantId ? await ctx.oidc.provider.Grant.find(grantId) : undefined;
    if (grant && grant.accountId !== accountId) grant = undefined;
    if (client?.row.consent_required) return grant;
    grant ??= new ctx.oidc.provider.Grant({ clientId, accountId });
    const scope = [...ctx.oidc.requestParamScopes].join(' ');
    if (scope) {
      grant.addOIDCScope(scope);
      grant.addResourceScope(resource, scope);
    }
    await grant.save();
    return grant;
  };
}

function loginEvent(ctx: KoaContextWithOIDC, userId: string, sessionId: string, username: string | undefined, broker?: BrokerSessionNote): LoginEvent {
  const params = ctx.oidc.params as Record<string, unknown>;
  return {
    type: 'LOGIN', clientId: ctx.oidc.client?.clientId, userId, sessionId, ipAddress: ctx.ip,
    details: {
      auth_method: 'openid-connect', auth_type: 'code', redirect_uri: params.redirect_uri, username, response_type: params.response_type,
      ...(broker ? { identity_provider: broker.alias, identity_provider_identity: broker.externalUserId } : {}),
    },
  };
}

/** Which upstream session this user session came from (logout propagation, SAML single logout). */
async function recordBrokerSession(realm: RealmContext, sessionId: string, userId: string, note: BrokerSessionNote): Promise<void> {
  await realm.db.insertInto('broker_sessions').values({
    session_id: sessionId, realm_id: realm.id, identity_provider: note.alias, user_id: userId, external_user_id: note.externalUserId,
    external_session: note.externalSession ?? null, data_sealed: note.dataSealed ?? null,
  }).onConflict((oc) => oc.columns(['realm_id', 'session_id']).doUpdateSet({
    identity_provider: note.alias, user_id: userId, external_user_id: note.externalUserId,
    external_session: note.externalSession ?? null, data_sealed: note.dataSealed ?? null,
  })).execute();
}
