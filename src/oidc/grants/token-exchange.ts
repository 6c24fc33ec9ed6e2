// grant_type=urn:ietf:params:oauth:grant-type:token-exchange (RFC 8693), Keycloak's external to
// internal token exchange for Cisco Finesse SSO: an agent desktop holding a Cisco IdS access token
// (from /desktop/sso/token) sends it as subject_token with subject_issuer = the alias of a finesse
// identity provider and the agent id as cc_username (Finesse's own parameter name; requested_subject
// is accepted too). The token is validated by Finesse itself, GET /finesse/api/User/{id} with
// Authorization: Bearer (IdS tokens are opaque and encrypted, so there is nothing to verify
// locally); the user is created or refreshed from the answer and gets a user session with
// Cloakroom's own tokens, as Keycloak's exchangeExternalToken does.
//
// Only clients listed in the provider's tokenExchangeClients may exchange (Keycloak: the
// identity provider's token-exchange permission). The grant type is in every client's metadata
// (src/realms/context.ts) and this allow-list is the one check. Errors and texts are Keycloak's
// (AbstractTokenExchangeProvider, AbstractOAuth2IdentityProvider); internal-to-internal exchange
// and exchange to another audience are not supported.
import { errors, type KoaContextWithOIDC } from 'oidc-provider';

import { getFinesseUser } from '../../federation/finesse/client.ts';
import { realmFinesseProvider } from '../../federation/finesse/config.ts';
import { isFinesseFailure } from '../../federation/finesse/login.ts';
import { upsertFinesseUserDetailed } from '../../federation/finesse/users.ts';
import { lockoutState } from '../../login/brute-force.ts';
import { ipAllowed } from '../../login/ip-ranges.ts';
import { realmLoginAuthenticator } from '../../login/login-authenticators.ts';
import type { RealmContext } from '../../realms/context.ts';
import { TokenRequestError } from '../session-tokens.ts';
import { oauthError, startSessionWithTokens, type GrantEvents, type StartedSession } from './password.ts';

export const TOKEN_EXCHANGE_GRANT = 'urn:ietf:params:oauth:grant-type:token-exchange';
export const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token';
export const REFRESH_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:refresh_token';

export const TOKEN_EXCHANGE_PARAMETERS = [
  'subject_token', 'subject_token_type', 'subject_issuer', 'requested_token_type', 'requested_subject', 'cc_username', 'scope', 'audience',
];
/** RFC 8693 allows several audience parameters. */
export const TOKEN_EXCHANGE_DUPES = ['audience'];

type Failure = { error: string; description: string; status: number; event: string; reason?: string; userId?: string };

class ExchangeRefused extends Error {
  readonly failure: Failure;
  constructor(failure: Failure) {
    super(failure.description);
    this.failure = failure;
  }
}

const refused = (failure: Failure): ExchangeRefused => new ExchangeRefused(failure);

