// SAML 2.0 service provider side of identity brokering (Keycloak's SAMLIdentityProvider): SP
// metadata, AuthnRequests, validation of the IdP's Response (saml-response.ts) and single logout
// both ways. Config keys are Keycloak's SAMLIdentityProviderConfig names.
//
// samlify builds the outgoing messages' bindings (deflate/base64, redirect query signature,
// enveloped XML signature) and the SP metadata; the message XML is written here so every
// attribute Keycloak sends (ForceAuthn, login hint Subject, AllowCreate) is under our control.
// Requests are signed with the realm's RS256 key and its self-signed certificate
// (saml-sp-certificate.ts). Responses are always asked for with the HTTP-POST binding: the
// endpoint validates POSTed responses only.
import crypto from 'node:crypto';

import type { RealmContext } from '../realms/context.ts';
import { allowedSkewMs, validateSamlResponse } from './saml-response.ts';
import { samlSigningKeys, type SamlSigningKey } from './saml-sp-certificate.ts';
import {
  attribute, BINDING, childElement, childElements, dateTime, decodePostMessage, decodeRedirectMessage, isElement, NS, parseXml,
  samlify, signatureRequired, signingCertificates, STATUS_SUCCESS, textOf, validateSchema, verifyEnvelopedSignature,
  verifyRedirectSignature, xmlEscape,
} from './saml-xml.ts';
import { BrokerError, type BrokeredIdentity, type BrokerUrls, type IdentityProviderModel } from './types.ts';

type Samlify = Awaited<ReturnType<typeof samlify>>;
type SamlifyEntity = ReturnType<Samlify['IdentityProvider']>;

export type SamlOutgoing = { requestId: string; redirect: string } | { requestId: string; post: { url: string; form: Record<string, string> } };

const PERSISTENT_FORMAT = 'urn:oasis:names:tc:SAML:2.0:nameid-format:persistent';
const UNSPECIFIED_FORMAT = 'urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified';

/** Keycloak's signatureAlgorithm names -> XML-DSig URIs (unknown ones fall back to RSA_SHA256). */
const SIGNATURE_ALGORITHMS: Record<string, string> = {
  RSA_SHA1: 'http://www.w3.org/2000/09/xmldsig#rsa-sha1',
  RSA_SHA256: 'http://www.w3.org/2001/04/xmldsig-more#rsa-sha256',
  RSA_SHA512: 'http://www.w3.org/2001/04/xmldsig-more#rsa-sha512',
  RSA_SHA256_MGF1: 'http://www.w3.org/2007/05/xmldsig-more#sha256-rsa-MGF1',
};

/** The SP entity id: config.entityId, else the realm issuer (Keycloak's default). */
export const spEntityId = (idp: IdentityProviderModel, urls: BrokerUrls): string => idp.config.entityId?.trim() || urls.issuer;

const newMessageId = (): string => `ID_${crypto.randomUUID()}`;

/** samlify's SP and IdP entities for one provider; `key` signs when wantAuthnRequestsSigned. */
async function entities(realm: RealmContext, idp: IdentityProviderModel, urls: BrokerUrls): Promise<{ lib: Samlify; sp: ReturnType<Samlify['ServiceProvider']>; peer: SamlifyEntity; signed: boolean }> {
  const { config } = idp;
  const lib = await samlify();
  const signed = config.wantAuthnRequestsSigned === 'true';
  let key: SamlSigningKey | undefined;
  if (signed) {
    key = samlSigningKeys(realm)[0];
    if (!key) throw new BrokerError('identity_provider_error', 'the realm has no RS256 key to sign SAML requests with');
  }
  const sp = lib.ServiceProvider({
    entityID: spEntityId(idp, urls),
    authnRequestsSigned: signed,
    wantAssertionsSigned: config.wantAssertionsSigned === 'true',
    assertionConsumerService: [{ Binding: BINDING.post, Location: urls.endpoint }],
    ...(key ? { privateKey: key.privateKeyPem, signingCert: key.certificate } : {}),
    requestSignatureAlgorithm: SIGNATURE_ALGORITHMS[config.signatureAlgorithm ?? ''] ?? SIGNATURE_ALGORITHMS.RSA_SHA256!,
  });
  const sso = config.singleSignOnServiceUrl ?? '';
  // The logout URL stands in for itself or, absent, for the SSO URL: samlify warns about IdPs
  // without one, and no logout message is sent to an IdP that has none (startSamlLogout).
  const slo = config.singleLogoutServiceUrl || sso;
  const peer = lib.IdentityProvider({
    entityID: config.idpEntityId || sso,
    wantAuthnRequestsSigned: signed,
    wantLogoutRequestSigned: signed,
    wantLogoutResponseSigned: signed,
    singleSignOnService: [{ Binding: BINDING.redirect, Location: sso }, { Binding: BINDING.post, Location: sso }],
    singleLogoutService: [{ Binding: BINDING.redirect, Location: slo }, { Binding: BINDING.post, Location: slo }],
  });
  return { lib, sp, peer, signed };
}

