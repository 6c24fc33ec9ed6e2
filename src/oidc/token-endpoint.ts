// The token endpoint's hot path. client_credentials, password and refresh_token requests of a
// client that authenticates with its secret (client_secret_basic or client_secret_post) or is
// public are answered here, without oidc-provider: its token route is a second Koa stack,
// parameter assembly and a client model per request, about a sixth of a client_credentials
// request's CPU. Everything else goes to oidc-provider unchanged, so every other answer stays
// its own: other grants, client assertions, CORS requests (an Origin header), duplicate or
// malformed parameters, unknown clients, wrong secrets, grant types the client may not use.
import { errors } from 'oidc-provider';

import { safeEqual } from '../crypto/random.ts';
import { readBasicAuthorization } from '../http/basic-auth.ts';
import type { ClientModel, RealmContext } from '../realms/context.ts';
import { CLIENT_CREDENTIALS_PARAMETERS, clientCredentialsTokens } from './grants/client-credentials.ts';
import type { GrantRequest } from './grants/grant-request.ts';
import { passwordTokens, PASSWORD_GRANT_PARAMETERS } from './grants/password.ts';
import { refreshGrantTokens, REFRESH_GRANT_PARAMETERS } from './grants/refresh-token.ts';
import type { ProtocolResult } from './introspection.ts';
import type { ProviderHooks } from './provider.ts';

const GRANT_PARAMETERS = new Map<string, string[]>([
  ['client_credentials', CLIENT_CREDENTIALS_PARAMETERS],
  ['password', PASSWORD_GRANT_PARAMETERS],
  ['refresh_token', REFRESH_GRANT_PARAMETERS],
]);

/** oidc-provider's scope syntax (RFC 6749 3.3); anything else is its invalid_scope to answer. */
const SCOPE_SYNTAX = /^[\x21\x23-\x5B\x5D-\x7E]+(?: [\x21\x23-\x5B\x5D-\x7E]+)*$/;

export type DirectTokenRequest = { grantType: string; request: GrantRequest };

type Credentials = { clientId: string; secret: string | undefined };

/** The client's credentials when they come in the one way served here, else undefined. */
function credentialsOf(authorization: string | undefined, form: Record<string, string>): Credentials | undefined {
  if (form.client_assertion !== undefined || form.client_assertion_type !== undefined) return undefined;
  const bodyId = form.client_id || undefined;
  const bodySecret = form.client_secret || undefined;
  if (authorization === undefined) {
    return bodyId === undefined ? undefined : { clientId: bodyId, secret: bodySecret };
  }
  if (bodySecret !== undefined) return undefined;
  const basic = readBasicAuthorization(authorization);
  if ('error' in basic || !basic.clientId || !basic.secret) return undefined;
  if (bodyId !== undefined && bodyId !== basic.clientId) return undefined;
  return basic;
}

/** The client, when these credentials authenticate it the way its registration says. */
function authenticated(client: ClientModel, secret: string | undefined): boolean {
  const method = client.metadata.token_endpoint_auth_method;
  if (secret === undefined) return method === 'none';
  return (method === 'client_secret_basic' || method === 'client_secret_post') && client.secret !== null && safeEqual(client.secret, secret);
}

/**
 * The request, when it is one this path serves: see the file comment. `form` is the parsed body
 * (a repeated parameter is an array).
 */
export async function directTokenRequest(
  realm: RealmContext, issuer: string, ipAddress: string,
  headers: { authorization: string | undefined; origin: string | undefined },
  form: Record<string, string | string[] | undefined>,
): Promise<DirectTokenRequest | undefined> {
  if (headers.origin !== undefined) return undefined;
  const grantType = form.grant_type;
  const grantParameters = typeof grantType === 'string' ? GRANT_PARAMETERS.get(grantType) : undefined;
  if (!grantParameters || !Object.values(form).every((v) => typeof v === 'string')) return undefined;
  const strings = form as Record<string, string>;
  if (strings.scope && !SCOPE_SYNTAX.test(strings.scope)) return undefined;
  const credentials = credentialsOf(headers.authorization, strings);
  if (!credentials) return undefined;
  const client = await realm.client(credentials.clientId);
  if (!client || !authenticated(client, credentials.secret)) return undefined;
  if (!(client.metadata.grant_types as string[]).includes(grantType as string)) return undefined;
  // Empty values are absent, as in oidc-provider's parameters.
  const params = Object.fromEntries(grantParameters.map((name) => [name, strings[name] || undefined]));
  return { grantType: grantType as string, request: { client, issuer, ipAddress, params } };
}

/** Keycloak's token response: refresh_expires_in and not-before-policy, in Keycloak's order. */
export function keycloakTokenResponse(realm: RealmContext, body: Record<string, unknown>): Record<string, unknown> {
  return {
    access_token: body.access_token,
    expires_in: body.expires_in,
    refresh_expires_in: body.refresh_expires_in ?? 0,
    ...body,
    'not-before-policy': realm.realm.not_before,
  };
}

/** Runs the grant and answers as oidc-provider would have, events and metrics included. */
export async function answerDirectTokenRequest(realm: RealmContext, hooks: ProviderHooks, direct: DirectTokenRequest, authorization: string | undefined): Promise<ProtocolResult> {
  const { grantType, request } = direct;
  const { client, ipAddress } = request;
  try {
    const body = await runGrant(realm, hooks, direct);
    hooks.onTokenIssued(realm, grantType, client.clientId, ipAddress);
    return { status: 200, body: keycloakTokenResponse(realm, body) };
  } catch (error) {
    if (!(error instanceof errors.OIDCProviderError) || !error.expose) {
      hooks.onServerError(realm, error as Error);
      return { status: 500, body: { error: 'server_error', error_description: 'oops! something went wrong' } };
    }
    hooks.onGrantError(realm, grantType, client.clientId, error, ipAddress);
    const { scope } = error as { scope?: string };
    const body = {
      error: error.message,
      ...(error.error_description !== undefined ? { error_description: error.error_description } : {}),
      ...(scope !== undefined ? { scope } : {}),
    };
    // oidc-provider challenges a 401 answered to a request that came with an Authorization header.
    const headers = error.statusCode === 401 && authorization !== undefined
      ? { 'www-authenticate': basicChallenge({ realm: request.issuer, error: error.message, error_description: error.error_description }) }
      : undefined;
    return { status: error.statusCode, body, ...(headers ? { headers } : {}) };
  }
}

function runGrant(realm: RealmContext, hooks: ProviderHooks, { grantType, request }: DirectTokenRequest): Promise<Record<string, unknown>> {
  const record = hooks.event.bind(hooks);
  switch (grantType) {
    case 'client_credentials': return clientCredentialsTokens(realm, request);
    case 'password': return passwordTokens(realm, record, request);
    default: return refreshGrantTokens(realm, record, request);
  }
}

function basicChallenge(fields: Record<string, string | undefined>): string {
  const parameters = Object.entries(fields).filter(([, v]) => v !== undefined)
    .map(([key, value]) => `${key}="${value!.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`);
  return `Basic ${parameters.join(', ')}`;
}
