// Password hashing compatible with Keycloak's password credentials.
// Credentials keep Keycloak's secretData/credentialData shape so realm exports
// stay importable by Keycloak, and Keycloak-made hashes verify here unchanged.
import { pbkdf2, randomBytes, timingSafeEqual } from 'node:crypto';
import { hashRaw } from '@node-rs/argon2';
import type { Options as Argon2Options } from '@node-rs/argon2';

export type PasswordSecretData = { value: string; salt: string; additionalParameters?: Record<string, unknown> };
export type PasswordCredentialData = {
  algorithm: string;
  hashIterations: number;
  additionalParameters?: Record<string, string[]>;
};
export type StoredPassword = { secretData: PasswordSecretData; credentialData: PasswordCredentialData };
export type Argon2Params = { memoryKiB: number; iterations: number; parallelism: number; hashLength: number };

// OWASP's argon2id baseline (19 MiB, t=2, p=1).
export const DEFAULT_ARGON2: Argon2Params = Object.freeze({ memoryKiB: 19456, iterations: 2, parallelism: 1, hashLength: 32 });

const ARGON2 = 'argon2';
const SALT_BYTES = 16;
// Keycloak never writes hashes this short; a tiny stored value would let random passwords match.
const MIN_HASH_BYTES = 16;

// Defaults Keycloak's Argon2Parameters applies when a credential omits a parameter.
const KC_ARGON2_DEFAULTS = { type: 'id', version: '1.3', memory: 7168, iterations: 5, parallelism: 1, hashLength: 32 };

// @node-rs/argon2 declares these as `const enum`s, which do not exist at runtime
// (and are unusable under isolatedModules), so the numeric values are spelled out.
const ARGON2_TYPES: ReadonlyMap<string, 0 | 1 | 2> = new Map([
  ['d', 0],
  ['i', 1],
  ['id', 2],
]);
const ARGON2_VERSIONS: ReadonlyMap<string, 0 | 1> = new Map([
  ['1.0', 0], // 0x10
  ['1.3', 1], // 0x13
]);

const PBKDF2_DIGESTS: ReadonlyMap<string, string> = new Map([
  ['pbkdf2', 'sha1'],
  ['pbkdf2-sha256', 'sha256'],
  ['pbkdf2-sha512', 'sha512'],
]);

export async function hashPassword(plain: string, params: Argon2Params = DEFAULT_ARGON2): Promise<StoredPassword> {
  assertParams(params);
  const salt = randomBytes(SALT_BYTES);
  const key = await argon2Raw(Buffer.from(plain, 'utf8'), salt, 2, 1, params);
  return {
    secretData: { value: key.toString('base64'), salt: salt.toString('base64'), additionalParameters: {} },
    credentialData: {
      algorithm: ARGON2,
      hashIterations: params.iterations,
      // Key order and string-array values mirror what Keycloak writes.
      additionalParameters: {
        hashLength: [String(params.hashLength)],
        memory: [String(params.memoryKiB)],
        type: ['id'],
        version: ['1.3'],
        parallelism: [String(params.parallelism)],
      },
    },
  };
}

export async function verifyPassword(plain: string, stored: StoredPassword): Promise<boolean> {
  // Stored data we cannot use is a failed login, never an exception on the login path.
  try {
    if (typeof plain !== 'string') return false;
    const expected = decodeBase64(stored.secretData.value);
    const salt = decodeBase64(stored.secretData.salt);
    if (!expected || !salt || expected.length < MIN_HASH_BYTES || salt.length === 0) return false;
    const password = Buffer.from(plain, 'utf8');
    const { algorithm, hashIterations } = stored.credentialData;

    if (algorithm === ARGON2) {
      const p = readArgon2Params(stored.credentialData);
      // Different length can never match; skip the expensive derivation.
      if (!p || p.hashLength !== expected.length) return false;
      return constantTimeEqual(await argon2Raw(password, salt, p.type, p.version, p), expected);
    }

    const digest = PBKDF2_DIGESTS.get(algorithm);
    if (!digest || !isPositiveInt(hashIterations)) return false;
    // Keycloak sizes the derived key from the stored value, so do the same.
    const actual = await pbkdf2Async(password, salt, hashIterations, expected.length, digest);
    return constantTimeEqual(actual, expected);
  } catch {
    return false;
  }
}

