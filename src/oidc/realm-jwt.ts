// Signing and verifying the JWTs Cloakroom issues itself (tokens of its own grants, refresh
// tokens, logout tokens) with the realm's keys, through jose. Access and ID tokens use the realm's
// active asymmetric key, exactly the key oidc-provider signs with; refresh tokens use a realm HMAC
// key (HS512, as Keycloak 24+), derived from the master key so it needs no storage. Signing and the
// refresh-token check use src/crypto/jws.ts (node:crypto); tokens from elsewhere go through jose.
import crypto, { type KeyObject } from 'node:crypto';

import { createLocalJWKSet, decodeProtectedHeader, jwtVerify, type JWK, type JWTPayload, type JWTVerifyGetKey } from 'jose';

import { signJws, verifyHmacJws, type JwsAlg } from '../crypto/jws.ts';
import type { RealmContext } from '../realms/context.ts';

type SigningKey = { kid: string; alg: JwsAlg; key: KeyObject };

/** The key oidc-provider would pick: the first (active) key of the realm's algorithm. */
function activeSigningKey(realm: RealmContext, alg: string): SigningKey {
  return realm.memoSync(`signing-key:${alg}`, () => {
    const jwk = realm.keys.signing.find((k) => k.alg === alg);
    if (!jwk?.kid) throw new Error(`realm ${realm.name} has no ${alg} signing key`);
    return { kid: jwk.kid, alg: alg as JwsAlg, key: crypto.createPrivateKey({ key: jwk as crypto.JsonWebKey, format: 'jwk' }) };
  });
}

function refreshKey(realm: RealmContext): SigningKey {
  return realm.memoSync('refresh-key', () => {
    const material = Buffer.concat([realm.box.derive(`refresh-token:${realm.id}:1`), realm.box.derive(`refresh-token:${realm.id}:2`)]);
    const id = realm.box.derive(`refresh-token-kid:${realm.id}`).toString('hex');
    // Keycloak's HMAC key ids are UUIDs.
    const kid = `${id.slice(0, 8)}-${id.slice(8, 12)}-${id.slice(12, 16)}-${id.slice(16, 20)}-${id.slice(20, 32)}`;
    return { kid, alg: 'HS512', key: crypto.createSecretKey(material) };
  });
}

function sign(payload: Record<string, unknown>, { kid, alg, key }: SigningKey): Promise<string> {
  return signJws({ alg, typ: 'JWT', kid }, payload, key);
}

/** Access, ID and logout tokens: the realm's default signature algorithm. */
export function signWithRealmKey(realm: RealmContext, payload: Record<string, unknown>, alg: string = realm.settings.defaultSignatureAlgorithm): Promise<string> {
  return sign(payload, activeSigningKey(realm, alg));
}

export function signRefreshToken(realm: RealmContext, payload: Record<string, unknown>): Promise<string> {
  return sign(payload, refreshKey(realm));
}

/** Claims of a refresh token of this realm and issuer with a valid signature; expiry is checked too. */
export function verifyRefreshToken(realm: RealmContext, issuer: string, token: string): JWTPayload | undefined {
  const payload = verifyHmacJws(token, 'HS512', refreshKey(realm).key);
  if (!payload || payload.iss !== issuer) return undefined;
  const now = Math.floor(Date.now() / 1000);
  const { exp, nbf, iat } = payload;
  // As jose's jwtVerify: numeric dates when present, expired at exp, not valid before nbf.
  if (exp !== undefined && (typeof exp !== 'number' || exp <= now)) return undefined;
  if (nbf !== undefined && (typeof nbf !== 'number' || nbf > now)) return undefined;
  if (iat !== undefined && typeof iat !== 'number') return undefined;
  return payload as JWTPayload;
}

export function realmKeySet(realm: RealmContext): JWTVerifyGetKey {
  return realm.memoSync('jwks', () => createLocalJWKSet({ keys: realm.keys.published as JWK[] }));
}

/** Claims of a token signed by one of the realm's published keys for `issuer` (any `typ`). */
export async function verifyRealmSignedToken(realm: RealmContext, issuer: string, token: string, options: { ignoreExpiration?: boolean } = {}): Promise<JWTPayload | undefined> {
  let alg: string | undefined;
  try {
    alg = decodeProtectedHeader(token).alg;
  } catch {
    return undefined;
  }
  if (alg !== 'RS256' && alg !== 'ES256') return undefined;
  try {
    const { payload } = await jwtVerify(token, realmKeySet(realm), {
      issuer, algorithms: [alg], ...(options.ignoreExpiration ? { currentDate: new Date(0) } : {}),
    });
    return payload;
  } catch {
    return undefined;
  }
}

/** OIDC at_hash / c_hash: left half of SHA-256 of the token, base64url. */
export function halfHash(value: string): string {
  const digest = crypto.createHash('sha256').update(value).digest();
  return digest.subarray(0, digest.length / 2).toString('base64url');
}
