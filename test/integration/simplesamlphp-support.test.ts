// The real SimpleSAMLphp IdP the SAML brokering tests run against, driven without a browser:
// metadata, SP-initiated login (HTTP-Redirect AuthnRequest -> login form -> auto-POST form to the
// ACS) with both signatures checked against the published certificate, NameID formats, a wrong
// password, IdP-initiated login, signed AuthnRequests, single logout, parallel instances and a
// clean stop.
import { execFileSync, spawnSync } from 'node:child_process';
import { createPublicKey, randomBytes, sign, verify } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { deflateRawSync, inflateRawSync } from 'node:zlib';

import { DOMParser } from '@xmldom/xmldom';
import { SignedXml } from 'xml-crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { CookieJar, decodeEntities, get, post } from '../support/browserless.ts';
import {
  ATTRNAME_FORMAT_BASIC, NAMEID_EMAIL, NAMEID_PERSISTENT, NAMEID_TRANSIENT, NAMEID_UNSPECIFIED,
  startSimpleSamlPhp, type SimpleSamlPhp,
} from '../support/simplesamlphp.ts';

const SAMLP = 'urn:oasis:names:tc:SAML:2.0:protocol';
const SAML = 'urn:oasis:names:tc:SAML:2.0:assertion';
const DS = 'http://www.w3.org/2000/09/xmldsig#';
const MD = 'urn:oasis:names:tc:SAML:2.0:metadata';
const RSA_SHA256 = 'http://www.w3.org/2001/04/xmldsig-more#rsa-sha256';
const BINDING_REDIRECT = 'urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect';
const SUCCESS = 'urn:oasis:names:tc:SAML:2.0:status:Success';

// Broker endpoints in Cloakroom's shape; nothing listens there (the test stops at the POST form).
const BROKER = 'http://127.0.0.1:1/realms/test/broker/ssp/endpoint';
const SIGNED_BROKER = 'http://127.0.0.1:1/realms/test/broker/ssp-signed/endpoint';

const JDOE = {
  username: 'jdoe', password: 'Secret-1',
  attributes: { mail: ['jdoe@example.org'], givenName: ['John'], sn: ['Doe'], groups: ['agents', 'staff'] },
};

// --- SAML messages by hand ------------------------------------------------------------------

const xmlAttr = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/"/g, '&quot;');
const newId = () => `_${randomBytes(16).toString('hex')}`;

function authnRequest(o: { id: string; issuer: string; destination: string; acsUrl?: string; nameIdFormat?: string }): string {
  return `<samlp:AuthnRequest xmlns:samlp="${SAMLP}" xmlns:saml="${SAML}" ID="${o.id}" Version="2.0" IssueInstant="${new Date().toISOString()}"`
    + ` Destination="${xmlAttr(o.destination)}" ProtocolBinding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST"`
    + (o.acsUrl ? ` AssertionConsumerServiceURL="${xmlAttr(o.acsUrl)}"` : '')
    + `><saml:Issuer>${xmlAttr(o.issuer)}</saml:Issuer>`
    + (o.nameIdFormat ? `<samlp:NameIDPolicy Format="${o.nameIdFormat}" AllowCreate="true"/>` : '')
    + '</samlp:AuthnRequest>';
}

function logoutRequest(o: { id: string; issuer: string; destination: string; nameId: NameId; sessionIndex: string }): string {
  const qualifier = o.nameId.spNameQualifier ? ` SPNameQualifier="${xmlAttr(o.nameId.spNameQualifier)}"` : '';
  return `<samlp:LogoutRequest xmlns:samlp="${SAMLP}" xmlns:saml="${SAML}" ID="${o.id}" Version="2.0" IssueInstant="${new Date().toISOString()}" Destination="${xmlAttr(o.destination)}">`
    + `<saml:Issuer>${xmlAttr(o.issuer)}</saml:Issuer>`
    + `<saml:NameID${qualifier} Format="${o.nameId.format}">${xmlAttr(o.nameId.value)}</saml:NameID>`
    + `<samlp:SessionIndex>${xmlAttr(o.sessionIndex)}</samlp:SessionIndex></samlp:LogoutRequest>`;
}

