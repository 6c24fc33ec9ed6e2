import { pbkdf2Sync, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  DEFAULT_ARGON2,
  burnVerify,
  hashPassword,
  needsRehash,
  parseStoredPassword,
  verifyPassword,
} from '../../src/crypto/passwords.ts';
import type { Argon2Params, StoredPassword } from '../../src/crypto/passwords.ts';

// Cheap parameters keep the suite fast where the cost itself is not under test.
const FAST: Argon2Params = { memoryKiB: 1024, iterations: 1, parallelism: 1, hashLength: 32 };

const KC_ARGON2_PARAMS = { hashLength: ['32'], memory: ['7168'], type: ['id'], version: ['1.3'], parallelism: ['1'] };

function stored(algorithm: string, hashIterations: number, salt: string, value: string, extra?: Record<string, string[]>): StoredPassword {
  return {
    secretData: { value, salt, additionalParameters: {} },
    credentialData: { algorithm, hashIterations, additionalParameters: extra ?? {} },
  };
}

// Vectors produced by Keycloak itself.
const VECTORS: { name: string; password: string; cred: StoredPassword }[] = [
  {
    name: 'pbkdf2-sha256, 64-byte value',
    password: 'test',
    cred: stored(
      'pbkdf2-sha256',
      27500,
      'YaIEcNqTNMS4fZ2iUKd/wg==',
      'GbcXn5JEdNpblA2NnXwX60mm614FHjdbxhK1x7v6WwGc0E8ZrNvho7Se8upLt9+/NTHu2NmuWlWM1QwdOWfyHQ==',
    ),
  },
  {
    name: 'pbkdf2-sha256, 32-byte value',
    password: 'password',
    cred: stored('pbkdf2-sha256', 27500, 'P5rtFkGtPfoaryJ6PizUJw==', 'JsfNbCOIdZUbyBJ+BT+VoGI91Ec2rWLOvkLPDaX8e9k='),
  },
  {
    name: 'pbkdf2-sha512',
    password: 'password',
    cred: stored(
      'pbkdf2-sha512',
      210000,
      'yqXuX2HRvcBRSDbTUdiPQw==',
      'BF0QtrMc1PHAO+Jt25hRnqRfzUzvZfe6IHCthMpYla87MHMXwFRasOaplx40+X+tBSPMk2wj7rHMwsBIr2GAgg==',
    ),
  },
  {
    name: 'argon2id v1.3 m=7168 t=5 p=1',
    password: 'password',
    cred: stored('argon2', 5, 'Cf9AYCE5pAbb4CKEF0GUTA==', 'BruFLfFkjH/8erZ26NnrbkOrWiZuQyDRCHD9o0R6Scg=', KC_ARGON2_PARAMS),
  },
];

describe('verifyPassword with Keycloak vectors', () => {
  for (const { name, password, cred } of VECTORS) {
    it(`accepts the right password (${name})`, async () => {
      expect(await verifyPassword(password, cred)).toBe(true);
    });
    it(`rejects wrong passwords (${name})`, async () => {
      expect(await verifyPassword(`${password}x`, cred)).toBe(false);
      expect(await verifyPassword(password.toUpperCase(), cred)).toBe(false);
      expect(await verifyPassword('', cred)).toBe(false);
    });
  }

  it('applies Keycloak argon2 defaults when parameters are missing', async () => {
    const argon = VECTORS[3]!.cred;
    const bare = stored('argon2', 5, argon.secretData.salt, argon.secretData.value);
    expect(await verifyPassword('password', bare)).toBe(true);
  });

  it('uses the stored argon2 parameters rather than our defaults', async () => {
    const argon = VECTORS[3]!.cred;
    const wrongMemory = stored('argon2', 5, argon.secretData.salt, argon.secretData.value, { ...KC_ARGON2_PARAMS, memory: ['8192'] });
    const wrongType = stored('argon2', 5, argon.secretData.salt, argon.secretData.value, { ...KC_ARGON2_PARAMS, type: ['i'] });
    const wrongVersion = stored('argon2', 5, argon.secretData.salt, argon.secretData.value, { ...KC_ARGON2_PARAMS, version: ['1.0'] });
    const wrongT = stored('argon2', 4, argon.secretData.salt, argon.secretData.value, KC_ARGON2_PARAMS);
    for (const cred of [wrongMemory, wrongType, wrongVersion, wrongT]) {
      expect(await verifyPassword('password', cred)).toBe(false);
    }
  });
});

