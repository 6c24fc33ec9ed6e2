// Realm signing keys: generation and the JWK forms oidc-provider and the JWKS endpoint need.
import crypto from 'node:crypto';
import { promisify } from 'node:util';

import { calculateJwkThumbprint, type JWK } from 'jose';

export type SigningAlg = 'RS256' | 'ES256';
export const SIGNING_ALGS: readonly SigningAlg[] = ['RS256', 'ES256'];

export type GeneratedKey = { kid: string; alg: SigningAlg; publicJwk: JWK; privateJwk: JWK };

const generateKeyPair = promisify(crypto.generateKeyPair);

export async function generateSigningKey(alg: SigningAlg): Promise<GeneratedKey> {
  const { privateKey } = alg === 'RS256'
    ? await generateKeyPair('rsa', { modulusLength: 2048 })
    : await generateKeyPair('ec', { namedCurve: 'P-256' });
  const exported = privateKey.export({ format: 'jwk' }) as JWK;
  const publicJwk = crypto.createPublicKey(privateKey).export({ format: 'jwk' }) as JWK;
  // Like Keycloak, the kid is derived from the key itself (RFC 7638 thumbprint).
  const kid = await calculateJwkThumbprint(publicJwk, 'sha256');
  return {
    kid,
    alg,
    publicJwk: { ...publicJwk, kid, alg, use: 'sig' },
    privateJwk: { ...exported, kid, alg, use: 'sig' },
  };
}