/** samlify's binding output as the caller's redirect URL or auto-submitted form. */
function outgoing(binding: 'redirect' | 'post', url: string, context: { id: string; context: string }, parameter: 'SAMLRequest' | 'SAMLResponse', relayState: string | undefined): SamlOutgoing {
  if (binding === 'redirect') return { requestId: context.id, redirect: context.context };
  return { requestId: context.id, post: { url, form: { [parameter]: context.context, ...(relayState ? { RelayState: relayState } : {}) } } };
}

// ---------------------------------------------------------------------------------------------
// Metadata

/**
 * SP metadata for {issuer}/broker/{alias}/endpoint/descriptor: entityID, the assertion consumer
 * service (HTTP-POST) and single logout service (POST and Redirect) at the broker endpoint, the
 * requested NameID format, the signing flags and a signing KeyDescriptor per realm RS256 key
 * (active first; passive ones stay listed through a rotation).
 */
export async function samlSpMetadata(realm: RealmContext, idp: IdentityProviderModel, urls: BrokerUrls): Promise<string> {
  const { config } = idp;
  const lib = await samlify();
  const certificates = samlSigningKeys(realm).map((key) => key.certificate);
  const metadata = lib.SPMetadata({
    entityID: spEntityId(idp, urls),
    authnRequestsSigned: config.wantAuthnRequestsSigned === 'true',
    wantAssertionsSigned: config.wantAssertionsSigned === 'true',
    nameIDFormat: [config.nameIDPolicyFormat || PERSISTENT_FORMAT],
    ...(certificates.length > 0 ? { signingCert: certificates } : {}),
    assertionConsumerService: [{ Binding: BINDING.post, Location: urls.endpoint }],
    singleLogoutService: [{ Binding: BINDING.post, Location: urls.endpoint }, { Binding: BINDING.redirect, Location: urls.endpoint }],
    // The metadata schema's order (samlify's default puts NameIDFormat before SingleLogoutService).
    elementsOrder: ['KeyDescriptor', 'SingleLogoutService', 'NameIDFormat', 'AssertionConsumerService'],
  });
  return metadata.getMetadata();
}

// ---------------------------------------------------------------------------------------------
// Login

/**
 * The AuthnRequest to the IdP's singleSignOnServiceUrl: HTTP-Redirect unless
 * postBindingAuthnRequest is 'true' (then the caller renders an auto-submitting form), signed when
 * wantAuthnRequestsSigned is 'true' (Redirect: SigAlg/Signature parameters; POST: enveloped
 * signature). NameIDPolicy from nameIDPolicyFormat (default persistent) and allowCreate
 * (default true); ForceAuthn from forceAuthn or the request; the login hint as Subject NameID
 * when loginHint is 'true'.
 */