describe('pbkdf2 (HMAC-SHA1)', () => {
  it('round-trips a value derived with node:crypto', async () => {
    const salt = randomBytes(16);
    const value = pbkdf2Sync(Buffer.from('hunter2', 'utf8'), salt, 27500, 64, 'sha1');
    const cred = stored('pbkdf2', 27500, salt.toString('base64'), value.toString('base64'));
    expect(await verifyPassword('hunter2', cred)).toBe(true);
    expect(await verifyPassword('hunter3', cred)).toBe(false);
    // Same bytes under another digest must not verify.
    expect(await verifyPassword('hunter2', { ...cred, credentialData: { ...cred.credentialData, algorithm: 'pbkdf2-sha256' } })).toBe(false);
  });

  it('derives a key as long as the stored value', async () => {
    const salt = randomBytes(16);
    const value = pbkdf2Sync('pw', salt, 1000, 20, 'sha1');
    expect(await verifyPassword('pw', stored('pbkdf2', 1000, salt.toString('base64'), value.toString('base64')))).toBe(true);
  });
});

describe('hashPassword', () => {
  it('writes Keycloak-shaped argon2id credentials with the default parameters', async () => {
    const cred = await hashPassword('correct horse battery staple');
    expect(cred.credentialData).toEqual({
      algorithm: 'argon2',
      hashIterations: 2,
      additionalParameters: { hashLength: ['32'], memory: ['19456'], type: ['id'], version: ['1.3'], parallelism: ['1'] },
    });
    expect(Object.keys(cred.credentialData.additionalParameters!)).toEqual(['hashLength', 'memory', 'type', 'version', 'parallelism']);
    expect(Buffer.from(cred.secretData.salt, 'base64')).toHaveLength(16);
    expect(cred.secretData.salt).toMatch(/^[A-Za-z0-9+/]{22}==$/);
    expect(Buffer.from(cred.secretData.value, 'base64')).toHaveLength(32);
    expect(await verifyPassword('correct horse battery staple', cred)).toBe(true);
    expect(await verifyPassword('correct horse battery stapl', cred)).toBe(false);
    expect(needsRehash(cred)).toBe(false);
  });

  it('uses a fresh salt every time', async () => {
    const [a, b] = await Promise.all([hashPassword('same', FAST), hashPassword('same', FAST)]);
    expect(a.secretData.salt).not.toBe(b.secretData.salt);
    expect(a.secretData.value).not.toBe(b.secretData.value);
  });

  it('honours custom parameters and records them', async () => {
    const params: Argon2Params = { memoryKiB: 2048, iterations: 3, parallelism: 2, hashLength: 48 };
    const cred = await hashPassword('pw', params);
    expect(cred.credentialData.hashIterations).toBe(3);
    expect(cred.credentialData.additionalParameters).toMatchObject({ memory: ['2048'], parallelism: ['2'], hashLength: ['48'] });
    expect(Buffer.from(cred.secretData.value, 'base64')).toHaveLength(48);
    expect(await verifyPassword('pw', cred)).toBe(true);
    expect(needsRehash(cred, params)).toBe(false);
    expect(needsRehash(cred)).toBe(true);
  });

  it('rejects invalid parameters', async () => {
    await expect(hashPassword('pw', { ...FAST, iterations: 0 })).rejects.toThrow(/iterations/);
    await expect(hashPassword('pw', { ...FAST, memoryKiB: 1.5 })).rejects.toThrow(/memoryKiB/);
  });
});

