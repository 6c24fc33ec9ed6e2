// The SAML 2.0 service provider protocol (src/broker/saml.ts) against a samlify-built test IdP
// (test/support/saml-idp.ts), on a realm imported into a running server: SP metadata and its
// self-signed certificate for the realm key; AuthnRequests in both bindings, signed and not;
// Response validation, accepted (both signature placements, principal from NameID or attribute,
// IdP-initiated, clock skew) and refused for each attack (unsigned, foreign key, signature
// wrapping, replay, time window, audience, Destination, Recipient, InResponseTo, issuer, status,
// DTD, size, schema, encryption); single logout both ways and both bindings.
import crypto from 'node:crypto';

import { SignedXml } from 'xml-crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { finishSamlLogin, receiveSamlLogout, samlSpMetadata, startSamlLogin, startSamlLogout } from '../../src/broker/saml.ts';
import { selfSignedCertificate } from '../../src/broker/saml-sp-certificate.ts';
import { samlify, validateSchema } from '../../src/broker/saml-xml.ts';
import { BrokerError, type BrokerUrls, type IdentityProviderModel } from '../../src/broker/types.ts';
import type { RealmContext } from '../../src/realms/context.ts';
import { createTestSamlIdp, fromBase64, inflateRedirectMessage, parseXml, SAML, toBase64, type ResponseOptions, type TestSamlIdp } from '../support/saml-idp.ts';
import { startTestServer, type TestServer } from '../support/server.ts';

const REALM = 'saml-sp';
const ALIAS = 'corp-idp';
const MD = 'urn:oasis:names:tc:SAML:2.0:metadata';

