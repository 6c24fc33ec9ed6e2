// A SAML 2.0 identity provider for tests: an RSA key and self-signed certificate made by openssl,
// samlify's IdentityProvider entity for its metadata and samlify's XML signing (xml-crypto) for
// its messages. It builds login Responses with every field under the test's control, so a test
// can produce the valid response and each attack on it: unsigned, signed by another key, signature
// wrapping, expired / not yet valid, wrong audience / Destination / Recipient / InResponseTo,
// unsolicited with InResponseTo, error status; and logout requests / responses in both bindings.
import crypto from 'node:crypto';
import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import zlib from 'node:zlib';

import { DOMParser, XMLSerializer } from '@xmldom/xmldom';
import * as samlifyModule from 'samlify';

const samlify = ((samlifyModule as unknown as { default?: typeof samlifyModule }).default ?? samlifyModule);
const run = promisify(execFile);

export const SAML = {
  protocol: 'urn:oasis:names:tc:SAML:2.0:protocol',
  assertion: 'urn:oasis:names:tc:SAML:2.0:assertion',
  dsig: 'http://www.w3.org/2000/09/xmldsig#',
  post: 'urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST',
  redirect: 'urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect',
  success: 'urn:oasis:names:tc:SAML:2.0:status:Success',
  responder: 'urn:oasis:names:tc:SAML:2.0:status:Responder',
  authnFailed: 'urn:oasis:names:tc:SAML:2.0:status:AuthnFailed',
  persistent: 'urn:oasis:names:tc:SAML:2.0:nameid-format:persistent',
  transient: 'urn:oasis:names:tc:SAML:2.0:nameid-format:transient',
  email: 'urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress',
  unspecified: 'urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified',
  rsaSha256: 'http://www.w3.org/2001/04/xmldsig-more#rsa-sha256',
} as const;

export type KeyPair = { privateKeyPem: string; certificatePem: string; certificateBase64: string };

/** An RSA 2048 key and a 2-day self-signed certificate (openssl). */
export async function generateKeyPair(commonName = 'test-idp'): Promise<KeyPair> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'saml-idp-'));
  try {
    const keyFile = path.join(dir, 'key.pem');
    const certFile = path.join(dir, 'cert.pem');
    await run('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-subj', `/CN=${commonName}`, '-days', '2', '-keyout', keyFile, '-out', certFile]);
    const privateKeyPem = await fs.readFile(keyFile, 'utf8');
    const certificatePem = await fs.readFile(certFile, 'utf8');
    const certificateBase64 = certificatePem.replace(/-----(BEGIN|END) CERTIFICATE-----/g, '').replace(/\s+/g, '');
    return { privateKeyPem, certificatePem, certificateBase64 };
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
}

export type SamlAttribute = { name: string; friendlyName?: string; values: string[] };

export type ResponseOptions = {
  /** SP entity id (Audience). */
  audience: string;
  /** ACS URL: Destination and Recipient unless overridden. */
  acsUrl: string;
  /** The AuthnRequest id; omit for an unsolicited (IdP-initiated) response. */
  inResponseTo?: string;
  /** InResponseTo of the bearer SubjectConfirmationData only (default: inResponseTo; null: none). */
  subjectInResponseTo?: string | null;
  nameId?: string;
  nameIdFormat?: string;
  attributes?: SamlAttribute[];
  sessionIndex?: string;
  /** Which elements carry a signature (default 'both'). */
  sign?: 'none' | 'response' | 'assertion' | 'both';
  /** Key to sign with (default: the IdP's own). */
  signingKey?: KeyPair;
  /** Response Destination (default acsUrl; null: none). */
  destination?: string | null;
  /** Bearer confirmation Recipient (default acsUrl). */
  recipient?: string;
  issuer?: string;
  /** Conditions validity (default now-1 min .. now+5 min) and bearer confirmation NotOnOrAfter (default now+5 min). */
  notBefore?: Date;
  notOnOrAfter?: Date;
  subjectNotOnOrAfter?: Date;
  /** Non-Success status: top-level and optional second-level status code URIs. */
  status?: { code: string; subCode?: string };
  assertionId?: string;
};

export type SignatureWrapping =
  /** A second, unsigned assertion (other NameID) inserted before the signed one. */
  | 'injected-assertion'
  /** The evil assertion takes the signed one's place; the signed one moves into Extensions. */
  | 'moved-original'
  /** The evil assertion carries the original's Signature; the original moves into the evil one's SubjectConfirmationData. */
  | 'signature-copied'
  /** The assertion's signature moved up to be the Response's: it references a different element than the one it is in. */
  | 'foreign-reference'
  /** The NameID changed after signing (response and assertion signed). */
  | 'tampered';