describe('unicode passwords', () => {
  const passwords = ['pässwörd', 'пароль', '密码🔑', 'e\u0301', ' leading and trailing '];

  it('round-trip through argon2', async () => {
    for (const pw of passwords) {
      const cred = await hashPassword(pw, FAST);
      expect(await verifyPassword(pw, cred)).toBe(true);
    }
  });

  it('hash the UTF-8 bytes, like Keycloak', async () => {
    const salt = randomBytes(16);
    const value = pbkdf2Sync(Buffer.from('密码🔑', 'utf8'), salt, 1000, 32, 'sha256');
    expect(await verifyPassword('密码🔑', stored('pbkdf2-sha256', 1000, salt.toString('base64'), value.toString('base64')))).toBe(true);
  });

  it('does not normalise (NFC and NFD differ, as in Keycloak)', async () => {
    const cred = await hashPassword('\u00e9', FAST);
    expect(await verifyPassword('\u00e9', cred)).toBe(true);
    expect(await verifyPassword('e\u0301', cred)).toBe(false);
  });
});

describe('verifyPassword on unusable stored data', () => {
  const good = VECTORS[1]!.cred;
  const withSecret = (secret: Partial<StoredPassword['secretData']>): StoredPassword => ({
    ...good,
    secretData: { ...good.secretData, ...secret },
  });

  it('returns false for an unknown algorithm', async () => {
    const cred = { ...good, credentialData: { ...good.credentialData, algorithm: 'bcrypt' } };
    expect(await verifyPassword('password', cred)).toBe(false);
    const proto = { ...good, credentialData: { ...good.credentialData, algorithm: 'constructor' } };
    expect(await verifyPassword('password', proto)).toBe(false);
  });

  it('returns false for malformed base64', async () => {
    expect(await verifyPassword('password', withSecret({ value: 'not base64!!' }))).toBe(false);
    expect(await verifyPassword('password', withSecret({ salt: 'P5rtFkGtPfoaryJ6PizUJw' }))).toBe(false); // no padding
    expect(await verifyPassword('password', withSecret({ salt: 'P5rt-kGtPfoaryJ6PizUJw==' }))).toBe(false); // base64url
    expect(await verifyPassword('password', withSecret({ value: '' }))).toBe(false);
    expect(await verifyPassword('password', withSecret({ salt: '' }))).toBe(false);
  });

  it('returns false for a truncated stored value', async () => {
    const short = Buffer.from(good.secretData.value, 'base64').subarray(0, 8).toString('base64');
    expect(await verifyPassword('password', withSecret({ value: short }))).toBe(false);
  });

  it('returns false for bad iteration counts and argon2 parameters', async () => {
    expect(await verifyPassword('password', { ...good, credentialData: { ...good.credentialData, hashIterations: 0 } })).toBe(false);
    const argon = VECTORS[3]!.cred;
    for (const extra of [{ type: ['x'] }, { version: ['1.2'] }, { memory: ['lots'] }, { parallelism: ['0'] }, { hashLength: ['64'] }]) {
      const cred = stored('argon2', 5, argon.secretData.salt, argon.secretData.value, { ...KC_ARGON2_PARAMS, ...extra });
      expect(await verifyPassword('password', cred)).toBe(false);
    }
  });

  it('returns false for a short argon2 salt instead of throwing', async () => {
    const argon = VECTORS[3]!.cred;
    const cred = stored('argon2', 5, 'AAEC', argon.secretData.value, KC_ARGON2_PARAMS);
    expect(await verifyPassword('password', cred)).toBe(false);
  });
});

