// What every identity-provider protocol (OpenID Connect, OAuth 2.0, SAML 2.0) hands to the broker:
// one authenticated external identity. The protocol modules (oidc.ts, oauth2.ts, saml.ts) validate
// the provider's answer and build a BrokeredIdentity; the broker (first-login.ts, routes.ts) finds
// or creates the local user, applies the identity provider mappers and finishes the login.
import type { IdentityProvider } from '../store/schema.ts';

/** An identity provider instance with its config's secrets opened (clientSecret...). */
export type IdentityProviderModel = {
  row: IdentityProvider;
  alias: string;
  providerId: string;
  /** Readable config plus opened secrets. */
  config: Record<string, string>;
};

export type BrokeredIdentity = {
  /** Identity provider alias. */
  alias: string;
  /** The provider's stable user id: OIDC `sub` (or the configured claim), SAML NameID (or the principal attribute). */
  id: string;
  /** Suggested username (OIDC preferred_username, SAML NameID...), before any username template. */
  username?: string;
  email?: string;
  firstName?: string;
  lastName?: string;
  /** OIDC: merged ID token, userinfo (and access token, for keycloak-oidc) claims. OAuth2: the user-info JSON. */
  claims?: Record<string, unknown>;
  /** SAML: attribute values by Name and by FriendlyName. */
  attributes?: Record<string, string[]>;
  /** SAML: the NameID and its format, the session index (for single logout). */
  nameId?: string;
  nameIdFormat?: string;
  sessionIndex?: string;
  /** OIDC/OAuth2 token response (kept when storeToken is on; id_token used for logout hints). */
  tokens?: { access_token?: string; id_token?: string; refresh_token?: string; expires_in?: number; token_type?: string; scope?: string };
  /** Keycloak-oidc: the upstream access token's claims (for External Role to Role). */
  accessTokenClaims?: Record<string, unknown>;
};

/**
 * Why a provider's answer was refused. `reason` goes into the IDENTITY_PROVIDER_LOGIN_ERROR event's
 * details; the user sees a generic page. Never include tokens or assertions in `reason`.
 */
export class BrokerError extends Error {
  readonly reason: string;
  /** Keycloak event error name, e.g. 'invalid_saml_response', 'identity_provider_error', 'expired_code'. */
  readonly error: string;
  /** The user cancelled at the provider (OIDC error=access_denied, SAML status Responder/AuthnFailed...). */
  readonly cancelled: boolean;
  constructor(error: string, reason: string, options: { cancelled?: boolean; cause?: unknown } = {}) {
    super(reason, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'BrokerError';
    this.error = error;
    this.reason = reason;
    this.cancelled = options.cancelled ?? false;
  }
}

/** Where the broker's endpoints are for one provider (absolute URLs). */
export type BrokerUrls = {
  /** {issuer}/broker/{alias}/endpoint: OIDC redirect URI and SAML assertion consumer service. */
  endpoint: string;
  /** {issuer}/broker/{alias}/endpoint/descriptor: SAML SP metadata. */
  descriptor: string;
  /** The realm issuer ({origin}{base}/realms/{realm}): the default SAML SP entity id. */
  issuer: string;
};