/** HTTP-Redirect binding URL; with a key, signed over SAMLRequest&RelayState&SigAlg as the binding says. */
function redirectUrl(endpoint: string, message: string, relayState?: string, keyPem?: string): string {
  let query = `SAMLRequest=${encodeURIComponent(deflateRawSync(Buffer.from(message, 'utf8')).toString('base64'))}`;
  if (relayState !== undefined) query += `&RelayState=${encodeURIComponent(relayState)}`;
  if (keyPem) {
    query += `&SigAlg=${encodeURIComponent(RSA_SHA256)}`;
    query += `&Signature=${encodeURIComponent(sign('sha256', Buffer.from(query, 'utf8'), keyPem).toString('base64'))}`;
  }
  return `${endpoint}?${query}`;
}

// --- pages ------------------------------------------------------------------------------------

type Form = { action: string; fields: Record<string, string> };

/** SimpleSAMLphp's forms (login and auto-POST): action and every named input with a value. */
function parseSspForm(html: string, pageUrl: string): Form | undefined {
  const form = /<form\b[^>]*\baction="([^"]*)"[^>]*>([\s\S]*?)<\/form>/i.exec(html);
  if (!form) return undefined;
  const fields: Record<string, string> = {};
  for (const input of form[2]!.matchAll(/<input\b[^>]*>/gi)) {
    const name = /\bname="([^"]*)"/.exec(input[0])?.[1];
    if (name === undefined) continue;
    fields[decodeEntities(name)] = decodeEntities(/\bvalue="([^"]*)"/.exec(input[0])?.[1] ?? '');
  }
  return { action: new URL(decodeEntities(form[1]!), pageUrl).href, fields };
}

/** GET with the jar, following redirects on the IdP; returns the last response and its URL. */
async function browse(url: string, jar: CookieJar, idp: SimpleSamlPhp): Promise<{ response: Response; url: string; html: string }> {
  let current = url;
  let response = await get(current, jar);
  for (let hops = 0; response.status >= 300 && response.status < 400; hops++) {
    if (hops > 10) throw new Error('redirect loop');
    const next = new URL(response.headers.get('location')!, current).href;
    if (!next.startsWith(idp.baseUrl)) return { response, url: next, html: '' };
    current = next;
    response = await get(current, jar);
  }
  return { response, url: current, html: await response.text() };
}

type PostToSp = { action: string; samlResponse?: string; relayState?: string; html: string; status: number };

/** Opens url (an SSO request), fills in the login form when it shows, returns the final page's form. */
async function signIn(idp: SimpleSamlPhp, url: string, jar: CookieJar, username: string, password: string): Promise<PostToSp> {
  let page = await browse(url, jar, idp);
  let form = parseSspForm(page.html, page.url);
  if (form && 'password' in form.fields) {
    const submitted = await post(form.action, { ...form.fields, username, password }, jar);
    const location = submitted.headers.get('location');
    page = location
      ? await browse(new URL(location, form.action).href, jar, idp)
      : { response: submitted, url: form.action, html: await submitted.text() };
    form = parseSspForm(page.html, page.url);
  }
  return {
    action: form?.action ?? '',
    samlResponse: form?.fields.SAMLResponse,
    relayState: form?.fields.RelayState,
    html: page.html,
    status: page.response.status,
  };
}

// --- reading and checking the Response --------------------------------------------------------

function parseXml(xml: string): Document {
  return new DOMParser().parseFromString(xml, 'text/xml') as unknown as Document;
}

function children(parent: Element, ns: string, localName: string): Element[] {
  return Array.from(parent.childNodes).filter((n): n is Element =>
    n.nodeType === 1 && (n as Element).namespaceURI === ns && (n as Element).localName === localName);
}

