// grant_type=password (Keycloak's "direct access grants"): username and password at the token
// endpoint, for confidential and public clients with directAccessGrantsEnabled. Creates a user
// session like a browser login, without the SSO cookie. A username shaped like an access key id
// is one (CXone's form): the password is then the key's secret.
import crypto from 'node:crypto';

import { errors, type KoaContextWithOIDC } from 'oidc-provider';

import type { LoginEvent } from '../../events/events.ts';
import { authenticatePassword, type PasswordAuthentication } from '../../login/authenticate.ts';
import { lockoutEvent, recordLoginFailure, recordLoginSuccess } from '../../login/brute-force.ts';
import { listOtpDevices, verifyOtp } from '../../login/otp.ts';
import { matchingDevices, pendingRequiredActions } from '../../login/required-action-pages.ts';
import { ACCESS_KEY_PATTERN, type AccessKeyFailure } from '../../access-keys/access-keys.ts';
import { authenticateAccessKey } from '../../access-keys/key-lookup.ts';
import type { ClientModel, RealmContext } from '../../realms/context.ts';
import type { UserRoleRefs } from '../../store/roles.ts';
import type { User } from '../../store/schema.ts';
import { issueFirstTokens, TokenRequestError } from '../session-tokens.ts';
import { userTokenSubjectOf } from '../user-tokens.ts';
import { grantRequestOf, type GrantRequest } from './grant-request.ts';

export const PASSWORD_GRANT_PARAMETERS = ['username', 'password', 'scope', 'totp'];

export type GrantEvents = (realm: RealmContext, event: LoginEvent) => void;

/** An OAuth error with Keycloak's status code (401 for bad user credentials). */
export function oauthError(error: string, description: string, status = 400): errors.OIDCProviderError {
  const err = new errors.OIDCProviderError(status, error);
  err.error_description = description;
  return err;
}

export function passwordGrant(realm: RealmContext, record: GrantEvents) {
  return async function passwordGrantHandler(ctx: KoaContextWithOIDC): Promise<void> {
    ctx.body = await passwordTokens(realm, record, await grantRequestOf(realm, ctx));
  };
}

/** The token response of a password grant (a new user session), or an OAuth error thrown. */
export async function passwordTokens(realm: RealmContext, record: GrantEvents, request: GrantRequest): Promise<Record<string, unknown>> {
  const { client, params, ipAddress } = request;
  const base = { clientId: client.clientId, ipAddress };
  const username = params.username ?? '';
  if (username === '') throw new errors.InvalidRequest('Missing parameter: username');
  const password = params.password ?? '';

  let user: { id: string };
  /** The user row (and role ids), when authenticating loaded it: the token subject then needs no lookup. */
  let userRow: User | undefined;
  let roleRefs: UserRoleRefs | undefined;
  let loginUsername = username;
  let details: Record<string, unknown>;
  if (ACCESS_KEY_PATTERN.test(username)) {
    // CXone's form: an access key id and secret in place of username and password (usernames
    // are lower case, so no username has this shape). No argon2: the key's digest is checked.
    const result = await authenticateAccessKey(realm, username, password);
    details = { auth_method: 'openid-connect', grant_type: 'password', username: result.key?.username ?? username, access_key_id: username };
    if (!result.ok) {
      record(realm, { ...base, type: 'LOGIN_ERROR', userId: result.key?.userId, error: PASSWORD_FORM_ERRORS[result.failure], details });
      if (result.failure === 'user_disabled') throw oauthError('invalid_grant', 'Account disabled');
      throw oauthError('invalid_grant', 'Invalid user credentials', 401);
    }
    user = { id: result.key.userId };
    loginUsername = result.key.username;
  } else {
    // Failures are cleared only after the OTP too, so code guesses count towards a lockout.
    const result = await authenticatePassword(realm, username, password, ipAddress, { clearFailuresOnSuccess: false });
    details = { auth_method: 'openid-connect', grant_type: 'password', username };
    if (!result.ok) {
      record(realm, { ...base, type: 'LOGIN_ERROR', userId: result.user?.id, error: result.error, details });
      if (result.lockoutEvent) record(realm, { ...result.lockoutEvent, ...base });
      throw passwordFailure(result);
    }
    const { authenticator } = result;
    // Keycloak's direct grant asks for `totp` from users with an OTP device (here: one the
    // authenticator accepts); a missing or wrong code is a failed login like a wrong password.
    const devices = result.hasOtp ? matchingDevices(await listOtpDevices(realm.db, result.user.id), authenticator) : [];
    if (devices.length > 0) {
      const code = (params.totp ?? '').replace(/\s+/g, '');
      const verified = code ? await verifyOtp(realm.db, realm.box, { userId: result.user.id, code, settings: authenticator.settings }) : { ok: false as const };
      if (!verified.ok || !devices.some((d) => d.id === verified.credentialId)) {
        record(realm, { ...base, type: 'LOGIN_ERROR', userId: result.user.id, error: code ? 'invalid_totp' : 'invalid_user_credentials', details });
        const event = lockoutEvent(result.user.id, ipAddress, await recordLoginFailure(realm.db, realm.id, result.user, authenticator.settings, ipAddress));
        if (event) record(realm, { ...event, ...base });
        throw oauthError('invalid_grant', 'Invalid user credentials', 401);
      }
    }
    await recordLoginSuccess(realm.db, realm.id, result.user.id, authenticator.settings);
    // Required actions (an expired password, MFA without a device...) need the browser pages.
    if ((await pendingRequiredActions(realm, result.user, authenticator)).length > 0) {
      record(realm, { ...base, type: 'LOGIN_ERROR', userId: result.user.id, error: 'resolve_required_actions', details });
      throw oauthError('invalid_grant', 'Account is not fully set up');
    }
    user = result.user;
    userRow = result.user;
    roleRefs = result.roleRefs;
  }

  let started: StartedSession;
  try {
    started = await startSessionWithTokens(realm, {
      issuer: request.issuer, client, userId: user.id, user: userRow, roleRefs, loginUsername,
      scope: params.scope ?? '', ipAddress,
    });
  } catch (error) {
    if (error instanceof TokenRequestError) throw oauthError(error.error, error.message, error.status);
    throw error;
  }
  record(realm, { ...base, type: 'LOGIN', userId: user.id, sessionId: started.sessionId, details });
  return started.body;
}