describe('SAML service provider protocol', () => {
  let server: TestServer;
  let idp: TestSamlIdp;
  let realm: RealmContext;
  let base: IdentityProviderModel;
  let urls: BrokerUrls;
  let realmPublicKey: crypto.KeyObject;

  /** The stored provider with config overrides (undefined removes a key). */
  const provider = (overrides: Record<string, string | undefined> = {}): IdentityProviderModel => {
    const config = { ...base.config };
    for (const [k, v] of Object.entries(overrides)) {
      if (v === undefined) delete config[k];
      else config[k] = v;
    }
    return { ...base, config };
  };

  const seen = new Set<string>();
  const remember = async (id: string): Promise<boolean> => {
    if (seen.has(id)) return false;
    seen.add(id);
    return true;
  };
  const expectedFor = (requestId: string | undefined) => ({ requestId, destination: urls.endpoint, rememberAssertion: remember });
  const responseFor = (requestId: string | undefined, extra: Partial<ResponseOptions> = {}): ResponseOptions => ({
    audience: urls.issuer, acsUrl: urls.endpoint, ...(requestId ? { inResponseTo: requestId } : {}), ...extra,
  });

  const refused = async (promise: Promise<unknown>, reason: RegExp, error = 'invalid_saml_response'): Promise<BrokerError> => {
    const failure = await promise.then(() => undefined, (e: unknown) => e);
    expect(failure).toBeInstanceOf(BrokerError);
    const brokerError = failure as BrokerError;
    expect(brokerError.error).toBe(error);
    expect(brokerError.reason).toMatch(reason);
    return brokerError;
  };

  /** The SP certificate published in the metadata. */
  const spCertificate = async (): Promise<crypto.X509Certificate> => {
    const doc = parseXml(await samlSpMetadata(realm, base, urls));
    const text = doc.getElementsByTagNameNS(SAML.dsig, 'X509Certificate')[0]!.textContent!;
    return new crypto.X509Certificate(Buffer.from(text, 'base64'));
  };

  beforeAll(async () => {
    idp = await createTestSamlIdp();
    server = await startTestServer();
    await server.importRealm({
      realm: REALM, enabled: true,
      identityProviders: [{
        alias: ALIAS, providerId: 'saml', enabled: true,
        config: idp.config({ wantAuthnRequestsSigned: 'true', wantAssertionsSigned: 'true', postBindingLogout: 'false' }),
      }],
    });
    realm = (await server.registry.get(REALM))!;
    const row = await realm.db.selectFrom('identity_providers').selectAll().where('realm_id', '=', realm.id).where('alias', '=', ALIAS).executeTakeFirstOrThrow();
    base = { row, alias: row.alias, providerId: row.provider_id, config: row.config as Record<string, string> };
    const issuer = `${server.url}/realms/${REALM}`;
    urls = { issuer, endpoint: `${issuer}/broker/${ALIAS}/endpoint`, descriptor: `${issuer}/broker/${ALIAS}/endpoint/descriptor` };
    const jwk = realm.keys.published.find((k) => k.kty === 'RSA')!;
    realmPublicKey = crypto.createPublicKey({ key: jwk as crypto.JsonWebKey, format: 'jwk' });
  });

  afterAll(async () => {
    await server?.stop();
  });

  // --- metadata --------------------------------------------------------------------------------------

  it('publishes SP metadata with the endpoints, flags and a certificate for the realm key', async () => {
    const xml = await samlSpMetadata(realm, base, urls);
    const doc = parseXml(xml);
    const entity = doc.documentElement!;
    expect(entity.localName).toBe('EntityDescriptor');
    expect(entity.namespaceURI).toBe(MD);
    expect(entity.getAttribute('entityID')).toBe(urls.issuer);
    const sso = doc.getElementsByTagNameNS(MD, 'SPSSODescriptor')[0]!;
    expect(sso.getAttribute('AuthnRequestsSigned')).toBe('true');
    expect(sso.getAttribute('WantAssertionsSigned')).toBe('true');
    const acs = Array.from(doc.getElementsByTagNameNS(MD, 'AssertionConsumerService')).map((e) => [e.getAttribute('Binding'), e.getAttribute('Location')]);
    expect(acs).toEqual([[SAML.post, urls.endpoint]]);
    const slo = Array.from(doc.getElementsByTagNameNS(MD, 'SingleLogoutService')).map((e) => [e.getAttribute('Binding'), e.getAttribute('Location')]);
    expect(slo).toEqual([[SAML.post, urls.endpoint], [SAML.redirect, urls.endpoint]]);
    expect(doc.getElementsByTagNameNS(MD, 'NameIDFormat')[0]!.textContent).toBe(SAML.persistent);
    // Schema order: KeyDescriptor, SingleLogoutService, NameIDFormat, AssertionConsumerService.
    const order = Array.from(sso.childNodes).filter((n) => n.nodeType === 1).map((n) => (n as Element).localName);
    expect(order).toEqual(['KeyDescriptor', 'SingleLogoutService', 'SingleLogoutService', 'NameIDFormat', 'AssertionConsumerService']);
    expect(doc.getElementsByTagNameNS(MD, 'KeyDescriptor')[0]!.getAttribute('use')).toBe('signing');
    // A SAML library reads it back (samlify as the IdP would).
    const peer = (await samlify()).ServiceProvider({ metadata: xml });
    expect(peer.entityMeta.getEntityID()).toBe(urls.issuer);
    expect(peer.entityMeta.getAssertionConsumerService('post')).toBe(urls.endpoint);
    expect(peer.entityMeta.isAuthnRequestSigned()).toBe(true);
    // The test IdP's own metadata names its entity id and certificate (for import-config in e2e tests).
    const idpMetadata = parseXml(idp.metadataXml);
    expect(idpMetadata.documentElement!.getAttribute('entityID')).toBe(idp.entityId);
    expect(idpMetadata.getElementsByTagNameNS(SAML.dsig, 'X509Certificate')[0]!.textContent!.replace(/\s+/g, '')).toBe(idp.certificateBase64);

    const certificate = await spCertificate();
    expect(certificate.verify(realmPublicKey)).toBe(true);
    expect(certificate.publicKey.export({ format: 'jwk' })).toEqual(realmPublicKey.export({ format: 'jwk' }));
    expect(certificate.subject).toBe(`CN=${REALM}`);
    expect(certificate.issuer).toBe(`CN=${REALM}`);
    expect(new Date(certificate.validTo).getTime()).toBeGreaterThan(Date.now());

    const custom = parseXml(await samlSpMetadata(realm, provider({ entityId: 'urn:cloakroom:sp', wantAuthnRequestsSigned: 'false', nameIDPolicyFormat: SAML.email }), urls));
    expect(custom.documentElement!.getAttribute('entityID')).toBe('urn:cloakroom:sp');
    expect(custom.getElementsByTagNameNS(MD, 'SPSSODescriptor')[0]!.getAttribute('AuthnRequestsSigned')).toBe('false');
    expect(custom.getElementsByTagNameNS(MD, 'NameIDFormat')[0]!.textContent).toBe(SAML.email);
  });

  it('builds the same certificate for a key every time', () => {
    const jwk = realm.keys.signing.find((k) => k.kty === 'RSA')!;
    const key = crypto.createPrivateKey({ key: jwk as crypto.JsonWebKey, format: 'jwk' });
    const first = selfSignedCertificate(key, REALM, jwk.kid!);
    expect(selfSignedCertificate(key, REALM, jwk.kid!).equals(first)).toBe(true);
    const parsed = new crypto.X509Certificate(first);
    expect(parsed.verify(realmPublicKey)).toBe(true);
    expect(selfSignedCertificate(key, REALM, 'another-kid').equals(first)).toBe(false);
  });

  // --- AuthnRequest -----------------------------------------------------------------------------------

  it('sends an unsigned AuthnRequest with the Redirect binding', async () => {
    const start = await startSamlLogin(realm, provider({ wantAuthnRequestsSigned: 'false' }), urls, { relayState: 'state-1' });
    if (!('redirect' in start)) throw new Error('expected the redirect binding');
    const url = new URL(start.redirect);
    expect(`${url.origin}${url.pathname}`).toBe(idp.ssoUrl);
    expect(url.searchParams.get('RelayState')).toBe('state-1');
    expect(url.searchParams.has('Signature')).toBe(false);
    const xml = inflateRedirectMessage(url.searchParams.get('SAMLRequest')!);
    await validateSchema(xml, 'invalid_request');
    const request = parseXml(xml).documentElement!;
    expect(request.localName).toBe('AuthnRequest');
    expect(request.getAttribute('ID')).toBe(start.requestId);
    expect(request.getAttribute('Destination')).toBe(idp.ssoUrl);
    expect(request.getAttribute('AssertionConsumerServiceURL')).toBe(urls.endpoint);
    expect(request.getAttribute('ProtocolBinding')).toBe(SAML.post);
    expect(request.hasAttribute('ForceAuthn')).toBe(false);
    expect(request.getElementsByTagNameNS(SAML.assertion, 'Issuer')[0]!.textContent).toBe(urls.issuer);
    expect(request.getElementsByTagNameNS(SAML.assertion, 'Subject').length).toBe(0);
    const policy = request.getElementsByTagNameNS(SAML.protocol, 'NameIDPolicy')[0]!;
    expect(policy.getAttribute('Format')).toBe(SAML.persistent);
    expect(policy.getAttribute('AllowCreate')).toBe('true');
  });

  it('signs a Redirect AuthnRequest with the realm key (SigAlg/Signature over the query)', async () => {
    const certificate = await spCertificate();
    for (const [name, sigAlg, hash] of [['RSA_SHA256', SAML.rsaSha256, 'sha256'], ['RSA_SHA512', 'http://www.w3.org/2001/04/xmldsig-more#rsa-sha512', 'sha512']] as const) {
      const start = await startSamlLogin(realm, provider({ signatureAlgorithm: name, forceAuthn: 'true', loginHint: 'true', allowCreate: 'false' }), urls, { relayState: 'state 2', loginHint: 'alice@example.com' });
      if (!('redirect' in start)) throw new Error('expected the redirect binding');
      const query = start.redirect.slice(start.redirect.indexOf('?') + 1);
      const params = new URLSearchParams(query);
      expect(params.get('SigAlg')).toBe(sigAlg);
      const signed = query.slice(0, query.indexOf('&Signature='));
      expect(signed.startsWith('SAMLRequest=')).toBe(true);
      expect(crypto.verify(hash, Buffer.from(signed), certificate.publicKey, Buffer.from(params.get('Signature')!, 'base64'))).toBe(true);
      expect(crypto.verify(hash, Buffer.from(`${signed}x`), certificate.publicKey, Buffer.from(params.get('Signature')!, 'base64'))).toBe(false);
      const request = parseXml(inflateRedirectMessage(params.get('SAMLRequest')!)).documentElement!;
      expect(request.getAttribute('ForceAuthn')).toBe('true');
      expect(request.getElementsByTagNameNS(SAML.assertion, 'NameID')[0]!.textContent).toBe('alice@example.com');
      expect(request.getElementsByTagNameNS(SAML.protocol, 'NameIDPolicy')[0]!.getAttribute('AllowCreate')).toBe('false');
    }
    // The login hint is sent only when the provider says so; ForceAuthn also comes from the request.
    const plain = await startSamlLogin(realm, base, urls, { relayState: 's', loginHint: 'alice@example.com', forceAuthn: true });
    if (!('redirect' in plain)) throw new Error('expected the redirect binding');
    const request = parseXml(inflateRedirectMessage(new URL(plain.redirect).searchParams.get('SAMLRequest')!)).documentElement!;
    expect(request.getElementsByTagNameNS(SAML.assertion, 'Subject').length).toBe(0);
    expect(request.getAttribute('ForceAuthn')).toBe('true');
  });

  it('sends a POST AuthnRequest with an enveloped signature', async () => {
    const start = await startSamlLogin(realm, provider({ postBindingAuthnRequest: 'true' }), urls, { relayState: 'state-3' });
    if (!('post' in start)) throw new Error('expected the POST binding');
    expect(start.post.url).toBe(idp.ssoUrl);
    expect(start.post.form.RelayState).toBe('state-3');
    const xml = fromBase64(start.post.form.SAMLRequest!);
    await validateSchema(xml, 'invalid_request');
    const doc = parseXml(xml);
    expect(doc.documentElement!.getAttribute('ID')).toBe(start.requestId);
    const signature = doc.getElementsByTagNameNS(SAML.dsig, 'Signature')[0]!;
    expect((signature.parentNode as Element).localName).toBe('AuthnRequest');
    const certificate = await spCertificate();
    const verifier = new SignedXml({ publicCert: certificate.publicKey.export({ type: 'spki', format: 'pem' }).toString(), getCertFromKeyInfo: () => null });
    verifier.loadSignature(signature as unknown as Node);
    expect(verifier.checkSignature(xml)).toBe(true);
    const unsigned = await startSamlLogin(realm, provider({ postBindingAuthnRequest: 'true', wantAuthnRequestsSigned: 'false' }), urls, { relayState: 's' });
    if (!('post' in unsigned)) throw new Error('expected the POST binding');
    expect(fromBase64(unsigned.post.form.SAMLRequest!)).not.toContain('Signature');
  });

  // --- Response: accepted -------------------------------------------------------------------------------

  it('accepts a signed response and returns the brokered identity', async () => {
    const requestId = 'ID_request-1';
    const recorded: Array<[string, Date]> = [];
    const identity = await finishSamlLogin(realm, base, urls, await idp.response(responseFor(requestId, {
      nameId: 'u-123', sessionIndex: 'session-9', assertionId: '_assertion-1',
      attributes: [
        { name: 'mail', values: ['alice@example.com'] },
        { name: 'urn:oid:2.5.4.42', friendlyName: 'givenName', values: ['Alice'] },
        { name: 'urn:oid:2.5.4.4', friendlyName: 'sn', values: ['Liddell'] },
        { name: 'groups', values: ['a', 'b'] },
      ],
    })), {
      requestId, destination: urls.endpoint,
      rememberAssertion: async (id, notOnOrAfter) => {
        recorded.push([id, notOnOrAfter]);
        return remember(id);
      },
    });
    expect(identity).toMatchObject({
      alias: ALIAS, id: 'u-123', username: 'u-123', email: 'alice@example.com', firstName: 'Alice', lastName: 'Liddell',
      nameId: 'u-123', nameIdFormat: SAML.persistent, sessionIndex: 'session-9',
    });
    expect(identity.attributes).toEqual({
      mail: ['alice@example.com'], 'urn:oid:2.5.4.42': ['Alice'], givenName: ['Alice'], 'urn:oid:2.5.4.4': ['Liddell'], sn: ['Liddell'], groups: ['a', 'b'],
    });
    expect(recorded).toHaveLength(1);
    expect(recorded[0]![0]).toBe('_assertion-1');
    expect(recorded[0]![1].getTime()).toBeGreaterThan(Date.now());
  });

  it('accepts either signature placement the provider config allows', async () => {
    const assertionOnly = await finishSamlLogin(realm, base, urls, await idp.response(responseFor('r-a', { sign: 'assertion', nameId: 'a1' })), expectedFor('r-a'));
    expect(assertionOnly.id).toBe('a1');
    const responseOnly = await finishSamlLogin(realm, provider({ wantAssertionsSigned: 'false' }), urls, await idp.response(responseFor('r-b', { sign: 'response', nameId: 'b1' })), expectedFor('r-b'));
    expect(responseOnly.id).toBe('b1');
    await refused(finishSamlLogin(realm, base, urls, await idp.response(responseFor('r-c', { sign: 'response' })), expectedFor('r-c')), /assertion is not signed/);
    // Several certificates (rotation): any of them verifies.
    const rotated = provider({ signingCertificate: `${idp.otherKey.certificateBase64},${idp.certificateBase64}` });
    expect((await finishSamlLogin(realm, rotated, urls, await idp.response(responseFor('r-d', { nameId: 'd1' })), expectedFor('r-d'))).id).toBe('d1');
  });

  it('takes the principal from the NameID or an attribute, and the email from an emailAddress NameID', async () => {
    const email = await finishSamlLogin(realm, base, urls, await idp.response(responseFor('r-e', { nameId: 'bob@example.com', nameIdFormat: SAML.email })), expectedFor('r-e'));
    expect(email).toMatchObject({ id: 'bob@example.com', email: 'bob@example.com', nameIdFormat: SAML.email });
    const attributes = [{ name: 'urn:oid:0.9.2342.19200300.100.1.1', friendlyName: 'uid', values: ['carol'] }];
    const byName = await finishSamlLogin(realm, provider({ principalType: 'ATTRIBUTE', principalAttribute: 'urn:oid:0.9.2342.19200300.100.1.1' }), urls,
      await idp.response(responseFor('r-f', { nameId: 'transient-1', nameIdFormat: SAML.transient, attributes })), expectedFor('r-f'));
    expect(byName).toMatchObject({ id: 'carol', username: 'carol', nameId: 'transient-1', nameIdFormat: SAML.transient });
    const byFriendly = await finishSamlLogin(realm, provider({ principalType: 'FRIENDLY_ATTRIBUTE', principalAttribute: 'uid' }), urls,
      await idp.response(responseFor('r-g', { nameIdFormat: SAML.unspecified, attributes })), expectedFor('r-g'));
    expect(byFriendly.id).toBe('carol');
    await refused(finishSamlLogin(realm, provider({ principalType: 'ATTRIBUTE', principalAttribute: 'employeeNumber' }), urls,
      await idp.response(responseFor('r-h', { attributes })), expectedFor('r-h')), /principal attribute employeeNumber is missing/);
  });

  it('accepts an IdP-initiated response (no InResponseTo) at the client URL it was posted to', async () => {
    const destination = `${urls.endpoint}/clients/app`;
    const identity = await finishSamlLogin(realm, base, urls, await idp.response({ audience: urls.issuer, acsUrl: destination, nameId: 'idp-init' }), {
      requestId: undefined, destination, rememberAssertion: remember,
    });
    expect(identity.id).toBe('idp-init');
  });

  it('allows the clock skew: 30 s by default, allowedClockSkew when set', async () => {
    const late = (id: string) => responseFor(id, { notOnOrAfter: new Date(Date.now() - 10_000), subjectNotOnOrAfter: new Date(Date.now() - 10_000) });
    expect((await finishSamlLogin(realm, base, urls, await idp.response(late('r-s1')), expectedFor('r-s1'))).id).toBe('user-1');
    await refused(finishSamlLogin(realm, provider({ allowedClockSkew: '5' }), urls, await idp.response(late('r-s2')), expectedFor('r-s2')), /expired/);
    const early = responseFor('r-s3', { notBefore: new Date(Date.now() + 20_000) });
    expect((await finishSamlLogin(realm, base, urls, await idp.response(early), expectedFor('r-s3'))).id).toBe('user-1');
  });

  // --- Response: refused ------------------------------------------------------------------------------

  it('refuses unsigned responses and signatures by another key', async () => {
    await refused(finishSamlLogin(realm, base, urls, await idp.response(responseFor('r1', { sign: 'none' })), expectedFor('r1')), /response is not signed/);
    await refused(finishSamlLogin(realm, base, urls, await idp.response(responseFor('r2', { signingKey: idp.otherKey })), expectedFor('r2')), /does not verify/);
    await refused(finishSamlLogin(realm, provider({ wantAssertionsSigned: 'false' }), urls, await idp.response(responseFor('r3', { sign: 'response', signingKey: idp.otherKey })), expectedFor('r3')), /does not verify/);
    // validateSignature missing: required, since a certificate is configured.
    await refused(finishSamlLogin(realm, provider({ validateSignature: undefined }), urls, await idp.response(responseFor('r4', { sign: 'none' })), expectedFor('r4')), /not signed/);
    // Required without a certificate: a configuration error, not an accepted login.
    await refused(finishSamlLogin(realm, provider({ signingCertificate: undefined }), urls, await idp.response(responseFor('r5')), expectedFor('r5')),
      /no signingCertificate/, 'identity_provider_error');
    // Explicitly off (Keycloak's validateSignature=false): unsigned responses pass the other checks.
    const off = await finishSamlLogin(realm, provider({ validateSignature: 'false', wantAssertionsSigned: 'false' }), urls, await idp.response(responseFor('r6', { sign: 'none', nameId: 'nosig' })), expectedFor('r6'));
    expect(off.id).toBe('nosig');
  });

  it('refuses signature wrapping', async () => {
    for (const [kind, reason] of [
      ['injected-assertion', /exactly one assertion/],
      ['moved-original', /exactly one assertion/],
      ['signature-copied', /exactly one assertion/],
      ['foreign-reference', /does not reference the Response/],
      ['tampered', /does not verify/],
    ] as const) {
      const rememberCalls: string[] = [];
      await refused(finishSamlLogin(realm, base, urls, await idp.wrapped(kind, responseFor('r-w', { nameId: 'victim' })), {
        requestId: 'r-w', destination: urls.endpoint, rememberAssertion: async (id) => { rememberCalls.push(id); return true; },
      }), reason);
      expect(rememberCalls).toEqual([]);
    }
  });

  it('reads the signed assertion, not the document around it', async () => {
    // A comment inside the NameID is dropped by canonicalization; the signature still verifies,
    // and the identity is the text the IdP signed, whole.
    const xml = idp.responseXml(responseFor('r-c1', { nameId: 'user@example.com.evil.test', sign: 'both' }))
      .replace('user@example.com.evil.test</saml:NameID>', 'user@example.com<!-- -->.evil.test</saml:NameID>');
    const identity = await finishSamlLogin(realm, base, urls, toBase64(xml), expectedFor('r-c1'));
    expect(identity.id).toBe('user@example.com.evil.test');
  });

  it('refuses a replayed assertion', async () => {
    const response = await idp.response(responseFor('r-replay'));
    await finishSamlLogin(realm, base, urls, response, expectedFor('r-replay'));
    await refused(finishSamlLogin(realm, base, urls, response, expectedFor('r-replay')), /already used/);
  });

  it('refuses stale and future assertions', async () => {
    const past = new Date(Date.now() - 120_000);
    const future = new Date(Date.now() + 600_000);
    await refused(finishSamlLogin(realm, base, urls, await idp.response(responseFor('t1', { notOnOrAfter: past })), expectedFor('t1')), /assertion has expired/);
    await refused(finishSamlLogin(realm, base, urls, await idp.response(responseFor('t2', { subjectNotOnOrAfter: past })), expectedFor('t2')), /bearer confirmation has expired/);
    await refused(finishSamlLogin(realm, base, urls, await idp.response(responseFor('t3', { notBefore: future, notOnOrAfter: new Date(future.getTime() + 60_000) })), expectedFor('t3')), /not yet valid/);
  });

  it('refuses responses for someone else or another request', async () => {
    await refused(finishSamlLogin(realm, base, urls, await idp.response(responseFor('a1', { audience: 'https://other-sp.example/' })), expectedFor('a1')), /audience/);
    await refused(finishSamlLogin(realm, provider({ entityId: 'urn:cloakroom:sp' }), urls, await idp.response(responseFor('a2')), expectedFor('a2')), /audience/);
    await refused(finishSamlLogin(realm, base, urls, await idp.response(responseFor('a3', { destination: 'https://other-sp.example/acs' })), expectedFor('a3')), /Destination is not this endpoint/);
    await refused(finishSamlLogin(realm, base, urls, await idp.response(responseFor('a4', { destination: null })), expectedFor('a4')), /no Destination/);
    await refused(finishSamlLogin(realm, base, urls, await idp.response(responseFor('a5', { recipient: 'https://other-sp.example/acs' })), expectedFor('a5')), /Recipient/);
    await refused(finishSamlLogin(realm, base, urls, await idp.response(responseFor('other-request')), expectedFor('a6')), /InResponseTo does not match/);
    await refused(finishSamlLogin(realm, base, urls, await idp.response(responseFor('a7', { subjectInResponseTo: 'other-request' })), expectedFor('a7')), /InResponseTo does not match/);
    await refused(finishSamlLogin(realm, base, urls, await idp.response(responseFor(undefined)), expectedFor('a8')), /InResponseTo does not match/);
    await refused(finishSamlLogin(realm, base, urls, await idp.response(responseFor('a9')), expectedFor(undefined)), /unsolicited response has InResponseTo/);
    await refused(finishSamlLogin(realm, base, urls, await idp.response(responseFor(undefined, { subjectInResponseTo: 'x' })), expectedFor(undefined)), /unsolicited response has InResponseTo/);
    await refused(finishSamlLogin(realm, base, urls, await idp.response(responseFor('a10', { issuer: 'https://evil.example/idp' })), expectedFor('a10')), /issuer/);
  });

  it('reports a non-Success status, as cancelled when the user did not log in', async () => {
    const failed = await refused(finishSamlLogin(realm, base, urls, await idp.response(responseFor('s1', { status: { code: SAML.responder, subCode: SAML.authnFailed }, sign: 'none' })), expectedFor('s1')),
      /^SAML status Responder\/AuthnFailed$/, 'identity_provider_error');
    expect(failed.cancelled).toBe(true);
    const error = await refused(finishSamlLogin(realm, base, urls, await idp.response(responseFor('s2', { status: { code: SAML.responder }, sign: 'none' })), expectedFor('s2')),
      /^SAML status Responder$/, 'identity_provider_error');
    expect(error.cancelled).toBe(false);
  });

  it('leaves no process hooks behind after schema validation', async () => {
    const exception = process.listenerCount('uncaughtException');
    const drain = process.stdout.listenerCount('drain');
    for (let i = 0; i < 3; i++) {
      await validateSchema(idp.responseXml(responseFor(`h${i}`)), 'invalid_saml_response');
      await expect(validateSchema('<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol"/>', 'invalid_saml_response')).rejects.toThrow(BrokerError);
    }
    expect(process.listenerCount('uncaughtException')).toBe(exception);
    expect(process.stdout.listenerCount('drain')).toBe(drain);
  });

  it('refuses malformed, oversized, DTD-carrying, schema-invalid and encrypted messages', async () => {
    const good = idp.responseXml(responseFor('m1'));
    await refused(finishSamlLogin(realm, base, urls, 'not base64 at all!', expectedFor('m1')), /not base64/);
    await refused(finishSamlLogin(realm, base, urls, 'A'.repeat(300 * 1024), expectedFor('m1')), /larger than/);
    await refused(finishSamlLogin(realm, base, urls, toBase64('<samlp:Response'), expectedFor('m1')), /not well-formed/);
    const xxe = `<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>${good.replace('user-1', '&x;')}`;
    await refused(finishSamlLogin(realm, base, urls, toBase64(xxe), expectedFor('m1')), /DTD/);
    await refused(finishSamlLogin(realm, base, urls, toBase64(good.replace('<samlp:Status>', '<samlp:Bogus/><samlp:Status>')), expectedFor('m1')), /schema/);
    await refused(finishSamlLogin(realm, base, urls, toBase64(`<samlp:LogoutRequest xmlns:samlp="${SAML.protocol}"/>`), expectedFor('m1')), /not a SAML Response/);
    const encrypted = idp.responseXml(responseFor('m2', { sign: 'none' })).replace(/<saml:Assertion [\s\S]*<\/saml:Assertion>/,
      '<saml:EncryptedAssertion><xenc:EncryptedData xmlns:xenc="http://www.w3.org/2001/04/xmlenc#"><xenc:CipherData><xenc:CipherValue>AAAA</xenc:CipherValue></xenc:CipherData></xenc:EncryptedData></saml:EncryptedAssertion>');
    await refused(finishSamlLogin(realm, base, urls, toBase64(encrypted), expectedFor('m2')), /encrypted assertions are not supported/);
  });

  // --- single logout ------------------------------------------------------------------------------------

  it('sends a signed LogoutRequest (Redirect and POST) and reads the IdP LogoutResponse', async () => {
    const certificate = await spCertificate();
    const start = await startSamlLogout(realm, base, urls, { nameId: 'u-123', nameIdFormat: SAML.persistent, sessionIndex: 'session-9', relayState: 'logout-1' });
    if (!start || !('redirect' in start)) throw new Error('expected the redirect binding');
    const url = new URL(start.redirect);
    expect(`${url.origin}${url.pathname}`).toBe(idp.sloUrl);
    expect(url.searchParams.get('RelayState')).toBe('logout-1');
    const query = start.redirect.slice(start.redirect.indexOf('?') + 1);
    const signed = query.slice(0, query.indexOf('&Signature='));
    expect(crypto.verify('sha256', Buffer.from(signed), certificate.publicKey, Buffer.from(url.searchParams.get('Signature')!, 'base64'))).toBe(true);
    const xml = inflateRedirectMessage(url.searchParams.get('SAMLRequest')!);
    await validateSchema(xml, 'invalid_request');
    const request = parseXml(xml).documentElement!;
    expect(request.localName).toBe('LogoutRequest');
    expect(request.getAttribute('ID')).toBe(start.requestId);
    expect(request.getAttribute('Destination')).toBe(idp.sloUrl);
    expect(request.getElementsByTagNameNS(SAML.assertion, 'Issuer')[0]!.textContent).toBe(urls.issuer);
    const nameId = request.getElementsByTagNameNS(SAML.assertion, 'NameID')[0]!;
    expect([nameId.textContent, nameId.getAttribute('Format')]).toEqual(['u-123', SAML.persistent]);
    expect(request.getElementsByTagNameNS(SAML.protocol, 'SessionIndex')[0]!.textContent).toBe('session-9');

    // The IdP answers (Redirect, signed); the raw query or the decoded parameters both verify.
    const answer = idp.logoutResponse({ destination: urls.endpoint, inResponseTo: start.requestId, binding: 'redirect', relayState: 'logout-1' });
    expect(await receiveSamlLogout(realm, base, urls, { binding: 'redirect', query: answer.query!, rawQuery: answer.rawQuery! }))
      .toEqual({ kind: 'response', success: true, inResponseTo: start.requestId, relayState: 'logout-1' });
    expect(await receiveSamlLogout(realm, base, urls, { binding: 'redirect', query: answer.query! }))
      .toMatchObject({ kind: 'response', success: true, inResponseTo: start.requestId });
    const failed = idp.logoutResponse({ destination: urls.endpoint, inResponseTo: start.requestId, binding: 'post', status: SAML.responder });
    expect(await receiveSamlLogout(realm, base, urls, { binding: 'post', form: failed.form! })).toMatchObject({ kind: 'response', success: false });

    const post = await startSamlLogout(realm, provider({ postBindingLogout: 'true' }), urls, { nameId: 'u-123', relayState: 'logout-2' });
    if (!post || !('post' in post)) throw new Error('expected the POST binding');
    expect(post.post.url).toBe(idp.sloUrl);
    expect(post.post.form.RelayState).toBe('logout-2');
    const postXml = fromBase64(post.post.form.SAMLRequest!);
    await validateSchema(postXml, 'invalid_request');
    const signature = parseXml(postXml).getElementsByTagNameNS(SAML.dsig, 'Signature')[0]!;
    const verifier = new SignedXml({ publicCert: certificate.publicKey.export({ type: 'spki', format: 'pem' }).toString(), getCertFromKeyInfo: () => null });
    verifier.loadSignature(signature as unknown as Node);
    expect(verifier.checkSignature(postXml)).toBe(true);

    expect(await startSamlLogout(realm, provider({ singleLogoutServiceUrl: undefined }), urls, { nameId: 'u', relayState: 'r' })).toBeUndefined();
  });

  it('takes an IdP-initiated LogoutRequest and answers it', async () => {
    const certificate = await spCertificate();
    const incoming = idp.logoutRequest({ destination: urls.endpoint, nameId: 'u-123', sessionIndex: 'session-9', binding: 'redirect', relayState: 'idp-state' });
    const message = await receiveSamlLogout(realm, base, urls, { binding: 'redirect', query: incoming.query!, rawQuery: incoming.rawQuery! });
    if (message.kind !== 'request') throw new Error('expected a logout request');
    expect(message.nameId).toBe('u-123');
    expect(message.sessionIndexes).toEqual(['session-9']);
    const reply = await message.respond('idp-state');
    if (!('redirect' in reply)) throw new Error('expected the redirect binding');
    const url = new URL(reply.redirect);
    expect(`${url.origin}${url.pathname}`).toBe(idp.sloUrl);
    expect(url.searchParams.get('RelayState')).toBe('idp-state');
    const query = reply.redirect.slice(reply.redirect.indexOf('?') + 1);
    expect(query.startsWith('SAMLResponse=')).toBe(true);
    expect(crypto.verify('sha256', Buffer.from(query.slice(0, query.indexOf('&Signature='))), certificate.publicKey, Buffer.from(url.searchParams.get('Signature')!, 'base64'))).toBe(true);
    const xml = inflateRedirectMessage(url.searchParams.get('SAMLResponse')!);
    await validateSchema(xml, 'invalid_request');
    const response = parseXml(xml).documentElement!;
    expect(response.localName).toBe('LogoutResponse');
    expect(response.getAttribute('InResponseTo')).toBe(incoming.id);
    expect(response.getAttribute('Destination')).toBe(idp.sloUrl);
    expect(response.getElementsByTagNameNS(SAML.protocol, 'StatusCode')[0]!.getAttribute('Value')).toBe(SAML.success);

    // POST binding in, POST binding out.
    const posted = idp.logoutRequest({ destination: urls.endpoint, nameId: 'u-456', binding: 'post', relayState: 'p' });
    const postMessage = await receiveSamlLogout(realm, provider({ postBindingLogout: 'true' }), urls, { binding: 'post', form: posted.form! });
    if (postMessage.kind !== 'request') throw new Error('expected a logout request');
    expect(postMessage).toMatchObject({ nameId: 'u-456', sessionIndexes: [] });
    const postReply = await postMessage.respond('p');
    if (!('post' in postReply)) throw new Error('expected the POST binding');
    expect(postReply.post.url).toBe(idp.sloUrl);
    expect(postReply.post.form.RelayState).toBe('p');
    const replyXml = fromBase64(postReply.post.form.SAMLResponse!);
    await validateSchema(replyXml, 'invalid_request');
    const replyDoc = parseXml(replyXml);
    expect(replyDoc.documentElement!.getAttribute('InResponseTo')).toBe(posted.id);
    const verifier = new SignedXml({ publicCert: certificate.publicKey.export({ type: 'spki', format: 'pem' }).toString(), getCertFromKeyInfo: () => null });
    verifier.loadSignature(replyDoc.getElementsByTagNameNS(SAML.dsig, 'Signature')[0]! as unknown as Node);
    expect(verifier.checkSignature(replyXml)).toBe(true);
  });

  it('refuses logout messages that are unsigned, foreign, misaddressed or stale', async () => {
    const request = (extra: Partial<Parameters<TestSamlIdp['logoutRequest']>[0]> = {}) =>
      idp.logoutRequest({ destination: urls.endpoint, nameId: 'u-123', binding: 'redirect', ...extra });
    const receive = (m: ReturnType<typeof request>, model = base) => receiveSamlLogout(realm, model, urls,
      m.query ? { binding: 'redirect', query: m.query, rawQuery: m.rawQuery! } : { binding: 'post', form: m.form! });
    await refused(receive(request({ sign: false })), /not signed/, 'invalid_logout_request');
    await refused(receive(request({ signingKey: idp.otherKey })), /does not verify/, 'invalid_logout_request');
    await refused(receive(request({ binding: 'post', signingKey: idp.otherKey })), /does not verify/, 'invalid_logout_request');
    await refused(receive(request({ binding: 'post', sign: false })), /not signed/, 'invalid_logout_request');
    await refused(receive(request({ issuer: 'https://evil.example/idp' })), /issuer/, 'invalid_logout_request');
    await refused(receive(request({ destination: 'https://other-sp.example/slo' })), /Destination/, 'invalid_logout_request');
    await refused(receive(request({ notOnOrAfter: new Date(Date.now() - 120_000) })), /expired/, 'invalid_logout_request');
    // A tampered redirect message: the signature covers the SAMLRequest parameter.
    const genuine = request();
    const other = request({ nameId: 'admin' });
    await refused(receiveSamlLogout(realm, base, urls, { binding: 'redirect', query: { ...genuine.query!, SAMLRequest: other.query!.SAMLRequest! } }), /does not verify/, 'invalid_logout_request');
    // Signatures not required: an unsigned request is read.
    const unsigned = await receive(request({ sign: false }), provider({ validateSignature: 'false' }));
    expect(unsigned).toMatchObject({ kind: 'request', nameId: 'u-123' });
    const response = idp.logoutResponse({ destination: urls.endpoint, inResponseTo: 'x', binding: 'redirect', sign: false });
    await refused(receiveSamlLogout(realm, base, urls, { binding: 'redirect', query: response.query! }), /not signed/, 'invalid_logout_response');
  });
});