export type LogoutMessageOptions = {
  destination: string;
  binding: 'redirect' | 'post';
  relayState?: string;
  /** Default true; a redirect message is signed with SigAlg/Signature, a POST one with an enveloped signature. */
  sign?: boolean;
  signingKey?: KeyPair;
  issuer?: string;
};

export type EncodedMessage = {
  /** Redirect binding: the full URL, its decoded parameters and raw query string. */
  url?: string;
  query?: Record<string, string>;
  rawQuery?: string;
  /** POST binding: the form fields. */
  form?: Record<string, string>;
  id: string;
  xml: string;
};

export type TestSamlIdp = {
  entityId: string;
  ssoUrl: string;
  sloUrl: string;
  key: KeyPair;
  /** A second key the SP does not trust. */
  otherKey: KeyPair;
  certificateBase64: string;
  metadataXml: string;
  /** Keycloak config for a `saml` identity provider pointing at this IdP (merge overrides). */
  config(overrides?: Record<string, string>): Record<string, string>;
  /** The Response XML (signed per options). */
  responseXml(options: ResponseOptions): string;
  /** The Response, base64 (as POSTed in SAMLResponse). */
  response(options: ResponseOptions): Promise<string>;
  /** A signature-wrapping attack built from a validly signed response. */
  wrapped(kind: SignatureWrapping, options: ResponseOptions): Promise<string>;
  logoutRequest(options: LogoutMessageOptions & { nameId: string; nameIdFormat?: string; sessionIndex?: string; notOnOrAfter?: Date }): EncodedMessage;
  logoutResponse(options: LogoutMessageOptions & { inResponseTo: string; status?: string }): EncodedMessage;
};

const xmlEscape = (value: string): string =>
  value.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;' })[c]!);

const newId = (): string => `_${crypto.randomUUID()}`;

export const toBase64 = (xml: string): string => Buffer.from(xml, 'utf8').toString('base64');
export const fromBase64 = (value: string): string => Buffer.from(value, 'base64').toString('utf8');

/** The XML of a Redirect-binding message (SAMLRequest / SAMLResponse parameter value, decoded). */
export function inflateRedirectMessage(value: string): string {
  return zlib.inflateRawSync(Buffer.from(value, 'base64')).toString('utf8');
}

export function parseXml(xml: string): Document {
  return new DOMParser().parseFromString(xml, 'text/xml') as unknown as Document;
}

const serialize = (node: Node): string => new XMLSerializer().serializeToString(node as never);

function firstElement(root: Document | Element, ns: string, localName: string): Element {
  const found = (root as Element).getElementsByTagNameNS(ns, localName)[0];
  if (!found) throw new Error(`no ${localName}`);
  return found;
}

/** Enveloped signature on the element at `xpath`, placed after its Issuer (schema order). */
function sign(xml: string, element: 'Response' | 'Assertion' | 'LogoutRequest' | 'LogoutResponse', key: KeyPair): string {
  const target = element === 'Assertion' ? "/*[local-name(.)='Response']/*[local-name(.)='Assertion']" : `/*[local-name(.)='${element}']`;
  return samlify.SamlLib.constructSAMLSignature({
    rawSamlMessage: xml,
    referenceTagXPath: target,
    privateKey: key.privateKeyPem,
    signingCert: key.certificateBase64,
    signatureAlgorithm: SAML.rsaSha256,
    isBase64Output: false,
    signatureConfig: { prefix: 'ds', location: { reference: `${target}/*[local-name(.)='Issuer']`, action: 'after' } },
  }) as string;
}

