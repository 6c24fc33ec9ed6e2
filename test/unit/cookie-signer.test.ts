// oidc-provider's cookie signatures: the same as Keygrip's (the `cookies` package default), so a
// cookie signed before the switch still verifies, and nothing but the exact signature does.
import Cookies from 'cookies';
import Keygrip from 'keygrip';
import { describe, expect, it } from 'vitest';

import { createCookieSigner } from '../../src/oidc/cookie-signer.ts';

const SECRET = 'Zm9vYmFyYmF6cXV4LWEtY29va2llLWtleS1mb3ItdGVzdHM';
const DATA = '_session=Jq8cX0x_1f3Lk2aYb9cW4';

describe('createCookieSigner', () => {
  const signer = createCookieSigner(SECRET);
  const keygrip = new Keygrip([SECRET]);

  it('signs exactly as Keygrip does, and verifies what Keygrip signed', () => {
    expect(signer.sign(DATA)).toBe(keygrip.sign(DATA));
    expect(signer.index(DATA, keygrip.sign(DATA))).toBe(0);
    expect(signer.verify(DATA, keygrip.sign(DATA))).toBe(true);
    expect(keygrip.verify(DATA, signer.sign(DATA))).toBe(true);
  });

  it('refuses other data, another key, a truncated or padded signature and junk', () => {
    const signature = signer.sign(DATA);
    expect(signer.index(`${DATA}x`, signature)).toBe(-1);
    expect(signer.index(DATA, new Keygrip(['another key']).sign(DATA))).toBe(-1);
    expect(signer.index(DATA, signature.slice(0, -1))).toBe(-1);
    expect(signer.index(DATA, `${signature}=`)).toBe(-1);
    expect(signer.index(DATA, `${signature.slice(0, 4)}!${signature.slice(4)}`)).toBe(-1);
    expect(signer.index(DATA, '')).toBe(-1);
  });

  it('is what the cookies package uses for signed cookies when given as keys', () => {
    const set: string[] = [];
    const res = { getHeader: () => set, setHeader: (_: string, v: string[]) => set.splice(0, set.length, ...v) };
    new Cookies({ headers: {} } as never, res as never, { keys: signer as never, secure: false }).set('_session', 'abc', { signed: true });
    const cookieHeader = set.map((c) => c.split(';')[0]).join('; ');
    const read = new Cookies({ headers: { cookie: cookieHeader } } as never, {} as never, { keys: keygrip, secure: false });
    expect(read.get('_session', { signed: true })).toBe('abc');
    const tampered = new Cookies({ headers: { cookie: cookieHeader.replace('abc', 'abd') } } as never, { getHeader: () => [], setHeader: () => {} } as never, { keys: signer as never, secure: false });
    expect(tampered.get('_session', { signed: true })).toBeUndefined();
  });
});