export async function startSamlLogin(realm: RealmContext, idp: IdentityProviderModel, urls: BrokerUrls, request: { relayState: string; loginHint?: string; forceAuthn?: boolean }): Promise<SamlOutgoing> {
  const { config } = idp;
  const sso = config.singleSignOnServiceUrl;
  if (!sso) throw new BrokerError('identity_provider_error', 'the identity provider has no singleSignOnServiceUrl');
  const { sp, peer } = await entities(realm, idp, urls);
  const binding = config.postBindingAuthnRequest === 'true' ? 'post' : 'redirect';
  const id = newMessageId();
  const forceAuthn = config.forceAuthn === 'true' || request.forceAuthn === true;
  const hint = config.loginHint === 'true' && request.loginHint ? request.loginHint : undefined;
  const xml = `<samlp:AuthnRequest xmlns:samlp="${NS.protocol}" xmlns:saml="${NS.assertion}"`
    + ` AssertionConsumerServiceURL="${xmlEscape(urls.endpoint)}" Destination="${xmlEscape(sso)}"${forceAuthn ? ' ForceAuthn="true"' : ''}`
    + ` ID="${id}" IssueInstant="${new Date().toISOString()}" ProtocolBinding="${BINDING.post}" Version="2.0">`
    + `<saml:Issuer>${xmlEscape(spEntityId(idp, urls))}</saml:Issuer>`
    + (hint ? `<saml:Subject><saml:NameID Format="${UNSPECIFIED_FORMAT}">${xmlEscape(hint)}</saml:NameID></saml:Subject>` : '')
    + `<samlp:NameIDPolicy AllowCreate="${config.allowCreate !== 'false'}" Format="${xmlEscape(config.nameIDPolicyFormat || PERSISTENT_FORMAT)}"/>`
    + '</samlp:AuthnRequest>';
  const context = sp.createLoginRequest(peer, binding, {
    relayState: request.relayState,
    customTagReplacement: () => ({ id, context: xml }),
  });
  return outgoing(binding, sso, context, 'SAMLRequest', request.relayState);
}

/**
 * Validates a SAML Response POSTed to the assertion consumer service (see saml-response.ts for
 * every rule). expected.requestId: the AuthnRequest id (SP-initiated) or undefined (IdP-initiated:
 * no InResponseTo allowed); expected.destination: the URL it was posted to;
 * rememberAssertion(id, notOnOrAfter) returns false for an assertion id already seen.
 */
export async function finishSamlLogin(realm: RealmContext, idp: IdentityProviderModel, urls: BrokerUrls, samlResponse: string, expected: {
  requestId: string | undefined; destination: string; rememberAssertion(id: string, notOnOrAfter: Date): Promise<boolean>;
}): Promise<BrokeredIdentity> {
  return validateSamlResponse(idp, spEntityId(idp, urls), samlResponse, expected);
}

// ---------------------------------------------------------------------------------------------
// Single logout

/**
 * SP-initiated single logout: a LogoutRequest for the NameID/SessionIndex to the IdP's
 * singleLogoutServiceUrl (Redirect binding unless postBindingLogout is 'true'), signed like
 * AuthnRequests. Undefined when the IdP has no logout URL.
 */
export async function startSamlLogout(realm: RealmContext, idp: IdentityProviderModel, urls: BrokerUrls, request: { nameId: string; nameIdFormat?: string; sessionIndex?: string; relayState: string }): Promise<SamlOutgoing | undefined> {
  const slo = idp.config.singleLogoutServiceUrl;
  if (!slo) return undefined;
  const { sp, peer } = await entities(realm, idp, urls);
  const binding = idp.config.postBindingLogout === 'true' ? 'post' : 'redirect';
  const id = newMessageId();
  const xml = `<samlp:LogoutRequest xmlns:samlp="${NS.protocol}" xmlns:saml="${NS.assertion}"`
    + ` Destination="${xmlEscape(slo)}" ID="${id}" IssueInstant="${new Date().toISOString()}" Version="2.0">`
    + `<saml:Issuer>${xmlEscape(spEntityId(idp, urls))}</saml:Issuer>`
    + `<saml:NameID${request.nameIdFormat ? ` Format="${xmlEscape(request.nameIdFormat)}"` : ''}>${xmlEscape(request.nameId)}</saml:NameID>`
    + (request.sessionIndex ? `<samlp:SessionIndex>${xmlEscape(request.sessionIndex)}</samlp:SessionIndex>` : '')
    + '</samlp:LogoutRequest>';
  const context = sp.createLogoutRequest(peer, binding, {}, {
    relayState: request.relayState,
    customTagReplacement: () => ({ id, context: xml }),
  });
  return outgoing(binding, slo, context, 'SAMLRequest', request.relayState);
}

