// Validation of a SAML Response (HTTP-POST binding) at the assertion consumer service, and the
// brokered identity it vouches for.
//
// samlify's own response flow is not used for this: it checks signature, issuer, status and the
// Conditions time window, but not Destination, Recipient, InResponseTo, Audience, the bearer
// confirmation's NotOnOrAfter or replays, tries only the first configured certificate when the
// signature carries no KeyInfo, and cannot tell whether the assertion itself was signed. Every
// check is therefore done here, on the DOM of the bytes the signature covers (saml-xml.ts), with
// samlify providing the schema validation.
//
// Choices: a missing validateSignature means "required" when a signing certificate is configured
// (signatureRequired); allowedClockSkew missing or 0 means 30 s, as real IdP clocks drift; an
// AudienceRestriction naming us and a bearer SubjectConfirmation with Recipient and NotOnOrAfter
// are required, as the Web Browser SSO profile says; encrypted assertions are refused.
import {
  attribute, childElement, childElements, dateTime, decodePostMessage, descendants, isElement, NS, parseXml,
  signatureRequired, signingCertificates, STATUS_SUCCESS, textOf, validateSchema, verifyEnvelopedSignature,
} from './saml-xml.ts';
import { BrokerError, type BrokeredIdentity, type IdentityProviderModel } from './types.ts';

const INVALID = 'invalid_saml_response';
const BEARER = 'urn:oasis:names:tc:SAML:2.0:cm:bearer';
const EMAIL_FORMAT = 'urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress';
const UNSPECIFIED_FORMAT = 'urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified';
const DEFAULT_SKEW_SECONDS = 30;
/** Second-level status codes meaning the user did not (or could not) log in at the IdP. */
const CANCELLED_STATUSES = new Set(['AuthnFailed', 'NoPassive', 'RequestDenied']);

const EMAIL_ATTRIBUTES = ['email', 'mail', 'emailaddress', 'urn:oid:0.9.2342.19200300.100.1.3', 'http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress'];
const FIRST_NAME_ATTRIBUTES = ['givenName', 'givenname', 'firstName', 'urn:oid:2.5.4.42', 'http://schemas.xmlsoap.org/ws/2005/05/identity/claims/givenname'];
const LAST_NAME_ATTRIBUTES = ['sn', 'surname', 'lastName', 'urn:oid:2.5.4.4', 'http://schemas.xmlsoap.org/ws/2005/05/identity/claims/surname'];

export type ExpectedResponse = {
  requestId: string | undefined;
  destination: string;
  rememberAssertion(id: string, notOnOrAfter: Date): Promise<boolean>;
};

const refuse = (reason: string): BrokerError => new BrokerError(INVALID, reason);

export function allowedSkewMs(config: Record<string, string>): number {
  const seconds = Number.parseInt(config.allowedClockSkew ?? '', 10);
  return (Number.isFinite(seconds) && seconds > 0 ? seconds : DEFAULT_SKEW_SECONDS) * 1000;
}

/** Short name of a status code URI (urn:...:status:AuthnFailed -> AuthnFailed). */
/** The status code's last segment, bounded and printable (it goes into event details). */
const statusName = (value: string): string => value.slice(value.lastIndexOf(':') + 1).replace(/[^\w.-]/g, '').slice(0, 64);