describe('needsRehash', () => {
  const current = (): StoredPassword =>
    stored('argon2', 2, 'Cf9AYCE5pAbb4CKEF0GUTA==', 'BruFLfFkjH/8erZ26NnrbkOrWiZuQyDRCHD9o0R6Scg=', {
      hashLength: ['32'],
      memory: ['19456'],
      type: ['id'],
      version: ['1.3'],
      parallelism: ['1'],
    });
  const withParam = (key: string, value: string[] | undefined): StoredPassword => {
    const cred = current();
    const params = { ...cred.credentialData.additionalParameters };
    if (value === undefined) delete params[key];
    else params[key] = value;
    return { ...cred, credentialData: { ...cred.credentialData, additionalParameters: params } };
  };

  it('is false for argon2id v1.3 at the current parameters', () => {
    expect(needsRehash(current())).toBe(false);
    expect(needsRehash(current(), DEFAULT_ARGON2)).toBe(false);
  });

  it('is true for pbkdf2 credentials', () => {
    for (const v of VECTORS.slice(0, 3)) expect(needsRehash(v.cred)).toBe(true);
  });

  it("is true for Keycloak's own argon2 defaults (m=7168, t=5)", () => {
    expect(needsRehash(VECTORS[3]!.cred)).toBe(true);
  });

  it('is true when any parameter differs or is missing', () => {
    expect(needsRehash(withParam('type', ['i']))).toBe(true);
    expect(needsRehash(withParam('version', ['1.0']))).toBe(true);
    expect(needsRehash(withParam('memory', ['65536']))).toBe(true);
    expect(needsRehash(withParam('parallelism', ['2']))).toBe(true);
    expect(needsRehash(withParam('hashLength', ['64']))).toBe(true);
    expect(needsRehash(withParam('memory', undefined))).toBe(true);
    const cred = current();
    expect(needsRehash({ ...cred, credentialData: { ...cred.credentialData, hashIterations: 3 } })).toBe(true);
  });

  it('compares against the params passed in', () => {
    expect(needsRehash(current(), { ...DEFAULT_ARGON2, memoryKiB: 65536 })).toBe(true);
    expect(needsRehash(VECTORS[3]!.cred, { memoryKiB: 7168, iterations: 5, parallelism: 1, hashLength: 32 })).toBe(false);
  });
});

