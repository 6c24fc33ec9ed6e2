// OTP codes, secrets, key URIs and QR codes (src/login/otp.ts) against the RFC test vectors.
import { describe, expect, it } from 'vitest';

import { parseAuthenticatorSettings } from '../../src/login/authenticator-settings.ts';
import {
  decodeBase32, generateOtpSecret, newOtpCredentialData, otpCode, otpKeyUri, otpSecretForApps, parseOtpCredentialData, qrCodeSvg,
  type OtpCredentialData,
} from '../../src/login/otp.ts';

const hotp = (algorithm: OtpCredentialData['algorithm'] = 'HmacSHA1', digits = 6): OtpCredentialData =>
  ({ subType: 'hotp', digits, counter: 0, period: 30, algorithm });
const totp = (algorithm: OtpCredentialData['algorithm'], digits = 8): OtpCredentialData =>
  ({ subType: 'totp', digits, counter: 0, period: 30, algorithm });

describe('RFC 4226 appendix D (HOTP, Keycloak-style UTF-8 secret)', () => {
  const expected = ['755224', '287082', '359152', '969429', '338314', '254676', '287922', '162583', '399871', '520489'];
  for (const [counter, code] of expected.entries()) {
    it(`counter ${counter} -> ${code}`, () => {
      expect(otpCode('12345678901234567890', hotp(), { counter })).toBe(code);
    });
  }

  it('takes the counter from the credential data when none is given', () => {
    expect(otpCode('12345678901234567890', { ...hotp(), counter: 7 }, {})).toBe('162583');
  });
});

describe('RFC 6238 appendix B (TOTP, 8 digits)', () => {
  const seeds = {
    HmacSHA1: '12345678901234567890',
    HmacSHA256: '12345678901234567890123456789012',
    HmacSHA512: '1234567890123456789012345678901234567890123456789012345678901234',
  } as const;
  const vectors: Array<[number, string, string, string]> = [
    [59, '94287082', '46119246', '90693936'],
    [1111111109, '07081804', '68084774', '25091201'],
    [1111111111, '14050471', '67062674', '99943326'],
    [1234567890, '89005924', '91819424', '93441116'],
    [2000000000, '69279037', '90698825', '38618901'],
    [20000000000, '65353130', '77737706', '47863826'],
  ];
  for (const [seconds, sha1, sha256, sha512] of vectors) {
    it(`T = ${seconds}s`, () => {
      expect(otpCode(seeds.HmacSHA1, totp('HmacSHA1'), { time: seconds * 1000 })).toBe(sha1);
      expect(otpCode(seeds.HmacSHA256, totp('HmacSHA256'), { time: seconds * 1000 })).toBe(sha256);
      expect(otpCode(seeds.HmacSHA512, totp('HmacSHA512'), { time: seconds * 1000 })).toBe(sha512);
    });
  }

  it('uses the credential period: 60 s steps see 59 s and 1 s as the same step', () => {
    const data = { ...totp('HmacSHA1'), period: 60 };
    expect(otpCode(seeds.HmacSHA1, data, { time: 59_000 })).toBe(otpCode(seeds.HmacSHA1, data, { time: 1_000 }));
    expect(otpCode(seeds.HmacSHA1, data, { time: 59_000 })).toBe(otpCode(seeds.HmacSHA1, totp('HmacSHA1'), { time: 1_000 }));
  });

  it('6 digits are the last 6 of the 8-digit code', () => {
    expect(otpCode(seeds.HmacSHA1, totp('HmacSHA1', 6), { time: 59_000 })).toBe('287082');
  });
});

describe('Base32 secrets (secretEncoding BASE32)', () => {
  // Base32("12345678901234567890")
  const encoded = 'GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ';

  it('gives the same codes as the UTF-8 value of the decoded bytes', () => {
    for (let counter = 0; counter < 10; counter++) {
      expect(otpCode(encoded, { ...hotp(), secretEncoding: 'BASE32' }, { counter }))
        .toBe(otpCode('12345678901234567890', hotp(), { counter }));
    }
    expect(otpCode(encoded, { ...totp('HmacSHA1'), secretEncoding: 'BASE32' }, { time: 59_000 })).toBe('94287082');
  });

  it('accepts lower case, spaces and padding as authenticator apps show them', () => {
    expect(otpCode('gezd gnbv gy3t qojq gezd gnbv gy3t qojq', { ...hotp(), secretEncoding: 'BASE32' }, { counter: 0 })).toBe('755224');
    expect(otpCode('GEZDGNA=', { ...hotp(), secretEncoding: 'BASE32' }, { counter: 0 }))
      .toBe(otpCode('1234', hotp(), { counter: 0 }));
  });

  it('decodes seeds whose length is not whole bytes (left-over bits dropped) and refuses other characters', () => {
    expect(Buffer.from(decodeBase32('GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ')).toString()).toBe('12345678901234567890');
    expect(Buffer.from(decodeBase32('JBSWY3DPEE'))).toEqual(Buffer.from('Hello!'));
    // 20 characters = 100 bits: 12 bytes, the last 4 bits are dropped (Keycloak and apps do the same).
    expect(decodeBase32('aBcD3fGhIjKlMnOpQrSt')).toHaveLength(12);
    expect(decodeBase32('')).toHaveLength(0);
    expect(() => decodeBase32('ABC1')).toThrow();
    expect(() => decodeBase32('ÄBC')).toThrow();
  });

  it('apps get Base32 of the key bytes for both encodings', () => {
    expect(otpSecretForApps('12345678901234567890', hotp())).toBe(encoded);
    expect(otpSecretForApps(encoded, { secretEncoding: 'BASE32' })).toBe(encoded);
  });

  it('generates 32-character Base32 secrets of 20 random bytes', () => {
    const secrets = new Set(Array.from({ length: 20 }, () => generateOtpSecret()));
    expect(secrets.size).toBe(20);
    for (const secret of secrets) {
      expect(secret).toMatch(/^[A-Z2-7]{32}$/);
      expect(Buffer.from(otpSecretForApps(secret, { secretEncoding: 'BASE32' }))).toEqual(Buffer.from(secret));
    }
  });
});