function child(parent: Element, ns: string, localName: string): Element {
  const [found] = children(parent, ns, localName);
  if (!found) throw new Error(`no ${localName} in ${parent.localName}`);
  return found;
}

const pemOf = (base64: string) => `-----BEGIN CERTIFICATE-----\n${base64.match(/.{1,64}/g)!.join('\n')}\n-----END CERTIFICATE-----\n`;

/** The enveloped signature directly under element: valid with the IdP cert, over that element, rsa-sha256. */
function checkEnvelopedSignature(xml: string, element: Element, certificateBase64: string): void {
  const signature = child(element, DS, 'Signature');
  const signedInfo = child(signature, DS, 'SignedInfo');
  expect(child(signedInfo, DS, 'SignatureMethod').getAttribute('Algorithm')).toBe(RSA_SHA256);
  expect(child(signature, DS, 'KeyInfo').textContent!.replace(/\s+/g, '')).toBe(certificateBase64);
  const verifier = new SignedXml({ publicCert: pemOf(certificateBase64) });
  verifier.loadSignature(signature);
  expect(verifier.checkSignature(xml)).toBe(true);
  expect(verifier.getReferences().map((r) => r.uri)).toEqual([`#${element.getAttribute('ID')}`]);
}

type NameId = { value: string; format: string; spNameQualifier: string | null };

type ParsedResponse = {
  xml: string;
  response: Element;
  assertion: Element;
  nameId: NameId;
  sessionIndex: string;
  attributes: Record<string, { nameFormat: string | null; values: string[] }>;
};

function readResponse(samlResponse: string): ParsedResponse {
  const xml = Buffer.from(samlResponse, 'base64').toString('utf8');
  const response = parseXml(xml).documentElement as unknown as Element;
  expect([response.namespaceURI, response.localName]).toEqual([SAMLP, 'Response']);
  const assertion = child(response, SAML, 'Assertion');
  const nameIdElement = child(child(assertion, SAML, 'Subject'), SAML, 'NameID');
  const attributes: ParsedResponse['attributes'] = {};
  for (const statement of children(assertion, SAML, 'AttributeStatement')) {
    for (const attribute of children(statement, SAML, 'Attribute')) {
      attributes[attribute.getAttribute('Name')!] = {
        nameFormat: attribute.getAttribute('NameFormat'),
        values: children(attribute, SAML, 'AttributeValue').map((v) => v.textContent ?? ''),
      };
    }
  }
  return {
    xml, response, assertion,
    nameId: { value: nameIdElement.textContent ?? '', format: nameIdElement.getAttribute('Format') ?? '', spNameQualifier: nameIdElement.getAttribute('SPNameQualifier') },
    sessionIndex: child(assertion, SAML, 'AuthnStatement').getAttribute('SessionIndex') ?? '',
    attributes,
  };
}

function statusCode(message: Element): string | null {
  return child(child(message, SAMLP, 'Status'), SAMLP, 'StatusCode').getAttribute('Value');
}

/** Running php processes of an instance (pgrep: its process group, or its listen address); zombies do not count. */
function phpProcesses(pid: number, port: string): string[] {
  const byGroup = spawnSync('pgrep', ['-g', String(pid), '-a'], { encoding: 'utf8' });
  const byPort = spawnSync('pgrep', ['-f', '-a', `php .*-S 127\\.0\\.0\\.1:${port} `], { encoding: 'utf8' });
  if (byGroup.error || byPort.error) throw byGroup.error ?? byPort.error;
  const lines = new Set(`${byGroup.stdout}${byPort.stdout}`.split('\n').filter((l) => l.trim() !== ''));
  return [...lines].filter((line) => {
    const stat = (() => { try { return readFileSync(`/proc/${line.split(' ')[0]}/stat`, 'utf8'); } catch { return ''; } })();
    return stat !== '' && !/^[ZX]/.test(stat.slice(stat.lastIndexOf(')') + 2));
  });
}

// --- the tests --------------------------------------------------------------------------------