export async function validateSamlResponse(
  idp: IdentityProviderModel, spEntityId: string, samlResponse: string, expected: ExpectedResponse,
): Promise<BrokeredIdentity> {
  const { config } = idp;
  const xml = decodePostMessage(samlResponse, INVALID);
  const doc = parseXml(xml, INVALID);
  const root = doc.documentElement!;
  if (!isElement(root, NS.protocol, 'Response')) throw refuse('message is not a SAML Response');
  await validateSchema(xml, INVALID);

  // Status first: IdPs often send error responses unsigned, and they log nobody in.
  const statusCode = childElement(childElement(root, NS.protocol, 'Status', INVALID)!, NS.protocol, 'StatusCode', INVALID)!;
  const top = attribute(statusCode, 'Value') ?? '';
  if (top !== STATUS_SUCCESS) {
    const nested = childElements(statusCode, NS.protocol, 'StatusCode')[0];
    const second = nested ? attribute(nested, 'Value') : undefined;
    const reason = `SAML status ${statusName(top)}${second ? `/${statusName(second)}` : ''}`;
    throw new BrokerError('identity_provider_error', reason, { cancelled: second !== undefined && CANCELLED_STATUSES.has(statusName(second)) });
  }

  if (descendants(root, NS.assertion, 'EncryptedAssertion').length > 0 || config.wantAssertionsEncrypted === 'true') {
    throw refuse('encrypted assertions are not supported');
  }
  // Exactly one assertion anywhere, as a child of the Response: a second (wrapped or injected)
  // assertion is refused outright rather than sorted out.
  const assertions = descendants(root, NS.assertion, 'Assertion');
  if (assertions.length !== 1 || assertions[0]!.parentNode !== root) throw refuse('response must contain exactly one assertion');

  // --- signatures: read the signed bytes, not the posted document --------------------------------
  let response = root;
  let assertion = assertions[0]!;
  let responseSigned = false;
  if (signatureRequired(config)) {
    const certificates = signingCertificates(config);
    if (certificates.length === 0) throw new BrokerError('identity_provider_error', 'signature validation is on but no signingCertificate is configured');
    const responseCheck = verifyEnvelopedSignature(xml, root, certificates);
    const assertionCheck = verifyEnvelopedSignature(xml, assertion, certificates);
    if (responseCheck.present && !responseCheck.valid) throw refuse(`response signature: ${responseCheck.reason}`);
    if (assertionCheck.present && !assertionCheck.valid) throw refuse(`assertion signature: ${assertionCheck.reason}`);
    if (!responseCheck.present && !assertionCheck.present) throw refuse('response is not signed');
    if (config.wantAssertionsSigned === 'true' && !assertionCheck.present) throw refuse('assertion is not signed');
    if (responseCheck.present) {
      response = parseXml(responseCheck.signedXml, INVALID).documentElement!;
      responseSigned = true;
      const signedAssertions = childElements(response, NS.assertion, 'Assertion');
      if (signedAssertions.length !== 1) throw refuse('response must contain exactly one assertion');
      assertion = signedAssertions[0]!;
    }
    if (assertionCheck.present) assertion = parseXml(assertionCheck.signedXml, INVALID).documentElement!;
    if (!isElement(response, NS.protocol, 'Response') || !isElement(assertion, NS.assertion, 'Assertion')) throw refuse('signed content is not the response');
  }

  const now = Date.now();
  const skew = allowedSkewMs(config);

  // --- the Response ---------------------------------------------------------------------------------
  if (attribute(response, 'Version') !== '2.0' || attribute(assertion, 'Version') !== '2.0') throw refuse('not a SAML 2.0 message');
  const idpEntityId = config.idpEntityId?.trim();
  const responseIssuer = textOf(childElement(response, NS.assertion, 'Issuer', INVALID));
  const assertionIssuer = textOf(childElement(assertion, NS.assertion, 'Issuer', INVALID));
  if (idpEntityId && ((responseIssuer !== undefined && responseIssuer !== idpEntityId) || assertionIssuer !== idpEntityId)) {
    throw refuse('issuer is not the identity provider');
  }
  const destination = attribute(response, 'Destination');
  if (destination !== undefined && destination !== expected.destination) throw refuse('Destination is not this endpoint');
  if (destination === undefined && responseSigned) throw refuse('signed response has no Destination');
  const inResponseTo = attribute(response, 'InResponseTo');
  if (expected.requestId === undefined) {
    if (inResponseTo !== undefined) throw refuse('unsolicited response has InResponseTo');
  } else if (inResponseTo !== expected.requestId) {
    throw refuse('InResponseTo does not match the request');
  }

  // --- Subject and its bearer confirmation ----------------------------------------------------------
  const subject = childElement(assertion, NS.assertion, 'Subject', INVALID);
  if (!subject) throw refuse('assertion has no Subject');
  if (childElements(subject, NS.assertion, 'EncryptedID').length > 0) throw refuse('encrypted NameID is not supported');
  const nameIdEl = childElement(subject, NS.assertion, 'NameID', INVALID);
  let confirmationNotOnOrAfter: number | undefined;
  let confirmationProblem = 'assertion has no bearer SubjectConfirmation';
  for (const confirmation of childElements(subject, NS.assertion, 'SubjectConfirmation')) {
    if (attribute(confirmation, 'Method') !== BEARER) continue;
    const data = childElement(confirmation, NS.assertion, 'SubjectConfirmationData', INVALID);
    const problem = data ? bearerProblem(data, expected, now, skew) : 'bearer SubjectConfirmation has no SubjectConfirmationData';
    if (problem === undefined) {
      confirmationNotOnOrAfter = dateTime(attribute(data!, 'NotOnOrAfter'), 'NotOnOrAfter', INVALID)!;
      break;
    }
    confirmationProblem = problem;
  }
  if (confirmationNotOnOrAfter === undefined) throw refuse(confirmationProblem);

  // --- Conditions -----------------------------------------------------------------------------------
  const conditions = childElement(assertion, NS.assertion, 'Conditions', INVALID);
  if (!conditions) throw refuse('assertion has no Conditions');
  const notBefore = dateTime(attribute(conditions, 'NotBefore'), 'NotBefore', INVALID);
  const notOnOrAfter = dateTime(attribute(conditions, 'NotOnOrAfter'), 'NotOnOrAfter', INVALID);
  if (notBefore !== undefined && now + skew < notBefore) throw refuse('assertion is not yet valid');
  if (notOnOrAfter !== undefined && now - skew >= notOnOrAfter) throw refuse('assertion has expired');
  const restrictions = childElements(conditions, NS.assertion, 'AudienceRestriction');
  if (restrictions.length === 0) throw refuse('assertion has no AudienceRestriction');
  for (const restriction of restrictions) {
    const audiences = childElements(restriction, NS.assertion, 'Audience').map((a) => textOf(a));
    if (!audiences.includes(spEntityId)) throw refuse('assertion audience is not this service provider');
  }

  // --- AuthnStatement -------------------------------------------------------------------------------
  const authn = childElements(assertion, NS.assertion, 'AuthnStatement')[0];
  const sessionIndex = authn ? attribute(authn, 'SessionIndex') : undefined;
  const sessionNotOnOrAfter = authn ? dateTime(attribute(authn, 'SessionNotOnOrAfter'), 'SessionNotOnOrAfter', INVALID) : undefined;
  if (sessionNotOnOrAfter !== undefined && now - skew >= sessionNotOnOrAfter) throw refuse('authentication session has expired');

  // --- identity -------------------------------------------------------------------------------------
  const attributes = readAttributes(assertion);
  const nameId = textOf(nameIdEl);
  const nameIdFormat = nameIdEl ? attribute(nameIdEl, 'Format') ?? UNSPECIFIED_FORMAT : undefined;
  const principalType = config.principalType ?? 'SUBJECT';
  let id: string | undefined;
  if (principalType === 'ATTRIBUTE' || principalType === 'FRIENDLY_ATTRIBUTE') {
    const name = config.principalAttribute ?? '';
    id = (principalType === 'ATTRIBUTE' ? attributes.byName : attributes.byFriendlyName).get(name)?.[0];
    if (!id) throw refuse(`principal attribute ${name} is missing`);
  } else {
    id = nameId;
    if (!id) throw refuse('assertion has no NameID');
  }
  const first = (names: string[]): string | undefined => {
    for (const name of names) {
      const value = attributes.byName.get(name)?.[0] ?? attributes.byFriendlyName.get(name)?.[0];
      if (value) return value;
    }
    return undefined;
  };
  const email = nameId && nameIdFormat === EMAIL_FORMAT ? nameId : first(EMAIL_ATTRIBUTES);
  const firstName = first(FIRST_NAME_ATTRIBUTES);
  const lastName = first(LAST_NAME_ATTRIBUTES);

  // --- replay: last, so refused assertions do not fill the table -------------------------------------
  const assertionId = attribute(assertion, 'ID');
  if (!assertionId) throw refuse('assertion has no ID');
  const validUntil = Math.min(confirmationNotOnOrAfter, notOnOrAfter ?? Number.POSITIVE_INFINITY) + skew;
  if (!await expected.rememberAssertion(assertionId, new Date(validUntil))) throw refuse('assertion was already used (replay)');

  return {
    alias: idp.alias,
    id,
    username: id,
    ...(email ? { email } : {}),
    ...(firstName ? { firstName } : {}),
    ...(lastName ? { lastName } : {}),
    attributes: Object.fromEntries(attributes.all),
    ...(nameId ? { nameId } : {}),
    ...(nameIdFormat ? { nameIdFormat } : {}),
    ...(sessionIndex ? { sessionIndex } : {}),
  };
}