describe('parseStoredPassword', () => {
  const secretJson = '{"value":"BruFLfFkjH/8erZ26NnrbkOrWiZuQyDRCHD9o0R6Scg=","salt":"Cf9AYCE5pAbb4CKEF0GUTA==","additionalParameters":{}}';
  const credJson =
    '{"hashIterations":5,"algorithm":"argon2","additionalParameters":{"hashLength":["32"],"memory":["7168"],"type":["id"],"version":["1.3"],"parallelism":["1"]}}';

  it('parses Keycloak export strings and the result verifies', async () => {
    const cred = parseStoredPassword(secretJson, credJson);
    expect(cred).toEqual(VECTORS[3]!.cred);
    expect(await verifyPassword('password', cred)).toBe(true);
    expect(await verifyPassword('wrong', cred)).toBe(false);
  });

  it('parses a pbkdf2 export with empty additionalParameters', async () => {
    const cred = parseStoredPassword(
      '{"value":"JsfNbCOIdZUbyBJ+BT+VoGI91Ec2rWLOvkLPDaX8e9k=","salt":"P5rtFkGtPfoaryJ6PizUJw==","additionalParameters":{}}',
      '{"hashIterations":27500,"algorithm":"pbkdf2-sha256","additionalParameters":{}}',
    );
    expect(await verifyPassword('password', cred)).toBe(true);
  });

  it('accepts objects as well as strings', () => {
    expect(parseStoredPassword(JSON.parse(secretJson), JSON.parse(credJson))).toEqual(parseStoredPassword(secretJson, credJson));
  });

  it('accepts algorithmData as an alias of additionalParameters', async () => {
    const cred = parseStoredPassword(
      '{"value":"BruFLfFkjH/8erZ26NnrbkOrWiZuQyDRCHD9o0R6Scg=","salt":"Cf9AYCE5pAbb4CKEF0GUTA==","algorithmData":{}}',
      { hashIterations: 5, algorithm: 'argon2', algorithmData: KC_ARGON2_PARAMS },
    );
    expect(cred.secretData.additionalParameters).toEqual({});
    expect(cred.credentialData.additionalParameters).toEqual(KC_ARGON2_PARAMS);
    expect(await verifyPassword('password', cred)).toBe(true);
  });

  it('wraps single-string parameter values (older Keycloak)', () => {
    const cred = parseStoredPassword(secretJson, { hashIterations: 5, algorithm: 'argon2', algorithmData: { memory: '7168', type: 'id' } });
    expect(cred.credentialData.additionalParameters).toEqual({ memory: ['7168'], type: ['id'] });
  });

  it('leaves absent optional parts absent', () => {
    const cred = parseStoredPassword('{"value":"x","salt":"y"}', '{"hashIterations":1,"algorithm":"pbkdf2"}');
    expect(cred).toEqual({ secretData: { value: 'x', salt: 'y' }, credentialData: { algorithm: 'pbkdf2', hashIterations: 1 } });
  });

  it('does not share objects with its input', () => {
    const input = { hashIterations: 5, algorithm: 'argon2', additionalParameters: { memory: ['7168'] } };
    const cred = parseStoredPassword(secretJson, input);
    cred.credentialData.additionalParameters!['memory']!.push('1');
    expect(input.additionalParameters.memory).toEqual(['7168']);
  });

  it('throws a clear error on malformed input', () => {
    expect(() => parseStoredPassword('{not json', credJson)).toThrow(/secretData is not valid JSON/);
    expect(() => parseStoredPassword(secretJson, '')).toThrow(/credentialData is not valid JSON/);
    expect(() => parseStoredPassword('[]', credJson)).toThrow(/secretData must be a JSON object/);
    expect(() => parseStoredPassword('null', credJson)).toThrow(/secretData must be a JSON object/);
    expect(() => parseStoredPassword('"str"', credJson)).toThrow(/secretData must be a JSON object/);
    expect(() => parseStoredPassword('{"salt":"Cf9AYCE5pAbb4CKEF0GUTA=="}', credJson)).toThrow(/secretData.value/);
    expect(() => parseStoredPassword('{"value":"x","salt":5}', credJson)).toThrow(/secretData.salt/);
    expect(() => parseStoredPassword('{"value":"x","salt":"y","additionalParameters":[]}', credJson)).toThrow(/additionalParameters/);
    expect(() => parseStoredPassword(secretJson, '{"hashIterations":5}')).toThrow(/credentialData.algorithm/);
    expect(() => parseStoredPassword(secretJson, '{"algorithm":"pbkdf2-sha256"}')).toThrow(/hashIterations is required/);
    expect(() => parseStoredPassword(secretJson, '{"algorithm":"argon2","hashIterations":-1}')).toThrow(/hashIterations/);
    expect(() => parseStoredPassword(secretJson, '{"algorithm":"argon2","hashIterations":1.5}')).toThrow(/hashIterations/);
    expect(() => parseStoredPassword(secretJson, '{"algorithm":"argon2","hashIterations":5,"additionalParameters":{"memory":[{}]}}')).toThrow(
      /additionalParameters.memory/,
    );
  });

  it('defaults missing argon2 iterations to 5 and keeps a missing salt parseable', async () => {
    const cred = parseStoredPassword('{"value":"BruFLfFkjH/8erZ26NnrbkOrWiZuQyDRCHD9o0R6Scg=","salt":"__SALT__"}', '{"algorithm":"argon2"}');
    expect(cred.credentialData.hashIterations).toBe(5);
    expect(cred.secretData.salt).toBe('');
    expect(await verifyPassword('password', cred)).toBe(false);
  });
});

describe('burnVerify', () => {
  it('resolves without a credential', async () => {
    await expect(burnVerify(FAST)).resolves.toBeUndefined();
    await expect(burnVerify()).resolves.toBeUndefined();
  });
});
