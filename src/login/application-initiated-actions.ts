// Keycloak's application-initiated actions (AIA): an authorization request with kc_action=<alias>
// (keycloak-js: `login({ action: 'UPDATE_PASSWORD' })`) has the user run that required action
// once, e.g. change their password from the agent desk, and then sends the browser back to the
// client with a code as usual plus `kc_action` and `kc_action_status` (success, cancelled, error).
// Semantics follow Keycloak 26.3+:
// - an action the realm has not registered and enabled, or that does not run on request, is not
//   an error of the request: the login completes and the client learns kc_action_status=error;
// - with an SSO session the action page shows at once, unless the session's login is older than
//   the action's max auth age (config max_auth_age, default 300 s; UPDATE_PASSWORD: the password
//   policy's maxAuthAge first), which asks for the password again;
// - the user may cancel (cancel-aia), which still completes the login; an action the user had
//   pending anyway runs in its turn and cannot be cancelled;
// - with prompt=none: login_required when a fresh login is needed, else interaction_required.
import type { RealmContext } from '../realms/context.ts';
import { findUserById } from '../store/users.ts';
import { realmLoginAuthenticator } from './login-authenticators.ts';
import { parsePasswordPolicy } from './password-policy.ts';
import {
  configuredMaxAuthAge, DEFAULT_MAX_AUTH_AGE, requiredActionProviders, type RequiredActionProvider,
} from './required-actions.ts';

/** Where the outcome travels in oidc-provider's interaction result (and so to the authorization response). */
export const AIA_RESULT_KEY = 'kcAction';

export type AiaStatus = 'success' | 'cancelled' | 'error';
export type AiaOutcome = { action: string; status: AiaStatus };

/** Actions the login pages run on request (Keycloak's InitiatedActionSupport.SUPPORTED among those Cloakroom has). */
const RUN_ON_REQUEST: ReadonlySet<string> = new Set(['UPDATE_PASSWORD', 'CONFIGURE_TOTP', 'UPDATE_PROFILE']);

/** The alias a kc_action names: Keycloak's `ACTION:parameter` form keeps the part before the colon. */
export function kcActionAlias(params: Record<string, unknown>): string | undefined {
  const value = params.kc_action;
  if (typeof value !== 'string' || value === '') return undefined;
  return value.split(':', 1)[0];
}

/** The required action a request's kc_action asks for, when this realm runs it on request. */
export function requestedAction(realmSettings: Record<string, unknown>, params: Record<string, unknown>): RequiredActionProvider | undefined {
  const alias = kcActionAlias(params);
  if (alias === undefined || !RUN_ON_REQUEST.has(alias)) return undefined;
  return requiredActionProviders(realmSettings).find((p) => p.alias === alias && p.enabled);
}

/** How old (seconds) the user's login may be for this action before the password is asked again. */
export async function maxAuthAge(realm: RealmContext, action: RequiredActionProvider, userId: string): Promise<number> {
  if (action.alias === 'UPDATE_PASSWORD') {
    const user = await findUserById(realm.db, realm.id, userId);
    if (user) {
      const authenticator = await realmLoginAuthenticator(realm, user);
      const policy = parsePasswordPolicy(authenticator.settings.passwordPolicy).find((e) => e.id === 'maxAuthAge');
      if (policy) {
        const seconds = Number(policy.value ?? DEFAULT_MAX_AUTH_AGE);
        if (Number.isInteger(seconds) && seconds >= 0) return seconds;
      }
    }
  }
  return configuredMaxAuthAge(action) ?? DEFAULT_MAX_AUTH_AGE;
}

/** The outcome an interaction result carries, if the action ran (or was cancelled) in it. */
export function aiaOutcome(result: unknown): AiaOutcome | undefined {
  const outcome = (result as Record<string, unknown> | undefined)?.[AIA_RESULT_KEY] as AiaOutcome | undefined;
  return outcome && typeof outcome.action === 'string' && typeof outcome.status === 'string' ? outcome : undefined;
}

/**
 * What the authorization response adds for a request with kc_action: the outcome of the action
 * that ran, else `kc_action_status=error` (an action this realm does not run on request).
 */
export function authorizationResponseParams(params: Record<string, unknown>, result: unknown): Record<string, string> {
  if (kcActionAlias(params) === undefined) return {};
  const outcome = aiaOutcome(result);
  return outcome ? { kc_action: outcome.action, kc_action_status: outcome.status } : { kc_action_status: 'error' };
}