/**
 * Keycloak's direct-grant answers: a locked account (temporary or permanent) gets exactly the
 * wrong-password answer; "Account disabled" only for a disabled account with the right password.
 */
function passwordFailure(result: Exclude<PasswordAuthentication, { ok: true }>): errors.OIDCProviderError {
  if (result.error === 'user_disabled' && !result.locked) return oauthError('invalid_grant', 'Account disabled');
  // Cloakroom's own: the user's login authenticator allows other client addresses only.
  if (result.error === 'ip_not_allowed') return oauthError('invalid_grant', 'Login not allowed from this address');
  if (result.error === 'ldap_unavailable') {
    // LDAP federation: the user directory cannot be reached; retryable, not bad credentials.
    const unavailable = oauthError('temporarily_unavailable', 'Cannot reach the user directory', 503);
    unavailable.expose = true; // oidc-provider would turn an unexposed 5xx into "server_error"
    return unavailable;
  }
  if (result.error === 'finesse_unavailable') {
    // Cisco Finesse (src/federation/finesse/login.ts): down, timing out or answering nonsense.
    const unavailable = oauthError('temporarily_unavailable', 'Cannot reach Cisco Finesse', 503);
    unavailable.expose = true;
    return unavailable;
  }
  return oauthError('invalid_grant', 'Invalid user credentials', 401);
}

/** LOGIN_ERROR errors of key logins: Keycloak's for a password login where one matches. */
const PASSWORD_FORM_ERRORS: Record<AccessKeyFailure, string> = {
  unknown_key: 'user_not_found',
  wrong_secret: 'invalid_user_credentials',
  key_disabled: 'access_key_disabled',
  key_expired: 'access_key_expired',
  user_disabled: 'user_disabled',
};

export type StartedSession = { sessionId: string; body: Record<string, unknown> };

/**
 * A new user session for an authenticated user and the client's first tokens (the password grant
 * and CXone's access-key endpoint). Throws TokenRequestError.
 */
export async function startSessionWithTokens(realm: RealmContext, s: {
  issuer: string; client: ClientModel; userId: string;
  /** The enabled user's row, just loaded by the caller: then only the roles are read again. */
  user?: User;
  /** ...and their role and group ids, when loaded with it: then nothing is read again. */
  roleRefs?: UserRoleRefs | undefined;
  loginUsername: string; scope: string; ipAddress: string;
}): Promise<StartedSession> {
  const sessionId = crypto.randomUUID();
  const roles = s.user && (s.roleRefs ? await realm.effectiveRolesOf(s.roleRefs) : await realm.effectiveUserRoles(s.user.id));
  const data = s.user && roles ? await userTokenSubjectOf(realm, s.client, { user: s.user, roles }, s.scope) : undefined;
  const start = {
    id: sessionId, userId: s.userId, loginUsername: s.loginUsername, ipAddress: s.ipAddress, rememberMe: false,
    authTime: Math.floor(Date.now() / 1000),
  };
  const issued = await issueFirstTokens({
    realm, issuer: s.issuer, client: s.client, session: { start }, scope: s.scope, acr: '1', ipAddress: s.ipAddress, grantId: null,
    ...(data ? { data } : {}),
  });
  return { sessionId, body: issued.body };
}