/** Why a bearer SubjectConfirmationData does not confirm this response (undefined: it does). */
function bearerProblem(data: Element, expected: ExpectedResponse, now: number, skew: number): string | undefined {
  const recipient = attribute(data, 'Recipient');
  if (recipient === undefined) return 'bearer confirmation has no Recipient';
  if (recipient !== expected.destination) return 'bearer confirmation Recipient is not this endpoint';
  const notOnOrAfter = dateTime(attribute(data, 'NotOnOrAfter'), 'NotOnOrAfter', INVALID);
  if (notOnOrAfter === undefined) return 'bearer confirmation has no NotOnOrAfter';
  if (now - skew >= notOnOrAfter) return 'bearer confirmation has expired';
  const notBefore = dateTime(attribute(data, 'NotBefore'), 'NotBefore', INVALID);
  if (notBefore !== undefined && now + skew < notBefore) return 'bearer confirmation is not yet valid';
  const inResponseTo = attribute(data, 'InResponseTo');
  if (expected.requestId === undefined) {
    if (inResponseTo !== undefined) return 'unsolicited response has InResponseTo';
  } else if (inResponseTo !== undefined && inResponseTo !== expected.requestId) {
    return 'bearer confirmation InResponseTo does not match the request';
  }
  return undefined;
}

type AttributeValues = { byName: Map<string, string[]>; byFriendlyName: Map<string, string[]>; all: Map<string, string[]> };

/** AttributeStatement values by Name, by FriendlyName, and both merged (Keycloak's attribute lookups). */
function readAttributes(assertion: Element): AttributeValues {
  const out: AttributeValues = { byName: new Map(), byFriendlyName: new Map(), all: new Map() };
  const add = (map: Map<string, string[]>, key: string, values: string[]): void => {
    const list = map.get(key);
    if (list) list.push(...values);
    else map.set(key, [...values]);
  };
  for (const statement of childElements(assertion, NS.assertion, 'AttributeStatement')) {
    for (const attr of childElements(statement, NS.assertion, 'Attribute')) {
      const values = childElements(attr, NS.assertion, 'AttributeValue').map((v) => (v.textContent ?? '').trim());
      const name = attribute(attr, 'Name');
      const friendly = attribute(attr, 'FriendlyName');
      if (name) {
        add(out.byName, name, values);
        add(out.all, name, values);
      }
      if (friendly) {
        add(out.byFriendlyName, friendly, values);
        if (friendly !== name) add(out.all, friendly, values);
      }
    }
  }
  return out;
}
