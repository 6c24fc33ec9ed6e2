// The compact JWS signer and HMAC verifier Cloakroom uses for its own tokens, checked against jose.
import crypto from 'node:crypto';

import { compactVerify, decodeProtectedHeader, jwtVerify } from 'jose';
import { describe, expect, it } from 'vitest';

import { signJws, verifyHmacJws } from '../../src/crypto/jws.ts';

const payload = { sub: '6c1d0d7e-6f0e-4b8e-9d7e-0d7e6f0e4b8e', realm_access: { roles: ['agent', 'ünïcode'] }, exp: 4102444800 };

describe('signJws', () => {
  it('signs RS256 that jose verifies, with Keycloak\'s header', async () => {
    const { privateKey, publicKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
    const token = await signJws({ alg: 'RS256', typ: 'JWT', kid: 'k1' }, payload, privateKey);
    expect(decodeProtectedHeader(token)).toEqual({ alg: 'RS256', typ: 'JWT', kid: 'k1' });
    const { payload: verified } = await jwtVerify(token, publicKey, { algorithms: ['RS256'] });
    expect(verified).toEqual(payload);
  });

  it('signs ES256 as r||s (JWS), not DER', async () => {
    const { privateKey, publicKey } = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const token = await signJws({ alg: 'ES256', typ: 'JWT', kid: 'k2' }, payload, privateKey);
    expect(Buffer.from(token.split('.')[2]!, 'base64url')).toHaveLength(64);
    const { payload: verified } = await jwtVerify(token, publicKey, { algorithms: ['ES256'] });
    expect(verified).toEqual(payload);
  });

  it('signs HS512 deterministically, verified by jose and by verifyHmacJws', async () => {
    const key = crypto.createSecretKey(crypto.randomBytes(64));
    const header = { alg: 'HS512', typ: 'JWT', kid: 'h1' } as const;
    const token = await signJws(header, payload, key);
    expect(await signJws(header, payload, key)).toBe(token);
    await expect(compactVerify(token, key, { algorithms: ['HS512'] })).resolves.toBeTruthy();
    expect(verifyHmacJws(token, 'HS512', key)).toEqual(payload);
  });
});

describe('verifyHmacJws', () => {
  const key = crypto.createSecretKey(crypto.randomBytes(64));
  const other = crypto.createSecretKey(crypto.randomBytes(64));
  const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');
  const hmac = (input: string, alg = 'sha512', k = key) => crypto.createHmac(alg, k).update(input).digest('base64url');

  it('refuses a tampered payload, another key and a truncated signature', async () => {
    const token = await signJws({ alg: 'HS512', typ: 'JWT' }, payload, key);
    const [h, , s] = token.split('.');
    expect(verifyHmacJws(`${h}.${b64({ ...payload, sub: 'someone-else' })}.${s}`, 'HS512', key)).toBeUndefined();
    expect(verifyHmacJws(token, 'HS512', other)).toBeUndefined();
    expect(verifyHmacJws(token.slice(0, -4), 'HS512', key)).toBeUndefined();
  });

  it('refuses any header alg but the expected one, even with a matching MAC', () => {
    for (const alg of ['none', 'HS256', 'RS256', 'hs512']) {
      const input = `${b64({ alg, typ: 'JWT' })}.${b64(payload)}`;
      expect(verifyHmacJws(`${input}.${hmac(input)}`, 'HS512', key)).toBeUndefined();
    }
    const unsigned = `${b64({ alg: 'none' })}.${b64(payload)}.`;
    expect(verifyHmacJws(unsigned, 'HS512', key)).toBeUndefined();
  });

  it('refuses crit and b64 headers, non-object payloads and malformed input', () => {
    for (const header of [{ alg: 'HS512', crit: ['exp'] }, { alg: 'HS512', b64: false }]) {
      const input = `${b64(header)}.${b64(payload)}`;
      expect(verifyHmacJws(`${input}.${hmac(input)}`, 'HS512', key)).toBeUndefined();
    }
    for (const body of [[1, 2], 'text', 42, null]) {
      const input = `${b64({ alg: 'HS512' })}.${b64(body)}`;
      expect(verifyHmacJws(`${input}.${hmac(input)}`, 'HS512', key)).toBeUndefined();
    }
    const notJson = `${b64({ alg: 'HS512' })}.${Buffer.from('{nope').toString('base64url')}`;
    expect(verifyHmacJws(`${notJson}.${hmac(notJson)}`, 'HS512', key)).toBeUndefined();
    const padded = `${b64({ alg: 'HS512' })}.${Buffer.from(JSON.stringify(payload)).toString('base64')}`;
    expect(verifyHmacJws(`${padded}.${hmac(padded)}`, 'HS512', key)).toBeUndefined();
    for (const junk of ['', 'a.b', 'a.b.c.d', '...']) expect(verifyHmacJws(junk, 'HS512', key)).toBeUndefined();
  });
});
