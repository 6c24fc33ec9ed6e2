// Signs oidc-provider's cookies (its `cookies.keys`, read by the `cookies` package) with what the
// default Keygrip produces, HMAC-SHA1 in base64url, so cookies signed before an upgrade still
// verify. Keygrip passes its key as a string to every HMAC and compares through tsscmp: two more
// HMACs under a fresh random Buffer key, which Node 24 sets up about six times slower than an
// imported KeyObject (~30 µs against ~5). Here: one imported key, one HMAC, timingSafeEqual.
import crypto, { type KeyObject } from 'node:crypto';

/** The interface `cookies` calls (Keygrip's): sign, verify, and index of the verifying key. */
export type CookieSigner = {
  sign(data: string): string;
  verify(data: string, digest: string): boolean;
  index(data: string, digest: string): number;
};

export function createCookieSigner(secret: string): CookieSigner {
  const key: KeyObject = crypto.createSecretKey(Buffer.from(secret));
  const signature = (data: string): Buffer => crypto.createHmac('sha1', key).update(data).digest();
  const index = (data: string, digest: string): number => {
    const presented = Buffer.from(String(digest), 'base64url');
    // base64url decoding ignores junk; only the canonical encoding of a signature is one.
    if (presented.toString('base64url') !== digest) return -1;
    const expected = signature(data);
    return presented.length === expected.length && crypto.timingSafeEqual(presented, expected) ? 0 : -1;
  };
  return {
    sign: (data) => signature(data).toString('base64url'),
    verify: (data, digest) => index(data, digest) === 0,
    index,
  };
}