describe('SimpleSAMLphp test IdP', () => {
  let idp: SimpleSamlPhp;
  let spDir: string;
  let spKeyPem: string;
  let spCertBase64: string;

  beforeAll(async () => {
    spDir = mkdtempSync(path.join(os.tmpdir(), 'cloakroom-saml-sp-'));
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-sha256', '-days', '30',
      '-keyout', path.join(spDir, 'sp.key'), '-out', path.join(spDir, 'sp.crt'), '-subj', '/CN=Cloakroom test SP'], { stdio: 'ignore' });
    spKeyPem = readFileSync(path.join(spDir, 'sp.key'), 'utf8');
    spCertBase64 = readFileSync(path.join(spDir, 'sp.crt'), 'utf8').replace(/-----[^-]+-----/g, '').replace(/\s+/g, '');

    const started = performance.now();
    idp = await startSimpleSamlPhp({
      serviceProviders: [
        { entityId: BROKER, acsUrl: BROKER, sloUrl: BROKER },
        { entityId: SIGNED_BROKER, acsUrl: SIGNED_BROKER, spCertificateBase64: spCertBase64, signResponse: false },
      ],
      users: [
        JDOE,
        { username: 'ann', password: 'pw:with:colons', attributes: { uid: ['ann.other'], mail: ['ann@example.org'] } },
      ],
    });
    console.log(`SimpleSAMLphp started in ${Math.round(performance.now() - started)} ms at ${idp.baseUrl}`);
  });

  afterAll(async () => {
    await idp?.stop();
    if (spDir) rmSync(spDir, { recursive: true, force: true });
  });

  it('publishes metadata: entity id, signing certificate, SSO and SLO endpoints', async () => {
    const response = await fetch(idp.metadataUrl);
    expect(response.status).toBe(200);
    const doc = parseXml(await response.text());
    const entity = doc.documentElement as unknown as Element;
    expect(entity.getAttribute('entityID')).toBe(idp.entityId);
    expect(idp.entityId).toBe(`${idp.baseUrl}/saml2/idp/metadata.php`);
    const descriptor = child(entity, MD, 'IDPSSODescriptor');
    const signing = children(descriptor, MD, 'KeyDescriptor').find((k) => k.getAttribute('use') === 'signing')!;
    expect(signing.textContent!.replace(/\s+/g, '')).toBe(idp.certificateBase64);
    createPublicKey(pemOf(idp.certificateBase64)); // a real certificate
    const sso = children(descriptor, MD, 'SingleSignOnService').find((s) => s.getAttribute('Binding') === BINDING_REDIRECT);
    expect(sso?.getAttribute('Location')).toBe(idp.ssoUrl);
    const slo = children(descriptor, MD, 'SingleLogoutService').find((s) => s.getAttribute('Binding') === BINDING_REDIRECT);
    expect(slo?.getAttribute('Location')).toBe(idp.sloUrl);
  });

  it('SP-initiated login: login form, then an auto-POST to the ACS with a doubly signed Response', async () => {
    const jar = new CookieJar();
    const id = newId();
    const request = authnRequest({ id, issuer: BROKER, destination: idp.ssoUrl, acsUrl: BROKER, nameIdFormat: NAMEID_PERSISTENT });
    const result = await signIn(idp, redirectUrl(idp.ssoUrl, request, 'state-123'), jar, 'jdoe', 'Secret-1');
    expect(result.status).toBe(200);
    expect(result.action).toBe(BROKER);
    expect(result.relayState).toBe('state-123');
    expect(result.samlResponse).toBeTruthy();

    const parsed = readResponse(result.samlResponse!);
    const { response, assertion } = parsed;
    expect(response.getAttribute('Destination')).toBe(BROKER);
    expect(response.getAttribute('InResponseTo')).toBe(id);
    expect(child(response, SAML, 'Issuer').textContent).toBe(idp.entityId);
    expect(statusCode(response)).toBe(SUCCESS);
    expect(child(assertion, SAML, 'Issuer').textContent).toBe(idp.entityId);

    expect(parsed.nameId).toEqual({ value: 'jdoe', format: NAMEID_PERSISTENT, spNameQualifier: BROKER });
    const confirmation = child(child(child(assertion, SAML, 'Subject'), SAML, 'SubjectConfirmation'), SAML, 'SubjectConfirmationData');
    expect(confirmation.getAttribute('Recipient')).toBe(BROKER);
    expect(confirmation.getAttribute('InResponseTo')).toBe(id);
    const audience = child(child(child(assertion, SAML, 'Conditions'), SAML, 'AudienceRestriction'), SAML, 'Audience');
    expect(audience.textContent).toBe(BROKER);
    expect(parsed.sessionIndex).not.toBe('');

    expect(parsed.attributes).toEqual({
      uid: { nameFormat: ATTRNAME_FORMAT_BASIC, values: ['jdoe'] },
      mail: { nameFormat: ATTRNAME_FORMAT_BASIC, values: ['jdoe@example.org'] },
      givenName: { nameFormat: ATTRNAME_FORMAT_BASIC, values: ['John'] },
      sn: { nameFormat: ATTRNAME_FORMAT_BASIC, values: ['Doe'] },
      groups: { nameFormat: ATTRNAME_FORMAT_BASIC, values: ['agents', 'staff'] },
    });

    checkEnvelopedSignature(parsed.xml, response, idp.certificateBase64);
    checkEnvelopedSignature(parsed.xml, assertion, idp.certificateBase64);

    // The IdP session (php session files, shared by the workers) answers the next request without a form.
    const again = await browse(redirectUrl(idp.ssoUrl, authnRequest({ id: newId(), issuer: BROKER, destination: idp.ssoUrl }), 'second'), jar, idp);
    const form = parseSspForm(again.html, again.url);
    expect(form?.fields.password).toBeUndefined();
    expect(form?.action).toBe(BROKER);
    expect(readResponse(form!.fields.SAMLResponse!).nameId.value).toBe('jdoe');
  });

  it('rejects a wrong password: the form again with an error, no SAMLResponse', async () => {
    const jar = new CookieJar();
    const request = authnRequest({ id: newId(), issuer: BROKER, destination: idp.ssoUrl, acsUrl: BROKER });
    const result = await signIn(idp, redirectUrl(idp.ssoUrl, request, 'x'), jar, 'jdoe', 'wrong');
    expect(result.status).toBe(200);
    expect(result.samlResponse).toBeUndefined();
    expect(result.html).toMatch(/name="password"/);
    expect(result.html).toMatch(/Incorrect username or password/i);
    const unknown = await signIn(idp, redirectUrl(idp.ssoUrl, request, 'x'), new CookieJar(), 'nobody', 'Secret-1');
    expect(unknown.samlResponse).toBeUndefined();
  });

  it('uses the NameIDPolicy format when it can: email, unspecified, transient; uid otherwise', async () => {
    const nameIdFor = async (nameIdFormat: string | undefined, username = 'jdoe', password = 'Secret-1') => {
      const request = authnRequest({ id: newId(), issuer: BROKER, destination: idp.ssoUrl, nameIdFormat });
      const result = await signIn(idp, redirectUrl(idp.ssoUrl, request), new CookieJar(), username, password);
      return readResponse(result.samlResponse!).nameId;
    };
    expect(await nameIdFor(NAMEID_EMAIL)).toMatchObject({ value: 'jdoe@example.org', format: NAMEID_EMAIL });
    expect(await nameIdFor(NAMEID_UNSPECIFIED)).toMatchObject({ value: 'jdoe', format: NAMEID_UNSPECIFIED });
    const transient = await nameIdFor(NAMEID_TRANSIENT);
    expect(transient.format).toBe(NAMEID_TRANSIENT);
    expect(transient.value).toMatch(/^_[0-9a-f]{20,}$/);
    expect(await nameIdFor(undefined)).toMatchObject({ value: 'jdoe', format: NAMEID_PERSISTENT });
    expect(await nameIdFor('urn:oasis:names:tc:SAML:1.1:nameid-format:X509SubjectName')).toMatchObject({ value: 'jdoe', format: NAMEID_PERSISTENT });
    // attributes.uid overrides the username as NameID; passwords may contain ':'.
    expect(await nameIdFor(NAMEID_PERSISTENT, 'ann', 'pw:with:colons')).toMatchObject({ value: 'ann.other', format: NAMEID_PERSISTENT });
  });

  it('posts to the registered ACS even when the AuthnRequest names another one', async () => {
    const request = authnRequest({ id: newId(), issuer: BROKER, destination: idp.ssoUrl, acsUrl: 'http://127.0.0.1:1/elsewhere' });
    const result = await signIn(idp, redirectUrl(idp.ssoUrl, request), new CookieJar(), 'jdoe', 'Secret-1');
    expect(result.action).toBe(BROKER);
    const { response, assertion } = readResponse(result.samlResponse!);
    expect(response.getAttribute('Destination')).toBe(BROKER);
    const confirmation = child(child(child(assertion, SAML, 'Subject'), SAML, 'SubjectConfirmation'), SAML, 'SubjectConfirmationData');
    expect(confirmation.getAttribute('Recipient')).toBe(BROKER);
  });

  it('refuses an AuthnRequest from an unregistered SP', async () => {
    const request = authnRequest({ id: newId(), issuer: 'http://127.0.0.1:1/unknown-sp', destination: idp.ssoUrl });
    const page = await browse(redirectUrl(idp.ssoUrl, request), new CookieJar(), idp);
    // SimpleSAMLphp's error page (served with 200 under php -S).
    expect(page.html).toMatch(/<title>Metadata not found<\/title>/);
    expect(page.html).not.toMatch(/SAMLResponse|name="password"/);
  });

  it('IdP-initiated login: an unsolicited signed Response with the RelayState', async () => {
    const result = await signIn(idp, idp.idpInitiatedUrl(BROKER, 'deep/link?x=1'), new CookieJar(), 'jdoe', 'Secret-1');
    expect(result.action).toBe(BROKER);
    expect(result.relayState).toBe('deep/link?x=1');
    const parsed = readResponse(result.samlResponse!);
    expect(parsed.response.hasAttribute('InResponseTo')).toBe(false);
    expect(parsed.nameId).toMatchObject({ value: 'jdoe', format: NAMEID_PERSISTENT });
    checkEnvelopedSignature(parsed.xml, parsed.response, idp.certificateBase64);
    checkEnvelopedSignature(parsed.xml, parsed.assertion, idp.certificateBase64);
  });

  it('with spCertificateBase64: only signed AuthnRequests are accepted; signResponse false signs the Assertion only', async () => {
    const request = () => authnRequest({ id: newId(), issuer: SIGNED_BROKER, destination: idp.ssoUrl, acsUrl: SIGNED_BROKER });
    const unsigned = await browse(redirectUrl(idp.ssoUrl, request(), 'r'), new CookieJar(), idp);
    expect(unsigned.html).toMatch(/no signature found on message/);
    expect(unsigned.html).not.toMatch(/SAMLResponse|name="password"/);
    const forged = await browse(redirectUrl(idp.ssoUrl, request(), 'r', spKeyPem).replace(/&RelayState=r&/, '&RelayState=tampered&'), new CookieJar(), idp);
    expect(forged.html).toMatch(/Unable to validate signature/i);
    expect(forged.html).not.toMatch(/SAMLResponse|name="password"/);

    const result = await signIn(idp, redirectUrl(idp.ssoUrl, request(), 'r', spKeyPem), new CookieJar(), 'jdoe', 'Secret-1');
    expect(result.action).toBe(SIGNED_BROKER);
    const parsed = readResponse(result.samlResponse!);
    expect(children(parsed.response, DS, 'Signature')).toEqual([]);
    checkEnvelopedSignature(parsed.xml, parsed.assertion, idp.certificateBase64);
  });

  it('single logout: a LogoutRequest ends the IdP session and answers with a signed LogoutResponse', async () => {
    const jar = new CookieJar();
    const login = await signIn(idp, redirectUrl(idp.ssoUrl, authnRequest({ id: newId(), issuer: BROKER, destination: idp.ssoUrl })), jar, 'jdoe', 'Secret-1');
    const { nameId, sessionIndex } = readResponse(login.samlResponse!);

    const id = newId();
    const page = await browse(redirectUrl(idp.sloUrl, logoutRequest({ id, issuer: BROKER, destination: idp.sloUrl, nameId, sessionIndex }), 'bye'), jar, idp);
    expect(page.response.status).toBe(302);
    expect(page.url.startsWith(`${BROKER}?`)).toBe(true);
    const rawQuery = page.url.slice(BROKER.length + 1);
    const params = new URLSearchParams(rawQuery);
    expect(params.get('RelayState')).toBe('bye');
    expect(params.get('SigAlg')).toBe(RSA_SHA256);
    const signedPart = rawQuery.slice(0, rawQuery.indexOf('&Signature='));
    expect(verify('sha256', Buffer.from(signedPart, 'utf8'), pemOf(idp.certificateBase64), Buffer.from(params.get('Signature')!, 'base64'))).toBe(true);
    const logoutResponse = parseXml(inflateRawSync(Buffer.from(params.get('SAMLResponse')!, 'base64')).toString('utf8')).documentElement as unknown as Element;
    expect(logoutResponse.localName).toBe('LogoutResponse');
    expect(logoutResponse.getAttribute('InResponseTo')).toBe(id);
    expect(logoutResponse.getAttribute('Destination')).toBe(BROKER);
    expect(statusCode(logoutResponse)).toBe(SUCCESS);

    // The session is gone: the next AuthnRequest shows the login form.
    const next = await browse(redirectUrl(idp.ssoUrl, authnRequest({ id: newId(), issuer: BROKER, destination: idp.ssoUrl })), jar, idp);
    expect(parseSspForm(next.html, next.url)?.fields).toHaveProperty('password');
  });
});

