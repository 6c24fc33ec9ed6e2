// Compact JWS for the tokens Cloakroom signs on its hot paths (access, ID and refresh tokens),
// straight on node:crypto. jose 6 signs through WebCrypto, whose per-call work on the main thread
// (algorithm normalisation, CryptoKey conversion, a job promise) cost about as much as the RSA
// signature itself in the refresh bench; here RSA/ECDSA signatures run in libuv's thread pool and
// HMAC, a few microseconds, runs inline. jose still verifies everything that comes from outside.
import crypto, { type KeyObject } from 'node:crypto';

export type JwsAlg = 'RS256' | 'ES256' | 'HS512';

export type JwsHeader = { alg: JwsAlg; typ?: string; kid?: string };

const DIGEST: Record<JwsAlg, string> = { RS256: 'sha256', ES256: 'sha256', HS512: 'sha512' };

const b64 = (value: unknown): string => Buffer.from(JSON.stringify(value)).toString('base64url');

function asymmetricSignature(alg: 'RS256' | 'ES256', input: string, key: KeyObject): Promise<Buffer> {
  // JWS ES256 signatures are r || s (IEEE P1363), not DER.
  const signingKey = alg === 'ES256' ? { key, dsaEncoding: 'ieee-p1363' as const } : key;
  return new Promise((resolve, reject) => {
    crypto.sign(DIGEST[alg], Buffer.from(input), signingKey, (error, signature) => (error ? reject(error) : resolve(signature)));
  });
}

const hmac = (alg: JwsAlg, input: string, key: KeyObject): Buffer => crypto.createHmac(DIGEST[alg], key).update(input).digest();

/** `header.payload.signature`, with the header's `alg` deciding how `key` signs. */
export async function signJws(header: JwsHeader, payload: Record<string, unknown>, key: KeyObject): Promise<string> {
  const input = `${b64(header)}.${b64(payload)}`;
  const signature = header.alg === 'HS512' ? hmac(header.alg, input, key) : await asymmetricSignature(header.alg, input, key);
  return `${input}.${signature.toString('base64url')}`;
}

/**
 * The payload of an HMAC-signed compact JWS whose header names exactly `alg` and whose signature
 * matches `key`; undefined for anything else. Claims (exp, iss...) are the caller's to check.
 */
export function verifyHmacJws(token: string, alg: 'HS512', key: KeyObject): Record<string, unknown> | undefined {
  const parts = token.split('.');
  if (parts.length !== 3) return undefined;
  const [encodedHeader, encodedPayload, encodedSignature] = parts as [string, string, string];
  const header = parseJsonObject(encodedHeader);
  if (header?.alg !== alg || header.crit !== undefined || header.b64 !== undefined) return undefined;
  const expected = hmac(alg, `${encodedHeader}.${encodedPayload}`, key);
  const presented = Buffer.from(encodedSignature, 'base64url');
  if (presented.length !== expected.length || !crypto.timingSafeEqual(presented, expected)) return undefined;
  return parseJsonObject(encodedPayload);
}

function parseJsonObject(encoded: string): Record<string, unknown> | undefined {
  if (!/^[A-Za-z0-9_-]*$/.test(encoded)) return undefined;
  try {
    const value: unknown = JSON.parse(Buffer.from(encoded, 'base64url').toString('utf8'));
    return value !== null && typeof value === 'object' && !Array.isArray(value) ? value as Record<string, unknown> : undefined;
  } catch {
    return undefined;
  }
}