export async function createTestSamlIdp(options: { entityId?: string; baseUrl?: string } = {}): Promise<TestSamlIdp> {
  const [key, otherKey] = await Promise.all([generateKeyPair('test-idp'), generateKeyPair('attacker')]);
  const baseUrl = options.baseUrl ?? 'https://idp.example.test';
  const entityId = options.entityId ?? `${baseUrl}/metadata`;
  const ssoUrl = `${baseUrl}/sso`;
  const sloUrl = `${baseUrl}/slo`;
  const entity = samlify.IdentityProvider({
    entityID: entityId,
    signingCert: key.certificateBase64,
    privateKey: key.privateKeyPem,
    wantAuthnRequestsSigned: false,
    nameIDFormat: [SAML.persistent, SAML.email, SAML.transient, SAML.unspecified],
    singleSignOnService: [{ Binding: SAML.redirect, Location: ssoUrl }, { Binding: SAML.post, Location: ssoUrl }],
    singleLogoutService: [{ Binding: SAML.redirect, Location: sloUrl }, { Binding: SAML.post, Location: sloUrl }],
  });

  function responseXml(o: ResponseOptions): string {
    const now = Date.now();
    const issueInstant = new Date(now).toISOString();
    const notBefore = (o.notBefore ?? new Date(now - 60_000)).toISOString();
    const notOnOrAfter = (o.notOnOrAfter ?? new Date(now + 300_000)).toISOString();
    const subjectNotOnOrAfter = (o.subjectNotOnOrAfter ?? new Date(now + 300_000)).toISOString();
    const issuer = xmlEscape(o.issuer ?? entityId);
    const destination = o.destination === undefined ? o.acsUrl : o.destination;
    const subjectInResponseTo = o.subjectInResponseTo === undefined ? o.inResponseTo : o.subjectInResponseTo ?? undefined;
    const status = o.status
      ? `<samlp:StatusCode Value="${o.status.code}">${o.status.subCode ? `<samlp:StatusCode Value="${o.status.subCode}"/>` : ''}</samlp:StatusCode>`
      : `<samlp:StatusCode Value="${SAML.success}"/>`;
    const attributes = (o.attributes ?? []).map((a) => `<saml:Attribute Name="${xmlEscape(a.name)}"${a.friendlyName ? ` FriendlyName="${xmlEscape(a.friendlyName)}"` : ''} NameFormat="urn:oasis:names:tc:SAML:2.0:attrname-format:basic">`
      + a.values.map((v) => `<saml:AttributeValue xsi:type="xs:string">${xmlEscape(v)}</saml:AttributeValue>`).join('')
      + '</saml:Attribute>').join('');
    const assertion = o.status ? '' : `<saml:Assertion xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:xs="http://www.w3.org/2001/XMLSchema" ID="${o.assertionId ?? newId()}" Version="2.0" IssueInstant="${issueInstant}">`
      + `<saml:Issuer>${issuer}</saml:Issuer>`
      + `<saml:Subject><saml:NameID Format="${o.nameIdFormat ?? SAML.persistent}">${xmlEscape(o.nameId ?? 'user-1')}</saml:NameID>`
      + `<saml:SubjectConfirmation Method="urn:oasis:names:tc:SAML:2.0:cm:bearer"><saml:SubjectConfirmationData NotOnOrAfter="${subjectNotOnOrAfter}" Recipient="${xmlEscape(o.recipient ?? o.acsUrl)}"${subjectInResponseTo ? ` InResponseTo="${xmlEscape(subjectInResponseTo)}"` : ''}/></saml:SubjectConfirmation></saml:Subject>`
      + `<saml:Conditions NotBefore="${notBefore}" NotOnOrAfter="${notOnOrAfter}"><saml:AudienceRestriction><saml:Audience>${xmlEscape(o.audience)}</saml:Audience></saml:AudienceRestriction></saml:Conditions>`
      + `<saml:AuthnStatement AuthnInstant="${issueInstant}" SessionIndex="${xmlEscape(o.sessionIndex ?? newId())}"><saml:AuthnContext><saml:AuthnContextClassRef>urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport</saml:AuthnContextClassRef></saml:AuthnContext></saml:AuthnStatement>`
      + (attributes ? `<saml:AttributeStatement>${attributes}</saml:AttributeStatement>` : '')
      + '</saml:Assertion>';
    let xml = `<samlp:Response xmlns:samlp="${SAML.protocol}" xmlns:saml="${SAML.assertion}" ID="${newId()}" Version="2.0" IssueInstant="${issueInstant}"`
      + `${destination ? ` Destination="${xmlEscape(destination)}"` : ''}${o.inResponseTo ? ` InResponseTo="${xmlEscape(o.inResponseTo)}"` : ''}>`
      + `<saml:Issuer>${issuer}</saml:Issuer><samlp:Status>${status}</samlp:Status>${assertion}</samlp:Response>`;
    const mode = o.sign ?? 'both';
    const signingKey = o.signingKey ?? key;
    if (assertion && (mode === 'assertion' || mode === 'both')) xml = sign(xml, 'Assertion', signingKey);
    if (mode === 'response' || mode === 'both') xml = sign(xml, 'Response', signingKey);
    return xml;
  }

  function wrappedXml(kind: SignatureWrapping, o: ResponseOptions): string {
    if (kind === 'tampered') {
      const xml = responseXml({ ...o, sign: 'both', nameId: o.nameId ?? 'user-1' });
      return xml.replace(`>${xmlEscape(o.nameId ?? 'user-1')}</saml:NameID>`, '>admin</saml:NameID>');
    }
    const doc = parseXml(responseXml({ ...o, sign: 'assertion' }));
    const response = doc.documentElement!;
    const original = firstElement(doc, SAML.assertion, 'Assertion');
    const evil = original.cloneNode(true) as Element;
    evil.setAttribute('ID', newId());
    firstElement(evil, SAML.assertion, 'NameID').textContent = 'admin';
    const evilSignature = firstElement(evil, SAML.dsig, 'Signature');
    if (kind === 'injected-assertion') {
      evil.removeChild(evilSignature);
      response.insertBefore(evil, original);
    } else if (kind === 'moved-original' || kind === 'signature-copied') {
      if (kind === 'moved-original') evil.removeChild(evilSignature);
      response.replaceChild(evil, original);
      if (kind === 'moved-original') {
        const extensions = doc.createElementNS(SAML.protocol, 'samlp:Extensions');
        extensions.appendChild(original);
        response.insertBefore(extensions, firstElement(response, SAML.protocol, 'Status'));
      } else {
        firstElement(evil, SAML.assertion, 'SubjectConfirmationData').appendChild(original);
      }
    } else if (kind === 'foreign-reference') {
      const signature = firstElement(original, SAML.dsig, 'Signature');
      original.removeChild(signature);
      response.insertBefore(signature, firstElement(response, SAML.protocol, 'Status'));
      firstElement(original, SAML.assertion, 'NameID').textContent = 'admin';
    }
    return serialize(doc as unknown as Node);
  }

  function encode(xml: string, id: string, parameter: 'SAMLRequest' | 'SAMLResponse', element: 'LogoutRequest' | 'LogoutResponse', o: LogoutMessageOptions): EncodedMessage {
    const signingKey = o.signingKey ?? key;
    const signed = o.sign !== false;
    if (o.binding === 'post') {
      const body = signed ? sign(xml, element, signingKey) : xml;
      return { id, xml: body, form: { [parameter]: toBase64(body), ...(o.relayState ? { RelayState: o.relayState } : {}) } };
    }
    const query: Record<string, string> = { [parameter]: zlib.deflateRawSync(Buffer.from(xml, 'utf8')).toString('base64') };
    if (o.relayState) query.RelayState = o.relayState;
    if (signed) query.SigAlg = SAML.rsaSha256;
    let rawQuery = Object.entries(query).map(([k, v]) => `${k}=${encodeURIComponent(v)}`).join('&');
    if (signed) {
      query.Signature = crypto.sign('sha256', Buffer.from(rawQuery), signingKey.privateKeyPem).toString('base64');
      rawQuery += `&Signature=${encodeURIComponent(query.Signature)}`;
    }
    return { id, xml, query, rawQuery, url: `${o.destination}?${rawQuery}` };
  }

  return {
    entityId,
    ssoUrl,
    sloUrl,
    key,
    otherKey,
    certificateBase64: key.certificateBase64,
    metadataXml: entity.getMetadata(),
    config: (overrides = {}) => ({
      idpEntityId: entityId,
      singleSignOnServiceUrl: ssoUrl,
      singleLogoutServiceUrl: sloUrl,
      signingCertificate: key.certificateBase64,
      validateSignature: 'true',
      nameIDPolicyFormat: SAML.persistent,
      postBindingResponse: 'true',
      ...overrides,
    }),
    responseXml,
    response: async (o) => toBase64(responseXml(o)),
    wrapped: async (kind, o) => toBase64(wrappedXml(kind, o)),
    logoutRequest(o) {
      const id = newId();
      const xml = `<samlp:LogoutRequest xmlns:samlp="${SAML.protocol}" xmlns:saml="${SAML.assertion}" ID="${id}" Version="2.0" IssueInstant="${new Date().toISOString()}" Destination="${xmlEscape(o.destination)}"`
        + `${o.notOnOrAfter ? ` NotOnOrAfter="${o.notOnOrAfter.toISOString()}"` : ''}>`
        + `<saml:Issuer>${xmlEscape(o.issuer ?? entityId)}</saml:Issuer>`
        + `<saml:NameID${o.nameIdFormat ? ` Format="${o.nameIdFormat}"` : ''}>${xmlEscape(o.nameId)}</saml:NameID>`
        + (o.sessionIndex ? `<samlp:SessionIndex>${xmlEscape(o.sessionIndex)}</samlp:SessionIndex>` : '')
        + '</samlp:LogoutRequest>';
      return encode(xml, id, 'SAMLRequest', 'LogoutRequest', o);
    },
    logoutResponse(o) {
      const id = newId();
      const xml = `<samlp:LogoutResponse xmlns:samlp="${SAML.protocol}" xmlns:saml="${SAML.assertion}" ID="${id}" Version="2.0" IssueInstant="${new Date().toISOString()}" Destination="${xmlEscape(o.destination)}" InResponseTo="${xmlEscape(o.inResponseTo)}">`
        + `<saml:Issuer>${xmlEscape(o.issuer ?? entityId)}</saml:Issuer><samlp:Status><samlp:StatusCode Value="${o.status ?? SAML.success}"/></samlp:Status>`
        + '</samlp:LogoutResponse>';
      return encode(xml, id, 'SAMLResponse', 'LogoutResponse', o);
    },
  };
}