export type SamlLogoutMessage =
  | { kind: 'request'; nameId: string; sessionIndexes: string[]; respond(relayState?: string): Promise<{ redirect: string } | { post: { url: string; form: Record<string, string> } }> }
  | { kind: 'response'; inResponseTo?: string; success: boolean; relayState?: string };

/**
 * A LogoutRequest (IdP-initiated single logout) or LogoutResponse (answer to ours) arriving at the
 * broker endpoint: Redirect binding from the query (detached SigAlg/Signature), POST from the
 * form (enveloped signature). Signatures are required as for login responses (validateSignature).
 * Issuer must be idpEntityId when set, Destination (when present) the endpoint.
 *
 * `rawQuery` (optional, the request's undecoded query string) lets the redirect signature be
 * checked over the exact octets the IdP signed; without it the octets are rebuilt from `query`
 * with the usual URL encodings.
 */
export async function receiveSamlLogout(realm: RealmContext, idp: IdentityProviderModel, urls: BrokerUrls, message: {
  binding: 'redirect' | 'post'; query?: Record<string, string>; form?: Record<string, string>; rawQuery?: string;
}): Promise<SamlLogoutMessage> {
  const { config } = idp;
  const params = (message.binding === 'redirect' ? message.query : message.form) ?? {};
  const isRequest = params.SAMLRequest !== undefined;
  const parameter = isRequest ? 'SAMLRequest' : 'SAMLResponse';
  // Keycloak's event error names (Errors.INVALID_SAML_LOGOUT_REQUEST / _RESPONSE).
  const error = isRequest ? 'invalid_logout_request' : 'invalid_logout_response';
  const encoded = params[parameter];
  if (!encoded || (isRequest && params.SAMLResponse !== undefined)) throw new BrokerError(error, 'expected one SAMLRequest or SAMLResponse');
  const relayState = params.RelayState || undefined;

  const xml = message.binding === 'redirect' ? decodeRedirectMessage(encoded, error) : decodePostMessage(encoded, error);
  const doc = parseXml(xml, error);
  let root = doc.documentElement!;
  if (!isElement(root, NS.protocol, isRequest ? 'LogoutRequest' : 'LogoutResponse')) throw new BrokerError(error, `message is not a ${isRequest ? 'LogoutRequest' : 'LogoutResponse'}`);
  await validateSchema(xml, error);

  if (signatureRequired(config)) {
    const certificates = signingCertificates(config);
    if (certificates.length === 0) throw new BrokerError('identity_provider_error', 'signature validation is on but no signingCertificate is configured');
    if (message.binding === 'redirect') {
      const { SigAlg: sigAlg, Signature: signature } = params;
      if (!sigAlg || !signature) throw new BrokerError(error, 'message is not signed');
      const octets = redirectOctetStrings(parameter, params, message.rawQuery);
      if (!verifyRedirectSignature(octets, sigAlg, signature, certificates)) throw new BrokerError(error, 'signature does not verify with the configured certificates');
    } else {
      const check = verifyEnvelopedSignature(xml, root, certificates);
      if (!check.present) throw new BrokerError(error, 'message is not signed');
      if (!check.valid) throw new BrokerError(error, `signature: ${check.reason}`);
      root = parseXml(check.signedXml, error).documentElement!;
    }
  }

  const idpEntityId = config.idpEntityId?.trim();
  const issuer = textOf(childElement(root, NS.assertion, 'Issuer', error));
  if (idpEntityId && issuer !== idpEntityId) throw new BrokerError(error, 'issuer is not the identity provider');
  const destination = attribute(root, 'Destination');
  if (destination !== undefined && destination !== urls.endpoint) throw new BrokerError(error, 'Destination is not this endpoint');

  if (!isRequest) {
    const status = childElement(childElement(root, NS.protocol, 'Status', error)!, NS.protocol, 'StatusCode', error)!;
    const inResponseTo = attribute(root, 'InResponseTo');
    return { kind: 'response', success: attribute(status, 'Value') === STATUS_SUCCESS, ...(inResponseTo ? { inResponseTo } : {}), ...(relayState ? { relayState } : {}) };
  }

  const skew = allowedSkewMs(config);
  const notOnOrAfter = dateTime(attribute(root, 'NotOnOrAfter'), 'NotOnOrAfter', error);
  if (notOnOrAfter !== undefined && Date.now() - skew >= notOnOrAfter) throw new BrokerError(error, 'logout request has expired');
  if (childElements(root, NS.assertion, 'EncryptedID').length > 0) throw new BrokerError(error, 'encrypted NameID is not supported');
  const nameId = textOf(childElement(root, NS.assertion, 'NameID', error));
  if (!nameId) throw new BrokerError(error, 'logout request has no NameID');
  const sessionIndexes = childElements(root, NS.protocol, 'SessionIndex').map((el) => textOf(el)!).filter(Boolean);
  const requestId = attribute(root, 'ID')!;

  return {
    kind: 'request',
    nameId,
    sessionIndexes,
    async respond(responseRelayState?: string) {
      const slo = config.singleLogoutServiceUrl;
      if (!slo) throw new BrokerError('identity_provider_error', 'the identity provider has no singleLogoutServiceUrl to answer to');
      const { sp, peer } = await entities(realm, idp, urls);
      const binding = config.postBindingLogout === 'true' ? 'post' : 'redirect';
      const id = newMessageId();
      const xml = `<samlp:LogoutResponse xmlns:samlp="${NS.protocol}" xmlns:saml="${NS.assertion}"`
        + ` Destination="${xmlEscape(slo)}" ID="${id}" InResponseTo="${xmlEscape(requestId)}" IssueInstant="${new Date().toISOString()}" Version="2.0">`
        + `<saml:Issuer>${xmlEscape(spEntityId(idp, urls))}</saml:Issuer>`
        + `<samlp:Status><samlp:StatusCode Value="${STATUS_SUCCESS}"/></samlp:Status>`
        + '</samlp:LogoutResponse>';
      const context = sp.createLogoutResponse(peer, { extract: {} }, binding, {
        ...(responseRelayState ? { relayState: responseRelayState } : {}),
        customTagReplacement: () => ({ id, context: xml }),
      });
      const built = outgoing(binding, slo, context, 'SAMLResponse', responseRelayState);
      return 'redirect' in built ? { redirect: built.redirect } : { post: built.post };
    },
  };
}