describe('SimpleSAMLphp test IdP instances', () => {
  it('run in parallel on their own ports and stop without leaving php processes', async () => {
    const options = { serviceProviders: [{ entityId: BROKER, acsUrl: BROKER }], users: [JDOE] };
    const started = performance.now();
    const [a, b] = await Promise.all([startSimpleSamlPhp(options), startSimpleSamlPhp(options)]);
    console.log(`two SimpleSAMLphp instances started in parallel in ${Math.round(performance.now() - started)} ms`);
    try {
      expect(a.baseUrl).not.toBe(b.baseUrl);
      expect(a.certificateBase64).not.toBe(b.certificateBase64);
      expect(a.dir).not.toBe(b.dir);
      for (const idp of [a, b]) expect((await fetch(idp.metadataUrl)).status).toBe(200);

      const pid = a.pid!;
      const port = new URL(a.baseUrl).port;
      expect(phpProcesses(pid, port).length).toBe(5); // the master and PHP_CLI_SERVER_WORKERS=4
      const stopping = performance.now();
      await a.stop();
      console.log(`SimpleSAMLphp stopped in ${Math.round(performance.now() - stopping)} ms`);
      expect(a.pid).toBeUndefined();
      expect(phpProcesses(pid, port)).toEqual([]);
      await expect(fetch(a.metadataUrl)).rejects.toThrow();
      expect(spawnSync('test', ['-e', a.dir]).status).not.toBe(0);
      await a.stop(); // idempotent

      // The other instance is untouched and still logs users in.
      const result = await signIn(b, b.idpInitiatedUrl(BROKER), new CookieJar(), 'jdoe', 'Secret-1');
      expect(readResponse(result.samlResponse!).nameId.value).toBe('jdoe');
    } finally {
      await Promise.all([a.stop(), b.stop()]);
    }
  });
});
