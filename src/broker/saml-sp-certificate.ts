// The SAML service provider's signing key and certificate. Keycloak signs AuthnRequests with the
// realm's RSA key and publishes a self-signed certificate for it; Cloakroom's realm keys are bare
// JWKs, so the certificate is made here: X.509 v1 (as Keycloak's), subject and issuer CN = realm
// name, serial number derived from the kid, fixed validity. RSA PKCS#1 v1.5 signatures are
// deterministic, so every instance builds the very same certificate for a key.
//
// No X.509 library is installed, so the DER is written by hand (a handful of TLVs); switching to
// one (@peculiar/x509) would be preferable. Tests parse and verify the result with node's
// X509Certificate.
import crypto, { type KeyObject } from 'node:crypto';

import type { JWK } from 'jose';

import type { RealmContext } from '../realms/context.ts';

export type SamlSigningKey = {
  kid: string;
  /** PKCS#1 PEM, as samlify wants it. */
  privateKeyPem: string;
  privateKey: KeyObject;
  publicKey: KeyObject;
  /** Base64 DER of the self-signed certificate (metadata KeyDescriptor, KeyInfo). */
  certificate: string;
};

// ---------------------------------------------------------------------------------------------
// Minimal DER

function tlv(tag: number, content: Buffer): Buffer {
  const n = content.length;
  let header: Buffer;
  if (n < 0x80) {
    header = Buffer.from([tag, n]);
  } else {
    const bytes: number[] = [];
    for (let rest = n; rest > 0; rest = Math.floor(rest / 256)) bytes.unshift(rest & 0xff);
    header = Buffer.from([tag, 0x80 | bytes.length, ...bytes]);
  }
  return Buffer.concat([header, content]);
}

const sequence = (...items: Buffer[]): Buffer => tlv(0x30, Buffer.concat(items));
const set = (...items: Buffer[]): Buffer => tlv(0x31, Buffer.concat(items));
const utf8String = (value: string): Buffer => tlv(0x0c, Buffer.from(value, 'utf8'));
const bitString = (bytes: Buffer): Buffer => tlv(0x03, Buffer.concat([Buffer.from([0]), bytes]));
const NULL = Buffer.from([0x05, 0x00]);

/** A positive INTEGER from big-endian magnitude bytes (minimal encoding). */
function positiveInteger(magnitude: Buffer): Buffer {
  let start = 0;
  while (start < magnitude.length - 1 && magnitude[start] === 0) start++;
  let bytes = magnitude.subarray(start);
  if (bytes[0]! & 0x80) bytes = Buffer.concat([Buffer.from([0]), bytes]);
  return tlv(0x02, bytes);
}

function oid(dotted: string): Buffer {
  const parts = dotted.split('.').map(Number);
  const out: number[] = [parts[0]! * 40 + parts[1]!];
  for (const part of parts.slice(2)) {
    const chunk: number[] = [part & 0x7f];
    for (let rest = Math.floor(part / 128); rest > 0; rest = Math.floor(rest / 128)) chunk.unshift(0x80 | (rest & 0x7f));
    out.push(...chunk);
  }
  return tlv(0x06, Buffer.from(out));
}

const SHA256_WITH_RSA = sequence(oid('1.2.840.113549.1.1.11'), NULL);
const COMMON_NAME = '2.5.4.3';
/** 2000-01-01T00:00:00Z (UTCTime) to 9999-12-31T23:59:59Z (GeneralizedTime, RFC 5280's "no expiry"). */
const VALIDITY = sequence(tlv(0x17, Buffer.from('000101000000Z')), tlv(0x18, Buffer.from('99991231235959Z')));

/**
 * A self-signed X.509 v1 certificate (DER) for an RSA key: CN=commonName as subject and issuer,
 * serial number from serialSeed, sha256WithRSAEncryption.
 */
export function selfSignedCertificate(privateKey: KeyObject, commonName: string, serialSeed: string): Buffer {
  const publicKey = crypto.createPublicKey(privateKey);
  const spki = publicKey.export({ type: 'spki', format: 'der' });
  // 16 bytes of a hash of the seed; the top byte forced into 0x40..0x7f keeps it positive and minimal.
  const serial = crypto.createHash('sha256').update(serialSeed).digest().subarray(0, 16);
  serial[0] = (serial[0]! & 0x3f) | 0x40;
  const name = sequence(set(sequence(oid(COMMON_NAME), utf8String(commonName))));
  const tbs = sequence(positiveInteger(serial), SHA256_WITH_RSA, name, VALIDITY, name, spki);
  const signature = crypto.sign('sha256', tbs, privateKey);
  return sequence(tbs, SHA256_WITH_RSA, bitString(signature));
}

// ---------------------------------------------------------------------------------------------
// Realm keys

/** Certificates by kid and realm name: public data, so kept across realm contexts (bounded). */
const certificates = new Map<string, string>();

function signingKeyFor(jwk: JWK, realmName: string): SamlSigningKey {
  const kid = jwk.kid ?? '';
  const privateKey = crypto.createPrivateKey({ key: jwk as crypto.JsonWebKey, format: 'jwk' });
  const cacheKey = `${kid}\n${realmName}`;
  let certificate = certificates.get(cacheKey);
  if (!certificate) {
    certificate = selfSignedCertificate(privateKey, realmName, kid).toString('base64');
    // A few keys per realm; clearing only costs rebuilding (one RSA signature each).
    if (certificates.size >= 1000) certificates.clear();
    certificates.set(cacheKey, certificate);
  }
  return {
    kid,
    privateKey,
    publicKey: crypto.createPublicKey(privateKey),
    privateKeyPem: privateKey.export({ type: 'pkcs1', format: 'pem' }).toString(),
    certificate,
  };
}

const isRsaSigningKey = (jwk: JWK): boolean => jwk.kty === 'RSA' && (jwk.alg === undefined || jwk.alg === 'RS256') && typeof jwk.d === 'string';

/**
 * The realm's RS256 keys as SAML signing keys, the active one first (realm.keys.signing lists
 * active keys first, newest first), then passive ones still published (metadata lists them all so
 * an IdP keeps trusting requests across a rotation). Every realm gets an RS256 key when it is
 * created; a realm without one has no SAML signing key (empty list). Private keys live as long as
 * the realm context (memoized on it); certificates are cached per kid.
 */
export function samlSigningKeys(realm: RealmContext): SamlSigningKey[] {
  return realm.memoSync('saml-signing-keys', () => realm.keys.signing.filter(isRsaSigningKey).map((jwk) => signingKeyFor(jwk, realm.name)));
}