/**
 * The octet strings a redirect-binding signature may cover (SAML bindings 3.4.4.1): from the raw
 * query when given, else rebuilt from the decoded parameters with encodeURIComponent, Java's
 * URLEncoder (Keycloak, Shibboleth) and lower-case hex (.NET, ADFS).
 */
function redirectOctetStrings(parameter: 'SAMLRequest' | 'SAMLResponse', params: Record<string, string>, rawQuery: string | undefined): string[] {
  const names = [parameter, ...(params.RelayState !== undefined ? ['RelayState'] : []), 'SigAlg'];
  if (rawQuery !== undefined) {
    const raw = new Map<string, string>();
    for (const pair of rawQuery.replace(/^\?/, '').split('&')) {
      const at = pair.indexOf('=');
      const name = at < 0 ? pair : pair.slice(0, at);
      if (!raw.has(name)) raw.set(name, at < 0 ? '' : pair.slice(at + 1));
    }
    if (names.every((name) => raw.has(name))) return [names.map((name) => `${name}=${raw.get(name)}`).join('&')];
  }
  const javaEncode = (value: string): string => encodeURIComponent(value).replace(/[!'()~]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`).replace(/%20/g, '+');
  const encoders = [encodeURIComponent, javaEncode];
  const octets = new Set<string>();
  for (const encode of encoders) {
    const upper = names.map((name) => `${name}=${encode(params[name]!)}`).join('&');
    octets.add(upper);
    octets.add(upper.replace(/%[0-9A-F]{2}/g, (hex) => hex.toLowerCase()));
  }
  return [...octets];
}