export function needsRehash(stored: StoredPassword, params: Argon2Params = DEFAULT_ARGON2): boolean {
  const data = stored.credentialData;
  if (data.algorithm !== ARGON2) return true;
  // Like Keycloak's policyCheck, a missing parameter counts as a mismatch so the rehash stores it explicitly.
  const param = (key: string): string | undefined => data.additionalParameters?.[key]?.[0];
  return (
    param('type') !== 'id' ||
    param('version') !== '1.3' ||
    data.hashIterations !== params.iterations ||
    param('memory') !== String(params.memoryKiB) ||
    param('parallelism') !== String(params.parallelism) ||
    param('hashLength') !== String(params.hashLength)
  );
}

// Run for unknown users so a login for a missing account costs as much as a real verify.
export async function burnVerify(params: Argon2Params = DEFAULT_ARGON2): Promise<void> {
  const key = await argon2Raw(randomBytes(SALT_BYTES), randomBytes(SALT_BYTES), 2, 1, params);
  constantTimeEqual(key, Buffer.alloc(key.length));
}

export function parseStoredPassword(secretData: string | object, credentialData: string | object): StoredPassword {
  const secret = toObject(secretData, 'secretData');
  const cred = toObject(credentialData, 'credentialData');

  const value = secret['value'];
  if (typeof value !== 'string') throw new Error('secretData.value must be a string');
  // Keycloak treats a missing salt (or its "__SALT__" placeholder) as no salt; keep it parseable, it just won't verify.
  const rawSalt = secret['salt'];
  if (rawSalt !== undefined && rawSalt !== null && typeof rawSalt !== 'string') {
    throw new Error('secretData.salt must be a string');
  }
  const salt = typeof rawSalt === 'string' && rawSalt !== '__SALT__' ? rawSalt : '';
  const secretParams = secret['additionalParameters'] ?? secret['algorithmData'];
  const parsedSecret: PasswordSecretData = { value, salt };
  if (secretParams !== undefined && secretParams !== null) {
    if (!isPlainObject(secretParams)) throw new Error('secretData.additionalParameters must be an object');
    parsedSecret.additionalParameters = { ...secretParams };
  }

  const algorithm = cred['algorithm'];
  if (typeof algorithm !== 'string' || algorithm === '') {
    throw new Error('credentialData.algorithm must be a non-empty string');
  }
  const parsedCred: PasswordCredentialData = {
    algorithm,
    hashIterations: parseIterations(cred['hashIterations'], algorithm),
  };
  const credParams = cred['additionalParameters'] ?? cred['algorithmData'];
  if (credParams !== undefined && credParams !== null) {
    parsedCred.additionalParameters = parseMultivalued(credParams);
  }
  return { secretData: parsedSecret, credentialData: parsedCred };
}

type ResolvedArgon2 = Argon2Params & { type: 0 | 1 | 2; version: 0 | 1 };

function readArgon2Params(data: PasswordCredentialData): ResolvedArgon2 | undefined {
  const param = (key: string): string | undefined => data.additionalParameters?.[key]?.[0];
  const type = ARGON2_TYPES.get(param('type') ?? KC_ARGON2_DEFAULTS.type);
  const version = ARGON2_VERSIONS.get(param('version') ?? KC_ARGON2_DEFAULTS.version);
  const memoryKiB = intParam(param('memory'), KC_ARGON2_DEFAULTS.memory);
  const parallelism = intParam(param('parallelism'), KC_ARGON2_DEFAULTS.parallelism);
  const hashLength = intParam(param('hashLength'), KC_ARGON2_DEFAULTS.hashLength);
  const iterations = data.hashIterations ?? KC_ARGON2_DEFAULTS.iterations;
  if (type === undefined || version === undefined) return undefined;
  if (![memoryKiB, parallelism, hashLength, iterations].every(isPositiveInt)) return undefined;
  return { type, version, memoryKiB, parallelism, hashLength, iterations };
}