export function tokenExchangeGrant(realm: RealmContext, record: GrantEvents) {
  return async function tokenExchangeGrantHandler(ctx: KoaContextWithOIDC): Promise<void> {
    const params = ctx.oidc.params as Record<string, string | string[] | undefined>;
    const client = await realm.client(ctx.oidc.client!.clientId);
    if (!client) throw new errors.InvalidClient('client not found');
    const one = (name: string): string | undefined => {
      const value = params[name];
      return Array.isArray(value) ? value[0] : value || undefined;
    };
    const subjectIssuer = one('subject_issuer');
    const agentId = one('cc_username') ?? one('requested_subject');
    const requested = one('requested_token_type') ?? REFRESH_TOKEN_TYPE;
    const details: Record<string, unknown> = {
      auth_method: 'token_exchange', grant_type: TOKEN_EXCHANGE_GRANT,
      ...(subjectIssuer ? { subject_issuer: subjectIssuer } : {}),
      requested_token_type: requested,
      ...(agentId ? { requested_subject: agentId } : {}),
    };
    const base = { clientId: client.clientId, ipAddress: ctx.ip };

    try {
      const subjectToken = one('subject_token');
      if (!subjectToken) throw new errors.InvalidRequest('Missing parameter: subject_token');
      if (!subjectIssuer) throw new errors.InvalidRequest('Missing parameter: subject_issuer');
      const config = await realmFinesseProvider(realm, subjectIssuer);
      if (!config) throw refused({ error: 'invalid_issuer', description: 'Invalid subject_issuer parameter', status: 400, event: 'invalid_issuer' });
      if (!config.tokenExchangeClients.includes(client.clientId)) {
        throw refused({ error: 'access_denied', description: 'Client not allowed to exchange', status: 403, event: 'not_allowed', reason: 'client not allowed to exchange subject_issuer' });
      }
      if ((one('subject_token_type') ?? ACCESS_TOKEN_TYPE) !== ACCESS_TOKEN_TYPE) {
        throw refused({ error: 'invalid_token', description: 'invalid token type', status: 400, event: 'invalid_token_type', reason: 'subject_token_type invalid' });
      }
      if (requested !== ACCESS_TOKEN_TYPE && requested !== REFRESH_TOKEN_TYPE) {
        throw refused({ error: 'invalid_request', description: 'requested_token_type unsupported', status: 400, event: 'invalid_request', reason: 'requested_token_type unsupported' });
      }
      // The tokens are for the exchanging client; another audience would need Keycloak's per-client exchange permissions.
      const audiences = [params.audience ?? []].flat().filter((a) => a !== '');
      for (const audience of audiences) {
        if (audience === client.clientId) continue;
        const target = await realm.client(audience);
        if (!target) throw refused({ error: 'invalid_client', description: 'Audience not found', status: 400, event: 'client_not_found', reason: 'audience not found' });
        throw refused({ error: 'access_denied', description: 'Client not allowed to exchange', status: 403, event: 'not_allowed', reason: 'client not allowed to exchange to audience' });
      }
      if (!agentId) throw new errors.InvalidRequest('Missing parameter: cc_username');

      // Finesse validates the token: 200 for the token's own user only.
      let answer;
      try {
        answer = await getFinesseUser(config, agentId, { bearer: subjectToken });
      } catch (error) {
        if (!isFinesseFailure(error)) throw error;
        throw refused({ error: 'temporarily_unavailable', description: 'Cannot reach Cisco Finesse', status: 503, event: 'finesse_unavailable', reason: error.message });
      }
      if (answer.status !== 'ok') {
        throw refused({ error: 'invalid_token', description: 'invalid token', status: 400, event: 'invalid_token', reason: 'user info call failure' });
      }
      const finesseUser = answer.user;
      const upserted = await upsertFinesseUserDetailed(realm.db, realm.realm, config, finesseUser, { create: config.createUsers });
      if (!upserted) {
        // createUsers: the username belongs to a local user without the link (logged); else not provisioned.
        throw refused(config.createUsers
          ? { error: 'invalid_token', description: 'User already exists', status: 400, event: 'federated_identity_account_exists' }
          : { error: 'invalid_token', description: 'invalid token', status: 400, event: 'user_not_found', reason: 'user not provisioned and createUsers is off' });
      }
      const { user, created } = upserted;
      if (created) {
        record(realm, { ...base, type: 'REGISTER', userId: user.id, details: { register_method: 'token-exchange', identity_provider: config.alias, username: user.username } });
      }
      if (!user.enabled) throw refused({ error: 'invalid_token', description: 'Invalid Token', status: 400, event: 'user_disabled', userId: user.id });
      const authenticator = await realmLoginAuthenticator(realm, user);
      const lockout = await lockoutState(realm.db, realm.id, user, authenticator.settings);
      if (lockout !== 'none') {
        throw refused({ error: 'invalid_token', description: 'Invalid Token', status: 400, event: lockout === 'temporary' ? 'user_temporarily_disabled' : 'user_disabled', userId: user.id });
      }
      // Cloakroom's login authenticators may restrict client addresses; an exchange is a login too.
      if (!ipAllowed(authenticator.settings.allowedIpRanges, ctx.ip)) {
        throw refused({ error: 'invalid_grant', description: 'Login not allowed from this address', status: 400, event: 'ip_not_allowed', userId: user.id });
      }

      let started: StartedSession;
      try {
        started = await startSessionWithTokens(realm, {
          issuer: ctx.oidc.issuer, client, userId: user.id, loginUsername: user.username, scope: one('scope') ?? '', ipAddress: ctx.ip,
        });
      } catch (error) {
        if (error instanceof TokenRequestError) throw refused({ error: error.error, description: error.message, status: error.status, event: error.error, userId: user.id });
        throw error;
      }
      // Keycloak's V1 exchange: a refresh token (issued_token_type refresh_token) unless only an access token is asked for.
      const body: Record<string, unknown> = { ...started.body, issued_token_type: requested };
      if (requested === ACCESS_TOKEN_TYPE) {
        delete body.refresh_token;
        body.refresh_expires_in = 0;
      }
      ctx.body = body;
      record(realm, { ...base, type: 'TOKEN_EXCHANGE', userId: user.id, sessionId: started.sessionId, details: { ...details, audience: client.clientId, username: user.username } });
    } catch (error) {
      if (error instanceof ExchangeRefused) {
        const f = error.failure;
        record(realm, { ...base, type: 'TOKEN_EXCHANGE_ERROR', userId: f.userId, error: f.event, details: { ...details, ...(f.reason ? { reason: f.reason } : {}) } });
        const err = oauthError(f.error, f.description, f.status);
        // oidc-provider would turn an unexposed 5xx into "server_error".
        if (f.status >= 500) err.expose = true;
        throw err;
      }
      if (error instanceof errors.InvalidRequest) {
        record(realm, { ...base, type: 'TOKEN_EXCHANGE_ERROR', error: 'invalid_request', details: { ...details, reason: error.error_description } });
      }
      throw error;
    }
  };
}