describe('credential data', () => {
  it('new devices follow the otpPolicy and store the secret as Base32', () => {
    const settings = parseAuthenticatorSettings({
      otpPolicyType: 'totp', otpPolicyAlgorithm: 'HmacSHA256', otpPolicyDigits: 8, otpPolicyPeriod: 60, otpPolicyInitialCounter: 5,
    });
    expect(newOtpCredentialData(settings, 'hotp')).toEqual({
      subType: 'hotp', digits: 8, counter: 5, period: 60, algorithm: 'HmacSHA256', secretEncoding: 'BASE32',
    });
    expect(newOtpCredentialData(parseAuthenticatorSettings({}), 'totp')).toEqual({
      subType: 'totp', digits: 6, counter: 0, period: 30, algorithm: 'HmacSHA1', secretEncoding: 'BASE32',
    });
  });

  it("reads Keycloak's stored forms and refuses what is not OTP data", () => {
    const keycloak = '{"subType":"totp","digits":6,"counter":0,"period":30,"algorithm":"HmacSHA1"}';
    expect(parseOtpCredentialData(keycloak)).toEqual({ subType: 'totp', digits: 6, counter: 0, period: 30, algorithm: 'HmacSHA1' });
    expect(parseOtpCredentialData({ subType: 'hotp', counter: 4, secretEncoding: 'BASE32' }))
      .toEqual({ subType: 'hotp', digits: 6, counter: 4, period: 30, algorithm: 'HmacSHA1', secretEncoding: 'BASE32' });
    expect(parseOtpCredentialData({ subType: 'webauthn' })).toBeUndefined();
    expect(parseOtpCredentialData({ subType: 'totp', algorithm: 'MD5' })).toBeUndefined();
    expect(parseOtpCredentialData('not json')).toBeUndefined();
    expect(parseOtpCredentialData(null)).toBeUndefined();
  });
});

describe('key URI and QR code', () => {
  it('writes every parameter of the key-uri format (TOTP)', () => {
    const uri = otpKeyUri({
      secret: 'JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP', issuer: 'Acme Corp: Staff & Co', account: 'jane+x@example.com',
      data: { subType: 'totp', digits: 8, counter: 0, period: 60, algorithm: 'HmacSHA256', secretEncoding: 'BASE32' },
    });
    const url = new URL(uri);
    expect(url.protocol).toBe('otpauth:');
    expect(url.host).toBe('totp');
    const label = url.pathname.slice(1);
    const colon = label.indexOf(':');
    expect(decodeURIComponent(label.slice(0, colon))).toBe('Acme Corp: Staff & Co');
    expect(decodeURIComponent(label.slice(colon + 1))).toBe('jane+x@example.com');
    expect(Object.fromEntries(url.searchParams)).toEqual({
      secret: 'JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP', digits: '8', algorithm: 'SHA256', issuer: 'Acme Corp: Staff & Co', period: '60',
    });
    expect(uri).not.toContain('+'); // a literal "+" would show as a space in some apps
  });

  it('HOTP carries the counter; a Keycloak UTF-8 secret is Base32-encoded for the app', () => {
    const url = new URL(otpKeyUri({
      secret: '12345678901234567890', issuer: 'demo', account: 'bob',
      data: { subType: 'hotp', digits: 6, counter: 42, period: 30, algorithm: 'HmacSHA512' },
    }));
    expect(url.host).toBe('hotp');
    expect(url.pathname).toBe('/demo:bob');
    expect(Object.fromEntries(url.searchParams)).toEqual({
      secret: 'GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ', digits: '6', algorithm: 'SHA512', issuer: 'demo', counter: '42',
    });
  });

  it('renders the URI as an SVG document', async () => {
    const svg = await qrCodeSvg('otpauth://totp/demo:bob?secret=GEZDGNBVGY3TQOJQ&issuer=demo');
    expect(svg.trimStart()).toMatch(/^<svg[\s>]/);
    expect(svg).toContain('</svg>');
    expect(svg).toContain('<path');
  });
});