// NaN (rejected later) for anything that is not a plain decimal integer.
function intParam(raw: string | undefined, fallback: number): number {
  if (raw === undefined) return fallback;
  return /^\d{1,10}$/.test(raw) ? Number(raw) : Number.NaN;
}

function argon2Raw(password: Buffer, salt: Buffer, type: 0 | 1 | 2, version: 0 | 1, p: Argon2Params): Promise<Buffer> {
  const options: Argon2Options = {
    algorithm: type,
    version,
    memoryCost: p.memoryKiB,
    timeCost: p.iterations,
    parallelism: p.parallelism,
    outputLen: p.hashLength,
    salt,
  };
  // Async variant: runs on the libuv threadpool, not the event loop.
  return hashRaw(password, options);
}

function pbkdf2Async(password: Buffer, salt: Buffer, iterations: number, keylen: number, digest: string): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    pbkdf2(password, salt, iterations, keylen, digest, (err, key) => (err ? reject(err) : resolve(key)));
  });
}

function constantTimeEqual(a: Buffer, b: Buffer): boolean {
  // timingSafeEqual throws on unequal lengths; the lengths are not secret.
  return a.length === b.length && timingSafeEqual(a, b);
}

// Strict standard Base64 with padding (line breaks tolerated, as Java's decoders allow).
// Buffer.from alone silently skips junk, so require a canonical round trip.
function decodeBase64(s: unknown): Buffer | undefined {
  if (typeof s !== 'string') return undefined;
  const compact = s.replace(/[\r\n\t ]/g, '');
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(compact) || compact.length % 4 !== 0) return undefined;
  const bytes = Buffer.from(compact, 'base64');
  return bytes.toString('base64') === compact ? bytes : undefined;
}

function isPositiveInt(n: unknown): n is number {
  return typeof n === 'number' && Number.isSafeInteger(n) && n > 0;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function assertParams(p: Argon2Params): void {
  for (const key of ['memoryKiB', 'iterations', 'parallelism', 'hashLength'] as const) {
    if (!isPositiveInt(p[key])) throw new Error(`Argon2 parameter ${key} must be a positive integer`);
  }
  if (p.hashLength < MIN_HASH_BYTES) throw new Error(`Argon2 hashLength must be at least ${MIN_HASH_BYTES} bytes`);
}

function toObject(input: string | object, name: string): Record<string, unknown> {
  let parsed: unknown = input;
  if (typeof input === 'string') {
    try {
      parsed = JSON.parse(input);
    } catch {
      throw new Error(`${name} is not valid JSON`);
    }
  }
  if (!isPlainObject(parsed)) throw new Error(`${name} must be a JSON object`);
  return parsed;
}

function parseIterations(raw: unknown, algorithm: string): number {
  // Only argon2 has a documented default; other algorithms need an explicit count.
  if (raw === undefined || raw === null) {
    if (algorithm === ARGON2) return KC_ARGON2_DEFAULTS.iterations;
    throw new Error('credentialData.hashIterations is required');
  }
  const n = typeof raw === 'string' && /^\d{1,10}$/.test(raw) ? Number(raw) : raw;
  if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 0) {
    throw new Error('credentialData.hashIterations must be a non-negative integer');
  }
  return n;
}

// Keycloak writes MultivaluedHashMap<String,String> (arrays of strings); older
// versions wrote single strings, so scalars are wrapped.
function parseMultivalued(raw: unknown): Record<string, string[]> {
  if (!isPlainObject(raw)) throw new Error('credentialData.additionalParameters must be an object');
  const out: Record<string, string[]> = {};
  for (const [key, v] of Object.entries(raw)) {
    const list = Array.isArray(v) ? v : [v];
    const strings = list.map((item) => {
      if (typeof item === 'string') return item;
      if (typeof item === 'number' && Number.isFinite(item)) return String(item);
      throw new Error(`credentialData.additionalParameters.${key} must be a string or an array of strings`);
    });
    out[key] = strings;
  }
  return out;
}
